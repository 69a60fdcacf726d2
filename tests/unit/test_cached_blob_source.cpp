// CachedBlobSource against an in-memory fake remote: coalesced range requests, single flight,
// offline, failing and short remotes, streaming with concurrent readers, stopping a stream.
#include <catch2/catch.hpp>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <latch>
#include <random>
#include <thread>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/cached_blob_source.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/sha256.hpp"
#include "sample_data.hpp"
#include "temp_dir.hpp"

using namespace ocifs;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

using ocifs::test::random_bytes;
using ocifs::test::TempDir;

constexpr std::uint64_t kChunk = cache::BlobEntry::kChunkSize;

// A blob in memory, answering like a registry; counts what it is asked for.
class FakeRemote final : public cache::RemoteBlob {
 public:
  explicit FakeRemote(std::string data) : data_(std::move(data)), digest_("sha256:" + util::sha256_hex(data_)) {}

  Result<std::size_t> read_range(std::uint64_t offset, std::span<std::byte> buf) override {
    ++range_calls;
    if (before_range) before_range();
    {
      std::lock_guard lock(mu_);
      ranges.emplace_back(offset, buf.size());
    }
    if (range_delay.count() > 0) std::this_thread::sleep_for(range_delay);
    if (fail_ranges) return make_error(std::errc::io_error, "connection reset by peer");
    std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), data_.size() - offset));
    n -= std::min<std::size_t>(n, short_by);
    std::memcpy(buf.data(), data_.data() + offset, n);
    range_bytes += n;
    return n;
  }

  Result<void> stream(std::uint64_t from, std::uint64_t to, const Sink& sink, const std::function<bool()>&) override {
    ++stream_calls;
    if (before_stream) before_stream();
    if (throw_in_stream) throw std::runtime_error("a bug in the stream");
    {
      std::lock_guard lock(mu_);
      stream_froms.push_back(from);
      stream_tos.push_back(to);
    }
    const std::uint64_t end = std::min<std::uint64_t>(to, data_.size());
    for (std::uint64_t at = from; at < end; at += piece) {
      if (piece_delay.count() > 0) std::this_thread::sleep_for(piece_delay);
      if (at >= fail_stream_at) return make_error(std::errc::io_error, "stream cut at {}", at);
      auto n = std::min<std::uint64_t>(piece, end - at);
      OCIFS_TRY(sink(std::as_bytes(std::span(data_.data() + at, n))));
      stream_bytes += n;
    }
    return util::success();
  }

  std::string describe() const override { return "fake.registry/repo@" + digest_; }

  const std::string& data() const { return data_; }
  const std::string& digest() const { return digest_; }

  std::atomic<int> range_calls{0};
  std::atomic<int> stream_calls{0};
  std::atomic<std::uint64_t> range_bytes{0};
  std::atomic<std::uint64_t> stream_bytes{0};
  std::vector<std::pair<std::uint64_t, std::size_t>> ranges;  // under mu_
  std::vector<std::uint64_t> stream_froms;                    // under mu_
  std::vector<std::uint64_t> stream_tos;                      // under mu_
  std::chrono::milliseconds range_delay{0};
  std::chrono::milliseconds piece_delay{0};
  std::uint64_t piece = 64 << 10;
  std::uint64_t fail_stream_at = UINT64_MAX;
  std::atomic<bool> fail_ranges{false};
  std::size_t short_by = 0;
  std::function<void()> before_range;  // runs first in every read_range (may block, may throw)
  std::function<void()> before_stream;  // runs first in every stream (may block)
  bool throw_in_stream = false;

 private:
  std::mutex mu_;
  std::string data_;
  std::string digest_;
};

struct Fixture {
  TempDir tmp;
  std::shared_ptr<cache::BlobCache> blobs;
  std::shared_ptr<FakeRemote> remote;
  std::shared_ptr<cache::BlobEntry> entry;

  explicit Fixture(std::size_t size, std::uint64_t seed = 1) {
    auto b = cache::BlobCache::open(tmp.path, 0);
    REQUIRE(b);
    blobs = *b;
    remote = std::make_shared<FakeRemote>(random_bytes(size, seed));
    auto e = blobs->entry(remote->digest(), size);
    REQUIRE(e);
    entry = *e;
  }
};

std::string read(const io::BlobSource& source, std::uint64_t offset, std::size_t len) {
  std::string out(len, '\0');
  auto n = source.read_at(offset, std::as_writable_bytes(std::span(out)));
  REQUIRE(n);
  out.resize(*n);
  return out;
}

// For worker threads (Catch2 assertions are for the main thread only): the bytes, or
// "<error: …>" when the read failed.
std::string read_quietly(const io::BlobSource& source, std::uint64_t offset, std::size_t len) {
  std::string out(len, '\0');
  auto n = source.read_at(offset, std::as_writable_bytes(std::span(out)));
  if (!n) return "<error: " + n.error().message + ">";
  out.resize(*n);
  return out;
}

}  // namespace

TEST_CASE("Missing chunks are fetched with one request per contiguous run") {
  Fixture f(10 * kChunk + 5000);
  cache::CachedBlobSource source(f.entry, f.remote);
  CHECK(source.size() == f.remote->data().size());
  CHECK(source.describe() == f.remote->describe());

  // A read inside one chunk fetches that whole chunk.
  CHECK(read(source, 100, 10) == f.remote->data().substr(100, 10));
  CHECK(f.remote->range_calls == 1);
  CHECK(f.remote->ranges.back() == std::pair<std::uint64_t, std::size_t>{0, kChunk});
  // Served from the cache now.
  CHECK(read(source, 0, kChunk) == f.remote->data().substr(0, kChunk));
  CHECK(f.remote->range_calls == 1);

  // Chunks 2 and 5 present; a read of chunks 1-7 makes three requests: 1, 3-4, 6-7.
  REQUIRE(f.entry->write_chunk(2, std::as_bytes(std::span(f.remote->data().data() + 2 * kChunk, kChunk))));
  REQUIRE(f.entry->write_chunk(5, std::as_bytes(std::span(f.remote->data().data() + 5 * kChunk, kChunk))));
  f.remote->ranges.clear();
  CHECK(read(source, kChunk + 7, 7 * kChunk - 7) == f.remote->data().substr(kChunk + 7, 7 * kChunk - 7));
  CHECK(f.remote->range_calls == 4);
  using R = std::vector<std::pair<std::uint64_t, std::size_t>>;
  CHECK(f.remote->ranges == R{{kChunk, kChunk}, {3 * kChunk, 2 * kChunk}, {6 * kChunk, 2 * kChunk}});

  // The tail is clipped to the blob's end; a read past the end returns what there is.
  f.remote->ranges.clear();
  CHECK(read(source, 10 * kChunk + 4000, 5000) == f.remote->data().substr(10 * kChunk + 4000));
  CHECK(f.remote->ranges == R{{10 * kChunk, 5000}});
  CHECK(read(source, f.remote->data().size(), 10).empty());
  CHECK(source.progress().fetched == f.remote->range_bytes);
}

TEST_CASE("Runs longer than max_request are split") {
  Fixture f(10 * kChunk);
  cache::CachedBlobSource::Options options;
  options.max_request = 3 * kChunk;
  cache::CachedBlobSource source(f.entry, f.remote, options);
  CHECK(read(source, 0, 10 * kChunk) == f.remote->data());
  using R = std::vector<std::pair<std::uint64_t, std::size_t>>;
  CHECK(f.remote->ranges == R{{0, 3 * kChunk}, {3 * kChunk, 3 * kChunk}, {6 * kChunk, 3 * kChunk}, {9 * kChunk, kChunk}});
  CHECK(f.entry->complete());
}

TEST_CASE("Concurrent readers of the same range share one fetch") {
  Fixture f(4 * kChunk);
  f.remote->range_delay = 300ms;  // every thread arrives while the one fetch is under way
  cache::CachedBlobSource source(f.entry, f.remote);
  constexpr int kThreads = 8;
  std::latch start(kThreads);
  std::vector<std::string> got(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      start.arrive_and_wait();
      got[i] = read_quietly(source, kChunk + 1 + 1000 * i, kChunk);
    });
  }
  for (auto& t : threads) t.join();
  CHECK(f.remote->range_calls == 1);  // chunks 1 and 2, fetched once for all eight
  for (int i = 0; i < kThreads; ++i) CHECK(got[i] == f.remote->data().substr(kChunk + 1 + 1000 * i, kChunk));
}

TEST_CASE("Overlapping concurrent reads fetch every chunk exactly once") {
  Fixture f(32 * kChunk, 2);
  f.remote->range_delay = 5ms;
  cache::CachedBlobSource source(f.entry, f.remote);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      for (int i = 0; i < 40; ++i) {
        std::uint64_t off = rng() % f.remote->data().size();
        std::size_t len = 1 + rng() % (3 * kChunk);
        if (read_quietly(source, off, len) != f.remote->data().substr(off, len)) ++wrong;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
  CHECK(f.remote->range_bytes <= f.remote->data().size());  // no chunk fetched twice
}

TEST_CASE("Offline: present chunks are served, a missing one is a clear error") {
  Fixture f(3 * kChunk);
  REQUIRE(f.entry->write_chunk(0, std::as_bytes(std::span(f.remote->data().data(), kChunk))));
  cache::CachedBlobSource source(f.entry, nullptr);
  CHECK(source.describe() == f.remote->digest());
  CHECK(read(source, 10, 100) == f.remote->data().substr(10, 100));
  std::string buf(2 * kChunk, '\0');
  auto r = source.read_at(100, std::as_writable_bytes(std::span(buf)));
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("not in the cache and --offline") != std::string::npos);
  CHECK(r.error().message.find(f.remote->digest()) != std::string::npos);
  CHECK(r.error().message.find(fmt::format("offset {}", kChunk)) != std::string::npos);
  source.start_stream();
  CHECK_FALSE(source.wait_stream());
}

TEST_CASE("A failing or short remote is an error naming digest and offsets, and nothing is marked") {
  Fixture f(6 * kChunk);
  cache::CachedBlobSource::Options options;
  options.fail_fast = 0ms;  // each step below asks the remote again at once
  cache::CachedBlobSource source(f.entry, f.remote, options);
  std::string buf(kChunk, '\0');
  auto out = std::as_writable_bytes(std::span(buf));

  f.remote->fail_ranges = true;
  auto r = source.read_at(2 * kChunk + 5, out);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == std::errc::io_error);
  CHECK(r.error().message.find(f.remote->digest()) != std::string::npos);
  CHECK(r.error().message.find(fmt::format("bytes {}-{}", 2 * kChunk, 4 * kChunk - 1)) != std::string::npos);
  CHECK(r.error().message.find("connection reset by peer") != std::string::npos);
  CHECK(f.entry->present_bytes() == 0);

  f.remote->fail_ranges = false;
  f.remote->short_by = 1;
  r = source.read_at(2 * kChunk + 5, out);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find(fmt::format("got {} of {} bytes", 2 * kChunk - 1, 2 * kChunk)) != std::string::npos);
  CHECK(f.entry->present_bytes() == 0);

  // Waiters share the failure of the fetch they waited for.
  f.remote->short_by = 0;
  f.remote->fail_ranges = true;
  f.remote->range_delay = 300ms;
  std::latch start(4);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      std::string b(100, '\0');
      start.arrive_and_wait();
      if (!source.read_at(4 * kChunk, std::as_writable_bytes(std::span(b)))) ++failures;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failures == 4);
  CHECK(f.remote->range_calls == 3);
  CHECK(f.entry->present_bytes() == 0);

  // And it recovers.
  f.remote->fail_ranges = false;
  f.remote->range_delay = 0ms;
  CHECK(read(source, 4 * kChunk, 100) == f.remote->data().substr(4 * kChunk, 100));
}

TEST_CASE("After a failed fetch the remote is left alone for fail_fast, then asked again") {
  Fixture f(8 * kChunk, 4);
  cache::CachedBlobSource::Options options;
  options.fail_fast = 3s;  // far more than the two reads below take, however loaded the machine
  cache::CachedBlobSource source(f.entry, f.remote, options);
  std::string out(100, '\0');
  auto bytes = std::as_writable_bytes(std::span(out));
  f.remote->fail_ranges = true;
  REQUIRE_FALSE(source.read_at(0, bytes));
  CHECK(f.remote->range_calls == 1);
  f.remote->fail_ranges = false;
  auto again = source.read_at(3 * kChunk, bytes);  // another range, at once: not asked
  REQUIRE_FALSE(again);
  CHECK_THAT(again.error().message, Catch::Contains("the last fetch failed"));
  CHECK(f.remote->range_calls == 1);
  std::this_thread::sleep_for(3100ms);  // past fail_fast (a sleep can only be longer)
  CHECK(read(source, 3 * kChunk, 100) == f.remote->data().substr(3 * kChunk, 100));
  CHECK(f.remote->range_calls == 2);
}

TEST_CASE("Streaming fills the cache in order; a scan right behind it makes no range request") {
  Fixture f(40 * kChunk + 999, 3);
  f.remote->piece = 48 << 10;  // pieces that do not line up with chunks
  f.remote->piece_delay = 1ms;
  cache::CachedBlobSource source(f.entry, f.remote);
  source.start_stream();
  source.start_stream();  // once only
  std::string scanned;
  for (std::uint64_t off = 0; off < f.remote->data().size(); off += 1 << 20) {
    scanned += read(source, off, 1 << 20);
  }
  CHECK(scanned == f.remote->data());
  REQUIRE(source.wait_stream());
  CHECK(f.remote->range_calls == 0);
  CHECK(f.remote->stream_calls == 1);
  CHECK(f.entry->complete());
  auto p = source.progress();
  CHECK(p.stream_done);
  CHECK_FALSE(p.streaming);
  CHECK(p.present == p.size);
  CHECK(p.streamed == p.size);
  CHECK(p.fetched == 0);
}

TEST_CASE("Readers far ahead of the stream fetch by range; everything read is right") {
  Fixture f(64 * kChunk, 4);
  f.remote->piece_delay = 2ms;  // ~32 MiB/s: the stream takes ~0.5 s
  cache::CachedBlobSource::Options options;
  options.stream_window = 2 * kChunk;
  cache::CachedBlobSource source(f.entry, f.remote, options);
  source.start_stream();
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(100 + t);
      for (int i = 0; i < 25; ++i) {
        std::uint64_t off = rng() % f.remote->data().size();
        std::size_t len = 1 + rng() % (200 << 10);
        if (read_quietly(source, off, len) != f.remote->data().substr(off, len)) ++wrong;
        std::this_thread::sleep_for(2ms);
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(wrong == 0);
  REQUIRE(source.wait_stream());
  CHECK(f.entry->complete());
  CHECK(f.remote->range_calls > 0);
  std::string all(f.remote->data().size(), '\0');
  REQUIRE(f.entry->read(0, std::as_writable_bytes(std::span(all))));
  CHECK(all == f.remote->data());
}

TEST_CASE("The stream asks for exactly the runs of missing chunks") {
  Fixture f(40 * kChunk, 5);
  const auto& data = f.remote->data();
  auto put = [&](std::uint64_t c) {
    REQUIRE(f.entry->write_chunk(c, std::as_bytes(std::span(data.data() + c * kChunk, kChunk))));
  };
  for (std::uint64_t c = 0; c < 3; ++c) put(c);
  for (std::uint64_t c = 10; c < 30; ++c) put(c);
  put(31);  // a one-chunk present run is skipped too: nothing is fetched twice
  cache::CachedBlobSource source(f.entry, f.remote);
  source.start_stream();
  REQUIRE(source.wait_stream());
  CHECK(f.entry->complete());
  CHECK(f.remote->stream_froms == std::vector<std::uint64_t>{3 * kChunk, 30 * kChunk, 32 * kChunk});
  CHECK(f.remote->stream_tos == std::vector<std::uint64_t>{10 * kChunk, 31 * kChunk, 40 * kChunk});
  CHECK(f.remote->stream_bytes == 16 * kChunk);
  std::string all(data.size(), '\0');
  REQUIRE(f.entry->read(0, std::as_writable_bytes(std::span(all))));
  CHECK(all == data);

  // A complete blob starts no stream at all.
  cache::CachedBlobSource again(f.entry, f.remote);
  again.start_stream();
  REQUIRE(again.wait_stream());
  CHECK(f.remote->stream_calls == 3);
}

TEST_CASE("A failed stream reports its error; reads still work by range") {
  Fixture f(20 * kChunk, 6);
  f.remote->piece = kChunk / 4;
  f.remote->fail_stream_at = 5 * kChunk + 100;  // chunk 5 gets its first piece only
  cache::CachedBlobSource source(f.entry, f.remote);
  source.start_stream();
  auto r = source.wait_stream();
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("stream cut") != std::string::npos);
  CHECK(f.entry->next_absent(0) == 5);
  CHECK(read(source, 0, 20 * kChunk) == f.remote->data());
  CHECK(f.remote->range_calls == 1);
}

TEST_CASE("A short stream is an error, not a complete blob") {
  Fixture f(8 * kChunk, 7);
  struct Truncating final : cache::RemoteBlob {
    std::shared_ptr<FakeRemote> inner;
    Result<std::size_t> read_range(std::uint64_t o, std::span<std::byte> b) override { return inner->read_range(o, b); }
    Result<void> stream(std::uint64_t from, std::uint64_t, const Sink& sink, const std::function<bool()>&) override {
      auto& d = inner->data();
      return sink(std::as_bytes(std::span(d.data() + from, 3 * kChunk + 10)));
    }
    std::string describe() const override { return inner->describe(); }
  };
  auto remote = std::make_shared<Truncating>();
  remote->inner = f.remote;
  cache::CachedBlobSource source(f.entry, remote);
  source.start_stream();
  auto r = source.wait_stream();
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find(fmt::format("ended at byte {} of {}", 3 * kChunk + 10, 8 * kChunk)) != std::string::npos);
  CHECK(f.entry->present_bytes() == 3 * kChunk);
}

TEST_CASE("Destroying a source while it streams stops the stream without hanging") {
  Fixture f(64 * kChunk, 8);  // 16 MiB at 64 KiB per 5 ms: 1.3 s at the very least
  f.remote->piece_delay = 5ms;
  {
    cache::CachedBlobSource source(f.entry, f.remote);
    source.start_stream();
    // Until a chunk is stored (no fixed sleep: a loaded machine may be slow to start the stream).
    for (int i = 0; i < 6000 && source.progress().present == 0; ++i) std::this_thread::sleep_for(10ms);
    auto p = source.progress();
    CHECK(p.streaming);
    CHECK(p.streamed > 0);
    // A reader waiting for the stream is released too.
    std::thread reader([&] {
      std::string b(100, '\0');
      (void)source.read_at(3 * kChunk, std::as_writable_bytes(std::span(b)));
    });
    std::this_thread::sleep_for(10ms);
    source.stop_stream();
    reader.join();
    auto r = source.wait_stream();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == std::errc::operation_canceled);
  }
  {
    cache::CachedBlobSource source(f.entry, f.remote);
    source.start_stream();
    for (int i = 0; i < 6000 && f.remote->stream_calls < 2; ++i) std::this_thread::sleep_for(10ms);
    CHECK(f.remote->stream_calls == 2);
  }  // destructor
  // Both streams ended part way: neither destructor nor stop_stream waited for the whole blob
  // (which the remote takes 1.3 s or more to send), and what was stored is right.
  CHECK(f.remote->stream_bytes < f.remote->data().size());
  CHECK_FALSE(f.entry->complete());
  // What was stored is right.
  auto n = f.entry->next_absent(0);
  CHECK(n > 0);
  std::string got(n * kChunk, '\0');
  REQUIRE(f.entry->read(0, std::as_writable_bytes(std::span(got))));
  CHECK(got == f.remote->data().substr(0, n * kChunk));
}

TEST_CASE("A stalled stream does not hold readers beyond stream_wait") {
  Fixture f(16 * kChunk, 9);
  test::Gate stall;
  f.remote->before_stream = [&] { stall.wait(); };  // stalls before its first byte, until opened
  cache::CachedBlobSource::Options options;
  options.stream_wait = 100ms;
  cache::CachedBlobSource source(f.entry, f.remote, options);
  source.start_stream();
  REQUIRE(stall.wait_waiting());
  CHECK(read(source, kChunk, 100) == f.remote->data().substr(kChunk, 100));
  // Served by a range request of its own while the stream was still stalled: the reader stopped
  // waiting for the stream by itself.
  CHECK(f.remote->range_calls == 1);
  CHECK(f.remote->stream_bytes == 0);
  stall.open();
  source.stop_stream();
}

TEST_CASE("A fetch that throws still lands its flight: readers waiting for it get an error, not a hang") {
  Fixture f(4 * kChunk);
  cache::CachedBlobSource source(f.entry, f.remote);
  std::latch waiting(1);
  std::atomic<bool> first{true};
  f.remote->before_range = [&] {
    if (!first.exchange(false)) return;
    waiting.wait();                                  // the second reader is on its way to wait for us
    std::this_thread::sleep_for(200ms);              // and is waiting now
    throw std::bad_alloc();                          // as the buffer allocation could
  };
  std::string second;
  bool threw = false;
  std::thread fetcher([&] {
    std::string out(100, '\0');
    try {
      (void)source.read_at(0, std::as_writable_bytes(std::span(out)));
    } catch (const std::bad_alloc&) {
      threw = true;  // up to the FUSE edge, which answers ENOMEM
    }
  });
  // The fetcher must register its flight before the waiter looks; give it the head start.
  while (f.remote->range_calls == 0) std::this_thread::sleep_for(1ms);
  std::thread waiter([&] {
    waiting.count_down();
    second = read_quietly(source, 10, 100);
  });
  fetcher.join();
  waiter.join();
  CHECK(threw);
  // The waiter saw the abandoned flight fail with an error (not a hang).
  CHECK_THAT(second, Catch::Contains("abandoned"));
}

TEST_CASE("A reader waiting for another's fetch gives up at its own deadline; the fetch goes on") {
  Fixture f(4 * kChunk);
  test::Gate fetch;
  f.remote->before_range = [&] { fetch.wait(); };  // the fetch hangs until opened
  cache::CachedBlobSource source(f.entry, f.remote);
  std::string slow;
  std::thread fetcher([&] { slow = read_quietly(source, 0, 1000); });
  REQUIRE(fetch.wait_waiting());
  std::string out(100, '\0');
  Result<std::size_t> n = std::size_t{0};
  {
    util::DeadlineScope scope(util::Clock::now() + 200ms);
    n = source.read_at(10, std::as_writable_bytes(std::span(out)));
  }
  // It gave up while the fetch it waited for still hung: its deadline ended the wait.
  CHECK(f.remote->range_bytes == 0);
  fetch.open();
  REQUIRE_FALSE(n.ok());
  CHECK(n.error().code == std::errc::timed_out);
  fetcher.join();
  CHECK(slow == f.remote->data().substr(0, 1000));
  CHECK(f.remote->range_calls == 1);
}

TEST_CASE("A stream whose remote throws ends with an error; the process goes on") {
  Fixture f(4 * kChunk);
  f.remote->throw_in_stream = true;
  cache::CachedBlobSource source(f.entry, f.remote);
  source.start_stream();
  auto r = source.wait_stream();
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("a bug in the stream"));
  CHECK(read(source, 0, 100) == f.remote->data().substr(0, 100));  // by range
}

TEST_CASE("present() says whether a range needs no fetch, to the chunk") {
  Fixture f(3 * kChunk + 100);
  const auto& data = f.remote->data();
  REQUIRE(f.entry->write_chunk(0, std::as_bytes(std::span(data.data(), kChunk))));
  REQUIRE(f.entry->write_chunk(3, std::as_bytes(std::span(data.data() + 3 * kChunk, 100))));
  cache::CachedBlobSource source(f.entry, f.remote);
  CHECK(source.present(0, kChunk));
  CHECK(source.present(10, 100));
  CHECK_FALSE(source.present(10, kChunk));  // into chunk 1
  CHECK_FALSE(source.present(kChunk, 1));
  CHECK(source.present(3 * kChunk, 1000));  // the last chunk, clamped to the blob
  CHECK(source.present(5 * kChunk, 10));    // nothing there to fetch
  CHECK(f.remote->range_calls == 0);
}
