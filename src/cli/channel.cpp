#include "channel.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "ocifs/io/full_io.hpp"

namespace ocifs::cli {

namespace {

// Configurations and FUSE_INIT requests are small; a message longer than this is refused.
constexpr std::size_t kMaxMessage = 1 << 20;

}  // namespace

Result<void> send_message(int socket, const std::string& text, int fd) {
  iovec iov{const_cast<char*>(text.data()), text.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  if (io::retry_on_eintr([&] { return ::sendmsg(socket, &msg, MSG_NOSIGNAL); }) < 0) return util::errno_error(errno, "cannot send to the server channel");
  return util::success();
}

Result<Message> receive_message(int socket, std::optional<std::chrono::milliseconds> timeout) {
  if (timeout) {
    pollfd p{socket, POLLIN, 0};
    if (io::retry_on_eintr([&] { return ::poll(&p, 1, static_cast<int>(timeout->count())); }) == 0) return make_error(std::errc::timed_out, "no message on the server channel in time");
  }
  std::vector<char> buf(kMaxMessage);
  iovec iov{buf.data(), buf.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = io::retry_on_eintr([&] { return ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC); });
  if (n < 0) return util::errno_error(errno, "cannot receive from the server channel");
  Message out;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(&out.fd, CMSG_DATA(c), sizeof(int));
  }
  if (msg.msg_flags & MSG_TRUNC) return make_error(std::errc::message_size, "a server channel message is too long");
  out.text.assign(buf.data(), static_cast<std::size_t>(n));
  return out;
}

}  // namespace ocifs::cli
