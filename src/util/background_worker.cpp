#include "ocifs/util/background_worker.hpp"

#include "ocifs/util/thread_boundary.hpp"

namespace ocifs::util {

BackgroundWorker::~BackgroundWorker() { stop(); }

void BackgroundWorker::stop() {
  {
    std::lock_guard lock(state_->mutex);
    state_->stop = true;
    state_->queue.clear();
  }
  state_->wake.notify_all();
  std::call_once(started_, [] {});  // waits for an offer() starting the thread; none starts after
  if (!thread_.joinable()) return;
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();  // destroyed by our own task: the loop sees `stop` and returns
  } else {
    thread_.join();
  }
}

bool BackgroundWorker::offer(std::function<void()> task) {
  // Nothing of `this` is touched once the task is queued: the task may destroy this worker
  // (TSan saw a task's delete race this function's later read of state_). So the thread is
  // started first, and the wake-up goes through a reference of our own.
  std::call_once(started_, [this] { thread_ = std::thread(run, state_); });
  std::shared_ptr<State> state = state_;
  {
    std::lock_guard lock(state->mutex);
    if (state->stop || state->queue.size() >= max_queued_) return false;
    state->queue.push_back(std::move(task));
  }
  state->wake.notify_one();
  return true;
}

void BackgroundWorker::run(std::shared_ptr<State> state) {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(state->mutex);
      state->wake.wait(lock, [&] { return state->stop || !state->queue.empty(); });
      if (state->stop) return;
      task = std::move(state->queue.front());
      state->queue.pop_front();
    }
    // A task that throws is dropped (and logged); the thread goes on with the next.
    (void)catch_all("run a background task", task);
  }
}

}  // namespace ocifs::util
