// The system calls that move bytes, with the two things every caller must otherwise repeat: a
// call interrupted by a signal (EINTR) is made again, and a short transfer goes on from where it
// stopped. The one place that calls read, write, pread and pwrite: every module moves file bytes
// through these. Functions only; thread-safe as the calls under them are.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace ocifs::io {

// `call()` until it does not fail with EINTR; its last result (errno set when it is negative).
// For the calls below and any other that may be interrupted: waitpid, poll, flock, fcntl, sendmsg.
template <class Call>
auto retry_on_eintr(Call call) {
  auto result = call();
  while (result < 0 && errno == EINTR) result = call();
  return result;
}

// What a transfer did: `done` bytes moved, then `error` (an errno) if it stopped early on one;
// error 0 means it moved all it could (everything, or up to the end of the file for reads).
struct Transfer {
  std::size_t done = 0;
  int error = 0;
  bool ok() const { return error == 0; }
};

// One read(2): for descriptors where one call is one message (/dev/fuse, a pipe's byte).
Transfer read_some(int fd, std::span<std::byte> buf);
// Fills `buf`, stopping early only at the end of the file (done < size, error 0) or on an error.
Transfer read_full(int fd, std::span<std::byte> buf);
Transfer pread_full(int fd, std::span<std::byte> buf, std::uint64_t offset);
// Writes all of `data`; a write that moves nothing is EIO (it would otherwise loop forever).
Transfer write_full(int fd, std::span<const std::byte> data);
Transfer pwrite_full(int fd, std::span<const std::byte> data, std::uint64_t offset);

inline Transfer write_full(int fd, std::string_view text) {
  return write_full(fd, std::as_bytes(std::span(text)));
}
inline Transfer pwrite_full(int fd, std::string_view text, std::uint64_t offset) {
  return pwrite_full(fd, std::as_bytes(std::span(text)), offset);
}

}  // namespace ocifs::io
