// ZstdReader: the SeekableReader of a zstd layer of several frames, none over kSpillFrameSize
// decoded. A read decodes the frames it touches: whole frames in one ZSTD_decompressDCtx call,
// partly covered ones streamed up to the last byte needed (zstd decodes ~1 GB/s, so ~2 ms for
// half of a 4 MiB frame). Its cursors keep the last decoded frame for the reads that follow.
// Spilled layers are read with DirectReader instead. Safe to call from many threads at once.
#pragma once

#include <memory>
#include <vector>

#include "ocifs/compress/seekable_reader.hpp"

namespace ocifs::compress {

class ZstdReader final : public SeekableReader, public std::enable_shared_from_this<ZstdReader> {
 public:
  // Checks that `index` is a usable, unspilled zstd index.
  static Result<SeekableReaderPtr> create(const SeekIndex& index, io::BlobSourcePtr blob);

  ZstdReader(SeekIndex index, io::BlobSourcePtr blob) : index_(std::move(index)), blob_(std::move(blob)) {}

  std::uint64_t size() const override { return index_.decoded_size; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::unique_ptr<ReadCursor> open_cursor() const override;
  void blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<BlobRange>& out) const override;

  const std::vector<ZstdFrame>& frames() const { return index_.zstd_frames; }
  // Index of the frame holding decoded `offset` (offset < size()).
  std::size_t frame_at(std::uint64_t offset) const;
  // Decodes frame `i` into `out` (exactly its decoded size) with `dctx`, a ZSTD_DCtx* owned by
  // the caller; `compressed` is scratch for the compressed bytes.
  Result<void> decode_frame(void* dctx, std::size_t i, std::vector<std::byte>& compressed,
                            std::span<std::byte> out) const;
  // Streams frame `i` through `dctx` and stores its decoded bytes [skip, skip + out.size()) in
  // `out`, decoding no further: a random read costs half a frame on average, not a whole one.
  Result<void> decode_range(void* dctx, std::size_t i, std::uint64_t skip, std::span<std::byte> out) const;

 private:
  SeekIndex index_;
  io::BlobSourcePtr blob_;
};

}  // namespace ocifs::compress
