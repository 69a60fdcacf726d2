// The gzip StreamDecoder: one ISA-L inflate pass over every member that also records
// checkpoints (snapshots of the inflate state, see isal_inflater.hpp), extended to multi-member
// streams and trailing zero padding.
#include "ocifs/compress/gzip_decoder.hpp"

#include <zstd.h>

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "isal_inflater.hpp"
#include "ocifs/util/thread_boundary.hpp"

namespace ocifs::compress {
namespace {

// 1 MiB blob reads: few syscalls / range requests, while staying small next to a layer.
constexpr std::size_t kInputBlock = 1u << 20;
// Small reads (tar headers are 512 bytes) are served from a 1 MiB buffer: every isal_inflate()
// call ends by saving 32 KiB of history and starts by decoding into its own buffer, so calls
// must be large for that to stay negligible.
constexpr std::size_t kOutputBlock = 1u << 20;
// Reads at least this large inflate straight into the caller's buffer.
constexpr std::size_t kDirectRead = 256u << 10;
// Smallest distance between checkpoints: each is an 87 KiB state copied and compressed, and
// the call before it stops short, so denser points would cost more than they save.
constexpr std::uint64_t kMinSpan = 16u << 10;
// The checkpoints of a mounted layer stay in memory (2-19 KiB each, packed): after every 1024 of
// them the distance doubles, up to 16 MiB, so their number grows with the log of the decoded
// size. A 5 GB layer has ~3,400 (65 MB) instead of 10,000 (190 MB); a gzip bomb of 1 TiB of
// zeros ~70,000 (~140 MB) instead of 2 million (6 GB). A read inflates half a span on average:
// 8 MiB at worst, ~15 ms.
constexpr std::size_t kPointsPerDoubling = 1024;
constexpr std::uint64_t kMaxSpan = 16u << 20;

}  // namespace

// Compresses checkpoint states (zstd level 1) on one worker thread: a state is 87 KiB, ~19 KiB
// packed, ~0.1 ms each; one per span (512 KiB decoded by default), so done inline it would cost
// the decoding thread ~10% of a scan. At most kMaxQueued states (1.4 MiB) wait; submit() blocks
// beyond that. Used by one decoder thread; the worker shares only the queue and results, under
// mutex_.
class StatePacker {
 public:
  StatePacker() = default;
  ~StatePacker() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      abandon_ = true;
    }
    wake_.notify_all();
    if (worker_.joinable()) worker_.join();
  }
  StatePacker(const StatePacker&) = delete;
  StatePacker& operator=(const StatePacker&) = delete;

  // Queues the state of checkpoint number `point`.
  void submit(std::size_t point, std::string state) {
    std::unique_lock lock(mutex_);
    if (!worker_.joinable()) {
      worker_ = std::thread([this] {
        if (auto escaped = util::catch_all("pack gzip checkpoint states", [this] { run(); })) {
          std::lock_guard lock(mutex_);  // finish() reports it; submit() no longer waits for room
          if (!error_) error_ = std::move(escaped);
          dead_ = true;
          queue_.clear();
          room_.notify_all();
        }
      });
    }
    room_.wait(lock, [&] { return dead_ || queue_.size() < kMaxQueued; });
    if (dead_) return;  // the scan fails at finish()
    queue_.push_back(Job{point, std::move(state)});
    lock.unlock();
    wake_.notify_one();
  }

  struct Done {
    std::size_t point;
    std::string packed;  // GzipCheckpoint::state
  };
  // Waits for every queued state; returns them packed, or the first failure.
  Result<std::vector<Done>> finish() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
    }
    wake_.notify_all();
    if (worker_.joinable()) worker_.join();
    if (error_) return *error_;
    return std::move(done_);
  }

 private:
  // States waiting to be packed (an 87 KiB ISA-L state each): 16 bound them to ~1.4 MB while the
  // packer keeps up, and make the scan wait for it rather than pile them up when it does not.
  static constexpr std::size_t kMaxQueued = 16;
  struct Job {
    std::size_t point;
    std::string state;
  };

  void run() {
    std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
    // Level 1; the content checksum lets a reader tell a damaged state from a good one.
    if (cctx && (ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, 1)) ||
                 ZSTD_isError(ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 1)))) {
      cctx.reset();
    }
    std::string scratch;
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return !queue_.empty() || closing_; });
      if (abandon_ || (queue_.empty() && closing_)) break;
      Job job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      room_.notify_one();
      Done done{job.point, {}};
      std::size_t ret = 0;
      if (cctx) {
        // Packed into a scratch buffer and copied out at its size: a string shrunk with
        // resize() would keep its 87 KiB capacity, 34 MB over the bench image's 388 points.
        scratch.resize(ZSTD_compressBound(job.state.size()));
        ret = ZSTD_compress2(cctx.get(), scratch.data(), scratch.size(), job.state.data(), job.state.size());
        if (!ZSTD_isError(ret)) done.packed.assign(scratch.data(), ret);
      }
      lock.lock();
      if ((!cctx || ZSTD_isError(ret)) && !error_) {
        error_ = make_error(std::errc::io_error, "cannot pack the state of gzip checkpoint {}: {}", job.point,
                            cctx ? ZSTD_getErrorName(ret) : "out of memory");
      }
      done_.push_back(std::move(done));
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;  // the worker: a job or closing_
  std::condition_variable room_;  // submit(): the queue has room
  std::deque<Job> queue_;
  std::vector<Done> done_;
  std::optional<Error> error_;
  bool closing_ = false;  // no more jobs will come
  bool abandon_ = false;  // drop queued jobs (destroyed without finish())
  bool dead_ = false;     // the worker ended by an exception (error_ says which)
  std::thread worker_;
};

GzipDecoder::GzipDecoder(io::BlobSourcePtr blob, const ScanOptions& options)
    : blob_(std::move(blob)),
      span_(std::max(options.gzip_span, kMinSpan)),
      hash_raw_(options.hash && options.hash_compressed),
      hash_decoded_(options.hash_decoded),
      inflater_(std::make_unique<IsalInflater>()),
      packer_(std::make_unique<StatePacker>()),
      in_(kInputBlock),
      out_(kOutputBlock) {}

GzipDecoder::~GzipDecoder() = default;

std::uint64_t GzipDecoder::consumed() const { return in_offset_ + in_size_ - inflater_->state().avail_in; }

Error GzipDecoder::decode_error(std::string_view reason) const {
  return make_error(std::errc::io_error, "cannot inflate {} at compressed offset {}: {}", blob_->describe(),
                    consumed(), reason);
}

Result<void> GzipDecoder::ensure_input(std::size_t count) {
  inflate_state& s = inflater_->state();
  if (s.avail_in >= count || eof_) return util::success();
  // Move what is left to the front and read the blob on from where in_ ended: reads stay in
  // order (the scanner's source requires it) and every byte is hashed once.
  // Before the first read next_in is null (avail_in 0): memmove's arguments must not be null
  // even for zero bytes (UBSan reports it).
  if (s.avail_in > 0) std::memmove(in_.data(), s.next_in, s.avail_in);
  std::uint64_t next = in_offset_ + in_size_;
  in_offset_ = next - s.avail_in;
  in_size_ = s.avail_in;
  OCIFS_ASSIGN(std::size_t n, blob_->read_at(next, std::span(in_).subspan(in_size_)));
  if (hash_raw_) raw_hasher_.update(std::span(in_).subspan(in_size_, n));
  in_size_ += n;
  eof_ = n == 0;
  s.next_in = reinterpret_cast<std::uint8_t*>(in_.data());
  s.avail_in = static_cast<std::uint32_t>(in_size_);
  return util::success();
}

void GzipDecoder::record_point(bool member_start) {
  GzipCheckpoint point;
  point.compressed_offset = consumed();
  point.decoded_offset = decoded_;
  point.member_start = member_start;
  if (!member_start) packer_->submit(points_.size(), inflater_->snapshot());
  points_.push_back(std::move(point));
  if (points_.size() % kPointsPerDoubling == 0 && span_ < kMaxSpan) span_ = std::min(span_ * 2, kMaxSpan);
}

Result<void> GzipDecoder::start_member() {
  inflate_state& s = inflater_->state();
  OCIFS_TRY(ensure_input(1));
  if (s.avail_in == 0) {
    if (members_ == 0) return decode_error("the blob is empty, not a gzip stream");
    state_ = State::done;
    return util::success();
  }
  auto first = *s.next_in;
  if (members_ > 0 && first == 0) {
    // Zero padding after the last member, as tar writers add to fill a record: allowed, but
    // nothing else may follow it.
    for (;;) {
      const std::uint8_t* p = s.next_in;
      const std::uint8_t* end = p + s.avail_in;
      const std::uint8_t* bad = std::find_if(p, end, [](std::uint8_t b) { return b != 0; });
      if (bad != end) {
        s.next_in += bad - p;
        s.avail_in -= static_cast<std::uint32_t>(bad - p);
        return decode_error("trailing garbage after zero padding");
      }
      s.next_in += s.avail_in;
      s.avail_in = 0;
      OCIFS_TRY(ensure_input(1));
      if (s.avail_in == 0) break;
    }
    state_ = State::done;
    return util::success();
  }
  if (members_ > 0 && first != 0x1f) return decode_error("trailing garbage after the last gzip member");
  // RFC 1952: a reader must refuse reserved header flags (zlib does; ISA-L does not look).
  OCIFS_TRY(ensure_input(4));
  if (s.avail_in >= 4 && (s.next_in[3] & 0xe0)) return decode_error("reserved gzip header flags are set");
  if (points_.empty() || decoded_ - points_.back().decoded_offset >= span_) record_point(true);
  // ISA-L parses the header and checks the trailer. The CRC-32 is not redundant with the blob's
  // sha256: the digest says the blob is the one named, the CRC that its deflate data decodes to
  // what was compressed (a corrupt stream can inflate without error).
  inflater_->start_member();
  ++members_;
  state_ = State::in_member;
  return util::success();
}

Result<std::size_t> GzipDecoder::inflate_some(std::span<std::byte> out) {
  inflate_state& s = inflater_->state();
  std::size_t produced = 0;
  while (produced < out.size() && state_ != State::done) {
    if (state_ == State::member_start) {
      OCIFS_TRY(start_member());
      continue;
    }
    OCIFS_TRY(ensure_input(1));
    // Output stops exactly where the next checkpoint is due, so checkpoints land on span
    // multiples of the decoded stream (unless a member ends or starts in between).
    std::size_t room = std::min<std::size_t>(out.size() - produced, 1u << 30);
    const std::uint64_t due = points_.back().decoded_offset + span_;
    if (decoded_ < due) room = static_cast<std::size_t>(std::min<std::uint64_t>(room, due - decoded_));
    s.next_out = reinterpret_cast<std::uint8_t*>(out.data() + produced);
    s.avail_out = static_cast<std::uint32_t>(room);
    std::uint32_t before_in = s.avail_in;
    int ret = isal_inflate(&s);
    std::size_t n = room - s.avail_out;
    if (n > 0 && hash_decoded_) decoded_hasher_.update(out.subspan(produced, n));
    produced += n;
    decoded_ += n;
    if (ret < 0 || ret == ISAL_NEED_DICT) return decode_error(IsalInflater::message(ret));
    if (inflater_->member_done()) {
      state_ = State::member_start;
      continue;
    }
    if (n == 0 && before_in == s.avail_in) {
      if (eof_) return decode_error("unexpected end of data inside a gzip member (truncated blob)");
      if (s.avail_in > 0) return decode_error("inflate made no progress");  // never spin
    }
    if (decoded_ >= due && inflater_->resumable()) record_point(false);
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
  OCIFS_ASSIGN(auto states, packer_->finish());
  for (auto& packed : states) points_[packed.point].state = std::move(packed.packed);
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
