// LayerIndex::deserialize: the layer index file of the cache (format in layer_index.cpp). The
// input's checksums are recomputed first (the embedded seek index's CRC-32, the trailing
// sha256), so that mutations reach the bound checks behind them: a stored index is trusted
// once its checksum matches, so those checks are what stands between a damaged or forged file
// and the tree. An index that loads must be readable through every accessor and serialize back
// to the same bytes.
// libfuzzer: -max_len=1048576
#include <string>

#include "../../src/layer/entry_table.hpp"
#include "ocifs/layer/layer_index.hpp"
#include "ocifs/util/path.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  fuzz::fix_layer_index_checksums(bytes);
  auto index = layer::LayerIndex::deserialize(bytes);
  if (!index.ok()) return 0;

  std::uint64_t seen = 0;
  for (const auto& e : index->entries()) {
    seen += index->path(e).size() + index->link_target(e).size();
    for (const auto& x : index->xattrs(e)) seen += index->xattr_name(x).size() + index->xattr_value(x).size();
    for (const auto& s : index->sparse(e)) seen += s.length > 0;
    seen += index->dev_major(e) + index->dev_minor(e);
  }
  (void)seen;
  // What the tree is given: normal paths only (a stored index is trusted once its checksum
  // matches, and the cache is not trusted more than the image).
  for (const auto& e : index->entries()) {
    auto normal = util::normalise_path(index->path(e));
    check(normal.ok() && *normal == index->path(e), "a path not in normal form: '{}'", index->path(e));
  }
  check(index->serialize() == bytes, "an index that loads does not serialize to the same bytes");
  // What a header walk and a TOC layer do with it: a copy without some entries.
  auto copy = layer::without_entries(*index, [](std::string_view path) { return path.empty(); });
  check(copy.size() <= index->size(), "without_entries added entries");
  return 0;
}
