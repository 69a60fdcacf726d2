// SpanCache and the span-serving GzipReader: eviction within the budget, shared caches, and
// reads of every shape against the original bytes.
#include <catch2/catch.hpp>
#include <zlib.h>

#include <condition_variable>
#include <mutex>
#include <random>
#include <thread>

#include "ocifs/compress/gzip_reader.hpp"
#include "ocifs/compress/span_cache.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/io/block_digests.hpp"
#include "ocifs/util/deadline.hpp"
#include "sample_data.hpp"

using namespace ocifs;

namespace {

using namespace std::chrono_literals;

struct Layer {
  std::string data;
  compress::SeekIndex index;
  io::BlobSourcePtr blob;
};

Layer make_layer(std::size_t size, unsigned seed) {
  Layer l;
  l.data = test::make_data(size, seed);
  l.blob = std::make_shared<io::MemorySource>(test::gzip_member(l.data), "layer.gz");
  compress::ScanOptions options;
  options.gzip_span = 64u << 10;
  auto decoder = compress::make_stream_decoder(compress::Encoding::gzip, l.blob, options);
  REQUIRE(decoder);
  auto index = (*decoder)->finish();
  REQUIRE(index);
  REQUIRE(index->gzip_points.size() > 8);
  l.index = *index;
  return l;
}

}  // namespace

TEST_CASE("SpanCache evicts the least recently used entries beyond its budget") {
  compress::SpanCache cache(100);
  auto owner = cache.new_owner();
  auto a = cache.entry(owner, 0);
  cache.charge(owner, 0, 60);
  auto b = cache.entry(owner, 1);
  cache.charge(owner, 1, 30);
  CHECK(cache.used() == 90);
  CHECK(cache.entry(owner, 0) == a);  // touch 0: now 1 is the coldest
  cache.entry(owner, 2);
  cache.charge(owner, 2, 30);  // 120 > 100: evicts span 1
  CHECK(cache.used() == 90);
  CHECK(cache.entry(owner, 1) != b);  // a new, empty entry
  cache.drop(owner, 1);
  CHECK(cache.entry(owner, 0) == a);
  auto other = cache.new_owner();
  CHECK(cache.entry(other, 0) != a);  // owners never share entries
}

TEST_CASE("GzipReader serves every read shape from spans, within any budget") {
  auto layer = make_layer(3u << 20, 7);
  for (std::size_t budget : {std::size_t{1}, std::size_t{256u << 10}, compress::SpanCache::kDefaultBudget}) {
    auto cache = std::make_shared<compress::SpanCache>(budget);
    auto reader = compress::GzipReader::create(layer.index, layer.blob, cache);
    REQUIRE(reader);
    std::mt19937 rng(budget);
    for (int i = 0; i < 300; ++i) {
      std::uint64_t off = rng() % layer.data.size();
      std::size_t n = rng() % 3 == 0 ? rng() % 300000 : rng() % 5000;
      CHECK(test::read_string(**reader, off, n) == layer.data.substr(off, n));
    }
    // Sequentially, 128 KiB at a time, as the kernel reads a file.
    std::string all;
    for (std::uint64_t off = 0; off < layer.data.size(); off += 128u << 10) all += test::read_string(**reader, off, 128u << 10);
    CHECK(all == layer.data);
    CHECK(cache->used() <= std::max<std::size_t>(budget, 256u << 10));
    CHECK(test::read_string(**reader, layer.data.size(), 10).empty());
  }
}

TEST_CASE("two readers share one cache, from several threads") {
  auto one = make_layer(1u << 20, 1);
  auto two = make_layer(1u << 20, 2);
  auto cache = std::make_shared<compress::SpanCache>(512u << 10);
  auto r1 = compress::GzipReader::create(one.index, one.blob, cache);
  auto r2 = compress::GzipReader::create(two.index, two.blob, cache);
  REQUIRE(r1);
  REQUIRE(r2);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (unsigned t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < 200; ++i) {
        const auto& layer = (i + t) % 2 ? one : two;
        const auto& reader = (i + t) % 2 ? **r1 : **r2;
        std::uint64_t off = rng() % layer.data.size();
        std::size_t n = rng() % 70000;
        std::string out(n, '\0');
        auto r = reader.read_at(off, std::as_writable_bytes(std::span(out)));
        if (!r || out.substr(0, *r) != layer.data.substr(off, n)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
}

TEST_CASE("a damaged span is an error every time, never cached") {
  auto layer = make_layer(1u << 20, 3);
  std::string raw(layer.blob->size(), '\0');
  REQUIRE(layer.blob->read_exact(0, std::as_writable_bytes(std::span(raw))));
  io::BlockHasher hasher(4096);
  hasher.update(std::as_bytes(std::span(raw)));
  auto digests = hasher.finish();
  const auto& point = layer.index.gzip_points[4];
  // Random samples deflate to stored blocks, where garbage inflates "fine": only the block
  // digests of the verified blob can tell, so the reader runs over a VerifiedSource as in a mount.
  raw[point.compressed_offset + 100] ^= 0x5a;
  auto damaged = std::make_shared<io::VerifiedSource>(std::make_shared<io::MemorySource>(raw, "damaged.gz"), digests);
  auto reader = compress::GzipReader::create(layer.index, damaged);
  REQUIRE(reader);
  std::uint64_t inside = point.decoded_offset;
  std::string out(layer.index.gzip_points[5].decoded_offset - inside, '\0');
  auto buf = std::as_writable_bytes(std::span(out));
  auto first = (*reader)->read_at(inside, buf);
  REQUIRE_FALSE(first.ok());
  CHECK_THAT(first.error().message, Catch::Contains("damaged.gz"));
  auto second = (*reader)->read_at(inside + 10, std::span(buf).first(100));  // the failed span was not kept
  CHECK_FALSE(second.ok());
  // Spans before the damage still read correctly.
  CHECK(test::read_string(**reader, 0, 1000) == layer.data.substr(0, 1000));
}

TEST_CASE("a span being inflated holds up only its own readers, each until its deadline") {
  auto layer = make_layer(1u << 20, 4);
  const auto& points = layer.index.gzip_points;
  // Reads of span 2's compressed bytes hang until released.
  auto held = std::make_shared<test::HeldSource>(layer.blob, points[2].compressed_offset + 1, points[3].compressed_offset);
  auto reader = compress::GzipReader::create(layer.index, held);
  REQUIRE(reader);
  const std::uint64_t in_span2 = points[2].decoded_offset + 10;
  std::string first;
  std::thread inflating([&] { first = test::read_string(**reader, in_span2, 100); });
  held->wait_held();

  // Another reader of span 2 waits for that inflate only until its own deadline: it gives up
  // while the inflate is still held.
  std::string out(100, '\0');
  Result<std::size_t> n = std::size_t{0};
  {
    util::DeadlineScope scope(util::Clock::now() + 300ms);
    n = (*reader)->read_at(in_span2 + 1000, std::as_writable_bytes(std::span(out)));
  }
  CHECK(held->passed() == 0);
  REQUIRE_FALSE(n);
  CHECK(n.error().code == std::errc::timed_out);
  // Readers of other spans of the same layer are not held up at all.
  CHECK(test::read_string(**reader, points[5].decoded_offset + 7, 5000) ==
        layer.data.substr(points[5].decoded_offset + 7, 5000));

  held->release();
  inflating.join();
  CHECK(first == layer.data.substr(in_span2, 100));
  CHECK(test::read_string(**reader, in_span2 + 1000, 100) == layer.data.substr(in_span2 + 1000, 100));
}
