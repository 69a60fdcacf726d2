// Standard base64 (RFC 4648 §4): Basic credentials and auth.json "auth" fields, PAX xattr
// values, TOC xattrs. Functions only.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ocifs::util {

enum class Base64Padding {
  optional,  // missing "=" accepted (libarchive writes none, some auth files drop it)
  required,  // the text is whole 4-symbol groups, "=" only where the last one is short (Go's StdEncoding)
};

std::string base64_encode(std::string_view data);
// White space is skipped; nullopt on any other character that is not base64, on data after
// padding, or on a lone trailing symbol (and, with Padding::required, on missing padding).
std::optional<std::string> base64_decode(std::string_view text, Base64Padding padding = Base64Padding::optional);

}  // namespace ocifs::util
