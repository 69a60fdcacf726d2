#include "ocifs/fuse/device.hpp"

#include <fcntl.h>
#include <linux/fuse.h>
#include <poll.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "new_session.hpp"
#include "ocifs/fuse/status_xattr.hpp"
#include "ocifs/io/full_io.hpp"

namespace ocifs::fuse {

namespace {

constexpr int kNotifyResend = 7;  // FUSE_NOTIFY_RESEND: not in Debian 12's <linux/fuse.h>
// The kernel refuses (EINVAL) a read into less than a header plus max_write, which libfuse
// negotiates up to its largest request (256 pages); ocifs is read-only, so writes never come.
constexpr std::size_t kReadBuffer = (1 << 20) + (64 << 10);

}  // namespace

Result<int> mount_device(const std::string& mountpoint, const MountOptions& options) {
  // A session without operations, only for libfuse's mount code (mount(2) as root, fusermount3
  // otherwise); the descriptor outlives it.
  fuse_lowlevel_ops none{};
  fuse_session* session = new_session(options, none, nullptr);
  if (!session) {
    return make_error(std::errc::invalid_argument, "cannot mount {}: libfuse refused the options '{}'", mountpoint,
                      mount_option_string(options));
  }
  if (fuse_session_mount(session, mountpoint.c_str()) != 0) {
    fuse_session_destroy(session);
    return make_error(std::errc::io_error, "cannot mount {}: the kernel refused the FUSE mount (see above)", mountpoint);
  }
  int fd = ::fcntl(fuse_session_fd(session), F_DUPFD_CLOEXEC, 3);
  int err = errno;
  fuse_session_destroy(session);  // closes its descriptor, not ours; does not unmount
  if (fd < 0) return util::errno_error(err, "cannot keep the FUSE device of " + mountpoint);
  return fd;
}

Result<std::vector<std::byte>> read_init_request(int device_fd) {
  std::vector<std::byte> buf(kReadBuffer);
  auto got = io::read_some(device_fd, buf);  // one read is one request
  if (!got.ok()) return util::errno_error(got.error, "cannot read the FUSE_INIT request");
  const std::size_t n = got.done;
  fuse_in_header header{};
  if (n < sizeof header) {
    return make_error(std::errc::protocol_error, "the first FUSE request is {} bytes long", n);
  }
  std::memcpy(&header, buf.data(), sizeof header);
  if (header.opcode != FUSE_INIT) {
    return make_error(std::errc::protocol_error, "the first FUSE request is opcode {}, not FUSE_INIT", header.opcode);
  }
  buf.resize(n);
  return buf;
}

bool notify_resend(int device_fd) {
  fuse_out_header out{};
  out.len = sizeof out;
  out.error = kNotifyResend;
  out.unique = 0;  // a notification
  return io::write_full(device_fd, std::as_bytes(std::span(&out, 1))).ok();
}

bool answer_one_with_eio(int device_fd, const std::string& status_document) {
  static thread_local std::vector<std::byte> buf(kReadBuffer);
  auto got = io::read_some(device_fd, buf);  // one read is one request
  if (!got.ok()) return got.error != ENODEV;  // ENODEV: unmounted
  const std::size_t n = got.done;
  fuse_in_header in{};
  if (n < sizeof in) return true;
  std::memcpy(&in, buf.data(), sizeof in);
  if (in.opcode == FUSE_FORGET || in.opcode == FUSE_BATCH_FORGET || in.opcode == FUSE_INTERRUPT) return true;
  fuse_out_header out{};
  out.len = sizeof out;
  out.error = -EIO;
  out.unique = in.unique;
  // `ocifs status` and `ocifs remount` still reach the supervisor: getxattr of kStatusXattr on
  // the root is the one request answered.
  fuse_getxattr_in xin{};
  const char* name = reinterpret_cast<const char*>(buf.data()) + sizeof in + sizeof xin;
  std::size_t room = n - sizeof in;
  if (in.opcode == FUSE_GETXATTR && in.nodeid == FUSE_ROOT_ID && room > sizeof xin &&
      std::string_view(name, ::strnlen(name, room - sizeof xin)) == kStatusXattr) {
    std::memcpy(&xin, buf.data() + sizeof in, sizeof xin);
    fuse_getxattr_out size_out{};
    size_out.size = static_cast<std::uint32_t>(status_document.size());
    iovec iov[2] = {{&out, sizeof out}, {}};
    out.error = 0;
    if (xin.size == 0) {
      iov[1] = {&size_out, sizeof size_out};
    } else if (xin.size >= status_document.size()) {
      iov[1] = {const_cast<char*>(status_document.data()), status_document.size()};
    } else {
      out.error = -ERANGE;
    }
    out.len = static_cast<std::uint32_t>(sizeof out + (out.error ? 0 : iov[1].iov_len));
    io::retry_on_eintr([&] { return ::writev(device_fd, iov, out.error ? 1 : 2); });
    return true;
  }
  io::write_full(device_fd, std::as_bytes(std::span(&out, 1)));
  return true;
}

bool device_connected(int device_fd) {
  pollfd p{device_fd, 0, 0};
  return ::poll(&p, 1, 0) >= 0 && !(p.revents & (POLLERR | POLLHUP | POLLNVAL));
}

}  // namespace ocifs::fuse
