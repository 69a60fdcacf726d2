#include "ocifs/compress/span_cache.hpp"

namespace ocifs::compress {

std::uint64_t SpanCache::new_owner() {
  std::lock_guard lock(mutex_);
  return ++owners_;
}

std::shared_ptr<SpanCache::Entry> SpanCache::entry(std::uint64_t owner, std::uint64_t span) {
  std::lock_guard lock(mutex_);
  Key key{owner, span};
  if (auto it = slots_.find(key); it != slots_.end()) {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return it->second.entry;
  }
  lru_.push_front(key);
  auto entry = std::make_shared<Entry>();
  slots_.emplace(key, Slot{entry, lru_.begin(), 0});
  return entry;
}

void SpanCache::charge(std::uint64_t owner, std::uint64_t span, std::size_t bytes) {
  std::lock_guard lock(mutex_);
  Key key{owner, span};
  auto it = slots_.find(key);
  if (it == slots_.end()) return;  // evicted meanwhile: freed when its user lets go
  it->second.charged += bytes;
  used_ += bytes;
  // Evict from the cold end, never the entry just charged.
  while (used_ > budget_ && lru_.size() > 1) {
    Key victim = lru_.back();
    if (victim == key) break;
    auto v = slots_.find(victim);
    used_ -= v->second.charged;
    lru_.pop_back();
    slots_.erase(v);
  }
}

void SpanCache::drop(std::uint64_t owner, std::uint64_t span) {
  std::lock_guard lock(mutex_);
  auto it = slots_.find(Key{owner, span});
  if (it == slots_.end()) return;
  used_ -= it->second.charged;
  lru_.erase(it->second.lru);
  slots_.erase(it);
}

std::size_t SpanCache::used() const {
  std::lock_guard lock(mutex_);
  return used_;
}

}  // namespace ocifs::compress
