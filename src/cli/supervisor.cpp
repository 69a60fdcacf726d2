#include "supervisor.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <nlohmann/json.hpp>

#include "channel.hpp"
#include "mount_args_json.hpp"
#include "ocifs/fuse/device.hpp"
#include "ocifs/io/full_io.hpp"

extern char** environ;

namespace ocifs::cli {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr int kExitFailure = 1;
constexpr int kChannelFd = 3;                   // where a server finds its channel
// Quick deaths in a row before the supervisor answers EIO itself: with the back-off below, five
// take ~4 s, long enough for a transient cause (memory, a file descriptor limit) to pass, short
// enough that callers are not kept waiting on a server that always crashes.
constexpr int kCrashLoopLimit = 5;
constexpr milliseconds kQuickDeath{1000};       // a server dying by itself sooner after serving: quickly
constexpr milliseconds kFirstBackoff{250};      // doubled for each quick death in a row: 0.25 .. 2 s
// A restarted server opens the image from the cache, normally in well under a second; one that
// has not served after this (a hang; its own network waits have deadlines) is killed. The first
// server has no such limit: a cold mount of a large image takes as long as its layers take to
// arrive and be indexed, bounded by the server's own stall and request deadlines.
constexpr milliseconds kStartTimeout{600'000};
constexpr milliseconds kAdoptTimeout{120'000};  // from being handed the device to serving

// The next signal queued on the signalfd `fd`; false when none is (it is non-blocking).
bool next_signal(int fd, signalfd_siginfo& info) {
  return io::read_some(fd, std::as_writable_bytes(std::span(&info, 1))).done == sizeof info;
}

std::string describe_status(int status) {
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  return "ended";
}

// Servers are started from the binary installed where this one was started from, so that
// after an upgrade (a new file at that path) the next server is the new build.
std::string installed_binary() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "/proc/self/exe";
  std::string path(buf, static_cast<std::size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

// umount2 as root, else fusermount3 (what libfuse would run); lazily: processes still using
// the mount keep what they have open.
void unmount_lazily(const std::string& mountpoint) {
  if (::umount2(mountpoint.c_str(), MNT_DETACH) == 0) return;
  const char* argv[] = {"fusermount3", "-u", "-z", "--", mountpoint.c_str(), nullptr};
  pid_t pid;
  if (posix_spawnp(&pid, "fusermount3", nullptr, nullptr, const_cast<char**>(argv), environ) == 0) {
    ::waitpid(pid, nullptr, 0);
  }
}

struct Server {
  pid_t pid = -1;
  int channel = -1;
  enum class State { starting, opened, serving } state = State::starting;
  Clock::time_point started, serving_since;
  std::uint64_t generation = 0;
  bool retiring = false;  // replaced by a newer server (remount): its death is expected
};

class Supervisor {
 public:
  Supervisor(const MountArgs& args, const fuse::MountOptions& options, const WritableRoot& writable,
             std::optional<Daemon> daemon)
      : args_(args), options_(options), writable_(writable), daemon_(std::move(daemon)), binary_(installed_binary()) {}

  int run();

 private:
  Result<void> start_server(std::optional<Server>& slot);
  int first_start();
  void on_channel(std::optional<Server>& slot);
  void on_exit(pid_t pid, int status);
  void schedule_restart();
  void remount();
  void stop();
  std::string supervision_json(std::uint64_t generation) const;
  std::string failing_status() const;
  void close_server(std::optional<Server>& slot);

  MountArgs args_;
  fuse::MountOptions options_;
  WritableRoot writable_;
  std::optional<Daemon> daemon_;
  std::string binary_;
  int cwd_ = -1;  // the caller's working directory: relative paths in the arguments stay right
  int signals_ = -1;
  int device_ = -1;
  std::vector<std::byte> init_;
  std::optional<Server> current_, next_;  // next_: a newer server starting (restart, remount)
  std::vector<pid_t> retired_;            // servers killed after a remount, not yet reaped
  std::uint64_t generation_ = 0;
  int restarts_ = 0;
  std::string last_reason_;
  int quick_deaths_ = 0;
  std::optional<Clock::time_point> restart_at_;
  bool failing_ = false;        // answering EIO: no server could be started
  bool left_terminal_ = false;  // daemon_->ready() done: servers log to syslog
  bool stopping_ = false;
};

// What `ocifs status` shows while the supervisor answers EIO: no layers, why, and the pids.
std::string Supervisor::failing_status() const {
  auto supervision = nlohmann::json::parse(supervision_json(generation_ ? generation_ - 1 : 0));
  supervision["failing"] = true;
  nlohmann::json doc = {{"image", args_.ref}, {"manifest", "-"}, {"prefetch", "none"},
                        {"layers", nlohmann::json::array()}, {"supervision", supervision}};
  return doc.dump();
}

std::string Supervisor::supervision_json(std::uint64_t generation) const {
  nlohmann::json j = {{"supervisor_pid", ::getpid()},
                      {"restarts", restarts_},
                      {"last_restart_reason", last_reason_},
                      {"server_generation", generation}};
  return j.dump();
}

Result<void> Supervisor::start_server(std::optional<Server>& slot) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return util::errno_error(errno, "cannot make a server channel");
  }
  if (pair[1] == kChannelFd) {  // dup2 onto itself would keep close-on-exec
    int moved = ::fcntl(pair[1], F_DUPFD_CLOEXEC, kChannelFd + 1);
    ::close(pair[1]);
    pair[1] = moved;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (cwd_ >= 0) posix_spawn_file_actions_addfchdir_np(&actions, cwd_);  // before fd 3 is replaced
  posix_spawn_file_actions_adddup2(&actions, pair[1], kChannelFd);        // dup2 clears close-on-exec
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  // Its own process group: a kill of the server's group never takes the supervisor with it.
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  std::string label = "ocifs:", role = "server";
  char* argv[] = {label.data(), role.data(), args_.mountpoint.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawn(&pid, binary_.c_str(), &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  ::close(pair[1]);
  if (rc != 0) {
    ::close(pair[0]);
    return util::errno_error(rc, "cannot start a server from " + binary_);
  }
  Server server;
  server.pid = pid;
  server.channel = pair[0];
  server.started = Clock::now();
  server.generation = generation_++;
  nlohmann::json hello = {{"args", mount_args_to_json(args_)},
                          {"generation", server.generation},
                          {"supervision", supervision_json(server.generation)},
                          {"syslog", left_terminal_}};
  slot = server;
  return send_message(server.channel, hello.dump());
}

void Supervisor::close_server(std::optional<Server>& slot) {
  if (slot && slot->channel >= 0) ::close(slot->channel);
  slot.reset();
}

// The first server: it must open the image before anything is mounted (a refused image is a
// refused mount, its message on the caller's terminal); then the mount, the kernel's INIT, the
// device handed over, and the writable root stacked once it serves. 0, or the exit status.
int Supervisor::first_start() {
  auto fail = [&](const std::string& message) {
    if (!message.empty()) spdlog::error("cannot mount {} at {}: {}", args_.ref, args_.mountpoint, message);
    if (device_ >= 0) unmount_lazily(args_.mountpoint);
    if (current_) {
      ::kill(current_->pid, SIGKILL);
      ::waitpid(current_->pid, nullptr, 0);
    }
    return kExitFailure;
  };
  if (auto started = start_server(current_); !started) return fail(started.error().message);
  // Without limit (see kStartTimeout), but Ctrl-C or SIGTERM while the image is being opened
  // abandons the mount, as it did when one process did everything.
  pollfd waits[2] = {{current_->channel, POLLIN, 0}, {signals_, POLLIN, 0}};
  io::retry_on_eintr([&] { return ::poll(waits, 2, -1); });
  if (!(waits[0].revents & (POLLIN | POLLHUP)) && (waits[1].revents & POLLIN)) {
    signalfd_siginfo info;
    if (next_signal(signals_, info) &&
        (info.ssi_signo == SIGINT || info.ssi_signo == SIGTERM || info.ssi_signo == SIGHUP)) {
      fail("");
      return 128 + static_cast<int>(info.ssi_signo);
    }
  }
  auto reply = receive_message(current_->channel);
  if (!reply || reply->text != "opened") {
    // The server said why on the caller's terminal; its exit status is ours.
    int status = 0;
    if (!reply) ::kill(current_->pid, SIGKILL);
    ::waitpid(current_->pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : kExitFailure;
  }
  auto device = fuse::mount_device(args_.mountpoint, options_);
  if (!device) return fail(device.error().message);
  device_ = *device;
  auto init = fuse::read_init_request(device_);
  if (!init) return fail(init.error().message);
  init_ = std::move(*init);
  std::string request(reinterpret_cast<const char*>(init_.data()), init_.size());
  if (auto sent = send_message(current_->channel, "serve:" + request, device_); !sent) {
    return fail(sent.error().message);
  }
  reply = receive_message(current_->channel, kAdoptTimeout);
  if (!reply || reply->text != "serving") return fail("the server did not start serving");
  current_->state = Server::State::serving;
  current_->serving_since = Clock::now();
  if (writable_.wanted()) {
    if (auto stacked = stack_writable_root(writable_, args_.mountpoint, options_.fsname); !stacked) {
      return fail(stacked.error().message);
    }
  }
  return 0;
}

// A message from a starting server: "opened" (image open: hand it the device), "serving".
void Supervisor::on_channel(std::optional<Server>& slot) {
  auto msg = receive_message(slot->channel, milliseconds(0));
  if (!msg || (msg->text.empty() && msg->fd < 0)) return;  // closed: its exit is reaped below
  if (msg->text == "opened") {
    slot->state = Server::State::opened;
    std::string init(reinterpret_cast<const char*>(init_.data()), init_.size());
    if (auto sent = send_message(slot->channel, "serve:" + init, device_); !sent) {
      spdlog::warn("{}", sent.error().message);
    }
  } else if (msg->text == "serving") {
    slot->state = Server::State::serving;
    slot->serving_since = Clock::now();
    if (&slot == &next_) {
      // A replacement serves: the old one goes (remount), or it ends a spell of EIO answers.
      if (current_) {
        spdlog::info("{}: server {} serves; retiring server {}", args_.mountpoint, next_->pid, current_->pid);
        ::kill(current_->pid, SIGKILL);  // at once: what it held is resent when it is reaped
        retired_.push_back(current_->pid);
        close_server(current_);
      }
      if (failing_) spdlog::warn("{}: a server serves again after a spell of EIO answers", args_.mountpoint);
      failing_ = false;
      current_ = next_;
      next_.reset();
    }
  }
}

void Supervisor::schedule_restart() {
  if (quick_deaths_ >= kCrashLoopLimit) {
    failing_ = true;
    restart_at_.reset();
    spdlog::error("{}: {} servers in a row died within {} ms of starting (last: {}); every request now gets "
                  "EIO until `ocifs remount {}` starts one that serves, or the mount is unmounted",
                  args_.mountpoint, quick_deaths_, kQuickDeath.count(), last_reason_, args_.mountpoint);
    return;
  }
  auto delay = quick_deaths_ == 0 ? milliseconds(0) : kFirstBackoff * (1 << (quick_deaths_ - 1));
  restart_at_ = Clock::now() + delay;
}

void Supervisor::on_exit(pid_t pid, int status) {
  if (std::erase(retired_, pid)) {
    fuse::notify_resend(device_);  // what the retired server had read goes to its successor
    return;
  }
  std::optional<Server>* slot = current_ && current_->pid == pid ? &current_ : next_ && next_->pid == pid ? &next_ : nullptr;
  if (!slot) return;
  Server dead = **slot;
  close_server(*slot);
  if (stopping_ || !fuse::device_connected(device_)) return;  // unmounted: the end
  // Whatever it had read and not answered goes back to the queue for the next server.
  fuse::notify_resend(device_);
  ++restarts_;
  last_reason_ = fmt::format("server {} {}", dead.pid, describe_status(status));
  // A crash loop is a server that cannot get going: dead before serving, or dying on its own
  // (not SIGKILL: an operator, the OOM killer, a remount) within a second of it.
  bool killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  bool quick = dead.state != Server::State::serving || (!killed && Clock::now() - dead.serving_since < kQuickDeath);
  quick_deaths_ = quick ? quick_deaths_ + 1 : 0;
  spdlog::warn("{}: {}; starting another", args_.mountpoint, last_reason_);
  if (slot == &next_ && current_) return;  // a remount's new server failed: the old one serves on
  schedule_restart();
}

void Supervisor::remount() {
  if (next_) return;  // one replacement at a time
  spdlog::info("{}: remount: starting a server from {}", args_.mountpoint, binary_);
  quick_deaths_ = 0;
  if (auto started = start_server(next_); !started) spdlog::error("{}", started.error().message);
}

void Supervisor::stop() {
  stopping_ = true;
  if (writable_.wanted()) unstack_writable_root(args_.mountpoint);
  unmount_lazily(args_.mountpoint);
  for (auto* slot : {&current_, &next_}) {
    if (*slot) ::kill((*slot)->pid, SIGKILL);
  }
}

int Supervisor::run() {
  cwd_ = ::open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  sigset_t mask;
  sigemptyset(&mask);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&mask, s);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  signals_ = ::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

  if (int status = first_start(); status != 0) return status;
  if (daemon_) {
    if (auto ready = daemon_->ready(); !ready) spdlog::error("{}", ready.error().message);
    left_terminal_ = true;
    if (current_) (void)send_message(current_->channel, "detach");
  }

  while (true) {
    if (!stopping_ && !current_ && !next_ && !failing_ && !restart_at_ && fuse::device_connected(device_)) {
      schedule_restart();
    }
    // Answering EIO, except while a replacement starts (it reads the device too: a read here
    // could block until some later request).
    bool answering = failing_ && !next_;
    // The device is watched only while no server serves: a poller on /dev/fuse is woken by every
    // request the kernel queues (20% on `find` when it was always watched). A serving server's
    // exit tells of an unmount.
    bool watch_device = answering || !current_ || current_->state != Server::State::serving;
    std::vector<pollfd> fds = {{signals_, POLLIN, 0},
                               {watch_device ? device_ : -1, static_cast<short>(answering ? POLLIN : 0), 0}};
    if (current_) fds.push_back({current_->channel, POLLIN, 0});
    if (next_) fds.push_back({next_->channel, POLLIN, 0});
    int timeout = -1;
    if (restart_at_) {
      auto wait = std::chrono::duration_cast<milliseconds>(*restart_at_ - Clock::now()).count();
      timeout = static_cast<int>(std::max<long long>(0, wait));
    }
    if (::poll(fds.data(), fds.size(), timeout) < 0 && errno != EINTR) break;

    if (fds[0].revents & POLLIN) {
      signalfd_siginfo info;
      while (next_signal(signals_, info)) {
        if (info.ssi_signo == SIGHUP) remount();
        if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) stop();
      }
      int status = 0;
      pid_t pid;
      while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) on_exit(pid, status);
    }
    // Stopping, and the servers are gone: the device goes too. Its last holder closing it ends
    // the connection, and with it the requests a killed server had read and not answered: a
    // process that stat'ed the mountpoint just then waited for good on a mount nobody served
    // (the lazy unmount keeps the connection while anyone waits on it).
    if (stopping_ && !current_ && !next_ && device_ >= 0) {
      ::close(device_);
      device_ = -1;
    }
    if (answering && (fds[1].revents & POLLIN)) fuse::answer_one_with_eio(device_, failing_status());
    std::size_t at = 2;
    for (auto* slot : {&current_, &next_}) {
      if (*slot && at < fds.size() && fds[at].fd == (*slot)->channel) {
        if (fds[at].revents & POLLIN) on_channel(*slot);
        ++at;
      }
    }
    if (restart_at_ && Clock::now() >= *restart_at_) {
      restart_at_.reset();
      if (auto started = start_server(current_ ? next_ : current_); !started) {
        spdlog::error("{}", started.error().message);
        ++quick_deaths_;
        schedule_restart();
      }
    }
    // A server starting that never gets to serve is killed (and counts as a quick death).
    for (auto* slot : {&current_, &next_}) {
      if (*slot && (*slot)->state != Server::State::serving && Clock::now() - (*slot)->started > kStartTimeout) {
        ::kill((*slot)->pid, SIGKILL);
      }
    }
    bool connected = device_ >= 0 && fuse::device_connected(device_);
    if (!connected && !current_ && !next_ && retired_.empty()) break;  // unmounted, every server gone
    if (!connected && failing_) break;
  }
  return 0;
}

}  // namespace

int supervise_mount(const MountArgs& args, const fuse::MountOptions& options, const WritableRoot& writable,
                    std::optional<Daemon> daemon) {
  Supervisor supervisor(args, options, writable, std::move(daemon));
  return supervisor.run();
}

}  // namespace ocifs::cli
