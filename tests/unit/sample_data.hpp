// Test data shared by the unit tests: random bytes, mixed compressible / random samples, gzip
// members made with zlib, a source whose reads can be held, a gate to hold test doubles with.
// Header-only, for tests (Catch2 assertions inside).
#pragma once

#include <zlib.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>
#include <span>
#include <string>
#include <string_view>

#include "ocifs/io/blob_source.hpp"

namespace ocifs::test {

// `size` pseudo-random bytes, the same for the same seed.
inline std::string random_bytes(std::size_t size, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; i += 8) {
    auto v = rng();
    std::memcpy(out.data() + i, &v, std::min<std::size_t>(8, size - i));
  }
  return out;
}

// Random bytes and word salad in runs of 1-64 KiB: some blocks deflate well, some do not.
inline std::string make_data(std::size_t size, std::uint64_t seed) {
  static const char* words[] = {"layer ",
                                "image ",
                                "tar ",
                                "gzip ",
                                "checkpoint ",
                                "window ",
                                "\n",
                                "usr/lib/",
                                "0123456789",
                                "the quick brown fox ",
                                "{\"key\": \"value\"}, "};
  std::mt19937_64 rng(seed);
  std::string out;
  out.reserve(size);
  while (out.size() < size) {
    std::size_t run = 1024 + rng() % (64 * 1024);
    bool random = rng() % 3 == 0;
    for (std::size_t i = 0; i < run && out.size() < size;) {
      if (random) {
        out.push_back(static_cast<char>(rng()));
        ++i;
      } else {
        std::string_view w = words[rng() % std::size(words)];
        out += w;
        i += w.size();
      }
    }
  }
  out.resize(size);
  return out;
}

// One gzip member (header, raw deflate, CRC-32 + ISIZE) made with zlib; `header` sets the
// optional header fields (FEXTRA, FNAME, FCOMMENT, FHCRC).
inline std::string gzip_member(std::string_view data, int level = 6, gz_header* header = nullptr) {
  z_stream strm{};
  REQUIRE(deflateInit2(&strm, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  if (header) REQUIRE(deflateSetHeader(&strm, header) == Z_OK);
  std::string out(deflateBound(&strm, data.size()) + 256, '\0');
  strm.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  strm.avail_in = static_cast<uInt>(data.size());
  strm.next_out = reinterpret_cast<Bytef*>(out.data());
  strm.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&strm, Z_FINISH) == Z_STREAM_END);
  out.resize(strm.total_out);
  deflateEnd(&strm);
  return out;
}

// Reads through a reader or cursor; a failed read fails the test with its message.
template <class Reader>
std::string read_string(Reader& reader, std::uint64_t offset, std::size_t length) {
  std::string out(length, '\0');
  auto n = reader.read_at(offset, std::as_writable_bytes(std::span(out)));
  INFO((n.ok() ? std::string() : n.error().message));
  REQUIRE(n.ok());
  out.resize(*n);
  return out;
}

// Test code holds a Gate closed: wait() blocks until open(). A wait gives up after a minute, so
// that a test whose code under test never stops waiting fails (on what it checks next) instead
// of hanging until the suite's timeout. For showing that something ended a wait by itself (its
// deadline, a cancel) while what it waited for had not come: no wall-clock assertion needed.
class Gate {
 public:
  // True when opened, false after a minute.
  bool wait() const {
    std::unique_lock lock(mu_);
    ++waiting_;
    cv_.notify_all();
    return cv_.wait_for(lock, std::chrono::minutes(1), [&] { return open_; });
  }
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  bool is_open() const {
    std::lock_guard lock(mu_);
    return open_;
  }
  // Until `count` waits have begun (false after a minute).
  bool wait_waiting(int count = 1) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::minutes(1), [&] { return waiting_ >= count; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable int waiting_ = 0;
  bool open_ = false;
};

// A source whose reads overlapping [from, to) wait until release() (at most a minute): a fetch
// that hangs, for the tests of what other readers do meanwhile.
class HeldSource final : public io::BlobSource {
 public:
  HeldSource(io::BlobSourcePtr inner, std::uint64_t from, std::uint64_t to)
      : inner_(std::move(inner)), from_(from), to_(to) {}
  std::uint64_t size() const override { return inner_->size(); }
  std::string describe() const override { return inner_->describe(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    if (offset < to_ && offset + buf.size() > from_) {
      std::unique_lock lock(mu_);
      ++held_;
      cv_.notify_all();
      cv_.wait_for(lock, std::chrono::minutes(1), [&] { return released_; });
      ++passed_;
    }
    return inner_->read_at(offset, buf);
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  // Until a read is being held (at most a minute).
  void wait_held() const {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, std::chrono::minutes(1), [&] { return held_ > 0; });
  }
  // Held reads that have gone on since (released, or given up on after a minute): 0 while the
  // hang lasts.
  int passed() const {
    std::lock_guard lock(mu_);
    return passed_;
  }

 private:
  io::BlobSourcePtr inner_;
  std::uint64_t from_, to_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable int held_ = 0;
  mutable int passed_ = 0;
  bool released_ = false;
};

// What a read of `length` bytes at `offset` must return: short at the end, empty past it.
inline std::string expected_at(const std::string& data, std::uint64_t offset, std::size_t length) {
  if (offset >= data.size()) return {};
  return data.substr(offset, length);
}

}  // namespace ocifs::test
