// WWW-Authenticate challenges from a registry (RFC 7235): one header value, or several header
// lines (the input split at newlines). Malformed parts are skipped, never an error; what is
// returned has lowercase schemes and parameter names. The token URL built from a challenge's
// realm, service and a scope must not crash either.
// libfuzzer: -max_len=8192
#include <algorithm>
#include <string>
#include <vector>

#include "ocifs/registry/auth_challenge.hpp"
#include "ocifs/registry/registry_url.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

namespace {

bool lowercase(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

void check_all(const std::vector<registry::AuthChallenge>& challenges) {
  for (const auto& c : challenges) {
    check(!c.scheme.empty() && lowercase(c.scheme), "scheme '{}'", c.scheme);
    for (const auto& [name, value] : c.params)
      check(!name.empty() && lowercase(name), "parameter '{}'", name);
    (void)registry::token_url(c.param("realm"), c.param("service"), {"repository:library/debian:pull"});
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check_all(registry::AuthChallenge::parse(text));
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start <= text.size();) {
    auto nl = std::min(text.find('\n', start), text.size());
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  check_all(registry::AuthChallenge::parse_all(lines));
  return 0;
}
