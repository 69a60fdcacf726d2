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

namespace {

constexpr std::size_t kHeader = 112;

std::uint64_t le64(std::string_view s, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= std::uint64_t{static_cast<unsigned char>(s[at + i])} << (8 * i);
  return v;
}

// Where the seek index lies according to the header (the sizes of the sections before it).
void fix_checksums(std::string& bytes) {
  if (bytes.size() < kHeader + 32) return;
  unsigned __int128 at = kHeader;
  const std::size_t record[] = {53, 32, 16, 16, 1};  // entries, extras, xattrs, extents, pool bytes
  for (int i = 0; i < 5; ++i) at += static_cast<unsigned __int128>(le64(bytes, 16 + 8 * i)) * record[i];
  const std::uint64_t seek_size = le64(bytes, 56);
  if (at + seek_size <= bytes.size() - 32) {
    fuzz::fix_crc32_trailer(bytes, static_cast<std::size_t>(at), static_cast<std::size_t>(seek_size));
  }
  fuzz::fix_sha256_trailer(bytes, kHeader + 32);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  fix_checksums(bytes);
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
