#include "ocifs/layer/header_walk.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "entry_table.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/layer/tar_walker.hpp"

namespace ocifs::layer {

namespace {

// The blob as the walk sees it: one window of it in memory, refilled on a miss. Used by one walk
// on one thread only (unlike other BlobSources).
class WalkAheadSource final : public io::BlobSource {
 public:
  WalkAheadSource(io::BlobSourcePtr inner, const ProgressFn& progress)
      : inner_(std::move(inner)), progress_(progress) {}

  std::uint64_t size() const override { return inner_->size(); }
  std::string describe() const override { return inner_->describe(); }

  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    const std::uint64_t size = inner_->size();
    if (offset >= size) return std::size_t{0};
    const std::uint64_t end = start_ + window_.size();
    if (offset < start_ || offset >= end) {
      // Reading on: the walk skipped less than a chunk past the window (small files' data), a
      // chunk the cache would fetch whole anyway.
      OCIFS_TRY(refill(offset, !window_.empty() && offset >= end && offset - end < kWindowAlign));
    }
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), start_ + window_.size() - offset));
    std::memcpy(buf.data(), window_.data() + (offset - start_), n);
    return n;
  }

 private:
  // Reads the window at `offset`: twice as long as the last one when the walk ran on past its
  // end, else the shortest.
  Result<void> refill(std::uint64_t offset, bool ran_on) const {
    length_ = ran_on ? std::min(length_ * 2, kMaxWindow) : kMinWindow;
    const std::uint64_t aligned_end = (offset + length_ + kWindowAlign - 1) / kWindowAlign * kWindowAlign;
    const std::uint64_t end = std::min(aligned_end, inner_->size());
    window_.resize(static_cast<std::size_t>(end - offset));
    start_ = offset;
    if (auto read = inner_->read_exact(offset, window_); !read) {
      window_.clear();
      return read;
    }
    if (progress_) progress_(end);
    return util::success();
  }

  io::BlobSourcePtr inner_;
  const ProgressFn& progress_;
  mutable std::vector<std::byte> window_;
  mutable std::uint64_t start_ = 0;
  mutable std::uint64_t length_ = kMinWindow;
};

}  // namespace

Result<LayerIndex> walk_tar_headers(const LayerBlob& layer, const ProgressFn& progress) {
  auto source = std::make_shared<WalkAheadSource>(layer.blob, progress);
  compress::ScanOptions options;
  options.hash = false;  // skipped data is seeked over, never read
  OCIFS_ASSIGN(auto stream, compress::make_stream_decoder(compress::Encoding::tar, source, options));
  TarWalker walker(*stream, layer.name);
  OCIFS_ASSIGN(LayerIndex index, index_entries(walker, layer.name, layer.budget.get()));
  auto& seek = index.seek_index();
  seek.encoding = compress::Encoding::tar;
  seek.compressed_size = seek.decoded_size = layer.blob->size();
  index.set_digest(layer.digest);
  return index;
}

}  // namespace ocifs::layer
