#include "writable_root.hpp"

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <filesystem>

#include "mount_table.hpp"

namespace ocifs::cli {

namespace {

// overlayfs splits its options at ',' and lowerdir at ':'; a backslash escapes either.
std::string option_path(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c == ',' || c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

Result<void> make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) == 0 || errno == EEXIST) {
    struct stat st {};
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) return util::success();
    return make_error(std::errc::not_a_directory, "{} is not a directory", path);
  }
  return util::errno_error(errno, "cannot create " + path);
}

Result<void> mount_overlay(const std::string& lower, const std::string& upper, const std::string& work,
                           const std::string& mountpoint, const std::string& source, const WritableRoot& root) {
  // redirect_dir=on: rename(2) of a directory from the image works (a redirect xattr in the
  // upper) instead of failing with EXDEV, as a root file system's programs expect.
  std::string options = "lowerdir=" + option_path(lower) + ",upperdir=" + option_path(upper) +
                        ",workdir=" + option_path(work) + ",redirect_dir=on";
  unsigned long flags = (root.dev ? 0 : MS_NODEV) | (root.suid ? 0 : MS_NOSUID);
  if (::mount(source.c_str(), mountpoint.c_str(), "overlay", flags, options.c_str()) != 0) {
    int err = errno;
    return util::errno_error(err, "cannot mount the writable overlay at " + mountpoint +
                                      (err == EINVAL ? " (is the upper directory on overlayfs, FUSE or NFS? "
                                                       "overlayfs needs a local file system such as ext4, xfs or tmpfs)"
                                                     : ""));
  }
  return util::success();
}

}  // namespace

Result<void> prepare_writable_root(WritableRoot& root, const std::string& mountpoint) {
  if (!root.wanted()) return util::success();
  if (root.tmpfs && !root.upper_dir.empty()) {
    return make_error(std::errc::invalid_argument, "--upper and --writable exclude each other: choose one");
  }
  if (::geteuid() != 0) {
    return make_error(std::errc::operation_not_permitted,
                      "{} needs root: overlayfs mounts need CAP_SYS_ADMIN", root.tmpfs ? "--writable" : "--upper");
  }
  if (root.tmpfs) return util::success();
  namespace fs = std::filesystem;
  std::error_code ec;
  auto upper = fs::weakly_canonical(fs::absolute(root.upper_dir, ec), ec);
  auto mnt = fs::weakly_canonical(fs::absolute(mountpoint, ec), ec);
  auto [end, at] = std::mismatch(mnt.begin(), mnt.end(), upper.begin(), upper.end());
  if (end == mnt.end()) {
    return make_error(std::errc::invalid_argument, "the upper directory {} is inside the mountpoint {}: put it elsewhere",
                      upper.string(), mnt.string());
  }
  if (auto made = make_dir(root.upper_dir); !made) return made;
  char resolved[PATH_MAX];
  if (!::realpath(root.upper_dir.c_str(), resolved)) return util::errno_error(errno, root.upper_dir);
  root.upper_dir = resolved;
  for (const char* sub : {"/upper", "/work"}) {
    if (auto made = make_dir(root.upper_dir + sub); !made) return made;
  }
  return util::success();
}

Result<void> stack_writable_root(const WritableRoot& root, const std::string& mountpoint, const std::string& source) {
  if (!root.tmpfs) {
    return mount_overlay(mountpoint, root.upper_dir + "/upper", root.upper_dir + "/work", mountpoint, source, root);
  }
  // The tmpfs is mounted at a staging directory only long enough to make upper/ and work/ and
  // mount the overlay; detached then, it lives on through the overlay's references to it.
  std::error_code ec;
  std::string base = std::filesystem::is_directory("/run", ec) ? "/run" : "/tmp";
  std::string staging = base + "/ocifs-writable-XXXXXX";
  if (!::mkdtemp(staging.data())) return util::errno_error(errno, "cannot create a staging directory in " + base);
  Result<void> done = util::success();
  if (::mount("ocifs-upper", staging.c_str(), "tmpfs", 0, "mode=0755") != 0) {
    done = util::errno_error(errno, "cannot mount a tmpfs for --writable");
  } else {
    std::string upper = staging + "/upper", work = staging + "/work";
    if (::mkdir(upper.c_str(), 0755) != 0 || ::mkdir(work.c_str(), 0755) != 0) {
      done = util::errno_error(errno, "cannot prepare the tmpfs for --writable");
    } else {
      done = mount_overlay(mountpoint, upper, work, mountpoint, source, root);
    }
    ::umount2(staging.c_str(), MNT_DETACH);
  }
  ::rmdir(staging.c_str());
  return done;
}

void unstack_writable_root(const std::string& mountpoint) {
  if (auto stack = mounts_at(mountpoint); stack && is_writable_root(*stack)) ::umount2(mountpoint.c_str(), MNT_DETACH);
}

}  // namespace ocifs::cli
