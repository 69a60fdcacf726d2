#include "ocifs/cache/decoded_copies.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <tuple>

#include "ocifs/util/limits.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::cache {

namespace fs = std::filesystem;

std::uint64_t DecodedCopies::share_of(std::uint64_t budget) {
  return budget == 0 ? limits::kMaxDecodedLayerBytes : budget / limits::kDecodedCopyShareDivisor;
}

std::vector<DecodedCopies::Copy> DecodedCopies::list() const {
  std::vector<Copy> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir_, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    // Temp leftovers of atomic writes ("NAME.tmp.PID.X") are not copies; gc sweeps them.
    if (!util::is_sha256_hex(name)) continue;
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    out.push_back({"sha256:" + name, static_cast<std::uint64_t>(st.st_blocks) * 512,
                   static_cast<std::int64_t>(st.st_mtime)});
  }
  std::sort(out.begin(), out.end(), [](const Copy& a, const Copy& b) {
    return std::tie(a.last_use, a.digest) < std::tie(b.last_use, b.digest);
  });
  return out;
}

std::uint64_t DecodedCopies::total_bytes() const {
  std::uint64_t total = 0;
  for (const auto& c : list()) total += c.bytes;
  return total;
}

DecodedCopies::Trimmed DecodedCopies::trim(std::uint64_t target_bytes, std::string_view keep) const {
  Trimmed trimmed;
  auto copies = list();
  std::uint64_t total = 0;
  for (const auto& c : copies) total += c.bytes;
  for (const auto& c : copies) {
    if (total <= target_bytes) break;
    if (c.digest == keep) continue;
    if (::unlink((dir_ / c.digest.substr(7)).c_str()) == 0) {
      ++trimmed.files;
      trimmed.bytes += c.bytes;
      total -= c.bytes;
    }
  }
  return trimmed;
}

void DecodedCopies::touch(std::string_view digest) const {
  if (!digest.starts_with("sha256:")) return;
  // A hint for the LRU order only: a copy that cannot be touched is just older.
  (void)::utimensat(AT_FDCWD, (dir_ / std::string(digest.substr(7))).c_str(), nullptr, 0);
}

}  // namespace ocifs::cache
