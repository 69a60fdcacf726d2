#include <zlib.h>

#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "ocifs/compress/seek_index.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/io/blob_source.hpp"
#include "sample_data.hpp"

using namespace ocifs;
using namespace ocifs::compress;

namespace {


// A real gzip index: 2 MiB of mixed data at 64 KiB spans.
SeekIndex gzip_index() {
  std::mt19937_64 rng(1);
  std::string data;
  while (data.size() < (2u << 20)) {
    // Runs of random bytes keep deflate blocks short (~16K literals each).
    if (rng() % 2)
      for (int i = 0; i < 100; ++i) data += "some text that compresses rather well, ";
    else
      for (int i = 0; i < 4096; ++i) data.push_back(static_cast<char>(rng()));
  }
  auto blob = std::make_shared<io::MemorySource>(test::gzip_member(data), "x.gz");
  auto decoder = make_stream_decoder(Encoding::gzip, blob, ScanOptions{64 << 10, false, true});
  REQUIRE(decoder.ok());
  auto index = (*decoder)->finish();
  REQUIRE(index.ok());
  REQUIRE(index->gzip_points.size() > 10);
  return *index;
}

SeekIndex zstd_index(bool spilled) {
  SeekIndex index;
  index.encoding = Encoding::zstd;
  std::uint64_t c = 13, d = 0;  // a skippable frame first
  for (int i = 0; i < 5; ++i) {
    std::uint64_t cs = 1000 + i * 10, ds = (spilled && i == 2) ? kSpillFrameSize + 1 : 100000 + i;
    index.zstd_frames.push_back(ZstdFrame{c, cs, d, ds});
    c += cs + (i % 2) * 20;
    d += ds;
  }
  index.compressed_size = c;
  index.decoded_size = d;
  index.zstd_spilled = spilled;
  return index;
}

bool same(const SeekIndex& a, const SeekIndex& b) {
  if (a.encoding != b.encoding || a.compressed_size != b.compressed_size ||
      a.decoded_size != b.decoded_size || a.zstd_spilled != b.zstd_spilled ||
      a.gzip_points.size() != b.gzip_points.size() || a.zstd_frames.size() != b.zstd_frames.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.gzip_points.size(); ++i) {
    const auto &p = a.gzip_points[i], &q = b.gzip_points[i];
    if (p.compressed_offset != q.compressed_offset || p.decoded_offset != q.decoded_offset ||
        p.member_start != q.member_start || p.state != q.state) {
      return false;
    }
  }
  for (std::size_t i = 0; i < a.zstd_frames.size(); ++i) {
    const auto &f = a.zstd_frames[i], &g = b.zstd_frames[i];
    if (f.compressed_offset != g.compressed_offset || f.compressed_size != g.compressed_size ||
        f.decoded_offset != g.decoded_offset || f.decoded_size != g.decoded_size) {
      return false;
    }
  }
  return true;
}

// Rewrites the trailing CRC-32 so that only the semantic checks can reject the bytes.
std::string with_crc(std::string bytes) {
  bytes.resize(bytes.size() - 4);
  uLong crc = crc32_z(0, reinterpret_cast<const Bytef*>(bytes.data()), bytes.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>(crc >> (8 * i)));
  return bytes;
}

void put32(std::string& bytes, std::size_t at, std::uint32_t value) {
  for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>(value >> (8 * i));
}

void expect_rejected(const SeekIndex& index) {
  auto r = SeekIndex::deserialize(index.serialize());
  REQUIRE(!r.ok());
  CHECK_THAT(r.error().message, Catch::StartsWith("cannot load seek index"));
}

}  // namespace

TEST_CASE("seek index: round trips") {
  SECTION("gzip") {
    SeekIndex index = gzip_index();
    auto back = SeekIndex::deserialize(index.serialize());
    REQUIRE(back.ok());
    CHECK(same(index, *back));
  }
  SECTION("zstd") {
    for (bool spilled : {false, true}) {
      SeekIndex index = zstd_index(spilled);
      auto back = SeekIndex::deserialize(index.serialize());
      REQUIRE(back.ok());
      CHECK(same(index, *back));
    }
  }
  SECTION("tar and empty") {
    SeekIndex tar;
    tar.compressed_size = tar.decoded_size = 12345;
    auto back = SeekIndex::deserialize(tar.serialize());
    REQUIRE(back.ok());
    CHECK(same(tar, *back));
    SeekIndex empty_gzip;
    empty_gzip.encoding = Encoding::gzip;
    empty_gzip.compressed_size = 20;
    empty_gzip.gzip_points.push_back(GzipCheckpoint{0, 0, true, {}});
    REQUIRE(SeekIndex::deserialize(empty_gzip.serialize()).ok());
  }
}

TEST_CASE("seek index: damaged bytes are rejected") {
  for (const SeekIndex& index : {gzip_index(), zstd_index(false)}) {
    std::string bytes = index.serialize();
    std::mt19937_64 rng(2);
    for (std::size_t len = 0; len < bytes.size(); len += 1 + len / 7) {
      INFO("truncated to " << len);
      CHECK(!SeekIndex::deserialize(std::string_view(bytes).substr(0, len)).ok());
    }
    CHECK(!SeekIndex::deserialize(bytes + "x").ok());
    for (int i = 0; i < 500; ++i) {
      std::string bad = bytes;
      std::size_t at = rng() % bad.size();
      bad[at] = static_cast<char>(bad[at] ^ (1 + rng() % 255));
      INFO("flip at " << at);
      CHECK(!SeekIndex::deserialize(bad).ok());
    }
    // With the checksum recomputed, damage must still never crash the parser; in the header and
    // the fixed fields it is caught by the consistency checks.
    for (int i = 0; i < 2000; ++i) {
      std::string bad = bytes;
      std::size_t at = rng() % std::min<std::size_t>(bad.size() - 4, 200);
      bad[at] = static_cast<char>(bad[at] ^ (1 + rng() % 255));
      auto r = SeekIndex::deserialize(with_crc(bad));
      if (r.ok()) CHECK(r->serialize() == with_crc(bad));  // an accepted index is one we could write
    }
  }
}

TEST_CASE("seek index: inconsistent contents are rejected") {
  SECTION("counts larger than the bytes") {
    std::string bytes = gzip_index().serialize();
    put32(bytes, 24, 0xffffffff);
    CHECK(!SeekIndex::deserialize(with_crc(bytes)).ok());
    std::string z = zstd_index(false).serialize();
    put32(z, 28, 0x10000000);
    CHECK(!SeekIndex::deserialize(with_crc(z)).ok());
    put32(z, 28, 4);  // one frame fewer than present
    CHECK(!SeekIndex::deserialize(with_crc(z)).ok());
  }
  SECTION("version and encoding") {
    std::string bytes = gzip_index().serialize();
    bytes[4] = 1;  // version 1 held zlib windows
    CHECK_THAT(SeekIndex::deserialize(with_crc(bytes)).error().message, Catch::Contains("version"));
    bytes = gzip_index().serialize();
    bytes[6] = 7;
    CHECK(!SeekIndex::deserialize(with_crc(bytes)).ok());
  }
  SECTION("gzip spans wider than any the decoder leaves") {
    // Reads hold a whole span in memory: a forged index must not ask for terabytes (tests/fuzz).
    SeekIndex wide;
    wide.encoding = Encoding::gzip;
    wide.compressed_size = 100;
    wide.decoded_size = std::uint64_t{9} << 40;
    wide.gzip_points = {GzipCheckpoint{0, 0, true, ""}, GzipCheckpoint{50, 1u << 20, true, ""}};
    CHECK_THAT(SeekIndex::deserialize(wide.serialize()).error().message, Catch::Contains("from the next"));
    wide.decoded_size = 2u << 20;
    CHECK(SeekIndex::deserialize(wide.serialize()).ok());
    wide.gzip_points[1].decoded_offset = std::uint64_t{65} << 20;
    wide.decoded_size = wide.gzip_points[1].decoded_offset + 1;
    CHECK(!SeekIndex::deserialize(wide.serialize()).ok());
  }
  SECTION("gzip checkpoints") {
    SeekIndex base = gzip_index();
    SeekIndex i1 = base;
    std::swap(i1.gzip_points[3], i1.gzip_points[4]);
    expect_rejected(i1);
    SeekIndex i2 = base;
    i2.gzip_points[0].decoded_offset = 1;
    expect_rejected(i2);
    SeekIndex i3 = base;
    i3.gzip_points[2].member_start = true;  // a member start carrying a state
    expect_rejected(i3);
    SeekIndex i4 = base;
    i4.gzip_points.back().compressed_offset = base.compressed_size + 1;
    expect_rejected(i4);
    SeekIndex i5 = base;
    i5.gzip_points.back().decoded_offset = base.decoded_size + 1;
    expect_rejected(i5);
    SeekIndex i6 = base;
    i6.gzip_points[5].compressed_offset = i6.gzip_points[4].compressed_offset - 1;
    expect_rejected(i6);
    SeekIndex i7 = base;
    i7.gzip_points[1].state.assign(140000, 'w');
    expect_rejected(i7);
    SeekIndex i8 = base;
    i8.gzip_points.clear();
    expect_rejected(i8);
    SeekIndex i9 = base;
    i9.encoding = Encoding::zstd;
    expect_rejected(i9);
  }
  SECTION("gzip checkpoints from another ISA-L build are refused") {
    std::string bytes = gzip_index().serialize();
    bytes[32] = static_cast<char>(bytes[32] ^ 1);  // the state format
    auto loaded = SeekIndex::deserialize(with_crc(bytes));
    REQUIRE(!loaded.ok());
    CHECK_THAT(loaded.error().message, Catch::Contains("another ISA-L build"));
  }
  SECTION("zstd frames") {
    SeekIndex base = zstd_index(false);
    SeekIndex gap = base;
    gap.zstd_frames[2].decoded_offset += 1;
    expect_rejected(gap);
    SeekIndex overlap = base;
    overlap.zstd_frames[3].compressed_offset = overlap.zstd_frames[2].compressed_offset + 1;
    expect_rejected(overlap);
    SeekIndex outside = base;
    outside.zstd_frames.back().compressed_size += 1000;
    expect_rejected(outside);
    SeekIndex sum = base;
    sum.decoded_size += 1;
    expect_rejected(sum);
    SeekIndex unspilled = zstd_index(true);
    unspilled.zstd_spilled = false;
    expect_rejected(unspilled);
    SeekIndex single = base;
    single.zstd_frames.resize(1);
    single.decoded_size = single.zstd_frames[0].decoded_size;
    expect_rejected(single);
    single.zstd_spilled = true;
    CHECK(SeekIndex::deserialize(single.serialize()).ok());
    SeekIndex tar_spilled;
    tar_spilled.zstd_spilled = true;
    expect_rejected(tar_spilled);
  }
}
