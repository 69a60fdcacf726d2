#include "ocifs/compress/zstd_cursor.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace ocifs::compress {

void ZstdCursor::DCtxDeleter::operator()(void* dctx) const { ZSTD_freeDCtx(static_cast<ZSTD_DCtx*>(dctx)); }

ZstdCursor::ZstdCursor(std::shared_ptr<const ZstdReader> reader)
    : reader_(std::move(reader)), dctx_(ZSTD_createDCtx()) {
  if (!dctx_) throw std::bad_alloc();
}

ZstdCursor::~ZstdCursor() = default;

Result<std::size_t> ZstdCursor::read_at(std::uint64_t offset, std::span<std::byte> buf) {
  if (offset >= reader_->size() || buf.empty()) return std::size_t{0};
  auto length = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), reader_->size() - offset));
  const auto& frames = reader_->frames();
  std::size_t done = 0;
  for (std::size_t i = reader_->frame_at(offset); done < length; ++i) {
    const ZstdFrame& f = frames[i];
    if (f.decoded_size == 0) continue;
    if (!has_frame_ || frame_ != i) {
      has_frame_ = false;
      decoded_.resize(f.decoded_size);
      OCIFS_TRY(reader_->decode_frame(dctx_.get(), i, compressed_, decoded_));
      frame_ = i;
      has_frame_ = true;
    }
    std::uint64_t pos = offset + done;
    auto skip = static_cast<std::size_t>(pos - f.decoded_offset);
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(f.decoded_size - skip, length - done));
    std::memcpy(buf.data() + done, decoded_.data() + skip, n);
    done += n;
  }
  return length;
}

}  // namespace ocifs::compress
