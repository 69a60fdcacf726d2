// Tree: the merged directory tree of an image, immutable once built and read by every FUSE
// thread without locks. Inode number = inode index + 1 (kRootIndex + 1 = FUSE_ROOT_ID), assigned
// in breadth-first order over name-sorted directories, so the same image gets the same numbers
// on every mount.
//
// Memory: an Inode is 64 bytes (what only one kind of inode has is overlaid) and a Dirent 12,
// plus the name and link strings in one pool; a Debian minbase (≈10k entries) takes ≈0.9 MB.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/layer/layer_index.hpp"

namespace ocifs::image {

// A string in the tree's pool. Trivial (no initialisers), so that it can share an Inode's bytes;
// {} is the empty string.
struct StringRef {
  std::uint32_t offset;
  std::uint32_t size;
};

struct Inode {
  // User-provided: clang before 15 deletes the implicit default constructor of a class whose
  // anonymous union holds a struct with default member initialisers (the regular-file fields).
  Inode() {}
  std::uint64_t size = 0;  // st_size (symlink: target length; dir: 0)
  std::int64_t mtime_sec = 0;
  std::uint32_t mtime_nsec = 0;
  std::uint32_t mode = 0;  // st_mode with type bits
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t nlink = 1;
  std::uint32_t xattr_first = 0;  // into Tree::xattrs
  std::uint32_t xattr_count = 0;
  std::uint16_t layer = 0;  // regular files: which layer holds the data
  // What only one kind of inode has, overlaid (16 bytes): read the fields of the inode's kind
  // only. sparse_count is 0 for every other kind.
  union {
    // Regular files.
    struct {
      std::uint64_t data_offset = 0;   // offset in the layer's decoded stream
      std::uint32_t sparse_first = 0;  // into Tree::sparse
      std::uint32_t sparse_count = 0;
    };
    // Directories.
    struct {
      std::uint32_t parent;       // parent inode index (root: itself)
      std::uint32_t first_child;  // first Dirent index
      std::uint32_t child_count;
    };
    // Symlinks: the target.
    StringRef link;
    // Character and block devices.
    struct {
      std::uint32_t dev_major;
      std::uint32_t dev_minor;
    };
  };
  bool is_dir() const;
  bool is_regular() const;
  bool is_symlink() const;
  bool is_device() const;
};

struct Dirent {
  StringRef name{};
  std::uint32_t inode = 0;
};

struct TreeXattr {
  StringRef name{};
  StringRef value{};
};

class Tree {
 public:
  static constexpr std::uint32_t kRootIndex = 0;

  std::size_t inode_count() const { return inodes_.size(); }
  const Inode& inode(std::uint32_t index) const { return inodes_[index]; }
  std::span<const Dirent> children(const Inode& dir) const {
    if (!dir.is_dir()) return {};
    return std::span(dirents_).subspan(dir.first_child, dir.child_count);
  }
  std::string_view str(StringRef ref) const { return std::string_view(pool_).substr(ref.offset, ref.size); }
  std::span<const TreeXattr> xattrs(const Inode& inode) const {
    return std::span(xattrs_).subspan(inode.xattr_first, inode.xattr_count);
  }
  std::span<const layer::SparseExtent> sparse(const Inode& inode) const {
    if (!inode.is_regular()) return {};
    return std::span(sparse_).subspan(inode.sparse_first, inode.sparse_count);
  }

  // Child of a directory by name (binary search), or nullopt.
  std::optional<std::uint32_t> lookup(std::uint32_t dir, std::string_view name) const;
  // Inode of a path relative to the root ("" or "/" is the root); symlinks are not followed.
  std::optional<std::uint32_t> resolve(std::string_view path) const;
  std::size_t memory_bytes() const;

 private:
  friend class TreeBuilder;
  std::vector<Inode> inodes_;
  std::vector<Dirent> dirents_;
  std::vector<TreeXattr> xattrs_;
  std::vector<layer::SparseExtent> sparse_;
  std::string pool_;
};

}  // namespace ocifs::image
