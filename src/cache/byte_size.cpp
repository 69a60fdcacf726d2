#include "ocifs/cache/byte_size.hpp"
#include "ocifs/util/text.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <cctype>
#include <cmath>

namespace ocifs::cache {

namespace {

}  // namespace

Result<std::uint64_t> parse_byte_size(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_error(std::errc::invalid_argument, "cannot parse size '{}': {}", text, why);
  };
  std::string s = util::ascii_lower(text);
  if (s == "none" || s == "unlimited") return std::uint64_t{0};
  std::size_t i = 0;
  std::uint64_t whole = 0;
  std::size_t digits = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    if (whole > (UINT64_MAX - 9) / 10) return bad("too large");
    whole = whole * 10 + static_cast<std::uint64_t>(s[i] - '0');
    ++i, ++digits;
  }
  // The fraction as an exact decimal: numerator / 10^frac_digits (at most 9 digits kept).
  std::uint64_t frac = 0, frac_scale = 1;
  bool has_point = i < s.size() && s[i] == '.';
  if (has_point) {
    ++i;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (frac_scale < 1'000'000'000) {
        frac = frac * 10 + static_cast<std::uint64_t>(s[i] - '0');
        frac_scale *= 10;
      }
      ++i, ++digits;
    }
  }
  if (digits == 0) return bad("expected a number such as 10G, 512M or 1.5GiB");
  std::string unit = s.substr(i);
  if (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  static constexpr std::string_view kLetters = "kmgtp";
  std::uint64_t multiplier = 1;
  if (unit.empty() || unit == "b") {
    multiplier = 1;
  } else {
    auto pos = kLetters.find(unit.front());
    std::string_view rest = std::string_view(unit).substr(1);
    if (pos == std::string_view::npos || !(rest.empty() || rest == "ib" || rest == "b")) {
      return bad("unknown unit (use K, M, G, T, P, KiB … PiB, or kB … PB)");
    }
    std::uint64_t base = rest == "b" ? 1000 : 1024;
    for (std::size_t p = 0; p <= pos; ++p) multiplier *= base;
  }
  if (has_point && multiplier == 1 && frac != 0) return bad("a fraction of a byte");
  if (whole > UINT64_MAX / multiplier) return bad("too large");
  std::uint64_t value = whole * multiplier;
  // multiplier <= 1024^5 < 2^51 and frac < 10^9 < 2^30: a long double product is exact enough,
  // rounded to the nearest byte.
  auto extra = static_cast<std::uint64_t>(
      std::llround(static_cast<long double>(frac) * static_cast<long double>(multiplier) / frac_scale));
  if (value > UINT64_MAX - extra) return bad("too large");
  return value + extra;
}

std::string format_byte_size(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = static_cast<double>(bytes);
  int unit = 0;
  while (v >= 1024 && unit < 6) v /= 1024, ++unit;
  if (v >= 99.95) return fmt::format("{:.0f} {}", v, kUnits[unit]);
  if (v >= 9.995) return fmt::format("{:.1f} {}", v, kUnits[unit]);
  return fmt::format("{:.2f} {}", v, kUnits[unit]);
}

std::uint64_t default_cache_max(const std::filesystem::path& root) {
  // A quarter of the file system, at most 10 GiB: the cache is a convenience, not the disk's owner,
  // and 10 GiB hold the layers of dozens of typical images.
  constexpr std::uint64_t kCeiling = std::uint64_t{10} << 30;
  std::filesystem::path p = root.empty() ? std::filesystem::path(".") : root;
  std::error_code ec;
  while (!std::filesystem::exists(p, ec) && p.has_parent_path() && p.parent_path() != p) p = p.parent_path();
  struct statvfs st {};
  if (::statvfs(p.c_str(), &st) != 0 || st.f_blocks == 0) return kCeiling;
  std::uint64_t total = static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize;
  return std::min(kCeiling, total / 4);
}

}  // namespace ocifs::cache
