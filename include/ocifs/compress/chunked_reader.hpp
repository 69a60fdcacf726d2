// ChunkedReader: random access to a layer pulled lazily by its table of contents (eStargz,
// zstd:chunked). Each chunk is one gzip member or zstd frame in the blob, holding a piece of one
// file; the TOC (verified against the manifest) gives each its sha256. A read fetches the chunks
// it touches (the blob cache turns neighbouring ones into one request), decompresses each, and
// serves it only if it matches its digest; a chunk that does not is dropped from the blob cache
// and fetched once more before the read gets EIO. Decoded chunks are kept in the image's
// SpanCache. No other byte of the blob is read: nothing else is verified. Readers of one chunk
// share its fetch (single flight), each waiting at most until its own deadline.
//
// Offsets are those of the layer's index (layer/toc_layer.hpp): the files' data laid end to end.
// Thread-safe.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/compress/span_cache.hpp"

namespace ocifs::compress {

enum class ChunkCodec : unsigned char { gzip, zstd };

// The decoded bytes of the gzip members or zstd frames in `in`, back to back, at most `limit` of
// them: decoding stops there (what follows is not wanted, e.g. the tar headers after a chunk's
// data) or where `in` ends. Corrupt data, or data cut inside a member or frame before `limit`,
// is an error. For chunks, TOCs and the members between two files' data.
Result<std::vector<std::byte>> decode_units(ChunkCodec codec, std::span<const std::byte> in, std::uint64_t limit);

struct Chunk {
  std::uint64_t offset = 0;       // in the reader's decoded space
  std::uint64_t size = 0;         // decoded bytes
  std::uint64_t blob_offset = 0;  // where its gzip member / zstd frame starts in the blob
  std::uint64_t blob_end = 0;     // the member or frame ends at or before this
  std::uint64_t inner_offset = 0; // decoded bytes before the chunk's in its member (eStargz)
  std::array<std::uint8_t, 32> digest{};  // sha256 of the decoded bytes
  bool zeros = false;             // a hole: `size` zero bytes, nothing in the blob
};

class ChunkedReader final : public SeekableReader, public std::enable_shared_from_this<ChunkedReader> {
 public:
  // `chunks` must tile [0, size) in order (the TOC parser checks what makes that so).
  ChunkedReader(std::vector<Chunk> chunks, std::uint64_t size, ChunkCodec codec, io::BlobSourcePtr blob,
                std::shared_ptr<SpanCache> spans, std::string name);

  std::uint64_t size() const override { return size_; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::unique_ptr<ReadCursor> open_cursor() const override;
  void blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<BlobRange>& out) const override;

  // Chunks fetched and decoded so far, and how many failed their digest.
  std::uint64_t chunks_loaded() const { return loaded_; }

 private:
  // The decoded bytes of chunk `k`, from the cache or fetched, decompressed and checked.
  Result<std::shared_ptr<SpanCache::Entry>> load(std::size_t k) const;
  Result<std::vector<std::byte>> fetch_and_decode(const Chunk& chunk) const;

  std::vector<Chunk> chunks_;
  std::uint64_t size_;
  ChunkCodec codec_;
  io::BlobSourcePtr blob_;
  std::shared_ptr<SpanCache> spans_;
  std::uint64_t owner_;
  std::string name_;
  mutable std::atomic<std::uint64_t> loaded_{0};
};

}  // namespace ocifs::compress
