#include "credentials_input.hpp"

#include <fcntl.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "ocifs/io/fd.hpp"
#include "ocifs/io/full_io.hpp"

namespace ocifs::cli {

namespace {

// 64 KiB: registry passwords and tokens are at most a few KiB (an ECR token is ~2.5 KiB); more
// than this is not a credentials line.
constexpr std::size_t kMaxCredentials = 64u << 10;

void overwrite(char* value) { std::memset(value, 'x', std::strlen(value)); }

// Reads from `fd` up to the first newline (dropped, with a '\r' before it) or the end.
Result<std::string> read_line(int fd, std::string_view what) {
  std::string line;
  char c;
  for (;;) {
    // A byte at a time: nothing after the line is consumed (standard input may go on).
    auto t = io::read_full(fd, std::as_writable_bytes(std::span(&c, 1)));
    if (!t.ok()) return util::errno_error(t.error, fmt::format("cannot read the credentials from {}", what));
    if (t.done == 0 || c == '\n') break;
    if (line.size() >= kMaxCredentials) {
      return make_error(std::errc::file_too_large,
                        "cannot read the credentials from {}: its first line is longer than {} bytes", what,
                        kMaxCredentials);
    }
    line += c;
  }
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

// Standard input; on a terminal with a prompt and without echo, as `docker login` asks.
Result<std::string> read_stdin() {
  termios saved{};
  const bool terminal = ::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &saved) == 0;
  if (terminal) {
    termios quiet = saved;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    constexpr std::string_view kPrompt = "Registry credentials (USER:PASSWORD): ";
    io::write_full(STDERR_FILENO, kPrompt);
  }
  auto line = read_line(STDIN_FILENO, "standard input (--creds -)");
  if (terminal) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved);
    io::write_full(STDERR_FILENO, "\n");
  }
  return line;
}

Result<std::string> read_file(const std::string& path) {
  io::Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return util::errno_error(errno, fmt::format("cannot read the credentials in {}", path));
  return read_line(fd.get(), path);
}

Result<std::string> checked(std::string value, std::string_view what) {
  if (value.find(':') == std::string::npos) {
    return make_error(std::errc::bad_message,
                      "cannot use the credentials from {}: expected USER:PASSWORD, found {}", what,
                      value.empty() ? "nothing" : "no ':'");
  }
  return value;
}

}  // namespace

std::optional<std::string> scrub_secrets(int argc, char** argv) {
  constexpr std::string_view kOption = "--creds";
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == kOption && i + 1 < argc) {
      if (std::string_view(argv[i + 1]) != "-") overwrite(argv[i + 1]);
      ++i;
    } else if (arg.starts_with(kOption) && arg.size() > kOption.size() && arg[kOption.size()] == '=') {
      if (arg.substr(kOption.size() + 1) != "-") overwrite(argv[i] + kOption.size() + 1);
    }
  }
  char* env = std::getenv(kCredsEnv);
  if (!env) return std::nullopt;
  std::string value(env);
  overwrite(env);         // the bytes /proc/PID/environ shows
  ::unsetenv(kCredsEnv);  // and no child inherits it
  return value;
}

Result<void> load_credentials(CommonOptions& common) {
  if (!common.creds.empty() && !common.creds_file.empty()) {
    return make_error(
        std::errc::invalid_argument,
        "cannot take credentials from both --creds and a file (--creds-file, creds_file=): use one");
  }
  if (common.creds == "-") {
    OCIFS_ASSIGN(auto line, read_stdin());
    OCIFS_ASSIGN(common.creds, checked(std::move(line), "standard input (--creds -)"));
  } else if (!common.creds_file.empty()) {
    OCIFS_ASSIGN(auto line, read_file(common.creds_file));
    OCIFS_ASSIGN(common.creds, checked(std::move(line), common.creds_file));
  } else if (common.creds.empty() && common.creds_env) {
    OCIFS_ASSIGN(common.creds, checked(*common.creds_env, kCredsEnv));
  }
  return util::success();
}

}  // namespace ocifs::cli
