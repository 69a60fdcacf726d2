// The /dev/fuse connection as the supervisor (cli/supervisor.hpp) holds it, apart from any
// server: mounting it, keeping the kernel's FUSE_INIT request, asking the kernel to resend what a
// dead server had read, and answering EIO when no server can be started. No image data here:
// only message headers.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "ocifs/fuse/fuse_server.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::fuse {

// Mounts MountOptions at `mountpoint` (libfuse's mount, fusermount3 for non-root) and returns
// the connection's descriptor; nobody serves it yet.
Result<int> mount_device(const std::string& mountpoint, const MountOptions& options);

// Reads the first request of a fresh connection, which is the kernel's FUSE_INIT: kept and
// handed to every server, which replays it into its session (FuseServer::adopt).
Result<std::vector<std::byte>> read_init_request(int device_fd);

// FUSE_NOTIFY_RESEND (Linux 6.9): every request a server has read but not answered goes back to
// the queue, for whichever server reads next. false where the kernel does not know it.
bool notify_resend(int device_fd);

// While no server can run: reads one request and answers it EIO (forgets and interrupts get no
// answer), except a getxattr of kStatusXattr on the root, answered `status_document`. false once
// the connection is gone (unmounted), true otherwise.
bool answer_one_with_eio(int device_fd, const std::string& status_document);

// True while the connection is alive (poll shows no POLLERR).
bool device_connected(int device_fd);

}  // namespace ocifs::fuse
