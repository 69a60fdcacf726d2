#include "entry_table.hpp"

#include "ocifs/util/text.hpp"

namespace ocifs::layer {

Result<void> EntryAdmission::admit(const TarEntry& entry) {
  MetadataUse use{1, entry.path.size() + entry.link_target.size(), entry.xattrs.size() + entry.sparse.size()};
  for (const auto& x : entry.xattrs) use.bytes += x.name.size() + x.value.size();
  layer_.entries += use.entries;
  layer_.bytes += use.bytes;
  layer_.records += use.records;
  auto what = [&] {
    return fmt::format("entry '{}' (header offset {})", util::shown(entry.path), entry.header_offset);
  };
  // The layer alone first: an index's u32 tables can never overflow whatever the budget says.
  if (auto alone = MetadataBudget::check(layer_, layer_name_, what); !alone) return alone;
  if (budget_) return budget_->charge(use, layer_name_, what);
  return util::success();
}

Result<LayerIndex> index_entries(TarWalker& walker, std::string_view layer_name, MetadataBudget* budget) {
  LayerIndex index;
  EntryAdmission admission(layer_name, budget);
  for (;;) {
    OCIFS_ASSIGN(auto entry, walker.next());
    if (!entry) break;
    OCIFS_TRY(admission.admit(*entry));
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
    entry.dev_major = index.dev_major(e);
    entry.dev_minor = index.dev_minor(e);
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
