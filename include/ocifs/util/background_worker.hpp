// BackgroundWorker: one thread that runs queued tasks in order, started on the first task (idle
// readers cost no thread), with a short queue: a task offered
// when the queue is full is dropped, because read-ahead that falls behind is worth nothing.
// Thread-safe. Destruction stops the thread after the running task; queued tasks are dropped.
// It may be destroyed from inside one of its own tasks (the thread then finishes on its own).
// stop() does the same earlier, for an owner that must know the thread is gone.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

namespace ocifs::util {

class BackgroundWorker {
 public:
  explicit BackgroundWorker(std::size_t max_queued = 2) : max_queued_(max_queued) {}
  ~BackgroundWorker();
  BackgroundWorker(const BackgroundWorker&) = delete;
  BackgroundWorker& operator=(const BackgroundWorker&) = delete;

  // Queues `task`; returns false (and drops it) when the queue is full or the worker stopped.
  bool offer(std::function<void()> task);
  // Drops the queued tasks, lets the running one finish and joins the thread (unless called
  // from that task). Later offers are dropped. Idempotent.
  void stop();

 private:
  // What the thread touches: owned jointly by the worker object and the thread.
  struct State {
    std::mutex mutex;
    std::condition_variable wake;
    std::deque<std::function<void()>> queue;
    bool stop = false;
  };
  static void run(std::shared_ptr<State> state);

  const std::size_t max_queued_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
  std::thread thread_;
  std::once_flag started_;
};

}  // namespace ocifs::util
