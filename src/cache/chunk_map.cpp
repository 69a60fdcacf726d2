#include "ocifs/cache/chunk_map.hpp"

#include <algorithm>
#include <bit>
#include <cstring>

#include "ocifs/util/sha256.hpp"

namespace ocifs::cache {

namespace {

// The file format's fixed parts (byte table in chunk_map.hpp).
constexpr char kMagic[8] = {'O', 'C', 'I', 'F', 'S', 'M', 'A', 'P'};
constexpr std::size_t kHeaderSize = 32;
constexpr std::size_t kTrailerSize = 32;

template <class T>
void put(std::string& out, T value) {
  for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

template <class T>
T get(std::string_view in, std::size_t at) {
  T value = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) value |= static_cast<T>(static_cast<unsigned char>(in[at + i])) << (8 * i);
  return value;
}

std::uint64_t chunks_for(std::uint64_t blob_size) {
  return (blob_size + ChunkMap::kChunkSize - 1) / ChunkMap::kChunkSize;
}

}  // namespace

ChunkMap::ChunkMap(std::uint64_t blob_size)
    : blob_size_(blob_size),
      chunk_count_(chunks_for(blob_size)),
      bits_((chunk_count_ + 63) / 64, 0),
      last_use_(chunk_count_, 0) {}

std::uint64_t ChunkMap::encoded_size(std::uint64_t blob_size) {
  std::uint64_t n = chunks_for(blob_size);
  return kHeaderSize + 8 * ((n + 63) / 64) + 4 * n + kTrailerSize;
}

std::uint64_t ChunkMap::chunk_length(std::uint64_t chunk) const {
  std::uint64_t start = chunk * kChunkSize;
  return std::min(kChunkSize, blob_size_ - start);
}

std::optional<ChunkMap> ChunkMap::parse(std::string_view bytes) {
  if (bytes.size() < kHeaderSize + kTrailerSize || std::memcmp(bytes.data(), kMagic, 8) != 0) return std::nullopt;
  if (get<std::uint32_t>(bytes, 8) != kVersion || get<std::uint32_t>(bytes, 12) != kChunkSize) return std::nullopt;
  std::uint64_t blob_size = get<std::uint64_t>(bytes, 16);
  std::uint64_t count = get<std::uint64_t>(bytes, 24);
  if (blob_size > kMaxBlobSize || count != chunks_for(blob_size) || bytes.size() != encoded_size(blob_size)) {
    return std::nullopt;
  }
  auto body = bytes.substr(0, bytes.size() - kTrailerSize);
  auto sum = util::Sha256();
  sum.update(body);
  auto digest = sum.digest();
  if (std::memcmp(digest.data(), bytes.data() + body.size(), digest.size()) != 0) return std::nullopt;

  ChunkMap map(blob_size);
  std::size_t at = kHeaderSize;
  for (auto& word : map.bits_) {
    word = get<std::uint64_t>(bytes, at);
    at += 8;
  }
  if (count % 64 != 0 && (map.bits_.back() >> (count % 64)) != 0) return std::nullopt;
  for (auto& t : map.last_use_) {
    t = get<std::uint32_t>(bytes, at);
    at += 4;
  }
  return map;
}

std::string ChunkMap::serialize() const {
  std::string out;
  out.reserve(encoded_size(blob_size_));
  out.append(kMagic, 8);
  put<std::uint32_t>(out, kVersion);
  put<std::uint32_t>(out, static_cast<std::uint32_t>(kChunkSize));
  put<std::uint64_t>(out, blob_size_);
  put<std::uint64_t>(out, chunk_count_);
  for (auto word : bits_) put<std::uint64_t>(out, word);
  for (auto t : last_use_) put<std::uint32_t>(out, t);
  auto sum = util::Sha256();
  sum.update(std::string_view(out));
  auto digest = sum.digest();
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

void ChunkMap::merge(const ChunkMap& other) {
  if (other.blob_size_ != blob_size_) return;
  for (std::size_t i = 0; i < bits_.size(); ++i) bits_[i] |= other.bits_[i];
  for (std::size_t i = 0; i < last_use_.size(); ++i) last_use_[i] = std::max(last_use_[i], other.last_use_[i]);
}

std::uint64_t ChunkMap::present_chunks() const {
  std::uint64_t n = 0;
  for (auto word : bits_) n += static_cast<std::uint64_t>(std::popcount(word));
  return n;
}

std::uint64_t ChunkMap::present_bytes() const {
  if (chunk_count_ == 0) return 0;
  std::uint64_t n = present_chunks() * kChunkSize;
  // The last chunk may be short.
  if (test(chunk_count_ - 1)) n -= kChunkSize - chunk_length(chunk_count_ - 1);
  return n;
}

std::uint32_t ChunkMap::last_use_max() const {
  std::uint32_t t = 0;
  for (std::uint64_t i = 0; i < chunk_count_; ++i) {
    if (test(i)) t = std::max(t, last_use_[i]);
  }
  return t;
}

}  // namespace ocifs::cache
