// BlobEntry: one registry blob in the blob cache — a sparse data file of the blob's full size,
// ROOT/blobs/sha256/<hex>, plus its chunk map ROOT/blobs/sha256/<hex>.map (format in
// chunk_map.hpp). Obtained from BlobCache::entry(); one object per blob per BlobCache.
//
// Thread-safe. Locks, in the order they nest:
//   persist_mu_  (in-process: one thread at a time uses the map file; flock is per open file
//                 description, so it cannot tell our own threads apart)
//   flock(map)   (cross-process: LOCK_EX to read-merge-write the map, LOCK_SH to read it)
//   mu_          (the in-memory bitmap, last-use times and per-chunk pins)
// Chunk data is pread/pwritten with no lock held; a chunk being read or written is pinned, and
// a pinned chunk is never evicted.
//
// Cross-process rules:
// - Every process that has the entry open holds an OFD read lock (fcntl F_OFD_SETLK) on byte 0
//   of the data file for the entry's lifetime. Eviction and removal first check with
//   F_OFD_GETLK that no other open file description holds one, under the map's LOCK_EX: a blob
//   in use by another process (or another BlobCache) is never punched, so the chunks a process
//   believes present stay present for as long as it has them open.
// - Writes: pwrite the chunk, mark it in memory (readers of this process use it at once); the
//   map on disk is updated later by persist(): fdatasync(data) first, then the map is re-read
//   under LOCK_EX, OR'ed with this process's bits (times max'ed) and written back in place. So a
//   chunk is marked on disk only after its bytes are on disk, and a crash (of the process or of
//   the machine) never leaves a chunk marked that was not fully written. A torn map fails its
//   checksum and counts as empty. Eviction writes the map and fdatasyncs it before punching.
// - persist() runs when a write finds the last one over a second old or 64 MiB unsynced, at
//   flush(), and on destruction; a process killed in between loses at most those marks (the
//   chunks are fetched again later), never correctness.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "ocifs/cache/chunk_map.hpp"
#include "ocifs/io/fd.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::cache {

class BlobCache;

class BlobEntry {
 public:
  static constexpr std::uint64_t kChunkSize = ChunkMap::kChunkSize;

  ~BlobEntry();  // persists what is not yet persisted
  BlobEntry(const BlobEntry&) = delete;
  BlobEntry& operator=(const BlobEntry&) = delete;

  const std::string& digest() const { return digest_; }  // "sha256:<hex>"
  std::uint64_t size() const { return size_; }
  std::uint64_t chunk_count() const { return chunk_count_; }
  std::uint64_t chunk_length(std::uint64_t chunk) const;
  const std::filesystem::path& data_path() const { return data_path_; }

  // Every chunk overlapping [offset, offset + length) is present (clipped to the blob).
  bool present(std::uint64_t offset, std::uint64_t length) const;
  bool chunk_present(std::uint64_t chunk) const;
  // The first absent chunk at or after `from`, or chunk_count().
  std::uint64_t next_absent(std::uint64_t from) const;
  std::uint64_t present_bytes() const;
  bool complete() const;
  // Latest last use of a present chunk, seconds since the epoch (0: none).
  std::uint32_t last_use() const;

  // Reads from `offset` up to the first absent chunk (or buf's end, or the blob's end): returns
  // how many bytes were read, 0 when the chunk at `offset` is absent. Marks the chunks used now.
  Result<std::size_t> read(std::uint64_t offset, std::span<std::byte> buf);
  // Stores chunk `chunk` whole: `data` is exactly chunk_length(chunk) bytes. A chunk already
  // present is left alone. May persist the map, and may make the BlobCache enforce its budget.
  Result<void> write_chunk(std::uint64_t chunk, std::span<const std::byte> data);
  // Marks the chunks overlapping the range absent, in memory and on disk (e.g. after their bytes
  // failed verification); their data is left to be overwritten by the next fetch.
  Result<void> invalidate(std::uint64_t offset, std::uint64_t length);
  // persist() now: fdatasync the data of chunks written since the last one, merge the map.
  Result<void> flush();
  // Learns the chunks other processes have persisted since (a shared-lock read of the map).
  Result<void> refresh();

 private:
  friend class BlobCache;
  struct Files {
    io::Fd map_fd;
    io::Fd data_fd;
    ChunkMap map;  // what the map file held (empty if it was damaged)
  };
  BlobEntry(std::shared_ptr<BlobCache> cache, std::string digest, std::filesystem::path data_path,
            std::filesystem::path map_path, Files files);

  // Opens (creating if `create`) the files of a blob of `size` bytes, with the locking protocol
  // above; a damaged map or one for another size is reset when no other process holds the blob.
  // size == UINT64_MAX: take the size from a valid map (fails with ENOENT when there is none).
  static Result<Files> open_files(const std::filesystem::path& data_path, const std::filesystem::path& map_path,
                                  std::uint64_t& size, bool create);

  struct EvictResult {
    std::uint64_t bytes = 0;
    std::uint64_t chunks = 0;
    bool in_use_elsewhere = false;
  };
  // Punches the given chunks (skipping pinned ones) unless another process has the blob open.
  Result<EvictResult> evict(const std::vector<std::uint64_t>& chunks);
  // Deletes both files if no chunk is present and no other process has the blob open.
  Result<bool> remove_if_empty();
  // A copy of the in-memory map (bits and last-use times).
  ChunkMap snapshot() const;

  Result<void> persist();                // takes persist_mu_
  Result<void> persist_locked();         // persist_mu_ held
  Result<ChunkMap> read_disk_map() const;  // the map file's content; empty if damaged
  Result<void> write_disk_map(const ChunkMap& map);
  bool others_hold() const;              // another open file description holds the blob
  void maybe_persist();

  std::shared_ptr<BlobCache> cache_;
  std::string digest_;
  std::filesystem::path data_path_;
  std::filesystem::path map_path_;
  io::Fd map_fd_;
  io::Fd data_fd_;
  std::uint64_t size_;
  std::uint64_t chunk_count_;

  std::mutex persist_mu_;
  bool removed_ = false;  // under persist_mu_: the files were deleted, nothing to persist

  mutable std::mutex mu_;
  ChunkMap map_;                   // under mu_: the in-memory truth for this process
  std::vector<std::uint32_t> pins_;  // under mu_: readers and writers using chunk i right now
  bool dirty_data_ = false;        // under mu_: chunks written since the last fdatasync
  bool dirty_times_ = false;       // under mu_: last-use times changed since the last persist
  std::uint64_t unsynced_bytes_ = 0;     // under mu_
  std::uint64_t write_generation_ = 0;   // under mu_: bumped by every write and touch
  std::int64_t last_persist_ms_ = 0;     // under mu_: steady clock
};

}  // namespace ocifs::cache
