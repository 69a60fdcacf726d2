// Retries of one registry operation: exponential backoff with jitter, Retry-After, bounded by an
// attempt count and a deadline. One RetryBudget per operation and thread; not synchronised.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <string_view>

#include "ocifs/util/deadline.hpp"

namespace ocifs::registry {

using util::Clock;
using util::Deadline;
using util::kNoDeadline;

// The delay a Retry-After header asks for: delay-seconds ("120") or an HTTP-date (IMF-fixdate,
// RFC 850 or asctime form), relative to `now`; a date in the past is zero. nullopt when the
// value is neither.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now);

// Backoff before retry number `failures` (1 = after the first failure): 250 ms doubling up to
// 8 s, scaled by `jitter` in [0, 1] into [50 %, 100 %] of that, so that threads failing together
// do not retry in step.
std::chrono::milliseconds backoff_delay(int failures, double jitter);

class RetryBudget {
 public:
  // Retry-After values above this fail at once (Docker Hub's rate limit asks for hours; a
  // FUSE read must not sleep for that).
  static constexpr std::chrono::seconds kMaxRetryAfter{60};

  RetryBudget(Deadline deadline, int max_attempts, std::atomic<std::uint64_t>* retry_counter = nullptr)
      : deadline_(deadline), max_attempts_(max_attempts < 1 ? 1 : max_attempts), retries_(retry_counter) {}

  Deadline deadline() const { return deadline_; }
  bool expired() const { return Clock::now() >= deadline_; }
  int failures() const { return failures_; }
  int max_attempts() const { return max_attempts_; }

  // Called after a failed attempt. Sleeps for Retry-After (when given) or the backoff and
  // returns true when another attempt is allowed; false (without sleeping) when the attempts are
  // used up or the wait would pass the deadline.
  bool wait_before_retry(std::optional<std::chrono::milliseconds> retry_after = std::nullopt);
  // The wait that would be used; false when no retry is allowed (for callers that explain why).
  bool next_delay(std::optional<std::chrono::milliseconds> retry_after, std::chrono::milliseconds& delay);
  // Progress was made (a resumed transfer delivered data): failures so far are forgiven.
  void forgive() { failures_ = 0; }

 private:
  Deadline deadline_;
  int max_attempts_;
  int failures_ = 0;
  std::atomic<std::uint64_t>* retries_;
  std::optional<std::minstd_rand> rng_;
};

}  // namespace ocifs::registry
