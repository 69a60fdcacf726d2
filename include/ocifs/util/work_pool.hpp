// WorkPool: a fixed set of threads running queued tasks in arrival order, for work that may
// wait (FUSE reads that fetch from a registry), so that the threads which must never wait
// (FUSE request threads answering lookups from the tree) hand it over and go on. The queue is
// bounded: submit() refuses a task when it is full, and the caller answers for it at once.
//
// Thread-safe. Tasks run inside the pool's exception boundary (util/thread_boundary.hpp): a task
// that throws is logged and dropped, the thread goes on. The destructor (or stop()) lets running
// tasks finish, runs nothing more, and joins the threads; tasks still queued are destroyed
// unrun, so a task must answer for itself in its destructor if it is never run.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ocifs::util {

class WorkPool {
 public:
  struct Stats {
    std::size_t queued = 0;   // waiting for a thread
    std::size_t running = 0;  // on a thread now
  };

  WorkPool(std::string name, unsigned threads, std::size_t max_queued);
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `task`; false (the task is not taken) when the queue is full or the pool stopped.
  bool submit(std::function<void()> task);
  // Finishes the running tasks, drops the queued ones, joins. Idempotent.
  void stop();
  Stats stats() const;

 private:
  void run();

  const std::string name_;
  const std::size_t max_queued_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;  // under mutex_
  std::size_t running_ = 0;                  // under mutex_
  bool stopping_ = false;                    // under mutex_
  std::vector<std::thread> threads_;         // last: started once the rest is set up
};

}  // namespace ocifs::util
