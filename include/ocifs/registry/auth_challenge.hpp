// WWW-Authenticate challenges (RFC 7235 §4.1): scheme plus auth-params or a token68.
// Plain values; not synchronised.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace ocifs::registry {

struct AuthChallenge {
  std::string scheme;                         // lowercase: "bearer", "basic"
  std::map<std::string, std::string> params;  // names lowercase, values unquoted and unescaped
  std::string token68;                        // "Basic dXNlcg==" form; usually empty

  // The value of a parameter (name in lowercase), "" when absent.
  std::string param(std::string_view name) const;

  // Parses one header value that may hold several challenges ("Basic realm=\"a\", Bearer
  // realm=\"b\",service=\"c\""). Quoted values may contain commas and backslash escapes; scheme
  // and parameter names are case-insensitive. Malformed parts are skipped, never an error: a
  // server's odd header must not make an otherwise working pull fail.
  static std::vector<AuthChallenge> parse(std::string_view header);
  // All challenges of several header lines, in order.
  static std::vector<AuthChallenge> parse_all(const std::vector<std::string_view>& headers);
};

}  // namespace ocifs::registry
