// fuse/operations.cpp: the low-level op table called directly, without a kernel or a mount. The
// test defines libfuse's reply functions itself (fuse_reply_*, fuse_req_userdata): the handlers
// in libocifs_fuse.a link against these, so every answer lands in a FakeRequest where the test
// reads it, and the test checks each request is answered exactly once. fuse_add_direntry(_plus)
// stay libfuse's own, so directory listings are decoded in the kernel's format (linux/fuse.h).
// The image is a real one: an OCI layout with one tar layer (libarchive) opened by Image::open.
#include "../../src/fuse/operations.hpp"  // the op table and SessionState (private to src/fuse)

#include <archive.h>
#include <archive_entry.h>
#include <linux/fuse.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ocifs/cache/cache.hpp"
#include "ocifs/fuse/fuse_server.hpp"
#include "ocifs/image/image.hpp"
#include "ocifs/util/sha256.hpp"
#include "sample_data.hpp"
#include "temp_dir.hpp"

using namespace ocifs;
namespace fs = std::filesystem;
using nlohmann::json;

// ---------------------------------------------------------------- the fake request layer

namespace {

// One request and the answer the handler gave it.
struct FakeRequest {
  enum class Kind { none, err, entry, attr, readlink, open, buf, xattr, statfs };

  explicit FakeRequest(void* session) : userdata(session) {}
  fuse_req_t req() { return reinterpret_cast<fuse_req_t>(this); }

  // Until answered (reads may be answered on the read pool's threads); false after a minute.
  bool wait() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::minutes(1), [&] { return answers > 0; });
  }
  template <class Fn>
  int answer(Kind k, Fn&& fill) {
    std::lock_guard lock(mu);
    ++answers;
    kind = k;
    fill();
    cv.notify_all();
    return 0;
  }

  void* userdata;
  std::mutex mu;
  std::condition_variable cv;
  int answers = 0;
  Kind kind = Kind::none;
  int error = -1;
  fuse_entry_param entry{};
  struct stat attr {};
  double attr_timeout = 0;
  std::string data;  // readlink's target, buf's bytes
  fuse_file_info fi{};
  std::size_t xattr_size = 0;
  struct statvfs sv {};
};

FakeRequest& fake(fuse_req_t req) { return *reinterpret_cast<FakeRequest*>(req); }

}  // namespace

// libfuse's reply functions (declared extern "C" in fuse_lowlevel.h), defined here: the linker
// takes these over libfuse3.so's for the handlers of libocifs_fuse.a.
void* fuse_req_userdata(fuse_req_t req) { return fake(req).userdata; }
int fuse_reply_err(fuse_req_t req, int err) {
  return fake(req).answer(FakeRequest::Kind::err, [&] { fake(req).error = err; });
}
void fuse_reply_none(fuse_req_t req) { fake(req).answer(FakeRequest::Kind::none, [] {}); }
int fuse_reply_entry(fuse_req_t req, const fuse_entry_param* e) {
  return fake(req).answer(FakeRequest::Kind::entry, [&] { fake(req).entry = *e; });
}
int fuse_reply_attr(fuse_req_t req, const struct stat* attr, double timeout) {
  return fake(req).answer(FakeRequest::Kind::attr, [&] {
    fake(req).attr = *attr;
    fake(req).attr_timeout = timeout;
  });
}
int fuse_reply_readlink(fuse_req_t req, const char* link) {
  return fake(req).answer(FakeRequest::Kind::readlink, [&] { fake(req).data = link; });
}
int fuse_reply_open(fuse_req_t req, const fuse_file_info* fi) {
  return fake(req).answer(FakeRequest::Kind::open, [&] { fake(req).fi = *fi; });
}
int fuse_reply_buf(fuse_req_t req, const char* buf, size_t size) {
  return fake(req).answer(FakeRequest::Kind::buf, [&] { fake(req).data.assign(buf, size); });
}
int fuse_reply_xattr(fuse_req_t req, size_t count) {
  return fake(req).answer(FakeRequest::Kind::xattr, [&] { fake(req).xattr_size = count; });
}
int fuse_reply_statfs(fuse_req_t req, const struct statvfs* stbuf) {
  return fake(req).answer(FakeRequest::Kind::statfs, [&] { fake(req).sv = *stbuf; });
}

// ---------------------------------------------------------------- the test image

namespace {

using Kind = FakeRequest::Kind;
using test::TempDir;

void write_file(const fs::path& path, std::string_view data) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

std::string sha(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

const std::string kBig = test::random_bytes(1536 * 1024, 3);  // more than one read (1 MiB) can carry
const std::string kHostname = "ocifs-test\n";
const std::string kLongXattr(300, 'x');
const std::string kCapability("\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
constexpr std::uint64_t kSparseSize = 1 << 20;  // data at [0, 4096) and [512 KiB, +100), holes elsewhere

// The one layer, as libarchive writes a PAX tar:
//   etc/ hostname (uid 1000, gid 100, mtime 1700000000.5, hard-linked as etc/hostname.link)
//   bin/ busybox (0755), sh -> busybox
//   big (1.5 MiB), empty (0 bytes), sparse (1 MiB, mostly holes)
//   xattrs (user.a=1, user.long=300 bytes, security.capability), dev/null (char 1:3), fifo
//   many/ f000 … f099, emptydir/
std::string layer_tar() {
  std::string buf(8u << 20, '\0');
  size_t used = 0;
  struct archive* a = archive_write_new();
  REQUIRE(archive_write_set_format_pax(a) == ARCHIVE_OK);
  REQUIRE(archive_write_open_memory(a, buf.data(), buf.size(), &used) == ARCHIVE_OK);
  auto add = [&](const char* path, unsigned type, unsigned perm, std::string_view data = {},
                 const std::function<void(archive_entry*)>& more = {}) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_mtime(e, 1600000000, 0);
    if (type == AE_IFREG) archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    if (more) more(e);
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    if (!data.empty()) REQUIRE(archive_write_data(a, data.data(), data.size()) == static_cast<la_ssize_t>(data.size()));
    archive_entry_free(e);
  };
  add("etc", AE_IFDIR, 0755);
  add("etc/hostname", AE_IFREG, 0644, kHostname, [](archive_entry* e) {
    archive_entry_set_uid(e, 1000);
    archive_entry_set_gid(e, 100);
    archive_entry_set_mtime(e, 1700000000, 500000000);
  });
  add("etc/hostname.link", AE_IFREG, 0644, {}, [](archive_entry* e) {
    archive_entry_set_hardlink(e, "etc/hostname");
    archive_entry_set_size(e, 0);
  });
  add("bin", AE_IFDIR, 0755);
  add("bin/busybox", AE_IFREG, 0755, "#!/bin/true\n");
  add("bin/sh", AE_IFLNK, 0777, {}, [](archive_entry* e) { archive_entry_set_symlink(e, "busybox"); });
  add("big", AE_IFREG, 0644, kBig);
  add("empty", AE_IFREG, 0644);
  std::string sparse(kSparseSize, '\0');
  std::memcpy(sparse.data(), kBig.data(), 4096);
  std::memcpy(sparse.data() + 512 * 1024, kBig.data() + 4096, 100);
  add("sparse", AE_IFREG, 0644, sparse, [](archive_entry* e) {
    archive_entry_sparse_add_entry(e, 0, 4096);
    archive_entry_sparse_add_entry(e, 512 * 1024, 100);
  });
  add("xattrs", AE_IFREG, 0644, "x", [](archive_entry* e) {
    archive_entry_xattr_add_entry(e, "user.a", "1", 1);
    archive_entry_xattr_add_entry(e, "user.long", kLongXattr.data(), kLongXattr.size());
    archive_entry_xattr_add_entry(e, "security.capability", kCapability.data(), kCapability.size());
  });
  add("dev", AE_IFDIR, 0755);
  add("dev/null", AE_IFCHR, 0666, {}, [](archive_entry* e) { archive_entry_set_rdev(e, makedev(1, 3)); });
  add("fifo", AE_IFIFO, 0644);
  add("many", AE_IFDIR, 0755);
  for (int i = 0; i < 100; ++i) add(fmt::format("many/f{:03}", i).c_str(), AE_IFREG, 0644, "m");
  add("emptydir", AE_IFDIR, 0700);
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  buf.resize(used);
  return buf;
}

// An OCI layout holding one linux/amd64 image of that layer, tagged "t".
std::string write_layout(const fs::path& dir) {
  auto blob = [&](std::string_view data, std::string_view type) {
    write_file(dir / "blobs" / "sha256" / sha(data).substr(7), data);
    return json{{"mediaType", type}, {"digest", sha(data)}, {"size", data.size()}};
  };
  auto tar = layer_tar();
  json config = {{"architecture", "amd64"},
                 {"os", "linux"},
                 {"rootfs", {{"type", "layers"}, {"diff_ids", {sha(tar)}}}}};
  json manifest = {{"schemaVersion", 2},
                   {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
                   {"config", blob(config.dump(), "application/vnd.oci.image.config.v1+json")},
                   {"layers", {blob(tar, "application/vnd.oci.image.layer.v1.tar")}}};
  auto m = blob(manifest.dump(), "application/vnd.oci.image.manifest.v1+json");
  m["annotations"] = {{"org.opencontainers.image.ref.name", "t"}};
  write_file(dir / "oci-layout", R"({"imageLayoutVersion": "1.0.0"})");
  write_file(dir / "index.json", json{{"schemaVersion", 2}, {"manifests", {m}}}.dump());
  return "oci:" + dir.string() + ":t";
}

const fuse_lowlevel_ops& ops() { return fuse::operations(); }

// The image opened, and a session over it as FuseServer would make one.
struct Mounted {
  TempDir tmp;
  std::unique_ptr<image::Image> image;
  std::unique_ptr<fuse::SessionState> state;

  explicit Mounted(fuse::MountOptions options = {}) {
    auto ref = oci::ImageRef::parse(write_layout(tmp.path / "layout"));
    REQUIRE(ref);
    auto cache = cache::Cache::open(tmp.path / "cache");
    REQUIRE(cache);
    image::OpenOptions opening;
    auto platform = oci::Platform::parse("linux/amd64");
    REQUIRE(platform);
    opening.resolve.platform = *platform;
    auto opened = image::Image::open(*ref, *cache, opening);
    if (!opened) FAIL(opened.error().message);
    image = std::move(*opened);
    state = std::make_unique<fuse::SessionState>(*image, options);
  }

  const image::Tree& tree() const { return image->tree(); }
  fuse_ino_t ino(std::string_view path) const {
    auto index = tree().resolve(path);
    INFO(path);
    REQUIRE(index);
    return *index + 1;
  }

  // Runs one handler on a fresh request and returns it once answered; exactly one answer.
  template <class Fn>
  std::unique_ptr<FakeRequest> call(Fn&& handler) {
    auto r = std::make_unique<FakeRequest>(state.get());
    handler(r->req());
    REQUIRE(r->wait());
    std::lock_guard lock(r->mu);
    CHECK(r->answers == 1);
    return r;
  }
  int error_of(const std::unique_ptr<FakeRequest>& r) {
    INFO("answer kind " << static_cast<int>(r->kind));
    REQUIRE(r->kind == Kind::err);
    return r->error;
  }

  std::unique_ptr<FakeRequest> lookup(fuse_ino_t parent, const char* name) {
    return call([&](fuse_req_t q) { ops().lookup(q, parent, name); });
  }
  std::unique_ptr<FakeRequest> getattr(fuse_ino_t ino) {
    return call([&](fuse_req_t q) { ops().getattr(q, ino, nullptr); });
  }
  std::unique_ptr<FakeRequest> open(fuse_ino_t ino, int flags = O_RDONLY) {
    fuse_file_info fi{};
    fi.flags = flags;
    return call([&](fuse_req_t q) { ops().open(q, ino, &fi); });
  }
  std::unique_ptr<FakeRequest> read(fuse_ino_t ino, std::size_t size, off_t off, std::uint64_t fh = 0) {
    fuse_file_info fi{};
    fi.fh = fh;
    return call([&](fuse_req_t q) { ops().read(q, ino, size, off, &fi); });
  }
  // The bytes a read answered (the test fails if it answered an error).
  std::string read_bytes(fuse_ino_t ino, std::size_t size, off_t off, std::uint64_t fh = 0) {
    auto r = read(ino, size, off, fh);
    INFO("read at " << off << ": errno " << r->error);
    REQUIRE(r->kind == Kind::buf);
    return r->data;
  }
  std::unique_ptr<FakeRequest> getxattr(fuse_ino_t ino, const char* name, std::size_t size) {
    return call([&](fuse_req_t q) { ops().getxattr(q, ino, name, size); });
  }
  std::unique_ptr<FakeRequest> listxattr(fuse_ino_t ino, std::size_t size) {
    return call([&](fuse_req_t q) { ops().listxattr(q, ino, size); });
  }
  void init(unsigned capable) {
    fuse_conn_info conn{};
    conn.capable = capable;
    ops().init(state.get(), &conn);
  }
};

// One directory entry as the kernel reads it.
struct Dirent {
  std::string name;
  std::uint64_t ino = 0;
  std::uint64_t next = 0;  // the offset to continue from
  std::uint32_t type = 0;  // S_IFMT >> 12
  std::uint64_t nodeid = 0;  // readdirplus only: the entry's lookup result
  std::uint32_t mode = 0;    // readdirplus only
};

std::vector<Dirent> parse_dirents(const std::string& buf, bool plus) {
  std::vector<Dirent> out;
  std::size_t at = 0;
  while (at < buf.size()) {
    Dirent d;
    std::size_t header = 0;
    if (plus) {
      REQUIRE(at + sizeof(fuse_direntplus) <= buf.size());
      fuse_entry_out entry;
      std::memcpy(&entry, buf.data() + at, sizeof entry);
      d.nodeid = entry.nodeid;
      d.mode = entry.attr.mode;
      header = sizeof(fuse_entry_out);
    }
    REQUIRE(at + header + sizeof(fuse_dirent) <= buf.size());
    fuse_dirent de;
    std::memcpy(&de, buf.data() + at + header, sizeof de);
    REQUIRE(at + header + FUSE_NAME_OFFSET + de.namelen <= buf.size());
    d.name.assign(buf.data() + at + header + FUSE_NAME_OFFSET, de.namelen);
    d.ino = de.ino;
    d.next = de.off;
    d.type = de.type;
    out.push_back(d);
    at += header + FUSE_DIRENT_ALIGN(FUSE_NAME_OFFSET + de.namelen);
  }
  return out;
}

std::vector<std::string> names_of(const std::vector<Dirent>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.name);
  return out;
}

}  // namespace

// ---------------------------------------------------------------- lookup, getattr, readlink

TEST_CASE_METHOD(Mounted, "fuse lookup: a child's entry, a cached negative entry, ENOTDIR, ESTALE") {
  auto r = lookup(FUSE_ROOT_ID, "etc");
  REQUIRE(r->kind == Kind::entry);
  CHECK(r->entry.ino == ino("etc"));
  CHECK(S_ISDIR(r->entry.attr.st_mode));
  CHECK(r->entry.entry_timeout > 3600);  // the tree never changes: cached "forever"
  CHECK(r->entry.attr_timeout > 3600);

  r = lookup(ino("etc"), "hostname");
  REQUIRE(r->kind == Kind::entry);
  CHECK(r->entry.ino == ino("etc/hostname"));
  CHECK(r->entry.attr.st_ino == r->entry.ino);
  CHECK(r->entry.attr.st_size == static_cast<off_t>(kHostname.size()));

  SECTION("a missing name: ino 0, cached like any entry (not an ENOENT answer)") {
    r = lookup(ino("etc"), "no-such-file");
    REQUIRE(r->kind == Kind::entry);
    CHECK(r->entry.ino == 0);
    CHECK(r->entry.entry_timeout > 3600);
  }
  SECTION("a parent that is not a directory: ENOTDIR") {
    CHECK(error_of(lookup(ino("etc/hostname"), "x")) == ENOTDIR);
    CHECK(error_of(lookup(ino("bin/sh"), "x")) == ENOTDIR);
  }
  SECTION("an inode number outside the tree: ESTALE") {
    CHECK(error_of(lookup(0, "etc")) == ESTALE);
    CHECK(error_of(lookup(tree().inode_count() + 1, "etc")) == ESTALE);
  }
}

TEST_CASE_METHOD(Mounted, "fuse getattr: kinds, owners, times, links, sizes and blocks as the tar says") {
  auto st = [&](std::string_view path) {
    auto r = getattr(ino(path));
    REQUIRE(r->kind == Kind::attr);
    CHECK(r->attr_timeout > 3600);
    CHECK(r->attr.st_ino == ino(path));
    return r->attr;
  };
  auto host = st("etc/hostname");
  CHECK(S_ISREG(host.st_mode));
  CHECK((host.st_mode & 07777) == 0644);
  CHECK(host.st_uid == 1000);
  CHECK(host.st_gid == 100);
  CHECK(host.st_size == static_cast<off_t>(kHostname.size()));
  CHECK(host.st_nlink == 2);  // etc/hostname.link
  CHECK(host.st_mtim.tv_sec == 1700000000);
  CHECK(host.st_mtim.tv_nsec == 500000000);
  CHECK(st("etc/hostname.link").st_ino == host.st_ino);

  auto big = st("big");
  CHECK(big.st_size == static_cast<off_t>(kBig.size()));
  CHECK(big.st_blocks == static_cast<blkcnt_t>(kBig.size() / 512));
  CHECK(big.st_blksize == 4096);
  auto sparse = st("sparse");
  CHECK(sparse.st_size == static_cast<off_t>(kSparseSize));
  CHECK(sparse.st_blocks == (4096 + 100 + 511) / 512);  // what is stored, not the holes
  CHECK(st("empty").st_blocks == 0);

  CHECK(S_ISDIR(st("etc").st_mode));
  CHECK((st("emptydir").st_mode & 07777) == 0700);
  auto sh = st("bin/sh");
  CHECK(S_ISLNK(sh.st_mode));
  CHECK(sh.st_size == 7);  // "busybox"
  auto null = st("dev/null");
  CHECK(S_ISCHR(null.st_mode));
  CHECK(null.st_rdev == makedev(1, 3));
  CHECK(S_ISFIFO(st("fifo").st_mode));
  CHECK(S_ISDIR(st("").st_mode));  // the root
  CHECK(error_of(getattr(tree().inode_count() + 1)) == ESTALE);
}

TEST_CASE_METHOD(Mounted, "fuse readlink: a symlink's target; EINVAL for anything else") {
  auto r = call([&](fuse_req_t q) { ops().readlink(q, ino("bin/sh")); });
  REQUIRE(r->kind == Kind::readlink);
  CHECK(r->data == "busybox");
  CHECK(error_of(call([&](fuse_req_t q) { ops().readlink(q, ino("bin/busybox")); })) == EINVAL);
  CHECK(error_of(call([&](fuse_req_t q) { ops().readlink(q, ino("etc")); })) == EINVAL);
  CHECK(error_of(call([&](fuse_req_t q) { ops().readlink(q, 0); })) == ESTALE);
}

// ---------------------------------------------------------------- open, read

TEST_CASE_METHOD(Mounted, "fuse open: regular files read-only with keep_cache; EROFS, EISDIR, ENXIO") {
  auto r = open(ino("big"));
  REQUIRE(r->kind == Kind::open);
  CHECK(r->fi.keep_cache == 1);
  CHECK(r->fi.fh != 0);
  auto again = open(ino("big"));
  CHECK(again->fi.fh != r->fi.fh);  // a handle per open
  CHECK(error_of(open(ino("big"), O_WRONLY)) == EROFS);
  CHECK(error_of(open(ino("big"), O_RDWR)) == EROFS);
  CHECK(error_of(open(ino("big"), O_RDONLY | O_TRUNC)) == EROFS);
  CHECK(error_of(open(ino("etc"))) == EISDIR);
  CHECK(error_of(open(ino("bin/sh"))) == ENXIO);  // never followed here: the kernel resolves links
  CHECK(error_of(open(ino("dev/null"))) == ENXIO);
  CHECK(error_of(open(ino("fifo"))) == ENXIO);
  CHECK(error_of(open(tree().inode_count() + 7)) == ESTALE);
  auto released = call([&](fuse_req_t q) {
    fuse_file_info fi{};
    fi.fh = r->fi.fh;
    ops().release(q, ino("big"), &fi);
  });
  CHECK(error_of(released) == 0);
}

TEST_CASE_METHOD(Mounted, "fuse open: with zero-message opens offered, files and directories answer ENOSYS") {
  init(FUSE_CAP_NO_OPEN_SUPPORT | FUSE_CAP_NO_OPENDIR_SUPPORT);
  CHECK(error_of(open(ino("big"))) == ENOSYS);
  CHECK(error_of(open(ino("etc"))) == EISDIR);  // errors still come first
  CHECK(error_of(call([&](fuse_req_t q) {
          fuse_file_info fi{};
          ops().opendir(q, ino("etc"), &fi);
        })) == ENOSYS);
  CHECK(read_bytes(ino("etc/hostname"), 4096, 0) == kHostname);  // reads without a handle
}

TEST_CASE("fuse read: bytes, short at EOF, nothing at or past it; directories, bad offsets") {
  // threads = 0: no read is served on the request thread, every one goes through the read pool
  // and is answered from its thread.
  auto threads = GENERATE(4u, 0u);
  fuse::MountOptions options;
  options.threads = threads;
  Mounted m(options);
  INFO("request threads " << threads);
  for (bool opened : {false, true}) {
    INFO((opened ? "through an open file's handle" : "without a handle (a zero-message open)"));
    auto handle_of = [&](const char* path) -> std::uint64_t { return opened ? m.open(m.ino(path))->fi.fh : 0; };
    CHECK(m.read_bytes(m.ino("etc/hostname"), 4096, 0, handle_of("etc/hostname")) == kHostname);
    const auto handle = handle_of("big");
    CHECK(m.read_bytes(m.ino("big"), 100, 1000, handle) == kBig.substr(1000, 100));
    CHECK(m.read_bytes(m.ino("big"), 4096, kBig.size() - 10, handle) == kBig.substr(kBig.size() - 10));  // short
    CHECK(m.read_bytes(m.ino("big"), 4096, kBig.size(), handle).empty());       // at EOF
    CHECK(m.read_bytes(m.ino("big"), 4096, kBig.size() + 5000, handle).empty());  // past it
    // One read carries at most 1 MiB, however much is asked.
    CHECK(m.read_bytes(m.ino("big"), 4u << 20, 0, handle) == kBig.substr(0, 1u << 20));
  }
  CHECK(m.read_bytes(m.ino("empty"), 4096, 0).empty());
  // The sparse file: data, a hole, data, and zeros to the end.
  auto sparse = m.read_bytes(m.ino("sparse"), 1u << 20, 0);
  REQUIRE(sparse.size() == kSparseSize);
  CHECK(sparse.substr(0, 4096) == kBig.substr(0, 4096));
  CHECK(sparse.substr(4096, 512 * 1024 - 4096) == std::string(512 * 1024 - 4096, '\0'));
  CHECK(sparse.substr(512 * 1024, 100) == kBig.substr(4096, 100));
  CHECK(sparse.substr(512 * 1024 + 100) == std::string(kSparseSize - 512 * 1024 - 100, '\0'));

  CHECK(m.error_of(m.read(m.ino("etc"), 4096, 0)) == EISDIR);
  CHECK(m.error_of(m.read(m.ino("big"), 4096, -1)) == EINVAL);
  CHECK(m.error_of(m.read(0, 4096, 0)) == EINVAL);
}

// ---------------------------------------------------------------- directories

TEST_CASE("fuse readdir: '.', '..', the children sorted; offsets resume where a full buffer stopped") {
  const bool plus = GENERATE(false, true);
  INFO((plus ? "readdirplus" : "readdir"));
  Mounted m;
  auto list = [&](fuse_ino_t dir, std::size_t size, off_t off) {
    auto r = m.call([&](fuse_req_t q) {
      fuse_file_info fi{};
      if (plus) {
        ops().readdirplus(q, dir, size, off, &fi);
      } else {
        ops().readdir(q, dir, size, off, &fi);
      }
    });
    REQUIRE(r->kind == Kind::buf);
    return parse_dirents(r->data, plus);
  };

  auto root = list(FUSE_ROOT_ID, 1 << 16, 0);
  CHECK(names_of(root) == std::vector<std::string>{".", "..", "big", "bin", "dev", "empty", "emptydir", "etc",
                                                   "fifo", "many", "sparse", "xattrs"});
  REQUIRE(root.size() == 12);
  CHECK(root[0].ino == FUSE_ROOT_ID);  // "." of the root
  CHECK(root[1].ino == FUSE_ROOT_ID);  // and its ".."
  for (std::size_t i = 0; i < root.size(); ++i) CHECK(root[i].next == i + 1);
  CHECK(root[3].ino == m.ino("bin"));
  CHECK(root[3].type == (S_IFDIR >> 12));
  CHECK(root[2].type == (S_IFREG >> 12));
  if (plus) {
    CHECK(root[3].nodeid == m.ino("bin"));
    CHECK(S_ISDIR(root[3].mode));
    CHECK(root[2].nodeid == m.ino("big"));
  }

  auto etc = list(m.ino("etc"), 1 << 16, 0);
  CHECK(names_of(etc) == std::vector<std::string>{".", "..", "hostname", "hostname.link"});
  CHECK(etc[0].ino == m.ino("etc"));
  CHECK(etc[1].ino == FUSE_ROOT_ID);
  CHECK(etc[2].ino == etc[3].ino);  // hard links: one inode
  CHECK(names_of(list(m.ino("emptydir"), 4096, 0)) == std::vector<std::string>{".", ".."});

  // From an offset: what follows the entry that offset came after.
  CHECK(names_of(list(FUSE_ROOT_ID, 1 << 16, 2)).front() == "big");
  CHECK(names_of(list(FUSE_ROOT_ID, 1 << 16, 11)) == std::vector<std::string>{"xattrs"});
  CHECK(list(FUSE_ROOT_ID, 1 << 16, 12).empty());  // the end
  CHECK(list(FUSE_ROOT_ID, 1 << 16, 1000).empty());

  // A buffer too small for all 102 entries of many/: page through it by each last offset.
  std::vector<std::string> paged;
  off_t off = 0;
  int pages = 0;
  for (;;) {
    auto page = list(m.ino("many"), 512, off);
    if (page.empty()) break;
    CHECK(page.size() < 102);
    for (const auto& e : page) paged.push_back(e.name);
    off = static_cast<off_t>(page.back().next);
    REQUIRE(++pages < 200);
  }
  CHECK(pages > 1);
  REQUIRE(paged.size() == 102);
  CHECK(paged[0] == ".");
  CHECK(paged[1] == "..");
  for (int i = 0; i < 100; ++i) CHECK(paged[i + 2] == fmt::format("f{:03}", i));
  // A buffer too small for even one entry: an empty answer, not an error.
  CHECK(list(m.ino("many"), 8, 0).empty());
}

TEST_CASE_METHOD(Mounted, "fuse opendir: directories with cache_readdir and keep_cache; ENOTDIR, ESTALE") {
  auto opendir = [&](fuse_ino_t ino) {
    return call([&](fuse_req_t q) {
      fuse_file_info fi{};
      ops().opendir(q, ino, &fi);
    });
  };
  auto r = opendir(ino("etc"));
  REQUIRE(r->kind == Kind::open);
  CHECK(r->fi.cache_readdir == 1);
  CHECK(r->fi.keep_cache == 1);
  CHECK(error_of(opendir(ino("big"))) == ENOTDIR);
  CHECK(error_of(opendir(tree().inode_count() + 1)) == ESTALE);
  CHECK(error_of(call([&](fuse_req_t q) { ops().releasedir(q, ino("etc"), nullptr); })) == 0);
}

// ---------------------------------------------------------------- xattrs, statfs

TEST_CASE_METHOD(Mounted, "fuse getxattr: the value, its size for a size-0 probe, ERANGE, ENODATA") {
  const auto x = ino("xattrs");
  auto probe = getxattr(x, "user.long", 0);
  REQUIRE(probe->kind == Kind::xattr);
  CHECK(probe->xattr_size == kLongXattr.size());
  auto value = getxattr(x, "user.long", kLongXattr.size());  // exactly big enough
  REQUIRE(value->kind == Kind::buf);
  CHECK(value->data == kLongXattr);
  CHECK(getxattr(x, "user.long", 4096)->data == kLongXattr);
  CHECK(error_of(getxattr(x, "user.long", kLongXattr.size() - 1)) == ERANGE);
  CHECK(getxattr(x, "user.a", 10)->data == "1");
  CHECK(getxattr(x, "security.capability", 100)->data == kCapability);  // binary, NULs kept
  CHECK(error_of(getxattr(x, "user.missing", 100)) == ENODATA);
  CHECK(error_of(getxattr(ino("etc"), "user.a", 100)) == ENODATA);
  CHECK(error_of(getxattr(0, "user.a", 100)) == ESTALE);
}

TEST_CASE_METHOD(Mounted, "fuse getxattr: ocifs.status on the root only, as JSON; never listed") {
  auto probe = getxattr(FUSE_ROOT_ID, "ocifs.status", 0);
  REQUIRE(probe->kind == Kind::xattr);
  auto status = getxattr(FUSE_ROOT_ID, "ocifs.status", probe->xattr_size);
  REQUIRE(status->kind == Kind::buf);
  CHECK(status->data.size() == probe->xattr_size);
  auto doc = json::parse(status->data, nullptr, false);
  REQUIRE_FALSE(doc.is_discarded());
  CHECK(doc.dump() == json::parse(image->status_json()).dump());
  CHECK(error_of(getxattr(FUSE_ROOT_ID, "ocifs.status", 1)) == ERANGE);
  CHECK(error_of(getxattr(ino("etc"), "ocifs.status", 4096)) == ENODATA);
  auto names = listxattr(FUSE_ROOT_ID, 0);
  REQUIRE(names->kind == Kind::xattr);
  CHECK(names->xattr_size == 0);
}

TEST_CASE("fuse getxattr: ocifs.status carries the supervisor's numbers when it has them") {
  fuse::MountOptions options;
  options.supervision_json = R"({"server_pid": 4242, "restarts": 1})";
  Mounted m(options);
  auto status = m.getxattr(FUSE_ROOT_ID, "ocifs.status", 1 << 16);
  REQUIRE(status->kind == Kind::buf);
  auto doc = json::parse(status->data);
  CHECK(doc["supervision"]["server_pid"] == 4242);
  CHECK(doc["supervision"]["restarts"] == 1);
  CHECK(doc["layers"].size() == 1);
}

TEST_CASE_METHOD(Mounted, "fuse listxattr: NUL-terminated names in the tree's order; size probe; ERANGE") {
  std::string want;  // the tree keeps the tar's order (libarchive writes these in its own)
  for (const auto& x : tree().xattrs(tree().inode(ino("xattrs") - 1))) want += std::string(tree().str(x.name)) + '\0';
  std::vector<std::string> names_sorted;
  for (std::size_t at = 0; at < want.size(); at = want.find('\0', at) + 1) names_sorted.push_back(want.c_str() + at);
  std::sort(names_sorted.begin(), names_sorted.end());
  CHECK(names_sorted == std::vector<std::string>{"security.capability", "user.a", "user.long"});
  auto probe = listxattr(ino("xattrs"), 0);
  REQUIRE(probe->kind == Kind::xattr);
  CHECK(probe->xattr_size == want.size());
  auto names = listxattr(ino("xattrs"), want.size());
  REQUIRE(names->kind == Kind::buf);
  CHECK(names->data == want);
  CHECK(error_of(listxattr(ino("xattrs"), want.size() - 1)) == ERANGE);
  auto none = listxattr(ino("big"), 0);
  REQUIRE(none->kind == Kind::xattr);
  CHECK(none->xattr_size == 0);
  CHECK(error_of(listxattr(tree().inode_count() + 1, 100)) == ESTALE);
}

TEST_CASE_METHOD(Mounted, "fuse statfs: 4 KiB blocks for the layers' decoded bytes, one file per inode") {
  auto r = call([&](fuse_req_t q) { ops().statfs(q, FUSE_ROOT_ID); });
  REQUIRE(r->kind == Kind::statfs);
  std::uint64_t decoded = 0;
  for (const auto& l : image->layers()) decoded += l.decoded_size;
  CHECK(decoded > kBig.size());
  CHECK(r->sv.f_bsize == 4096);
  CHECK(r->sv.f_frsize == 4096);
  CHECK(r->sv.f_blocks == (decoded + 4095) / 4096);
  CHECK(r->sv.f_bfree == 0);
  CHECK(r->sv.f_files == tree().inode_count());
  CHECK(r->sv.f_namemax == 255);
}

// ---------------------------------------------------------------- read-only, the rest

TEST_CASE_METHOD(Mounted, "fuse: every operation that would change the tree is EROFS; access(W_OK) too") {
  const auto f = ino("etc/hostname");
  const auto d = ino("etc");
  fuse_file_info fi{};
  struct stat st {};
  CHECK(error_of(call([&](fuse_req_t q) { ops().setattr(q, f, &st, FUSE_SET_ATTR_MODE, nullptr); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().mknod(q, d, "n", S_IFREG | 0644, 0); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().mkdir(q, d, "n", 0755); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().unlink(q, d, "hostname"); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().rmdir(q, FUSE_ROOT_ID, "emptydir"); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().symlink(q, "x", d, "n"); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().rename(q, d, "hostname", d, "n", 0); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().link(q, f, d, "n"); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().write(q, f, "x", 1, 0, &fi); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().create(q, d, "n", 0644, &fi); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().setxattr(q, f, "user.x", "1", 1, 0); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().removexattr(q, ino("xattrs"), "user.a"); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().fallocate(q, f, 0, 0, 10, &fi); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().access(q, f, W_OK); })) == EROFS);
  CHECK(error_of(call([&](fuse_req_t q) { ops().access(q, f, R_OK | X_OK); })) == 0);
  // forget needs no bookkeeping: answered with no reply at all.
  auto forgot = call([&](fuse_req_t q) { ops().forget(q, f, 1); });
  CHECK(forgot->kind == Kind::none);
}
