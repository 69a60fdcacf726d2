// Layer scanning: decode once, walk the tar, verify the digest, persist the index.
#include "ocifs/layer/layer_scanner.hpp"

#include <spdlog/spdlog.h>

#include <atomic>

#include "decoded_tee.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/io/file_source.hpp"
#include "ocifs/layer/tar_walker.hpp"

namespace ocifs::layer {

namespace {

// Forwards the decoder's reads to the blob, records the sha256 of each block as the bytes pass
// (decoders read sequentially; a re-read is hashed once, a gap spoils the table), and reports
// the running total of raw bytes read. Reporting every 4 MiB keeps the callback (a terminal
// progress line) off the hot path: ~250 calls per GiB. Used by one scan thread.
class ScanSource final : public io::BlobSource {
 public:
  ScanSource(io::BlobSourcePtr inner, const ProgressFn& progress)
      : inner_(std::move(inner)), progress_(progress) {}

  std::uint64_t size() const override { return inner_->size(); }
  std::string describe() const override { return inner_->describe(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    auto n = inner_->read_at(offset, buf);
    if (n) record(offset, buf.first(*n));
    if (n && progress_) {
      auto total = read_.fetch_add(*n) + *n;
      if (total - reported_.load() >= kReportEvery) {
        reported_.store(total);
        progress_(total);
      }
    }
    return n;
  }
  void report_final() const {
    if (progress_) progress_(read_.load());
  }
  // The block digests of the whole blob, if every byte went past in order.
  Result<io::BlockDigests> block_digests() {
    if (gap_ || hashed_upto_ != inner_->size()) {
      return make_error(std::errc::io_error, "cannot index {}: the blob was not read in order (bytes {}-{})",
                        inner_->describe(), hashed_upto_, inner_->size());
    }
    return blocks_.finish();
  }

 private:
  void record(std::uint64_t offset, std::span<const std::byte> data) const {
    if (offset > hashed_upto_) gap_ = true;
    if (gap_ || offset + data.size() <= hashed_upto_) return;
    blocks_.update(data.subspan(hashed_upto_ - offset));
    hashed_upto_ = offset + data.size();
  }

  mutable io::BlockHasher blocks_;
  mutable std::uint64_t hashed_upto_ = 0;
  mutable bool gap_ = false;
  static constexpr std::uint64_t kReportEvery = 4u << 20;
  io::BlobSourcePtr inner_;
  const ProgressFn& progress_;
  mutable std::atomic<std::uint64_t> read_{0};
  mutable std::atomic<std::uint64_t> reported_{0};
};

// Index tables use u32 offsets and counts; a layer near these limits is hostile (1 Gi entries
// would need 512 GiB of tar headers), so it is refused instead of overflowing.
constexpr std::uint64_t kMaxPoolBytes = 3ull << 30;
constexpr std::uint64_t kMaxRecords = 1ull << 30;

}  // namespace

Result<LayerIndex> scan_layer(const LayerBlob& layer, const cache::Cache& cache, const ProgressFn& progress) {
  auto counting = std::make_shared<ScanSource>(layer.blob, progress);
  OCIFS_ASSIGN(compress::Encoding encoding, compress::detect_encoding(*layer.blob));
  compress::ScanOptions options;
  options.hash_decoded = layer.digest_of_decoded;
  OCIFS_ASSIGN(auto decoder, compress::make_stream_decoder(encoding, counting, options));

  // A zstd layer may turn out (only at the end) to need its decoded stream kept: write it all
  // as we go and commit only if the seek index says so and the digest verifies.
  std::optional<cache::PendingFile> spill;
  std::unique_ptr<DecodedTee> tee;
  compress::StreamDecoder* stream = decoder.get();
  if (encoding == compress::Encoding::zstd) {
    // Without a cache file, a layer of several small frames is still readable per frame.
    if (auto pending = cache.create_decoded(layer.digest); pending) {
      spill.emplace(std::move(pending).value());
      tee = std::make_unique<DecodedTee>(*decoder, *spill);
      stream = tee.get();
    } else {
      spdlog::warn("cannot keep the decoded stream of {}: {}", layer.name, pending.error().message);
    }
  }

  LayerIndex index;
  TarWalker walker(*stream, layer.name);
  std::uint64_t pool_bytes = 0, xattrs = 0, extents = 0;
  for (;;) {
    OCIFS_ASSIGN(auto entry, walker.next());
    if (!entry) break;
    pool_bytes += entry->path.size() + entry->link_target.size();
    for (const auto& x : entry->xattrs) pool_bytes += x.name.size() + x.value.size();
    xattrs += entry->xattrs.size();
    extents += entry->sparse.size();
    if (pool_bytes > kMaxPoolBytes || index.size() >= kMaxRecords || xattrs > kMaxRecords ||
        extents > kMaxRecords) {
      return make_error(std::errc::file_too_large,
                        "cannot index {}: too many entries or names (at '{}', header offset {})", layer.name,
                        entry->path, entry->header_offset);
    }
    index.add(*entry);
  }
  OCIFS_ASSIGN(compress::SeekIndex seek, stream->finish());
  counting->report_final();

  std::string got =
      "sha256:" + (layer.digest_of_decoded ? decoder->decoded_sha256() : decoder->compressed_sha256());
  if (got != layer.digest) {
    return make_error(std::errc::io_error, "cannot verify {}: digest {} does not match {}", layer.name, got,
                      layer.digest);
  }
  if (seek.zstd_spilled) {
    if (!spill) {
      return make_error(
          std::errc::io_error,
          "cannot index {}: its zstd frames need a decoded copy in the cache, which cannot be written",
          layer.name);
    }
    auto committed = spill->commit();
    if (!committed) {
      return std::move(committed).error().with_context(
          fmt::format("cannot keep the decoded stream of {}", layer.name));
    }
  }
  OCIFS_ASSIGN(index.blob_blocks(), counting->block_digests());
  if (seek.zstd_spilled) index.decoded_blocks() = tee->block_digests();
  index.seek_index() = std::move(seek);
  index.set_digest(layer.digest);
  return index;
}

namespace {

Result<OpenLayer> open_reader(const LayerBlob& layer, const cache::Cache& cache,
                              std::shared_ptr<const LayerIndex> index, bool from_cache) {
  // Every byte served is checked against the block digests recorded in the verified scan.
  if (!index->blob_blocks().covers(layer.blob->size())) {
    return make_error(std::errc::io_error, "cannot open {}: its index describes a blob of {} bytes, not {}",
                      layer.name, index->blob_blocks().blob_size, layer.blob->size());
  }
  auto blob = std::make_shared<io::VerifiedSource>(layer.blob, index->blob_blocks());
  io::BlobSourcePtr decoded;
  if (index->seek_index().zstd_spilled) {
    OCIFS_ASSIGN(auto file, io::FileSource::open(cache.decoded_path(layer.digest)));
    if (!index->decoded_blocks().covers(file->size())) {
      return make_error(std::errc::io_error, "cannot open the decoded stream of {}: {} bytes, expected {}",
                        layer.name, file->size(), index->decoded_blocks().blob_size);
    }
    decoded = std::make_shared<io::VerifiedSource>(std::move(file), index->decoded_blocks());
  }
  OCIFS_ASSIGN(auto reader, compress::make_seekable_reader(index->seek_index(), blob, decoded));
  return OpenLayer{std::move(index), std::move(reader), from_cache};
}

Result<std::shared_ptr<const LayerIndex>> scan_and_store(const LayerBlob& layer, const cache::Cache& cache,
                                                         const ProgressFn& progress) {
  OCIFS_ASSIGN(LayerIndex index, scan_layer(layer, cache, progress));
  if (auto written = cache.write_index(layer.digest, index.serialize()); !written) {
    spdlog::warn("cannot store the index of {}: {} (continuing without it)", layer.name,
                 written.error().message);
  }
  return std::make_shared<const LayerIndex>(std::move(index));
}

}  // namespace

Result<OpenLayer> open_layer(const LayerBlob& layer, const cache::Cache& cache, const ProgressFn& progress) {
  auto stored = cache.read_index(layer.digest);
  if (!stored) {
    spdlog::warn("cannot read the cached index of {}: {}; rebuilding it", layer.name, stored.error().message);
  } else if (*stored) {
    auto loaded = LayerIndex::deserialize(**stored);
    if (!loaded) {
      spdlog::warn("{}; rebuilding the index of {}", loaded.error().message, layer.name);
    } else if (loaded->digest() != layer.digest) {
      spdlog::warn("cached index of {} describes {}; rebuilding it", layer.name, loaded->digest());
    } else {
      auto opened =
          open_reader(layer, cache, std::make_shared<const LayerIndex>(std::move(loaded).value()), true);
      if (opened) return opened;
      // E.g. the decoded stream of a zstd layer was evicted: scan again to recreate it.
      spdlog::warn("{}; rescanning {}", opened.error().message, layer.name);
    }
  }
  OCIFS_ASSIGN(auto index, scan_and_store(layer, cache, progress));
  return open_reader(layer, cache, std::move(index), false);
}

}  // namespace ocifs::layer
