// Resuming inflate at a checkpoint follows zlib examples/zran.c: raw inflate, prime the leftover
// bits of the byte before the checkpoint, set the 32 KiB window as dictionary, inflate forward.
#include "ocifs/compress/gzip_cursor.hpp"

#include <algorithm>

#include "zlib_inflater.hpp"

namespace ocifs::compress {
namespace {

// 64 KiB blob reads: a random read inflates ~half a 1 MiB span, i.e. ~150-300 KiB of
// compressed input, so larger reads would mostly fetch bytes nobody needs.
constexpr std::size_t kInputChunk = 64u << 10;
constexpr std::size_t kScratch = 128u << 10;
constexpr std::size_t kWindowSize = 32u << 10;
constexpr std::uint64_t kTrailerSize = 8;  // CRC-32 + ISIZE after each member's deflate data

}  // namespace

GzipCursor::GzipCursor(std::shared_ptr<const SeekIndex> index, io::BlobSourcePtr blob)
    : index_(std::move(index)),
      blob_(std::move(blob)),
      inflater_(std::make_unique<ZlibInflater>()),
      in_(kInputChunk) {}

GzipCursor::~GzipCursor() = default;

std::uint64_t GzipCursor::consumed() const { return in_offset_ + in_size_ - inflater_->stream().avail_in; }

Error GzipCursor::error(std::string_view reason) const {
  return make_error(std::errc::io_error, "cannot inflate {} at compressed offset {} (decoded offset {}): {}",
                    blob_->describe(), consumed(), position_, reason);
}

Result<void> GzipCursor::refill() {
  z_stream& strm = inflater_->stream();
  if (strm.avail_in > 0) return util::success();
  in_offset_ += in_size_;
  in_size_ = 0;
  OCIFS_ASSIGN(std::size_t n, blob_->read_at(in_offset_, in_));
  in_size_ = n;
  strm.next_in = reinterpret_cast<Bytef*>(in_.data());
  strm.avail_in = static_cast<uInt>(n);
  return util::success();
}

Result<void> GzipCursor::restart(const GzipCheckpoint& point) {
  live_ = false;
  raw_ = !point.member_start;
  member_end_ = false;
  OCIFS_TRY(inflater_->reset(raw_ ? ZlibInflater::kRawBits : ZlibInflater::kGzipBits));
  z_stream& strm = inflater_->stream();
  strm.next_in = nullptr;
  strm.avail_in = 0;
  in_offset_ = point.compressed_offset;
  in_size_ = 0;
  position_ = point.decoded_offset;
  if (raw_) {
    if (point.bits > 0) {
      std::byte last{};
      OCIFS_TRY(blob_->read_exact(point.compressed_offset - 1, std::span(&last, 1)));
      int value = std::to_integer<int>(last) >> (8 - point.bits);
      if (inflatePrime(&strm, point.bits, value) != Z_OK) return error("cannot prime the checkpoint bits");
    }
    if (!point.window_deflated.empty()) {
      std::vector<Bytef> window(kWindowSize);
      uLongf length = window.size();
      int ret =
          uncompress(window.data(), &length, reinterpret_cast<const Bytef*>(point.window_deflated.data()),
                     point.window_deflated.size());
      if (ret != Z_OK) return error(fmt::format("the checkpoint window is corrupt (zlib error {})", ret));
      if (inflateSetDictionary(&strm, window.data(), static_cast<uInt>(length)) != Z_OK) {
        return error("cannot set the checkpoint window");
      }
    }
  }
  live_ = true;
  return util::success();
}

Result<void> GzipCursor::inflate_into(std::span<std::byte> out) {
  z_stream& strm = inflater_->stream();
  std::size_t produced = 0;
  while (produced < out.size()) {
    if (member_end_) {
      // Next member: past our own trailer skip when resumed raw (zlib checks it otherwise),
      // then let zlib parse the gzip header.
      if (raw_) {
        std::uint64_t next = consumed() + kTrailerSize;
        in_offset_ = next;
        in_size_ = 0;
        strm.avail_in = 0;
        raw_ = false;
      }
      OCIFS_TRY(inflater_->reset(ZlibInflater::kGzipBits));
      member_end_ = false;
    }
    if (strm.avail_in == 0) {
      OCIFS_TRY(refill());
      if (strm.avail_in == 0) {
        return error(fmt::format("unexpected end of data, {} decoded bytes short of the indexed size",
                                 index_->decoded_size - position_));
      }
    }
    strm.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    strm.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - produced, 1u << 30));
    uInt before_out = strm.avail_out;
    uInt before_in = strm.avail_in;
    int ret = inflate(&strm, Z_NO_FLUSH);
    std::size_t n = before_out - strm.avail_out;
    produced += n;
    position_ += n;
    if (ret == Z_STREAM_END) {
      member_end_ = true;
      continue;
    }
    if (ret == Z_BUF_ERROR && n == 0 && before_in == strm.avail_in && strm.avail_in > 0) {
      return error("inflate made no progress");
    }
    if (ret != Z_OK && ret != Z_BUF_ERROR) {
      return error(ret == Z_NEED_DICT ? std::string("needs a preset dictionary") : inflater_->message(ret));
    }
  }
  return util::success();
}

Result<std::size_t> GzipCursor::read_at(std::uint64_t offset, std::span<std::byte> buf) {
  const std::uint64_t size = index_->decoded_size;
  if (offset >= size || buf.empty()) return std::size_t{0};
  auto length = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - offset));
  const auto& points = index_->gzip_points;
  auto it =
      std::upper_bound(points.begin(), points.end(), offset,
                       [](std::uint64_t off, const GzipCheckpoint& p) { return off < p.decoded_offset; });
  if (it == points.begin()) {
    return make_error(std::errc::io_error,
                      "cannot read {} at decoded offset {}: no gzip checkpoint before it", blob_->describe(),
                      offset);
  }
  --it;
  // Continuing is cheaper than restarting whenever no checkpoint lies between here and there.
  if (!live_ || offset < position_ || it->decoded_offset > position_) {
    auto restarted = restart(*it);
    if (!restarted) return std::move(restarted).error();
  }
  live_ = false;  // until this read has succeeded: a failed stream is never continued
  if (offset > position_) {
    if (scratch_.empty()) scratch_.resize(kScratch);
    while (offset > position_) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(offset - position_, scratch_.size()));
      OCIFS_TRY(inflate_into(std::span(scratch_).first(n)));
    }
  }
  OCIFS_TRY(inflate_into(buf.first(length)));
  live_ = true;
  return length;
}

}  // namespace ocifs::compress
