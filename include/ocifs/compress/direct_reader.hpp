// DirectReader: the SeekableReader of a stream stored as is: an uncompressed tar blob, or the
// decoded copy of a spilled zstd layer in the cache. Reads are preads of the source, clamped to
// the indexed size; its cursors hold no state. Safe to call from many threads at once.
#pragma once

#include <memory>

#include "ocifs/compress/seekable_reader.hpp"

namespace ocifs::compress {

class DirectReader final : public SeekableReader, public std::enable_shared_from_this<DirectReader> {
 public:
  // `size` is the decoded size from the index; the source must hold at least that many bytes.
  DirectReader(io::BlobSourcePtr source, std::uint64_t size) : source_(std::move(source)), size_(size) {}

  std::uint64_t size() const override { return size_; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::unique_ptr<ReadCursor> open_cursor() const override;
  void blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<BlobRange>& out) const override {
    if (offset < size_) out.push_back({source_, offset, std::min(length, size_ - offset)});
  }

 private:
  io::BlobSourcePtr source_;
  std::uint64_t size_;
};

}  // namespace ocifs::compress
