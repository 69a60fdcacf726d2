// ChunkedReader, the reader of layers opened from a TOC (eStargz gzip members, zstd:chunked
// frames), over a chunk table and a blob from the input. The table keeps what the TOC parser
// guarantees (chunks tile the file in order, each within the blob, sizes within what its bytes
// can inflate to); digests are those of what the chunk's bytes really decode to, or (flag) of
// something else. Every read must return exactly the chunks' bytes, or fail when it touches a
// chunk whose bytes do not decode to its digest: a reader must never serve unverified bytes.
//
// Input: u8 codec (bit 0: zstd), u8 N chunks, N x (u32 blob offset, u16 compressed length,
// u16 inner offset, u32 size, u8 flags: bit 0 zeros, bit 1 wrong digest), u8 M reads,
// M x (u32 offset, u16 length), then the blob.
// libfuzzer: -max_len=65536
#include <memory>
#include <string>
#include <vector>

#include "ocifs/compress/chunked_reader.hpp"
#include "ocifs/util/sha256.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

namespace {

struct Expected {
  bool good = false;  // the chunk's bytes decode to its digest
  std::string bytes;  // then its content
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const auto codec = (in.u8() & 1) ? compress::ChunkCodec::zstd : compress::ChunkCodec::gzip;
  const std::uint64_t max_ratio = codec == compress::ChunkCodec::zstd ? 65536 : 2048;  // lazy_toc.hpp
  struct Raw {
    std::uint32_t blob_offset;
    std::uint16_t length, inner;
    std::uint32_t size;
    std::uint8_t flags;
  };
  std::vector<Raw> raw(in.u8() % 16);
  for (auto& r : raw) r = {in.u32(), in.u16(), in.u16(), in.u32(), in.u8()};
  std::vector<std::pair<std::uint64_t, std::size_t>> reads(in.u8() % 16);
  for (auto& r : reads) r = {in.u32(), in.u16()};
  const std::string_view blob = in.rest();
  if (blob.empty()) return 0;

  std::vector<compress::Chunk> chunks;
  std::vector<Expected> expected;
  std::uint64_t total = 0;
  for (const auto& r : raw) {
    compress::Chunk c;
    c.offset = total;
    Expected e;
    if (r.flags & 1) {
      c.zeros = true;
      c.size = (std::uint64_t{r.size} + 1) << 8;  // holes may be large: they are never allocated
      e.good = true;
    } else {
      c.blob_offset = r.blob_offset % blob.size();
      c.blob_end = c.blob_offset + 1 + r.length % (blob.size() - c.blob_offset);
      c.inner_offset = r.inner % 4096;
      c.size = 1 + r.size % std::min<std::uint64_t>(1u << 20, max_ratio * (c.blob_end - c.blob_offset));
      auto units = compress::decode_units(
          codec, fuzz::as_bytes(blob.substr(c.blob_offset, c.blob_end - c.blob_offset)),
          c.inner_offset + c.size);
      std::string content;
      if (units.ok() && units->size() == c.inner_offset + c.size) {
        content.assign(reinterpret_cast<const char*>(units->data()) + c.inner_offset, c.size);
      }
      e.good = content.size() == c.size && !(r.flags & 2);
      util::Sha256 sum;
      sum.update(e.good ? std::string_view(content) : std::string_view("not this chunk"));
      c.digest = sum.digest();
      e.bytes = std::move(content);
    }
    total += c.size;
    chunks.push_back(c);
    expected.push_back(std::move(e));
  }

  auto spans = std::make_shared<compress::SpanCache>(1u << 20);
  auto reader = std::make_shared<compress::ChunkedReader>(
      chunks, total, codec, std::make_shared<fuzz::ViewSource>(blob), spans, "layer fuzz");
  for (auto [offset, length] : reads) {
    offset %= total + 16;
    std::string buf(length, '\0');
    auto n = reader->read_at(offset, std::as_writable_bytes(std::span(buf)));
    // What the read covers, chunk by chunk.
    const std::uint64_t end = std::min<std::uint64_t>(offset + length, total);
    bool touches_bad = false;
    std::string want;
    for (std::size_t k = 0; k < chunks.size() && offset < end; ++k) {
      const auto& c = chunks[k];
      if (c.offset + c.size <= offset || c.offset >= end) continue;
      const std::uint64_t from = std::max(offset, c.offset), to = std::min(end, c.offset + c.size);
      if (!expected[k].good) touches_bad = true;
      if (c.zeros) {
        want.append(to - from, '\0');
      } else if (expected[k].good) {
        want.append(expected[k].bytes, from - c.offset, to - from);
      }
    }
    if (touches_bad) {
      check(!n.ok(), "a read at {} of {} over a chunk that does not match its digest succeeds", offset,
            length);
      continue;
    }
    check(n.ok(), "a read at {} of {} over good chunks fails: {}", offset, length,
          n.ok() ? "" : n.error().message);
    buf.resize(*n);
    check(buf == want, "a read at {} of {} returns other bytes", offset, length);
  }
  spans->stop();
  return 0;
}
