// Small text helpers shared by the parsers (platforms, sizes, HTTP headers, URLs). Pure
// functions: thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace ocifs::util {

// ASCII lower case, as protocol tokens and names compare (no locale).
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace ocifs::util
