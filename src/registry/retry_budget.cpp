#include "ocifs/registry/retry_budget.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <thread>

#include "ocifs/util/text.hpp"

namespace ocifs::registry {

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::chrono::system_clock::time_point now) {
  value = util::trim(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](unsigned char c) { return std::isdigit(c); })) {
    // Clamp absurd values instead of overflowing: anything above a day is "too long" anyway.
    if (value.size() > 6) return std::chrono::milliseconds(std::chrono::hours(24 * 365));
    return std::chrono::seconds(std::stoll(std::string(value)));
  }
  // curl_getdate understands the three HTTP-date forms of RFC 9110 §5.6.7; it rejects text that
  // is not a date (returns -1).
  std::string text(value);
  time_t when = curl_getdate(text.c_str(), nullptr);
  if (when == -1) return std::nullopt;
  // system_clock counts nanoseconds in 64 bits (years 1678 to 2261): converting a date outside
  // that would overflow. Far in the future is a wait longer than any retry allows.
  constexpr auto kLimit =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::duration::max()).count() -
      86400;
  if (when > kLimit) return std::chrono::milliseconds(std::chrono::hours(24 * 365));
  if (when < -kLimit) return std::chrono::milliseconds(0);
  auto at = std::chrono::system_clock::from_time_t(when);
  if (at <= now) return std::chrono::milliseconds(0);
  return std::chrono::duration_cast<std::chrono::milliseconds>(at - now);
}

std::chrono::milliseconds backoff_delay(int failures, double jitter) {
  using namespace std::chrono_literals;
  // 250 ms, doubled per failure: the four waits between five attempts add up to under 4 s, well
  // inside the 30 s read deadline; the cap bounds any one wait where more attempts are allowed.
  constexpr auto kBase = 250ms;
  constexpr auto kCap = 8000ms;
  auto delay = kBase;
  for (int i = 1; i < failures && delay < kCap; ++i) delay *= 2;
  delay = std::min(delay, std::chrono::milliseconds(kCap));
  jitter = std::clamp(jitter, 0.0, 1.0);
  return std::chrono::milliseconds(static_cast<std::int64_t>(delay.count() * (0.5 + 0.5 * jitter)));
}

bool RetryBudget::next_delay(std::optional<std::chrono::milliseconds> retry_after,
                             std::chrono::milliseconds& delay) {
  if (failures_ + 1 >= max_attempts_) return false;
  if (retry_after) {
    if (*retry_after > kMaxRetryAfter) return false;
    delay = *retry_after;
  } else {
    if (!rng_) rng_.emplace(std::random_device{}());
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    delay = backoff_delay(failures_ + 1, unit(*rng_));
  }
  if (deadline_ != kNoDeadline && Clock::now() + delay >= deadline_) return false;
  return true;
}

bool RetryBudget::wait_before_retry(std::optional<std::chrono::milliseconds> retry_after) {
  std::chrono::milliseconds delay{0};
  if (!next_delay(retry_after, delay)) {
    ++failures_;
    return false;
  }
  ++failures_;
  if (retries_) retries_->fetch_add(1, std::memory_order_relaxed);
  std::this_thread::sleep_for(delay);
  return true;
}

}  // namespace ocifs::registry
