#include "decoded_tee.hpp"

#include <algorithm>
#include <vector>

#include "ocifs/cache/byte_size.hpp"

namespace ocifs::layer {

namespace {
// 1 MiB: large enough that the write syscalls cost nothing next to zstd decoding (~1 GB/s).
constexpr std::size_t kBuffer = 1u << 20;
}  // namespace

Error DecodedTee::over_limit() const {
  return make_error(
      std::errc::file_too_large,
      "cannot index {}: its zstd frames are too large to read one by one (one frame, or frames over "
      "{}), so it is read from a decoded copy in the cache, and that copy would be larger than {}, "
      "the share of --cache-max decoded layers may take; recompress it in smaller frames "
      "(zstd:chunked) or raise --cache-max",
      layer_name_, cache::format_byte_size(compress::kSpillFrameSize), cache::format_byte_size(limit_));
}

Result<std::size_t> DecodedTee::read(std::span<std::byte> out) {
  OCIFS_ASSIGN(std::size_t n, inner_.read(out));
  if (n == 0) return n;
  if (out_ && written_ + n > limit_) {
    out_.reset();  // removes the temp file now: the disk gets its space back
  }
  if (!out_) {
    written_ += n;
    if (inner_.needs_decoded_copy()) return over_limit();
    return n;
  }
  OCIFS_TRY(out_->write(std::string_view(reinterpret_cast<const char*>(out.data()), n)));
  blocks_.update(out.first(n));
  written_ += n;
  return n;
}

Result<void> DecodedTee::skip(std::uint64_t count) {
  std::vector<std::byte> buf(static_cast<std::size_t>(std::min<std::uint64_t>(count, kBuffer)));
  while (count > 0) {
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(count, buf.size()));
    OCIFS_ASSIGN(std::size_t n, read(std::span(buf).first(want)));
    if (n == 0) {
      return make_error(std::errc::io_error,
                        "cannot skip decoded data: stream ends at offset {}, {} bytes short",
                        inner_.position(), count);
    }
    count -= n;
  }
  return util::success();
}

Result<compress::SeekIndex> DecodedTee::finish() {
  std::vector<std::byte> buf(kBuffer);
  for (;;) {
    OCIFS_ASSIGN(std::size_t n, read(buf));
    if (n == 0) break;
  }
  return inner_.finish();
}

}  // namespace ocifs::layer
