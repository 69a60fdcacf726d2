#include "ocifs/cache/scratch_file.hpp"

#include "ocifs/io/full_io.hpp"

namespace ocifs::cache {

Result<void> ScratchFile::write(std::span<const std::byte> data) {
  if (data.size() > limit_ - size_) {
    return make_error(std::errc::file_too_large, "cannot write more than {} bytes to a scratch file in {}",
                      limit_, where_);
  }
  auto t = io::pwrite_full(fd_.get(), data, size_);
  size_ += t.done;
  if (!t.ok()) return util::errno_error(t.error, fmt::format("cannot write a scratch file in {}", where_));
  return util::success();
}

std::shared_ptr<io::FileSource> ScratchFile::into_source(std::string description) && {
  return std::make_shared<io::FileSource>(std::move(fd_), size_, std::move(description));
}

}  // namespace ocifs::cache
