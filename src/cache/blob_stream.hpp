// BlobStream: the background stream of a CachedBlobSource, for the first mount of a layer. One
// thread streams the blob's missing chunks into the blob cache in order, one request per run of
// absent chunks (a run already present ahead is skipped with a new request), storing each chunk
// as it completes; readers just behind it wait for it (ahead(), wait_for()) rather than fetch.
// Stopping (stop(), or destruction) fails the sink at its next call and joins the thread; against
// a registry the client's stall timeout bounds that.
//
// Thread-safe. Locks: join_mu_ (starting and joining the thread), then mu_ (position and
// outcome), then the entry's (blob_entry.hpp). mu_ is never held during a remote request, nor
// with the CachedBlobSource's own mutex.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "ocifs/cache/blob_entry.hpp"
#include "ocifs/cache/remote_blob.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::cache {

class BlobStream {
 public:
  // `window`: how far ahead of the stream a read waits for it (CachedBlobSource::Options).
  BlobStream(std::shared_ptr<BlobEntry> entry, std::shared_ptr<RemoteBlob> remote, std::uint64_t window);
  ~BlobStream();  // stop()
  BlobStream(const BlobStream&) = delete;
  BlobStream& operator=(const BlobStream&) = delete;

  // Starts the thread; a no-op if the blob is complete or a stream was started before. Offline (no
  // remote), the stream ends at once with an error.
  void start();
  // Blocks until the stream has ended: success when it reached the blob's end, else its error.
  // Success at once if it was never started.
  Result<void> wait();
  // Stops the stream and joins its thread. Idempotent; from any thread but the stream's.
  void stop();

  // The blob bytes [from, to) a read should wait for the stream for rather than fetch them: the
  // window ahead of its position while it runs; empty otherwise.
  struct Ahead {
    std::uint64_t from = 0, to = 0;
    bool contains(std::uint64_t offset) const { return offset >= from && offset < to; }
  };
  Ahead ahead() const;
  // Waits until chunk `chunk` is stored (by the stream or anyone else), or the stream ends or is
  // stopped; false when `until` came first.
  bool wait_for(std::uint64_t chunk, util::Deadline until);
  // Chunks became present some other way (a range fetch): waiters look again.
  void chunks_arrived();

  struct Status {
    bool running = false;        // started and not ended
    bool ended = false;          // started and ended (wait() says how)
    bool failed = false;         // ended with an error
    std::uint64_t received = 0;  // bytes the remote sent it
  };
  Status status() const;

 private:
  // The thread's work: the blob's missing chunks into the cache; why it stopped early.
  std::optional<Error> run();
  void move_to(std::uint64_t chunk);  // the position is now `chunk`: waiters look again

  const std::shared_ptr<BlobEntry> entry_;
  const std::shared_ptr<RemoteBlob> remote_;
  const std::uint64_t window_;

  std::mutex join_mu_;  // start() and stop() may be called from two threads
  std::thread thread_;
  mutable std::mutex mu_;
  std::condition_variable moved_;  // the position moved, the stream ended or stopped, chunks arrived
  bool started_ = false;           // under mu_
  bool done_ = false;              // under mu_
  std::optional<Error> error_;     // under mu_: why it ended early
  std::uint64_t pos_ = 0;          // under mu_: bytes before this are stored (or were present)
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> received_{0};
};

}  // namespace ocifs::cache
