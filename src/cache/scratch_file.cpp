#include "ocifs/cache/scratch_file.hpp"

#include <unistd.h>

#include <cerrno>

namespace ocifs::cache {

Result<void> ScratchFile::write(std::span<const std::byte> data) {
  if (data.size() > limit_ - size_) {
    return make_error(std::errc::file_too_large, "cannot write more than {} bytes to a scratch file in {}",
                      limit_, where_);
  }
  while (!data.empty()) {
    ssize_t n = ::pwrite(fd_.get(), data.data(), data.size(), static_cast<off_t>(size_));
    if (n < 0) {
      if (errno == EINTR) continue;
      return util::errno_error(errno, fmt::format("cannot write a scratch file in {}", where_));
    }
    size_ += static_cast<std::uint64_t>(n);
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return util::success();
}

std::shared_ptr<io::FileSource> ScratchFile::into_source(std::string description) && {
  return std::make_shared<io::FileSource>(std::move(fd_), size_, std::move(description));
}

}  // namespace ocifs::cache
