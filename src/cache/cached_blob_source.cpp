#include "ocifs/cache/cached_blob_source.hpp"

#include <spdlog/spdlog.h>

#include "ocifs/util/deadline.hpp"
#include "ocifs/util/thread_boundary.hpp"

#include <cstring>
#include <vector>

namespace ocifs::cache {

namespace {

constexpr std::uint64_t kChunk = BlobEntry::kChunkSize;
// A present run at least this long ahead of the stream is skipped with a new request rather
// than downloaded again: 1 MiB is 84 ms at 100 Mbit/s, far more than a request's round trip.
constexpr std::uint64_t kSkipChunks = 4;
// Learn what other processes stored at most this often before fetching.
constexpr std::int64_t kRefreshIntervalMs = 1000;
// Rounds of read_at that made no progress (chunks evicted between fetch and read) before giving up.
constexpr int kMaxIdleRounds = 4;

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

CachedBlobSource::CachedBlobSource(std::shared_ptr<BlobEntry> entry, std::shared_ptr<RemoteBlob> remote,
                                   Options options)
    : entry_(std::move(entry)), remote_(std::move(remote)), options_(options) {
  if (options_.max_request < kChunk) options_.max_request = kChunk;
}

CachedBlobSource::~CachedBlobSource() { stop_stream(); }

bool CachedBlobSource::discard(std::uint64_t offset, std::uint64_t length) const {
  return entry_->invalidate(offset, length).ok();
}

std::string CachedBlobSource::describe() const { return remote_ ? remote_->describe() : entry_->digest(); }

Result<std::size_t> CachedBlobSource::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  const std::uint64_t size = entry_->size();
  if (offset >= size || buf.empty()) return std::size_t{0};
  const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - offset));
  std::size_t done = 0;
  bool allow_stream_wait = true;
  reads_.fetch_add(1, std::memory_order_relaxed);
  for (int idle = 0;; ++idle) {
    OCIFS_ASSIGN(std::size_t n, entry_->read(offset + done, buf.subspan(done, want - done)));
    done += n;
    if (done == want) {
      if (idle == 0) hits_.fetch_add(1, std::memory_order_relaxed);  // all of it was in the cache
      return done;
    }
    if (n > 0) idle = 0;
    if (idle == kMaxIdleRounds) {
      return make_error(std::errc::io_error,
                        "cannot read {} at offset {}: its chunks are evicted as soon as they are fetched "
                        "(is --cache-max too small?)",
                        entry_->digest(), offset + done);
    }
    OCIFS_TRY(ensure(offset + done, offset + want, allow_stream_wait));
  }
}

bool CachedBlobSource::stream_covers(std::uint64_t chunk) const {
  if (!stream_started_ || stream_done_) return false;
  std::uint64_t at = chunk * kChunk;
  return at >= stream_pos_ && at < stream_pos_ + options_.stream_window;
}

Result<void> CachedBlobSource::ensure(std::uint64_t from, std::uint64_t to, bool& allow_stream_wait) const {
  const std::uint64_t first = from / kChunk, last = (to - 1) / kChunk;
  if (remote_) {
    auto now = steady_ms();
    auto prev = last_refresh_ms_.load(std::memory_order_relaxed);
    if (now - prev >= kRefreshIntervalMs && last_refresh_ms_.compare_exchange_strong(prev, now)) {
      if (auto r = entry_->refresh(); !r) spdlog::debug("{}", r.error().message);
    }
  }
  std::vector<Run> runs;
  std::vector<std::shared_ptr<Flight>> waits;
  std::optional<std::uint64_t> stream_last;  // the furthest chunk we wait for the stream to store
  // Lands every flight of `runs` that is still up when this call ends, however it ends (an
  // exception included): a flight left in the table would keep its waiters waiting for good.
  struct Landing {
    const CachedBlobSource& self;
    std::vector<Run>& runs;
    std::size_t landed = 0;
    ~Landing() {
      for (; landed < runs.size(); ++landed) {
        self.land(runs[landed], make_error(std::errc::io_error, "cannot fetch {} bytes from offset {}: the fetch was abandoned",
                                           self.entry_->digest(), runs[landed].first * kChunk));
      }
    }
  } landing{*this, runs};
  {
    std::lock_guard lock(mu_);
    for (std::uint64_t c = first; c <= last; ++c) {
      if (entry_->chunk_present(c)) continue;
      if (auto it = in_flight_.find(c); it != in_flight_.end()) {
        waits.push_back(it->second);
        continue;
      }
      if (allow_stream_wait && stream_covers(c)) {
        stream_last = c;
        continue;
      }
      if (!remote_) {
        return make_error(std::errc::io_error, "cannot read {} at offset {}: not in the cache and --offline",
                          entry_->digest(), std::max(from, c * kChunk));
      }
      if (!runs.empty() && runs.back().first + runs.back().count == c &&
          (runs.back().count + 1) * kChunk <= options_.max_request) {
        ++runs.back().count;
      } else {
        runs.reserve(runs.size() + 1);  // may throw: before the flight is in the table, not after
        auto flight = std::make_shared<Flight>();
        runs.push_back(Run{c, 1, std::move(flight)});
      }
      in_flight_[c] = runs.back().flight;
    }
  }
  std::optional<Error> error;
  for (; landing.landed < runs.size(); ++landing.landed) {
    auto& run = runs[landing.landed];
    // After a failure the remaining runs fail the same way without asking the remote again.
    Result<void> r = error ? Result<void>(*error) : fetch_run(run.first, run.count);
    if (!r && !error) error = r.error();
    land(run, std::move(r));
  }
  if (error) return *error;
  std::unique_lock lock(mu_);
  for (auto& flight : waits) {
    if (!util::wait_within_deadline(cv_, lock, [&] { return flight->done; })) {
      return util::deadline_passed(fmt::format("read {} at offset {}: waiting for another read's fetch",
                                               entry_->digest(), from));
    }
    if (flight->error) return *flight->error;
  }
  if (stream_last) {
    const std::uint64_t need_end = (*stream_last + 1) * kChunk;
    const auto deadline = util::current_deadline();
    const auto give_up = std::chrono::steady_clock::now() + options_.stream_wait;
    bool moved = cv_.wait_until(lock, util::earliest(give_up, deadline), [&] {
      return stream_done_ || stop_.load() || stream_pos_ >= need_end || entry_->chunk_present(*stream_last);
    });
    if (!moved && deadline <= give_up) {
      return util::deadline_passed(fmt::format("read {} at offset {}: waiting for its stream", entry_->digest(), from));
    }
    if (!moved) {
      spdlog::debug("{}: no progress of the stream for {} ms; fetching by range", entry_->digest(),
                    options_.stream_wait.count());
      allow_stream_wait = false;
    }
  }
  return util::success();
}

void CachedBlobSource::land(Run& run, Result<void> result) const {
  {
    std::lock_guard lock(mu_);
    for (auto c = run.first; c < run.first + run.count; ++c) in_flight_.erase(c);
    run.flight->done = true;
    if (!result) run.flight->error = std::move(result).error();
  }
  cv_.notify_all();
}

Result<void> CachedBlobSource::fetch_run(std::uint64_t first, std::uint64_t count) const {
  const std::uint64_t offset = first * kChunk;
  const std::uint64_t length = std::min(count * kChunk, entry_->size() - offset);
  {
    std::lock_guard lock(failure_mu_);
    if (last_failure_ && steady_ms() - last_failure_->first < options_.fail_fast.count()) {
      return last_failure_->second.with_context(
          fmt::format("cannot fetch {} bytes {}-{} (the last fetch failed {} ms ago)", entry_->digest(), offset,
                      offset + length - 1, steady_ms() - last_failure_->first));
    }
  }
  std::vector<std::byte> buf(length);
  auto got = remote_->read_range(offset, buf);
  if (!got) {
    fetch_errors_.fetch_add(1, std::memory_order_relaxed);
    Error error{got.error().code, fmt::format("cannot fetch {} bytes {}-{} from {}: {}", entry_->digest(), offset,
                                              offset + length - 1, remote_->describe(), got.error().message)};
    std::lock_guard lock(failure_mu_);
    last_failure_.emplace(steady_ms(), error);
    return error;
  }
  if (*got != length) {
    return make_error(std::errc::io_error, "cannot fetch {} bytes {}-{} from {}: got {} of {} bytes", entry_->digest(),
                      offset, offset + length - 1, remote_->describe(), *got, length);
  }
  fetched_.fetch_add(length, std::memory_order_relaxed);
  for (std::uint64_t i = 0; i < count; ++i) {
    auto chunk = first + i;
    OCIFS_TRY(entry_->write_chunk(chunk, std::span<const std::byte>(buf).subspan(i * kChunk, entry_->chunk_length(chunk))));
  }
  return util::success();
}

void CachedBlobSource::start_stream() {
  std::lock_guard join(join_mu_);
  std::lock_guard lock(mu_);
  if (stream_started_) return;
  stream_started_ = true;
  if (entry_->complete()) {
    stream_done_ = true;
    stream_pos_ = entry_->size();
    return;
  }
  if (!remote_) {
    stream_done_ = true;
    stream_error_ = make_error(std::errc::io_error, "cannot stream {}: not in the cache and --offline", entry_->digest());
    return;
  }
  stream_pos_ = entry_->next_absent(0) * kChunk;
  thread_ = std::thread([this] {
    std::optional<Error> error;
    if (auto escaped = util::catch_all(fmt::format("stream {}", entry_->digest()), [&] { error = stream_blob(); })) {
      error = std::move(escaped);
    }
    if (auto r = entry_->flush(); !r) spdlog::warn("{}", r.error().message);
    {
      std::lock_guard lock(mu_);
      stream_done_ = true;
      stream_error_ = std::move(error);
      if (!stream_error_) stream_pos_ = entry_->size();
    }
    cv_.notify_all();
  });
}

std::optional<Error> CachedBlobSource::stream_blob() {
  const std::uint64_t n = entry_->chunk_count();
  std::optional<Error> error;
  std::vector<std::byte> chunk_buf(kChunk);
  std::uint64_t next = entry_->next_absent(0);
  // One request per run of absent chunks, asking for exactly that run: whatever a request asks
  // for beyond what is wanted arrives anyway (the link's buffers are full of it) and is wasted.
  while (next < n && !stop_.load()) {
    std::uint64_t cur = next;
    std::uint64_t run_end = cur + 1;
    while (run_end < n && !entry_->chunk_present(run_end)) ++run_end;
    std::uint64_t filled = 0;
    std::optional<std::uint64_t> restart_at;
    {
      std::lock_guard lock(mu_);
      stream_pos_ = cur * kChunk;
    }
    cv_.notify_all();
    auto sink = [&](std::span<const std::byte> data) -> Result<void> {
      if (stop_.load()) return make_error(std::errc::operation_canceled, "cannot stream {}: stopped", entry_->digest());
      streamed_.fetch_add(data.size(), std::memory_order_relaxed);
      while (!data.empty()) {
        if (cur >= run_end) {
          return make_error(std::errc::io_error, "cannot stream {}: the remote sent more than bytes {}-{}",
                            entry_->digest(), next * kChunk, run_end * kChunk - 1);
        }
        const std::uint64_t len = entry_->chunk_length(cur);
        const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(len - filled, data.size()));
        std::memcpy(chunk_buf.data() + filled, data.data(), take);
        filled += take;
        data = data.subspan(take);
        if (filled < len) continue;
        OCIFS_TRY(entry_->write_chunk(cur, std::span<const std::byte>(chunk_buf.data(), len)));
        ++cur;
        filled = 0;
        {
          std::lock_guard lock(mu_);
          stream_pos_ = cur * kChunk;
        }
        cv_.notify_all();
        // Range reads may have fetched what lies ahead meanwhile.
        if (cur < run_end && entry_->chunk_present(cur)) {
          auto absent = entry_->next_absent(cur);
          if (absent >= run_end || absent - cur >= kSkipChunks) {
            restart_at = absent;
            return make_error(std::errc::operation_canceled, "skipping present chunks");
          }
        }
      }
      return util::success();
    };
    const std::uint64_t to = std::min(run_end * kChunk, entry_->size());
    auto r = remote_->stream(cur * kChunk, to, sink, [this] { return stop_.load(); });
    if (restart_at) {
      next = *restart_at;
      continue;
    }
    if (stop_.load()) {
      error = make_error(std::errc::operation_canceled, "cannot stream {}: stopped", entry_->digest());
    } else if (!r) {
      error = r.error();
    } else if (cur < run_end) {
      error = make_error(std::errc::io_error, "cannot stream {}: the stream ended at byte {} of {}", entry_->digest(),
                         cur * kChunk + filled, entry_->size());
    } else {
      next = entry_->next_absent(run_end);
      continue;
    }
    break;
  }
  return error;
}

Result<void> CachedBlobSource::wait_stream() {
  std::unique_lock lock(mu_);
  if (!stream_started_) return util::success();
  cv_.wait(lock, [&] { return stream_done_; });
  if (stream_error_) return *stream_error_;
  return util::success();
}

void CachedBlobSource::stop_stream() {
  stop_.store(true);
  {
    std::lock_guard lock(mu_);  // a waiter between its check and its wait still sees the notify
  }
  cv_.notify_all();
  std::lock_guard join(join_mu_);
  if (thread_.joinable()) thread_.join();
}

Result<void> CachedBlobSource::prefetch(std::uint64_t offset, std::uint64_t length) const {
  const std::uint64_t end = std::min(entry_->size(), offset + std::min(length, entry_->size()));
  if (offset >= end) return util::success();
  bool allow_stream_wait = true;
  return ensure(offset, end, allow_stream_wait);
}

bool CachedBlobSource::fetching() const {
  std::lock_guard lock(mu_);
  return !in_flight_.empty();
}

CachedBlobSource::Progress CachedBlobSource::progress() const {
  Progress p;
  p.size = entry_->size();
  p.present = entry_->present_bytes();
  p.streamed = streamed_.load(std::memory_order_relaxed);
  p.fetched = fetched_.load(std::memory_order_relaxed);
  p.reads = reads_.load(std::memory_order_relaxed);
  p.hits = hits_.load(std::memory_order_relaxed);
  p.fetch_errors = fetch_errors_.load(std::memory_order_relaxed);
  std::lock_guard lock(mu_);
  if (stream_error_) ++p.fetch_errors;
  p.streaming = stream_started_ && !stream_done_;
  p.stream_done = stream_started_ && stream_done_;
  return p;
}

}  // namespace ocifs::cache
