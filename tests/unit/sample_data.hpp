// Test data shared by the unit tests: random bytes, mixed compressible / random samples, and gzip
// members made with zlib. Header-only, for tests (Catch2 assertions inside).
#pragma once

#include <zlib.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <span>
#include <string>
#include <string_view>

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

// What a read of `length` bytes at `offset` must return: short at the end, empty past it.
inline std::string expected_at(const std::string& data, std::uint64_t offset, std::size_t length) {
  if (offset >= data.size()) return {};
  return data.substr(offset, length);
}

}  // namespace ocifs::test
