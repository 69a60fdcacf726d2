#include "ocifs/util/rfc3339.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace ocifs::util {

namespace {

bool parse_digits(std::string_view s, std::uint32_t& out) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

}  // namespace

bool parse_rfc3339(std::string_view s, std::int64_t& sec, std::uint32_t& nsec) {
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
    return false;
  std::uint32_t year, month, day, hour, minute, second;
  if (!parse_digits(s.substr(0, 4), year) || !parse_digits(s.substr(5, 2), month) ||
      !parse_digits(s.substr(8, 2), day) || !parse_digits(s.substr(11, 2), hour) ||
      !parse_digits(s.substr(14, 2), minute) || !parse_digits(s.substr(17, 2), second)) {
    return false;
  }
  static constexpr std::array<unsigned, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1] + (month == 2 && leap ? 1 : 0) ||
      hour > 23 || minute > 59 || second > 59) {
    return false;
  }
  std::size_t i = 19;
  std::uint32_t frac = 0;
  if (s[i] == '.') {
    std::size_t digits = 0;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++digits) {
      if (digits < 9) frac = frac * 10 + static_cast<std::uint32_t>(s[i] - '0');
    }
    if (digits == 0) return false;
    for (; digits < 9; ++digits) frac *= 10;
  }
  std::int64_t zone = 0;
  std::string_view rest = s.substr(i);
  if (rest == "Z") {
    zone = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    std::uint32_t zh, zm;
    if (!parse_digits(rest.substr(1, 2), zh) || !parse_digits(rest.substr(4, 2), zm) || zh > 23 || zm > 59)
      return false;
    zone = (rest[0] == '-' ? -1 : 1) * static_cast<std::int64_t>(zh * 3600 + zm * 60);
  } else {
    return false;
  }
  sec = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - zone;
  nsec = frac;
  return true;
}

}  // namespace ocifs::util
