// CachedBlobSource: a BlobSource over a blob in the BlobCache, fetching what is missing from a
// RemoteBlob (a registry) and keeping it in the cache.
//
// read_at serves present chunks from disk. Missing chunks are fetched with ONE range request
// per contiguous missing run (whole chunks, clipped to the blob's end, at most
// Options::max_request each), written to the cache, then served. Single flight: a chunk being
// fetched is in an in-flight table, and every other reader wanting it waits for that fetch and
// shares its result, error included — but only until its own deadline (util/deadline.hpp): a
// waiter whose deadline passes fails with std::errc::timed_out while the fetch goes on for the
// others. A fetch ends its flight however it ends, by an exception too. A remote that fails or
// returns short data gives an error naming the digest and byte range, and nothing of that
// request is marked present.
// No remote (nullptr) means offline: a missing chunk is an error "not in the cache and --offline".
//
// start_stream(), for the first mount of a layer: a BlobStream (src/cache/blob_stream.hpp), one
// thread streaming the blob in order from its first missing byte, storing each chunk as it
// completes. A read of a missing range up to Options::stream_window ahead of the stream waits for
// the stream (at most Options::stream_wait, and never past the reader's deadline), so a scan
// reading in order right behind it makes no range request; anything else is fetched by range.
// Destruction (or stop_stream) stops the stream: the sink fails at its next call and the thread
// is joined. Against a registry that bounds the wait by the client's low-speed timeout.
//
// Thread-safe: read_at from any number of threads. Locks: mu_ (the in-flight table), then the
// entry's (blob_entry.hpp); the stream has locks of its own, never held with mu_; failure_mu_ is
// never held with another. No lock is held during a remote request.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "ocifs/cache/blob_entry.hpp"
#include "ocifs/cache/remote_blob.hpp"
#include "ocifs/io/blob_source.hpp"

namespace ocifs::cache {

class BlobStream;

class CachedBlobSource final : public io::BlobSource {
 public:
  struct Options {
    // Largest range request; longer missing runs are split (bounds the buffer per request).
    std::uint64_t max_request = 16u << 20;
    // How far ahead of the stream a read waits for it rather than fetching by range: at
    // 100 Mbit/s 8 MiB arrive in 0.7 s, about what a fresh range request costs with TLS set-up
    // and a CDN redirect, and a scan reading behind the stream never gets further ahead than its
    // read-ahead (1 MiB).
    std::uint64_t stream_window = 8u << 20;
    // A read waiting for a stream that makes no progress gives up after this and fetches by range.
    std::chrono::milliseconds stream_wait{30'000};
    // After a range fetch fails, the remote is not asked again for this long and reads fail at
    // once: the kernel retries a failed readahead straight away inside the same read(2), which
    // against a stalled registry doubled the wait for EIO (2 x the 30 s deadline).
    std::chrono::milliseconds fail_fast{2'000};
  };

  struct Progress {
    std::uint64_t size = 0;
    std::uint64_t present = 0;   // bytes in the cache
    std::uint64_t streamed = 0;  // bytes the stream has received
    std::uint64_t fetched = 0;   // bytes fetched by range requests
    std::uint64_t reads = 0;     // read_at calls
    std::uint64_t hits = 0;      // of those, served from the cache alone
    std::uint64_t fetch_errors = 0;  // failed range fetches, and a stream that failed
    bool streaming = false;      // the stream is running
    bool stream_done = false;    // it has ended; wait_stream() says how
  };

  CachedBlobSource(std::shared_ptr<BlobEntry> entry, std::shared_ptr<RemoteBlob> remote, Options options);
  CachedBlobSource(std::shared_ptr<BlobEntry> entry, std::shared_ptr<RemoteBlob> remote)
      : CachedBlobSource(std::move(entry), std::move(remote), Options{}) {}
  ~CachedBlobSource() override;
  CachedBlobSource(const CachedBlobSource&) = delete;
  CachedBlobSource& operator=(const CachedBlobSource&) = delete;

  std::uint64_t size() const override { return entry_->size(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  // The remote's description ("host/repo@sha256:…"), or the digest when offline.
  std::string describe() const override;
  // Chunks can be evicted and fetched again, from a remote that may answer differently.
  bool stable() const override { return false; }
  // Marks the chunks of the range absent (a verification failed): the next read refetches them.
  bool discard(std::uint64_t offset, std::uint64_t length) const override;
  // Fetches the missing chunks of the range, one request per missing run (as reads do).
  Result<void> prefetch(std::uint64_t offset, std::uint64_t length) const override;
  bool fetching() const override;
  std::uint64_t local_prefix(std::uint64_t offset, std::uint64_t length) const override;

  // Starts streaming the blob's missing bytes into the cache in the background; a no-op if the
  // blob is complete or a stream was started before.
  void start_stream();
  // Blocks until the stream has ended: success when it reached the blob's end, else its error.
  // Success at once if no stream was started.
  Result<void> wait_stream();
  // Stops the stream and joins its thread (also done by the destructor).
  void stop_stream();
  Progress progress() const;

  const std::shared_ptr<BlobEntry>& entry() const { return entry_; }

 private:
  struct Flight {
    bool done = false;
    std::optional<Error> error;
  };
  // One range request of ensure(): chunks [first, first + count), announced by `flight`.
  struct Run {
    std::uint64_t first, count;
    std::shared_ptr<Flight> flight;
  };

  // Makes chunks of [from, to) present: fetches what nobody is fetching, waits for the rest.
  // Clears `allow_stream_wait` when a wait for the stream timed out.
  Result<void> ensure(std::uint64_t from, std::uint64_t to, bool& allow_stream_wait) const;
  Result<void> fetch_run(std::uint64_t first, std::uint64_t count) const;
  // Fetches chunks [first, first + count) into the cache and returns their bytes.
  Result<std::vector<std::byte>> fetch_chunks(std::uint64_t first, std::uint64_t count) const;
  // Fetches from `offset` (at most max_request) straight into `buf`, storing it as well: a read
  // whose chunks were evicted before it could copy them. Returns the bytes copied (> 0).
  Result<std::size_t> fetch_into(std::uint64_t offset, std::span<std::byte> buf) const;
  // Takes the run's chunks out of the in-flight table and wakes its waiters with `result`.
  void land(Run& run, Result<void> result) const;
  // Waits for the stream to store chunk `chunk`, within stream_wait and the reader's deadline.
  // Clears `allow_stream_wait` when stream_wait passed first (the stream makes no progress).
  Result<void> wait_for_stream(std::uint64_t chunk, std::uint64_t from, bool& allow_stream_wait) const;

  std::shared_ptr<BlobEntry> entry_;
  std::shared_ptr<RemoteBlob> remote_;
  Options options_;

  mutable std::mutex mu_;
  mutable std::condition_variable cv_;  // a flight landed
  mutable std::map<std::uint64_t, std::shared_ptr<Flight>> in_flight_;  // by chunk, under mu_
  mutable std::atomic<std::int64_t> last_refresh_ms_{0};
  mutable std::atomic<std::uint64_t> fetched_{0};
  mutable std::atomic<std::uint64_t> reads_{0};
  mutable std::atomic<std::uint64_t> hits_{0};
  mutable std::atomic<std::uint64_t> fetch_errors_{0};
  mutable std::mutex failure_mu_;  // never held with another lock
  mutable std::optional<std::pair<std::int64_t, Error>> last_failure_;  // steady ms, what failed

  const std::unique_ptr<BlobStream> stream_;  // started by start_stream()
};

}  // namespace ocifs::cache
