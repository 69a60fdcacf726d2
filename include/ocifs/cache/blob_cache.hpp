// BlobCache: registry blob bytes on disk, content-addressed and sparse, shared by every image,
// mount and ocifs process using one cache directory:
//
//   ROOT/blobs/sha256/<hex>       sparse data file of the blob's full size (holes = absent)
//   ROOT/blobs/sha256/<hex>.map   which 64 KiB chunks are present + per-chunk last use
//                                 (byte table in chunk_map.hpp; locking in blob_entry.hpp)
//
// A complete blob is simply one whose map is full. The chunk size equals the VerifiedSource
// block size, so a verified block is exactly one cached chunk.
//
// Budget: when the present bytes exceed max_bytes (0: unlimited), the least recently used
// chunks across all blobs are punched out (fallocate PUNCH_HOLE, which frees their blocks) and
// cleared from their maps, down to 15/16 of the budget so that the next write does not trigger
// another scan right away. Never evicted: a chunk a read or write of this process is using right
// now, and any chunk of a blob another process (or another BlobCache) has open — that process
// enforces the budget on its own blobs. The decoded copies of zstd layers share the budget
// (decoded_copies.hpp): what they take is left to the chunks less, and gc() trims them to their
// share first. Layer indexes are reported by `ocifs cache du` but not counted.
//
// Writers never evict: a write that takes the present bytes over the budget hands the eviction
// to a background thread (started on first need), since a pass scans the directory, reads maps,
// punches holes and syncs — seconds on a large cache, which a read that fetched must not wait
// for. Until that pass ends the cache may be over budget by what arrives meanwhile; settle()
// brings it within budget synchronously (for the owner, once its reads are over).
//
// Thread-safe: entry() and the budget take mu_ (the table of live entries) briefly and never
// hold it while calling into an entry, except to open one; enforcement runs on one thread at a
// time (budget_mu_). Lock order: budget_mu_, mu_, then an entry's locks (blob_entry.hpp).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/cache/blob_entry.hpp"
#include "ocifs/util/background_worker.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::cache {

struct BlobInfo {
  std::string digest;              // "sha256:<hex>"
  std::uint64_t size = 0;          // the blob's size (from its map; the data file's if the map is damaged)
  std::uint64_t present_bytes = 0;
  std::uint32_t last_use = 0;      // seconds since the epoch, latest over present chunks (0: none)
  bool map_valid = true;           // false: the map is damaged, nothing counts as present
};

struct GcStats {
  std::uint64_t bytes_before = 0;     // present blob bytes before
  std::uint64_t bytes_after = 0;
  std::uint64_t chunks_evicted = 0;
  std::uint64_t bytes_in_use = 0;     // present bytes of blobs other processes hold (not evictable)
  std::uint64_t blobs_removed = 0;    // entries with nothing present, both files deleted
  std::uint64_t temp_files_removed = 0;
  std::uint64_t temp_bytes_removed = 0;
  std::uint64_t decoded_bytes = 0;    // decoded zstd copies, after trimming them
  std::uint64_t decoded_removed = 0;  // copies gc removed, least recently used first
  std::uint64_t decoded_bytes_removed = 0;
};

class BlobCache : public std::enable_shared_from_this<BlobCache> {
 public:
  static constexpr std::uint64_t kChunkSize = ChunkMap::kChunkSize;

  // Creates ROOT/blobs/sha256 if needed. max_bytes 0: no budget.
  static Result<std::shared_ptr<BlobCache>> open(std::filesystem::path root, std::uint64_t max_bytes);

  const std::filesystem::path& root() const { return root_; }
  std::uint64_t max_bytes() const { return max_bytes_; }

  // The cache entry of a blob (created empty if new); the same object while it is alive.
  // Refuses anything but a "sha256:<64 hex>" digest, and blobs over ChunkMap::kMaxBlobSize.
  Result<std::shared_ptr<BlobEntry>> entry(std::string_view digest, std::uint64_t size);

  // Evicts least-recently-used chunks until the present bytes are within the budget (to 15/16
  // of it). No-op without a budget.
  Result<void> enforce_budget();
  // Stops background eviction (after its running pass) and enforces the budget on this thread:
  // for the owner once its reads and streams are over (a command's end, an unmount).
  Result<void> settle();
  // Every blob in the cache, sorted by digest.
  Result<std::vector<BlobInfo>> list();
  // Trims decoded copies to their share of target_bytes, evicts LRU chunks until at most
  // target_bytes are present with the copies (UINT64_MAX: none), deletes the files of blobs with
  // nothing present, and removes temp files left by dead writers (in ROOT/tmp and `*.tmp.*`
  // beside index files) not modified for 10 minutes.
  Result<GcStats> gc(std::uint64_t target_bytes);

 private:
  friend class BlobEntry;
  BlobCache(std::filesystem::path root, std::uint64_t max_bytes) : root_(std::move(root)), max_bytes_(max_bytes) {}

  // The live entry of `digest`, or a newly opened one; size UINT64_MAX = existing only, size
  // from its map.
  Result<std::shared_ptr<BlobEntry>> open_entry(std::string_view digest, std::uint64_t size, bool create);
  // "sha256:<hex>" -> hex, or an error.
  static Result<std::string> digest_hex(std::string_view digest);
  // Digests ("sha256:<hex>") of every blob with a data file or a map.
  Result<std::vector<std::string>> scan_digests() const;
  Result<GcStats> evict_to(std::uint64_t target_bytes);
  // From BlobEntry::write_chunk: bytes newly present; has the budget enforced in the background
  // when over it.
  void note_written(std::uint64_t bytes);
  void note_evicted(std::uint64_t bytes);

  std::filesystem::path root_;
  std::filesystem::path blob_dir_;
  std::uint64_t max_bytes_;

  std::mutex mu_;
  std::map<std::string, std::weak_ptr<BlobEntry>, std::less<>> live_;  // under mu_, by digest

  std::mutex budget_mu_;
  // Present bytes as this process last counted them plus what it wrote since; other processes'
  // writes are only seen at the next count. -1 until first counted.
  std::atomic<std::int64_t> approx_present_{-1};
  util::BackgroundWorker evictor_{1};  // last: stopped before the rest goes
};

}  // namespace ocifs::cache
