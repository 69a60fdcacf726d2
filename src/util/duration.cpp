#include "ocifs/util/duration.hpp"

#include <cctype>
#include <cmath>
#include <string>

namespace ocifs::util {

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return make_error(std::errc::invalid_argument, "cannot parse duration '{}': {}", text, why);
  };
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) ++i;
  const std::string number(text.substr(0, i));
  const std::string_view unit = text.substr(i);
  if (number.empty() || number == "." || number.find('.') != number.rfind('.')) {
    return bad("expected a number of seconds, or one with a unit: 500ms, 2s, 1.5m, 1h");
  }
  double ms_per_unit;
  if (unit.empty() || unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "m" || unit == "min") {
    ms_per_unit = 60'000;
  } else if (unit == "h") {
    ms_per_unit = 3'600'000;
  } else {
    return bad("the unit must be ms, s, m or h");
  }
  const double ms = std::stod(number) * ms_per_unit;
  constexpr double kDay = 86'400'000;  // ms: no timeout of ours needs to be longer than a day
  if (!(ms >= 1)) return bad("shorter than a millisecond");
  if (ms > kDay) return bad("longer than a day");
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

}  // namespace ocifs::util
