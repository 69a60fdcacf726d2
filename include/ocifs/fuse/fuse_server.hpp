// FuseServer: serves one Image at a mountpoint through the libfuse 3 low-level API. mount()
// returns once the kernel mount exists; run() serves requests on a few threads until unmounted.
// The op handlers read the immutable Tree without locks and answer at once; reads, which may
// wait for data, are served on a request thread while half of them stay free, else handed
// to a pool of read threads, each within MountOptions::read_timeout (EIO after it). Per-open-file state lives in the file handle. This header keeps libfuse types out of the CLI; src/fuse alone includes <fuse_lowlevel.h>.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/image/image.hpp"

namespace ocifs::fuse {

// getxattr of this name on the mount's root answers Image::status_json() (`ocifs status`). It is
// not listed by listxattr, so the tree's xattrs stay exactly the image's.
inline constexpr std::string_view kStatusXattr = "ocifs.status";

struct MountOptions {
  std::string fsname;                // shown in /proc/mounts (the image reference)
  bool allow_other = false;
  bool dev = false;                  // honour device nodes (default nodev)
  bool suid = false;                 // honour setuid bits (default nosuid)
  bool debug = false;                // libfuse request log
  std::vector<std::string> extra;    // other -o options passed to libfuse as given
  unsigned threads = 4;              // request threads (2 cores: more only adds contention)
  // Threads that serve reads, off the request threads. Why 8: a read waiting on the network
  // costs a thread and no CPU; 8 keep 8 files fetching at once (a VM booting, a parallel grep),
  // and reads beyond that queue, each within its deadline.
  unsigned read_threads = 8;
  std::size_t max_queued_reads = 4096;  // beyond: EIO at once (the kernel keeps far fewer in flight)
  std::chrono::milliseconds read_timeout{30'000};  // a read's deadline, queueing included
};

class FuseServer {
 public:
  static Result<std::unique_ptr<FuseServer>> mount(const image::Image& image, const std::string& mountpoint,
                                                   const MountOptions& options);
  ~FuseServer();

  // Serves requests until the filesystem is unmounted or a signal arrives.
  Result<void> run();

  // Ends run() from another thread: detaches the mount (root only), which ends the connection.
  void stop();

  // After run() has returned: ends the kernel connection, so that whatever still waits on it
  // (a writable root's overlay being stacked) fails at once instead of waiting for a reply.
  void disconnect();

  struct Impl;

 private:
  explicit FuseServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocifs::fuse
