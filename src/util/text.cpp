#include "ocifs/util/text.hpp"

#include <fmt/format.h>

#include <cstdint>

namespace ocifs::util {

namespace {

// Length of the valid UTF-8 sequence at s[i] (1-4), or 0 if the byte there does not start one
// (overlong forms, surrogates and code points past U+10FFFF are invalid).
std::size_t utf8_length(std::string_view s, std::size_t i, std::uint32_t& cp) {
  const auto b = static_cast<unsigned char>(s[i]);
  const std::size_t n = b < 0x80             ? 1
                        : (b & 0xe0) == 0xc0 ? 2
                        : (b & 0xf0) == 0xe0 ? 3
                        : (b & 0xf8) == 0xf0 ? 4
                                             : 0;
  if (n == 0 || i + n > s.size()) return 0;
  cp = n == 1 ? b : n == 2 ? b & 0x1fu : n == 3 ? b & 0x0fu : b & 0x07u;
  for (std::size_t k = 1; k < n; ++k) {
    const auto c = static_cast<unsigned char>(s[i + k]);
    if ((c & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (c & 0x3fu);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
      (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff) {
    return 0;
  }
  return n;
}

void octal(std::string& out, unsigned char b) {
  out += '\\';
  out += static_cast<char>('0' + (b >> 6));
  out += static_cast<char>('0' + ((b >> 3) & 7));
  out += static_cast<char>('0' + (b & 7));
}

}  // namespace

std::string escaped(std::string_view whole, std::size_t max_bytes) {
  const std::string_view name = whole.substr(0, max_bytes);
  std::string out;
  out.reserve(name.size());
  for (std::size_t i = 0; i < name.size();) {
    const auto b = static_cast<unsigned char>(name[i]);
    if (b >= 0x20 && b < 0x7f) {
      if (b == '\\') out += '\\';
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    if (b < 0x80) {
      static constexpr std::string_view kLetters = "abtnvfr";  // \a (7) to \r (13)
      if (b >= 7 && b <= 13) {
        out += '\\';
        out += kLetters[b - 7];
      } else {
        octal(out, b);
      }
      ++i;
      continue;
    }
    std::uint32_t cp = 0;
    const std::size_t n = utf8_length(name, i, cp);
    if (n == 0 || (cp >= 0x80 && cp <= 0x9f)) {
      // Not UTF-8 (one byte at a time), or a C1 control (both of its bytes).
      for (std::size_t k = 0; k < (n == 0 ? 1 : n); ++k) octal(out, static_cast<unsigned char>(name[i + k]));
      i += n == 0 ? 1 : n;
      continue;
    }
    out.append(name.substr(i, n));
    i += n;
  }
  if (name.size() < whole.size()) out += fmt::format("…({} bytes)", whole.size());
  return out;
}

}  // namespace ocifs::util
