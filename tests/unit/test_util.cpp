#include <catch2/catch.hpp>
#include <cstring>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>

#include "ocifs/cache/cache.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/io/block_digests.hpp"
#include "ocifs/io/file_source.hpp"
#include "ocifs/util/base64.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/duration.hpp"
#include "ocifs/util/result.hpp"
#include "ocifs/util/sha256.hpp"
#include "ocifs/util/thread_boundary.hpp"
#include "ocifs/util/work_pool.hpp"
#include "temp_dir.hpp"

using namespace ocifs;

TEST_CASE("sha256 of known inputs") {
  CHECK(util::sha256_hex(std::string_view("")) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(util::sha256_hex(std::string_view("abc")) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  util::Sha256 h;
  h.update(std::string_view("a"));
  h.update(std::string_view("bc"));
  CHECK(h.hex_digest() == util::sha256_hex(std::string_view("abc")));
}

Result<int> half(int x) {
  if (x % 2) return make_error(std::errc::invalid_argument, "cannot halve {}: odd", x);
  return x / 2;
}

Result<int> quarter(int x) {
  OCIFS_ASSIGN(int h, half(x));
  OCIFS_ASSIGN(int q, half(h));
  return q;
}

TEST_CASE("Result propagates errors with their messages") {
  REQUIRE(quarter(8).ok());
  CHECK(*quarter(8) == 2);
  auto bad = quarter(6);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "cannot halve 3: odd");
  CHECK(bad.error().errno_value() == EINVAL);
}

TEST_CASE("slices and memory sources read within bounds") {
  auto mem = std::make_shared<io::MemorySource>("0123456789", "mem");
  io::SliceSource slice(mem, 3, 4, "slice");
  std::string out(10, '\0');
  auto n = slice.read_at(1, std::as_writable_bytes(std::span(out)));
  REQUIRE(n.ok());
  CHECK(*n == 3);
  CHECK(out.substr(0, 3) == "456");
  CHECK(*slice.read_at(4, std::as_writable_bytes(std::span(out))) == 0);
  std::string four(4, '\0');
  CHECK_FALSE(slice.read_exact(2, std::as_writable_bytes(std::span(four))).ok());
}

TEST_CASE("atomic files and the cache layout") {
  auto dir = std::filesystem::temp_directory_path() / ("ocifs-test-util-" + std::to_string(::getpid()));
  auto cache = cache::Cache::open(dir);
  REQUIRE(cache.ok());
  std::string digest = "sha256:" + std::string(64, 'a');
  CHECK_FALSE(cache->read_index(digest)->has_value());
  REQUIRE(cache->write_index(digest, "hello").ok());
  CHECK(cache->read_index(digest)->value() == "hello");
  cache->remove_index(digest);
  CHECK_FALSE(cache->read_index(digest)->has_value());
  CHECK_FALSE(cache->write_index("sha256:../../etc", "x").ok());
  {
    auto pending = cache->create_decoded(digest);
    REQUIRE(pending.ok());
    REQUIRE(pending->write("abc").ok());
    // not committed: nothing appears
  }
  CHECK_FALSE(std::filesystem::exists(cache->decoded_path(digest)));
  auto pending = cache->create_decoded(digest);
  REQUIRE(pending->write("abc").ok());
  REQUIRE(pending->commit().ok());
  CHECK(*io::read_file(cache->decoded_path(digest), 100) == "abc");

  // Documents are checked against their digest on read; a damaged one reads as absent.
  std::string doc = R"({"schemaVersion":2})";
  std::string doc_digest = "sha256:" + util::sha256_hex(doc);
  CHECK_FALSE(cache->read_document(doc_digest)->has_value());
  REQUIRE(cache->write_document(doc_digest, doc).ok());
  CHECK(cache->read_document(doc_digest)->value() == doc);
  REQUIRE(cache->write_document(digest, doc).ok());  // stored under the wrong digest
  CHECK_FALSE(cache->read_document(digest)->has_value());

  // Refs: one file per host/repository/tag; nothing can name a path outside refs/.
  CHECK_FALSE(cache->read_ref("127.0.0.1:5000", "team/app", "v1")->has_value());
  REQUIRE(cache->write_ref("127.0.0.1:5000", "team/app", "v1", doc_digest).ok());
  CHECK(cache->read_ref("127.0.0.1:5000", "team/app", "v1")->value() == doc_digest);
  CHECK(cache->write_ref("[::1]:5000", "library/debian", "bookworm", doc_digest).ok());
  CHECK_FALSE(cache->write_ref("host", "../../etc", "x", doc_digest).ok());
  CHECK_FALSE(cache->write_ref("host", "a//b", "x", doc_digest).ok());
  CHECK_FALSE(cache->write_ref("..", "a", "x", doc_digest).ok());
  CHECK_FALSE(cache->write_ref("host", "a", "x/y", doc_digest).ok());
  // A ref file damaged into more than a digest reads as never resolved, not as an error that
  // fails the mount (found by tests/fuzz: ref-longer-than-a-digest).
  int damaged = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dir)) {
    if (f.is_regular_file() && f.path().filename() == "v1" && f.path().parent_path().filename() == "app") {
      std::ofstream(f.path(), std::ios::app) << std::string(1100, '\n');
      ++damaged;
    }
  }
  REQUIRE(damaged == 1);
  auto long_ref = cache->read_ref("127.0.0.1:5000", "team/app", "v1");
  REQUIRE(long_ref.ok());
  CHECK_FALSE(long_ref->has_value());
  std::filesystem::remove_all(dir);
}

TEST_CASE("block digests: recorded in one pass, checked on read") {
  std::string data;
  for (int i = 0; i < 10000; ++i) data += std::to_string(i * 7919) + ",";
  io::BlockHasher hasher(1000);
  // Fed in uneven pieces, as a decoder reads.
  for (std::size_t at = 0; at < data.size(); at += 333) {
    hasher.update(std::as_bytes(std::span(data).subspan(at, std::min<std::size_t>(333, data.size() - at))));
  }
  auto digests = hasher.finish();
  CHECK(digests.covers(data.size()));
  CHECK(digests.digests.size() == (data.size() + 999) / 1000);
  CHECK_FALSE(digests.covers(data.size() + 1));

  auto read = [](const io::BlobSource& source, std::uint64_t off, std::size_t n) {
    std::string out(n, '\0');
    auto r = source.read_at(off, std::as_writable_bytes(std::span(out)));
    return r ? out.substr(0, *r) : "ERROR: " + r.error().message;
  };
  io::VerifiedSource good(std::make_shared<io::MemorySource>(data, "good"), digests);
  CHECK(read(good, 0, data.size()) == data);
  CHECK(read(good, 1999, 5) == data.substr(1999, 5));
  CHECK(read(good, data.size() - 3, 100) == data.substr(data.size() - 3));
  CHECK(read(good, data.size(), 10).empty());

  std::string bad = data;
  bad[12345] ^= 1;
  auto errors = std::make_shared<io::ReadErrors>();
  io::VerifiedSource damaged(std::make_shared<io::MemorySource>(bad, "damaged"), digests, errors);
  CHECK(read(damaged, 0, 1000) == data.substr(0, 1000));  // blocks before the damage are fine
  CHECK(errors->snapshot().count == 0);
  CHECK_THAT(read(damaged, 12000, 10), Catch::Contains("bytes 12000-12999 do not match"));
  CHECK_THAT(read(damaged, 11990, 20), Catch::StartsWith("ERROR"));  // a range that touches it
  CHECK_THAT(read(damaged, 12345, 1), Catch::StartsWith("ERROR"));   // and again: never cached as good
  // Each failed read is counted for `ocifs status`, with the last message.
  auto seen = errors->snapshot();
  CHECK(seen.count == 3);
  CHECK_THAT(seen.last, Catch::Contains("damaged") && Catch::Contains("bytes 12000-12999 do not match"));

  // A cache (unstable, can discard): a bad copy is dropped and fetched again; bytes that change
  // after a block was checked are caught too, because such a source is checked on every read.
  struct FlakyCache : io::BlobSource {
    std::string good, bad;
    mutable bool damaged = true;
    bool heals = true;  // a fetch after discard() brings the right bytes
    mutable int discards = 0;
    std::uint64_t size() const override { return good.size(); }
    Result<std::size_t> read_at(std::uint64_t off, std::span<std::byte> buf) const override {
      const std::string& now = damaged ? bad : good;
      auto n = std::min<std::uint64_t>(buf.size(), now.size() - std::min<std::uint64_t>(off, now.size()));
      std::memcpy(buf.data(), now.data() + off, n);
      return static_cast<std::size_t>(n);
    }
    std::string describe() const override { return "flaky"; }
    bool stable() const override { return false; }
    bool discard(std::uint64_t, std::uint64_t) const override {
      ++discards;
      damaged = !heals;
      return true;
    }
  };
  auto flaky = std::make_shared<FlakyCache>();
  flaky->good = data;
  flaky->bad = bad;
  auto cache_errors = std::make_shared<io::ReadErrors>();
  io::VerifiedSource healed(flaky, digests, cache_errors);
  CHECK(read(healed, 12000, 10) == data.substr(12000, 10));
  CHECK(flaky->discards == 1);
  CHECK(cache_errors->snapshot().count == 0);  // a bad copy fetched again and right is no error
  flaky->damaged = true;  // changed under us after the block was checked, and for good
  flaky->heals = false;
  CHECK_THAT(read(healed, 12000, 10), Catch::Contains("do not match"));
  CHECK(flaky->discards == 2);
  CHECK(cache_errors->snapshot().count == 1);
}

TEST_CASE("base64 round trips and tolerates missing padding") {
  CHECK(util::base64_encode("") == "");
  CHECK(util::base64_encode("f") == "Zg==");
  CHECK(util::base64_encode("fo") == "Zm8=");
  CHECK(util::base64_encode("foo") == "Zm9v");
  CHECK(util::base64_encode("user:p@ss:word") == "dXNlcjpwQHNzOndvcmQ=");
  CHECK(util::base64_decode("dXNlcjpwQHNzOndvcmQ=") == std::optional<std::string>("user:p@ss:word"));
  CHECK(util::base64_decode("Zm8") == std::optional<std::string>("fo"));
  CHECK(util::base64_decode("Zm9v\n") == std::optional<std::string>("foo"));
  CHECK_FALSE(util::base64_decode("Zm9v!"));
  CHECK_FALSE(util::base64_decode("Zg==Zg"));
  CHECK_FALSE(util::base64_decode("Z"));
  // Required padding (TOC xattrs, as Go's StdEncoding): whole groups only.
  using util::Base64Padding;
  CHECK(util::base64_decode("Zm8=", Base64Padding::required) == std::optional<std::string>("fo"));
  CHECK(util::base64_decode("Zg==", Base64Padding::required) == std::optional<std::string>("f"));
  CHECK_FALSE(util::base64_decode("Zm8", Base64Padding::required));
  CHECK_FALSE(util::base64_decode("Zg=", Base64Padding::required));
  CHECK_FALSE(util::base64_decode("Zm9v=", Base64Padding::required));
  CHECK_FALSE(util::base64_decode("Zg===", Base64Padding::required));
}

TEST_CASE("base64 padding: the decoded length never counts '=', white space anywhere") {
  using util::Base64Padding;
  // Padded and unpadded forms of every tail length decode to the same bytes.
  for (const std::string& data : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    INFO(data.size());
    const std::string padded = util::base64_encode(data);
    CHECK(util::base64_decode(padded) == std::optional(data));
    CHECK(util::base64_decode(padded, Base64Padding::required) == std::optional(data));
    std::string unpadded = padded;
    while (!unpadded.empty() && unpadded.back() == '=') unpadded.pop_back();
    CHECK(util::base64_decode(unpadded) == std::optional(data));
    if (unpadded != padded) CHECK_FALSE(util::base64_decode(unpadded, Base64Padding::required));
  }
  CHECK(util::base64_decode(" Zm\r\n9v Zg\t= =\n") == std::optional<std::string>("foof"));
  CHECK(util::base64_decode("Zg= =", Base64Padding::required) == std::optional<std::string>("f"));
  CHECK(util::base64_decode("Zm9v=") == std::optional<std::string>("foo"));  // optional: a stray '=' is padding
  CHECK(util::base64_decode("=") == std::optional<std::string>(""));
  // Invalid: symbols outside the alphabet (also URL-safe ones, and '-' that OpenSSL treats as an
  // end marker), data after padding, a lone symbol, more than two '='.
  for (std::string_view bad : std::vector<std::string_view>{"Zm9v-", "Zm8-", "Zm_v", "Zm+/Z-==", "Zg==Zg", "Zg=a",
                                                            "Zm9vZ", "Z===", "Zg\f==", "Zm\x80v",
                                                            std::string_view("Zm\0v", 4)}) {
    INFO(bad);
    CHECK_FALSE(util::base64_decode(bad));
  }
}

TEST_CASE("Cache: access records round-trip; a damaged one reads as none") {
  ocifs::test::TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  const std::string digest = "sha256:" + std::string(64, 'a');
  auto none = cache->read_access_record(digest);
  REQUIRE(none);
  CHECK_FALSE(*none);
  REQUIRE(cache->write_access_record(digest, {5, 1, 4000000000u}));
  auto back = cache->read_access_record(digest);
  REQUIRE(back);
  REQUIRE(*back);
  CHECK(**back == std::vector<std::uint32_t>{5, 1, 4000000000u});
  std::ofstream(dir.path / "access/sha256" / std::string(64, 'a')) << "ocifs-access 1\n12\nx3\n";
  auto damaged = cache->read_access_record(digest);
  REQUIRE(damaged);
  CHECK_FALSE(*damaged);
  CHECK_FALSE(cache->read_access_record("sha256:../etc"));
}

TEST_CASE("DeadlineScope: a thread's deadline, shortened by nesting, restored at the end") {
  using namespace std::chrono_literals;
  CHECK(util::current_deadline() == util::kNoDeadline);
  const auto now = util::Clock::now();
  {
    util::DeadlineScope outer(now + 10s);
    CHECK(util::current_deadline() == now + 10s);
    {
      util::DeadlineScope longer(now + 60s);  // cannot extend what the request was given
      CHECK(util::current_deadline() == now + 10s);
      util::DeadlineScope shorter(now + 1s);
      CHECK(util::current_deadline() == now + 1s);
    }
    CHECK(util::current_deadline() == now + 10s);
    std::thread([] { CHECK(util::current_deadline() == util::kNoDeadline); }).join();  // per thread
  }
  CHECK(util::current_deadline() == util::kNoDeadline);
  auto e = util::deadline_passed("read x at offset 5");
  CHECK(e.code == std::errc::timed_out);
  CHECK(e.message == "cannot read x at offset 5: no answer within the read deadline");
}

TEST_CASE("parse_duration: seconds by default, ms s m h units, bounds") {
  using namespace std::chrono_literals;
  CHECK(*util::parse_duration("30") == 30s);
  CHECK(*util::parse_duration("2.5") == 2500ms);
  CHECK(*util::parse_duration("500ms") == 500ms);
  CHECK(*util::parse_duration("2s") == 2s);
  CHECK(*util::parse_duration("1.5m") == 90s);
  CHECK(*util::parse_duration("1h") == 3600s);
  for (const char* bad : {"", "s", "-1", "0", "0.0001", "2 s", "1x", "1.2.3", "25h", "ms"}) {
    INFO(bad);
    auto r = util::parse_duration(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().code == std::errc::invalid_argument);
  }
}

TEST_CASE("WorkPool: runs tasks on its threads, refuses when full, drops the queue at stop") {
  using namespace std::chrono_literals;
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> ran{0}, destroyed_unrun{0};
  struct Answer {  // a task that must answer even when it never runs
    explicit Answer(std::atomic<int>* counter) : destroyed_unrun(counter) {}
    std::atomic<int>* destroyed_unrun;
    bool ran = false;
    ~Answer() {
      if (!ran) ++*destroyed_unrun;
    }
  };
  util::WorkPool pool("test", 2, 3);
  auto blocker = [&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return open; });
    ++ran;
  };
  REQUIRE(pool.submit(blocker));
  REQUIRE(pool.submit(blocker));
  while (pool.stats().running < 2) std::this_thread::sleep_for(1ms);  // both threads busy
  CHECK(pool.submit([] { throw std::runtime_error("a bug"); }));  // logged, the thread goes on
  auto answer = std::make_shared<Answer>(&destroyed_unrun);
  CHECK(pool.submit([answer] { answer->ran = true; }));
  CHECK(pool.submit([&] { ++ran; }));
  CHECK_FALSE(pool.submit([&] { ++ran; }));  // 3 queued: full
  CHECK(pool.stats().queued == 3);
  answer.reset();
  {
    std::lock_guard lock(mu);
    open = true;
  }
  cv.notify_all();
  while (ran < 3) std::this_thread::sleep_for(1ms);  // the throwing task did not stop the pool
  CHECK(destroyed_unrun == 0);

  // Stopped with tasks queued behind busy threads: they are destroyed unrun.
  util::WorkPool slow("slow", 1, 10);
  std::atomic<bool> go{false};
  REQUIRE(slow.submit([&] {
    while (!go) std::this_thread::sleep_for(1ms);
  }));
  auto pending = std::make_shared<Answer>(&destroyed_unrun);
  REQUIRE(slow.submit([pending] { pending->ran = true; }));
  pending.reset();
  std::thread stopper([&] { slow.stop(); });
  // Until stop() has dropped the queued task (not a fixed sleep: on a loaded machine stop() may
  // start late, and the pending task would then run once the first one ends).
  for (int i = 0; i < 60'000 && destroyed_unrun == 0; ++i) std::this_thread::sleep_for(1ms);
  go = true;
  stopper.join();
  CHECK(destroyed_unrun == 1);
  CHECK_FALSE(slow.submit([] {}));
}

TEST_CASE("catch_all: what a thread's function throws becomes an Error") {
  CHECK_FALSE(util::catch_all("do nothing", [] {}));
  auto oom = util::catch_all("fill a span", [] { throw std::bad_alloc(); });
  REQUIRE(oom);
  CHECK(oom->code == std::errc::not_enough_memory);
  CHECK(oom->message == "cannot fill a span: out of memory");
  auto bug = util::catch_all("stream blob x", [] { throw std::logic_error("index out of range"); });
  REQUIRE(bug);
  CHECK(bug->code == std::errc::io_error);
  CHECK(bug->message == "cannot stream blob x: internal error: index out of range");
  auto odd = util::catch_all("pack", [] { throw 42; });
  REQUIRE(odd);
  CHECK_THAT(odd->message, Catch::Contains("unknown exception"));
}
