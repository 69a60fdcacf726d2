// The gzip StreamDecoder: one Z_BLOCK inflate pass that also records checkpoints (zlib
// examples/zran.c), extended to multi-member streams and trailing zero padding.
#include "ocifs/compress/gzip_decoder.hpp"

#include <algorithm>
#include <cstring>

#include "zlib_inflater.hpp"

namespace ocifs::compress {
namespace {

// 1 MiB blob reads: few syscalls / range requests, while staying small next to a layer.
constexpr std::size_t kInputBlock = 1u << 20;
// Small reads (tar headers are 512 bytes) are served from a 256 KiB buffer, because inflate's
// fast path needs at least 258 bytes of output room and per-call overhead dominates below ~4 KiB.
constexpr std::size_t kOutputBlock = 256u << 10;
// Reads at least this large inflate straight into the caller's buffer.
constexpr std::size_t kDirectRead = 64u << 10;
constexpr std::size_t kWindowSize = 32u << 10;  // deflate's maximum distance

}  // namespace

GzipDecoder::GzipDecoder(io::BlobSourcePtr blob, const ScanOptions& options)
    : blob_(std::move(blob)),
      span_(std::max<std::uint64_t>(options.gzip_span, 1)),
      hash_raw_(options.hash),
      hash_decoded_(options.hash_decoded),
      inflater_(std::make_unique<ZlibInflater>()),
      in_(kInputBlock),
      out_(kOutputBlock),
      window_(kWindowSize) {}

GzipDecoder::~GzipDecoder() = default;

std::uint64_t GzipDecoder::consumed() const { return in_offset_ + in_size_ - inflater_->stream().avail_in; }

Error GzipDecoder::decode_error(std::string_view reason) const {
  return make_error(std::errc::io_error, "cannot inflate {} at compressed offset {}: {}", blob_->describe(),
                    consumed(), reason);
}

Result<void> GzipDecoder::refill() {
  z_stream& strm = inflater_->stream();
  if (strm.avail_in > 0) return util::success();
  in_offset_ += in_size_;
  in_size_ = 0;
  OCIFS_ASSIGN(std::size_t n, blob_->read_at(in_offset_, in_));
  if (hash_raw_) raw_hasher_.update(std::span(in_).first(n));
  in_size_ = n;
  strm.next_in = reinterpret_cast<Bytef*>(in_.data());
  strm.avail_in = static_cast<uInt>(n);
  return util::success();
}

Result<void> GzipDecoder::record_point(bool member_start) {
  z_stream& strm = inflater_->stream();
  GzipCheckpoint point;
  point.compressed_offset = consumed();
  point.decoded_offset = decoded_;
  point.member_start = member_start;
  if (!member_start) {
    point.bits = static_cast<std::uint8_t>(strm.data_type & 7);
    uInt length = static_cast<uInt>(window_.size());
    if (inflateGetDictionary(&strm, window_.data(), &length) != Z_OK) {
      return decode_error("cannot copy the inflate window");
    }
    uLongf deflated = compressBound(length);
    point.window_deflated.resize(deflated);
    // Level 1: ~0.2 ms per 32 KiB window and about 3x smaller; higher levels gain little here.
    int ret = compress2(reinterpret_cast<Bytef*>(point.window_deflated.data()), &deflated, window_.data(),
                        length, 1);
    if (ret != Z_OK)
      return decode_error(fmt::format("cannot deflate a checkpoint window: zlib error {}", ret));
    point.window_deflated.resize(deflated);
  }
  points_.push_back(std::move(point));
  return util::success();
}

Result<void> GzipDecoder::start_member() {
  z_stream& strm = inflater_->stream();
  OCIFS_TRY(refill());
  if (strm.avail_in == 0) {
    if (members_ == 0) return decode_error("the blob is empty, not a gzip stream");
    state_ = State::done;
    return util::success();
  }
  auto first = static_cast<unsigned char>(*strm.next_in);
  if (members_ > 0 && first == 0) {
    // Zero padding after the last member, as tar writers add to fill a record: allowed, but
    // nothing else may follow it.
    for (;;) {
      const Bytef* p = strm.next_in;
      const Bytef* end = p + strm.avail_in;
      const Bytef* bad = std::find_if(p, end, [](Bytef b) { return b != 0; });
      if (bad != end) {
        strm.next_in += bad - p;
        strm.avail_in -= static_cast<uInt>(bad - p);
        return decode_error("trailing garbage after zero padding");
      }
      strm.next_in += strm.avail_in;
      strm.avail_in = 0;
      OCIFS_TRY(refill());
      if (strm.avail_in == 0) break;
    }
    state_ = State::done;
    return util::success();
  }
  if (members_ > 0 && first != 0x1f) return decode_error("trailing garbage after the last gzip member");
  if (points_.empty() || decoded_ - points_.back().decoded_offset >= span_) OCIFS_TRY(record_point(true));
  OCIFS_TRY(inflater_->reset(ZlibInflater::kGzipBits));
  ++members_;
  state_ = State::in_member;
  return util::success();
}

Result<std::size_t> GzipDecoder::inflate_some(std::span<std::byte> out) {
  z_stream& strm = inflater_->stream();
  std::size_t produced = 0;
  while (produced < out.size() && state_ != State::done) {
    if (state_ == State::member_start) {
      OCIFS_TRY(start_member());
      continue;
    }
    if (strm.avail_in == 0) {
      OCIFS_TRY(refill());
      if (strm.avail_in == 0)
        return decode_error("unexpected end of data inside a gzip member (truncated blob)");
    }
    strm.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    strm.avail_out = static_cast<uInt>(std::min<std::size_t>(out.size() - produced, 1u << 30));
    uInt before_out = strm.avail_out;
    uInt before_in = strm.avail_in;
    int ret = inflate(&strm, Z_BLOCK);
    std::size_t n = before_out - strm.avail_out;
    if (n > 0 && hash_decoded_) decoded_hasher_.update(out.subspan(produced, n));
    produced += n;
    decoded_ += n;
    if (ret == Z_STREAM_END) {
      state_ = State::member_start;
      continue;
    }
    if (ret == Z_BUF_ERROR && n == 0 && before_in == strm.avail_in && strm.avail_in > 0) {
      return decode_error("inflate made no progress");  // cannot happen with zlib; never spin
    }
    if (ret != Z_OK && ret != Z_BUF_ERROR) {
      return decode_error(ret == Z_NEED_DICT ? std::string("needs a preset dictionary")
                                             : inflater_->message(ret));
    }
    // A block boundary that is not the end of the member: a resume point, if one is due.
    if ((strm.data_type & 128) && !(strm.data_type & 64) &&
        decoded_ - points_.back().decoded_offset >= span_) {
      OCIFS_TRY(record_point(false));
    }
  }
  return produced;
}

Result<std::size_t> GzipDecoder::read(std::span<std::byte> out) {
  if (out.empty()) return std::size_t{0};
  if (pending_size_ == 0) {
    if (out.size() >= kDirectRead) return inflate_some(out);
    OCIFS_ASSIGN(std::size_t n, inflate_some(out_));
    pending_offset_ = 0;
    pending_size_ = n;
    if (n == 0) return std::size_t{0};
  }
  std::size_t n = std::min(out.size(), pending_size_);
  std::memcpy(out.data(), out_.data() + pending_offset_, n);
  pending_offset_ += n;
  pending_size_ -= n;
  return n;
}

Result<void> GzipDecoder::skip(std::uint64_t count) {
  std::uint64_t start = position();
  while (count > 0) {
    if (pending_size_ > 0) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(count, pending_size_));
      pending_offset_ += n;
      pending_size_ -= n;
      count -= n;
      continue;
    }
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(count, out_.size()));
    OCIFS_ASSIGN(std::size_t n, inflate_some(std::span(out_).first(want)));
    if (n == 0) {
      return make_error(std::errc::io_error,
                        "cannot skip {} bytes at decoded offset {} of {}: the stream ends at {}",
                        count + (position() - start), start, blob_->describe(), decoded_);
    }
    count -= n;
  }
  return util::success();
}

Result<SeekIndex> GzipDecoder::finish() {
  if (finished_)
    return make_error(std::errc::invalid_argument, "cannot finish {}: already finished", blob_->describe());
  pending_size_ = 0;
  for (;;) {
    OCIFS_ASSIGN(std::size_t n, inflate_some(out_));
    if (n == 0) break;
  }
  finished_ = true;
  if (hash_raw_) compressed_digest_ = raw_hasher_.hex_digest();
  if (hash_decoded_) decoded_digest_ = decoded_hasher_.hex_digest();
  SeekIndex index;
  index.encoding = Encoding::gzip;
  index.compressed_size = in_offset_ + in_size_;
  index.decoded_size = decoded_;
  index.gzip_points = std::move(points_);
  return index;
}

}  // namespace ocifs::compress
