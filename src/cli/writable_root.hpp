// A writable root over a read-only ocifs mount: kernel overlayfs on the same mountpoint, with
// the FUSE mount beneath as its lower layer. Writes land in the upper directory, never in the
// image; `ocifs umount` takes both down (mount_table.hpp finds the pair).
//
//   --upper DIR   DIR/upper holds the changes (whiteouts included), DIR/work is overlayfs's
//                 scratch: both on DIR's file system, as overlayfs requires; they persist, and
//                 a later mount with the same DIR shows the changes again.
//   --writable    the same on a tmpfs that lives as long as the overlay (its staging mountpoint
//                 is detached at once), so the changes vanish at unmount.
#pragma once

#include <string>

#include "ocifs/util/result.hpp"

namespace ocifs::cli {

struct WritableRoot {
  std::string upper_dir;  // --upper DIR (made absolute); empty with tmpfs
  bool tmpfs = false;     // --writable
  bool dev = false;       // the overlay honours device nodes / setuid bits as the FUSE mount does
  bool suid = false;

  bool wanted() const { return tmpfs || !upper_dir.empty(); }
};

// Checks what can be checked before anything is mounted (root, one kind of upper, DIR usable
// and outside the mountpoint) and makes DIR/upper and DIR/work.
Result<void> prepare_writable_root(WritableRoot& root, const std::string& mountpoint);

// Mounts the overlay at `mountpoint` over the ocifs mount there. The FUSE session must be
// serving: overlayfs looks the lower root up while it mounts.
Result<void> stack_writable_root(const WritableRoot& root, const std::string& mountpoint, const std::string& source);

// The supervisor is ending the mount (SIGTERM): takes the overlay off (lazily) if one is stacked
// at `mountpoint`, so that the unmount that follows removes the ocifs mount beneath it, not the
// overlay, and nothing dead stays behind.
void unstack_writable_root(const std::string& mountpoint);

}  // namespace ocifs::cli
