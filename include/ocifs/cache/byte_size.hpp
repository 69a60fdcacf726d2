// Byte sizes on the command line (--cache-max) and in listings. Pure functions: thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "ocifs/util/result.hpp"

namespace ocifs::cache {

// "10G", "512M", "1.5GiB", "2T", "100000", "0". Units as dd(1) and coreutils take them:
// K M G T P (and KiB MiB GiB TiB PiB) are powers of 1024; kB KB MB GB TB PB are powers of 1000;
// B or no unit is bytes; case-insensitive apart from that. A fraction is allowed with a unit
// ("1.5G" = 1610612736). "0", "none" and "unlimited" mean no limit and return 0.
Result<std::uint64_t> parse_byte_size(std::string_view text);

// "0 B", "812 B", "1.00 KiB", "27.4 MiB", "512 MiB": three significant digits, powers of 1024.
std::string format_byte_size(std::uint64_t bytes);

// The --cache-max default for a cache directory: a quarter of the size of the file system that
// holds it, at most 10 GiB. Why: 10 GiB keeps the layers of a dozen typical images (a
// python:3.12-slim is 45 MiB compressed, a CUDA base image 3-4 GiB), while a quarter keeps a
// small root file system (an 8 GiB VM disk gets 2 GiB) from being filled by the cache. 10 GiB
// when the size cannot be found (`root` need not exist yet: its nearest existing parent is used).
std::uint64_t default_cache_max(const std::filesystem::path& root);

}  // namespace ocifs::cache
