// LayerIndex: every entry of one layer with its data offset in the decoded stream, plus the seek
// index for random access, in a compact form (fixed records + one string pool). Built once by
// scanning the blob, persisted in the cache by the layer digest, reloaded on the next mount.
// Immutable once built: safe to read from many threads.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ocifs/compress/seek_index.hpp"
#include "ocifs/io/block_digests.hpp"
#include "ocifs/layer/tar_entry.hpp"

namespace ocifs::layer {

// 88 bytes in memory (81 on disk); the path, link target and xattrs live in the pool.
struct IndexEntry {
  std::uint64_t data_offset = 0;
  std::uint64_t size = 0;       // logical size
  std::int64_t mtime_sec = 0;
  std::uint32_t mtime_nsec = 0;
  std::uint32_t mode = 0;       // 07777 bits
  std::uint32_t uid = 0;
  std::uint32_t gid = 0;
  std::uint32_t path_offset = 0;  // into the string pool
  std::uint32_t path_size = 0;
  std::uint32_t link_offset = 0;
  std::uint32_t link_size = 0;
  std::uint32_t dev_major = 0;
  std::uint32_t dev_minor = 0;
  std::uint32_t xattr_first = 0;   // into xattrs()
  std::uint32_t xattr_count = 0;
  std::uint32_t sparse_first = 0;  // into sparse extents
  std::uint32_t sparse_count = 0;
  EntryKind kind = EntryKind::regular;
};

struct XattrRef {
  std::uint32_t name_offset, name_size, value_offset, value_size;  // into the string pool
};

class LayerIndex {
 public:
  void add(const TarEntry& entry);

  std::size_t size() const { return entries_.size(); }
  std::span<const IndexEntry> entries() const { return entries_; }
  std::string_view path(const IndexEntry& e) const { return pool(e.path_offset, e.path_size); }
  std::string_view link_target(const IndexEntry& e) const { return pool(e.link_offset, e.link_size); }
  std::span<const XattrRef> xattrs(const IndexEntry& e) const {
    return std::span(xattrs_).subspan(e.xattr_first, e.xattr_count);
  }
  std::string_view xattr_name(const XattrRef& x) const { return pool(x.name_offset, x.name_size); }
  std::string_view xattr_value(const XattrRef& x) const { return pool(x.value_offset, x.value_size); }
  std::span<const SparseExtent> sparse(const IndexEntry& e) const {
    return std::span(sparse_).subspan(e.sparse_first, e.sparse_count);
  }

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
  // pool, seek index, and a sha256 of everything before it. deserialize() rejects anything that
  // does not check out (wrong magic/version/checksum, offsets outside the pool) so the caller
  // rebuilds it.
  std::string serialize() const;
  static Result<LayerIndex> deserialize(std::string_view bytes);

  // sha256 of the entry, xattr, sparse and name tables alone: two indexes of the same tar agree
  // on it whatever their seek index and block digests (a header walk against a verified scan).
  std::array<std::uint8_t, 32> entries_digest() const;

 private:
  std::string_view pool(std::uint32_t offset, std::uint32_t size) const {
    return std::string_view(pool_).substr(offset, size);
  }
  std::uint32_t intern(std::string_view s);
  void append_tables(std::string& out) const;  // entries, xattrs, sparse extents, pool

  std::vector<IndexEntry> entries_;
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
