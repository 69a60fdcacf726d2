#include "operations.hpp"

#include "ocifs/fuse/fuse_server.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cerrno>
#include <climits>
#include <algorithm>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include <nlohmann/json.hpp>

#include "ocifs/fuse/status_xattr.hpp"
#include "ocifs/image/image.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/thread_boundary.hpp"

namespace ocifs::fuse {

namespace {

// The tree never changes while mounted: let the kernel cache entries, attributes and negative
// lookups for as long as it likes (a day of seconds is as good as forever here).
constexpr double kForever = 86400.0 * 365;
// The most one read answers: the kernel asks at most max_read, 1 MiB with libfuse's 256 pages
// (see device.cpp); a larger size would only allocate a larger reply buffer for nothing.
constexpr std::size_t kMaxRead = 1u << 20;

SessionState& state_of(fuse_req_t req) { return *static_cast<SessionState*>(fuse_req_userdata(req)); }
const image::Image& image_of(fuse_req_t req) { return state_of(req).image; }

// The errno boundary: no exception crosses into libfuse.
template <class Fn>
void guarded(fuse_req_t req, const char* op, Fn&& fn) noexcept {
  try {
    fn();
  } catch (const std::bad_alloc&) {
    fuse_reply_err(req, ENOMEM);
  } catch (const std::exception& e) {
    spdlog::error("{}: unexpected failure: {}", op, e.what());
    fuse_reply_err(req, EIO);
  }
}

// FUSE inode numbers are tree indexes + 1; anything outside the tree is stale or forged.
bool to_index(const image::Image& image, fuse_ino_t ino, std::uint32_t& index) {
  if (ino == 0 || ino > image.tree().inode_count()) return false;
  index = static_cast<std::uint32_t>(ino - 1);
  return true;
}

void fill_stat(const image::Tree& tree, std::uint32_t index, struct stat& st) {
  const image::Inode& n = tree.inode(index);
  std::memset(&st, 0, sizeof st);
  st.st_ino = index + 1;
  st.st_mode = n.mode;
  st.st_nlink = n.nlink;
  st.st_uid = n.uid;
  st.st_gid = n.gid;
  st.st_size = static_cast<off_t>(n.size);
  if (n.is_device()) st.st_rdev = makedev(n.dev_major, n.dev_minor);  // overlaid with other kinds' fields
  st.st_blksize = 4096;
  std::uint64_t stored = n.size;
  if (n.sparse_count) {
    stored = 0;
    for (const auto& e : tree.sparse(n)) stored += e.length;
  }
  st.st_blocks = static_cast<blkcnt_t>((stored + 511) / 512);
  st.st_mtim.tv_sec = n.mtime_sec;
  st.st_mtim.tv_nsec = n.mtime_nsec;
  st.st_atim = st.st_mtim;
  st.st_ctim = st.st_mtim;
}

fuse_entry_param entry_for(const image::Tree& tree, std::uint32_t index) {
  fuse_entry_param e{};
  e.ino = index + 1;
  e.generation = 1;
  e.attr_timeout = kForever;
  e.entry_timeout = kForever;
  fill_stat(tree, index, e.attr);
  return e;
}

void op_init(void* userdata, fuse_conn_info* conn) {
  auto& state = *static_cast<SessionState*>(userdata);
  state.zero_message_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) && !state.open_handles_wanted;
  state.zero_message_opendir = conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT;
  if (conn->capable & FUSE_CAP_CACHE_SYMLINKS) conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  if (conn->capable & FUSE_CAP_READDIRPLUS) conn->want |= FUSE_CAP_READDIRPLUS;
  // Always answer readdir with attributes: they cost us nothing and save a lookup per entry.
  conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
}

void op_lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  guarded(req, "lookup", [&] {
    const auto& image = image_of(req);
    std::uint32_t dir;
    if (!to_index(image, parent, dir)) return (void)fuse_reply_err(req, ESTALE);
    if (!image.tree().inode(dir).is_dir()) return (void)fuse_reply_err(req, ENOTDIR);
    if (auto child = image.tree().lookup(dir, name)) {
      auto e = entry_for(image.tree(), *child);
      return (void)fuse_reply_entry(req, &e);
    }
    fuse_entry_param negative{};  // ino 0: the kernel caches "no such name" for entry_timeout
    negative.entry_timeout = kForever;
    fuse_reply_entry(req, &negative);
  });
}

void op_forget(fuse_req_t req, fuse_ino_t, uint64_t) { fuse_reply_none(req); }
void op_forget_multi(fuse_req_t req, size_t, fuse_forget_data*) { fuse_reply_none(req); }

void op_getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  guarded(req, "getattr", [&] {
    const auto& image = image_of(req);
    std::uint32_t index;
    if (!to_index(image, ino, index)) return (void)fuse_reply_err(req, ESTALE);
    struct stat st;
    fill_stat(image.tree(), index, st);
    fuse_reply_attr(req, &st, kForever);
  });
}

void op_readlink(fuse_req_t req, fuse_ino_t ino) {
  guarded(req, "readlink", [&] {
    const auto& image = image_of(req);
    std::uint32_t index;
    if (!to_index(image, ino, index)) return (void)fuse_reply_err(req, ESTALE);
    const auto& n = image.tree().inode(index);
    if (!n.is_symlink()) return (void)fuse_reply_err(req, EINVAL);
    std::string target(image.tree().str(n.link));
    fuse_reply_readlink(req, target.c_str());
  });
}

void op_open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, "open", [&] {
    const auto& image = image_of(req);
    std::uint32_t index;
    if (!to_index(image, ino, index)) return (void)fuse_reply_err(req, ESTALE);
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC)) return (void)fuse_reply_err(req, EROFS);
    const auto& n = image.tree().inode(index);
    if (n.is_dir()) return (void)fuse_reply_err(req, EISDIR);
    if (!n.is_regular()) return (void)fuse_reply_err(req, ENXIO);
    if (state_of(req).zero_message_open) return (void)fuse_reply_err(req, ENOSYS);  // see SessionState
    fi->keep_cache = 1;  // file data never changes: keep the page cache across opens
    auto& state = state_of(req);
    fi->fh = state.open_file(index);
    if (fuse_reply_open(req, fi) == -ENOENT) state.release_file(fi->fh);  // interrupted: never released
  });
}

// A read handed to the read pool. Answered exactly once: by serve_read, or with EIO when it is
// dropped unrun (the pool stopping at unmount) or its task threw.
struct ReadJob {
  ReadJob(fuse_req_t r, std::uint32_t i, std::size_t n, std::uint64_t off, SessionState::OpenFilePtr f,
          util::Deadline d)
      : req(r), index(i), size(n), offset(off), file(std::move(f)), deadline(d) {}
  ReadJob(const ReadJob&) = delete;  // one owner of the request: one answer
  ReadJob& operator=(const ReadJob&) = delete;
  ~ReadJob() {
    if (!answered) fuse_reply_err(req, EIO);
  }

  fuse_req_t req;
  std::uint32_t index;
  std::size_t size;
  std::uint64_t offset;
  SessionState::OpenFilePtr file;  // null after a zero-message open
  util::Deadline deadline;
  bool answered = false;
};

void serve_read(const image::Image& image, ReadJob& job) {
  util::DeadlineScope scope(job.deadline);  // every wait below ends by then
  std::unique_ptr<std::byte[]> buf(new std::byte[job.size]);  // not zeroed: every byte is overwritten
  auto n = image.content().read(job.index, job.offset, std::span(buf.get(), job.size), job.file.get());
  job.answered = true;
  if (!n) {
    spdlog::error("{}", n.error().message);
    // A deadline that passed is EIO to the reader, as any other failure to produce the bytes.
    int err = n.error().code == std::errc::timed_out ? EIO : n.error().errno_value();
    return (void)fuse_reply_err(job.req, err ? err : EIO);
  }
  fuse_reply_buf(job.req, reinterpret_cast<const char*>(buf.get()), *n);
}

void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  guarded(req, "read", [&] {
    auto& state = state_of(req);
    std::uint32_t index;
    if (!to_index(state.image, ino, index) || off < 0) return (void)fuse_reply_err(req, EINVAL);
    auto job = std::make_shared<ReadJob>(req, index, std::min(size, kMaxRead), static_cast<std::uint64_t>(off),
                                         state.file_for(fi->fh, index),
                                         util::Clock::now() + state.read_timeout);
    // Served on this thread while at most half the request threads are serving reads: a
    // hand-over costs a thread wake-up, ~0.1 ms a read here (random 4 KiB reads of the bench
    // image, p50: 0.55-0.65 ms served here, 0.68-0.8 ms through the pool). Beyond that, the pool:
    // the other half stay free for everything else (`ls -lR /usr` of the bench image while 32
    // reads wait on a stalled registry: 0.29 s with 2 of 4 threads free, 0.44 s with 1).
    if (state.inline_reads.fetch_add(1) < state.max_inline_reads) {
      // The job answers EIO itself if serving it throws (guarded must not answer a second time).
      (void)util::catch_all("serve a read", [&] { serve_read(state.image, *job); });
      state.inline_reads.fetch_sub(1);
      return;
    }
    state.inline_reads.fetch_sub(1);
    bool queued = false;
    try {
      queued = state.reads.submit([job, &image = state.image] { serve_read(image, *job); });
    } catch (const std::bad_alloc&) {
    }
    if (!queued) {
      job->answered = true;
      spdlog::warn("read of inode {}: too many reads waiting; answered EIO", ino);
      fuse_reply_err(req, EIO);
    }
  });
}

void op_release(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  state_of(req).release_file(fi->fh);
  fuse_reply_err(req, 0);
}

void op_opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  guarded(req, "opendir", [&] {
    const auto& image = image_of(req);
    std::uint32_t index;
    if (!to_index(image, ino, index)) return (void)fuse_reply_err(req, ESTALE);
    if (!image.tree().inode(index).is_dir()) return (void)fuse_reply_err(req, ENOTDIR);
    if (state_of(req).zero_message_opendir) return (void)fuse_reply_err(req, ENOSYS);
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
  });
}

// Directory offsets: 1 after ".", 2 after "..", 2 + i + 1 after child i.
void list_dir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  guarded(req, plus ? "readdirplus" : "readdir", [&] {
    const auto& image = image_of(req);
    const auto& tree = image.tree();
    std::uint32_t index;
    if (!to_index(image, ino, index)) return (void)fuse_reply_err(req, ESTALE);
    const auto& dir = tree.inode(index);
    auto children = tree.children(dir);
    std::vector<char> buf(std::min<size_t>(size, 1u << 20));
    size_t used = 0;
    auto add = [&](const char* name, std::uint32_t child, off_t next) {
      size_t room = buf.size() - used;
      size_t n;
      if (plus) {
        auto e = entry_for(tree, child);
        n = fuse_add_direntry_plus(req, buf.data() + used, room, name, &e, next);
      } else {
        struct stat st {};
        st.st_ino = child + 1;
        st.st_mode = tree.inode(child).mode;
        n = fuse_add_direntry(req, buf.data() + used, room, name, &st, next);
      }
      if (n > room) return false;
      used += n;
      return true;
    };
    std::string name;
    for (off_t at = std::max<off_t>(off, 0); at < static_cast<off_t>(children.size()) + 2; ++at) {
      bool fits;
      if (at == 0) {
        fits = add(".", index, 1);
      } else if (at == 1) {
        fits = add("..", dir.parent, 2);
      } else {
        const auto& d = children[at - 2];
        name.assign(tree.str(d.name));
        fits = add(name.c_str(), d.inode, at + 1);
      }
      if (!fits) break;
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  list_dir(req, ino, size, off, false);
}
void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info*) {
  list_dir(req, ino, size, off, true);
}
void op_releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

// Answers an xattr query the way getxattr(2)/listxattr(2) expect: size 0 asks for the length,
// a buffer too small is ERANGE.
void reply_sized(fuse_req_t req, std::string_view value, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, value.size());
  } else if (size < value.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

// The image's numbers and, under "supervision", the supervisor's (pids, restarts).
std::string status_document(const SessionState& state) {
  std::string doc = state.image.status_json();
  if (state.supervision_json.empty()) return doc;
  auto json = nlohmann::json::parse(doc, nullptr, false);
  if (json.is_discarded()) return doc;
  json["supervision"] = nlohmann::json::parse(state.supervision_json, nullptr, false);
  return json.dump();
}

void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  guarded(req, "getxattr", [&] {
    const auto& image = image_of(req);
    std::uint32_t index;
    if (!to_index(image, ino, index)) return (void)fuse_reply_err(req, ESTALE);
    const auto& tree = image.tree();
    for (const auto& x : tree.xattrs(tree.inode(index))) {
      if (tree.str(x.name) == name) return reply_sized(req, tree.str(x.value), size);
    }
    if (ino == FUSE_ROOT_ID && name == kStatusXattr) return reply_sized(req, status_document(state_of(req)), size);
    fuse_reply_err(req, ENODATA);
  });
}

void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  guarded(req, "listxattr", [&] {
    const auto& image = image_of(req);
    std::uint32_t index;
    if (!to_index(image, ino, index)) return (void)fuse_reply_err(req, ESTALE);
    const auto& tree = image.tree();
    std::string names;
    for (const auto& x : tree.xattrs(tree.inode(index))) {
      names.append(tree.str(x.name));
      names.push_back('\0');
    }
    reply_sized(req, names, size);
  });
}

void op_statfs(fuse_req_t req, fuse_ino_t) {
  guarded(req, "statfs", [&] {
    const auto& image = image_of(req);
    struct statvfs sv {};
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    std::uint64_t bytes = 0;
    for (const auto& layer : image.layers()) bytes += layer.decoded_size;
    sv.f_blocks = (bytes + 4095) / 4096;
    sv.f_files = image.tree().inode_count();
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
  });
}

void op_access(fuse_req_t req, fuse_ino_t, int mask) { fuse_reply_err(req, (mask & W_OK) ? EROFS : 0); }

// Every path that would change the tree.
void op_setattr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) { fuse_reply_err(req, EROFS); }
void op_mknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) { fuse_reply_err(req, EROFS); }
void op_mkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { fuse_reply_err(req, EROFS); }
void op_unlink(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_symlink(fuse_req_t req, const char*, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned) { fuse_reply_err(req, EROFS); }
void op_link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_write(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, fuse_file_info*) { fuse_reply_err(req, EROFS); }
void op_create(fuse_req_t req, fuse_ino_t, const char*, mode_t, fuse_file_info*) { fuse_reply_err(req, EROFS); }
void op_setxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) { fuse_reply_err(req, EROFS); }
void op_removexattr(fuse_req_t req, fuse_ino_t, const char*) { fuse_reply_err(req, EROFS); }
void op_fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, fuse_file_info*) { fuse_reply_err(req, EROFS); }

fuse_lowlevel_ops make_operations() {
  fuse_lowlevel_ops ops{};
  ops.init = op_init;
  ops.lookup = op_lookup;
  ops.forget = op_forget;
  ops.forget_multi = op_forget_multi;
  ops.getattr = op_getattr;
  ops.readlink = op_readlink;
  ops.open = op_open;
  ops.read = op_read;
  ops.release = op_release;
  ops.opendir = op_opendir;
  ops.readdir = op_readdir;
  ops.readdirplus = op_readdirplus;
  ops.releasedir = op_releasedir;
  ops.getxattr = op_getxattr;
  ops.listxattr = op_listxattr;
  ops.statfs = op_statfs;
  ops.access = op_access;
  ops.setattr = op_setattr;
  ops.mknod = op_mknod;
  ops.mkdir = op_mkdir;
  ops.unlink = op_unlink;
  ops.rmdir = op_unlink;
  ops.symlink = op_symlink;
  ops.rename = op_rename;
  ops.link = op_link;
  ops.write = op_write;
  ops.create = op_create;
  ops.setxattr = op_setxattr;
  ops.removexattr = op_removexattr;
  ops.fallocate = op_fallocate;
  return ops;
}

}  // namespace

SessionState::SessionState(const image::Image& served, const MountOptions& options)
    : image(served),
      reads("read", options.read_threads, options.max_queued_reads),
      max_inline_reads(std::max(1u, options.threads) / 2),
      read_timeout(options.read_timeout),
      open_handles_wanted(std::any_of(served.layers().begin(), served.layers().end(),
                                      [](const image::LayerInfo& l) { return l.per_frame; })),
      supervision_json(options.supervision_json),
      next_handle_((options.server_generation << 40) | 1) {}

std::uint64_t SessionState::open_file(std::uint32_t index) {
  OpenFilePtr file = image.content().open(index);
  std::lock_guard lock(handles_mutex_);
  std::uint64_t handle = next_handle_++;
  handles_.emplace(handle, std::move(file));
  return handle;
}

SessionState::OpenFilePtr SessionState::file_for(std::uint64_t handle, std::uint32_t index) {
  if (handle == 0) return nullptr;  // opened without a message: no state wanted
  std::lock_guard lock(handles_mutex_);
  auto& file = handles_[handle];
  if (!file) file = image.content().open(index);  // a handle from an earlier server
  return file;
}

void SessionState::release_file(std::uint64_t handle) {
  std::lock_guard lock(handles_mutex_);
  handles_.erase(handle);
}

const fuse_lowlevel_ops& operations() {
  static const fuse_lowlevel_ops ops = make_operations();
  return ops;
}

}  // namespace ocifs::fuse
