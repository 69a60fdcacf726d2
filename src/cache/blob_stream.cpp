#include "blob_stream.hpp"

#include <spdlog/spdlog.h>

#include <cstring>
#include <vector>

#include "ocifs/util/thread_boundary.hpp"

namespace ocifs::cache {

namespace {

constexpr std::uint64_t kChunk = BlobEntry::kChunkSize;  // stored in whole cache chunks
// A present run at least this long ahead of the stream is skipped with a new request rather
// than downloaded again: 1 MiB is 84 ms at 100 Mbit/s, far more than a request's round trip.
constexpr std::uint64_t kSkipChunks = 4;

}  // namespace

BlobStream::BlobStream(std::shared_ptr<BlobEntry> entry, std::shared_ptr<RemoteBlob> remote,
                       std::uint64_t window)
    : entry_(std::move(entry)), remote_(std::move(remote)), window_(window) {}

BlobStream::~BlobStream() { stop(); }

void BlobStream::start() {
  std::lock_guard join(join_mu_);
  std::lock_guard lock(mu_);
  if (started_) return;
  started_ = true;
  if (entry_->complete()) {
    done_ = true;
    pos_ = entry_->size();
    return;
  }
  if (!remote_) {
    done_ = true;
    error_ =
        make_error(std::errc::io_error, "cannot stream {}: not in the cache and --offline", entry_->digest());
    return;
  }
  pos_ = entry_->next_absent(0) * kChunk;
  thread_ = std::thread([this] {
    std::optional<Error> error;
    if (auto escaped = util::catch_all(fmt::format("stream {}", entry_->digest()), [&] { error = run(); })) {
      error = std::move(escaped);
    }
    if (auto r = entry_->flush(); !r) spdlog::warn("{}", r.error().message);
    {
      std::lock_guard lock(mu_);
      done_ = true;
      error_ = std::move(error);
      if (!error_) pos_ = entry_->size();
    }
    moved_.notify_all();
  });
}

Result<void> BlobStream::wait() {
  std::unique_lock lock(mu_);
  if (!started_) return util::success();
  moved_.wait(lock, [&] { return done_; });
  if (error_) return *error_;
  return util::success();
}

void BlobStream::stop() {
  stop_.store(true);
  {
    std::lock_guard lock(mu_);  // a waiter between its check and its wait still sees the notify
  }
  moved_.notify_all();
  std::lock_guard join(join_mu_);
  if (thread_.joinable()) thread_.join();
}

BlobStream::Ahead BlobStream::ahead() const {
  std::lock_guard lock(mu_);
  if (!started_ || done_) return {};
  return {pos_, pos_ + window_};
}

bool BlobStream::wait_for(std::uint64_t chunk, util::Deadline until) {
  const std::uint64_t need_end = (chunk + 1) * kChunk;
  std::unique_lock lock(mu_);
  return moved_.wait_until(
      lock, until, [&] { return done_ || stop_.load() || pos_ >= need_end || entry_->chunk_present(chunk); });
}

void BlobStream::chunks_arrived() {
  {
    std::lock_guard lock(mu_);  // as in stop()
  }
  moved_.notify_all();
}

BlobStream::Status BlobStream::status() const {
  std::lock_guard lock(mu_);
  return {started_ && !done_, started_ && done_, error_.has_value(),
          received_.load(std::memory_order_relaxed)};
}

void BlobStream::move_to(std::uint64_t chunk) {
  {
    std::lock_guard lock(mu_);
    pos_ = chunk * kChunk;
  }
  moved_.notify_all();
}

std::optional<Error> BlobStream::run() {
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
    move_to(cur);
    auto sink = [&](std::span<const std::byte> data) -> Result<void> {
      if (stop_.load())
        return make_error(std::errc::operation_canceled, "cannot stream {}: stopped", entry_->digest());
      received_.fetch_add(data.size(), std::memory_order_relaxed);
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
        move_to(cur);
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
      error = make_error(std::errc::io_error, "cannot stream {}: the stream ended at byte {} of {}",
                         entry_->digest(), cur * kChunk + filled, entry_->size());
    } else {
      next = entry_->next_absent(run_end);
      continue;
    }
    break;
  }
  return error;
}

}  // namespace ocifs::cache
