#include "ocifs/registry/credential_helper.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>

#include "ocifs/io/full_io.hpp"
#include "ocifs/registry/retry_budget.hpp"
#include "ocifs/util/text.hpp"

extern char** environ;

namespace ocifs::registry {

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

bool valid_helper_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '_' || c == '.';
  });
}

std::string first_line(std::string_view text) {
  text = util::trim(text);
  return std::string(util::trim(text.substr(0, std::min<std::size_t>(text.find('\n'), 200))));
}

bool says_not_found(std::string_view out) {
  std::string lower(out);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  return lower.find("credentials not found") != std::string::npos;
}

// Writes all of `data` to a pipe whose reader may already be gone: SIGPIPE is blocked for this
// thread meanwhile and a pending one it caused is consumed, so the process never sees it.
bool write_all_nosigpipe(int fd, std::string_view data) {
  sigset_t pipe_set, old_set, pending;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  sigemptyset(&pending);
  sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
  auto t = io::write_full(fd, data);
  if (t.error == EPIPE && !was_pending) {
    timespec zero{};
    io::retry_on_eintr([&] { return sigtimedwait(&pipe_set, nullptr, &zero); });
  }
  pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
  return t.ok();
}

}  // namespace

Result<std::optional<Credentials>> run_credential_helper(std::string_view name, std::string_view server_url,
                                                         std::chrono::milliseconds timeout) {
  std::string program = fmt::format("docker-credential-{}", name);
  auto fail = [&](std::string_view why) {
    return make_error(std::errc::permission_denied, "cannot get credentials for {} from {}: {}", server_url,
                      program, why);
  };
  if (!valid_helper_name(name)) return fail("not a valid helper name");

  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) return util::errno_error(errno, "cannot create a pipe for " + program);
  Fd in_r(in[0]), in_w(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) return util::errno_error(errno, "cannot create a pipe for " + program);
  Fd out_r(out[0]), out_w(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) return util::errno_error(errno, "cannot create a pipe for " + program);
  Fd err_r(err[0]), err_w(err[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // dup2 onto 0/1/2 clears close-on-exec for the copies; every other descriptor of ours (and of
  // other threads spawning at the same time) is close-on-exec and does not leak into the helper.
  posix_spawn_file_actions_adddup2(&actions, in_r.fd, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.fd, 2);
  std::string arg_get = "get";
  char* argv[] = {program.data(), arg_get.data(), nullptr};
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, program.c_str(), &actions, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    if (rc == ENOENT) return fail("the helper is not installed (not found on PATH)");
    return fail(std::strerror(rc));
  }
  in_r.reset();
  out_w.reset();
  err_w.reset();

  write_all_nosigpipe(in_w.fd, server_url);  // a helper that exits early is judged by its status
  in_w.reset();

  std::string stdout_text, stderr_text;
  auto deadline = Clock::now() + timeout;
  bool timed_out = false;
  std::array<char, 4096> buf;
  while (out_r.fd >= 0 || err_r.fd >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[2];
    nfds_t n = 0;
    if (out_r.fd >= 0) fds[n++] = {out_r.fd, POLLIN, 0};
    if (err_r.fd >= 0) fds[n++] = {err_r.fd, POLLIN, 0};
    int ready = ::poll(fds, n, static_cast<int>(std::min<long long>(left, 1000)));
    if (ready < 0 && errno != EINTR) break;
    for (nfds_t i = 0; i < n; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      auto& target = fds[i].fd == out_r.fd ? stdout_text : stderr_text;
      auto got = io::read_some(fds[i].fd, std::as_writable_bytes(std::span(buf)));
      if (!got.ok() || got.done == 0) {
        (fds[i].fd == out_r.fd ? out_r : err_r).reset();
      } else if (target.size() < (1u << 20)) {
        target.append(buf.data(), got.done);
      }
    }
  }
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  io::retry_on_eintr([&] { return ::waitpid(pid, &status, 0); });
  if (timed_out) return fail(fmt::format("no answer within {} ms; the helper was killed", timeout.count()));

  bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  if (!exited_ok) {
    if (says_not_found(stdout_text) || says_not_found(stderr_text)) return std::optional<Credentials>();
    std::string why = WIFEXITED(status) ? fmt::format("exit status {}", WEXITSTATUS(status))
                                        : fmt::format("killed by signal {}", WTERMSIG(status));
    // On failure helpers print an error message (never the secret): show its first line.
    auto msg = first_line(stdout_text.empty() ? stderr_text : stdout_text);
    return fail(msg.empty() ? why : fmt::format("{}: {}", why, msg));
  }
  auto doc = nlohmann::json::parse(stdout_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) return fail("its answer is not a JSON object");
  auto field = [&](const char* key) -> std::string {
    auto it = doc.find(key);
    return it != doc.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  Credentials creds;
  creds.username = field("Username");
  std::string secret = field("Secret");
  if (creds.username == "<token>") {
    creds.username.clear();
    creds.identity_token = std::move(secret);
  } else {
    creds.password = std::move(secret);
  }
  if (creds.empty()) return std::optional<Credentials>();
  return std::optional<Credentials>(std::move(creds));
}

}  // namespace ocifs::registry
