// Small text helpers shared by the parsers (platforms, sizes, HTTP headers, URLs) and by every
// message that shows a name taken from an image. Pure functions: thread-safe.
#pragma once

#include <cstddef>
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

// Without leading and trailing ASCII white space (space, \t, \n, \v, \f, \r: protocol text,
// never the locale's notion).
inline std::string_view trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

// A name (path, link target, xattr name) from an image as it may be printed to a terminal or a
// log: what a terminal or syslog would interpret comes out as a C-style escape, as GNU `ls -b`
// writes it. Control characters (C0, DEL, and the C1 range U+0080-U+009F), backslash and bytes
// that are not valid UTF-8 become \a \b \t \n \v \f \r \\ or \ooo (three octal digits per byte);
// everything else, spaces and printable UTF-8 included, is kept. The result is one line of C
// string-literal escapes, so the bytes can be recovered from it (printf(1) reads them).
// Every message and listing that shows a name from an image goes through this. Messages pass
// `max_bytes` (kShownBytes): a longer name shows its first bytes, then "…" and its length.
std::string escaped(std::string_view name, std::size_t max_bytes = std::string_view::npos);

// What a message shows of one name: enough to find it, while a 1 MiB hostile PAX path does not
// become a 4 MiB log line.
inline constexpr std::size_t kShownBytes = 256;
inline std::string shown(std::string_view name) { return escaped(name, kShownBytes); }

}  // namespace ocifs::util
