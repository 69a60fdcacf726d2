// LayerIndex: every entry of one layer with its data offset in the decoded stream, plus the seek
// index for random access, in a compact form (fixed records + one string pool). Built once by
// scanning the blob, persisted in the cache by the layer digest, reloaded on the next mount.
// Immutable once built: safe to read from many threads.
//
// Memory: 56 bytes an entry plus its path in the pool, and 32 more for the entries that have a
// link target, device numbers, xattrs or sparse extents (EntryExtra); 2 million empty files
// take 145 MB (112 MB of records, 28 MB of paths). It is written and read in pieces: neither
// needs a second copy of it (version 3 read and wrote whole strings: 81 bytes an entry twice).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ocifs/compress/seek_index.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/io/block_digests.hpp"
#include "ocifs/layer/metadata_budget.hpp"
#include "ocifs/layer/tar_entry.hpp"

namespace ocifs::layer {

// 56 bytes in memory (53 on disk); the path lives in the pool, the rest of what an entry may
// have in its EntryExtra.
struct IndexEntry {
  static constexpr std::uint32_t kNoExtra = UINT32_MAX;

  std::uint64_t data_offset = 0;
  std::uint64_t size = 0;  // logical size
  std::int64_t mtime_sec = 0;
  std::uint32_t mtime_nsec = 0;
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t path_offset = 0;   // into the string pool
  std::uint32_t extra = kNoExtra;  // into LayerIndex::extras, or none
  std::uint16_t path_size = 0;     // at most limits::kMaxPathBytes
  std::uint16_t mode = 0;          // 07777 bits
  EntryKind kind = EntryKind::regular;
};

// What only some entries have. 32 bytes.
struct EntryExtra {
  std::uint32_t link_offset = 0;  // into the string pool
  std::uint32_t link_size = 0;
  std::uint32_t dev_major = 0;
  std::uint32_t dev_minor = 0;
  std::uint32_t xattr_first = 0;   // into xattrs()
  std::uint32_t xattr_count = 0;
  std::uint32_t sparse_first = 0;  // into the sparse extents
  std::uint32_t sparse_count = 0;
};

struct XattrRef {
  std::uint32_t name_offset, name_size, value_offset, value_size;  // into the string pool
};

class LayerIndex {
 public:
  // Appends an entry. Its names, counts and sizes must be within util/limits.hpp (the tar walker
  // and the TOC parser see to that; entry_table.hpp counts them), which keeps every table's u32
  // offsets from overflowing.
  void add(const TarEntry& entry);

  std::size_t size() const { return entries_.size(); }
  std::span<const IndexEntry> entries() const { return entries_; }
  std::string_view path(const IndexEntry& e) const { return pool(e.path_offset, e.path_size); }
  std::string_view link_target(const IndexEntry& e) const {
    return e.extra == IndexEntry::kNoExtra ? std::string_view()
                                           : pool(extras_[e.extra].link_offset, extras_[e.extra].link_size);
  }
  std::uint32_t dev_major(const IndexEntry& e) const {
    return e.extra == IndexEntry::kNoExtra ? 0 : extras_[e.extra].dev_major;
  }
  std::uint32_t dev_minor(const IndexEntry& e) const {
    return e.extra == IndexEntry::kNoExtra ? 0 : extras_[e.extra].dev_minor;
  }
  std::span<const XattrRef> xattrs(const IndexEntry& e) const {
    if (e.extra == IndexEntry::kNoExtra) return {};
    return std::span(xattrs_).subspan(extras_[e.extra].xattr_first, extras_[e.extra].xattr_count);
  }
  std::string_view xattr_name(const XattrRef& x) const { return pool(x.name_offset, x.name_size); }
  std::string_view xattr_value(const XattrRef& x) const { return pool(x.value_offset, x.value_size); }
  std::span<const SparseExtent> sparse(const IndexEntry& e) const {
    if (e.extra == IndexEntry::kNoExtra) return {};
    return std::span(sparse_).subspan(extras_[e.extra].sparse_first, extras_[e.extra].sparse_count);
  }
  // The string pool: every path(), link_target() and xattr name and value is a view into it.
  std::string_view strings() const { return pool_; }
  // What this index holds against a MetadataBudget.
  MetadataUse use() const { return {entries_.size(), pool_.size(), xattrs_.size() + sparse_.size()}; }

  compress::SeekIndex& seek_index() { return seek_; }
  const compress::SeekIndex& seek_index() const { return seek_; }
  // sha256 per block of the raw blob, and of the decoded copy kept in the cache for zstd layers
  // that need one, recorded during the verified scan: reads check the blocks they touch.
  io::BlockDigests& blob_blocks() { return blob_blocks_; }
  const io::BlockDigests& blob_blocks() const { return blob_blocks_; }
  io::BlockDigests& decoded_blocks() { return decoded_blocks_; }
  const io::BlockDigests& decoded_blocks() const { return decoded_blocks_; }
  const std::string& digest() const { return digest_; }  // "sha256:<hex>" of the blob described
  void set_digest(std::string digest) { digest_ = std::move(digest); }

  // The on-disk form (byte table in layer_index.cpp): magic, format version, counts, records,
  // pool, seek index, and a sha256 of everything before it, handed to `out` in pieces of at
  // most 1 MiB. serialize() is the same in one string.
  using ByteSink = std::function<Result<void>(std::string_view)>;
  Result<void> write(const ByteSink& out) const;
  std::string serialize() const;
  // Reads the on-disk form from `file` in pieces. Anything that does not check out (wrong
  // magic/version/checksum, offsets outside the pool, counts the file cannot hold) is an error
  // and the caller rebuilds the index. The counts in its header are charged to `budget` (when
  // given; else checked against the limits alone) before anything is allocated: `layer_name`
  // names the layer in that error.
  static Result<LayerIndex> load(const io::BlobSource& file, MetadataBudget* budget = nullptr,
                                 std::string_view layer_name = "layer");
  static Result<LayerIndex> deserialize(std::string_view bytes);

  // sha256 of the entry, extra, xattr, sparse and name tables alone: two indexes of the same tar
  // agree on it whatever their seek index and block digests (a header walk against a verified
  // scan).
  std::array<std::uint8_t, 32> entries_digest() const;

 private:
  std::string_view pool(std::uint32_t offset, std::uint32_t size) const {
    return std::string_view(pool_).substr(offset, size);
  }
  class PieceReader;
  std::uint32_t intern(std::string_view s);
  // load() after the header: the 12 counts and sizes it gives, checked against the file.
  static Result<LayerIndex> read_body(PieceReader& in, const io::BlobSource& file,
                                      const std::uint64_t (&counts)[12]);
  // Entries, extras, xattrs, sparse extents and the pool, in their on-disk form.
  Result<void> write_tables(const ByteSink& out) const;

  std::vector<IndexEntry> entries_;
  std::vector<EntryExtra> extras_;
  std::vector<XattrRef> xattrs_;
  std::vector<SparseExtent> sparse_;
  std::string pool_;
  compress::SeekIndex seek_;
  io::BlockDigests blob_blocks_;
  io::BlockDigests decoded_blocks_;
  std::string digest_;
  // Pool offsets of xattr names added so far (few distinct ones per layer); used by add() only.
  std::unordered_map<std::string, std::uint32_t> xattr_names_;
};

}  // namespace ocifs::layer
