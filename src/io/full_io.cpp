#include "ocifs/io/full_io.hpp"

#include <unistd.h>

namespace ocifs::io {

namespace {

// Repeats `step(done)` (one system call for the bytes from `done` on) until `size` bytes are
// moved, the call returns 0 (end of file; for writes an error) or fails.
template <class Step>
Transfer repeat(std::size_t size, bool zero_is_error, Step step) {
  Transfer t;
  while (t.done < size) {
    const ssize_t n = retry_on_eintr([&] { return step(t.done); });
    if (n < 0) {
      t.error = errno;
      break;
    }
    if (n == 0) {
      if (zero_is_error) t.error = EIO;
      break;
    }
    t.done += static_cast<std::size_t>(n);
  }
  return t;
}

}  // namespace

Transfer read_some(int fd, std::span<std::byte> buf) {
  const ssize_t n = retry_on_eintr([&] { return ::read(fd, buf.data(), buf.size()); });
  if (n < 0) return Transfer{0, errno};
  return Transfer{static_cast<std::size_t>(n), 0};
}

Transfer read_full(int fd, std::span<std::byte> buf) {
  return repeat(buf.size(), false,
                [&](std::size_t done) { return ::read(fd, buf.data() + done, buf.size() - done); });
}

Transfer pread_full(int fd, std::span<std::byte> buf, std::uint64_t offset) {
  return repeat(buf.size(), false, [&](std::size_t done) {
    return ::pread(fd, buf.data() + done, buf.size() - done, static_cast<off_t>(offset + done));
  });
}

Transfer write_full(int fd, std::span<const std::byte> data) {
  return repeat(data.size(), true,
                [&](std::size_t done) { return ::write(fd, data.data() + done, data.size() - done); });
}

Transfer pwrite_full(int fd, std::span<const std::byte> data, std::uint64_t offset) {
  return repeat(data.size(), true, [&](std::size_t done) {
    return ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
  });
}

}  // namespace ocifs::io
