// The random-access decoders checked against a straight decode of the same bytes (shared by
// fuzz_gzip_reader and fuzz_zstd_reader). The input is the compressed stream plus a list of
// reads: the stream is decoded front to back by the scan's StreamDecoder, which records the
// seek index; then a SeekableReader over that index, and a ReadCursor, must return exactly the
// decoded bytes for every read (short only at the end), and the chunk decoder of TOC layers
// (decode_units: zlib and libzstd, where the scan uses ISA-L and libzstd's streaming) must
// decode the same bytes.
//
// Input: u8 N, N x (u32 offset, u16 length) reads, u8 gzip span (16 KiB * (1 + x % 4)), then
// the compressed stream.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ocifs/compress/chunked_reader.hpp"
#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/compress/span_cache.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "support.hpp"

namespace ocifs::fuzz {

// Decoded streams beyond this are not checked: a few KiB of input can decode to gigabytes.
inline constexpr std::size_t kMaxDecoded = 8u << 20;

struct Read {
  std::uint64_t offset;
  std::size_t length;
};

inline std::string expected_at(const std::string& data, std::uint64_t offset, std::size_t length) {
  if (offset >= data.size()) return {};
  return data.substr(offset, length);
}

template <class Reader>
void check_reads(Reader& reader, const std::string& decoded, const std::vector<Read>& reads,
                 std::string_view what) {
  for (const auto& r : reads) {
    std::string buf(r.length, '\0');
    auto n = reader.read_at(r.offset, std::as_writable_bytes(std::span(buf)));
    check(n.ok(), "{} read of {} at {} fails: {}", what, r.length, r.offset, n.ok() ? "" : n.error().message);
    buf.resize(*n);
    check(buf == expected_at(decoded, r.offset, r.length), "{} read of {} at {} returns other bytes", what,
          r.length, r.offset);
  }
}

inline int check_decoder(compress::Encoding encoding, const std::uint8_t* data, std::size_t size) {
  Input in(data, size);
  std::vector<Read> reads(in.u8() % 16);
  for (auto& r : reads) {
    r.offset = in.u32();
    r.length = in.u16();
  }
  compress::ScanOptions options;
  options.gzip_span = (16u << 10) * (1 + in.u8() % 4);
  const std::string_view compressed = in.rest();
  auto blob = std::make_shared<ViewSource>(compressed);

  // The straight decode, as the scan does it.
  auto decoder = compress::make_stream_decoder(encoding, blob, options);
  if (!decoder.ok()) return 0;
  std::string decoded;
  std::string buf(64u << 10, '\0');
  for (;;) {
    auto n = (*decoder)->read(std::as_writable_bytes(std::span(buf)));
    if (!n.ok()) return 0;
    if (*n == 0) break;
    decoded.append(buf, 0, *n);
    if (decoded.size() > kMaxDecoded) return 0;
  }
  auto index = (*decoder)->finish();
  if (!index.ok()) return 0;
  check(index->decoded_size == decoded.size(), "index says {} decoded bytes, the decode gave {}",
        index->decoded_size, decoded.size());
  check(index->compressed_size == compressed.size(), "index says {} compressed bytes, the blob has {}",
        index->compressed_size, compressed.size());
  auto reloaded = compress::SeekIndex::deserialize(index->serialize());
  check(reloaded.ok(), "the seek index does not load back: {}",
        reloaded.ok() ? "" : reloaded.error().message);

  // Every read at a random offset, then at the checkpoints' and frames' edges.
  for (auto& r : reads) r.offset %= decoded.size() + 64;
  for (const auto& p : index->gzip_points)
    reads.push_back({p.decoded_offset > 3 ? p.decoded_offset - 3 : 0, 7});
  for (const auto& f : index->zstd_frames)
    reads.push_back({f.decoded_offset > 3 ? f.decoded_offset - 3 : 0, 7});
  reads.push_back({0, decoded.size() + 1});

  auto spans = std::make_shared<compress::SpanCache>(1u << 20);
  auto copy = std::make_shared<ViewSource>(decoded, "decoded copy");
  auto reader = compress::make_seekable_reader(*reloaded, blob, copy, spans);
  check(reader.ok(), "no reader over a stream that decoded: {}", reader.ok() ? "" : reader.error().message);
  check((*reader)->size() == decoded.size(), "reader size {} of {}", (*reader)->size(), decoded.size());
  check_reads(**reader, decoded, reads, "reader");
  auto cursor = (*reader)->open_cursor();
  check_reads(*cursor, decoded, reads, "cursor");
  for (const auto& r : reads) {
    std::vector<compress::BlobRange> ranges;
    (*reader)->blob_ranges(r.offset, r.length, ranges);
    for (const auto& range : ranges) {
      check(range.offset <= range.blob->size() && range.length <= range.blob->size() - range.offset,
            "blob range {}+{} past the {}-byte blob", range.offset, range.length, range.blob->size());
    }
  }
  spans->stop();

  // The chunk decoder of TOC layers on the same bytes, whole and cut at each read's end.
  const auto codec =
      encoding == compress::Encoding::gzip ? compress::ChunkCodec::gzip : compress::ChunkCodec::zstd;
  for (const auto& r : reads) {
    const std::uint64_t limit = std::min<std::uint64_t>(r.offset + r.length, decoded.size());
    auto units = compress::decode_units(codec, as_bytes(compressed), limit);
    check(units.ok(), "decode_units refuses what the scan decoded: {}",
          units.ok() ? "" : units.error().message);
    check(std::string_view(reinterpret_cast<const char*>(units->data()), units->size()) ==
              std::string_view(decoded).substr(0, limit),
          "decode_units decodes other bytes than the scan (limit {})", limit);
  }
  return 0;
}

}  // namespace ocifs::fuzz
