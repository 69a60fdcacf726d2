#include <archive.h>
#include <archive_entry.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <vector>

#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/layer/layer_index.hpp"
#include "ocifs/layer/tar_walker.hpp"
#include "ocifs/util/sha256.hpp"

using namespace ocifs;
using layer::EntryKind;
using layer::LayerIndex;
using layer::TarEntry;

namespace {

la_ssize_t append_cb(struct archive*, void* data, const void* buf, size_t n) {
  static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// A gzipped PAX tar with every kind of entry, xattrs and a sparse file.
std::string make_tar_gz() {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax(a);
  archive_write_add_filter_gzip(a);
  REQUIRE(archive_write_open(a, &out, nullptr, append_cb, nullptr) == ARCHIVE_OK);
  auto add = [&](const char* path, int type, std::string content, auto&& extra) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_uid(e, 1000);
    archive_entry_set_gid(e, 100);
    archive_entry_set_mtime(e, 1700000000, 250000000);
    archive_entry_set_size(e, type == AE_IFREG ? static_cast<la_int64_t>(content.size()) : 0);
    extra(e);
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    if (type == AE_IFREG && !content.empty()) archive_write_data(a, content.data(), content.size());
    archive_entry_free(e);
  };
  auto none = [](struct archive_entry*) {};
  add("etc", AE_IFDIR, "", none);
  std::string big;
  for (int i = 0; i < 200000; ++i) big += std::to_string(i * 7919 % 100003);
  add("etc/big", AE_IFREG, big, none);
  add("bin/ping", AE_IFREG, "ping", [](struct archive_entry* e) {
    archive_entry_set_perm(e, 04755);
    archive_entry_xattr_add_entry(e, "security.capability", "\0\0\0\2 \0\0\0", 8);
    archive_entry_xattr_add_entry(e, "user.x", "1", 1);
  });
  add("bin/ping6", AE_IFREG, "", [](struct archive_entry* e) {
    archive_entry_set_hardlink(e, "bin/ping");
    archive_entry_xattr_add_entry(e, "security.capability", "\0\1", 2);
  });
  add("lib", AE_IFLNK, "", [](struct archive_entry* e) { archive_entry_set_symlink(e, "usr/lib"); });
  add("dev/tty", AE_IFCHR, "", [](struct archive_entry* e) {
    archive_entry_set_rdevmajor(e, 5);
    archive_entry_set_rdevminor(e, 0);
  });
  add("dev/loop0", AE_IFBLK, "", [](struct archive_entry* e) {
    archive_entry_set_rdevmajor(e, 7);
    archive_entry_set_rdevminor(e, 1);
  });
  add("fifo", AE_IFIFO, "", none);
  std::string sparse(200000, '\0');
  sparse.replace(0, 10, "0123456789");
  sparse.replace(150000, 10, "abcdefghij");
  add("sparse", AE_IFREG, sparse, [](struct archive_entry* e) {
    archive_entry_sparse_add_entry(e, 0, 4096);
    archive_entry_sparse_add_entry(e, 147456, 8192);
  });
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

struct Built {
  LayerIndex index;
  std::vector<TarEntry> entries;
};

Built build_index() {
  std::string gz = make_tar_gz();
  auto blob = std::make_shared<io::MemorySource>(gz, "test.tar.gz");
  compress::ScanOptions options;
  options.gzip_span = 64 << 10;  // several checkpoints
  auto decoder = compress::make_stream_decoder(compress::Encoding::gzip, blob, options);
  REQUIRE(decoder);
  layer::TarWalker walker(**decoder, "layer test");
  Built b;
  for (;;) {
    auto e = walker.next();
    REQUIRE(e);
    if (!*e) break;
    b.index.add(**e);
    b.entries.push_back(std::move(**e));
  }
  auto seek = (*decoder)->finish();
  REQUIRE(seek);
  b.index.seek_index() = std::move(*seek);
  b.index.set_digest("sha256:" + (*decoder)->compressed_sha256());
  io::BlockHasher blocks(4096);
  blocks.update(std::as_bytes(std::span(gz)));
  b.index.blob_blocks() = blocks.finish();
  return b;
}

void check_same(const LayerIndex& a, const LayerIndex& b) {
  REQUIRE(a.size() == b.size());
  CHECK(a.digest() == b.digest());
  CHECK(a.seek_index().serialize() == b.seek_index().serialize());
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto& x = a.entries()[i];
    const auto& y = b.entries()[i];
    CHECK(x.data_offset == y.data_offset);
    CHECK(x.size == y.size);
    CHECK(x.mtime_sec == y.mtime_sec);
    CHECK(x.mtime_nsec == y.mtime_nsec);
    CHECK(x.mode == y.mode);
    CHECK(x.uid == y.uid);
    CHECK(x.gid == y.gid);
    CHECK(a.dev_major(x) == b.dev_major(y));
    CHECK(a.dev_minor(x) == b.dev_minor(y));
    CHECK(x.kind == y.kind);
    CHECK(a.path(x) == b.path(y));
    CHECK(a.link_target(x) == b.link_target(y));
    REQUIRE(a.xattrs(x).size() == b.xattrs(y).size());
    for (std::size_t j = 0; j < a.xattrs(x).size(); ++j) {
      CHECK(a.xattr_name(a.xattrs(x)[j]) == b.xattr_name(b.xattrs(y)[j]));
      CHECK(a.xattr_value(a.xattrs(x)[j]) == b.xattr_value(b.xattrs(y)[j]));
    }
    REQUIRE(a.sparse(x).size() == b.sparse(y).size());
    for (std::size_t j = 0; j < a.sparse(x).size(); ++j) {
      CHECK(a.sparse(x)[j].offset == b.sparse(y)[j].offset);
      CHECK(a.sparse(x)[j].length == b.sparse(y)[j].length);
    }
  }
}

// Replaces the trailing checksum so that only the semantic checks can catch a change.
std::string reseal(std::string bytes) {
  bytes.resize(bytes.size() - 32);
  util::Sha256 h;
  h.update(std::string_view(bytes));
  auto d = h.digest();
  bytes.append(reinterpret_cast<const char*>(d.data()), d.size());
  return bytes;
}

void put_u32(std::string& b, std::size_t off, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

}  // namespace

TEST_CASE("LayerIndex keeps every field of the walked entries") {
  auto b = build_index();
  REQUIRE(b.index.size() == 9);
  CHECK(b.index.seek_index().encoding == compress::Encoding::gzip);
  CHECK(b.index.seek_index().gzip_points.size() > 2);
  for (std::size_t i = 0; i < b.entries.size(); ++i) {
    const auto& t = b.entries[i];
    const auto& e = b.index.entries()[i];
    CHECK(b.index.path(e) == t.path);
    CHECK(b.index.link_target(e) == t.link_target);
    CHECK(e.kind == t.kind);
    CHECK(e.data_offset == t.data_offset);
    CHECK(e.size == t.size);
    CHECK(e.mode == t.mode);
    CHECK(e.uid == t.uid);
    CHECK(e.gid == t.gid);
    CHECK(e.mtime_sec == t.mtime_sec);
    CHECK(e.mtime_nsec == t.mtime_nsec);
    CHECK(b.index.dev_major(e) == t.dev_major);
    CHECK(b.index.dev_minor(e) == t.dev_minor);
    REQUIRE(b.index.xattrs(e).size() == t.xattrs.size());
    for (std::size_t j = 0; j < t.xattrs.size(); ++j) {
      CHECK(b.index.xattr_name(b.index.xattrs(e)[j]) == t.xattrs[j].name);
      CHECK(b.index.xattr_value(b.index.xattrs(e)[j]) == t.xattrs[j].value);
    }
    REQUIRE(b.index.sparse(e).size() == t.sparse.size());
  }
  const auto& ping = b.index.entries()[2];
  CHECK(b.index.path(ping) == "bin/ping");
  CHECK(ping.mode == 04755);
  CHECK(ping.mtime_nsec == 250000000);
  const auto& ping6 = b.index.entries()[3];
  CHECK(ping6.kind == EntryKind::hardlink);
  CHECK(b.index.link_target(ping6) == "bin/ping");
  // The xattr name is shared in the pool.
  auto cap = [&](const layer::IndexEntry& e) {
    for (const auto& x : b.index.xattrs(e)) {
      if (b.index.xattr_name(x) == "security.capability") return x;
    }
    FAIL("no capability");
    throw;
  };
  CHECK(cap(ping).name_offset == cap(ping6).name_offset);
  CHECK(b.index.xattr_value(cap(ping)) == std::string("\0\0\0\2 \0\0\0", 8));
  const auto& sparse = b.index.entries()[8];
  REQUIRE(b.index.sparse(sparse).size() == 2);
  CHECK(b.index.sparse(sparse)[1].offset == 147456);
  CHECK(b.index.sparse(sparse)[1].length == 8192);
  CHECK(sparse.size == 200000);
  CHECK(sizeof(layer::IndexEntry) <= 56);
  CHECK(sizeof(layer::EntryExtra) == 32);
}

TEST_CASE("LayerIndex round trip") {
  SECTION("full index") {
    auto b = build_index();
    std::string bytes = b.index.serialize();
    auto back = LayerIndex::deserialize(bytes);
    if (!back) FAIL(back.error().message);
    check_same(b.index, *back);
    CHECK(back->serialize() == bytes);
    CHECK(back->blob_blocks().block_size == 4096);
    CHECK(back->blob_blocks().digests.size() > 1);
    CHECK(back->blob_blocks().digests == b.index.blob_blocks().digests);
    CHECK(back->blob_blocks().covers(b.index.seek_index().compressed_size));
  }
  SECTION("empty index") {
    LayerIndex empty;
    auto back = LayerIndex::deserialize(empty.serialize());
    REQUIRE(back);
    CHECK(back->size() == 0);
    CHECK(back->digest().empty());
  }
}

TEST_CASE("LayerIndex rejects damaged bytes") {
  auto b = build_index();
  const std::string bytes = b.index.serialize();

  SECTION("every flipped byte is caught") {
    // Every byte of an index without gzip windows (small), a stride through the full one.
    LayerIndex small = b.index;
    small.seek_index() = compress::SeekIndex{};
    const std::string small_bytes = small.serialize();
    REQUIRE(LayerIndex::deserialize(small_bytes));
    for (std::size_t i = 0; i < small_bytes.size(); ++i) {
      std::string damaged = small_bytes;
      damaged[i] = static_cast<char>(damaged[i] ^ 0x01);
      auto r = LayerIndex::deserialize(damaged);
      if (r) FAIL("flipped byte " << i << " of " << small_bytes.size() << " not detected");
    }
    for (std::size_t i = 0; i < bytes.size(); i += 211) {
      std::string damaged = bytes;
      damaged[i] = static_cast<char>(damaged[i] ^ 0x40);
      auto r = LayerIndex::deserialize(damaged);
      if (r) FAIL("flipped byte " << i << " of " << bytes.size() << " not detected");
    }
  }
  SECTION("every truncation and an extension are caught") {
    for (std::size_t n = 0; n < bytes.size(); n += (n < 200 || n + 200 > bytes.size()) ? 1 : 97) {
      CHECK_FALSE(LayerIndex::deserialize(std::string_view(bytes).substr(0, n)));
    }
    CHECK_FALSE(LayerIndex::deserialize(bytes + "x"));
  }
  SECTION("wrong magic and version") {
    std::string magic = bytes;
    magic[0] = 'X';
    auto r = LayerIndex::deserialize(reseal(magic));
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message, Catch::Contains("magic"));
    std::string version = bytes;
    put_u32(version, 8, 99);
    r = LayerIndex::deserialize(reseal(version));
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message, Catch::Contains("version 99"));
  }
  SECTION("references out of bounds with a valid checksum") {
    constexpr std::size_t kFirstEntry = 112;
    const std::size_t first_extra = kFirstEntry + b.index.size() * 53;
    struct Field {
      std::size_t at;
      int width;
    };
    for (auto [at, width] :
         {Field{kFirstEntry + 36, 4} /* path_offset */, Field{kFirstEntry + 40, 4} /* extra */,
          Field{kFirstEntry + 44, 2} /* path_size */, Field{first_extra + 4, 4} /* link_size */,
          Field{first_extra + 20, 4} /* xattr_count */, Field{first_extra + 28, 4} /* sparse_count */}) {
      std::string damaged = bytes;
      for (int i = 0; i < width; ++i) damaged[at + i] = static_cast<char>(i + 1 == width ? 0x7f : 0xff);
      auto r = LayerIndex::deserialize(reseal(damaged));
      REQUIRE_FALSE(r);
      CHECK_THAT(r.error().message, Catch::Contains("out of bounds"));
    }
    std::string kind = bytes;
    kind[kFirstEntry + 48] = 42;
    CHECK_FALSE(LayerIndex::deserialize(reseal(kind)));
    std::string count = bytes;
    put_u32(count, 16, 1000000);  // entry count
    CHECK_FALSE(LayerIndex::deserialize(reseal(count)));
    std::string huge = bytes;
    for (int i = 0; i < 8; ++i) huge[16 + i] = '\xff';
    CHECK_FALSE(LayerIndex::deserialize(reseal(huge)));
  }
  SECTION("a path not in normal form with a valid checksum") {
    // Not a file ocifs wrote (the scan stores normal paths only): refused, not handed to the tree.
    std::string longest;
    for (const auto& e : b.index.entries()) {
      if (b.index.path(e).size() > longest.size()) longest = std::string(b.index.path(e));
    }
    REQUIRE(longest.size() >= 3);
    const auto at = bytes.find(longest);
    REQUIRE(at != std::string::npos);
    std::string damaged = bytes;
    damaged.replace(at, 3, "../");
    auto r = LayerIndex::deserialize(reseal(damaged));
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message, Catch::Contains("normal form"));
  }
  SECTION("a damaged seek index inside a valid file") {
    // The seek index sits just before the digest; its own CRC catches the change.
    std::size_t digest_size = b.index.digest().size();
    std::string damaged = bytes;
    damaged[bytes.size() - 32 - b.index.blob_blocks().digests.size() * 32 - digest_size - 10] ^= 1;
    auto r = LayerIndex::deserialize(reseal(damaged));
    CHECK_FALSE(r);
  }
}
