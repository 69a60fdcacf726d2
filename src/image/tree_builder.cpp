#include "ocifs/image/tree_builder.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <deque>

namespace ocifs::image {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr std::string_view kMetaPrefix = ".wh..wh.";  // AUFS metadata such as .wh..wh.plnk

std::pair<std::string_view, std::string_view> split_parent(std::string_view path) {
  auto slash = path.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view(), path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

std::uint32_t type_bits(layer::EntryKind kind) {
  switch (kind) {
    case layer::EntryKind::regular: return S_IFREG;
    case layer::EntryKind::directory: return S_IFDIR;
    case layer::EntryKind::symlink: return S_IFLNK;
    case layer::EntryKind::hardlink: return S_IFREG;
    case layer::EntryKind::char_device: return S_IFCHR;
    case layer::EntryKind::block_device: return S_IFBLK;
    case layer::EntryKind::fifo: return S_IFIFO;
  }
  return S_IFREG;
}

}  // namespace

struct TreeBuilder::Node {
  std::uint32_t mode = S_IFDIR | 0755;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint64_t size = 0;
  std::uint64_t data_offset = 0;
  std::int64_t mtime_sec = 0;
  std::uint32_t mtime_nsec = 0;
  std::uint32_t dev_major = 0;
  std::uint32_t dev_minor = 0;
  std::uint16_t layer = 0;
  std::uint32_t links = 0;  // live directory entries naming this node
  std::string link;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<layer::SparseExtent> sparse;
  std::unique_ptr<Children> children;  // directories only

  bool is_dir() const { return S_ISDIR(mode); }
};

TreeBuilder::TreeBuilder() {
  auto root = new_node();
  nodes_[root].children = std::make_unique<Children>();
  nodes_[root].links = 1;
}

TreeBuilder::~TreeBuilder() = default;
TreeBuilder::TreeBuilder(TreeBuilder&&) noexcept = default;

std::uint32_t TreeBuilder::new_node() {
  nodes_.emplace_back();
  return static_cast<std::uint32_t>(nodes_.size() - 1);
}

std::optional<std::uint32_t> TreeBuilder::find(std::string_view path) const {
  std::uint32_t at = 0;
  while (!path.empty()) {
    auto slash = path.find('/');
    auto part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    const auto& kids = nodes_[at].children;
    if (!kids) return std::nullopt;
    auto it = kids->find(part);
    if (it == kids->end()) return std::nullopt;
    at = it->second;
  }
  return at;
}

void TreeBuilder::remove_all_children(std::uint32_t dir) {
  auto& kids = *nodes_[dir].children;
  while (!kids.empty()) unlink(dir, kids.begin());
}

// Drops one directory entry. The node goes with its last name; a directory takes its subtree
// with it, which releases the names its descendants held (hard-link siblings elsewhere keep the
// inode alive).
void TreeBuilder::unlink(std::uint32_t dir, Children::iterator child) {
  std::uint32_t node = child->second;
  nodes_[dir].children->erase(child);
  if (--nodes_[node].links == 0 && nodes_[node].is_dir()) {
    remove_all_children(node);
    nodes_[node].children.reset();
  }
}

// Walks to `path`, creating missing directories 0755 root:root (images omit parent entries) and
// replacing non-directories in the way, as extracting the tar would.
std::uint32_t TreeBuilder::ensure_dir(std::string_view path, std::uint16_t layer_no) {
  std::uint32_t at = 0;
  while (!path.empty()) {
    auto slash = path.find('/');
    auto part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    auto& kids = *nodes_[at].children;
    auto it = kids.find(part);
    if (it != kids.end() && nodes_[it->second].is_dir()) {
      at = it->second;
      continue;
    }
    if (it != kids.end()) unlink(at, it);
    auto made = new_node();
    nodes_[made].children = std::make_unique<Children>();
    nodes_[made].links = 1;
    nodes_[made].layer = layer_no;
    nodes_[at].children->emplace(std::string(part), made);
    at = made;
  }
  return at;
}

void TreeBuilder::set_attributes(std::uint32_t id, std::uint16_t layer_no, const layer::LayerIndex& index,
                                 const layer::IndexEntry& e) {
  Node& n = nodes_[id];
  n.mode = type_bits(e.kind) | (e.mode & 07777);
  // Linux symlinks are always 0777 (lrwxrwxrwx; there is no lchmod), as `umoci unpack` and tar
  // extraction show them, whatever mode the tar header carries.
  if (e.kind == layer::EntryKind::symlink) n.mode = S_IFLNK | 0777;
  n.uid = e.uid;
  n.gid = e.gid;
  n.mtime_sec = e.mtime_sec;
  n.mtime_nsec = e.mtime_nsec;
  n.layer = layer_no;
  n.xattrs.clear();
  for (const auto& x : index.xattrs(e)) {
    n.xattrs.emplace_back(std::string(index.xattr_name(x)), std::string(index.xattr_value(x)));
  }
  if (e.kind == layer::EntryKind::directory) return;
  n.size = e.kind == layer::EntryKind::regular ? e.size : 0;
  n.data_offset = e.data_offset;
  n.dev_major = e.dev_major;
  n.dev_minor = e.dev_minor;
  n.link = std::string(e.kind == layer::EntryKind::symlink ? index.link_target(e) : std::string_view());
  if (e.kind == layer::EntryKind::symlink) n.size = n.link.size();
  auto sparse = index.sparse(e);
  n.sparse.assign(sparse.begin(), sparse.end());
}

void TreeBuilder::add_entry(std::uint16_t layer_no, const layer::LayerIndex& index, const layer::IndexEntry& e,
                            std::string_view layer_name) {
  std::string_view path = index.path(e);
  if (path.empty()) {  // the root directory itself
    if (e.kind == layer::EntryKind::directory) set_attributes(0, layer_no, index, e);
    return;
  }
  auto [parent_path, name] = split_parent(path);
  std::uint32_t parent = ensure_dir(parent_path, layer_no);
  auto& kids = *nodes_[parent].children;
  auto existing = kids.find(name);

  if (e.kind == layer::EntryKind::hardlink) {
    auto target = find(index.link_target(e));
    if (!target || nodes_[*target].is_dir()) {
      spdlog::warn("{}: hard link {} -> {}: target {}; entry skipped", layer_name, path,
                   index.link_target(e), target ? "is a directory" : "does not exist");
      return;
    }
    if (existing != kids.end() && existing->second == *target) return;
    if (existing != kids.end()) unlink(parent, existing);
    nodes_[*target].links++;
    nodes_[parent].children->emplace(std::string(name), *target);
    return;
  }

  if (existing != kids.end() && e.kind == layer::EntryKind::directory && nodes_[existing->second].is_dir()) {
    set_attributes(existing->second, layer_no, index, e);  // directory over directory: merge
    return;
  }
  if (existing != kids.end()) unlink(parent, existing);
  auto id = new_node();
  nodes_[id].links = 1;
  if (e.kind == layer::EntryKind::directory) nodes_[id].children = std::make_unique<Children>();
  set_attributes(id, layer_no, index, e);
  nodes_[parent].children->emplace(std::string(name), id);
}

void TreeBuilder::apply_layer(std::uint16_t layer_no, const layer::LayerIndex& index, std::string_view name) {
  if (name.empty()) name = "layer";
  // Whiteouts and opaque markers hide lower layers only, so all of them go first, whatever their
  // position in the tar; then the layer's own entries are added in order.
  for (const auto& e : index.entries()) {
    auto [dir, name] = split_parent(index.path(e));
    if (!name.starts_with(kWhiteoutPrefix)) continue;
    auto target_dir = find(dir);
    if (!target_dir || !nodes_[*target_dir].is_dir()) continue;
    if (name == kOpaqueMarker) {
      remove_all_children(*target_dir);
      continue;
    }
    if (name.starts_with(kMetaPrefix)) continue;
    auto& kids = *nodes_[*target_dir].children;
    auto it = kids.find(name.substr(kWhiteoutPrefix.size()));
    if (it != kids.end()) unlink(*target_dir, it);
  }
  for (const auto& e : index.entries()) {
    auto name = split_parent(index.path(e)).second;
    if (name.starts_with(kWhiteoutPrefix)) {
      // The opaque marker's directory exists in this layer even when the tar has no entry for it.
      if (name == kOpaqueMarker) ensure_dir(split_parent(index.path(e)).first, layer_no);
      continue;
    }
    add_entry(layer_no, index, e, name);
  }
}

Tree TreeBuilder::build() && {
  Tree tree;
  auto intern = [&tree](std::string_view s) {
    StringRef ref{static_cast<std::uint32_t>(tree.pool_.size()), static_cast<std::uint32_t>(s.size())};
    tree.pool_.append(s);
    return ref;
  };
  // Breadth-first numbering over sorted children: deterministic, and each directory's entries
  // land contiguously in dirents_.
  std::vector<std::uint32_t> number(nodes_.size(), UINT32_MAX);
  std::deque<std::uint32_t> queue{0};
  number[0] = 0;
  tree.inodes_.emplace_back();
  while (!queue.empty()) {
    std::uint32_t id = queue.front();
    queue.pop_front();
    Node& n = nodes_[id];
    std::uint32_t self = number[id];
    Inode& out = tree.inodes_[self];
    out.mode = n.mode;
    out.uid = n.uid;
    out.gid = n.gid;
    out.size = n.size;
    out.data_offset = n.data_offset;
    out.mtime_sec = n.mtime_sec;
    out.mtime_nsec = n.mtime_nsec;
    out.dev_major = n.dev_major;
    out.dev_minor = n.dev_minor;
    out.layer = n.layer;
    out.nlink = n.links;
    out.link = intern(n.link);
    out.xattr_first = static_cast<std::uint32_t>(tree.xattrs_.size());
    out.xattr_count = static_cast<std::uint32_t>(n.xattrs.size());
    for (const auto& [name, value] : n.xattrs) tree.xattrs_.push_back({intern(name), intern(value)});
    out.sparse_first = static_cast<std::uint32_t>(tree.sparse_.size());
    out.sparse_count = static_cast<std::uint32_t>(n.sparse.size());
    tree.sparse_.insert(tree.sparse_.end(), n.sparse.begin(), n.sparse.end());
    if (!n.is_dir()) continue;

    std::uint32_t first = static_cast<std::uint32_t>(tree.dirents_.size());
    std::uint32_t subdirs = 0;
    for (const auto& [name, child] : *n.children) {  // std::map: sorted bytewise
      if (number[child] == UINT32_MAX) {
        number[child] = static_cast<std::uint32_t>(tree.inodes_.size());
        tree.inodes_.emplace_back();
        queue.push_back(child);
      }
      if (nodes_[child].is_dir()) {
        subdirs++;
        tree.inodes_[number[child]].parent = self;
      }
      tree.dirents_.push_back({intern(name), number[child]});
    }
    Inode& dir = tree.inodes_[self];  // re-fetch: emplace_back may have moved it
    dir.first_child = first;
    dir.child_count = static_cast<std::uint32_t>(n.children->size());
    dir.nlink = 2 + subdirs;  // "." and each subdirectory's ".."
    dir.size = 0;
  }
  tree.inodes_[0].parent = 0;
  tree.inodes_.shrink_to_fit();
  tree.dirents_.shrink_to_fit();
  tree.pool_.shrink_to_fit();
  nodes_.clear();
  return tree;
}

}  // namespace ocifs::image
