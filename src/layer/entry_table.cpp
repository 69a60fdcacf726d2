#include "entry_table.hpp"

namespace ocifs::layer {

namespace {

// Index tables use u32 offsets and counts; a layer near these limits is hostile (1 Gi entries
// would need 512 GiB of tar headers), so it is refused instead of overflowing.
constexpr std::uint64_t kMaxPoolBytes = 3ull << 30;
constexpr std::uint64_t kMaxRecords = 1ull << 30;

}  // namespace

Result<LayerIndex> index_entries(TarWalker& walker, std::string_view layer_name) {
  LayerIndex index;
  std::uint64_t pool_bytes = 0, xattrs = 0, extents = 0;
  for (;;) {
    OCIFS_ASSIGN(auto entry, walker.next());
    if (!entry) break;
    pool_bytes += entry->path.size() + entry->link_target.size();
    for (const auto& x : entry->xattrs) pool_bytes += x.name.size() + x.value.size();
    xattrs += entry->xattrs.size();
    extents += entry->sparse.size();
    if (pool_bytes > kMaxPoolBytes || index.size() >= kMaxRecords || xattrs > kMaxRecords ||
        extents > kMaxRecords) {
      return make_error(std::errc::file_too_large,
                        "cannot index {}: too many entries or names (at '{}', header offset {})", layer_name,
                        entry->path, entry->header_offset);
    }
    index.add(*entry);
  }
  return index;
}

LayerIndex without_entries(const LayerIndex& index, bool (*skip)(std::string_view path)) {
  LayerIndex out;
  for (const IndexEntry& e : index.entries()) {
    if (skip(index.path(e))) continue;
    TarEntry entry;
    entry.path = index.path(e);
    entry.kind = e.kind;
    entry.mode = e.mode;
    entry.uid = e.uid;
    entry.gid = e.gid;
    entry.size = e.size;
    entry.mtime_sec = e.mtime_sec;
    entry.mtime_nsec = e.mtime_nsec;
    entry.link_target = index.link_target(e);
    entry.dev_major = e.dev_major;
    entry.dev_minor = e.dev_minor;
    for (const XattrRef& x : index.xattrs(e)) {
      entry.xattrs.push_back({std::string(index.xattr_name(x)), std::string(index.xattr_value(x))});
    }
    entry.data_offset = e.data_offset;
    auto sparse = index.sparse(e);
    entry.sparse.assign(sparse.begin(), sparse.end());
    out.add(entry);
  }
  out.seek_index() = index.seek_index();
  out.blob_blocks() = index.blob_blocks();
  out.decoded_blocks() = index.decoded_blocks();
  out.set_digest(index.digest());
  return out;
}

}  // namespace ocifs::layer
