// TarWalker on arbitrary bytes as an uncompressed layer: headers, PAX, GNU long names, sparse
// maps (old GNU, 0.0, 0.1, 1.0), base-256 numbers. Besides "no crash", every entry it returns
// must keep the promises of tar_entry.hpp and util/limits.hpp, and three ways of walking the
// same bytes must agree: reading every byte (the verified scan), seeking over data (an archive's
// member list), and the header walk of a registry layer (header_walk.hpp); the index built from
// the walk must survive its on-disk form unchanged.
// libfuzzer: -max_len=262144
#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "../../src/layer/entry_table.hpp"
#include "ocifs/compress/identity_decoder.hpp"
#include "ocifs/layer/header_walk.hpp"
#include "ocifs/layer/tar_walker.hpp"
#include "ocifs/util/limits.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;
using layer::EntryKind;
using layer::TarEntry;

namespace {

const std::string kDigest = "sha256:" + std::string(64, '0');

Result<std::vector<TarEntry>> walk(const io::BlobSourcePtr& blob, bool read_everything) {
  compress::ScanOptions options;
  options.hash = read_everything;
  compress::IdentityDecoder decoder(blob, options);
  layer::TarWalker walker(decoder, "layer fuzz");
  std::vector<TarEntry> out;
  for (;;) {
    OCIFS_ASSIGN(auto entry, walker.next());
    if (!entry) break;
    out.push_back(std::move(*entry));
  }
  return out;
}

bool normalised(std::string_view path) {
  if (path.empty()) return true;  // the root
  if (path.size() > limits::kMaxPathBytes || path.find('\0') != std::string_view::npos) return false;
  std::size_t start = 0;
  for (;;) {
    auto slash = path.find('/', start);
    auto part = path.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty() || part == "." || part == ".." || part.size() > limits::kMaxNameBytes) return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

void check_entry(const TarEntry& e, std::uint64_t blob_size) {
  check(normalised(e.path), "path '{}' is not normalised", e.path);
  check(e.mode <= 07777, "mode {:o} has type bits", e.mode);
  check(e.mtime_nsec < 1'000'000'000, "mtime_nsec {}", e.mtime_nsec);
  check(e.data_offset % 512 == 0, "data offset {} is not on a block", e.data_offset);
  check(e.data_offset <= blob_size && e.stored_size <= blob_size - e.data_offset,
        "data {}+{} of '{}' is past the {}-byte blob", e.data_offset, e.stored_size, e.path, blob_size);
  check(e.size <= limits::kMaxFileBytes, "size {}", e.size);
  const bool has_size = e.kind == EntryKind::regular || e.kind == EntryKind::hardlink;
  check(has_size || e.size == 0, "a kind {} entry with size {}", static_cast<int>(e.kind), e.size);
  if (e.kind == EntryKind::hardlink) {
    check(normalised(e.link_target), "hard link target '{}' is not normalised", e.link_target);
  } else if (e.kind == EntryKind::symlink) {
    check(e.link_target.size() <= limits::kMaxPathBytes && e.link_target.find('\0') == std::string::npos,
          "symlink target of {} bytes", e.link_target.size());
  } else {
    check(e.link_target.empty(), "a kind {} entry with a link target", static_cast<int>(e.kind));
  }
  if (e.kind != EntryKind::char_device && e.kind != EntryKind::block_device) {
    // POSIX puts device numbers only on devices, but PAX SCHILY.devmajor may say anything: not
    // checked.
  }
  std::vector<std::string_view> names;
  for (const auto& x : e.xattrs) {
    check(!x.name.empty() && x.name.size() <= limits::kMaxXattrNameBytes &&
              x.name.find('\0') == std::string::npos,
          "xattr name of {} bytes", x.name.size());
    check(x.value.size() <= limits::kMaxXattrValueBytes, "xattr value of {} bytes", x.value.size());
    names.push_back(x.name);
  }
  std::sort(names.begin(), names.end());
  check(std::adjacent_find(names.begin(), names.end()) == names.end(), "an xattr name twice");
  if (!e.sparse.empty()) {
    check(e.kind == EntryKind::regular, "sparse map on a kind {} entry", static_cast<int>(e.kind));
    check(e.sparse.size() <= limits::kMaxSparseExtentsPerFile, "{} extents", e.sparse.size());
    std::uint64_t end = 0, total = 0;
    for (const auto& x : e.sparse) {
      // A file of holes only keeps one empty extent at its end (an empty map would read as data).
      check(x.offset >= end && x.length <= e.size && x.offset <= e.size - x.length,
            "extent {}+{} of a {}-byte file after {}", x.offset, x.length, e.size, end);
      end = x.offset + x.length;
      total += x.length;
    }
    check(total <= e.stored_size, "extents map {} bytes, {} stored", total, e.stored_size);
  } else if (e.kind == EntryKind::regular) {
    check(e.stored_size == e.size, "stored {} bytes of a {}-byte file without a sparse map", e.stored_size,
          e.size);
  }
}

bool same(const TarEntry& a, const TarEntry& b) {
  auto key = [](const TarEntry& e) {
    return std::tie(e.path, e.kind, e.mode, e.uid, e.gid, e.size, e.mtime_sec, e.mtime_nsec, e.link_target,
                    e.dev_major, e.dev_minor, e.data_offset, e.stored_size, e.header_offset);
  };
  if (key(a) != key(b) || a.xattrs.size() != b.xattrs.size() || a.sparse.size() != b.sparse.size())
    return false;
  for (std::size_t i = 0; i < a.xattrs.size(); ++i) {
    if (a.xattrs[i].name != b.xattrs[i].name || a.xattrs[i].value != b.xattrs[i].value) return false;
  }
  for (std::size_t i = 0; i < a.sparse.size(); ++i) {
    if (a.sparse[i].offset != b.sparse[i].offset || a.sparse[i].length != b.sparse[i].length) return false;
  }
  return true;
}

// What the index keeps of an entry (it drops stored_size and header_offset).
void check_indexed(const layer::LayerIndex& index, const std::vector<TarEntry>& entries) {
  check(index.size() == entries.size(), "index has {} entries, the walk {}", index.size(), entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const auto& e = entries[i];
    const auto& r = index.entries()[i];
    check(index.path(r) == e.path && r.kind == e.kind && r.mode == e.mode && r.uid == e.uid &&
              r.gid == e.gid && r.size == e.size && r.mtime_sec == e.mtime_sec &&
              r.mtime_nsec == e.mtime_nsec && r.data_offset == e.data_offset &&
              index.link_target(r) == e.link_target && index.dev_major(r) == e.dev_major &&
              index.dev_minor(r) == e.dev_minor,
          "index entry {} ('{}') differs from the walk's", i, e.path);
    auto xattrs = index.xattrs(r);
    check(xattrs.size() == e.xattrs.size(), "entry {}: xattr count", i);
    for (std::size_t k = 0; k < xattrs.size(); ++k) {
      check(index.xattr_name(xattrs[k]) == e.xattrs[k].name &&
                index.xattr_value(xattrs[k]) == e.xattrs[k].value,
            "entry {}: xattr {}", i, k);
    }
    auto sparse = index.sparse(r);
    check(sparse.size() == e.sparse.size(), "entry {}: extent count", i);
    for (std::size_t k = 0; k < sparse.size(); ++k) {
      check(sparse[k].offset == e.sparse[k].offset && sparse[k].length == e.sparse[k].length,
            "entry {}: extent {}", i, k);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto blob = std::make_shared<fuzz::ViewSource>(bytes);

  auto read = walk(blob, true);
  auto seeked = walk(blob, false);
  check(read.ok() == seeked.ok(), "reading every byte {}, seeking {}",
        read.ok() ? "succeeds" : read.error().message, seeked.ok() ? "succeeds" : seeked.error().message);
  if (!read.ok()) return 0;
  check(read->size() == seeked->size(), "{} entries read, {} seeked", read->size(), seeked->size());
  for (std::size_t i = 0; i < read->size(); ++i) {
    check_entry((*read)[i], size);
    check(same((*read)[i], (*seeked)[i]), "entry {} ('{}') differs when seeking", i, (*read)[i].path);
  }

  // The index the scan builds, its on-disk form, and the header walk's index.
  compress::IdentityDecoder decoder(blob, compress::ScanOptions{});
  layer::TarWalker walker(decoder, "layer fuzz");
  auto index = layer::index_entries(walker, "layer fuzz", nullptr);
  if (!index.ok()) {
    // Only the limits of util/limits.hpp can refuse what the walk accepted.
    check(index.error().code == std::errc::file_too_large, "index_entries: {}", index.error().message);
    return 0;
  }
  check_indexed(*index, *read);
  index->seek_index().compressed_size = index->seek_index().decoded_size = size;
  index->set_digest(kDigest);
  auto loaded = layer::LayerIndex::deserialize(index->serialize());
  check(loaded.ok(), "the index does not load back: {}", loaded.ok() ? "" : loaded.error().message);
  check_indexed(*loaded, *read);
  check(loaded->entries_digest() == index->entries_digest(), "entries digest changed on a round trip");

  layer::LayerBlob layer_blob{.blob = blob, .digest = kDigest, .name = "layer fuzz"};
  auto walked = layer::walk_tar_headers(layer_blob);
  check(walked.ok(), "the header walk fails where the scan succeeds: {}",
        walked.ok() ? "" : walked.error().message);
  check(walked->entries_digest() == index->entries_digest(), "the header walk finds other entries");
  return 0;
}
