#include "ocifs/compress/direct_reader.hpp"

#include <algorithm>

#include "forwarding_cursor.hpp"

namespace ocifs::compress {

Result<std::size_t> DirectReader::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (offset >= size_ || buf.empty()) return std::size_t{0};
  auto length = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size_ - offset));
  // read_exact: a source shorter than the index says is an error, never a silent short read.
  OCIFS_TRY(source_->read_exact(offset, buf.first(length)));
  return length;
}

std::unique_ptr<ReadCursor> DirectReader::open_cursor() const {
  return std::make_unique<ForwardingCursor>(shared_from_this());
}

}  // namespace ocifs::compress
