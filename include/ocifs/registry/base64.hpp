// Standard base64 (RFC 4648 §4) for Basic credentials and auth.json "auth" fields. Functions only.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ocifs::registry {

std::string base64_encode(std::string_view data);
// Accepts missing padding and ignores whitespace; nullopt on any other character.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace ocifs::registry
