// FuseServer: serves one Image through the libfuse 3 low-level API on a /dev/fuse connection
// that the supervisor mounted and holds (cli/supervisor.hpp, fuse/device.hpp): adopt() takes the
// descriptor and the kernel's FUSE_INIT request, which it replays into its session (libfuse 3.14
// has no other way into an initialised connection: the first server's answer completes the
// kernel's INIT, a later server's answer is refused by the kernel as unknown, harmlessly); run()
// serves requests on a few threads until unmounted.
// The op handlers read the immutable Tree without locks and answer at once; reads, which may
// wait for data, are served on a request thread while half of them stay free, else handed
// to a pool of read threads, each within MountOptions::read_timeout (EIO after it). File
// handles name per-open-file state a later server can rebuild (fuse/operations.hpp). This header
// keeps libfuse types out of the CLI; src/fuse alone includes <fuse_lowlevel.h>.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ocifs/util/result.hpp"

namespace ocifs::image {
class Image;  // only referred to: the CLI, which includes this header, needs no more of it
}  // namespace ocifs::image

namespace ocifs::fuse {

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
  // Which server of the mount this is (0, 1, …): the high bits of its file handles, so that a
  // handle the kernel got from an earlier server never names a file opened by this one.
  std::uint64_t server_generation = 0;
  std::string supervision_json;  // {"server_pid": …, "restarts": …}: merged into the status
};

// The -o string libfuse mounts with (ro, dev/nodev, suid/nosuid, fsname, …).
std::string mount_option_string(const MountOptions& options);

class FuseServer {
 public:
  static Result<std::unique_ptr<FuseServer>> adopt(const image::Image& image, int device_fd,
                                                   const std::vector<std::byte>& init_request,
                                                   const MountOptions& options);
  ~FuseServer();

  // Serves requests until the connection ends (unmounted). No signal handlers: a signal that
  // kills the server kills it at once, and the supervisor has the kernel resend what it held.
  Result<void> run();

  struct Impl;

 private:
  explicit FuseServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocifs::fuse
