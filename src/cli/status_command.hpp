// `ocifs status MOUNTPOINT [--json]`: what a live mount has fetched and served, per layer. The
// daemon answers a getxattr of fuse::kStatusXattr on the mount's root (no socket to find, and
// only who can see the mount can ask); the name is never listed, so the tree stays the image's.
#pragma once

#include <chrono>
#include <string>

namespace ocifs::cli {

int run_status(const std::string& mountpoint, bool json);

// `ocifs remount MOUNTPOINT`: the mount's supervisor starts a server from the ocifs binary now
// installed and retires the old one once the new one serves (supervisor.hpp); waits for that.
int run_remount(const std::string& mountpoint, std::chrono::seconds timeout);

}  // namespace ocifs::cli
