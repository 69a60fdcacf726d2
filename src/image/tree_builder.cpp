#include "ocifs/image/tree_builder.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <deque>
#include <functional>

#include "ocifs/util/limits.hpp"
#include "ocifs/util/text.hpp"

namespace ocifs::image {

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr std::string_view kMetaPrefix = ".wh..wh.";  // AUFS metadata such as .wh..wh.plnk
constexpr std::uint32_t kTombstone = UINT32_MAX - 1;  // a hash slot whose link was removed

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

// 16 bytes. Attributes are read from the entry when the tree is frozen.
struct TreeBuilder::Node {
  std::uint32_t entry = kNone;        // in the entries of layer `layer`; kNone: an implicit directory
  std::uint32_t links = 0;            // live directory entries naming this node
  std::uint32_t first_child = kNone;  // directories: the first Link of their children
  std::uint16_t layer = 0;
  bool dir = false;
};

// 24 bytes: one name in one directory; the children of a directory are a doubly linked list.
struct TreeBuilder::Link {
  std::uint32_t dir = 0;
  std::uint32_t node = 0;
  std::uint32_t name_offset = 0;  // in the string pool of layer `name_layer`
  std::uint16_t name_size = 0;    // at most NAME_MAX
  std::uint16_t name_layer = 0;
  std::uint32_t prev = kNone;
  std::uint32_t next = kNone;
};

TreeBuilder::TreeBuilder() {
  nodes_.push_back(Node{kNone, 1, kNone, 0, true});
  table_.assign(1024, kNone);
}

TreeBuilder::~TreeBuilder() = default;
TreeBuilder::TreeBuilder(TreeBuilder&&) noexcept = default;

std::string_view TreeBuilder::name_of(const Link& link) const {
  return layers_[link.name_layer]->strings().substr(link.name_offset, link.name_size);
}

Result<std::uint32_t> TreeBuilder::new_node(std::uint16_t layer, std::uint32_t entry, bool dir) {
  if (nodes_.size() >= limits::kMaxEntriesPerImage) {
    return make_error(
        std::errc::file_too_large,
        "cannot build the tree of the image at {}: it needs more than {} inodes (implicit parent "
        "directories included), the limit for an image",
        layer_name_, limits::kMaxEntriesPerImage);
  }
  nodes_.push_back(Node{entry, 1, kNone, layer, dir});
  return static_cast<std::uint32_t>(nodes_.size() - 1);
}

std::size_t TreeBuilder::slot_of(std::uint32_t dir, std::string_view name) const {
  const std::size_t h = std::hash<std::string_view>{}(name) ^ (std::size_t{dir} * 0x9e3779b97f4a7c15ull);
  return (h ^ (h >> 29)) & (table_.size() - 1);
}

std::optional<std::uint32_t> TreeBuilder::find_link(std::uint32_t dir, std::string_view name) const {
  for (std::size_t s = slot_of(dir, name);; s = (s + 1) & (table_.size() - 1)) {
    const std::uint32_t l = table_[s];
    if (l == kNone) return std::nullopt;
    if (l != kTombstone && links_[l].dir == dir && name_of(links_[l]) == name) return l;
  }
}

void TreeBuilder::grow_table() {
  // Live links decide the new size: tombstones are dropped, so a table that only churns (a
  // layer that whites out what the last one added) does not grow.
  std::size_t live = 0;
  for (std::uint32_t l : table_) live += l != kNone && l != kTombstone;
  std::size_t size = 1024;
  while (size < 2 * (live + 1)) size *= 2;
  std::vector<std::uint32_t> old(size, kNone);
  old.swap(table_);
  table_used_ = 0;
  for (std::uint32_t l : old) {
    if (l == kNone || l == kTombstone) continue;
    std::size_t s = slot_of(links_[l].dir, name_of(links_[l]));
    while (table_[s] != kNone) s = (s + 1) & (table_.size() - 1);
    table_[s] = l;
    ++table_used_;
  }
}

void TreeBuilder::add_link(std::uint32_t dir, std::string_view name, std::uint16_t layer,
                           std::uint32_t node) {
  // At most half the slots used (tombstones count): probes stay short.
  if (2 * (table_used_ + 1) > table_.size()) grow_table();
  const auto pool = layers_[layer]->strings();
  Link link;
  link.dir = dir;
  link.node = node;
  link.name_offset = static_cast<std::uint32_t>(name.data() - pool.data());
  link.name_size = static_cast<std::uint16_t>(name.size());
  link.name_layer = layer;
  link.next = nodes_[dir].first_child;
  const auto l = static_cast<std::uint32_t>(links_.size());
  if (link.next != kNone) links_[link.next].prev = l;
  nodes_[dir].first_child = l;
  links_.push_back(link);
  std::size_t s = slot_of(dir, name);
  while (table_[s] != kNone && table_[s] != kTombstone) s = (s + 1) & (table_.size() - 1);
  if (table_[s] == kNone) ++table_used_;
  table_[s] = l;
}

std::optional<std::uint32_t> TreeBuilder::find(std::string_view path) const {
  std::uint32_t at = 0;
  while (!path.empty()) {
    auto slash = path.find('/');
    auto part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    if (!nodes_[at].dir) return std::nullopt;
    auto link = find_link(at, part);
    if (!link) return std::nullopt;
    at = links_[*link].node;
  }
  return at;
}

void TreeBuilder::remove_all_children(std::uint32_t dir) {
  // Depth-first with an explicit stack (a hostile tree is 2048 levels deep): directories whose
  // last name goes take their children with them.
  std::vector<std::uint32_t> dirs{dir};
  while (!dirs.empty()) {
    const std::uint32_t d = dirs.back();
    dirs.pop_back();
    while (nodes_[d].first_child != kNone) {
      const std::uint32_t node = links_[nodes_[d].first_child].node;
      detach(nodes_[d].first_child);
      if (nodes_[node].links == 0 && nodes_[node].dir) dirs.push_back(node);
    }
  }
}

void TreeBuilder::detach(std::uint32_t l) {
  Link& link = links_[l];
  // Out of the hash table: the slot becomes a tombstone so that probes go on past it.
  for (std::size_t s = slot_of(link.dir, name_of(link));; s = (s + 1) & (table_.size() - 1)) {
    if (table_[s] == l) {
      table_[s] = kTombstone;
      break;
    }
  }
  Node& dir = nodes_[link.dir];
  if (link.prev != kNone) {
    links_[link.prev].next = link.next;
  } else {
    dir.first_child = link.next;
  }
  if (link.next != kNone) links_[link.next].prev = link.prev;
  nodes_[link.node].links--;
}

void TreeBuilder::unlink(std::uint32_t l) {
  const std::uint32_t node = links_[l].node;
  detach(l);
  if (nodes_[node].links == 0 && nodes_[node].dir) remove_all_children(node);
}

// Walks to `path`, creating missing directories 0755 root:root (images omit parent entries) and
// replacing non-directories in the way, as extracting the tar would.
Result<std::uint32_t> TreeBuilder::ensure_dir(std::string_view path, std::uint16_t layer_no) {
  std::uint32_t at = 0;
  while (!path.empty()) {
    auto slash = path.find('/');
    auto part = path.substr(0, slash);
    path = slash == std::string_view::npos ? std::string_view() : path.substr(slash + 1);
    auto existing = find_link(at, part);
    if (existing && nodes_[links_[*existing].node].dir) {
      at = links_[*existing].node;
      continue;
    }
    if (existing) unlink(*existing);
    OCIFS_ASSIGN(std::uint32_t made, new_node(layer_no, kNone, true));
    add_link(at, part, layer_no, made);
    at = made;
  }
  return at;
}

Result<void> TreeBuilder::add_entry(std::uint16_t layer_no, const layer::LayerIndex& index,
                                    std::uint32_t entry_no, std::string_view layer_name) {
  const layer::IndexEntry& e = index.entries()[entry_no];
  std::string_view path = index.path(e);
  if (path.empty()) {  // the root directory itself
    if (e.kind == layer::EntryKind::directory) {
      nodes_[0].entry = entry_no;
      nodes_[0].layer = layer_no;
    }
    return util::success();
  }
  auto [parent_path, name] = split_parent(path);
  OCIFS_ASSIGN(std::uint32_t parent, ensure_dir(parent_path, layer_no));
  auto existing = find_link(parent, name);

  if (e.kind == layer::EntryKind::hardlink) {
    auto target = find(index.link_target(e));
    if (!target || nodes_[*target].dir) {
      spdlog::warn("{}: hard link {} -> {}: target {}; entry skipped", layer_name, util::shown(path),
                   util::shown(index.link_target(e)), target ? "is a directory" : "does not exist");
      return util::success();
    }
    if (existing && links_[*existing].node == *target) return util::success();
    if (existing) unlink(*existing);
    nodes_[*target].links++;
    add_link(parent, name, layer_no, *target);
    return util::success();
  }

  const bool dir = e.kind == layer::EntryKind::directory;
  if (existing && dir && nodes_[links_[*existing].node].dir) {
    Node& merged = nodes_[links_[*existing].node];  // directory over directory: upper metadata wins
    merged.entry = entry_no;
    merged.layer = layer_no;
    return util::success();
  }
  if (existing) unlink(*existing);
  OCIFS_ASSIGN(std::uint32_t id, new_node(layer_no, entry_no, dir));
  add_link(parent, name, layer_no, id);
  return util::success();
}

Result<void> TreeBuilder::apply_layer(std::uint16_t layer_no, const layer::LayerIndex& index,
                                      std::string_view name) {
  if (name.empty()) name = "layer";
  if (layer_no != layers_.size()) {
    return make_error(std::errc::invalid_argument, "cannot apply {}: layer {} comes after {}", name, layer_no,
                      layers_.size());  // a bug in the caller
  }
  layers_.push_back(&index);
  layer_name_ = name;
  // Whiteouts and opaque markers hide lower layers only, so all of them go first, whatever their
  // position in the tar; then the layer's own entries are added in order.
  for (const auto& e : index.entries()) {
    auto [dir, base] = split_parent(index.path(e));
    if (!base.starts_with(kWhiteoutPrefix)) continue;
    auto target_dir = find(dir);
    if (!target_dir || !nodes_[*target_dir].dir) continue;
    if (base == kOpaqueMarker) {
      remove_all_children(*target_dir);
      continue;
    }
    if (base.starts_with(kMetaPrefix)) continue;
    if (auto link = find_link(*target_dir, base.substr(kWhiteoutPrefix.size()))) unlink(*link);
  }
  const auto entries = index.entries();
  for (std::uint32_t i = 0; i < entries.size(); ++i) {
    auto [dir, base] = split_parent(index.path(entries[i]));
    if (base.starts_with(kWhiteoutPrefix)) {
      // The opaque marker's directory exists in this layer even when the tar has no entry for it.
      if (base == kOpaqueMarker) OCIFS_TRY(ensure_dir(dir, layer_no));
      continue;
    }
    OCIFS_TRY(add_entry(layer_no, index, i, name));
  }
  return util::success();
}

Tree TreeBuilder::build() && {
  table_ = {};  // lookups are over: the hash table goes before the tree takes its room
  Tree tree;
  // Exact sizes first, so that no table of the tree is copied while it grows: live nodes, their
  // names and the bytes the pool will hold.
  std::size_t live_nodes = 0, live_links = 0, pool_bytes = 0, xattrs = 0, extents = 0;
  for (const Node& n : nodes_) {
    if (n.links == 0) continue;
    ++live_nodes;
    if (n.entry == kNone) continue;
    const auto& index = *layers_[n.layer];
    const auto& e = index.entries()[n.entry];
    if (e.kind == layer::EntryKind::symlink) pool_bytes += index.link_target(e).size();
    for (const auto& x : index.xattrs(e)) pool_bytes += x.name_size + x.value_size;
    xattrs += index.xattrs(e).size();
    extents += index.sparse(e).size();
  }
  for (const Node& n : nodes_) {
    if (n.links == 0 || !n.dir) continue;
    for (std::uint32_t l = n.first_child; l != kNone; l = links_[l].next) {
      ++live_links;
      pool_bytes += links_[l].name_size;
    }
  }
  tree.inodes_.reserve(live_nodes);
  tree.dirents_.reserve(live_links);
  tree.xattrs_.reserve(xattrs);
  tree.sparse_.reserve(extents);
  tree.pool_.reserve(pool_bytes);
  auto intern = [&tree](std::string_view s) {
    StringRef ref{static_cast<std::uint32_t>(tree.pool_.size()), static_cast<std::uint32_t>(s.size())};
    tree.pool_.append(s);
    return ref;
  };
  // Everything but the attributes of one inode, from its entry.
  auto fill = [&](std::uint32_t self, const Node& n) {
    Inode& out = tree.inodes_[self];
    out.layer = n.layer;
    out.nlink = n.links;
    if (n.entry == kNone) {
      out.mode = S_IFDIR | 0755;  // an implicit directory (the root, or a parent images omit)
      return;
    }
    const auto& index = *layers_[n.layer];
    const auto& e = index.entries()[n.entry];
    out.mode = type_bits(e.kind) | (e.mode & 07777);
    // Linux symlinks are always 0777 (lrwxrwxrwx; there is no lchmod), as `umoci unpack` and tar
    // extraction show them, whatever mode the tar header carries.
    if (e.kind == layer::EntryKind::symlink) out.mode = S_IFLNK | 0777;
    out.uid = e.uid;
    out.gid = e.gid;
    out.mtime_sec = e.mtime_sec;
    out.mtime_nsec = e.mtime_nsec;
    out.xattr_first = static_cast<std::uint32_t>(tree.xattrs_.size());
    out.xattr_count = static_cast<std::uint32_t>(index.xattrs(e).size());
    for (const auto& x : index.xattrs(e)) {
      tree.xattrs_.push_back({intern(index.xattr_name(x)), intern(index.xattr_value(x))});
    }
    // Only the fields of the inode's kind: the others share their bytes (tree.hpp).
    if (e.kind == layer::EntryKind::regular) {
      out.size = e.size;
      out.data_offset = e.data_offset;
      auto sparse = index.sparse(e);
      out.sparse_first = static_cast<std::uint32_t>(tree.sparse_.size());
      out.sparse_count = static_cast<std::uint32_t>(sparse.size());
      tree.sparse_.insert(tree.sparse_.end(), sparse.begin(), sparse.end());
    } else if (e.kind == layer::EntryKind::symlink) {
      out.link = intern(index.link_target(e));
      out.size = out.link.size;
    } else if (e.kind == layer::EntryKind::char_device || e.kind == layer::EntryKind::block_device) {
      out.dev_major = index.dev_major(e);
      out.dev_minor = index.dev_minor(e);
    }
  };
  // Breadth-first numbering over sorted children: deterministic, and each directory's entries
  // land contiguously in dirents_. An inode is filled in when it is numbered; only directories
  // wait in the queue.
  std::vector<std::uint32_t> number(nodes_.size(), UINT32_MAX);
  std::deque<std::uint32_t> queue{0};
  std::vector<std::uint32_t> kids;
  number[0] = 0;
  tree.inodes_.emplace_back();
  fill(0, nodes_[0]);
  while (!queue.empty()) {
    const std::uint32_t id = queue.front();
    queue.pop_front();
    const Node& n = nodes_[id];
    const std::uint32_t self = number[id];
    kids.clear();
    for (std::uint32_t l = n.first_child; l != kNone; l = links_[l].next) kids.push_back(l);
    std::sort(kids.begin(), kids.end(),
              [this](std::uint32_t a, std::uint32_t b) { return name_of(links_[a]) < name_of(links_[b]); });
    const auto first = static_cast<std::uint32_t>(tree.dirents_.size());
    std::uint32_t subdirs = 0;
    for (std::uint32_t l : kids) {
      const std::uint32_t child = links_[l].node;
      if (number[child] == UINT32_MAX) {
        number[child] = static_cast<std::uint32_t>(tree.inodes_.size());
        tree.inodes_.emplace_back();
        fill(number[child], nodes_[child]);
        if (nodes_[child].dir) queue.push_back(child);
      }
      if (nodes_[child].dir) {
        subdirs++;
        tree.inodes_[number[child]].parent = self;
      }
      tree.dirents_.push_back({intern(name_of(links_[l])), number[child]});
    }
    Inode& dir = tree.inodes_[self];
    dir.first_child = first;
    dir.child_count = static_cast<std::uint32_t>(kids.size());
    dir.nlink = 2 + subdirs;  // "." and each subdirectory's ".."
    dir.size = 0;
  }
  tree.inodes_[0].parent = 0;
  nodes_ = {};
  links_ = {};
  return tree;
}

}  // namespace ocifs::image
