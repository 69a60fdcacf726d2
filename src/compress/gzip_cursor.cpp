// Resuming at a checkpoint: a fresh decoder at a member start, else the inflate state snapshot
// restored and fed the blob from the byte it had reached.
#include "ocifs/compress/gzip_cursor.hpp"

#include <zstd.h>

#include <algorithm>

#include "isal_inflater.hpp"

namespace ocifs::compress {
namespace {

// 64 KiB blob reads: a random read inflates ~half a 512 KiB span, i.e. ~100 KiB of compressed
// input, so larger reads would mostly fetch bytes nobody needs.
constexpr std::size_t kInputChunk = 64u << 10;
// Bytes before the offset asked for are decoded here and dropped. Large, because every
// isal_inflate() call also saves 32 KiB of history.
constexpr std::size_t kScratch = 512u << 10;
// Past the estimated input a fetch ahead takes.
constexpr std::size_t kMinInput = 4u << 10;

}  // namespace

GzipCursor::GzipCursor(std::shared_ptr<const SeekIndex> index, io::BlobSourcePtr blob)
    : index_(std::move(index)),
      blob_(std::move(blob)),
      inflater_(std::make_unique<IsalInflater>()),
      in_(kInputChunk) {}

GzipCursor::~GzipCursor() = default;

std::uint64_t GzipCursor::consumed() const { return in_offset_ + in_size_ - inflater_->state().avail_in; }

Error GzipCursor::error(std::string_view reason) const {
  return make_error(std::errc::io_error, "cannot inflate {} at compressed offset {} (decoded offset {}): {}",
                    blob_->describe(), consumed(), position_, reason);
}

Result<void> GzipCursor::refill() {
  inflate_state& s = inflater_->state();
  if (s.avail_in > 0 || eof_) return util::success();
  in_offset_ += in_size_;
  in_size_ = 0;
  // Over a network: read on only as far as the bytes are local, when some are (decoding may stop
  // before it needs more: a prefetched range ends where its decoding does); when none are,
  // fetch in one request what the rest of this read will need.
  std::size_t want = in_.size();
  if (const std::uint64_t local = blob_->local_prefix(in_offset_, want); local == 0) {
    fetch_ahead();
  } else if (local < want) {
    want = static_cast<std::size_t>(local);
  }
  OCIFS_ASSIGN(std::size_t n, blob_->read_at(in_offset_, std::span(in_).first(want)));
  in_size_ = n;
  eof_ = n == 0;
  s.next_in = reinterpret_cast<std::uint8_t*>(in_.data());
  s.avail_in = static_cast<std::uint32_t>(n);
  return util::success();
}

Result<void> GzipCursor::restart(const GzipCheckpoint& point) {
  live_ = false;
  inflate_state& s = inflater_->state();
  s.next_in = nullptr;
  s.avail_in = 0;
  if (point.member_start) {
    inflater_->start_member();
  } else {
    std::string_view packed = point.state;
    std::shared_ptr<const std::string> fetched;
    if (packed.empty() && index_->remote_states) {
      auto got = index_->remote_states->state(static_cast<std::size_t>(&point - index_->gzip_points.data()));
      if (!got) return std::move(got).error();
      fetched = std::move(got).value();
      packed = *fetched;
    }
    std::string state(sizeof(inflate_state), '\0');
    std::size_t n = ZSTD_decompress(state.data(), state.size(), packed.data(), packed.size());
    if (ZSTD_isError(n) || n != state.size()) return error("the checkpoint state is corrupt");
    auto restored = inflater_->restore(state);
    if (!restored) return error(restored.error().message);
  }
  in_offset_ = point.compressed_offset;
  in_size_ = 0;
  eof_ = false;
  position_ = point.decoded_offset;
  live_ = true;
  return util::success();
}

Result<void> GzipCursor::inflate_into(std::span<std::byte> out) {
  inflate_state& s = inflater_->state();
  std::size_t produced = 0;
  while (produced < out.size()) {
    // ISA-L leaves the input just past a member's trailer: the next member's header follows.
    if (inflater_->member_done()) inflater_->start_member();
    OCIFS_TRY(refill());
    std::size_t room = std::min<std::size_t>(out.size() - produced, 1u << 30);
    s.next_out = reinterpret_cast<std::uint8_t*>(out.data() + produced);
    s.avail_out = static_cast<std::uint32_t>(room);
    std::uint32_t before_in = s.avail_in;
    int ret = isal_inflate(&s);
    std::size_t n = room - s.avail_out;
    produced += n;
    position_ += n;
    if (ret < 0 || ret == ISAL_NEED_DICT) return error(IsalInflater::message(ret));
    if (n == 0 && before_in == s.avail_in && !inflater_->member_done()) {
      if (eof_) {
        return error(fmt::format("unexpected end of data, {} decoded bytes short of the indexed size",
                                 index_->decoded_size - position_));
      }
      if (s.avail_in > 0) return error("inflate made no progress");
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
  plan_fetches(*it, offset + length);
  if (offset > position_) {
    if (scratch_.empty()) scratch_.resize(kScratch);
    while (offset > position_) {
      auto n = static_cast<std::size_t>(std::min<std::uint64_t>(offset - position_, scratch_.size()));
      OCIFS_TRY(inflate_into(std::span(scratch_).first(n)));
    }
  }
  OCIFS_TRY(inflate_into(buf.first(length)));
  if (position_ == size) OCIFS_TRY(check_trailer());
  live_ = true;
  return length;
}

void GzipCursor::plan_fetches(const GzipCheckpoint& point, std::uint64_t target) {
  target_ = target;
  ratio_ = 0;
  const auto& points = index_->gzip_points;
  const auto next = static_cast<std::size_t>(&point - points.data()) + 1;
  const std::uint64_t c1 = next < points.size() ? points[next].compressed_offset : index_->compressed_size;
  const std::uint64_t d1 = next < points.size() ? points[next].decoded_offset : index_->decoded_size;
  fetch_limit_ = std::min(index_->compressed_size, c1 + kInputChunk);
  if (d1 > point.decoded_offset && c1 > point.compressed_offset) {
    ratio_ = static_cast<double>(c1 - point.compressed_offset) / static_cast<double>(d1 - point.decoded_offset);
  }
}

void GzipCursor::fetch_ahead() {
  if (target_ <= position_ || ratio_ <= 0) return;
  // A little more than the estimate: what it misses is fetched as decoding asks, a request for
  // each input block. Only what is missing is fetched; a failure shows on the read.
  const auto estimate = static_cast<std::uint64_t>(static_cast<double>(target_ - position_) * ratio_);
  const std::uint64_t to = std::min(fetch_limit_, in_offset_ + estimate + estimate / 10 + kMinInput);
  if (to > in_offset_) (void)blob_->prefetch(in_offset_, to - in_offset_);
}

Result<std::optional<GzipCheckpoint>> GzipCursor::checkpoint_at(std::uint64_t offset, int level) {
  if (offset == 0 || offset >= index_->decoded_size) return std::optional<GzipCheckpoint>();
  std::byte last;
  OCIFS_TRY(read_at(offset - 1, std::span(&last, 1)));
  // Between two isal_inflate() calls, the last of which filled its output: where a scan takes its
  // checkpoints too.
  if (!inflater_->resumable()) return std::optional<GzipCheckpoint>();
  const std::string state = inflater_->snapshot();
  std::string packed(ZSTD_compressBound(state.size()), '\0');
  const std::size_t n = ZSTD_compress(packed.data(), packed.size(), state.data(), state.size(), level);
  if (ZSTD_isError(n)) return error(fmt::format("cannot pack a checkpoint state: {}", ZSTD_getErrorName(n)));
  packed.resize(n);
  GzipCheckpoint point;
  point.decoded_offset = offset;
  point.compressed_offset = consumed();
  point.state = std::move(packed);
  return std::optional<GzipCheckpoint>(std::move(point));
}

// A read that reaches the end of the stream also reads the last member's trailer, so that its
// CRC-32 and length are checked whatever checkpoint the decoding started from.
Result<void> GzipCursor::check_trailer() {
  inflate_state& s = inflater_->state();
  std::uint8_t extra[16];
  while (!inflater_->member_done()) {
    OCIFS_TRY(refill());
    s.next_out = extra;
    s.avail_out = sizeof extra;
    std::uint32_t before_in = s.avail_in;
    int ret = isal_inflate(&s);
    if (ret < 0 || ret == ISAL_NEED_DICT) return error(IsalInflater::message(ret));
    if (s.avail_out != sizeof extra) return error("the stream decodes to more bytes than indexed");
    if (!inflater_->member_done() && before_in == s.avail_in && (eof_ || s.avail_in > 0)) {
      return error("unexpected end of data in the gzip trailer");
    }
  }
  return util::success();
}

}  // namespace ocifs::compress
