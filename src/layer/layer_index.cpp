// LayerIndex and its on-disk form. All integers little-endian, no padding:
//
//   offset  size        field
//   0       8           magic "OCIFSIDX"
//   8       4           u32 format version (kFormatVersion)
//   12      4           u32 reserved, 0
//   16      8           u64 E: entry count
//   24      8           u64 W: extra count
//   32      8           u64 X: xattr count
//   40      8           u64 S: sparse extent count
//   48      8           u64 P: string pool size
//   56      8           u64 K: seek index size
//   64      8           u64 D: digest size
//   72      8           u64 block size of the block digests (same for both tables)
//   80      8           u64 blob size covered by the blob block digests
//   88      8           u64 B: blob block digest count
//   96      8           u64 decoded size covered by the decoded block digests
//   104     8           u64 Z: decoded block digest count (0 unless a decoded copy is kept)
//   112     E * 53      entries, each:
//                         0  u64 data_offset    8  u64 size          16 i64 mtime_sec
//                         24 u32 mtime_nsec     28 u32 uid           32 u32 gid
//                         36 u32 path_offset    40 u32 extra (0xffffffff: none)
//                         44 u16 path_size      46 u16 mode          48 u8  kind (EntryKind)
//                         49 u32 reserved, 0
//   …       W * 32      extras: u32 link_offset, link_size, dev_major, dev_minor, xattr_first,
//                       xattr_count, sparse_first, sparse_count
//   …       X * 16      xattrs: u32 name_offset, u32 name_size, u32 value_offset, u32 value_size
//   …       S * 16      sparse extents: u64 offset, u64 length
//   …       P           string pool (paths, link targets, xattr names and values)
//   …       K           compress::SeekIndex::serialize()
//   …       D           digest "sha256:<hex>" of the blob described
//   …       B * 32      sha256 of each block of the blob (io::BlockDigests)
//   …       Z * 32      sha256 of each block of the decoded copy
//   …       32          sha256 of every byte before it
//
// Offsets into the pool and the tables are checked on load; anything that does not check out is
// an error and the caller rebuilds the index. Version 4 moved what few entries have (links,
// devices, xattrs, sparse maps) out of the entry records: 53 bytes an entry instead of 81.
#include "ocifs/layer/layer_index.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <tuple>

#include "ocifs/io/blob_source.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/path.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::layer {

namespace {

constexpr std::string_view kMagic = "OCIFSIDX";
// 3: the embedded seek index holds ISA-L inflate states (seek index version 2).
// 4: Solaris 'X' extended headers are applied (a version 3 index skipped them as unknown entries
//    and kept the entries they describe with their short ustar names: such a tree was wrong).
// 5: entry records of 53 bytes with the rare fields in extras (4 and before: 81-byte records).
// 6: a sparse file that is all hole keeps an empty extent (5 recorded none, and read such a file
//    as plain data: the bytes that follow it in the tar).
constexpr std::uint32_t kFormatVersion = 6;
constexpr std::size_t kHeaderSize = 112;
constexpr std::size_t kBlockDigestSize = 32;
constexpr std::size_t kEntrySize = 53;
constexpr std::size_t kExtraSize = 32;
constexpr std::size_t kXattrSize = 16;
constexpr std::size_t kExtentSize = 16;
constexpr std::size_t kChecksumSize = 32;
// Writes and reads go in pieces of this size: large enough that the per-piece cost vanishes,
// small enough that no second copy of a 200 MB index is ever held.
constexpr std::size_t kPiece = 1u << 20;

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

// Collects output into pieces of kPiece bytes for a sink.
class PieceWriter {
 public:
  explicit PieceWriter(const LayerIndex::ByteSink& sink) : sink_(sink) { buf_.reserve(kPiece); }
  std::string& buffer() { return buf_; }
  // Passes the buffer on once it is full (or always, with `force`).
  Result<void> flush(bool force = false) {
    if (buf_.empty() || (!force && buf_.size() < kPiece)) return util::success();
    OCIFS_TRY(sink_(buf_));
    buf_.clear();
    return util::success();
  }
  // Large byte runs (the pool) go straight through, a piece at a time.
  Result<void> append(std::string_view data) {
    OCIFS_TRY(flush(true));
    for (std::size_t at = 0; at < data.size(); at += kPiece) OCIFS_TRY(sink_(data.substr(at, kPiece)));
    return util::success();
  }

 private:
  const LayerIndex::ByteSink& sink_;
  std::string buf_;
};

}  // namespace

// Reads a source front to back in pieces, hashing what it hands out.
class LayerIndex::PieceReader {
 public:
  explicit PieceReader(const io::BlobSource& file) : file_(file) {}
  std::uint64_t position() const { return position_; }
  // The next `n` (≤ kPiece) bytes, valid until the next call.
  Result<std::string_view> next(std::size_t n) {
    buf_.resize(n);
    OCIFS_TRY(read_into(std::as_writable_bytes(std::span(buf_))));
    return std::string_view(buf_);
  }
  Result<void> read_into(std::span<std::byte> out) {
    for (std::size_t at = 0; at < out.size(); at += kPiece) {
      auto piece = out.subspan(at, std::min(kPiece, out.size() - at));
      OCIFS_TRY(file_.read_exact(position_, piece));
      sum_.update(piece);
      position_ += piece.size();
    }
    return util::success();
  }
  std::array<std::uint8_t, 32> digest() { return sum_.digest(); }

 private:
  const io::BlobSource& file_;
  std::string buf_;
  util::Sha256 sum_;
  std::uint64_t position_ = 0;
};

std::uint32_t LayerIndex::intern(std::string_view s) {
  if (s.empty()) return 0;
  if (pool_.size() + s.size() > std::numeric_limits<std::uint32_t>::max()) {
    // MetadataBudget keeps a layer's names far below 4 GiB; reaching this is a bug.
    throw std::length_error("layer index string pool above 4 GiB");
  }
  auto offset = static_cast<std::uint32_t>(pool_.size());
  pool_.append(s);
  return offset;
}

void LayerIndex::add(const TarEntry& entry) {
  if (entry.path.size() > limits::kMaxPathBytes || entries_.size() >= IndexEntry::kNoExtra) {
    throw std::length_error("layer index entry beyond the limits");  // the callers check them: a bug
  }
  IndexEntry e;
  e.data_offset = entry.data_offset;
  e.size = entry.size;
  e.mtime_sec = entry.mtime_sec;
  e.mtime_nsec = entry.mtime_nsec;
  e.mode = static_cast<std::uint16_t>(entry.mode & 07777);
  e.uid = entry.uid;
  e.gid = entry.gid;
  e.path_offset = intern(entry.path);
  e.path_size = static_cast<std::uint16_t>(entry.path.size());
  e.kind = entry.kind;
  if (!entry.link_target.empty() || entry.dev_major != 0 || entry.dev_minor != 0 || !entry.xattrs.empty() ||
      !entry.sparse.empty()) {
    EntryExtra x;
    x.link_offset = intern(entry.link_target);
    x.link_size = static_cast<std::uint32_t>(entry.link_target.size());
    x.dev_major = entry.dev_major;
    x.dev_minor = entry.dev_minor;
    x.xattr_first = static_cast<std::uint32_t>(xattrs_.size());
    x.xattr_count = static_cast<std::uint32_t>(entry.xattrs.size());
    for (const auto& xattr : entry.xattrs) {
      // Xattr names repeat across a layer ("security.capability", "user.*"): share them.
      std::uint32_t name_offset;
      if (auto it = xattr_names_.find(xattr.name); it != xattr_names_.end()) {
        name_offset = it->second;
      } else {
        name_offset = intern(xattr.name);
        xattr_names_.emplace(xattr.name, name_offset);
      }
      XattrRef ref{name_offset, static_cast<std::uint32_t>(xattr.name.size()), 0,
                   static_cast<std::uint32_t>(xattr.value.size())};
      ref.value_offset = intern(xattr.value);
      xattrs_.push_back(ref);
    }
    x.sparse_first = static_cast<std::uint32_t>(sparse_.size());
    x.sparse_count = static_cast<std::uint32_t>(entry.sparse.size());
    sparse_.insert(sparse_.end(), entry.sparse.begin(), entry.sparse.end());
    e.extra = static_cast<std::uint32_t>(extras_.size());
    extras_.push_back(x);
  }
  entries_.push_back(e);
}

Result<void> LayerIndex::write_tables(const ByteSink& sink) const {
  PieceWriter out(sink);
  std::string& b = out.buffer();
  for (const auto& e : entries_) {
    put(b, e.data_offset);
    put(b, e.size);
    put(b, e.mtime_sec);
    for (std::uint32_t v : {e.mtime_nsec, e.uid, e.gid, e.path_offset, e.extra}) put(b, v);
    put(b, e.path_size);
    put(b, e.mode);
    put(b, static_cast<std::uint8_t>(e.kind));
    put<std::uint32_t>(b, 0);
    OCIFS_TRY(out.flush());
  }
  for (const auto& x : extras_) {
    for (std::uint32_t v : {x.link_offset, x.link_size, x.dev_major, x.dev_minor, x.xattr_first,
                            x.xattr_count, x.sparse_first, x.sparse_count}) {
      put(b, v);
    }
    OCIFS_TRY(out.flush());
  }
  for (const auto& x : xattrs_) {
    for (std::uint32_t v : {x.name_offset, x.name_size, x.value_offset, x.value_size}) put(b, v);
    OCIFS_TRY(out.flush());
  }
  for (const auto& s : sparse_) {
    put(b, s.offset);
    put(b, s.length);
    OCIFS_TRY(out.flush());
  }
  OCIFS_TRY(out.append(pool_));
  return out.flush(true);
}

std::array<std::uint8_t, 32> LayerIndex::entries_digest() const {
  util::Sha256 sum;
  std::string counts;
  for (std::uint64_t n : {entries_.size(), extras_.size(), xattrs_.size(), sparse_.size(), pool_.size()}) {
    put(counts, n);
  }
  sum.update(std::string_view(counts));
  // Hashing cannot fail.
  (void)write_tables([&](std::string_view piece) -> Result<void> {
    sum.update(piece);
    return util::success();
  });
  return sum.digest();
}

Result<void> LayerIndex::write(const ByteSink& sink) const {
  util::Sha256 sum;
  auto hashed = [&](std::string_view piece) -> Result<void> {
    sum.update(piece);
    return sink(piece);
  };
  std::string seek = seek_.serialize();
  std::string header;
  header.append(kMagic);
  put<std::uint32_t>(header, kFormatVersion);
  put<std::uint32_t>(header, 0);
  for (std::uint64_t n :
       {std::uint64_t{entries_.size()}, std::uint64_t{extras_.size()}, std::uint64_t{xattrs_.size()},
        std::uint64_t{sparse_.size()}, std::uint64_t{pool_.size()}, std::uint64_t{seek.size()},
        std::uint64_t{digest_.size()}, blob_blocks_.block_size, blob_blocks_.blob_size,
        std::uint64_t{blob_blocks_.digests.size()}, decoded_blocks_.blob_size,
        std::uint64_t{decoded_blocks_.digests.size()}}) {
    put<std::uint64_t>(header, n);
  }
  OCIFS_TRY(hashed(header));
  OCIFS_TRY(write_tables(hashed));
  OCIFS_TRY(hashed(seek));
  OCIFS_TRY(hashed(digest_));
  std::string digests;
  for (const auto* table : {&blob_blocks_, &decoded_blocks_}) {
    for (const auto& d : table->digests) {
      digests.append(reinterpret_cast<const char*>(d.data()), d.size());
      if (digests.size() >= kPiece) {
        OCIFS_TRY(hashed(digests));
        digests.clear();
      }
    }
  }
  if (!digests.empty()) OCIFS_TRY(hashed(digests));
  auto digest = sum.digest();
  return sink(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::string LayerIndex::serialize() const {
  std::string out;
  // Appending to a string cannot fail.
  (void)write([&](std::string_view piece) -> Result<void> {
    out.append(piece);
    return util::success();
  });
  return out;
}

Result<LayerIndex> LayerIndex::deserialize(std::string_view bytes) {
  return load(io::MemorySource(std::string(bytes), "layer index"));
}

Result<LayerIndex> LayerIndex::load(const io::BlobSource& file, MetadataBudget* budget,
                                    std::string_view layer_name) {
  const std::uint64_t file_size = file.size();
  if (file_size < kHeaderSize + kChecksumSize)
    return corrupt(fmt::format("{} bytes is too short", file_size));
  PieceReader in(file);
  OCIFS_ASSIGN(std::string_view header, in.next(kHeaderSize));
  if (header.substr(0, kMagic.size()) != kMagic) return corrupt("not a layer index (bad magic)");
  const char* p = header.data();
  auto version = get<std::uint32_t>(p + 8);
  if (version != kFormatVersion) {
    return corrupt(fmt::format("format version {} is not the supported version {}", version, kFormatVersion));
  }
  if (get<std::uint32_t>(p + 12) != 0) return corrupt("reserved header field is not zero");
  std::uint64_t c[12];
  for (int i = 0; i < 12; ++i) c[i] = get<std::uint64_t>(p + 16 + 8 * i);
  const auto [n_entries, n_extras, n_xattrs, n_sparse, pool_size, seek_size, digest_size] =
      std::tuple(c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
  const auto [block_size, blob_size, n_blob_blocks, decoded_size, n_decoded_blocks] =
      std::tuple(c[7], c[8], c[9], c[10], c[11]);
  // Each count is bounded by the file size before multiplying, so nothing overflows; the checksum
  // is only known at the end, so everything is bounds-checked as it is read.
  const std::uint64_t body = file_size - kChecksumSize;
  for (std::uint64_t n : {n_entries, n_extras, n_xattrs, n_sparse, pool_size, seek_size, digest_size,
                          n_blob_blocks, n_decoded_blocks}) {
    if (n > body) return corrupt("section sizes exceed the file");
  }
  const std::uint64_t total = kHeaderSize + n_entries * kEntrySize + n_extras * kExtraSize +
                              n_xattrs * kXattrSize + n_sparse * kExtentSize + pool_size + seek_size +
                              digest_size + (n_blob_blocks + n_decoded_blocks) * kBlockDigestSize;
  if (total != body) {
    return corrupt(fmt::format("section sizes add up to {} bytes, the file has {}", total, body));
  }
  if (pool_size > std::numeric_limits<std::uint32_t>::max() || n_entries >= IndexEntry::kNoExtra ||
      n_extras > n_entries || n_xattrs > std::numeric_limits<std::uint32_t>::max() ||
      n_sparse > std::numeric_limits<std::uint32_t>::max()) {
    return corrupt("section too large");
  }
  // What the index will hold is known now: charged before anything is allocated.
  const MetadataUse use{n_entries, pool_size, n_xattrs + n_sparse};
  if (!budget) {
    OCIFS_TRY(MetadataBudget::check(use, layer_name, [] { return std::string("its stored index"); }));
    return read_body(in, file, c);
  }
  OCIFS_TRY(budget->charge(use, layer_name, [] { return std::string("its stored index"); }));
  auto loaded = read_body(in, file, c);
  if (!loaded) budget->release(use);  // the caller rebuilds it, charging what it finds then
  return loaded;
}

Result<LayerIndex> LayerIndex::read_body(PieceReader& in, const io::BlobSource& file,
                                         const std::uint64_t (&c)[12]) {
  const auto [n_entries, n_extras, n_xattrs, n_sparse, pool_size, seek_size, digest_size] =
      std::tuple(c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
  const auto [block_size, blob_size, n_blob_blocks, decoded_size, n_decoded_blocks] =
      std::tuple(c[7], c[8], c[9], c[10], c[11]);

  LayerIndex index;
  index.entries_.reserve(n_entries);
  const std::uint64_t per_piece = kPiece / kEntrySize;
  for (std::uint64_t i = 0; i < n_entries;) {
    const std::uint64_t n = std::min(per_piece, n_entries - i);
    OCIFS_ASSIGN(std::string_view piece, in.next(static_cast<std::size_t>(n * kEntrySize)));
    for (const char* q = piece.data(); q < piece.data() + piece.size(); q += kEntrySize, ++i) {
      IndexEntry e;
      e.data_offset = get<std::uint64_t>(q);
      e.size = get<std::uint64_t>(q + 8);
      e.mtime_sec = get<std::int64_t>(q + 16);
      e.mtime_nsec = get<std::uint32_t>(q + 24);
      e.uid = get<std::uint32_t>(q + 28);
      e.gid = get<std::uint32_t>(q + 32);
      e.path_offset = get<std::uint32_t>(q + 36);
      e.extra = get<std::uint32_t>(q + 40);
      e.path_size = get<std::uint16_t>(q + 44);
      e.mode = get<std::uint16_t>(q + 46);
      auto kind = static_cast<std::uint8_t>(q[48]);
      if (kind > static_cast<std::uint8_t>(EntryKind::fifo))
        return corrupt(fmt::format("entry {}: bad kind {}", i, kind));
      e.kind = static_cast<EntryKind>(kind);
      if (e.mode > 07777 || e.mtime_nsec >= 1'000'000'000 || get<std::uint32_t>(q + 49) != 0) {
        return corrupt(fmt::format("entry {}: bad mode, mtime or reserved field", i));
      }
      if (!in_range(e.path_offset, e.path_size, pool_size) || e.path_size > limits::kMaxPathBytes ||
          (e.extra != IndexEntry::kNoExtra && e.extra >= n_extras) ||
          e.data_offset > limits::kMaxDecodedLayerBytes || e.size > limits::kMaxFileBytes) {
        return corrupt(fmt::format("entry {}: reference or size out of bounds", i));
      }
      index.entries_.push_back(e);
    }
  }
  index.extras_.reserve(n_extras);
  for (std::uint64_t i = 0; i < n_extras; ++i) {
    OCIFS_ASSIGN(std::string_view q, in.next(kExtraSize));
    EntryExtra x{get<std::uint32_t>(q.data()),      get<std::uint32_t>(q.data() + 4),
                 get<std::uint32_t>(q.data() + 8),  get<std::uint32_t>(q.data() + 12),
                 get<std::uint32_t>(q.data() + 16), get<std::uint32_t>(q.data() + 20),
                 get<std::uint32_t>(q.data() + 24), get<std::uint32_t>(q.data() + 28)};
    if (!in_range(x.link_offset, x.link_size, pool_size) || x.link_size > limits::kMaxPathBytes ||
        !in_range(x.xattr_first, x.xattr_count, n_xattrs) ||
        !in_range(x.sparse_first, x.sparse_count, n_sparse)) {
      return corrupt(fmt::format("extra {}: reference out of bounds", i));
    }
    index.extras_.push_back(x);
  }
  index.xattrs_.reserve(n_xattrs);
  for (std::uint64_t i = 0; i < n_xattrs; ++i) {
    OCIFS_ASSIGN(std::string_view q, in.next(kXattrSize));
    XattrRef x{get<std::uint32_t>(q.data()), get<std::uint32_t>(q.data() + 4),
               get<std::uint32_t>(q.data() + 8), get<std::uint32_t>(q.data() + 12)};
    if (!in_range(x.name_offset, x.name_size, pool_size) ||
        !in_range(x.value_offset, x.value_size, pool_size)) {
      return corrupt(fmt::format("xattr {}: reference out of bounds", i));
    }
    index.xattrs_.push_back(x);
  }
  index.sparse_.reserve(n_sparse);
  for (std::uint64_t i = 0; i < n_sparse; ++i) {
    OCIFS_ASSIGN(std::string_view q, in.next(kExtentSize));
    index.sparse_.push_back({get<std::uint64_t>(q.data()), get<std::uint64_t>(q.data() + 8)});
  }
  index.pool_.resize(pool_size);
  OCIFS_TRY(in.read_into(std::as_writable_bytes(std::span(index.pool_))));
  {
    std::string seek(seek_size, '\0');
    OCIFS_TRY(in.read_into(std::as_writable_bytes(std::span(seek))));
    auto parsed = compress::SeekIndex::deserialize(seek);
    if (!parsed) return std::move(parsed).error().with_context("cannot load layer index");
    index.seek_ = std::move(parsed).value();
  }
  index.digest_.resize(digest_size);
  OCIFS_TRY(in.read_into(std::as_writable_bytes(std::span(index.digest_))));
  // block_size by init-capture: clang before 16 cannot capture a structured binding.
  auto read_table = [&, block_size = block_size](io::BlockDigests& table, std::uint64_t size,
                                                 std::uint64_t count) -> Result<void> {
    table.block_size = block_size;
    table.blob_size = size;
    table.digests.resize(count);
    return in.read_into(std::as_writable_bytes(std::span(table.digests)));
  };
  OCIFS_TRY(read_table(index.blob_blocks_, blob_size, n_blob_blocks));
  OCIFS_TRY(read_table(index.decoded_blocks_, decoded_size, n_decoded_blocks));
  std::array<std::byte, kChecksumSize> stored{};
  OCIFS_TRY(file.read_exact(in.position(), stored));
  if (std::memcmp(in.digest().data(), stored.data(), kChecksumSize) != 0) return corrupt("checksum mismatch");
  // The scan stores paths and hard link targets in normal form only (util/path.hpp): an index
  // naming anything else ("../x", "a//b") is not one ocifs wrote. Refused like damage (the layer
  // is scanned again) rather than handed to the tree.
  for (std::size_t i = 0; i < index.entries_.size(); ++i) {
    const auto& e = index.entries_[i];
    for (std::string_view path : {index.path(e), e.kind == EntryKind::hardlink ? index.link_target(e) : ""}) {
      auto normal = util::normalise_path(path);
      if (!normal || *normal != path) return corrupt(fmt::format("entry {}: a path not in normal form", i));
    }
  }
  // Whether they cover the actual blob is checked when it is opened (layer_scanner.cpp).
  if (!index.blob_blocks_.covers(blob_size) ||
      (n_decoded_blocks > 0 && !index.decoded_blocks_.covers(decoded_size))) {
    return corrupt("block digest tables are inconsistent");
  }
  return index;
}

}  // namespace ocifs::layer
