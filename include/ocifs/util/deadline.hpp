// Deadlines: every wait a FUSE request can reach ends by its request's deadline.
//
// A read is given its deadline once, where it enters the core (the FUSE read pool): a
// DeadlineScope on the serving thread. Everything below that may wait — for a gated layer's
// verification, another thread's fetch of the same chunks, a span another reader is inflating,
// a token another thread is fetching, a registry range request — bounds the wait by
// current_deadline() and fails with deadline_passed() (std::errc::timed_out) when it passes. The
// deadline travels with the thread rather than through every BlobSource::read_at signature:
// the format code between the FUSE edge and the waits (decoders, cursors, tar offsets) never
// needs to know about it, as with a Go context carried implicitly.
//
// Threads without a scope (indexing before the mount is live, background streams and
// verification) have no deadline: current_deadline() is kNoDeadline, and they bound their waits
// by their own stop conditions and the registry client's stall limits.
//
// Thread-safety: the scope is per thread (thread_local); nothing is shared.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string_view>

#include "ocifs/util/result.hpp"

namespace ocifs::util {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
inline constexpr Deadline kNoDeadline = Deadline::max();

// Clock::now() in whole milliseconds: a time that fits an atomic (last refresh, last failure).
inline std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count();
}

// The deadline of the request this thread is serving; kNoDeadline outside any DeadlineScope.
Deadline current_deadline();

// Sets this thread's deadline for its lifetime (nested scopes can only shorten it), restoring
// the previous one at the end.
class DeadlineScope {
 public:
  explicit DeadlineScope(Deadline deadline);
  ~DeadlineScope();
  DeadlineScope(const DeadlineScope&) = delete;
  DeadlineScope& operator=(const DeadlineScope&) = delete;

 private:
  Deadline previous_;
};

// The earlier of two deadlines.
inline Deadline earliest(Deadline a, Deadline b) { return a < b ? a : b; }

// "cannot WHAT: no answer within the read deadline", as std::errc::timed_out.
Error deadline_passed(std::string_view what);

// cv.wait(lock, ready), bounded by this thread's deadline; false when the deadline passed first.
template <class Predicate>
bool wait_within_deadline(std::condition_variable& cv, std::unique_lock<std::mutex>& lock, Predicate ready) {
  const Deadline deadline = current_deadline();
  if (deadline == kNoDeadline) {
    cv.wait(lock, ready);
    return true;
  }
  return cv.wait_until(lock, deadline, ready);
}

// lock.lock() on a timed mutex (DeadlineMutex), bounded by `deadline`; false when the deadline
// passed first.
template <class TimedMutex>
bool lock_until(std::unique_lock<TimedMutex>& lock, Deadline deadline) {
  if (deadline == kNoDeadline) {
    lock.lock();
    return true;
  }
  return lock.try_lock_until(deadline);
}

}  // namespace ocifs::util
