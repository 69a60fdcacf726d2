// RFC 3339 times as the TOC writers put them in `modtime`. A pure function: thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

namespace ocifs::layer::toc {

// YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), as Go's time.Parse(RFC3339) reads it: seconds
// since the epoch (UTC) and nanoseconds. False on anything else (the outputs are then unset).
bool parse_rfc3339(std::string_view s, std::int64_t& sec, std::uint32_t& nsec);

}  // namespace ocifs::layer::toc
