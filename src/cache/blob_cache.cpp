#include "ocifs/cache/blob_cache.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <optional>
#include <set>
#include <tuple>

#include "ocifs/cache/decoded_copies.hpp"
#include "ocifs/io/file_source.hpp"
#include "ocifs/io/full_io.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::cache {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kPrefix = "sha256:";
// Temp files untouched this long belong to a writer that died: a live writer (an index being
// serialised, a zstd layer being decoded) writes continuously.
constexpr auto kTempAge = std::chrono::minutes(10);

// The map of a blob nobody in this process has open, read under a shared lock. nullopt when it
// is missing or damaged.
std::optional<ChunkMap> read_map_file(const fs::path& path) {
  io::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  io::retry_on_eintr([&] { return ::flock(fd.get(), LOCK_SH); });
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 ||
      static_cast<std::uint64_t>(st.st_size) > ChunkMap::encoded_size(ChunkMap::kMaxBlobSize)) {
    return std::nullopt;
  }
  std::string bytes(static_cast<std::size_t>(st.st_size), '\0');
  bytes.resize(io::pread_full(fd.get(), std::as_writable_bytes(std::span(bytes)), 0).done);
  return ChunkMap::parse(bytes);
}

}  // namespace

Result<std::shared_ptr<BlobCache>> BlobCache::open(fs::path root, std::uint64_t max_bytes) {
  std::error_code ec;
  auto dir = root / "blobs" / "sha256";
  fs::create_directories(dir, ec);
  if (ec) return util::errno_error(ec.value(), fmt::format("cannot create cache directory {}", dir.string()));
  std::shared_ptr<BlobCache> cache(new BlobCache(std::move(root), max_bytes));
  cache->blob_dir_ = std::move(dir);
  return cache;
}

Result<std::string> BlobCache::digest_hex(std::string_view digest) {
  auto hex = digest.substr(std::min(digest.size(), kPrefix.size()));
  if (!digest.starts_with(kPrefix) || !util::is_sha256_hex(hex)) {
    return make_error(std::errc::invalid_argument, "cannot use '{}' as a cache key: not a sha256 digest", digest);
  }
  return std::string(hex);
}

Result<std::shared_ptr<BlobEntry>> BlobCache::entry(std::string_view digest, std::uint64_t size) {
  if (size > ChunkMap::kMaxBlobSize) {
    return make_error(std::errc::file_too_large, "cannot cache blob {}: {} bytes is more than the cache's limit of {}",
                      digest, size, ChunkMap::kMaxBlobSize);
  }
  return open_entry(digest, size, true);
}

Result<std::shared_ptr<BlobEntry>> BlobCache::open_entry(std::string_view digest, std::uint64_t size, bool create) {
  OCIFS_ASSIGN(auto hex, digest_hex(digest));
  std::string key = std::string(kPrefix) + hex;
  auto data_path = blob_dir_ / hex;
  auto map_path = blob_dir_ / (hex + ".map");
  std::lock_guard lock(mu_);
  if (auto it = live_.find(key); it != live_.end()) {
    if (auto live = it->second.lock()) {
      if (size != UINT64_MAX && live->size() != size) {
        return make_error(std::errc::invalid_argument,
                          "cannot use cached blob {}: it is open as {} bytes, the descriptor says {}", key,
                          live->size(), size);
      }
      return live;
    }
  }
  if (!create) {
    std::error_code ec;
    if (!fs::exists(data_path, ec) && !fs::exists(map_path, ec)) {
      return make_error(std::errc::no_such_file_or_directory, "cannot open cached blob {}: not in the cache", key);
    }
  }
  std::uint64_t actual_size = size;
  OCIFS_ASSIGN(auto files, BlobEntry::open_files(data_path, map_path, actual_size, true));
  std::shared_ptr<BlobEntry> entry(new BlobEntry(shared_from_this(), key, data_path, map_path, std::move(files)));
  std::erase_if(live_, [](const auto& kv) { return kv.second.expired(); });
  live_[key] = entry;
  return entry;
}

Result<std::vector<std::string>> BlobCache::scan_digests() const {
  std::set<std::string> digests;
  std::error_code ec;
  for (fs::directory_iterator it(blob_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    std::string_view hex = name;
    if (hex.ends_with(".map")) hex.remove_suffix(4);
    if (util::is_sha256_hex(hex)) digests.insert(std::string(kPrefix) + std::string(hex));
  }
  if (ec) return util::errno_error(ec.value(), fmt::format("cannot list {}", blob_dir_.string()));
  return std::vector<std::string>(digests.begin(), digests.end());
}

Result<std::vector<BlobInfo>> BlobCache::list() {
  OCIFS_ASSIGN(auto digests, scan_digests());
  std::vector<BlobInfo> out;
  for (auto& digest : digests) {
    BlobInfo info;
    info.digest = digest;
    std::shared_ptr<BlobEntry> live;
    {
      std::lock_guard lock(mu_);
      if (auto it = live_.find(digest); it != live_.end()) live = it->second.lock();
    }
    std::optional<ChunkMap> map;
    if (live) {
      map = live->snapshot();
    } else {
      auto hex = digest.substr(kPrefix.size());
      map = read_map_file(blob_dir_ / (hex + ".map"));
      if (!map) {
        info.map_valid = false;
        std::error_code ec;
        auto size = fs::file_size(blob_dir_ / hex, ec);
        info.size = ec ? 0 : size;
      }
    }
    if (map) {
      info.size = map->blob_size();
      info.present_bytes = map->present_bytes();
      info.last_use = map->last_use_max();
    }
    out.push_back(std::move(info));
  }
  return out;
}

Result<void> BlobCache::enforce_budget() {
  if (max_bytes_ == 0) return util::success();
  std::lock_guard lock(budget_mu_);
  OCIFS_TRY(evict_to(max_bytes_ - max_bytes_ / 16));
  return util::success();
}

void BlobCache::note_written(std::uint64_t bytes) {
  if (max_bytes_ == 0) return;
  auto before = approx_present_.load(std::memory_order_relaxed);
  if (before >= 0) {
    auto now = approx_present_.fetch_add(static_cast<std::int64_t>(bytes), std::memory_order_relaxed) +
               static_cast<std::int64_t>(bytes);
    if (static_cast<std::uint64_t>(now) <= max_bytes_) return;
  }
  // A full queue means a pass is due already: it will count these bytes too.
  evictor_.offer([weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    if (auto r = self->enforce_budget(); !r) spdlog::warn("{}", r.error().message);
  });
}

Result<void> BlobCache::settle() {
  evictor_.stop();
  return enforce_budget();
}

Result<GcStats> BlobCache::evict_to(std::uint64_t target_bytes) {
  GcStats stats;
  OCIFS_ASSIGN(auto digests, scan_digests());
  struct Blob {
    std::string digest;
    std::shared_ptr<BlobEntry> live;
    ChunkMap map;
  };
  std::vector<Blob> blobs;
  std::uint64_t total = 0;
  for (auto& digest : digests) {
    Blob blob{digest, nullptr, {}};
    {
      std::lock_guard lock(mu_);
      if (auto it = live_.find(digest); it != live_.end()) blob.live = it->second.lock();
    }
    if (blob.live) {
      blob.map = blob.live->snapshot();
    } else if (auto map = read_map_file(blob_dir_ / (digest.substr(kPrefix.size()) + ".map"))) {
      blob.map = std::move(*map);
    } else {
      continue;  // damaged or missing map: nothing present
    }
    total += blob.map.present_bytes();
    blobs.push_back(std::move(blob));
  }
  stats.bytes_before = total;
  // Decoded copies of zstd layers share the budget: what they take is left to the chunks less.
  stats.decoded_bytes = DecodedCopies(root_).total_bytes();
  const std::uint64_t chunk_target = target_bytes - std::min(target_bytes, stats.decoded_bytes);
  std::uint64_t freed = 0;
  if (total > chunk_target) {
    // Least recently used first; ties by blob, then chunk.
    std::vector<std::tuple<std::uint32_t, std::uint32_t, std::uint64_t>> candidates;
    for (std::uint32_t b = 0; b < blobs.size(); ++b) {
      const auto& map = blobs[b].map;
      for (std::uint64_t c = 0; c < map.chunk_count(); ++c) {
        if (map.test(c)) candidates.emplace_back(map.last_use(c), b, c);
      }
    }
    std::sort(candidates.begin(), candidates.end());
    std::uint64_t need = total - chunk_target;
    std::vector<bool> excluded(blobs.size(), false);
    std::size_t next = 0;
    while (need > 0 && next < candidates.size()) {
      // Plan a batch worth `need` bytes, then punch it blob by blob; chunks found pinned or
      // blobs found in use elsewhere leave `need` unmet and the next batch goes further.
      std::map<std::uint32_t, std::vector<std::uint64_t>> plan;
      std::uint64_t planned = 0;
      while (next < candidates.size() && planned < need) {
        auto [t, b, c] = candidates[next++];
        if (excluded[b]) continue;
        plan[b].push_back(c);
        planned += blobs[b].map.chunk_length(c);
      }
      for (auto& [b, chunks] : plan) {
        if (excluded[b]) continue;
        auto entry = blobs[b].live;
        if (!entry) {
          auto opened = open_entry(blobs[b].digest, UINT64_MAX, false);
          if (!opened) {
            spdlog::warn("{}", opened.error().message);
            excluded[b] = true;
            continue;
          }
          entry = std::move(*opened);
        }
        OCIFS_ASSIGN(auto evicted, entry->evict(chunks));
        if (evicted.in_use_elsewhere) {
          excluded[b] = true;
          stats.bytes_in_use += blobs[b].map.present_bytes();
          continue;
        }
        freed += evicted.bytes;
        stats.chunks_evicted += evicted.chunks;
        need -= std::min(need, evicted.bytes);
      }
    }
  }
  stats.bytes_after = total - std::min(total, freed);
  approx_present_.store(static_cast<std::int64_t>(stats.bytes_after + stats.decoded_bytes),
                        std::memory_order_relaxed);
  return stats;
}

Result<GcStats> BlobCache::gc(std::uint64_t target_bytes) {
  GcStats stats;
  {
    std::lock_guard lock(budget_mu_);
    auto trimmed =
        DecodedCopies(root_).trim(DecodedCopies::share_of(target_bytes == UINT64_MAX ? 0 : target_bytes));
    OCIFS_ASSIGN(stats, evict_to(target_bytes));
    stats.decoded_removed = trimmed.files;
    stats.decoded_bytes_removed = trimmed.bytes;
  }
  // Entries with nothing present: delete both files, unless some process (this one included)
  // has them open.
  OCIFS_ASSIGN(auto infos, list());
  for (const auto& info : infos) {
    if (info.present_bytes != 0) continue;
    {
      std::lock_guard lock(mu_);
      if (auto it = live_.find(info.digest); it != live_.end() && !it->second.expired()) continue;
    }
    auto entry = open_entry(info.digest, UINT64_MAX, false);
    if (!entry) continue;
    OCIFS_ASSIGN(bool removed, (*entry)->remove_if_empty());
    if (removed) ++stats.blobs_removed;
  }
  // Temp files of writers that died: ROOT/tmp/* (Cache::create_decoded) and "NAME.tmp.PID.X"
  // beside their final names (io::write_file_atomic).
  const auto cutoff = fs::file_time_type::clock::now() - kTempAge;
  auto sweep = [&](const fs::path& dir, bool everything) {
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      std::error_code fec;
      if (!it->is_regular_file(fec)) continue;
      std::string name = it->path().filename().string();
      if (!everything && name.find(".tmp.") == std::string::npos) continue;
      auto mtime = it->last_write_time(fec);
      if (fec || mtime > cutoff) continue;
      auto size = it->file_size(fec);
      if (::unlink(it->path().c_str()) == 0) {
        ++stats.temp_files_removed;
        stats.temp_bytes_removed += fec ? 0 : size;
      }
    }
  };
  sweep(root_ / "tmp", true);
  sweep(root_ / "index" / "sha256", false);
  sweep(root_ / "decoded" / "sha256", false);
  return stats;
}

}  // namespace ocifs::cache
