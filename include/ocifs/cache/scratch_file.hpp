// ScratchFile: an unnamed file in the cache directory (ROOT/tmp), written once by its owner and
// then read through a FileSource. It is created with O_TMPFILE (or given a name that is unlinked
// at once where the file system has no O_TMPFILE), so its space goes back to the file system
// when the last descriptor closes: a crash leaves nothing behind for `cache gc`. Writes stop at
// a byte limit. Not synchronised while written; the FileSource it becomes is thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ocifs/io/fd.hpp"
#include "ocifs/io/file_source.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::cache {

class ScratchFile {
 public:
  ScratchFile(io::Fd fd, std::uint64_t limit, std::string where)
      : fd_(std::move(fd)), limit_(limit), where_(std::move(where)) {}
  ScratchFile(ScratchFile&&) = default;
  ScratchFile& operator=(ScratchFile&&) = default;

  // Appends `data`. Past the limit nothing is written and the error is errc::file_too_large.
  Result<void> write(std::span<const std::byte> data);
  std::uint64_t size() const { return size_; }
  std::uint64_t limit() const { return limit_; }

  // What was written, as a source named `description`; the ScratchFile is spent.
  std::shared_ptr<io::FileSource> into_source(std::string description) &&;

 private:
  io::Fd fd_;
  std::uint64_t limit_;
  std::string where_;  // the directory, for messages
  std::uint64_t size_ = 0;
};

}  // namespace ocifs::cache
