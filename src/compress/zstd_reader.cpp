#include "ocifs/compress/zstd_reader.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "ocifs/compress/zstd_cursor.hpp"

namespace ocifs::compress {
namespace {

struct DCtxFree {
  void operator()(ZSTD_DCtx* dctx) const { ZSTD_freeDCtx(dctx); }
};

}  // namespace

Result<SeekableReaderPtr> ZstdReader::create(const SeekIndex& index, io::BlobSourcePtr blob) {
  auto invalid = [&](std::string_view why) {
    return make_error(std::errc::invalid_argument, "cannot read {} by zstd frames: {}", blob->describe(), why);
  };
  if (index.encoding != Encoding::zstd) return invalid("the index is not for zstd");
  if (index.zstd_spilled) return invalid("the layer is spilled, its decoded copy must be read instead");
  if (blob->size() != index.compressed_size) return invalid("the blob size differs from the index");
  std::uint64_t decoded = 0;
  std::uint64_t compressed = 0;
  for (const auto& f : index.zstd_frames) {
    if (f.decoded_offset != decoded || f.decoded_size > kSpillFrameSize || f.compressed_offset < compressed ||
        f.compressed_size > index.compressed_size - std::min(f.compressed_offset, index.compressed_size) ||
        f.compressed_size == 0) {
      return invalid("the frame table is inconsistent");
    }
    decoded += f.decoded_size;
    compressed = f.compressed_offset + f.compressed_size;
  }
  if (decoded != index.decoded_size) return invalid("the frames do not add up to the decoded size");
  return SeekableReaderPtr(std::make_shared<ZstdReader>(index, std::move(blob)));
}

std::size_t ZstdReader::frame_at(std::uint64_t offset) const {
  const auto& frames = index_.zstd_frames;
  auto it = std::upper_bound(frames.begin(), frames.end(), offset,
                             [](std::uint64_t off, const ZstdFrame& f) { return off < f.decoded_offset; });
  return static_cast<std::size_t>(it - frames.begin()) - 1;  // frames start at 0 and offset < size
}

Result<void> ZstdReader::decode_frame(void* dctx, std::size_t i, std::vector<std::byte>& compressed,
                                      std::span<std::byte> out) const {
  const ZstdFrame& f = index_.zstd_frames[i];
  compressed.resize(f.compressed_size);
  OCIFS_TRY(blob_->read_exact(f.compressed_offset, compressed));
  std::size_t ret = ZSTD_decompressDCtx(static_cast<ZSTD_DCtx*>(dctx), out.data(), out.size(), compressed.data(),
                                        compressed.size());
  if (ZSTD_isError(ret)) {
    return make_error(std::errc::io_error, "cannot decode zstd {} frame at compressed offset {}: {}", blob_->describe(),
                      f.compressed_offset, ZSTD_getErrorName(ret));
  }
  if (ret != f.decoded_size) {
    return make_error(std::errc::io_error, "cannot decode zstd {} frame at compressed offset {}: {} bytes, the index says {}",
                      blob_->describe(), f.compressed_offset, ret, f.decoded_size);
  }
  return util::success();
}

Result<std::size_t> ZstdReader::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (offset >= size() || buf.empty()) return std::size_t{0};
  auto length = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size() - offset));
  std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
  if (!dctx) throw std::bad_alloc();
  std::vector<std::byte> compressed;
  std::vector<std::byte> frame_buf;
  std::size_t done = 0;
  for (std::size_t i = frame_at(offset); done < length; ++i) {
    const ZstdFrame& f = index_.zstd_frames[i];
    if (f.decoded_size == 0) continue;
    std::uint64_t pos = offset + done;
    auto skip = static_cast<std::size_t>(pos - f.decoded_offset);
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(f.decoded_size - skip, length - done));
    if (skip == 0 && n == f.decoded_size) {
      OCIFS_TRY(decode_frame(dctx.get(), i, compressed, buf.subspan(done, n)));  // whole frame: in place
    } else {
      frame_buf.resize(f.decoded_size);
      OCIFS_TRY(decode_frame(dctx.get(), i, compressed, frame_buf));
      std::memcpy(buf.data() + done, frame_buf.data() + skip, n);
    }
    done += n;
  }
  return length;
}

std::unique_ptr<ReadCursor> ZstdReader::open_cursor() const { return std::make_unique<ZstdCursor>(shared_from_this()); }

}  // namespace ocifs::compress
