// Daemon: `ocifs mount` detaches before it does any work, so that no thread (indexing pools,
// read-ahead, later the HTTP client's) ever exists at fork time — a mutex held by a thread that
// a fork left behind would hang the daemon. The child resolves, indexes and mounts while the
// parent waits; the parent exits 0 once the child reports the mount live, or with the child's
// status (whose messages went to the same terminal) if it fails first.
#pragma once

#include "ocifs/util/result.hpp"

namespace ocifs::cli {

class Daemon {
 public:
  // Forks. Returns only in the child; the parent waits for the child's verdict and exits.
  static Result<Daemon> detach();

  Daemon(Daemon&& other) noexcept;
  ~Daemon();

  // The mount is live: stop sharing the terminal (new session, cwd /, stdio to /dev/null, log
  // to syslog) and release the waiting parent with exit status 0.
  Result<void> ready();

  // The part of ready() that lets go of the terminal: stdio to /dev/null, log to syslog (a
  // supervised mount's first server does it when its supervisor has).
  static void leave_terminal();

  // Logs to stderr through a sink that leave_terminal() redirects to syslog in place, safe while
  // other threads log (replacing the default logger then would free it under them).
  static void log_to_redirectable_stderr();

 private:
  explicit Daemon(int notify_fd) : notify_fd_(notify_fd) {}
  int notify_fd_;
};

}  // namespace ocifs::cli
