#include "ocifs/compress/chunked_reader.hpp"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "forwarding_cursor.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::compress {

namespace {

// A compressed chunk may not be absurdly larger than what it holds: a TOC pointing a small chunk
// at gigabytes of blob would make every read fetch them.
constexpr std::uint64_t kMaxOverhead = 1u << 20;

Result<std::vector<std::byte>> gunzip_units(std::span<const std::byte> in, std::uint64_t limit) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return make_error(std::errc::not_enough_memory, "inflateInit2 failed");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<std::byte*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::vector<std::byte> out;
  int rc = Z_OK;
  while (out.size() < limit) {
    if (rc == Z_STREAM_END) {
      if (z.avail_in == 0 || inflateReset(&z) != Z_OK) break;  // else the next member follows
      rc = Z_OK;
    }
    if (rc != Z_OK) break;
    const std::size_t have = out.size();
    out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(limit, have + (1u << 20))));
    z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
    z.avail_out = static_cast<uInt>(out.size() - have);
    rc = inflate(&z, Z_NO_FLUSH);
    out.resize(out.size() - z.avail_out);
  }
  inflateEnd(&z);
  if (out.size() < limit && rc != Z_STREAM_END) {
    return make_error(std::errc::io_error, "the gzip data is {} after {} bytes",
                      rc == Z_OK || rc == Z_BUF_ERROR ? "cut short" : "corrupt", out.size());
  }
  return out;
}

Result<std::vector<std::byte>> unzstd_units(std::span<const std::byte> in, std::uint64_t limit) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), ZSTD_freeDCtx);
  if (!ctx) return make_error(std::errc::not_enough_memory, "ZSTD_createDCtx failed");
  ZSTD_inBuffer input{in.data(), in.size(), 0};
  std::vector<std::byte> out;
  std::size_t rc = 0;
  while (out.size() < limit) {
    const std::size_t have = out.size();
    out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(limit, have + (1u << 20))));
    ZSTD_outBuffer output{out.data() + have, out.size() - have, 0};
    rc = ZSTD_decompressStream(ctx.get(), &output, &input);
    out.resize(have + output.pos);
    if (ZSTD_isError(rc)) return make_error(std::errc::io_error, "the zstd data is corrupt: {}", ZSTD_getErrorName(rc));
    // Input used up and nothing more coming out: the end, or a frame cut short.
    if (input.pos == input.size && output.pos < output.size) break;
  }
  if (out.size() < limit && rc != 0) {
    return make_error(std::errc::io_error, "the zstd data is cut short after {} bytes", out.size());
  }
  return out;
}

}  // namespace

Result<std::vector<std::byte>> decode_units(ChunkCodec codec, std::span<const std::byte> in, std::uint64_t limit) {
  return codec == ChunkCodec::gzip ? gunzip_units(in, limit) : unzstd_units(in, limit);
}

ChunkedReader::ChunkedReader(std::vector<Chunk> chunks, std::uint64_t size, ChunkCodec codec, io::BlobSourcePtr blob,
                             std::shared_ptr<SpanCache> spans, std::string name)
    : chunks_(std::move(chunks)),
      size_(size),
      codec_(codec),
      blob_(std::move(blob)),
      spans_(spans ? std::move(spans) : std::make_shared<SpanCache>()),
      owner_(spans_->new_owner()),
      name_(std::move(name)) {}

std::unique_ptr<ReadCursor> ChunkedReader::open_cursor() const {
  return std::make_unique<ForwardingCursor>(shared_from_this());
}

void ChunkedReader::blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<BlobRange>& out) const {
  auto it = std::upper_bound(chunks_.begin(), chunks_.end(), offset,
                             [](std::uint64_t v, const Chunk& c) { return v < c.offset; });
  if (it != chunks_.begin()) --it;
  for (; it != chunks_.end() && it->offset < offset + length; ++it) {
    if (it->zeros || it->offset + it->size <= offset) continue;
    // Chunks sharing a member (inner_offset) or lying back to back make one range.
    if (!out.empty() && out.back().blob == blob_ && out.back().offset + out.back().length >= it->blob_offset) {
      out.back().length = std::max(out.back().length, it->blob_end - out.back().offset);
    } else {
      out.push_back({blob_, it->blob_offset, it->blob_end - it->blob_offset});
    }
  }
}

Result<std::vector<std::byte>> ChunkedReader::fetch_and_decode(const Chunk& chunk) const {
  if (chunk.zeros) {  // read_at serves holes itself
    return make_error(std::errc::invalid_argument, "cannot read {}: the chunk at offset {} is a hole", name_,
                      chunk.offset);
  }
  // The member's decoded bytes up to the chunk's end; the chunk is the last `size` of them.
  const std::uint64_t want = chunk.inner_offset + chunk.size;
  const std::uint64_t end = std::min(chunk.blob_end, blob_->size());
  if (chunk.blob_offset >= end || end - chunk.blob_offset > 2 * want + kMaxOverhead) {
    return make_error(std::errc::io_error, "cannot read {}: the chunk at offset {} claims bytes {}-{} of the blob",
                      name_, chunk.offset, chunk.blob_offset, chunk.blob_end);
  }
  std::vector<std::byte> in(end - chunk.blob_offset);
  for (int attempt = 0;; ++attempt) {
    OCIFS_TRY(blob_->read_exact(chunk.blob_offset, in));
    auto decoded = decode_units(codec_, in, want);
    std::string_view problem = "does not match its digest in the TOC";
    if (!decoded) {
      problem = decoded.error().message;
    } else if (decoded->size() < want) {
      problem = "holds less than the TOC says";
    } else {
      util::Sha256 sum;
      sum.update(std::span<const std::byte>(*decoded).subspan(chunk.inner_offset));
      if (sum.digest() == chunk.digest) {
        auto out = std::move(decoded).value();
        if (chunk.inner_offset > 0) out.erase(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(chunk.inner_offset));
        return out;
      }
    }
    // Bytes from a cache that can drop them get one more fetch: a bad copy heals.
    if (attempt == 0 && blob_->discard(chunk.blob_offset, in.size())) continue;
    return make_error(std::errc::io_error, "cannot read {}: the chunk at blob bytes {}-{} {}", name_,
                      chunk.blob_offset, end - 1, problem);
  }
}

Result<std::shared_ptr<SpanCache::Entry>> ChunkedReader::load(std::size_t k) const {
  auto entry = spans_->entry(owner_, k);
  std::unique_lock lock(entry->mutex);
  while (!entry->charged) {  // charged: complete
    if (entry->filling) {
      if (!SpanCache::wait_turn(*entry, lock, [&] { return entry->charged; })) {
        return util::deadline_passed(fmt::format("read {} at offset {}: another read is still fetching its chunk",
                                                 name_, chunks_[k].offset));
      }
      continue;
    }
    SpanCache::Filling filling(*entry, lock);
    lock.unlock();  // the fetch may be slow: readers of other chunks go on
    auto decoded = fetch_and_decode(chunks_[k]);
    lock.lock();
    if (!decoded) {
      spans_->drop(owner_, k);
      return std::move(decoded).error();
    }
    entry->data = std::move(decoded).value();
    entry->filled = entry->data.size();
    entry->charged = true;
    loaded_.fetch_add(1, std::memory_order_relaxed);
    spans_->charge(owner_, k, entry->data.size());
  }
  return entry;
}

Result<std::size_t> ChunkedReader::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  std::size_t done = 0;
  while (done < buf.size() && offset + done < size_) {
    const std::uint64_t at = offset + done;
    // The last chunk starting at or before `at`.
    auto it = std::upper_bound(chunks_.begin(), chunks_.end(), at,
                               [](std::uint64_t v, const Chunk& c) { return v < c.offset; });
    if (it == chunks_.begin() || at >= std::prev(it)->offset + std::prev(it)->size) {
      return make_error(std::errc::io_error, "cannot read {} at offset {}: no chunk holds it", name_, at);
    }
    const std::size_t k = static_cast<std::size_t>(std::prev(it) - chunks_.begin());
    if (chunks_[k].zeros) {
      // A hole: served as zeros, never allocated (a TOC may declare one of any size).
      const auto n = static_cast<std::size_t>(
          std::min<std::uint64_t>(buf.size() - done, chunks_[k].offset + chunks_[k].size - at));
      std::memset(buf.data() + done, 0, n);
      done += n;
      continue;
    }
    OCIFS_ASSIGN(auto entry, load(k));
    std::lock_guard lock(entry->mutex);
    const std::uint64_t within = at - chunks_[k].offset;
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size() - done, entry->data.size() - within));
    std::memcpy(buf.data() + done, entry->data.data() + within, n);
    done += n;
  }
  return done;
}

}  // namespace ocifs::compress
