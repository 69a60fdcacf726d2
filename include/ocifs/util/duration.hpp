// Durations on the command line (--read-timeout, -o read_timeout=…). Pure function: thread-safe.
#pragma once

#include <chrono>
#include <string_view>

#include "ocifs/util/result.hpp"

namespace ocifs::util {

// "30" and "2.5" are seconds; a unit may follow: "500ms", "2s", "1.5m", "1h". The result is
// whole milliseconds, at least 1 and at most a day (a longer deadline is no deadline at all).
Result<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace ocifs::util
