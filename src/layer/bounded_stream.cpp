#include "bounded_stream.hpp"

#include <algorithm>
#include <vector>

namespace ocifs::layer {

Error BoundedStream::too_large(std::uint64_t at) const {
  return make_error(
      std::errc::file_too_large,
      "cannot index {}: it decodes to more than {} bytes (at decoded offset {}), the limit for a "
      "layer",
      layer_name_, limit_, at);
}

Result<std::size_t> BoundedStream::read(std::span<std::byte> out) {
  const std::uint64_t at = inner_.position();
  if (at >= limit_) {
    // One byte more tells a stream that ends exactly at the limit from one that goes on.
    std::byte probe[1];
    OCIFS_ASSIGN(std::size_t n, inner_.read(probe));
    if (n > 0) return too_large(at + n);
    return std::size_t{0};
  }
  const auto room = static_cast<std::size_t>(std::min<std::uint64_t>(out.size(), limit_ - at));
  return inner_.read(out.first(room));
}

Result<void> BoundedStream::skip(std::uint64_t count) {
  const std::uint64_t at = inner_.position();
  if (at > limit_ || count > limit_ - at) return too_large(at + std::min(count, ~at));
  return inner_.skip(count);
}

Result<compress::SeekIndex> BoundedStream::finish() {
  std::vector<std::byte> buf(256u << 10);
  for (;;) {
    OCIFS_ASSIGN(std::size_t n, read(buf));
    if (n == 0) break;
  }
  return inner_.finish();
}

}  // namespace ocifs::layer
