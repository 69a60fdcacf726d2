#include "cache_commands.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <tuple>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/byte_size.hpp"
#include "ocifs/cache/cache.hpp"

namespace ocifs::cli {

namespace {

namespace fs = std::filesystem;
using cache::format_byte_size;

constexpr int kExitFailure = 1;

int fail(const Error& error) {
  spdlog::error("{}", error.message);
  return kExitFailure;
}

fs::path root_of(const CacheCommand& c) {
  return c.cache_dir.empty() ? cache::Cache::default_root() : fs::path(c.cache_dir);
}

std::string when(std::int64_t seconds) {
  if (seconds <= 0) return "-";
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M", &tm);
  return buf;
}

struct FileUsage {
  fs::path path;
  std::uint64_t size = 0;  // apparent
  std::uint64_t disk = 0;  // allocated blocks
  std::int64_t mtime = 0;
};

// Regular files in `dir` (none if it does not exist). temp_filter > 0: only the
// "NAME.tmp.PID.X" leftovers of atomic writes; < 0: all but those; 0: all.
std::vector<FileUsage> files_in(const fs::path& dir, bool recursive, int temp_filter) {
  std::vector<FileUsage> out;
  std::error_code ec;
  auto visit = [&](const fs::directory_entry& e) {
    struct stat st {};
    if (::lstat(e.path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    bool temp = e.path().filename().string().find(".tmp.") != std::string::npos;
    if ((temp_filter > 0 && !temp) || (temp_filter < 0 && temp)) return;
    out.push_back(FileUsage{e.path(), static_cast<std::uint64_t>(st.st_size),
                            static_cast<std::uint64_t>(st.st_blocks) * 512, static_cast<std::int64_t>(st.st_mtime)});
  };
  if (recursive) {
    for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) visit(*it);
  } else {
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) visit(*it);
  }
  return out;
}

struct Totals {
  std::uint64_t count = 0, size = 0, disk = 0;
  void add(const FileUsage& f) {
    ++count;
    size += f.size;
    disk += f.disk;
  }
};

Result<std::uint64_t> budget_of(const CacheCommand& c, const fs::path& root) {
  if (c.cache_max.empty()) return cache::default_cache_max(root);
  return cache::parse_byte_size(c.cache_max);
}

std::string budget_text(const CacheCommand& c, std::uint64_t budget) {
  if (budget == 0) return "unlimited (--cache-max 0)";
  if (c.cache_max.empty()) {
    return fmt::format(
        "{} for blobs and decoded layers (the default: a quarter of the file system, at most 10 GiB)",
        format_byte_size(budget));
  }
  return fmt::format("{} for blobs and decoded layers", format_byte_size(budget));
}

// "sha256/<hex>.idx" -> "sha256:<hex>"
std::string digest_from(const fs::path& path) {
  auto name = path.filename().string();
  if (auto dot = name.find('.'); dot != std::string::npos) name.resize(dot);
  return path.parent_path().filename().string() + ":" + name;
}

int run_ls(const CacheCommand& c) {
  auto root = root_of(c);
  if (!fs::exists(root)) {
    fmt::print("no cache at {}\n", root.string());
    return 0;
  }
  auto blobs = cache::BlobCache::open(root, 0);
  if (!blobs) return fail(blobs.error());
  auto infos = (*blobs)->list();
  if (!infos) return fail(infos.error());
  std::sort(infos->begin(), infos->end(), [](const auto& a, const auto& b) {
    return std::tie(b.last_use, a.digest) < std::tie(a.last_use, b.digest);
  });
  fmt::print("{}\n", root.string());
  fmt::print("{:<71} {:>10} {:>10} {:>5}  {}\n", "BLOB", "SIZE", "PRESENT", "", "LAST USE");
  for (const auto& b : *infos) {
    std::string pct = b.size == 0 ? "100%" : fmt::format("{}%", b.present_bytes * 100 / b.size);
    fmt::print("{:<71} {:>10} {:>10} {:>5}  {}{}\n", b.digest, format_byte_size(b.size),
               format_byte_size(b.present_bytes), pct, when(b.last_use), b.map_valid ? "" : "  (map damaged)");
  }
  auto list_files = [&](std::string_view title, const fs::path& dir) {
    auto files = files_in(dir, false, -1);
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) { return a.mtime > b.mtime; });
    fmt::print("\n{:<71} {:>10} {:>16}  {}\n", title, "SIZE", "", "WRITTEN");
    for (const auto& f : files) {
      fmt::print("{:<71} {:>10} {:>16}  {}\n", digest_from(f.path), format_byte_size(f.size), "", when(f.mtime));
    }
  };
  list_files("LAYER INDEX", root / "index" / "sha256");
  list_files("DECODED ZSTD LAYER", root / "decoded" / "sha256");
  return 0;
}

int run_du(const CacheCommand& c) {
  auto root = root_of(c);
  auto budget = budget_of(c, root);
  if (!budget) return fail(budget.error());
  Totals blob_files;
  std::uint64_t present = 0, full = 0, blob_count = 0, complete = 0;
  if (fs::exists(root / "blobs")) {
    auto blobs = cache::BlobCache::open(root, 0);
    if (!blobs) return fail(blobs.error());
    auto infos = (*blobs)->list();
    if (!infos) return fail(infos.error());
    for (const auto& b : *infos) {
      ++blob_count;
      present += b.present_bytes;
      full += b.size;
      if (b.present_bytes == b.size) ++complete;
    }
    for (const auto& f : files_in(root / "blobs" / "sha256", false, 0)) blob_files.add(f);
  }
  Totals indexes, decoded, documents, temp;
  for (const auto& f : files_in(root / "index", true, -1)) indexes.add(f);
  for (const auto& f : files_in(root / "decoded", true, -1)) decoded.add(f);
  for (const auto& f : files_in(root / "documents", true, -1)) documents.add(f);
  for (const auto& f : files_in(root / "refs", true, -1)) documents.add(f);
  for (const auto& f : files_in(root / "tmp", true, 0)) temp.add(f);
  for (const char* dir : {"index", "decoded", "documents", "refs"}) {
    for (const auto& f : files_in(root / dir, true, 1)) temp.add(f);
  }
  auto files = [](const Totals& t) { return fmt::format("{} in {} file{}", format_byte_size(t.disk), t.count, t.count == 1 ? "" : "s"); };
  fmt::print("{}\n", root.string());
  fmt::print("{:<10} {} present of {} in {} blob{} ({} complete); {} on disk\n", "blobs", format_byte_size(present),
             format_byte_size(full), blob_count, blob_count == 1 ? "" : "s", complete, format_byte_size(blob_files.disk));
  fmt::print("{:<10} {}\n", "indexes", files(indexes));
  fmt::print("{:<10} {}\n", "decoded", files(decoded));
  fmt::print("{:<10} {}\n", "documents", files(documents));
  fmt::print("{:<10} {}\n", "temp", files(temp));
  fmt::print("{:<10} {} on disk\n", "total",
             format_byte_size(blob_files.disk + indexes.disk + decoded.disk + documents.disk + temp.disk));
  fmt::print("{:<10} {}\n", "budget", budget_text(c, *budget));
  return 0;
}

int run_gc(const CacheCommand& c) {
  auto root = root_of(c);
  auto budget = budget_of(c, root);
  if (!budget) return fail(budget.error());
  if (!fs::exists(root)) {
    fmt::print("no cache at {}\n", root.string());
    return 0;
  }
  auto blobs = cache::BlobCache::open(root, 0);
  if (!blobs) return fail(blobs.error());
  auto stats = (*blobs)->gc(*budget == 0 ? UINT64_MAX : *budget);
  if (!stats) return fail(stats.error());
  fmt::print("blobs: {} present, budget {}\n", format_byte_size(stats->bytes_before), budget_text(c, *budget));
  if (stats->chunks_evicted > 0) {
    fmt::print("evicted {} least recently used chunk{} ({}); {} present now\n", stats->chunks_evicted,
               stats->chunks_evicted == 1 ? "" : "s", format_byte_size(stats->bytes_before - stats->bytes_after),
               format_byte_size(stats->bytes_after));
  }
  if (stats->bytes_in_use > 0) {
    fmt::print("kept {} of blobs that running ocifs processes have open (each trims its own)\n",
               format_byte_size(stats->bytes_in_use));
  }
  if (stats->decoded_removed > 0) {
    fmt::print("removed {} least recently used decoded zstd layer{} ({})\n", stats->decoded_removed,
               stats->decoded_removed == 1 ? "" : "s", format_byte_size(stats->decoded_bytes_removed));
  }
  if (stats->decoded_bytes > 0) {
    fmt::print("decoded zstd layers: {} (their share of the budget: at most half)\n",
               format_byte_size(stats->decoded_bytes));
  }
  const std::uint64_t used = stats->bytes_after + stats->decoded_bytes;
  if (*budget != 0 && used > *budget) {
    fmt::print("still over the budget by {}\n", format_byte_size(used - *budget));
  }
  fmt::print("removed {} empty blob entr{}, {} temp file{} ({})\n", stats->blobs_removed,
             stats->blobs_removed == 1 ? "y" : "ies", stats->temp_files_removed,
             stats->temp_files_removed == 1 ? "" : "s", format_byte_size(stats->temp_bytes_removed));
  return 0;
}

}  // namespace

std::unique_ptr<CacheCommand> add_cache_command(CLI::App& app) {
  auto c = std::make_unique<CacheCommand>();
  c->cache = app.add_subcommand("cache", "Show and trim the cache: ls, du, gc");
  c->cache->require_subcommand(1);
  auto add_dir = [&](CLI::App* sub) {
    sub->add_option("--cache-dir", c->cache_dir, "Cache directory (default $OCIFS_CACHE_DIR or $XDG_CACHE_HOME/ocifs)");
  };
  c->ls = c->cache->add_subcommand("ls", "List cached blobs (size, present bytes, last use), layer indexes and decoded layers");
  add_dir(c->ls);
  c->du = c->cache->add_subcommand("du", "Disk usage: blobs, indexes, decoded layers, documents, temp files");
  add_dir(c->du);
  c->du->add_option("--cache-max", c->cache_max, "Budget to show (as for gc)");
  c->gc = c->cache->add_subcommand(
      "gc", "Evict least recently used blob chunks down to the budget; remove empty entries and temp leftovers");
  add_dir(c->gc);
  c->gc->add_option(
      "--cache-max", c->cache_max,
      "Budget for blob bytes and decoded zstd layers: 10G, 512M, 1.5GiB, 0 = unlimited (default: "
      "a quarter of the file system, at most 10 GiB)");
  return c;
}

int run_cache(const CacheCommand& c) {
  if (*c.ls) return run_ls(c);
  if (*c.du) return run_du(c);
  if (*c.gc) return run_gc(c);
  return 2;
}

}  // namespace ocifs::cli
