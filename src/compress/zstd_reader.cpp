#include "ocifs/compress/zstd_reader.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "ocifs/compress/zstd_cursor.hpp"
#include "ocifs/compress/zstd_decoder.hpp"

namespace ocifs::compress {
namespace {

struct DCtxFree {
  void operator()(ZSTD_DCtx* dctx) const { ZSTD_freeDCtx(dctx); }
};

}  // namespace

Result<SeekableReaderPtr> ZstdReader::create(const SeekIndex& index, io::BlobSourcePtr blob) {
  auto invalid = [&](std::string_view why) {
    return make_error(std::errc::invalid_argument, "cannot read {} by zstd frames: {}", blob->describe(),
                      why);
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
  std::size_t ret = ZSTD_decompressDCtx(static_cast<ZSTD_DCtx*>(dctx), out.data(), out.size(),
                                        compressed.data(), compressed.size());
  if (ZSTD_isError(ret)) {
    // libzstd's one-shot decoder refuses a few frames its streaming decoder (the scan's) takes,
    // e.g. a compressed block of size 0 (zstd 1.5.4; found by tests/fuzz): decode those as the
    // scan did, so that a layer that scanned reads back.
    if (decode_range(dctx, i, 0, out)) return util::success();
    return make_error(std::errc::io_error, "cannot decode zstd {} frame at compressed offset {}: {}",
                      blob_->describe(), f.compressed_offset, ZSTD_getErrorName(ret));
  }
  if (ret != f.decoded_size) {
    return make_error(std::errc::io_error,
                      "cannot decode zstd {} frame at compressed offset {}: {} bytes, the index says {}",
                      blob_->describe(), f.compressed_offset, ret, f.decoded_size);
  }
  return util::success();
}

Result<void> ZstdReader::decode_range(void* dctx_ptr, std::size_t i, std::uint64_t skip,
                                      std::span<std::byte> out) const {
  // 64 KiB blob reads and discard buffer: zstd blocks are at most 128 KiB decoded.
  constexpr std::size_t kChunk = 64u << 10;
  auto* dctx = static_cast<ZSTD_DCtx*>(dctx_ptr);
  const ZstdFrame& f = index_.zstd_frames[i];
  auto fail = [&](std::uint64_t pos, std::string_view why) {
    return make_error(std::errc::io_error,
                      "cannot decode zstd {} frame at compressed offset {} (decoded offset {}): {}",
                      blob_->describe(), f.compressed_offset, f.decoded_offset + pos, why);
  };
  ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
  ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, ZstdDecoder::kWindowLogMax);
  std::vector<std::byte> in(static_cast<std::size_t>(std::min<std::uint64_t>(kChunk, f.compressed_size)));
  std::vector<std::byte> scratch(skip > 0 ? kChunk : 0);
  ZSTD_inBuffer input{in.data(), 0, 0};
  std::uint64_t read = 0;  // compressed bytes of the frame fetched so far
  std::uint64_t pos = 0;   // decoded position inside the frame
  const std::uint64_t end = skip + out.size();
  while (pos < end) {
    if (input.pos == input.size) {
      auto want = static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), f.compressed_size - read));
      if (want == 0) return fail(pos, "the frame ends before the decoded size in the index");
      OCIFS_TRY(blob_->read_exact(f.compressed_offset + read, std::span(in).first(want)));
      read += want;
      input = ZSTD_inBuffer{in.data(), want, 0};
    }
    ZSTD_outBuffer output;
    if (pos < skip) {
      output = ZSTD_outBuffer{
          scratch.data(), static_cast<std::size_t>(std::min<std::uint64_t>(scratch.size(), skip - pos)), 0};
    } else {
      output = ZSTD_outBuffer{out.data() + (pos - skip), static_cast<std::size_t>(end - pos), 0};
    }
    std::size_t before_in = input.pos;
    std::size_t ret = ZSTD_decompressStream(dctx, &output, &input);
    if (ZSTD_isError(ret)) return fail(pos, ZSTD_getErrorName(ret));
    pos += output.pos;
    if (ret == 0 && pos < end) return fail(pos, "the frame ends before the decoded size in the index");
    if (output.pos == 0 && input.pos == before_in && input.pos < input.size)
      return fail(pos, "zstd made no progress");
    if (pos == f.decoded_size && ret != 0) {
      // Read up to the indexed end of the frame: the frame must end there too (and its
      // checksum, if any, gets checked), or the frame table is wrong.
      std::byte extra{};
      for (;;) {
        if (input.pos == input.size) {
          auto want = static_cast<std::size_t>(std::min<std::uint64_t>(in.size(), f.compressed_size - read));
          if (want == 0) return fail(pos, "the frame does not end where the index says");
          OCIFS_TRY(blob_->read_exact(f.compressed_offset + read, std::span(in).first(want)));
          read += want;
          input = ZSTD_inBuffer{in.data(), want, 0};
        }
        ZSTD_outBuffer one{&extra, 1, 0};
        std::size_t r = ZSTD_decompressStream(dctx, &one, &input);
        if (ZSTD_isError(r)) return fail(pos, ZSTD_getErrorName(r));
        if (one.pos > 0) return fail(pos, "the frame is longer than the index says");
        if (r == 0) break;
      }
    }
  }
  return util::success();
}

Result<std::size_t> ZstdReader::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (offset >= size() || buf.empty()) return std::size_t{0};
  auto length = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size() - offset));
  std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
  if (!dctx) throw std::bad_alloc();
  std::vector<std::byte> compressed;
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
      OCIFS_TRY(decode_range(dctx.get(), i, skip, buf.subspan(done, n)));
    }
    done += n;
  }
  return length;
}

void ZstdReader::blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<BlobRange>& out) const {
  if (offset >= size() || length == 0) return;
  const auto& frames = index_.zstd_frames;
  const std::size_t first = frame_at(offset);
  const std::size_t last = frame_at(std::min(size(), offset + length) - 1);
  const std::uint64_t from = frames[first].compressed_offset;
  out.push_back({blob_, from, frames[last].compressed_offset + frames[last].compressed_size - from});
}

std::unique_ptr<ReadCursor> ZstdReader::open_cursor() const {
  return std::make_unique<ZstdCursor>(shared_from_this());
}

}  // namespace ocifs::compress
