// SeekableReader: random access to the decoded stream of one layer, given its SeekIndex and its
// blob. Shared by every open file of the layer: safe to call from many threads at once.
// ReadCursor: one live decoder for one open file, so sequential reads continue where the last
// one stopped instead of restarting at a checkpoint. Not synchronised: one user at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "ocifs/compress/seek_index.hpp"
#include "ocifs/io/blob_source.hpp"

namespace ocifs::compress {

class ReadCursor {
 public:
  virtual ~ReadCursor() = default;
  // Reads decoded bytes at `offset`; fewer than asked only at the end of the stream.
  virtual Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) = 0;
};

// Bytes of a blob (a source's [offset, offset + length)).
struct BlobRange {
  io::BlobSourcePtr blob;
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  // Bytes of an index (a checkpoint's state in a shared index) that reading the layer's bytes
  // needs first.
  bool index = false;
};

class SeekableReader {
 public:
  virtual ~SeekableReader() = default;
  virtual std::uint64_t size() const = 0;  // decoded size
  // Stateless read: resumes from the nearest checkpoint / frame every time.
  virtual Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const = 0;
  virtual std::unique_ptr<ReadCursor> open_cursor() const = 0;
  // Appends the source ranges a read of decoded [offset, offset + length) reads (the gzip spans,
  // zstd frames or chunks around it), for prefetching. Approximate at the edges, never short.
  virtual void blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<BlobRange>& out) const = 0;
};

using SeekableReaderPtr = std::shared_ptr<const SeekableReader>;

class SpanCache;

// `blob` is the raw layer blob; for zstd_spilled indexes, `decoded` is the decoded stream kept in
// the cache (ignored otherwise). For tar, reads go straight to `blob`. Gzip readers keep decoded
// spans in `spans` (shared by the layers of an image), or in a cache of their own if null.
Result<SeekableReaderPtr> make_seekable_reader(const SeekIndex& index, io::BlobSourcePtr blob,
                                               io::BlobSourcePtr decoded = nullptr,
                                               std::shared_ptr<SpanCache> spans = nullptr);

// The decoded stream as a BlobSource (e.g. the members of a gzipped docker-archive).
class DecodedSource final : public io::BlobSource {
 public:
  DecodedSource(SeekableReaderPtr reader, std::string name)
      : reader_(std::move(reader)), name_(std::move(name)) {}
  std::uint64_t size() const override { return reader_->size(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    return reader_->read_at(offset, buf);
  }
  std::string describe() const override { return name_; }

 private:
  SeekableReaderPtr reader_;
  std::string name_;
};

}  // namespace ocifs::compress
