// MountTable: what /proc/self/mountinfo says is mounted at a path, bottom to top. A writable
// ocifs root is two mounts on one mountpoint (overlayfs over the FUSE mount, writable_root.hpp);
// `ocifs umount` and `ocifs status` read the stack to find both.
#pragma once

#include <string>
#include <vector>

#include "ocifs/util/result.hpp"

namespace ocifs::cli {

struct MountEntry {
  int id = 0;
  int parent = 0;
  std::string mountpoint;
  std::string fstype;  // "fuse.ocifs", "overlay", …
  std::string source;
};

// The mounts whose mountpoint is `path` (made absolute and canonical), the covered one first.
Result<std::vector<MountEntry>> mounts_at(const std::string& path);

// True when the stack is an overlay directly over an ocifs FUSE mount: a writable root.
bool is_writable_root(const std::vector<MountEntry>& stack);

// Enters a private mount namespace in which the overlay at `mountpoint` is gone, so that the
// ocifs mount it covers answers at `mountpoint` (for `ocifs status`). Needs CAP_SYS_ADMIN, as
// the overlay itself did. Only this process is affected.
Result<void> uncover_in_private_namespace(const std::string& mountpoint);

}  // namespace ocifs::cli
