// FileSource: a BlobSource over a regular file, read with pread. Thread-safe (pread has no
// shared file position).
#pragma once

#include <filesystem>

#include "ocifs/io/blob_source.hpp"
#include "ocifs/io/fd.hpp"

namespace ocifs::io {

class FileSource final : public BlobSource {
 public:
  static Result<std::shared_ptr<FileSource>> open(const std::filesystem::path& path);

  std::uint64_t size() const override { return size_; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::string describe() const override { return path_; }
  int fd() const { return fd_.get(); }

  FileSource(Fd fd, std::uint64_t size, std::string path)
      : fd_(std::move(fd)), size_(size), path_(std::move(path)) {}

 private:
  Fd fd_;
  std::uint64_t size_;
  std::string path_;
};

// Reads a whole small file (JSON documents); refuses files above `limit` bytes.
Result<std::string> read_file(const std::filesystem::path& path, std::uint64_t limit);

// Writes `data` to `path` atomically: a temp file in the same directory, fsync'd, then renamed.
Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view data);

}  // namespace ocifs::io
