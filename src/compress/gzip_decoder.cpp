// The gzip StreamDecoder: one Z_BLOCK inflate pass that also records checkpoints (zlib
// examples/zran.c), extended to multi-member streams and trailing zero padding.
#include "ocifs/compress/gzip_decoder.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

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

// Deflates checkpoint windows (zlib level 1) on one worker thread: ~0.3 ms per 32 KiB window,
// one window per span (512 KiB decoded by default), i.e. 10-18% of the decoding thread's time
// in a scan if it were done inline. At most
// kMaxQueued windows (2 MiB) wait; submit() blocks beyond that. Used by one decoder thread;
// the worker shares only the queue and results, under mutex_.
class WindowDeflater {
 public:
  WindowDeflater() = default;
  ~WindowDeflater() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      abandon_ = true;
    }
    wake_.notify_all();
    if (worker_.joinable()) worker_.join();
  }
  WindowDeflater(const WindowDeflater&) = delete;
  WindowDeflater& operator=(const WindowDeflater&) = delete;

  // Queues the window of checkpoint number `point`.
  void submit(std::size_t point, std::vector<unsigned char> window) {
    std::unique_lock lock(mutex_);
    if (!worker_.joinable()) worker_ = std::thread([this] { run(); });
    room_.wait(lock, [&] { return queue_.size() < kMaxQueued; });
    queue_.push_back(Job{point, std::move(window)});
    lock.unlock();
    wake_.notify_one();
  }

  struct Done {
    std::size_t point;
    std::string deflated;  // GzipCheckpoint::window_deflated
  };
  // Waits for every queued window; returns them deflated, or the first failure.
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
  static constexpr std::size_t kMaxQueued = 64;
  struct Job {
    std::size_t point;
    std::vector<unsigned char> window;
  };

  void run() {
    z_stream strm{};
    // Same parameters as compress2(level 1), once per thread instead of once per window.
    bool ready = deflateInit(&strm, 1) == Z_OK;
    std::unique_lock lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return !queue_.empty() || closing_; });
      if (abandon_ || (queue_.empty() && closing_)) break;
      Job job = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();
      room_.notify_one();
      Done done{job.point, {}};
      int ret = ready ? deflateReset(&strm) : Z_MEM_ERROR;
      if (ret == Z_OK) {
        done.deflated.resize(deflateBound(&strm, job.window.size()));
        strm.next_in = job.window.data();
        strm.avail_in = static_cast<uInt>(job.window.size());
        strm.next_out = reinterpret_cast<Bytef*>(done.deflated.data());
        strm.avail_out = static_cast<uInt>(done.deflated.size());
        ret = deflate(&strm, Z_FINISH);
        if (ret == Z_STREAM_END) ret = Z_OK;
        done.deflated.resize(strm.total_out);
      }
      lock.lock();
      if (ret != Z_OK && !error_) {
        error_ = make_error(std::errc::io_error,
                            "cannot deflate the window of gzip checkpoint {}: zlib error {}", job.point, ret);
      }
      done_.push_back(std::move(done));
    }
    if (ready) deflateEnd(&strm);
  }

  std::mutex mutex_;
  std::condition_variable wake_;  // the worker: a job or closing_
  std::condition_variable room_;  // submit(): the queue has room
  std::deque<Job> queue_;
  std::vector<Done> done_;
  std::optional<Error> error_;
  bool closing_ = false;  // no more jobs will come
  bool abandon_ = false;  // drop queued jobs (destroyed without finish())
  std::thread worker_;
};

GzipDecoder::GzipDecoder(io::BlobSourcePtr blob, const ScanOptions& options)
    : blob_(std::move(blob)),
      span_(std::max<std::uint64_t>(options.gzip_span, 1)),
      hash_raw_(options.hash && options.hash_compressed),
      hash_decoded_(options.hash_decoded),
      inflater_(std::make_unique<ZlibInflater>()),
      deflater_(std::make_unique<WindowDeflater>()),
      in_(kInputBlock),
      out_(kOutputBlock) {}

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
    std::vector<unsigned char> window(kWindowSize);
    uInt length = static_cast<uInt>(window.size());
    if (inflateGetDictionary(&strm, window.data(), &length) != Z_OK) {
      return decode_error("cannot copy the inflate window");
    }
    window.resize(length);
    // Level 1 (on the worker): ~0.3 ms per 32 KiB window and about 3x smaller; higher levels
    // gain little here.
    deflater_->submit(points_.size(), std::move(window));
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
  // zlib parses the header and checks the trailer. Its CRC-32 (~6% of a scan's CPU) is not
  // redundant with the blob's sha256: the digest says the blob is the one named, the CRC that
  // its deflate data decodes to what was compressed (a corrupt stream can inflate without error).
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
    // Until a checkpoint is nearly due, inflate without stopping at block boundaries: each
    // return copies up to 32 KiB into zlib's window, and deflate blocks are ~16-64 KiB decoded:
    // stopping at every one cost ~35 ms of a 0.9 s cold index of the bench image. Stopping one byte short of
    // the due point leaves every boundary at or after it to Z_BLOCK: the same checkpoints as Z_BLOCK
    // throughout.
    std::size_t room = std::min<std::size_t>(out.size() - produced, 1u << 30);
    int flush = Z_BLOCK;
    const std::uint64_t due = points_.back().decoded_offset + span_;
    if (decoded_ + 1 < due) {
      room = static_cast<std::size_t>(std::min<std::uint64_t>(room, due - 1 - decoded_));
      flush = Z_NO_FLUSH;
    }
    strm.next_out = reinterpret_cast<Bytef*>(out.data() + produced);
    strm.avail_out = static_cast<uInt>(room);
    uInt before_out = strm.avail_out;
    uInt before_in = strm.avail_in;
    int ret = inflate(&strm, flush);
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
    if (flush == Z_BLOCK && (strm.data_type & 128) && !(strm.data_type & 64) &&
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
  OCIFS_ASSIGN(auto windows, deflater_->finish());
  for (auto& w : windows) points_[w.point].window_deflated = std::move(w.deflated);
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
