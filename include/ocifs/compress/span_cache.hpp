// SpanCache: decoded gzip spans (the bytes between two checkpoints), shared by the GzipReaders of
// an image and kept least-recently-used within a byte budget. Without it every newly opened file
// re-inflated its span from the checkpoint: reading a Debian minbase file by file inflated each
// byte 8-21 times (12 MB/s against gzip -dc's 156 MB/s); with it each span is inflated once.
//
// Thread-safe. An entry is filled by one thread at a time (Filling), with the entry's mutex
// released while it decodes or fetches: a slow fetch holds up only the readers that need bytes
// it has not decoded yet, and each of those waits at most until its own deadline
// (util/deadline.hpp). Lock order: an Entry's mutex may be held while calling charge() or
// drop(), which take the cache's mutex; entry() takes only the cache's mutex. Never the other
// way round.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/util/background_worker.hpp"
#include "ocifs/util/deadline.hpp"

namespace ocifs::compress {

class SpanCache {
 public:
  // 24 MiB holds 24-48 spans (1 MiB-512 KiB): reading files in tar order needs two at a time
  // (one being read, one read ahead), several readers a few each; and it keeps the daemon well
  // inside its 64 MiB RSS target.
  static constexpr std::size_t kDefaultBudget = 24u << 20;

  struct Entry {
    std::mutex mutex;                     // guards everything below; never held while decoding
    std::condition_variable idle;         // `filling` went false
    bool filling = false;                 // a thread is filling it, its mutex released (Filling)
    // The decoded bytes: capacity reserved once (they never move), size grown by the filler
    // with the mutex held; [0, filled) is final and may be read by anyone holding the mutex.
    std::vector<std::byte> data;
    std::size_t filled = 0;               // bytes of `data` decoded so far
    std::unique_ptr<ReadCursor> cursor;   // live stream at `filled`; only the filling thread uses it
    bool charged = false;                 // its full size has been charged to the budget
    // Where the last read served from it ended (decoded offset in the span; 0 before any): a
    // read that starts there continues a read in order.
    std::uint64_t last_end = 0;
    bool prefetched = false;              // filled by read-ahead: its reader reads in order
    bool read_ahead = false;              // read-ahead past it has been asked for
  };

  // The turn to fill an entry, taken with its mutex held (`lock`) once no other thread fills it.
  // The holder may release the mutex while it decodes into data[filled, …); the turn ends, and
  // the waiters wake, when this is destroyed — by an exception too — with the mutex held again.
  class Filling {
   public:
    Filling(Entry& entry, std::unique_lock<std::mutex>& lock) : entry_(entry), lock_(lock) { entry_.filling = true; }
    ~Filling() {
      if (!lock_.owns_lock()) lock_.lock();
      entry_.filling = false;
      entry_.idle.notify_all();
    }
    Filling(const Filling&) = delete;
    Filling& operator=(const Filling&) = delete;

   private:
    Entry& entry_;
    std::unique_lock<std::mutex>& lock_;
  };

  // With `lock` held on entry.mutex: waits until `enough()` holds or no thread fills the entry,
  // at most until this thread's deadline; false when the deadline came first.
  template <class Enough>
  static bool wait_turn(Entry& entry, std::unique_lock<std::mutex>& lock, Enough enough) {
    return util::wait_within_deadline(entry.idle, lock, [&] { return enough() || !entry.filling; });
  }

  explicit SpanCache(std::size_t budget = kDefaultBudget) : budget_(budget) {}

  // A key space of its own for each reader.
  std::uint64_t new_owner();
  // The entry for span `span` of `owner`, created empty if absent; now the most recently used.
  std::shared_ptr<Entry> entry(std::uint64_t owner, std::uint64_t span);
  // Counts `bytes` of memory for the entry (if it is still cached) and evicts least recently
  // used entries beyond the budget. Evicted entries live on until their last user lets go.
  void charge(std::uint64_t owner, std::uint64_t span, std::size_t bytes);
  // Forgets an entry (after a failed read, so the next one starts afresh).
  void drop(std::uint64_t owner, std::uint64_t span);

  std::size_t used() const;

  // Runs `task` on the cache's read-ahead thread, unless that is busy enough already.
  void prefetch(std::function<void()> task) { worker_.offer(std::move(task)); }
  // Stops the read-ahead thread (after its running task) and joins it. For the owner of the
  // readers before it lets them go: a read-ahead task holds its reader, so the last reference
  // could otherwise go on that thread, which cannot join itself, and the process could exit
  // under a task still running.
  void stop() { worker_.stop(); }

 private:
  using Key = std::pair<std::uint64_t, std::uint64_t>;
  struct Slot {
    std::shared_ptr<Entry> entry;
    std::list<Key>::iterator lru;
    std::size_t charged = 0;
  };

  const std::size_t budget_;
  mutable std::mutex mutex_;
  std::uint64_t owners_ = 0;
  std::size_t used_ = 0;
  std::list<Key> lru_;  // front = most recently used
  std::map<Key, Slot> slots_;
  util::BackgroundWorker worker_;  // last: destroyed (stopped) first
};

}  // namespace ocifs::compress
