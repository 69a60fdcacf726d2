#include "daemon.hpp"

#include <fcntl.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <utility>

#include "ocifs/io/full_io.hpp"

namespace ocifs::cli {

namespace {

constexpr char kReady = 'R';  // any byte the child writes only once the mount is live

// The parent: waits for the child's ready byte; without it, the child failed (or died) and its
// exit status is ours.
[[noreturn]] void wait_for_child(pid_t child, int notify_fd) {
  std::byte byte{};
  if (io::read_some(notify_fd, std::span(&byte, 1)).done == 1 && byte == std::byte{kReady}) std::_Exit(0);
  int status = 0;
  io::retry_on_eintr([&] { return ::waitpid(child, &status, 0); });
  std::_Exit(WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1);
}

}  // namespace

Result<Daemon> Daemon::detach() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return util::errno_error(errno, "cannot detach: pipe");
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) return util::errno_error(errno, "cannot detach: fork");
  if (child > 0) {
    ::close(fds[1]);
    wait_for_child(child, fds[0]);
  }
  ::close(fds[0]);
  return Daemon(fds[1]);
}

Daemon::Daemon(Daemon&& other) noexcept : notify_fd_(std::exchange(other.notify_fd_, -1)) {}

Daemon::~Daemon() {
  if (notify_fd_ >= 0) ::close(notify_fd_);  // without ready(): the parent reports our failure
}

namespace {

// Set by log_to_redirectable_stderr and never destroyed: threads may log until the process ends.
// A heap shared_ptr held by this pointer, so no exit-time destructor runs and the sink stays
// reachable (not a leak to LeakSanitizer).
std::shared_ptr<spdlog::sinks::dist_sink_mt>* redirectable = nullptr;

}  // namespace

void Daemon::log_to_redirectable_stderr() {
  auto stderr_sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  stderr_sink->set_pattern("ocifs: %^%l%$: %v");
  auto sink = std::make_shared<spdlog::sinks::dist_sink_mt>(std::vector<spdlog::sink_ptr>{stderr_sink});
  redirectable = new std::shared_ptr<spdlog::sinks::dist_sink_mt>(sink);  // never released
  auto logger = std::make_shared<spdlog::logger>("ocifs", sink);
  logger->set_level(spdlog::get_level());
  spdlog::set_default_logger(logger);
}

void Daemon::leave_terminal() {
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) ::dup2(null, fd);
    ::close(null);
  }
  // Nobody reads stderr any more: warnings and errors go to syslog.
  auto syslog = std::make_shared<spdlog::sinks::syslog_sink_mt>("ocifs", LOG_PID, LOG_DAEMON, false);
  if (redirectable) {
    (*redirectable)->set_sinks({syslog});
    return;
  }
  auto logger = std::make_shared<spdlog::logger>("ocifs", syslog);
  logger->set_level(spdlog::get_level());
  spdlog::set_default_logger(logger);
}

Result<void> Daemon::ready() {
  ::setsid();
  if (::chdir("/") != 0) return util::errno_error(errno, "cannot detach: chdir /");
  leave_terminal();
  const std::byte byte{kReady};
  io::write_full(notify_fd_, std::span(&byte, 1));
  ::close(std::exchange(notify_fd_, -1));
  return util::success();
}

}  // namespace ocifs::cli
