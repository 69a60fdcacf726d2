// Supervisor: keeps a mount's FUSE connection alive across the death of its server.
//
// `ocifs mount` becomes the supervisor (after detaching): a small single-threaded process that
// mounts the /dev/fuse connection, keeps its descriptor and the kernel's FUSE_INIT request, and
// starts server processes (`ocifs: server MNT`, the installed binary, exec'd fresh) that open
// the image and serve. It never parses image data and never touches the network. When a server
// dies — any signal, a crash — the supervisor asks the kernel to resend what that server had read
// but not answered (FUSE_NOTIFY_RESEND) and starts the next one on the same descriptor: inode
// numbers come from the immutable tree and file handles carry no state a new server cannot
// rebuild (fuse/operations.hpp), so processes using the mount only wait.
//
// Servers that die before serving (or by themselves, not SIGKILL, within a second of it) count
// as a crash loop: restarted after 0.25, 0.5, 1, 2 s; after the fifth in a row the supervisor
// answers every request EIO itself, logging why, until `ocifs remount` (SIGHUP) starts a server
// that serves, or unmount.
// SIGHUP starts a new server from the installed binary and retires the old one (SIGKILL, its
// requests resent) once the new one serves: a live upgrade. SIGTERM unmounts. The supervisor
// ends when the connection does.
#pragma once

#include <optional>

#include "commands.hpp"
#include "daemon.hpp"
#include "ocifs/fuse/fuse_server.hpp"
#include "writable_root.hpp"

namespace ocifs::cli {

// Runs the mount to its end; the exit status of `ocifs mount` (or of the supervisor daemon).
int supervise_mount(const MountArgs& args, const fuse::MountOptions& options, const WritableRoot& writable,
                    std::optional<Daemon> daemon);


}  // namespace ocifs::cli
