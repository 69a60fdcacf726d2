#include "ocifs/io/blob_source.hpp"

#include <algorithm>
#include <cstring>

namespace ocifs::io {

bool BlobSource::present(std::uint64_t offset, std::uint64_t length) const {
  const std::uint64_t blob_size = size();
  if (offset >= blob_size) return true;
  length = std::min(length, blob_size - offset);
  return local_prefix(offset, length) >= length;
}

Result<void> BlobSource::read_exact(std::uint64_t offset, std::span<std::byte> buf) const {
  std::size_t done = 0;
  while (done < buf.size()) {
    OCIFS_ASSIGN(std::size_t n, read_at(offset + done, buf.subspan(done)));
    if (n == 0) {
      return make_error(std::errc::io_error, "cannot read {}: unexpected end of data at offset {} (size {})",
                        describe(), offset + done, size());
    }
    done += n;
  }
  return util::success();
}

SliceSource::SliceSource(BlobSourcePtr parent, std::uint64_t offset, std::uint64_t length, std::string name)
    : parent_(std::move(parent)), offset_(offset), length_(length), name_(std::move(name)) {}

Result<std::size_t> SliceSource::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (offset >= length_) return std::size_t{0};
  auto n = std::min<std::uint64_t>(buf.size(), length_ - offset);
  return parent_->read_at(offset_ + offset, buf.first(n));
}

Result<std::size_t> MemorySource::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (offset >= data_.size()) return std::size_t{0};
  auto n = std::min<std::uint64_t>(buf.size(), data_.size() - offset);
  std::memcpy(buf.data(), data_.data() + offset, n);
  return static_cast<std::size_t>(n);
}

Result<std::string> read_all(const BlobSource& source, std::uint64_t limit) {
  if (source.size() > limit) {
    return make_error(std::errc::file_too_large, "cannot read {}: {} bytes is more than the limit of {}",
                      source.describe(), source.size(), limit);
  }
  std::string data(source.size(), '\0');
  OCIFS_TRY(source.read_exact(0, std::as_writable_bytes(std::span(data))));
  return data;
}

}  // namespace ocifs::io
