// LayerIndex and its on-disk form. All integers little-endian, no padding:
//
//   offset  size        field
//   0       8           magic "OCIFSIDX"
//   8       4           u32 format version (kFormatVersion)
//   12      4           u32 reserved, 0
//   16      8           u64 E: entry count
//   24      8           u64 X: xattr count
//   32      8           u64 S: sparse extent count
//   40      8           u64 P: string pool size
//   48      8           u64 K: seek index size
//   56      8           u64 D: digest size
//   64      8           u64 block size of the block digests (same for both tables)
//   72      8           u64 blob size covered by the blob block digests
//   80      8           u64 B: blob block digest count
//   88      8           u64 decoded size covered by the decoded block digests
//   96      8           u64 Z: decoded block digest count (0 unless a decoded copy is kept)
//   104     E * 81      entries, each:
//                         0  u64 data_offset    8  u64 size          16 i64 mtime_sec
//                         24 u32 mtime_nsec     28 u32 mode          32 u32 uid
//                         36 u32 gid            40 u32 path_offset   44 u32 path_size
//                         48 u32 link_offset    52 u32 link_size     56 u32 dev_major
//                         60 u32 dev_minor      64 u32 xattr_first   68 u32 xattr_count
//                         72 u32 sparse_first   76 u32 sparse_count  80 u8  kind (EntryKind)
//   …       X * 16      xattrs: u32 name_offset, u32 name_size, u32 value_offset, u32 value_size
//   …       S * 16      sparse extents: u64 offset, u64 length
//   …       P           string pool (paths, link targets, xattr names and values)
//   …       K           compress::SeekIndex::serialize()
//   …       D           digest "sha256:<hex>" of the blob described
//   …       B * 32      sha256 of each block of the blob (io::BlockDigests)
//   …       Z * 32      sha256 of each block of the decoded copy
//   …       32          sha256 of every byte before it
//
// Offsets into the pool and the xattr / extent tables are checked on load; anything that does
// not check out is an error and the caller rebuilds the index.
#include "ocifs/layer/layer_index.hpp"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <tuple>

#include "ocifs/util/sha256.hpp"

namespace ocifs::layer {

namespace {

constexpr std::string_view kMagic = "OCIFSIDX";
// 3: the embedded seek index holds ISA-L inflate states (seek index version 2).
// 4: Solaris 'X' extended headers are applied (a version 3 index skipped them as unknown entries
//    and kept the entries they describe with their short ustar names: such a tree was wrong).
constexpr std::uint32_t kFormatVersion = 4;
constexpr std::size_t kHeaderSize = 104;
constexpr std::size_t kBlockDigestSize = 32;
constexpr std::size_t kEntrySize = 81;
constexpr std::size_t kXattrSize = 16;
constexpr std::size_t kExtentSize = 16;
constexpr std::size_t kChecksumSize = 32;

template <class T>
void put(std::string& out, T value) {
  using U = std::make_unsigned_t<T>;
  auto u = static_cast<U>(value);
  for (std::size_t i = 0; i < sizeof(T); ++i) out += static_cast<char>((u >> (8 * i)) & 0xff);
}

template <class T>
T get(const char* p) {
  using U = std::make_unsigned_t<T>;
  U u = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i)
    u |= static_cast<U>(static_cast<unsigned char>(p[i])) << (8 * i);
  return static_cast<T>(u);
}

Error corrupt(std::string_view why) {
  return make_error(std::errc::invalid_argument, "cannot load layer index: {}", why);
}

bool in_range(std::uint64_t offset, std::uint64_t size, std::uint64_t limit) {
  return offset <= limit && size <= limit - offset;
}

}  // namespace

std::uint32_t LayerIndex::intern(std::string_view s) {
  if (s.empty()) return 0;
  if (pool_.size() + s.size() > std::numeric_limits<std::uint32_t>::max()) {
    // The scanner refuses layers whose names come near 4 GiB; reaching this is a bug.
    throw std::length_error("layer index string pool above 4 GiB");
  }
  auto offset = static_cast<std::uint32_t>(pool_.size());
  pool_.append(s);
  return offset;
}

void LayerIndex::add(const TarEntry& entry) {
  IndexEntry e;
  e.data_offset = entry.data_offset;
  e.size = entry.size;
  e.mtime_sec = entry.mtime_sec;
  e.mtime_nsec = entry.mtime_nsec;
  e.mode = entry.mode & 07777;
  e.uid = entry.uid;
  e.gid = entry.gid;
  e.path_offset = intern(entry.path);
  e.path_size = static_cast<std::uint32_t>(entry.path.size());
  e.link_offset = intern(entry.link_target);
  e.link_size = static_cast<std::uint32_t>(entry.link_target.size());
  e.dev_major = entry.dev_major;
  e.dev_minor = entry.dev_minor;
  e.xattr_first = static_cast<std::uint32_t>(xattrs_.size());
  e.xattr_count = static_cast<std::uint32_t>(entry.xattrs.size());
  for (const auto& x : entry.xattrs) {
    // Xattr names repeat across a layer ("security.capability", "user.*"): share them.
    std::uint32_t name_offset;
    if (auto it = xattr_names_.find(x.name); it != xattr_names_.end()) {
      name_offset = it->second;
    } else {
      name_offset = intern(x.name);
      xattr_names_.emplace(x.name, name_offset);
    }
    XattrRef ref{name_offset, static_cast<std::uint32_t>(x.name.size()), 0,
                 static_cast<std::uint32_t>(x.value.size())};
    ref.value_offset = intern(x.value);
    xattrs_.push_back(ref);
  }
  e.sparse_first = static_cast<std::uint32_t>(sparse_.size());
  e.sparse_count = static_cast<std::uint32_t>(entry.sparse.size());
  sparse_.insert(sparse_.end(), entry.sparse.begin(), entry.sparse.end());
  e.kind = entry.kind;
  entries_.push_back(e);
}

void LayerIndex::append_tables(std::string& out) const {
  for (const auto& e : entries_) {
    put(out, e.data_offset);
    put(out, e.size);
    put(out, e.mtime_sec);
    for (std::uint32_t v :
         {e.mtime_nsec, e.mode, e.uid, e.gid, e.path_offset, e.path_size, e.link_offset, e.link_size,
          e.dev_major, e.dev_minor, e.xattr_first, e.xattr_count, e.sparse_first, e.sparse_count}) {
      put(out, v);
    }
    put(out, static_cast<std::uint8_t>(e.kind));
  }
  for (const auto& x : xattrs_) {
    for (std::uint32_t v : {x.name_offset, x.name_size, x.value_offset, x.value_size}) put(out, v);
  }
  for (const auto& s : sparse_) {
    put(out, s.offset);
    put(out, s.length);
  }
  out.append(pool_);
}

std::array<std::uint8_t, 32> LayerIndex::entries_digest() const {
  std::string tables;
  for (std::uint64_t count : {entries_.size(), xattrs_.size(), sparse_.size(), pool_.size()}) put(tables, count);
  append_tables(tables);
  util::Sha256 sum;
  sum.update(std::string_view(tables));
  return sum.digest();
}

std::string LayerIndex::serialize() const {
  std::string seek = seek_.serialize();
  std::string out;
  out.reserve(kHeaderSize + entries_.size() * kEntrySize + xattrs_.size() * kXattrSize +
              sparse_.size() * kExtentSize + pool_.size() + seek.size() + digest_.size() + kChecksumSize);
  out.append(kMagic);
  put<std::uint32_t>(out, kFormatVersion);
  put<std::uint32_t>(out, 0);
  put<std::uint64_t>(out, entries_.size());
  put<std::uint64_t>(out, xattrs_.size());
  put<std::uint64_t>(out, sparse_.size());
  put<std::uint64_t>(out, pool_.size());
  put<std::uint64_t>(out, seek.size());
  put<std::uint64_t>(out, digest_.size());
  put<std::uint64_t>(out, blob_blocks_.block_size);
  put<std::uint64_t>(out, blob_blocks_.blob_size);
  put<std::uint64_t>(out, blob_blocks_.digests.size());
  put<std::uint64_t>(out, decoded_blocks_.blob_size);
  put<std::uint64_t>(out, decoded_blocks_.digests.size());
  append_tables(out);
  out.append(seek);
  out.append(digest_);
  for (const auto* table : {&blob_blocks_, &decoded_blocks_}) {
    for (const auto& d : table->digests) out.append(reinterpret_cast<const char*>(d.data()), d.size());
  }
  auto sum = util::Sha256();
  sum.update(std::string_view(out));
  auto digest = sum.digest();
  out.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  return out;
}

Result<LayerIndex> LayerIndex::deserialize(std::string_view bytes) {
  if (bytes.size() < kHeaderSize + kChecksumSize)
    return corrupt(fmt::format("{} bytes is too short", bytes.size()));
  if (bytes.substr(0, kMagic.size()) != kMagic) return corrupt("not a layer index (bad magic)");
  const char* p = bytes.data();
  auto version = get<std::uint32_t>(p + 8);
  if (version != kFormatVersion) {
    return corrupt(fmt::format("format version {} is not the supported version {}", version, kFormatVersion));
  }
  if (get<std::uint32_t>(p + 12) != 0) return corrupt("reserved header field is not zero");
  // Checksum first: everything after it may then be trusted not to be random damage (but is
  // still bounds-checked, the file may have been written by a buggy or hostile program).
  std::string_view body = bytes.substr(0, bytes.size() - kChecksumSize);
  auto sum = util::Sha256();
  sum.update(body);
  auto digest = sum.digest();
  if (std::memcmp(digest.data(), bytes.data() + body.size(), kChecksumSize) != 0)
    return corrupt("checksum mismatch");

  std::uint64_t counts[6];
  for (int i = 0; i < 6; ++i) counts[i] = get<std::uint64_t>(p + 16 + 8 * i);
  auto [n_entries, n_xattrs, n_sparse, pool_size, seek_size, digest_size] =
      std::tuple(counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]);
  // Each count is bounded by the body size before multiplying, so nothing overflows.
  std::uint64_t limit = body.size();
  auto block_size = get<std::uint64_t>(p + 64);
  auto blob_size = get<std::uint64_t>(p + 72);
  auto n_blob_blocks = get<std::uint64_t>(p + 80);
  auto decoded_size = get<std::uint64_t>(p + 88);
  auto n_decoded_blocks = get<std::uint64_t>(p + 96);
  if (n_entries > limit || n_xattrs > limit || n_sparse > limit || pool_size > limit || seek_size > limit ||
      digest_size > limit || n_blob_blocks > limit || n_decoded_blocks > limit) {
    return corrupt("section sizes exceed the file");
  }
  std::uint64_t total = kHeaderSize + n_entries * kEntrySize + n_xattrs * kXattrSize +
                        n_sparse * kExtentSize + pool_size + seek_size + digest_size +
                        (n_blob_blocks + n_decoded_blocks) * kBlockDigestSize;
  if (total != body.size()) {
    return corrupt(fmt::format("section sizes add up to {} bytes, the file has {}", total, body.size()));
  }
  if (pool_size > std::numeric_limits<std::uint32_t>::max() ||
      n_xattrs > std::numeric_limits<std::uint32_t>::max() ||
      n_sparse > std::numeric_limits<std::uint32_t>::max()) {
    return corrupt("section too large");
  }

  LayerIndex index;
  const char* q = p + kHeaderSize;
  index.entries_.reserve(n_entries);
  for (std::uint64_t i = 0; i < n_entries; ++i, q += kEntrySize) {
    IndexEntry e;
    e.data_offset = get<std::uint64_t>(q);
    e.size = get<std::uint64_t>(q + 8);
    e.mtime_sec = get<std::int64_t>(q + 16);
    std::uint32_t* fields[] = {&e.mtime_nsec,   &e.mode,        &e.uid,         &e.gid,
                               &e.path_offset,  &e.path_size,   &e.link_offset, &e.link_size,
                               &e.dev_major,    &e.dev_minor,   &e.xattr_first, &e.xattr_count,
                               &e.sparse_first, &e.sparse_count};
    for (std::size_t f = 0; f < std::size(fields); ++f) *fields[f] = get<std::uint32_t>(q + 24 + 4 * f);
    auto kind = static_cast<std::uint8_t>(q[80]);
    if (kind > static_cast<std::uint8_t>(EntryKind::fifo))
      return corrupt(fmt::format("entry {}: bad kind {}", i, kind));
    e.kind = static_cast<EntryKind>(kind);
    if (e.mode > 07777 || e.mtime_nsec >= 1'000'000'000)
      return corrupt(fmt::format("entry {}: bad mode or mtime", i));
    if (!in_range(e.path_offset, e.path_size, pool_size) ||
        !in_range(e.link_offset, e.link_size, pool_size) ||
        !in_range(e.xattr_first, e.xattr_count, n_xattrs) ||
        !in_range(e.sparse_first, e.sparse_count, n_sparse)) {
      return corrupt(fmt::format("entry {}: reference out of bounds", i));
    }
    index.entries_.push_back(e);
  }
  index.xattrs_.reserve(n_xattrs);
  for (std::uint64_t i = 0; i < n_xattrs; ++i, q += kXattrSize) {
    XattrRef x{get<std::uint32_t>(q), get<std::uint32_t>(q + 4), get<std::uint32_t>(q + 8),
               get<std::uint32_t>(q + 12)};
    if (!in_range(x.name_offset, x.name_size, pool_size) ||
        !in_range(x.value_offset, x.value_size, pool_size)) {
      return corrupt(fmt::format("xattr {}: reference out of bounds", i));
    }
    index.xattrs_.push_back(x);
  }
  index.sparse_.reserve(n_sparse);
  for (std::uint64_t i = 0; i < n_sparse; ++i, q += kExtentSize) {
    index.sparse_.push_back({get<std::uint64_t>(q), get<std::uint64_t>(q + 8)});
  }
  index.pool_.assign(q, pool_size);
  q += pool_size;
  auto seek = compress::SeekIndex::deserialize(std::string_view(q, seek_size));
  if (!seek) return std::move(seek).error().with_context("cannot load layer index");
  index.seek_ = std::move(seek).value();
  q += seek_size;
  index.digest_.assign(q, digest_size);
  q += digest_size;
  auto read_table = [&](io::BlockDigests& table, std::uint64_t size, std::uint64_t count) {
    table.block_size = block_size;
    table.blob_size = size;
    table.digests.resize(count);
    for (auto& d : table.digests) {
      std::memcpy(d.data(), q, kBlockDigestSize);
      q += kBlockDigestSize;
    }
  };
  read_table(index.blob_blocks_, blob_size, n_blob_blocks);
  read_table(index.decoded_blocks_, decoded_size, n_decoded_blocks);
  // Whether they cover the actual blob is checked when it is opened (layer_scanner.cpp).
  if (!index.blob_blocks_.covers(blob_size) ||
      (n_decoded_blocks > 0 && !index.decoded_blocks_.covers(decoded_size))) {
    return corrupt("block digest tables are inconsistent");
  }
  return index;
}

}  // namespace ocifs::layer
