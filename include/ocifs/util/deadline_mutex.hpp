// DeadlineMutex: a mutex whose waiters can give up at a deadline, for the few places where one
// thread holds it across I/O on purpose (the endpoint's first ping, an open file's decoder
// cursor) and the others wait for it, each until its own deadline (util/deadline.hpp). Built
// from a mutex and a condition variable rather than std::timed_mutex: GCC 12's ThreadSanitizer
// does not see pthread_mutex_clocklock, under timed_mutex::try_lock_until, and reports every
// such unlock as an error. Meets TimedLockable for std::unique_lock with steady_clock deadlines.
// Thread-safe.
#pragma once

#include <condition_variable>
#include <mutex>

#include "ocifs/util/deadline.hpp"

namespace ocifs::util {

class DeadlineMutex {
 public:
  void lock() {
    std::unique_lock lock(mu_);
    idle_.wait(lock, [&] { return !held_; });
    held_ = true;
  }
  bool try_lock() {
    std::lock_guard lock(mu_);
    if (held_) return false;
    held_ = true;
    return true;
  }
  // False when `deadline` passed before the mutex was free.
  bool try_lock_until(Deadline deadline) {
    std::unique_lock lock(mu_);
    if (!idle_.wait_until(lock, deadline, [&] { return !held_; })) return false;
    held_ = true;
    return true;
  }
  void unlock() {
    {
      std::lock_guard lock(mu_);
      held_ = false;
    }
    idle_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;  // held_ went false
  bool held_ = false;             // under mu_
};

}  // namespace ocifs::util
