#include "mount_table.hpp"

#include <sched.h>
#include <sys/mount.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace ocifs::cli {

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape(const std::string& field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      int value = 0;
      bool octal = true;
      for (std::size_t k = 1; k <= 3; ++k) {
        char c = field[i + k];
        if (c < '0' || c > '7') octal = false;
        value = value * 8 + (c - '0');
      }
      if (octal) {
        out += static_cast<char>(value);
        i += 3;
        continue;
      }
    }
    out += field[i];
  }
  return out;
}

}  // namespace

Result<std::vector<MountEntry>> mounts_at(const std::string& path) {
  char resolved[PATH_MAX];
  if (!::realpath(path.c_str(), resolved)) return util::errno_error(errno, path);
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return util::errno_error(errno, "/proc/self/mountinfo");
  std::vector<MountEntry> all;
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    MountEntry e;
    std::string devno, root, point, word;
    fields >> e.id >> e.parent >> devno >> root >> point;
    while (fields >> word && word != "-") {
    }
    fields >> e.fstype >> e.source;
    e.mountpoint = unescape(point);
    e.source = unescape(e.source);
    if (e.mountpoint == resolved) all.push_back(std::move(e));
  }
  // Order by stacking: each mount's parent is the one it covers.
  std::vector<MountEntry> stack;
  for (const auto& e : all) {
    bool covers_one = false;
    for (const auto& other : all) covers_one |= (e.parent == other.id);
    if (!covers_one) stack.push_back(e);
  }
  while (!stack.empty()) {
    bool grew = false;
    for (const auto& e : all) {
      if (e.parent == stack.back().id) {
        stack.push_back(e);
        grew = true;
        break;
      }
    }
    if (!grew) break;
  }
  return stack;
}

bool is_writable_root(const std::vector<MountEntry>& stack) {
  return stack.size() >= 2 && stack.back().fstype == "overlay" && stack[stack.size() - 2].fstype == "fuse.ocifs";
}

Result<void> uncover_in_private_namespace(const std::string& mountpoint) {
  if (::unshare(CLONE_NEWNS) != 0) return util::errno_error(errno, "cannot enter a private mount namespace");
  // Private first: the unmount below must not propagate to the caller's namespace.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return util::errno_error(errno, "cannot make the mount namespace private");
  }
  if (::umount2(mountpoint.c_str(), MNT_DETACH) != 0) {
    return util::errno_error(errno, "cannot look beneath the overlay at " + mountpoint);
  }
  return util::success();
}

}  // namespace ocifs::cli
