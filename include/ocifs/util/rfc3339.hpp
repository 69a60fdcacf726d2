// RFC 3339 times, as TOC writers put them in `modtime` and token servers in `issued_at`. A pure
// function: thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

namespace ocifs::util {

// YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), as Go's time.Parse(RFC3339) reads it: seconds
// since the epoch (UTC) and nanoseconds. False on anything else (the outputs are then unset).
bool parse_rfc3339(std::string_view s, std::int64_t& sec, std::uint32_t& nsec);

}  // namespace ocifs::util
