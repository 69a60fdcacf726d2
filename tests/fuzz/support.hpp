// What the fuzz targets share: reading a structured input front to back, failing loudly when a
// property does not hold, a scratch directory for the targets that parse files of the cache,
// and the checksums the on-disk formats end with (a target recomputes them so that mutated
// inputs get past the checksum to the checks behind it).
#pragma once

#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "ocifs/io/blob_source.hpp"

namespace ocifs::fuzz {

// A fuzz input read from the front: fixed-width little-endian numbers (missing bytes read as
// 0), then byte strings. Seeds put their parameters first and their payload last.
class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : rest_(reinterpret_cast<const char*>(data), size) {}
  explicit Input(std::string_view data) : rest_(data) {}

  std::uint64_t number(int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) {
      if (!rest_.empty()) {
        v |= std::uint64_t{static_cast<unsigned char>(rest_[0])} << (8 * i);
        rest_.remove_prefix(1);
      }
    }
    return v;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(number(1)); }
  std::uint16_t u16() { return static_cast<std::uint16_t>(number(2)); }
  std::uint32_t u32() { return static_cast<std::uint32_t>(number(4)); }
  std::uint64_t u64() { return number(8); }
  // Up to `n` bytes.
  std::string_view bytes(std::size_t n) {
    auto out = rest_.substr(0, n);
    rest_.remove_prefix(out.size());
    return out;
  }
  // A string given as a u16 length then its bytes.
  std::string_view sized() { return bytes(u16()); }
  std::string_view rest() {
    auto out = rest_;
    rest_ = {};
    return out;
  }
  bool empty() const { return rest_.empty(); }
  std::size_t left() const { return rest_.size(); }

 private:
  std::string_view rest_;
};

// A property that must hold for every input: prints why and aborts, which libFuzzer reports as a
// crash and saves the input.
template <class... Args>
void check(bool ok, fmt::format_string<Args...> format, Args&&... args) {
  if (ok) return;
  std::fprintf(stderr, "fuzz property failed: %s\n",
               fmt::format(format, std::forward<Args>(args)...).c_str());
  std::fflush(stderr);
  std::abort();
}

// A directory of this process's own under $TMPDIR, removed at exit; empty_scratch() empties it
// between inputs.
const std::filesystem::path& scratch_dir();
void empty_scratch();
void write_file(const std::filesystem::path& path, std::string_view data);

// Overwrites the last 32 bytes of `bytes` with the sha256 of what precedes them (when it has
// more than `min_size` bytes), and the last 4 of `bytes.substr(at, size)` with its zlib CRC-32.
void fix_sha256_trailer(std::string& bytes, std::size_t min_size);
void fix_crc32_trailer(std::string& bytes, std::size_t at, std::size_t size);
// A layer index file (layer_index.cpp): the embedded seek index's CRC-32, where the header says
// it lies, and the trailing sha256.
void fix_layer_index_checksums(std::string& bytes);

std::span<const std::byte> as_bytes(std::string_view s);

// The fuzz input as a blob, without a copy (the input outlives every use in a run).
class ViewSource final : public io::BlobSource {
 public:
  explicit ViewSource(std::string_view data, std::string name = "fuzz input")
      : data_(data), name_(std::move(name)) {}
  std::uint64_t size() const override { return data_.size(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::string describe() const override { return name_; }

 private:
  std::string_view data_;
  std::string name_;
};

}  // namespace ocifs::fuzz
