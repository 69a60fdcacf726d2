// BackgroundWorker: one lazily started thread running queued tasks in order; a short queue that
// drops what does not fit; stop() and destruction drop the queue and let the running task end;
// destruction from inside a task. Tasks are held with test::Gate, so nothing depends on timing.
#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ocifs/util/background_worker.hpp"
#include "sample_data.hpp"

using namespace ocifs;
using test::Gate;

namespace {

// Threads of this process now (/proc/self/status).
int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "Threads:") {
      int n = 0;
      status >> n;
      return n;
    }
  }
  FAIL("no Threads: line in /proc/self/status");
  return 0;
}

// What tasks ran, in order; safe from the worker's thread.
struct Log {
  void add(int task) {
    std::lock_guard lock(mu);
    ran.push_back(task);
  }
  std::vector<int> get() {
    std::lock_guard lock(mu);
    return ran;
  }
  std::mutex mu;
  std::vector<int> ran;
};

}  // namespace

// First in the file: no test before it leaves a thread behind that could end meanwhile.
TEST_CASE("BackgroundWorker: no thread until the first task; then one") {
  // A thread started and joined first: a sanitizer runtime starts a thread of its own at the
  // first pthread_create (TSan's background thread), which must count in `before`.
  std::thread([] {}).join();
  const int before = thread_count();
  util::BackgroundWorker worker;
  CHECK(thread_count() == before);  // an idle worker costs no thread
  Gate running, go;
  REQUIRE(worker.offer([&] {
    running.open();
    go.wait();
  }));
  REQUIRE(running.wait());
  CHECK(thread_count() == before + 1);
  go.open();
  worker.stop();
  CHECK(thread_count() == before);  // stop() joined it
}

TEST_CASE("BackgroundWorker: tasks run one at a time, in the order offered") {
  Log log;
  Gate first_started, go, last_done;
  {
    util::BackgroundWorker worker(8);
    REQUIRE(worker.offer([&] {
      first_started.open();
      go.wait();
      log.add(1);
    }));
    REQUIRE(first_started.wait());
    for (int i = 2; i <= 6; ++i) REQUIRE(worker.offer([&, i] { log.add(i); }));
    REQUIRE(worker.offer([&] { last_done.open(); }));
    CHECK(log.get().empty());  // the others wait behind the running one
    go.open();
    REQUIRE(last_done.wait());
  }
  CHECK(log.get() == std::vector<int>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("BackgroundWorker: a full queue drops the offer; room again once a task is taken") {
  Log log;
  Gate first_started, go, third_ran, done;
  util::BackgroundWorker worker(2);
  REQUIRE(worker.offer([&] {
    first_started.open();
    go.wait();
  }));
  REQUIRE(first_started.wait());  // taken off the queue: running
  CHECK(worker.offer([&] { log.add(2); }));
  CHECK(worker.offer([&] {
    log.add(3);
    third_ran.open();
  }));
  CHECK_FALSE(worker.offer([&] { log.add(4); }));  // 2 queued: dropped
  go.open();
  REQUIRE(third_ran.wait());  // 2 and 3 taken: the queue is empty again
  REQUIRE(worker.offer([&] { done.open(); }));
  REQUIRE(done.wait());
  CHECK(log.get() == std::vector<int>{2, 3});
}

TEST_CASE("BackgroundWorker: a task that throws is dropped; the next one runs") {
  Log log;
  Gate done;
  util::BackgroundWorker worker(4);
  REQUIRE(worker.offer([] { throw std::runtime_error("a bug in a task"); }));
  REQUIRE(worker.offer([&] { log.add(2); }));
  REQUIRE(worker.offer([&] { done.open(); }));
  REQUIRE(done.wait());
  CHECK(log.get() == std::vector<int>{2});
}

TEST_CASE("BackgroundWorker: stop() drops the queue, lets the running task finish, refuses later offers") {
  Log log;
  Gate first_started, go;
  util::BackgroundWorker worker(100'000);
  REQUIRE(worker.offer([&] {
    first_started.open();
    go.wait();
    log.add(1);
  }));
  REQUIRE(first_started.wait());
  // What a dropped task holds is released by stop() (a span read-ahead task holds its reader).
  auto held_by_task = std::make_shared<int>(2);
  REQUIRE(worker.offer([&, held_by_task] { log.add(*held_by_task); }));
  std::weak_ptr<int> watch = held_by_task;
  held_by_task.reset();
  std::thread stopping([&] { worker.stop(); });  // waits for task 1
  // Once stop() has begun, offers are refused. Until then each one queues a task that stop()
  // must drop as well.
  int queued_meanwhile = 0;
  while (queued_meanwhile < 60'000 && worker.offer([&] { log.add(3); })) {  // a minute at most
    ++queued_meanwhile;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  // stop() has dropped the queue (offers are refused once it has begun): task 2 and what it
  // held are gone before task 1 ends.
  CHECK(watch.expired());
  go.open();
  stopping.join();
  CHECK(queued_meanwhile < 60'000);
  CHECK(log.get() == std::vector<int>{1});  // the running task finished; none of the queued ran
  CHECK_FALSE(worker.offer([&] { log.add(4); }));
  worker.stop();  // idempotent
  CHECK(log.get() == std::vector<int>{1});
}

TEST_CASE("BackgroundWorker: stop() before any task starts no thread") {
  const int before = thread_count();
  util::BackgroundWorker worker;
  worker.stop();
  CHECK_FALSE(worker.offer([] {}));
  CHECK(thread_count() == before);
}

// (The destructor is stop(): the test above shows what it drops.)
TEST_CASE("BackgroundWorker: destruction lets the running task finish, then joins its thread") {
  Log log;
  Gate first_started, go;
  const int before = thread_count();
  auto worker = std::make_unique<util::BackgroundWorker>(4);
  REQUIRE(worker->offer([&] {
    first_started.open();
    go.wait();
    log.add(1);
  }));
  REQUIRE(first_started.wait());
  std::atomic<bool> destroyed{false};
  std::thread destroying([&] {
    worker.reset();
    destroyed = true;
  });
  CHECK_FALSE(destroyed);  // it cannot be gone while its task still runs
  go.open();
  destroying.join();
  CHECK(destroyed);
  CHECK(log.get() == std::vector<int>{1});  // the task was not cut short
  CHECK(thread_count() == before);          // the worker's thread was joined, not left behind
}

TEST_CASE("BackgroundWorker: a task may destroy its own worker") {
  Log log;
  Gate done;
  auto worker = std::make_unique<util::BackgroundWorker>(4);
  util::BackgroundWorker* raw = worker.get();
  REQUIRE(raw->offer([&] {
    worker.reset();  // from the worker's own thread: no self-join
    log.add(1);
    done.open();
  }));
  REQUIRE(done.wait());
  CHECK(worker == nullptr);
  CHECK(log.get() == std::vector<int>{1});
}
