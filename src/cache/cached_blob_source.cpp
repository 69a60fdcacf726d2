#include "ocifs/cache/cached_blob_source.hpp"

#include <spdlog/spdlog.h>

#include <cstring>
#include <vector>

#include "blob_stream.hpp"
#include "ocifs/util/deadline.hpp"

namespace ocifs::cache {

namespace {

constexpr std::uint64_t kChunk = BlobEntry::kChunkSize;  // fetched and stored in whole cache chunks
// Learn what other processes stored at most this often before fetching: a refresh reads the
// chunk map under a shared flock (a few KiB); once a second is nothing next to a fetch.
constexpr std::int64_t kRefreshIntervalMs = 1000;
// Rounds of read_at that found nothing new in the cache after ensure() (offline, or a fetch
// that another read did and reported done) before giving up. With a remote, such a round fetches
// straight into the reader's buffer instead, so it always makes progress.
constexpr int kMaxIdleRounds = 4;

using util::steady_ms;

}  // namespace

CachedBlobSource::CachedBlobSource(std::shared_ptr<BlobEntry> entry, std::shared_ptr<RemoteBlob> remote,
                                   Options options)
    : entry_(std::move(entry)),
      remote_(std::move(remote)),
      options_(options),
      stream_(std::make_unique<BlobStream>(entry_, remote_, options_.stream_window)) {
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
    if (idle > 0 && remote_) {
      // What ensure() stored was evicted before this read copied it: a budget smaller than the
      // reads in flight (--cache-max 0 keeps nothing). Fetch the next part into the buffer itself.
      OCIFS_ASSIGN(n, fetch_into(offset + done, buf.subspan(done, want - done)));
      done += n;
      continue;
    }
    if (idle == kMaxIdleRounds) {
      return make_error(std::errc::io_error, "cannot read {} at offset {}: its chunks never arrive in the cache",
                        entry_->digest(), offset + done);
    }
    OCIFS_TRY(ensure(offset + done, offset + want, allow_stream_wait));
  }
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
  // Where the stream is now: a chunk it reaches soon is waited for rather than fetched.
  const auto ahead = allow_stream_wait ? stream_->ahead() : BlobStream::Ahead{};
  {
    std::lock_guard lock(mu_);
    for (std::uint64_t c = first; c <= last; ++c) {
      if (entry_->chunk_present(c)) continue;
      if (auto it = in_flight_.find(c); it != in_flight_.end()) {
        waits.push_back(it->second);
        continue;
      }
      if (ahead.contains(c * kChunk)) {
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
  {
    std::unique_lock lock(mu_);
    for (auto& flight : waits) {
      if (!util::wait_within_deadline(cv_, lock, [&] { return flight->done; })) {
        return util::deadline_passed(fmt::format("read {} at offset {}: waiting for another read's fetch",
                                                 entry_->digest(), from));
      }
      if (flight->error) return *flight->error;
    }
  }
  if (stream_last) return wait_for_stream(*stream_last, from, allow_stream_wait);
  return util::success();
}

Result<void> CachedBlobSource::wait_for_stream(std::uint64_t chunk, std::uint64_t from,
                                               bool& allow_stream_wait) const {
  const auto deadline = util::current_deadline();
  const auto give_up = util::Clock::now() + options_.stream_wait;
  if (stream_->wait_for(chunk, util::earliest(give_up, deadline))) return util::success();
  if (deadline <= give_up) {
    return util::deadline_passed(fmt::format("read {} at offset {}: waiting for its stream", entry_->digest(), from));
  }
  spdlog::debug("{}: no progress of the stream for {} ms; fetching by range", entry_->digest(),
                options_.stream_wait.count());
  allow_stream_wait = false;
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
  stream_->chunks_arrived();  // a read waiting for the stream may have wanted these
}

Result<void> CachedBlobSource::fetch_run(std::uint64_t first, std::uint64_t count) const {
  OCIFS_TRY(fetch_chunks(first, count));
  return util::success();
}

Result<std::size_t> CachedBlobSource::fetch_into(std::uint64_t offset, std::span<std::byte> buf) const {
  const std::uint64_t first = offset / kChunk;
  const std::uint64_t end = std::min(entry_->size(), offset + buf.size());
  const std::uint64_t count = std::min((end - 1) / kChunk + 1 - first, options_.max_request / kChunk);
  OCIFS_ASSIGN(auto bytes, fetch_chunks(first, count));
  const std::size_t skip = static_cast<std::size_t>(offset - first * kChunk);
  const std::size_t n = std::min(buf.size(), bytes.size() - skip);
  std::memcpy(buf.data(), bytes.data() + skip, n);
  return n;
}

Result<std::vector<std::byte>> CachedBlobSource::fetch_chunks(std::uint64_t first, std::uint64_t count) const {
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
  return buf;
}

void CachedBlobSource::start_stream() { stream_->start(); }

Result<void> CachedBlobSource::wait_stream() { return stream_->wait(); }

void CachedBlobSource::stop_stream() { stream_->stop(); }

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

std::uint64_t CachedBlobSource::local_prefix(std::uint64_t offset, std::uint64_t length) const {
  const std::uint64_t end = std::min(entry_->size(), offset + std::min(length, entry_->size()));
  if (offset >= end) return 0;
  const std::uint64_t local_end = entry_->next_absent(offset / kChunk) * kChunk;  // one lock, not one per chunk
  return local_end > offset ? std::min(local_end, end) - offset : 0;
}

CachedBlobSource::Progress CachedBlobSource::progress() const {
  Progress p;
  p.size = entry_->size();
  p.present = entry_->present_bytes();
  p.fetched = fetched_.load(std::memory_order_relaxed);
  p.reads = reads_.load(std::memory_order_relaxed);
  p.hits = hits_.load(std::memory_order_relaxed);
  p.fetch_errors = fetch_errors_.load(std::memory_order_relaxed);
  const auto stream = stream_->status();
  p.streamed = stream.received;
  if (stream.failed) ++p.fetch_errors;
  p.streaming = stream.running;
  p.stream_done = stream.ended;
  return p;
}

}  // namespace ocifs::cache
