// ChunkMap: which 64 KiB chunks of a sparse cached blob are present, and when each was last
// used; the sidecar file ROOT/blobs/sha256/<hex>.map next to the data file ROOT/blobs/sha256/<hex>.
// Plain value: not synchronised. The file is read and written by BlobEntry under flock (see
// blob_entry.hpp); this class only encodes and decodes it.
//
// On-disk format, version 1, little-endian, N = ceil(blob size / chunk size), W = ceil(N / 64):
//
//   offset        size   field
//   0             8      magic "OCIFSMAP"
//   8             4      format version (1)
//   12            4      chunk size in bytes (262144)
//   16            8      blob size in bytes
//   24            8      chunk count N
//   32            8*W    present bitmap: bit (i % 64) of 64-bit word i / 64 set = chunk i was
//                        written whole and its data flushed with fdatasync before this bit was set
//   32+8W         4*N    last use of chunk i, seconds since the Unix epoch (0: never)
//   32+8W+4N      32     sha256 of every byte before it
//
// The file is exactly 64 + 8W + 4N bytes: 16.6 KiB for a 1 GiB blob. A map whose magic,
// version, chunk size, length, bounds or checksum is wrong is never trusted: every chunk counts
// as absent. The last word's bits past N are zero.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ocifs::cache {

class ChunkMap {
 public:
  // = io::BlockDigests::kDefaultBlockSize: the unit of fetching is the unit of checking. 64 KiB,
  // not more: a read by range fetches on average a chunk it does not need (with 256 KiB chunks a
  // cold `chroot python3` through a shared index fetched 8.1 MB for 5.1 MB of needed bytes).
  static constexpr std::uint64_t kChunkSize = 64u << 10;
  static constexpr std::uint32_t kVersion = 2;  // 1: 256 KiB chunks (such maps are not trusted)
  // 256 GiB: 4 Mi chunks, a 20 MiB map. Refused above, so a crafted map cannot ask for more memory.
  static constexpr std::uint64_t kMaxBlobSize = std::uint64_t{1} << 38;

  ChunkMap() = default;
  explicit ChunkMap(std::uint64_t blob_size);

  // nullopt when `bytes` is not a valid map (any check above fails).
  static std::optional<ChunkMap> parse(std::string_view bytes);
  std::string serialize() const;
  static std::uint64_t encoded_size(std::uint64_t blob_size);

  std::uint64_t blob_size() const { return blob_size_; }
  std::uint64_t chunk_count() const { return chunk_count_; }
  std::uint64_t chunk_length(std::uint64_t chunk) const;

  bool test(std::uint64_t chunk) const { return (bits_[chunk / 64] >> (chunk % 64)) & 1; }
  void set(std::uint64_t chunk) { bits_[chunk / 64] |= std::uint64_t{1} << (chunk % 64); }
  void clear(std::uint64_t chunk) { bits_[chunk / 64] &= ~(std::uint64_t{1} << (chunk % 64)); }
  std::uint32_t last_use(std::uint64_t chunk) const { return last_use_[chunk]; }
  void set_last_use(std::uint64_t chunk, std::uint32_t t) { last_use_[chunk] = t; }

  // Bits OR'ed, last-use times max'ed; `other` must describe the same blob size.
  void merge(const ChunkMap& other);
  std::uint64_t present_chunks() const;
  std::uint64_t present_bytes() const;
  // Latest last-use time over present chunks (0 if none).
  std::uint32_t last_use_max() const;

  const std::vector<std::uint64_t>& words() const { return bits_; }

 private:
  std::uint64_t blob_size_ = 0;
  std::uint64_t chunk_count_ = 0;
  std::vector<std::uint64_t> bits_;
  std::vector<std::uint32_t> last_use_;
};

}  // namespace ocifs::cache
