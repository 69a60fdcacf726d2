#include "ocifs/cache/blob_entry.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/io/full_io.hpp"
#include "ocifs/util/deadline.hpp"

namespace ocifs::cache {

namespace fs = std::filesystem;

namespace {

// Persist the map when the last persist is this old, or this much is unsynced: a killed process
// loses at most ~1 s of marks (those chunks are fetched again), and the fdatasync that must
// precede a map write is paid once per second, not once per chunk. Measured on the dev VM
// (test_blob_cache "[bench]", 64 MiB in 256 chunks): fdatasync + map write per chunk 4.4 ms a
// chunk, 55 MiB/s, slower than a 1 Gbit/s link; batched like this 150-530 MiB/s; plain pwrite
// with one fdatasync at the end 850-1100 MiB/s.
constexpr std::int64_t kPersistIntervalMs = 1000;
constexpr std::uint64_t kPersistBytes = 64u << 20;
// Last-use times alone are written at most once a minute: LRU needs minutes, not seconds.
constexpr std::int64_t kTouchPersistIntervalMs = 60'000;

std::uint32_t now_seconds() { return static_cast<std::uint32_t>(std::time(nullptr)); }

using util::steady_ms;

int flock_retry(int fd, int op) {
  return io::retry_on_eintr([&] { return ::flock(fd, op); });
}

// Holds flock(fd, op) until destroyed.
class FlockGuard {
 public:
  FlockGuard(int fd, int op) : fd_(fd), ok_(flock_retry(fd, op) == 0) {}
  ~FlockGuard() {
    if (ok_) flock_retry(fd_, LOCK_UN);
  }
  bool ok() const { return ok_; }

 private:
  int fd_;
  bool ok_;
};

Result<std::string> read_whole(int fd, const fs::path& path, std::uint64_t limit) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return util::errno_error(errno, fmt::format("cannot stat {}", path.string()));
  auto size = static_cast<std::uint64_t>(st.st_size);
  if (size > limit) return std::string();  // cannot be a valid map for this blob: treated as damaged
  std::string out(size, '\0');
  auto t = io::pread_full(fd, std::as_writable_bytes(std::span(out)), 0);
  if (!t.ok()) return util::errno_error(t.error, fmt::format("cannot read {}", path.string()));
  out.resize(t.done);
  return out;
}

bool same_file(const fs::path& path, int fd) {
  struct stat a {}, b {};
  return ::stat(path.c_str(), &a) == 0 && ::fstat(fd, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

bool others_hold_fd(int fd) {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 1;
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume it is in use
  return fl.l_type != F_UNLCK;
}

}  // namespace

Result<BlobEntry::Files> BlobEntry::open_files(const fs::path& data_path, const fs::path& map_path,
                                               std::uint64_t& size, bool create) {
  const bool size_known = size != UINT64_MAX;
  const int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
  // A concurrent gc may delete both files between our open and our lock: check that the paths
  // still name what we locked, and start over if not.
  for (int attempt = 0; attempt < 8; ++attempt) {
    io::Fd map_fd(::open(map_path.c_str(), flags, 0644));
    if (!map_fd.valid()) return util::errno_error(errno, fmt::format("cannot open {}", map_path.string()));
    FlockGuard lock(map_fd.get(), LOCK_EX);
    if (!lock.ok()) return util::errno_error(errno, fmt::format("cannot lock {}", map_path.string()));
    io::Fd data_fd(::open(data_path.c_str(), flags, 0644));
    if (!data_fd.valid()) return util::errno_error(errno, fmt::format("cannot open {}", data_path.string()));
    struct flock fl {};
    fl.l_type = F_RDLCK;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    if (io::retry_on_eintr([&] { return ::fcntl(data_fd.get(), F_OFD_SETLKW, &fl); }) != 0) return util::errno_error(errno, fmt::format("cannot lock {}", data_path.string()));
    if (!same_file(map_path, map_fd.get()) || !same_file(data_path, data_fd.get())) continue;

    struct stat st {};
    if (::fstat(data_fd.get(), &st) != 0) return util::errno_error(errno, fmt::format("cannot stat {}", data_path.string()));
    const auto data_size = static_cast<std::uint64_t>(st.st_size);
    std::uint64_t limit = ChunkMap::encoded_size(size_known ? size : ChunkMap::kMaxBlobSize);
    OCIFS_ASSIGN(auto bytes, read_whole(map_fd.get(), map_path, limit));
    auto parsed = ChunkMap::parse(bytes);
    if (!size_known) size = parsed ? parsed->blob_size() : data_size;
    if (size > ChunkMap::kMaxBlobSize) {
      return make_error(std::errc::file_too_large, "cannot cache blob {}: {} bytes is more than the cache's limit of {}",
                        data_path.filename().string(), size, ChunkMap::kMaxBlobSize);
    }
    // Trusted only when valid, for this size, and the data file has that size (a data file
    // deleted or truncated behind our back makes every mark a lie).
    bool trusted = parsed && parsed->blob_size() == size && data_size == size;
    Files files{std::move(map_fd), std::move(data_fd), trusted ? std::move(*parsed) : ChunkMap(size)};
    if (!trusted) {
      if (others_hold_fd(files.data_fd.get())) {
        // Another process has it open with its own view: leave the files alone. Nothing counts
        // as present for us; that process rewrites the map at its next persist.
        if (data_size != size) {
          return make_error(std::errc::device_or_resource_busy,
                            "cannot cache blob {}: another process has it open with a size of {} bytes, not {}",
                            data_path.filename().string(), data_size, size);
        }
      } else {
        // Start afresh: drop whatever data there was (it is not trusted), then the full size.
        if (::ftruncate(files.data_fd.get(), 0) != 0 ||
            ::ftruncate(files.data_fd.get(), static_cast<off_t>(size)) != 0) {
          return util::errno_error(errno, fmt::format("cannot size {}", data_path.string()));
        }
        auto encoded = files.map.serialize();
        auto t = io::pwrite_full(files.map_fd.get(), std::as_bytes(std::span(encoded)), 0);
        if (!t.ok() || ::ftruncate(files.map_fd.get(), static_cast<off_t>(encoded.size())) != 0) {
          return util::errno_error(t.ok() ? errno : t.error, fmt::format("cannot write {}", map_path.string()));
        }
      }
    }
    return files;
  }
  return make_error(std::errc::resource_unavailable_try_again,
                    "cannot open cached blob {}: its files keep being replaced", data_path.string());
}

BlobEntry::BlobEntry(std::shared_ptr<BlobCache> cache, std::string digest, fs::path data_path, fs::path map_path,
                     Files files)
    : cache_(std::move(cache)),
      digest_(std::move(digest)),
      data_path_(std::move(data_path)),
      map_path_(std::move(map_path)),
      map_fd_(std::move(files.map_fd)),
      data_fd_(std::move(files.data_fd)),
      size_(files.map.blob_size()),
      chunk_count_(files.map.chunk_count()),
      map_(std::move(files.map)),
      pins_(chunk_count_, 0),
      last_persist_ms_(steady_ms()) {}

BlobEntry::~BlobEntry() {
  if (auto r = persist(); !r) spdlog::warn("{}", r.error().message);
}

std::uint64_t BlobEntry::chunk_length(std::uint64_t chunk) const {
  return chunk < chunk_count_ ? std::min(kChunkSize, size_ - chunk * kChunkSize) : 0;
}

bool BlobEntry::present(std::uint64_t offset, std::uint64_t length) const {
  if (offset >= size_ || length == 0) return true;
  std::uint64_t end = std::min(size_, offset + length);
  std::lock_guard lock(mu_);
  for (std::uint64_t c = offset / kChunkSize; c * kChunkSize < end; ++c) {
    if (!map_.test(c)) return false;
  }
  return true;
}

bool BlobEntry::chunk_present(std::uint64_t chunk) const {
  std::lock_guard lock(mu_);
  return chunk < chunk_count_ && map_.test(chunk);
}

std::uint64_t BlobEntry::next_absent(std::uint64_t from) const {
  std::lock_guard lock(mu_);
  while (from < chunk_count_ && map_.test(from)) ++from;
  return std::min(from, chunk_count_);
}

std::uint64_t BlobEntry::present_bytes() const {
  std::lock_guard lock(mu_);
  return map_.present_bytes();
}

bool BlobEntry::complete() const {
  std::lock_guard lock(mu_);
  return map_.present_chunks() == chunk_count_;
}

std::uint32_t BlobEntry::last_use() const {
  std::lock_guard lock(mu_);
  return map_.last_use_max();
}

ChunkMap BlobEntry::snapshot() const {
  std::lock_guard lock(mu_);
  return map_;
}

Result<std::size_t> BlobEntry::read(std::uint64_t offset, std::span<std::byte> buf) {
  if (offset >= size_ || buf.empty()) return std::size_t{0};
  const std::uint64_t end = std::min<std::uint64_t>(size_, offset + buf.size());
  const std::uint64_t first = offset / kChunkSize;
  std::uint64_t last = first;  // one past the last present chunk of the prefix
  {
    std::lock_guard lock(mu_);
    while (last * kChunkSize < end && map_.test(last)) ++last;
    if (last == first) return std::size_t{0};
    const auto now = now_seconds();
    for (auto c = first; c < last; ++c) {
      ++pins_[c];
      if (map_.last_use(c) != now) {
        map_.set_last_use(c, now);
        dirty_times_ = true;
      }
    }
  }
  const std::uint64_t stop = std::min(end, last * kChunkSize);
  const auto want = static_cast<std::size_t>(stop - offset);
  auto t = io::pread_full(data_fd_.get(), buf.first(want), offset);
  // The data file has the blob's size: ending before `want` means it was cut behind our back.
  const int err = !t.ok() ? t.error : t.done < want ? EIO : 0;
  {
    std::lock_guard lock(mu_);
    for (auto c = first; c < last; ++c) --pins_[c];
  }
  if (err != 0) {
    return util::errno_error(err, fmt::format("cannot read cached blob {} at offset {}", digest_, offset + t.done));
  }
  maybe_persist();
  return t.done;
}

Result<void> BlobEntry::write_chunk(std::uint64_t chunk, std::span<const std::byte> data) {
  if (chunk >= chunk_count_ || data.size() != chunk_length(chunk)) {
    return make_error(std::errc::invalid_argument, "cannot cache chunk {} of {}: {} bytes given, the chunk has {}",
                      chunk, digest_, data.size(), chunk_length(chunk));
  }
  {
    std::lock_guard lock(mu_);
    if (map_.test(chunk)) {
      map_.set_last_use(chunk, now_seconds());
      dirty_times_ = true;
      return util::success();
    }
    ++pins_[chunk];
  }
  const auto offset = chunk * kChunkSize;
  auto t = io::pwrite_full(data_fd_.get(), data, offset);
  const int err = t.error;
  bool newly = false;
  {
    std::lock_guard lock(mu_);
    --pins_[chunk];
    if (err == 0 && !map_.test(chunk)) {
      newly = true;
      map_.set(chunk);
      map_.set_last_use(chunk, now_seconds());
      dirty_data_ = true;
      unsynced_bytes_ += data.size();
      ++write_generation_;
    }
  }
  if (err != 0) {
    return util::errno_error(err, fmt::format("cannot write chunk {} of {} (offset {}) to the cache", chunk, digest_,
                                              offset + t.done));
  }
  maybe_persist();
  if (newly) cache_->note_written(data.size());
  return util::success();
}

void BlobEntry::maybe_persist() {
  bool due;
  {
    std::lock_guard lock(mu_);
    auto elapsed = steady_ms() - last_persist_ms_;
    due = (dirty_data_ && (elapsed >= kPersistIntervalMs || unsynced_bytes_ >= kPersistBytes)) ||
          (dirty_times_ && elapsed >= kTouchPersistIntervalMs);
  }
  if (!due) return;
  std::unique_lock lock(persist_mu_, std::try_to_lock);
  if (!lock.owns_lock()) return;  // another thread is at it
  if (auto r = persist_locked(); !r) spdlog::warn("{}", r.error().message);
}

Result<void> BlobEntry::flush() { return persist(); }

Result<void> BlobEntry::persist() {
  std::lock_guard lock(persist_mu_);
  return persist_locked();
}

Result<ChunkMap> BlobEntry::read_disk_map() const {
  OCIFS_ASSIGN(auto bytes, read_whole(map_fd_.get(), map_path_, ChunkMap::encoded_size(size_)));
  auto parsed = ChunkMap::parse(bytes);
  if (!parsed || parsed->blob_size() != size_) return ChunkMap(size_);
  return std::move(*parsed);
}

Result<void> BlobEntry::write_disk_map(const ChunkMap& map) {
  auto bytes = map.serialize();
  if (auto t = io::pwrite_full(map_fd_.get(), std::as_bytes(std::span(bytes)), 0); !t.ok()) {
    return util::errno_error(t.error, fmt::format("cannot write {}", map_path_.string()));
  }
  struct stat st {};
  if (::fstat(map_fd_.get(), &st) == 0 && static_cast<std::uint64_t>(st.st_size) != bytes.size()) {
    if (::ftruncate(map_fd_.get(), static_cast<off_t>(bytes.size())) != 0) {
      return util::errno_error(errno, fmt::format("cannot write {}", map_path_.string()));
    }
  }
  return util::success();
}

bool BlobEntry::others_hold() const { return others_hold_fd(data_fd_.get()); }

Result<void> BlobEntry::persist_locked() {
  if (removed_) return util::success();
  ChunkMap mine;
  bool sync_data;
  std::uint64_t generation, unsynced;
  {
    std::lock_guard lock(mu_);
    if (!dirty_data_ && !dirty_times_) return util::success();
    mine = map_;  // every chunk marked here was pwritten before this copy
    sync_data = dirty_data_;
    generation = write_generation_;
    unsynced = unsynced_bytes_;
  }
  // The data first: a chunk is marked on disk only once its bytes are.
  if (sync_data && ::fdatasync(data_fd_.get()) != 0) {
    return util::errno_error(errno, fmt::format("cannot flush {} to disk", data_path_.string()));
  }
  ChunkMap disk;
  {
    FlockGuard lock(map_fd_.get(), LOCK_EX);
    if (!lock.ok()) return util::errno_error(errno, fmt::format("cannot lock {}", map_path_.string()));
    OCIFS_ASSIGN(disk, read_disk_map());
    ChunkMap merged = disk;
    merged.merge(mine);
    OCIFS_TRY(write_disk_map(merged));
  }
  std::lock_guard lock(mu_);
  map_.merge(disk);  // chunks other processes persisted: their data is on disk too
  if (write_generation_ == generation) {
    dirty_data_ = false;
    unsynced_bytes_ = 0;
  } else {
    unsynced_bytes_ -= std::min(unsynced_bytes_, unsynced);
  }
  dirty_times_ = false;
  last_persist_ms_ = steady_ms();
  return util::success();
}

Result<void> BlobEntry::refresh() {
  ChunkMap disk;
  {
    // flock belongs to the open file description, not the thread: a shared lock taken here
    // while another thread of ours holds the exclusive one would convert and then drop it.
    std::lock_guard plock(persist_mu_);
    FlockGuard lock(map_fd_.get(), LOCK_SH);
    if (!lock.ok()) return util::errno_error(errno, fmt::format("cannot lock {}", map_path_.string()));
    OCIFS_ASSIGN(disk, read_disk_map());
  }
  std::lock_guard lock(mu_);
  map_.merge(disk);
  return util::success();
}

Result<void> BlobEntry::invalidate(std::uint64_t offset, std::uint64_t length) {
  if (offset >= size_ || length == 0) return util::success();
  const std::uint64_t end = std::min(size_, offset + length);
  std::lock_guard plock(persist_mu_);
  FlockGuard flock(map_fd_.get(), LOCK_EX);
  if (!flock.ok()) return util::errno_error(errno, fmt::format("cannot lock {}", map_path_.string()));
  OCIFS_ASSIGN(auto disk, read_disk_map());
  {
    std::lock_guard lock(mu_);
    for (std::uint64_t c = offset / kChunkSize; c * kChunkSize < end; ++c) {
      map_.clear(c);
      disk.clear(c);
    }
  }
  return write_disk_map(disk);
}

Result<BlobEntry::EvictResult> BlobEntry::evict(const std::vector<std::uint64_t>& chunks) {
  EvictResult result;
  std::lock_guard plock(persist_mu_);
  if (removed_) return result;
  FlockGuard flock(map_fd_.get(), LOCK_EX);
  if (!flock.ok()) return util::errno_error(errno, fmt::format("cannot lock {}", map_path_.string()));
  if (others_hold()) {
    result.in_use_elsewhere = true;
    return result;
  }
  OCIFS_ASSIGN(auto disk, read_disk_map());
  // mu_ stays held from clearing the bits to the last punch: a writer can neither find these
  // chunks present nor start rewriting one before its hole is punched.
  std::lock_guard lock(mu_);
  std::vector<std::uint64_t> victims;
  for (auto c : chunks) {
    if (c >= chunk_count_ || pins_[c] != 0 || !(map_.test(c) || disk.test(c))) continue;
    map_.clear(c);
    disk.clear(c);
    victims.push_back(c);
    result.bytes += chunk_length(c);
  }
  if (victims.empty()) return result;
  // Only the cleared bits go to disk here; this process's unpersisted chunks are persisted
  // later, after their fdatasync. The map reaches the disk before any hole does.
  OCIFS_TRY(write_disk_map(disk));
  if (::fdatasync(map_fd_.get()) != 0) {
    return util::errno_error(errno, fmt::format("cannot flush {} to disk", map_path_.string()));
  }
  for (auto c : victims) {
    if (::fallocate(data_fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(c * kChunkSize),
                    static_cast<off_t>(chunk_length(c))) != 0) {
      // The bits are cleared, so nothing wrong is ever served; only the space is not freed.
      return util::errno_error(errno, fmt::format("cannot free chunk {} of {}", c, data_path_.string()));
    }
  }
  result.chunks = victims.size();
  return result;
}

Result<bool> BlobEntry::remove_if_empty() {
  std::lock_guard plock(persist_mu_);
  if (removed_) return true;
  FlockGuard flock(map_fd_.get(), LOCK_EX);
  if (!flock.ok()) return util::errno_error(errno, fmt::format("cannot lock {}", map_path_.string()));
  if (others_hold()) return false;
  OCIFS_ASSIGN(auto disk, read_disk_map());
  {
    std::lock_guard lock(mu_);
    if (map_.present_chunks() != 0 || disk.present_chunks() != 0) return false;
    if (std::any_of(pins_.begin(), pins_.end(), [](auto p) { return p != 0; })) return false;
  }
  // Data file first: an opener that locked the old map finds its path gone and starts over.
  if (same_file(data_path_, data_fd_.get())) ::unlink(data_path_.c_str());
  if (same_file(map_path_, map_fd_.get())) ::unlink(map_path_.c_str());
  removed_ = true;
  return true;
}

}  // namespace ocifs::cache
