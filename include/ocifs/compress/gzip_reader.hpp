// GzipReader: the SeekableReader of a gzip layer. Reads are served from decoded spans (the bytes
// between two checkpoints) kept in a SpanCache: a span is inflated from its checkpoint as far as
// a read needs and extended by later reads, so reading files in layer order inflates each byte
// once, and a random read costs on average half a span of inflate (~0.5 ms at 512 KiB spans).
// Once a span has served several reads and one passes its middle (files read in layer order),
// the next two spans are inflated on the cache's read-ahead thread, so inflate runs ahead of
// whoever consumes the bytes instead of in turn with them. Both only over blob bytes that are
// local: where the span's bytes are still to be fetched (a registry layer read by range), a read
// inflates what it asked for and nothing more, so that it fetches nothing nobody asked for.
// Concurrent reads of one span share one inflate: a reader whose bytes are not there yet waits
// for it, at most until its own deadline; reads of different spans run in parallel. The index and blob are shared read-only: safe to call from many threads at once.
#pragma once

#include <memory>
#include <mutex>

#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/compress/span_cache.hpp"

namespace ocifs::compress {

class GzipReader final : public SeekableReader, public std::enable_shared_from_this<GzipReader> {
 public:
  // Checks that `index` is a usable gzip index. `spans` may be shared with other readers; null
  // gives this reader a cache of its own.
  static Result<SeekableReaderPtr> create(const SeekIndex& index, io::BlobSourcePtr blob,
                                          std::shared_ptr<SpanCache> spans = nullptr);

  GzipReader(std::shared_ptr<const SeekIndex> index, io::BlobSourcePtr blob, std::shared_ptr<SpanCache> spans);

  std::uint64_t size() const override { return index_->decoded_size; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  // Cursors share the span cache: they need no stream of their own.
  std::unique_ptr<ReadCursor> open_cursor() const override;
  void blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<BlobRange>& out) const override;

 private:
  // Copies [offset, offset + out.size()) out of span `span` (the range lies in the span),
  // inflating what is missing.
  Result<void> read_span(std::size_t span, std::uint64_t offset, std::span<std::byte> out) const;
  // With `lock` held on entry.mutex: inflates span `span` until its first `need` bytes are there,
  // or waits (within the thread's deadline) for the reader inflating it.
  Result<void> fill_span(std::size_t span, std::uint64_t need, SpanCache::Entry& entry,
                         std::unique_lock<std::mutex>& lock) const;
  void read_ahead(std::size_t span) const;
  std::uint64_t span_end(std::size_t span) const;
  // Whether the blob bytes span `span` decodes from are all local (inflating it fetches nothing).
  bool span_local(std::size_t span) const;

  std::shared_ptr<const SeekIndex> index_;
  io::BlobSourcePtr blob_;
  std::shared_ptr<SpanCache> spans_;
  std::uint64_t owner_;
};

}  // namespace ocifs::compress
