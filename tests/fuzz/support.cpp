#include "support.hpp"

#include <spdlog/spdlog.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <fstream>

#include "ocifs/util/sha256.hpp"

namespace ocifs::fuzz {

namespace {

// Warnings about skipped entries and dropped xattrs are expected for most inputs: printing them
// costs more than parsing.
const bool kQuiet = [] {
  spdlog::set_level(spdlog::level::off);
  return true;
}();

struct Scratch {
  std::filesystem::path path;
  Scratch() {
    // In memory where there is a tmpfs: the cache targets write and fsync files on every input.
    std::error_code ec;
    auto base = std::filesystem::is_directory("/dev/shm", ec) && ::access("/dev/shm", W_OK) == 0
                    ? std::filesystem::path("/dev/shm")
                    : std::filesystem::temp_directory_path();
    std::string tmpl = (base / "ocifs-fuzz-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) std::abort();
    path = tmpl;
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

const std::filesystem::path& scratch_dir() {
  static Scratch scratch;
  return scratch.path;
}

void empty_scratch() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(scratch_dir(), ec))
    std::filesystem::remove_all(e, ec);
}

void write_file(const std::filesystem::path& path, std::string_view data) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
}

void fix_sha256_trailer(std::string& bytes, std::size_t min_size) {
  if (bytes.size() < min_size || bytes.size() < 32) return;
  util::Sha256 sum;
  sum.update(std::string_view(bytes).substr(0, bytes.size() - 32));
  auto digest = sum.digest();
  bytes.replace(bytes.size() - 32, 32, reinterpret_cast<const char*>(digest.data()), digest.size());
}

void fix_layer_index_checksums(std::string& bytes) {
  constexpr std::size_t kHeader = 112;
  if (bytes.size() < kHeader + 32) return;
  auto le64 = [&](std::size_t at) {
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(bytes[at + i])} << (8 * i);
    return v;
  };
  // The sections before the seek index: entries, extras, xattrs, extents, pool bytes.
  unsigned __int128 at = kHeader;
  const std::size_t record[] = {53, 32, 16, 16, 1};
  for (int i = 0; i < 5; ++i) at += static_cast<unsigned __int128>(le64(16 + 8 * i)) * record[i];
  const std::uint64_t seek_size = le64(56);
  if (at + seek_size <= bytes.size() - 32) {
    fix_crc32_trailer(bytes, static_cast<std::size_t>(at), static_cast<std::size_t>(seek_size));
  }
  fix_sha256_trailer(bytes, kHeader + 32);
}

void fix_crc32_trailer(std::string& bytes, std::size_t at, std::size_t size) {
  if (size < 4 || at > bytes.size() || size > bytes.size() - at) return;
  uLong crc = crc32_z(0, reinterpret_cast<const Bytef*>(bytes.data() + at), size - 4);
  for (int i = 0; i < 4; ++i) bytes[at + size - 4 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
}

std::span<const std::byte> as_bytes(std::string_view s) {
  return std::as_bytes(std::span(s.data(), s.size()));
}

Result<std::size_t> ViewSource::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (offset >= data_.size()) return std::size_t{0};
  auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), data_.size() - offset));
  std::memcpy(buf.data(), data_.data() + offset, n);
  return n;
}

}  // namespace ocifs::fuzz
