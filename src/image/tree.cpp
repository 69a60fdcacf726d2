#include "ocifs/image/tree.hpp"

#include <sys/stat.h>

#include <algorithm>

namespace ocifs::image {

// The memory budget in tree.hpp (and the ≤ 200 bytes per entry target) depends on these.
static_assert(sizeof(Inode) <= 64);
static_assert(sizeof(Dirent) <= 12);

bool Inode::is_dir() const { return S_ISDIR(mode); }
bool Inode::is_regular() const { return S_ISREG(mode); }
bool Inode::is_symlink() const { return S_ISLNK(mode); }
bool Inode::is_device() const { return S_ISCHR(mode) || S_ISBLK(mode); }

std::optional<std::uint32_t> Tree::lookup(std::uint32_t dir, std::string_view name) const {
  const Inode& d = inodes_[dir];
  if (!d.is_dir()) return std::nullopt;
  auto kids = children(d);
  auto it = std::lower_bound(kids.begin(), kids.end(), name,
                             [this](const Dirent& e, std::string_view n) { return str(e.name) < n; });
  if (it == kids.end() || str(it->name) != name) return std::nullopt;
  return it->inode;
}

std::optional<std::uint32_t> Tree::resolve(std::string_view path) const {
  std::uint32_t at = kRootIndex;
  while (!path.empty()) {
    auto slash = path.find('/');
    auto part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      at = inodes_[at].parent;
      continue;
    }
    auto next = lookup(at, part);
    if (!next) return std::nullopt;
    at = *next;
  }
  return at;
}

std::size_t Tree::memory_bytes() const {
  return inodes_.capacity() * sizeof(Inode) + dirents_.capacity() * sizeof(Dirent) +
         xattrs_.capacity() * sizeof(TreeXattr) + sparse_.capacity() * sizeof(layer::SparseExtent) +
         pool_.capacity();
}

}  // namespace ocifs::image
