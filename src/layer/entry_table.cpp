#include "entry_table.hpp"

namespace ocifs::layer {

namespace {

// Index tables use u32 offsets and counts; a layer near these limits is hostile (1 Gi entries
// would need 512 GiB of tar headers), so it is refused instead of overflowing.
constexpr std::uint64_t kMaxPoolBytes = 3ull << 30;
constexpr std::uint64_t kMaxRecords = 1ull << 30;

}  // namespace

Result<LayerIndex> index_entries(TarWalker& walker, std::string_view layer_name,
                                 bool (*skip)(std::string_view path)) {
  LayerIndex index;
  std::uint64_t pool_bytes = 0, xattrs = 0, extents = 0;
  for (;;) {
    OCIFS_ASSIGN(auto entry, walker.next());
    if (!entry) break;
    if (skip && skip(entry->path)) continue;
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

}  // namespace ocifs::layer
