#include "ocifs/util/work_pool.hpp"

#include "ocifs/util/thread_boundary.hpp"

namespace ocifs::util {

WorkPool::WorkPool(std::string name, unsigned threads, std::size_t max_queued)
    : name_(std::move(name)), max_queued_(max_queued) {
  for (unsigned i = 0; i < std::max(1u, threads); ++i) threads_.emplace_back([this] { run(); });
}

WorkPool::~WorkPool() { stop(); }

bool WorkPool::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

void WorkPool::stop() {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  wake_.notify_all();
  dropped.clear();  // unlocked: a dropped task's destructor may answer its request
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

WorkPool::Stats WorkPool::stats() const {
  std::lock_guard lock(mutex_);
  return Stats{queue_.size(), running_};
}

void WorkPool::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (stopping_) return;
    auto task = std::move(queue_.front());
    queue_.pop_front();
    ++running_;
    lock.unlock();
    (void)catch_all(fmt::format("run a task of the {} pool", name_), task);
    task = nullptr;  // destroyed before the count drops: it may hold what stop() waits for
    lock.lock();
    --running_;
  }
}

}  // namespace ocifs::util
