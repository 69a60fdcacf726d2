#include "ocifs/compress/gzip_reader.hpp"

#include <algorithm>
#include <cstring>

#include "forwarding_cursor.hpp"
#include "ocifs/compress/gzip_cursor.hpp"

namespace ocifs::compress {

namespace {

// A read that must inflate goes at least this far past what it asked for: the next read of a
// file read in order (the kernel asks 128 KiB at a time) then finds its bytes ready.
constexpr std::uint64_t kMinExtend = 128u << 10;
// Spans inflated ahead of a reader reading in order: two keep the read-ahead thread busy while
// the reader consumes one (inflate ~560 MB/s is slower than copying out).
constexpr std::size_t kReadAheadSpans = 2;

}  // namespace

Result<SeekableReaderPtr> GzipReader::create(const SeekIndex& index, io::BlobSourcePtr blob,
                                             std::shared_ptr<SpanCache> spans) {
  if (index.encoding != Encoding::gzip) {
    return make_error(std::errc::invalid_argument, "cannot read {} as gzip: the index is for {}",
                      blob->describe(), to_string(index.encoding));
  }
  if (index.decoded_size > 0 && (index.gzip_points.empty() || index.gzip_points.front().decoded_offset != 0 ||
                                 !index.gzip_points.front().member_start)) {
    return make_error(std::errc::invalid_argument,
                      "cannot read {}: its gzip index has no checkpoint at offset 0", blob->describe());
  }
  if (blob->size() != index.compressed_size) {
    return make_error(std::errc::invalid_argument, "cannot read {}: the blob has {} bytes, its index says {}",
                      blob->describe(), blob->size(), index.compressed_size);
  }
  if (!spans) spans = std::make_shared<SpanCache>();
  return SeekableReaderPtr(
      std::make_shared<GzipReader>(std::make_shared<SeekIndex>(index), std::move(blob), std::move(spans)));
}

GzipReader::GzipReader(std::shared_ptr<const SeekIndex> index, io::BlobSourcePtr blob,
                       std::shared_ptr<SpanCache> spans)
    : index_(std::move(index)), blob_(std::move(blob)), spans_(std::move(spans)), owner_(spans_->new_owner()) {}

bool GzipReader::span_local(std::size_t span) const {
  const auto& points = index_->gzip_points;
  const std::uint64_t from = points[span].compressed_offset;
  const std::uint64_t to = span + 1 < points.size() ? points[span + 1].compressed_offset : index_->compressed_size;
  return blob_->present(from, to - from);
}

std::uint64_t GzipReader::span_end(std::size_t span) const {
  const auto& points = index_->gzip_points;
  return span + 1 < points.size() ? points[span + 1].decoded_offset : index_->decoded_size;
}

Result<void> GzipReader::fill_span(std::size_t span, std::uint64_t need, SpanCache::Entry& entry,
                                   std::unique_lock<std::mutex>& lock) const {
  const std::uint64_t start = index_->gzip_points[span].decoded_offset;
  const std::uint64_t length = span_end(span) - start;
  while (entry.filled < need) {
    if (entry.filling) {
      if (!SpanCache::wait_turn(entry, lock, [&] { return entry.filled >= need; })) {
        return util::deadline_passed(
            fmt::format("read {} at decoded offset {}: another read is still inflating it", blob_->describe(),
                        start + entry.filled));
      }
      continue;
    }
    SpanCache::Filling filling(entry, lock);
    if (!entry.charged) {
      // Reserved once: the charge is the real footprint, and the bytes never move. Not sized to
      // the whole span: its pages are touched only as far as reads need (a random 4 KiB read
      // that faulted in a whole 1 MiB span took 0.9 ms instead of 0.55).
      entry.data.reserve(length);
      spans_->charge(owner_, span, length);
      entry.charged = true;
    }
    if (!entry.cursor) entry.cursor = std::make_unique<GzipCursor>(index_, blob_);
    const std::uint64_t have = entry.filled;
    // Past what was asked for only over local blob bytes: over a network the extension would
    // fetch input nobody asked for (a cold mount fetched a chunk past the end of many a file).
    const std::uint64_t target = span_local(span) ? std::min(length, std::max(need, have + kMinExtend)) : need;
    if (entry.data.size() < target) entry.data.resize(target);  // within the reserved capacity
    auto* cursor = entry.cursor.get();
    auto out = std::span(entry.data).subspan(have, target - have);
    lock.unlock();  // other readers copy out [0, have) meanwhile; nobody else writes past it
    auto n = cursor->read_at(start + have, out);
    lock.lock();
    if (!n || *n != out.size()) {
      entry.cursor.reset();
      spans_->drop(owner_, span);
      if (!n) return std::move(n).error();
      return make_error(std::errc::io_error, "cannot inflate {}: span at decoded offset {} ends early",
                        blob_->describe(), start);
    }
    entry.filled = target;
    if (target == length) entry.cursor.reset();  // complete: the stream's ~200 KiB can go
  }
  return util::success();
}

void GzipReader::read_ahead(std::size_t span) const {
  const auto& points = index_->gzip_points;
  for (std::size_t next = span + 1; next <= span + kReadAheadSpans && next < points.size(); ++next) {
    // Not over bytes still to be fetched: a reader in order through one file reads on past its end
    // only here, and over a network that fetches (serially, ahead of the reads that do need the
    // link) what may never be read. Sequential reads of a remote file fetch as they go instead.
    if (!span_local(next)) return;
    spans_->prefetch([weak = weak_from_this(), next] {
      auto self = weak.lock();
      if (!self) return;
      auto entry = self->spans_->entry(self->owner_, next);
      std::unique_lock lock(entry->mutex);
      if (entry->filling) return;  // a reader is at it already
      entry->prefetched = true;
      const std::uint64_t length = self->span_end(next) - self->index_->gzip_points[next].decoded_offset;
      (void)self->fill_span(next, length, *entry, lock);  // a failure shows on the real read
    });
  }
}

Result<void> GzipReader::read_span(std::size_t span, std::uint64_t offset, std::span<std::byte> out) const {
  const std::uint64_t start = index_->gzip_points[span].decoded_offset;
  const std::uint64_t middle = start + (span_end(span) - start) / 2;
  auto entry = spans_->entry(owner_, span);
  bool reading_on;
  {
    std::unique_lock lock(entry->mutex);
    OCIFS_TRY(fill_span(span, offset + out.size() - start, *entry, lock));
    std::memcpy(out.data(), entry->data.data() + (offset - start), out.size());
    // The first read past the middle of a span that is being read in order (this read starts
    // exactly where the last one of the span ended, or the span was itself read ahead) asks for
    // the spans after it. Reads of files here and there in a span are not in order, even the
    // next file of the tar (512 bytes of header further): inflating spans ahead for them only
    // costs, and over a network fetches bytes nobody reads (a cold `chroot python3` from a
    // shared index fetched 20.9 MB with any second read counted as in order, 13.8 MB so).
    // A request of a sequential reader served out of order misses once; the next one resumes.
    const std::uint64_t at = offset - start;
    bool in_order = (entry->last_end != 0 && at == entry->last_end) || entry->prefetched;
    entry->last_end = at + out.size();
    reading_on = in_order && offset + out.size() > middle && !entry->read_ahead;
    entry->read_ahead |= reading_on;
  }
  if (reading_on) read_ahead(span);
  return util::success();
}

Result<std::size_t> GzipReader::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  const std::uint64_t size = index_->decoded_size;
  if (offset >= size || buf.empty()) return std::size_t{0};
  const auto length = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - offset));
  const auto& points = index_->gzip_points;
  auto it = std::upper_bound(points.begin(), points.end(), offset,
                             [](std::uint64_t off, const GzipCheckpoint& p) { return off < p.decoded_offset; });
  auto span = static_cast<std::size_t>(it - points.begin()) - 1;  // create() ensured a point at 0
  std::size_t done = 0;
  while (done < length) {
    std::uint64_t at = offset + done;
    while (span + 1 < points.size() && points[span + 1].decoded_offset <= at) ++span;
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(length - done, span_end(span) - at));
    OCIFS_TRY(read_span(span, at, buf.subspan(done, n)));
    done += n;
  }
  return length;
}

void GzipReader::blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<BlobRange>& out) const {
  const std::uint64_t size = index_->decoded_size;
  if (offset >= size || length == 0) return;
  const auto& points = index_->gzip_points;
  auto first = std::upper_bound(points.begin(), points.end(), offset,
                                [](std::uint64_t off, const GzipCheckpoint& p) { return off < p.decoded_offset; });
  auto last = std::lower_bound(points.begin(), points.end(), std::min(size, offset + length),
                               [](const GzipCheckpoint& p, std::uint64_t off) { return p.decoded_offset < off; });
  // The states of the checkpoints the reads will start from, when they are fetched from elsewhere
  // (a shared index): before the blob bytes, which are of no use without them.
  if (const auto& remote = index_->remote_states) {
    for (auto point = std::prev(first); point != last; ++point) {
      if (auto where = remote->location(static_cast<std::size_t>(point - points.begin()))) {
        out.push_back({where->blob, where->offset, where->length, true});
      }
    }
  }
  const std::uint64_t from = std::prev(first)->compressed_offset;
  // Inflating up to the next checkpoint reads the blob up to its offset (and a little past:
  // ISA-L takes input in blocks).
  const std::uint64_t to = last == points.end() ? index_->compressed_size
                                                : std::min(index_->compressed_size, last->compressed_offset + (64u << 10));
  out.push_back({blob_, from, to - from});
}

std::unique_ptr<ReadCursor> GzipReader::open_cursor() const {
  return std::make_unique<ForwardingCursor>(shared_from_this());
}

}  // namespace ocifs::compress
