#include <zstd.h>

#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/util/sha256.hpp"
#include "sample_data.hpp"

using namespace ocifs;
using namespace ocifs::compress;

using ocifs::test::expected_at;
using ocifs::test::make_data;
using ocifs::test::read_string;

namespace {

// One frame; with `stream`, made by ZSTD_compressStream2 without a pledged size (no content size
// in the header), as streaming producers write them.
std::string zstd_frame(std::string_view data, bool checksum = true, bool stream = false, int window_log = 0) {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 3);
  ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, checksum ? 1 : 0);
  if (window_log) ZSTD_CCtx_setParameter(cctx, ZSTD_c_windowLog, window_log);
  std::string out(ZSTD_compressBound(data.size()) + 64, '\0');
  std::size_t n = 0;
  if (stream) {
    // A first ZSTD_e_continue call keeps zstd from learning the size up front.
    ZSTD_inBuffer in{data.data(), data.size() / 2, 0};
    ZSTD_outBuffer o{out.data(), out.size(), 0};
    while (in.pos < in.size) REQUIRE(!ZSTD_isError(ZSTD_compressStream2(cctx, &o, &in, ZSTD_e_continue)));
    in.size = data.size();
    std::size_t left = 0;
    do {
      left = ZSTD_compressStream2(cctx, &o, &in, ZSTD_e_end);
      REQUIRE(!ZSTD_isError(left));
    } while (left != 0);
    n = o.pos;
  } else {
    n = ZSTD_compress2(cctx, out.data(), out.size(), data.data(), data.size());
    REQUIRE(!ZSTD_isError(n));
  }
  ZSTD_freeCCtx(cctx);
  out.resize(n);
  return out;
}

std::string skippable_frame(std::string_view payload, unsigned variant = 0) {
  std::string out;
  std::uint32_t magic = 0x184D2A50 + variant;
  auto put32 = [&](std::uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
  };
  put32(magic);
  put32(static_cast<std::uint32_t>(payload.size()));
  out += payload;
  return out;
}

io::BlobSourcePtr blob_of(std::string bytes, std::string name = "test.tar.zst") {
  return std::make_shared<io::MemorySource>(std::move(bytes), std::move(name));
}

struct Scan {
  std::string decoded;
  SeekIndex index;
  std::string compressed_sha256;
  std::string decoded_sha256;
};

Result<Scan> scan(io::BlobSourcePtr blob, const ScanOptions& options = {}) {
  OCIFS_ASSIGN(auto decoder, make_stream_decoder(Encoding::zstd, blob, options));
  Scan result;
  std::mt19937 rng(3);
  std::vector<std::byte> buf(300 * 1024);
  for (;;) {
    std::size_t want = rng() % 3 == 0 ? 512 : 1 + rng() % buf.size();
    if (rng() % 5 == 0) {
      // skip() decodes and discards: the byte is marked '?' (see same_except_skipped).
      std::uint64_t before = decoder->position();
      auto skipped = decoder->skip(1);
      if (!skipped) {
        if (decoder->position() == before && skipped.error().message.find("ends at") != std::string::npos)
          break;
        return std::move(skipped).error();
      }
      result.decoded.push_back('?');
      continue;
    }
    OCIFS_ASSIGN(std::size_t n, decoder->read(std::span(buf).first(want)));
    if (n == 0) break;
    result.decoded.append(reinterpret_cast<const char*>(buf.data()), n);
  }
  OCIFS_ASSIGN(result.index, decoder->finish());
  result.compressed_sha256 = decoder->compressed_sha256();
  result.decoded_sha256 = decoder->decoded_sha256();
  return result;
}

// Compares a scan's decoded bytes, where '?' marks bytes skipped, with the original.
bool same_except_skipped(const std::string& scanned, const std::string& data) {
  if (scanned.size() != data.size()) return false;
  for (std::size_t i = 0; i < data.size(); ++i) {
    if (scanned[i] != data[i] && scanned[i] != '?') return false;
  }
  return true;
}

void check_reads(const SeekableReader& reader, const std::string& data, int count = 300) {
  REQUIRE(reader.size() == data.size());
  std::mt19937_64 rng(42);
  for (int i = 0; i < count; ++i) {
    std::uint64_t offset = rng() % (data.size() + 1000);
    std::size_t length = (i % 5 == 0) ? rng() % (3 << 20) : rng() % 8192;
    INFO("offset " << offset << " length " << length);
    REQUIRE(read_string(reader, offset, length) == expected_at(data, offset, length));
  }
  auto cursor = reader.open_cursor();
  std::string whole;
  for (std::uint64_t offset = 0; offset < data.size();) {
    auto piece = read_string(*cursor, offset, 4096 + rng() % (128 * 1024));
    REQUIRE(!piece.empty());
    whole += piece;
    offset += piece.size();
  }
  REQUIRE(whole == data);
  auto random = reader.open_cursor();
  for (int i = 0; i < count; ++i) {
    std::uint64_t offset = rng() % data.size();
    std::size_t length = rng() % 70000;
    INFO("cursor offset " << offset << " length " << length);
    REQUIRE(read_string(*random, offset, length) == expected_at(data, offset, length));
  }
}

struct Built {
  std::string data;
  std::string blob;
  std::vector<ZstdFrame> frames;
};

// Frames of 100 KiB-1.5 MiB (some streamed, some without checksum), skippable frames between.
Built multi_frame(std::size_t size, std::uint64_t seed) {
  Built b;
  b.data = make_data(size, seed);
  std::mt19937_64 rng(seed);
  b.blob = skippable_frame("leading skippable");
  for (std::size_t off = 0; off < size;) {
    std::size_t n = std::min<std::size_t>(size - off, 100000 + rng() % 1500000);
    std::string frame = zstd_frame(std::string_view(b.data).substr(off, n), rng() % 2, rng() % 3 == 0);
    b.frames.push_back(ZstdFrame{b.blob.size(), frame.size(), off, n});
    b.blob += frame;
    if (rng() % 3 == 0) b.blob += skippable_frame(std::string(rng() % 300, 's'), rng() % 16);
    off += n;
  }
  b.blob += skippable_frame("", 15);
  return b;
}

}  // namespace

TEST_CASE("zstd: several frames with skippable frames between") {
  Built b = multi_frame(6 << 20, 1);
  auto blob = blob_of(b.blob);
  ScanOptions options;
  options.hash_decoded = true;
  auto s = scan(blob, options);
  INFO((s.ok() ? std::string() : s.error().message));
  REQUIRE(s.ok());
  CHECK(same_except_skipped(s->decoded, b.data));
  CHECK(s->compressed_sha256 == util::sha256_hex(b.blob));
  CHECK(s->decoded_sha256 == util::sha256_hex(b.data));
  const SeekIndex& index = s->index;
  CHECK(index.encoding == Encoding::zstd);
  CHECK(index.compressed_size == b.blob.size());
  CHECK(index.decoded_size == b.data.size());
  CHECK(!index.zstd_spilled);
  REQUIRE(index.zstd_frames.size() == b.frames.size());
  for (std::size_t i = 0; i < b.frames.size(); ++i) {
    INFO("frame " << i);
    CHECK(index.zstd_frames[i].compressed_offset == b.frames[i].compressed_offset);
    CHECK(index.zstd_frames[i].compressed_size == b.frames[i].compressed_size);
    CHECK(index.zstd_frames[i].decoded_offset == b.frames[i].decoded_offset);
    CHECK(index.zstd_frames[i].decoded_size == b.frames[i].decoded_size);
  }
  CHECK(!make_seekable_reader(index, blob_of(b.blob.substr(1))).ok());
  auto reader = make_seekable_reader(index, blob);
  REQUIRE(reader.ok());
  check_reads(**reader, b.data);
}

TEST_CASE("zstd: one frame, or a frame over the spill size, is spilled") {
  SECTION("one frame") {
    std::string data = make_data(3 << 20, 2);
    std::string blob = zstd_frame(data);
    auto s = scan(blob_of(blob));
    REQUIRE(s.ok());
    CHECK(same_except_skipped(s->decoded, data));
    CHECK(s->index.zstd_spilled);
    REQUIRE(s->index.zstd_frames.size() == 1);
    CHECK(s->index.zstd_frames[0].compressed_size == blob.size());
    auto missing = make_seekable_reader(s->index, blob_of(blob));
    REQUIRE(!missing.ok());
    CHECK(!make_seekable_reader(s->index, blob_of(blob), blob_of(data.substr(1), "decoded")).ok());
    auto reader = make_seekable_reader(s->index, blob_of(blob), blob_of(data, "decoded"));
    REQUIRE(reader.ok());
    check_reads(**reader, data, 100);
  }
  SECTION("a large frame among small ones") {
    std::string small = make_data(1 << 20, 3);
    std::string large = make_data(kSpillFrameSize + 1, 4);
    std::string blob = zstd_frame(small) + zstd_frame(large, false, true);
    auto s = scan(blob_of(blob));
    REQUIRE(s.ok());
    CHECK(same_except_skipped(s->decoded, small + large));
    CHECK(s->index.zstd_spilled);
    CHECK(s->index.zstd_frames.size() == 2);
  }
}

TEST_CASE("zstd: bad streams fail the scan with the blob and offset named") {
  Built b = multi_frame(2 << 20, 5);
  auto expect_error = [](std::string bytes) {
    auto s = scan(blob_of(std::move(bytes), "bad.tar.zst"));
    REQUIRE(!s.ok());
    CHECK_THAT(s.error().message, Catch::Contains("bad.tar.zst") && Catch::Contains("offset"));
    return s.error().message;
  };
  SECTION("truncated") {
    for (std::size_t cut :
         {std::size_t{1}, std::size_t{3}, std::size_t{20}, b.frames[0].compressed_offset + 2,
          b.frames[0].compressed_offset + 7, b.blob.size() / 2,
          b.frames.back().compressed_offset + b.frames.back().compressed_size - 1, b.blob.size() - 1}) {
      INFO("cut at " << cut);
      expect_error(b.blob.substr(0, cut));
    }
    CHECK(!scan(blob_of("")).ok());
  }
  SECTION("trailing garbage, including zero padding") {
    CHECK_THAT(expect_error(b.blob + "garbage!"), Catch::Contains("garbage"));
    expect_error(b.blob + std::string(512, '\0'));
    expect_error(b.blob + "\x28\xb5\x2f\xfd");
  }
  SECTION("corrupt bytes in checksummed frames") {
    std::string data = make_data(1 << 20, 6);
    std::string blob = zstd_frame(data.substr(0, 500000)) + zstd_frame(data.substr(500000));
    std::mt19937_64 rng(7);
    for (int i = 0; i < 60; ++i) {
      std::string bad = blob;
      std::size_t at = rng() % bad.size();
      bad[at] = static_cast<char>(bad[at] ^ (1 + rng() % 255));
      INFO("flip at " << at);
      expect_error(bad);
    }
  }
  SECTION("a window over the limit") {
    std::string data = make_data(1 << 20, 8);
    auto message = expect_error(zstd_frame(data, true, true, 28));
    CHECK_THAT(message, Catch::Contains("window"));
    CHECK(scan(blob_of(zstd_frame(data, true, true, 27))).ok());
  }
}

TEST_CASE("zstd: bad data behind a good index fails the read") {
  Built b = multi_frame(3 << 20, 9);
  auto s = scan(blob_of(b.blob));
  REQUIRE(s.ok());
  REQUIRE(s->index.zstd_frames.size() > 2);
  const ZstdFrame& f = s->index.zstd_frames[1];
  std::string bad = b.blob;
  std::fill(bad.begin() + f.compressed_offset, bad.begin() + f.compressed_offset + f.compressed_size / 2,
            '\x55');
  auto reader = make_seekable_reader(s->index, blob_of(bad, "bad.tar.zst"));
  REQUIRE(reader.ok());
  std::vector<std::byte> buf(4096);
  CHECK((*reader)->read_at(10, buf).ok());
  auto r = (*reader)->read_at(f.decoded_offset + 100, buf);
  REQUIRE(!r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("bad.tar.zst") && Catch::Contains("offset"));
  auto cursor = (*reader)->open_cursor();
  CHECK(!cursor->read_at(f.decoded_offset + 100, buf).ok());
  CHECK(cursor->read_at(10, buf).ok());

  // A frame table whose sizes lie about the frame: an error, not a short or wrong read.
  SeekIndex lying = s->index;
  lying.zstd_frames[1].decoded_size -= 1;
  lying.zstd_frames[2].decoded_offset -= 1;
  lying.zstd_frames[2].decoded_size += 1;
  auto lr = make_seekable_reader(lying, blob_of(b.blob));
  REQUIRE(lr.ok());
  CHECK((*lr)->read_at(f.decoded_offset, std::span(buf).first(1)).ok());  // a partial read cannot tell
  std::vector<std::byte> across(f.decoded_size);
  CHECK(!(*lr)->read_at(f.decoded_offset + 10, across).ok());  // up to the frame's indexed end
  CHECK(!(*lr)->read_at(f.decoded_offset, across).ok());       // the whole frame
  CHECK(!(*lr)->open_cursor()->read_at(f.decoded_offset + 10, buf).ok());
  // A frame longer than indexed is caught too.
  SeekIndex longer = s->index;
  longer.zstd_frames[1].decoded_size += 1;
  longer.zstd_frames[2].decoded_offset += 1;
  longer.zstd_frames[2].decoded_size -= 1;
  auto lo = make_seekable_reader(longer, blob_of(b.blob));
  REQUIRE(lo.ok());
  CHECK(!(*lo)->read_at(f.decoded_offset + 10, across).ok());
}

TEST_CASE("zstd: hash_compressed off leaves the raw digest to the caller") {
  Built b = multi_frame(2 << 20, 3);
  auto blob = blob_of(b.blob);
  ScanOptions options;
  options.hash_decoded = true;
  auto hashed = scan(blob, options);
  REQUIRE(hashed.ok());
  options.hash_compressed = false;
  auto plain = scan(blob, options);
  REQUIRE(plain.ok());
  CHECK(plain->compressed_sha256.empty());
  CHECK(hashed->compressed_sha256 == util::sha256_hex(b.blob));
  CHECK(plain->decoded_sha256 == util::sha256_hex(b.data));
  CHECK(plain->decoded == hashed->decoded);
  CHECK(plain->index.serialize() == hashed->index.serialize());
}

TEST_CASE("zstd: a frame only the streaming decoder takes reads back as it scanned") {
  // A compressed block of size 0 inside a frame: libzstd's streaming decoder (the scan's) skips
  // it, its one-shot decoder calls the frame corrupt (found by tests/fuzz, zstd_reader).
  auto block = [](int last, int type, std::uint32_t size) {
    std::uint32_t v = static_cast<std::uint32_t>(last) | static_cast<std::uint32_t>(type) << 1 | size << 3;
    return std::string{static_cast<char>(v & 0xff), static_cast<char>((v >> 8) & 0xff),
                       static_cast<char>(v >> 16)};
  };
  const std::string first(100, 'x');
  const std::string header("\x28\xb5\x2f\xfd\x00\x38", 6);  // magic, no content size, 128 KiB window
  const std::string odd = header + block(0, 0, 4) + "abcd" + block(0, 2, 0) + block(1, 0, 0);
  auto blob = blob_of(zstd_frame(first) + odd);
  auto s = scan(blob);
  REQUIRE(s.ok());
  REQUIRE(s->index.zstd_frames.size() == 2);
  REQUIRE_FALSE(s->index.zstd_spilled);
  auto reader = make_seekable_reader(s->index, blob);
  REQUIRE(reader.ok());
  CHECK(read_string(**reader, 100, 4) == "abcd");
  CHECK(read_string(**reader, 98, 10) == "xxabcd");
}
