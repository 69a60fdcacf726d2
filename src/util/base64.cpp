// Base64 over OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock. EVP_DecodeBlock wants whole 4-symbol
// groups without white space inside and counts the bytes of "=" padding in its result, so the
// text is prepared for it here: white space dropped, padding checked and completed, the padding
// bytes taken off its result again.
#include "ocifs/util/base64.hpp"

#include <openssl/evp.h>

#include <algorithm>

namespace ocifs::util {

std::string base64_encode(std::string_view data) {
  std::string out((data.size() + 2) / 3 * 4 + 1, '\0');  // + the NUL EVP_EncodeBlock writes
  const int n =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(data.data()), static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text, Base64Padding padding_rule) {
  std::string symbols;
  symbols.reserve(text.size() + 3);
  std::copy_if(text.begin(), text.end(), std::back_inserter(symbols),
               [](char c) { return c != ' ' && c != '\n' && c != '\r' && c != '\t'; });
  // "=" only at the end, at most two of them.
  const std::size_t data_end = std::min(symbols.find('='), symbols.size());
  const std::size_t pads = symbols.size() - data_end;
  if (symbols.find_first_not_of('=', data_end) != std::string::npos || pads > 2) return std::nullopt;
  symbols.resize(data_end);
  const std::size_t tail = data_end % 4;  // symbols of the last, short group
  if (tail == 1) return std::nullopt;     // a lone symbol carries no byte
  // Required: whole groups, "=" exactly where the last one is short (tail 2: two, 3: one).
  if (padding_rule == Base64Padding::required && (data_end + pads) % 4 != 0) return std::nullopt;
  const std::size_t missing = tail == 0 ? 0 : 4 - tail;
  symbols.append(missing, '=');
  std::string out(symbols.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(symbols.data()),
                                static_cast<int>(symbols.size()));
  if (n < 0) return std::nullopt;  // a symbol outside the alphabet
  out.resize(static_cast<std::size_t>(n) - missing);
  return out;
}

}  // namespace ocifs::util
