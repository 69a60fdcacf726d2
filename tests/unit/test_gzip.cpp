#include <zlib.h>

#include <algorithm>
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
using ocifs::test::gzip_member;
using ocifs::test::expected_at;
using ocifs::test::make_data;
using ocifs::test::read_string;

namespace {

// A gzip member whose header carries the optional fields RFC 1952 allows (FEXTRA, FNAME,
// FCOMMENT, FHCRC), as some tar.gz writers set them; zlib writes a correct header CRC-16.
std::string gzip_member_with_header(std::string_view data, bool extra, bool name, bool comment, bool hcrc) {
  std::string extra_field("Xy\x05\x00hello", 9);  // subfield "Xy", 5 bytes
  std::string file_name = "layer.tar", file_comment = "made by the ocifs tests";
  gz_header header{};
  header.os = 3;
  if (extra) {
    header.extra = reinterpret_cast<Bytef*>(extra_field.data());
    header.extra_len = static_cast<uInt>(extra_field.size());
  }
  if (name) header.name = reinterpret_cast<Bytef*>(file_name.data());
  if (comment) header.comment = reinterpret_cast<Bytef*>(file_comment.data());
  header.hcrc = hcrc ? 1 : 0;
  return gzip_member(data, 6, &header);
}

io::BlobSourcePtr blob_of(std::string bytes, std::string name = "test.tar.gz") {
  return std::make_shared<io::MemorySource>(std::move(bytes), std::move(name));
}

struct Scan {
  std::string decoded;
  SeekIndex index;
  std::string compressed_sha256;
  std::string decoded_sha256;
};

// Scans with a mix of tar-header-sized reads, large reads and skips, like the tar walker.
Result<Scan> scan(io::BlobSourcePtr blob, const ScanOptions& options, std::string_view expected = {}) {
  OCIFS_ASSIGN(auto decoder, make_stream_decoder(Encoding::gzip, blob, options));
  Scan result;
  std::mt19937 rng(7);
  std::vector<std::byte> buf(300 * 1024);
  for (;;) {
    std::size_t want = 0;
    switch (rng() % 4) {
      case 0:
        want = 512;
        break;
      case 1:
        want = 1 + rng() % 5000;
        break;
      case 2:
        want = buf.size();
        break;
      default: {
        std::uint64_t skip = rng() % 200000;
        if (expected.empty() || decoder->position() + skip > expected.size()) break;
        OCIFS_TRY(decoder->skip(skip));
        result.decoded += expected.substr(result.decoded.size(), skip);
        continue;
      }
    }
    if (want == 0) continue;
    OCIFS_ASSIGN(std::size_t n, decoder->read(std::span(buf).first(want)));
    if (n == 0) break;
    result.decoded.append(reinterpret_cast<const char*>(buf.data()), n);
    if (decoder->position() != result.decoded.size()) {
      return make_error(std::errc::io_error, "position {} != {}", decoder->position(), result.decoded.size());
    }
  }
  OCIFS_ASSIGN(result.index, decoder->finish());
  result.compressed_sha256 = decoder->compressed_sha256();
  result.decoded_sha256 = decoder->decoded_sha256();
  return result;
}

// Random reads with the stateless reader, then sequential and random reads through cursors.
void check_reads(const SeekIndex& index, io::BlobSourcePtr blob, const std::string& data, int count = 300) {
  auto reader = make_seekable_reader(index, blob);
  REQUIRE(reader.ok());
  REQUIRE((*reader)->size() == data.size());
  std::mt19937_64 rng(42);
  for (int i = 0; i < count; ++i) {
    std::uint64_t offset = rng() % (data.size() + 1000);
    std::size_t length = (i % 5 == 0) ? rng() % (300 * 1024) : rng() % 8192;
    INFO("offset " << offset << " length " << length);
    REQUIRE(read_string(**reader, offset, length) == expected_at(data, offset, length));
  }
  // Reads at checkpoint boundaries and right before them.
  for (const auto& p : index.gzip_points) {
    for (std::uint64_t offset : {p.decoded_offset, p.decoded_offset > 0 ? p.decoded_offset - 1 : 0}) {
      REQUIRE(read_string(**reader, offset, 4096) == expected_at(data, offset, 4096));
    }
  }
  // Sequential, in FUSE-sized pieces of varying size.
  auto cursor = (*reader)->open_cursor();
  std::string whole;
  for (std::uint64_t offset = 0; offset < data.size();) {
    std::size_t length = 4096 + rng() % (128 * 1024);
    auto piece = read_string(*cursor, offset, length);
    REQUIRE(!piece.empty());
    whole += piece;
    offset += piece.size();
  }
  REQUIRE(whole == data);
  REQUIRE(read_string(*cursor, data.size(), 100).empty());
  // Random reads, and short forward hops, through one cursor.
  auto random = (*reader)->open_cursor();
  std::uint64_t offset = 0;
  for (int i = 0; i < count; ++i) {
    if (rng() % 2)
      offset = rng() % data.size();
    else
      offset += rng() % 100000;
    std::size_t length = rng() % 70000;
    INFO("cursor offset " << offset << " length " << length);
    REQUIRE(read_string(*random, offset, length) == expected_at(data, offset, length));
  }
}

}  // namespace

TEST_CASE("gzip: single member, scan and random access") {
  std::string data = make_data(6 << 20, 1);
  std::string gz = gzip_member(data);
  auto blob = blob_of(gz);
  ScanOptions options;
  options.gzip_span = 64 << 10;
  options.hash_decoded = true;
  auto s = scan(blob, options, data);
  INFO((s.ok() ? std::string() : s.error().message));
  REQUIRE(s.ok());
  CHECK(s->decoded == data);
  CHECK(s->compressed_sha256 == util::sha256_hex(gz));
  CHECK(s->decoded_sha256 == util::sha256_hex(data));
  const SeekIndex& index = s->index;
  CHECK(index.encoding == Encoding::gzip);
  CHECK(index.compressed_size == gz.size());
  CHECK(index.decoded_size == data.size());
  REQUIRE(index.gzip_points.size() > 40);
  CHECK(index.gzip_points.front().member_start);
  CHECK(index.gzip_points.front().decoded_offset == 0);
  for (std::size_t i = 1; i < index.gzip_points.size(); ++i) {
    const auto& p = index.gzip_points[i];
    CHECK(!p.member_start);
    // One member: output stops exactly where each checkpoint is due.
    CHECK(p.decoded_offset == i * options.gzip_span);
    CHECK(!p.state.empty());
    CHECK(p.state.size() < (96u << 10));  // this data hardly compresses: ~19 KiB on real layers
  }
  check_reads(index, blob, data);
}

TEST_CASE("gzip: checkpoints thin out after every 1024, so a huge layer keeps few of them") {
  // 40 MiB at the smallest span (16 KiB): 1024 points over the first 16 MiB, then one per 32 KiB.
  // Evenly spaced it would be 2560 points; a 1 TiB gzip bomb at 512 KiB was 2 million (~6 GB
  // of states held while it is mounted).
  std::string data = make_data(40 << 20, 5);
  std::string gz = gzip_member(data, 1);
  auto blob = blob_of(gz);
  ScanOptions options;
  options.gzip_span = 16 << 10;
  auto s = scan(blob, options);
  REQUIRE(s.ok());
  const auto& points = s->index.gzip_points;
  CHECK(points.size() < 1900);
  CHECK(points[1023].decoded_offset == 1023 * (16u << 10));
  CHECK(points[1025].decoded_offset - points[1024].decoded_offset == (32u << 10));
  check_reads(s->index, blob, data, 50);
}

TEST_CASE("gzip: default 512 KiB span and no hashing") {
  std::string data = make_data(5 << 20, 2);
  std::string gz = gzip_member(data, 9);
  auto blob = blob_of(gz);
  ScanOptions options;
  options.hash = false;
  auto s = scan(blob, options);
  REQUIRE(s.ok());
  CHECK(s->decoded == data);
  CHECK(s->compressed_sha256.empty());
  CHECK(s->decoded_sha256.empty());
  // 5 MiB at one point per 512 KiB (points land on the first block boundary past each mark).
  CHECK(s->index.gzip_points.size() >= 8);
  CHECK(s->index.gzip_points.size() <= 10);
  check_reads(s->index, blob, data, 100);
}

TEST_CASE("gzip: multi-member with stored blocks, an empty member and zero padding") {
  std::vector<std::string> parts = {make_data(3 << 20, 3), make_data(100, 4), std::string(),
                                    make_data(2 << 20, 5), make_data(700 << 10, 6)};
  std::vector<int> levels = {6, 6, 6, 0, 1};
  std::string data, gz;
  std::vector<std::uint64_t> member_offsets;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    member_offsets.push_back(gz.size());
    data += parts[i];
    gz += gzip_member(parts[i], levels[i]);
  }
  std::string padded = gz + std::string(10240, '\0');
  auto blob = blob_of(padded);
  ScanOptions options;
  options.gzip_span = 64 << 10;
  auto s = scan(blob, options, data);
  INFO((s.ok() ? std::string() : s.error().message));
  REQUIRE(s.ok());
  CHECK(s->decoded == data);
  CHECK(s->compressed_sha256 == util::sha256_hex(padded));
  CHECK(s->index.compressed_size == padded.size());
  // Checkpoints in later members, including members that start one.
  std::size_t member_starts = 0, late_points = 0;
  for (const auto& p : s->index.gzip_points) {
    if (p.member_start) {
      ++member_starts;
      CHECK(std::find(member_offsets.begin(), member_offsets.end(), p.compressed_offset) !=
            member_offsets.end());
    }
    if (p.decoded_offset > parts[0].size()) ++late_points;
  }
  CHECK(member_starts >= 2);
  CHECK(late_points > 20);
  check_reads(s->index, blob, data);

  // A 1-byte span is raised to the 16 KiB minimum: still many more points.
  options.gzip_span = 1;
  auto dense = scan(blob, options);
  REQUIRE(dense.ok());
  CHECK(dense->decoded == data);
  CHECK(dense->index.gzip_points.size() > s->index.gzip_points.size());
  check_reads(dense->index, blob, data, 50);
}

TEST_CASE("gzip: bad streams fail the scan with the blob and offset named") {
  std::string data = make_data(1 << 20, 8);
  std::string gz = gzip_member(data);
  ScanOptions options;
  options.gzip_span = 64 << 10;
  auto expect_error = [&](std::string bytes) {
    auto s = scan(blob_of(std::move(bytes), "bad.tar.gz"), options);
    REQUIRE(!s.ok());
    CHECK_THAT(s.error().message, Catch::Contains("bad.tar.gz") && Catch::Contains("offset"));
    return s.error().message;
  };
  SECTION("truncated") {
    for (std::size_t cut : {std::size_t{0}, std::size_t{1}, std::size_t{5}, std::size_t{10}, gz.size() / 3,
                            gz.size() / 2, gz.size() - 9, gz.size() - 4, gz.size() - 1}) {
      INFO("cut at " << cut);
      expect_error(gz.substr(0, cut));
    }
  }
  SECTION("trailing garbage") {
    CHECK_THAT(expect_error(gz + "garbage"), Catch::Contains("garbage"));
    CHECK_THAT(expect_error(gz + std::string(100, '\0') + "x"), Catch::Contains("garbage"));
    expect_error(gz + "\x1f\x8b\x08");  // a member cut short
  }
  SECTION("corrupt bytes") {
    std::mt19937_64 rng(9);
    for (int i = 0; i < 60; ++i) {
      std::string bad = gz;
      std::size_t at = 10 + rng() % (bad.size() - 10);  // after the header: MTIME/XFL/OS are unchecked
      bad[at] = static_cast<char>(bad[at] ^ (1 + rng() % 255));
      INFO("flip at " << at);
      expect_error(bad);
    }
  }
  SECTION("not gzip at all") { expect_error(std::string(1000, 'x')); }
}

TEST_CASE("gzip: bad data behind a good index fails the read, never a crash") {
  std::string data = make_data(2 << 20, 10);
  std::string gz = gzip_member(data);
  ScanOptions options;
  options.gzip_span = 64 << 10;
  auto s = scan(blob_of(gz), options);
  REQUIRE(s.ok());

  // Zeroed second half: a read that reaches the end of the member meets the CRC-32 check (or
  // an invalid block before it). A checkpoint inside a stored block would turn zeros into
  // zeros without complaint before that: in a mount the blob's block digests catch them first.
  std::string zeroed = gz;
  std::fill(zeroed.begin() + zeroed.size() / 2, zeroed.end(), '\0');
  auto reader = make_seekable_reader(s->index, blob_of(zeroed, "zeroed.tar.gz"));
  REQUIRE(reader.ok());
  std::vector<std::byte> buf(5000);
  auto good = (*reader)->read_at(1000, buf);
  CHECK(good.ok());
  auto bad = (*reader)->read_at(data.size() - buf.size(), buf);
  REQUIRE(!bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("zeroed.tar.gz") && Catch::Contains("offset"));
  auto cursor = (*reader)->open_cursor();
  CHECK(!cursor->read_at(data.size() - buf.size(), buf).ok());
  CHECK(cursor->read_at(1000, buf).ok());  // recovers by restarting

  // Random garbage at every position behind the index: errors or bytes, but no crash or hang.
  std::mt19937_64 rng(11);
  for (int i = 0; i < 30; ++i) {
    std::string bad_gz = gz;
    std::size_t at = rng() % bad_gz.size();
    for (std::size_t j = at; j < std::min(at + 64, bad_gz.size()); ++j) bad_gz[j] = static_cast<char>(rng());
    auto r = make_seekable_reader(s->index, blob_of(bad_gz));
    REQUIRE(r.ok());
    std::vector<std::byte> big(256 << 10);
    (void)(*r)->read_at(rng() % data.size(), big);
  }

  // A damaged checkpoint state is detected (zstd's content checksum), wherever the damage is.
  for (std::size_t at : {std::size_t{20}, std::size_t{0}, std::size_t{1}}) {
    SeekIndex damaged = s->index;
    REQUIRE(damaged.gzip_points.size() > 3);
    auto& state = damaged.gzip_points[3].state;
    std::size_t i = at == 0 ? state.size() / 2 : at == 1 ? state.size() - 2 : at;
    state[i] = static_cast<char>(state[i] ^ 0x55);
    auto dr = make_seekable_reader(damaged, blob_of(gz));
    REQUIRE(dr.ok());
    auto r = (*dr)->read_at(damaged.gzip_points[3].decoded_offset + 10, buf);
    REQUIRE(!r.ok());
    CHECK_THAT(r.error().message, Catch::Contains("checkpoint state"));
  }

  // A blob of another size than indexed is refused up front.
  CHECK(!make_seekable_reader(s->index, blob_of(gz.substr(0, gz.size() - 1))).ok());
}

TEST_CASE("gzip: decoded stream as a BlobSource") {
  std::string data = make_data(300 << 10, 12);
  auto blob = blob_of(gzip_member(data));
  auto s = scan(blob, {});
  REQUIRE(s.ok());
  auto reader = make_seekable_reader(s->index, blob);
  REQUIRE(reader.ok());
  DecodedSource source(*reader, "decoded");
  auto all = io::read_all(source, 1 << 30);
  REQUIRE(all.ok());
  CHECK(*all == data);
}

TEST_CASE("gzip: members with FEXTRA, FNAME, FCOMMENT and FHCRC headers") {
  std::vector<std::string> parts = {make_data(1 << 20, 20), make_data(700 << 10, 21), make_data(300, 22),
                                    make_data(900 << 10, 23), make_data(400 << 10, 24)};
  std::string data, gz;
  std::vector<std::uint64_t> member_offsets;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    member_offsets.push_back(gz.size());
    data += parts[i];
    // Every combination of fields across the members, the last one plain.
    gz += i == 4 ? gzip_member(parts[i])
                 : gzip_member_with_header(parts[i], i != 1, i != 2, i == 0 || i == 3, i == 0 || i == 2);
  }
  REQUIRE((static_cast<unsigned char>(gz[3]) & 0x1e) == 0x1e);  // the first has all four flags
  auto blob = blob_of(gz);
  ScanOptions options;
  options.gzip_span = 64 << 10;
  for (bool hash : {true, false}) {
    INFO("hash " << hash);
    options.hash = hash;  // off: the CRC-32s are checked too
    auto s = scan(blob, options, data);
    INFO((s.ok() ? std::string() : s.error().message));
    REQUIRE(s.ok());
    CHECK(s->decoded == data);
    CHECK(s->compressed_sha256 == (hash ? util::sha256_hex(gz) : std::string()));
    CHECK(s->index.compressed_size == gz.size());
    // Member-start checkpoints point at a member's header, where the cursor restarts zlib.
    std::size_t member_starts = 0;
    for (const auto& p : s->index.gzip_points) {
      if (!p.member_start) continue;
      ++member_starts;
      CHECK(std::find(member_offsets.begin(), member_offsets.end(), p.compressed_offset) !=
            member_offsets.end());
    }
    CHECK(member_starts >= 2);
    check_reads(s->index, blob, data, 100);
  }

  SECTION("cut inside any header field") {
    std::string first = gzip_member_with_header(parts[2], true, true, true, true);
    std::size_t header_end = 10 + 2 + 9 + 10 + 24 + 2;  // fixed, XLEN + extra, name, comment, CRC-16
    REQUIRE(first.size() > header_end);
    for (std::size_t cut = 1; cut <= header_end; ++cut) {
      INFO("cut at " << cut);
      auto s = scan(blob_of(first.substr(0, cut), "cut.tar.gz"), ScanOptions{});
      REQUIRE(!s.ok());
      CHECK_THAT(s.error().message, Catch::Contains("cut.tar.gz") && Catch::Contains("truncated"));
    }
  }
}

TEST_CASE("gzip: header and trailer checks") {
  std::string data = make_data(300 << 10, 30);
  std::string gz = gzip_member(data);
  auto expect_error = [&](std::string bytes) {
    auto s = scan(blob_of(std::move(bytes), "bad.tar.gz"), ScanOptions{});
    REQUIRE(!s.ok());
    CHECK_THAT(s.error().message, Catch::Contains("bad.tar.gz") && Catch::Contains("offset"));
    return s.error().message;
  };
  auto with = [&](std::size_t at, unsigned char value) {
    std::string bad = gz;
    bad[at] = static_cast<char>(value);
    return bad;
  };
  CHECK_THAT(expect_error(with(1, 0x8c)), Catch::Contains("header"));
  CHECK_THAT(expect_error(with(2, 7)), Catch::Contains("compression method"));
  CHECK_THAT(expect_error(with(3, 0x20)), Catch::Contains("flags"));
  std::size_t isize = gz.size() - 4;
  CHECK_THAT(expect_error(with(isize, static_cast<unsigned char>(gz[isize] ^ 1))), Catch::Contains("length"));
  // The CRC-32 is checked with hashing on too: a digest over corrupt deflate data proves only
  // that the blob is the one named.
  std::size_t crc = gz.size() - 8;
  CHECK_THAT(expect_error(with(crc, static_cast<unsigned char>(gz[crc] ^ 1))), Catch::Contains("CRC-32"));
  // A second member cut inside its header.
  CHECK_THAT(expect_error(gz + gz.substr(0, 6)), Catch::Contains("truncated"));
}

TEST_CASE("gzip: hash_compressed off reads every byte but leaves hashing to the caller") {
  std::string data = make_data(3 << 20, 31);
  std::string gz = gzip_member(data) + gzip_member(make_data(0, 0)) + std::string(512, '\0');
  auto blob = blob_of(gz);
  ScanOptions options;
  options.gzip_span = 256 << 10;
  options.hash_decoded = true;
  auto hashed = scan(blob, options, data);
  REQUIRE(hashed.ok());
  options.hash_compressed = false;
  auto plain = scan(blob, options, data);
  REQUIRE(plain.ok());
  CHECK(plain->compressed_sha256.empty());
  CHECK(hashed->compressed_sha256 == util::sha256_hex(gz));
  CHECK(plain->decoded_sha256 == util::sha256_hex(data));
  CHECK(plain->decoded == data);
  // The same index either way, byte for byte.
  CHECK(plain->index.serialize() == hashed->index.serialize());
}
