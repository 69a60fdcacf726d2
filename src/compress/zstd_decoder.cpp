// The zstd StreamDecoder. ZSTD_decompressStream returns 0 exactly at the end of each frame
// (also of skippable frames) with the input consumed up to that frame's last byte, which gives
// the frame table without parsing frame headers ourselves.
#include "ocifs/compress/zstd_decoder.hpp"

#define ZSTD_STATIC_LINKING_ONLY  // ZSTD_MAGIC_SKIPPABLE_*
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cstring>
#include <new>

namespace ocifs::compress {
namespace {

// 1 MiB blob reads, as for gzip.
constexpr std::size_t kInputBlock = 1u << 20;
// Bytes skipped (decoded and dropped) 256 KiB at a time: two zstd blocks (128 KiB each) per call.
constexpr std::size_t kScratch = 256u << 10;

std::uint32_t le32(const std::byte* p) {
  return std::to_integer<std::uint32_t>(p[0]) | std::to_integer<std::uint32_t>(p[1]) << 8 |
         std::to_integer<std::uint32_t>(p[2]) << 16 | std::to_integer<std::uint32_t>(p[3]) << 24;
}

}  // namespace

void ZstdDecoder::DCtxDeleter::operator()(void* dctx) const { ZSTD_freeDCtx(static_cast<ZSTD_DCtx*>(dctx)); }

ZstdDecoder::ZstdDecoder(io::BlobSourcePtr blob, const ScanOptions& options)
    : blob_(std::move(blob)),
      hash_raw_(options.hash && options.hash_compressed),
      hash_decoded_(options.hash_decoded),
      dctx_(ZSTD_createDCtx()),
      in_(kInputBlock) {
  if (!dctx_) throw std::bad_alloc();
  ZSTD_DCtx_setParameter(static_cast<ZSTD_DCtx*>(dctx_.get()), ZSTD_d_windowLogMax, kWindowLogMax);
}

ZstdDecoder::~ZstdDecoder() = default;

Error ZstdDecoder::decode_error(std::string_view reason) const {
  return make_error(std::errc::io_error, "cannot decode zstd {} at compressed offset {}: {}",
                    blob_->describe(), consumed(), reason);
}

Result<void> ZstdDecoder::refill(std::size_t want) {
  while (in_size_ - in_pos_ < want && !eof_) {
    if (in_pos_ > 0) {
      std::memmove(in_.data(), in_.data() + in_pos_, in_size_ - in_pos_);
      in_offset_ += in_pos_;
      in_size_ -= in_pos_;
      in_pos_ = 0;
    }
    OCIFS_ASSIGN(std::size_t n, blob_->read_at(in_offset_ + in_size_, std::span(in_).subspan(in_size_)));
    if (n == 0) {
      eof_ = true;
      break;
    }
    if (hash_raw_) raw_hasher_.update(std::span(in_).subspan(in_size_, n));
    in_size_ += n;
  }
  return util::success();
}

Result<std::size_t> ZstdDecoder::read(std::span<std::byte> out) {
  auto* dctx = static_cast<ZSTD_DCtx*>(dctx_.get());
  std::size_t produced = 0;
  while (produced < out.size() && !done_) {
    if (!in_frame_) {
      OCIFS_TRY(refill(4));
      std::size_t avail = in_size_ - in_pos_;
      if (avail == 0) {
        if (consumed() == 0) return decode_error("the blob is empty, not a zstd stream");
        done_ = true;
        break;
      }
      std::uint32_t magic = avail >= 4 ? le32(in_.data() + in_pos_) : 0;
      skippable_ = (magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START;
      if (!skippable_ && magic != ZSTD_MAGICNUMBER) {
        return decode_error(frames_.empty() && consumed() == 0
                                ? "not a zstd frame"
                                : "trailing garbage after the last zstd frame");
      }
      frame_ = ZstdFrame{consumed(), 0, decoded_, 0};
      in_frame_ = true;
    }
    if (in_pos_ == in_size_) {
      OCIFS_TRY(refill(1));
      if (in_pos_ == in_size_)
        return decode_error("unexpected end of data inside a zstd frame (truncated blob)");
    }
    ZSTD_inBuffer in{in_.data(), in_size_, in_pos_};
    ZSTD_outBuffer o{out.data() + produced, out.size() - produced, 0};
    std::size_t ret = ZSTD_decompressStream(dctx, &o, &in);
    if (ZSTD_isError(ret)) {
      if (ZSTD_getErrorCode(ret) == ZSTD_error_frameParameter_windowTooLarge) {
        return decode_error(fmt::format("the frame at offset {} needs a window over {} MiB (windowLog > {})",
                                        frame_.compressed_offset, (1u << kWindowLogMax) >> 20,
                                        kWindowLogMax));
      }
      return decode_error(ZSTD_getErrorName(ret));
    }
    std::size_t taken = in.pos - in_pos_;
    in_pos_ = in.pos;
    if (o.pos > 0 && hash_decoded_) decoded_hasher_.update(out.subspan(produced, o.pos));
    produced += o.pos;
    decoded_ += o.pos;
    frame_.decoded_size += o.pos;
    if (ret == 0) {
      frame_.compressed_size = consumed() - frame_.compressed_offset;
      if (!skippable_) {
        frames_.push_back(frame_);
        largest_frame_ = std::max(largest_frame_, frame_.decoded_size);
      }
      in_frame_ = false;
    } else if (o.pos == 0 && taken == 0 && in_pos_ < in_size_) {
      return decode_error("zstd made no progress");  // never spin on bad input
    }
  }
  return produced;
}

Result<void> ZstdDecoder::skip(std::uint64_t count) {
  if (scratch_.empty()) scratch_.resize(kScratch);
  std::uint64_t start = decoded_;
  while (count > 0) {
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(count, scratch_.size()));
    OCIFS_ASSIGN(std::size_t n, read(std::span(scratch_).first(want)));
    if (n == 0) {
      return make_error(std::errc::io_error,
                        "cannot skip {} bytes at decoded offset {} of {}: the stream ends at {}",
                        count + (decoded_ - start), start, blob_->describe(), decoded_);
    }
    count -= n;
  }
  return util::success();
}

Result<SeekIndex> ZstdDecoder::finish() {
  if (finished_)
    return make_error(std::errc::invalid_argument, "cannot finish {}: already finished", blob_->describe());
  if (scratch_.empty()) scratch_.resize(kScratch);
  for (;;) {
    OCIFS_ASSIGN(std::size_t n, read(scratch_));
    if (n == 0) break;
  }
  finished_ = true;
  if (hash_raw_) compressed_digest_ = raw_hasher_.hex_digest();
  if (hash_decoded_) decoded_digest_ = decoded_hasher_.hex_digest();
  SeekIndex index;
  index.encoding = Encoding::zstd;
  index.compressed_size = consumed();
  index.decoded_size = decoded_;
  index.zstd_spilled =
      frames_.size() == 1 || std::any_of(frames_.begin(), frames_.end(),
                                         [](const ZstdFrame& f) { return f.decoded_size > kSpillFrameSize; });
  index.zstd_frames = std::move(frames_);
  return index;
}

}  // namespace ocifs::compress
