#include "ocifs/io/file_source.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <random>

#include "ocifs/io/full_io.hpp"

namespace ocifs::io {

Result<std::shared_ptr<FileSource>> FileSource::open(const std::filesystem::path& path) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return util::errno_error(errno, fmt::format("cannot open {}", path.string()));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return util::errno_error(errno, fmt::format("cannot stat {}", path.string()));
  if (!S_ISREG(st.st_mode)) {
    return make_error(std::errc::invalid_argument, "cannot open {}: not a regular file", path.string());
  }
  return std::make_shared<FileSource>(std::move(fd), static_cast<std::uint64_t>(st.st_size), path.string());
}

Result<std::size_t> FileSource::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (offset >= size_) return std::size_t{0};
  auto t = pread_full(fd_.get(), buf.first(static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size_ - offset))),
                      offset);
  if (!t.ok()) return util::errno_error(t.error, fmt::format("cannot read {} at offset {}", path_, offset + t.done));
  return t.done;
}

Result<std::string> read_file(const std::filesystem::path& path, std::uint64_t limit) {
  OCIFS_ASSIGN(auto source, FileSource::open(path));
  return read_all(*source, limit);
}

Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view data) {
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec) return util::errno_error(ec.value(), fmt::format("cannot create directory {}", path.parent_path().string()));
  std::random_device rd;
  auto tmp = path;
  tmp += fmt::format(".tmp.{}.{:x}", ::getpid(), rd());
  Fd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return util::errno_error(errno, fmt::format("cannot create {}", tmp.string()));
  if (auto t = write_full(fd.get(), data); !t.ok()) {
    ::unlink(tmp.c_str());
    return util::errno_error(t.error, fmt::format("cannot write {}", tmp.string()));
  }
  if (::fsync(fd.get()) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return util::errno_error(err, fmt::format("cannot write {}", path.string()));
  }
  return util::success();
}

}  // namespace ocifs::io
