// ChunkedReader: chunks of eStargz (gzip members) and zstd:chunked (zstd frames) layers, each
// checked against its digest before it is served.
#include <zstd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "ocifs/compress/chunked_reader.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/sha256.hpp"
#include "sample_data.hpp"

using namespace ocifs;
using compress::Chunk;
using compress::ChunkCodec;

namespace {

std::array<std::uint8_t, 32> digest_of(std::string_view data) {
  util::Sha256 sum;
  sum.update(data);
  return sum.digest();
}

std::string zstd_frame(std::string_view data) {
  std::string out(ZSTD_compressBound(data.size()), '\0');
  auto n = ZSTD_compress(out.data(), out.size(), data.data(), data.size(), 3);
  REQUIRE_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

// A blob of one compressed unit per piece, each followed by `trailer` bytes (what a real layer
// has there: tar padding and the next header), and the chunks describing it.
struct Layer {
  std::string decoded;
  std::string blob;
  std::vector<Chunk> chunks;
};

Layer make_layer(const std::vector<std::string>& pieces, ChunkCodec codec, std::string_view trailer = "") {
  Layer layer;
  for (const auto& piece : pieces) {
    Chunk c;
    c.offset = layer.decoded.size();
    c.size = piece.size();
    c.digest = digest_of(piece);
    c.blob_offset = layer.blob.size();
    std::string unit = std::string(piece) + std::string(trailer);
    layer.blob += codec == ChunkCodec::gzip ? test::gzip_member(unit) : zstd_frame(unit);
    c.blob_end = layer.blob.size();
    layer.decoded += piece;
    layer.chunks.push_back(c);
  }
  return layer;
}

// A MemorySource whose bytes can be damaged, that can heal on discard() like the blob cache.
class FlakySource final : public io::BlobSource {
 public:
  explicit FlakySource(std::string data) : good_(data), data_(std::move(data)) {}
  std::uint64_t size() const override { return data_.size(); }
  std::string describe() const override { return "flaky.blob"; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    ++reads;
    if (offset >= data_.size()) return std::size_t{0};
    auto n = std::min<std::uint64_t>(buf.size(), data_.size() - offset);
    std::memcpy(buf.data(), data_.data() + offset, n);
    return static_cast<std::size_t>(n);
  }
  bool stable() const override { return !heals; }
  bool discard(std::uint64_t, std::uint64_t) const override {
    ++discards;
    if (heals) data_ = good_;
    return heals;
  }
  void damage(std::size_t at) { data_[at] = static_cast<char>(data_[at] ^ 0x5a); }

  bool heals = false;
  mutable std::atomic<int> reads{0};
  mutable std::atomic<int> discards{0};

 private:
  std::string good_;
  mutable std::string data_;
};

std::shared_ptr<compress::ChunkedReader> reader_of(const Layer& layer, ChunkCodec codec,
                                                   std::shared_ptr<const io::BlobSource> blob) {
  return std::make_shared<compress::ChunkedReader>(layer.chunks, layer.decoded.size(), codec, std::move(blob),
                                                   nullptr, "layer 1 (test)");
}

std::vector<std::string> sample_pieces() {
  return {test::make_data(4u << 20, 1), test::make_data(100000, 2), std::string(1, 'x'),
          test::random_bytes(300000, 3), test::make_data(4u << 20, 4)};
}

}  // namespace

TEST_CASE("ChunkedReader: every read equals the decoded pieces, both codecs") {
  for (auto codec : {ChunkCodec::gzip, ChunkCodec::zstd}) {
    INFO((codec == ChunkCodec::gzip ? "gzip" : "zstd"));
    auto layer = make_layer(sample_pieces(), codec, std::string(1024, '\0') + "next header");
    auto source = std::make_shared<FlakySource>(layer.blob);
    auto reader = reader_of(layer, codec, source);
    REQUIRE(reader->size() == layer.decoded.size());
    std::mt19937_64 rng(7);
    for (int i = 0; i < 300; ++i) {
      std::uint64_t off = rng() % (layer.decoded.size() + 10);
      std::size_t len = 1 + rng() % (6u << 20);
      REQUIRE(test::read_string(*reader, off, len) == test::expected_at(layer.decoded, off, len));
    }
    CHECK(reader->chunks_loaded() >= layer.chunks.size());
    auto cursor = reader->open_cursor();
    CHECK(test::read_string(*cursor, 4u << 20, 100000) == layer.decoded.substr(4u << 20, 100000));
  }
}

TEST_CASE("ChunkedReader: a hole chunk reads as zeros without touching the blob") {
  auto layer = make_layer({"head"}, ChunkCodec::gzip);
  Chunk hole;
  hole.offset = 4;
  hole.size = 1u << 20;
  hole.zeros = true;
  layer.chunks.push_back(hole);
  layer.decoded += std::string(1u << 20, '\0');
  auto source = std::make_shared<FlakySource>(layer.blob);
  auto reader = reader_of(layer, ChunkCodec::gzip, source);
  CHECK(test::read_string(*reader, 1000, 5000) == std::string(5000, '\0'));
  CHECK(source->reads == 0);
  CHECK(test::read_string(*reader, 0, 10) == layer.decoded.substr(0, 10));
}

TEST_CASE("ChunkedReader: a chunk that does not match its digest is never served") {
  for (auto codec : {ChunkCodec::gzip, ChunkCodec::zstd}) {
    auto layer = make_layer({test::make_data(200000, 9), test::make_data(1000, 10)}, codec);
    // Damage the compressed bytes (may fail decoding) or swap a digest (decodes fine).
    SECTION("damaged bytes, a source that cannot refetch") {
      auto source = std::make_shared<FlakySource>(layer.blob);
      source->damage(static_cast<std::size_t>(layer.chunks[0].blob_end / 2));
      auto reader = reader_of(layer, codec, source);
      std::string out(100, '\0');
      auto r = reader->read_at(0, std::as_writable_bytes(std::span(out)));
      REQUIRE_FALSE(r);
      CHECK(r.error().code == std::errc::io_error);
      CHECK_THAT(r.error().message, Catch::Contains("layer 1 (test)") && Catch::Contains("blob bytes 0-"));
      CHECK(source->discards == 1);
      // The other chunk is fine.
      CHECK(test::read_string(*reader, 200000, 1000) == layer.decoded.substr(200000, 1000));
    }
    SECTION("damaged bytes that heal on a refetch") {
      auto source = std::make_shared<FlakySource>(layer.blob);
      source->heals = true;
      source->damage(static_cast<std::size_t>(layer.chunks[0].blob_end / 2));
      auto reader = reader_of(layer, codec, source);
      CHECK(test::read_string(*reader, 0, 200000) == layer.decoded.substr(0, 200000));
      CHECK(source->discards == 1);
    }
    SECTION("a wrong digest") {
      layer.chunks[1].digest = digest_of("something else");
      auto reader = reader_of(layer, codec, std::make_shared<FlakySource>(layer.blob));
      std::string out(10, '\0');
      auto r = reader->read_at(200000, std::as_writable_bytes(std::span(out)));
      REQUIRE_FALSE(r);
      CHECK_THAT(r.error().message, Catch::Contains("does not match its digest"));
    }
  }
}

TEST_CASE("ChunkedReader: chunks pointing at bad ranges are errors") {
  auto layer = make_layer({test::make_data(5000, 1), test::make_data(5000, 2)}, ChunkCodec::gzip);
  auto bad = layer;
  SECTION("past the blob") { bad.chunks[1].blob_offset = layer.blob.size() + 10; }
  SECTION("far more compressed bytes than the chunk holds") { bad.chunks[0].blob_end = (64u << 20); }
  SECTION("a range holding only part of the member") { bad.chunks[1].blob_end = bad.chunks[1].blob_offset + 20; }
  auto blob = layer.blob + std::string(64u << 20, 'z');
  auto reader = reader_of(bad, ChunkCodec::gzip, std::make_shared<FlakySource>(blob));
  std::string out(5000, '\0');
  bool failed = !reader->read_at(0, std::as_writable_bytes(std::span(out))) ||
                !reader->read_at(5000, std::as_writable_bytes(std::span(out)));
  CHECK(failed);
}

TEST_CASE("ChunkedReader: blob_ranges covers the chunks a read needs, no more") {
  auto layer = make_layer(sample_pieces(), ChunkCodec::gzip);
  auto source = std::make_shared<FlakySource>(layer.blob);
  auto reader = reader_of(layer, ChunkCodec::gzip, source);
  std::vector<compress::BlobRange> ranges;
  // Bytes of piece 1 and the first of piece 3: chunks 1, 2 and 3, back to back in the blob.
  reader->blob_ranges(layer.chunks[1].offset + 10, layer.chunks[3].offset - layer.chunks[1].offset, ranges);
  REQUIRE(ranges.size() == 1);
  CHECK(ranges[0].offset == layer.chunks[1].blob_offset);
  CHECK(ranges[0].offset + ranges[0].length == layer.chunks[3].blob_end);
  ranges.clear();
  reader->blob_ranges(layer.decoded.size() - 1, 100, ranges);
  REQUIRE(ranges.size() == 1);
  CHECK(ranges[0].offset == layer.chunks.back().blob_offset);
}

TEST_CASE("A chunk being fetched holds up only its own readers, each until its deadline") {
  using namespace std::chrono_literals;
  auto layer = make_layer({test::make_data(100'000, 1), test::make_data(100'000, 2)}, ChunkCodec::zstd);
  auto blob = std::make_shared<test::HeldSource>(std::make_shared<io::MemorySource>(layer.blob, "held.blob"), 0,
                                                 layer.chunks[0].blob_end);  // chunk 0 hangs
  auto reader = std::make_shared<compress::ChunkedReader>(layer.chunks, layer.decoded.size(), ChunkCodec::zstd,
                                                          blob, nullptr, "held layer");
  std::string first;
  std::thread fetching([&] { first = test::read_string(*reader, 10, 100); });
  blob->wait_held();

  std::string out(100, '\0');
  Result<std::size_t> n = std::size_t{0};
  {
    util::DeadlineScope scope(util::Clock::now() + 300ms);
    n = reader->read_at(500, std::as_writable_bytes(std::span(out)));
  }
  // Its deadline ended the wait: chunk 0's fetch was still held.
  CHECK(blob->passed() == 0);
  REQUIRE_FALSE(n);
  CHECK(n.error().code == std::errc::timed_out);
  CHECK(test::read_string(*reader, 100'000 + 5, 1000) == layer.decoded.substr(100'005, 1000));  // chunk 1

  blob->release();
  fetching.join();
  CHECK(first == layer.decoded.substr(10, 100));
}
