// What a registry (or a token server, or a CDN) sends besides documents and blobs: token
// answers (JSON with token, expires_in, issued_at), RFC 3339 dates, Retry-After values, Location
// headers resolved against the URL that answered, Content-Range and the head of a ranged answer,
// error bodies ({"errors":[...]} or text) made safe for messages, and the redaction of URLs and
// header lines for logs. The input is split at the first two newlines into a base URL, a header
// value and a body.
// libfuzzer: -max_len=8192
#include <algorithm>
#include <chrono>
#include <string>

#include "../../src/registry/registry_response.hpp"
#include "ocifs/registry/authenticator.hpp"
#include "ocifs/registry/registry_url.hpp"
#include "ocifs/registry/retry_budget.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto cut = [&] {
    auto nl = std::min(text.find('\n'), text.size());
    auto part = text.substr(0, nl);
    text.remove_prefix(std::min(nl + 1, text.size()));
    return part;
  };
  const std::string_view base = cut();
  const std::string_view header = cut();
  const std::string_view body = text;
  const auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));

  if (auto token = registry::TokenAnswer::parse(body); token.ok()) {
    check(!token->token.empty(), "a token answer without a token");
    auto usable = token->usable_for(now);
    check(usable.count() >= 0 && usable <= token->expires_in, "token usable for {} ms of {} s",
          usable.count(), token->expires_in.count());
  }
  (void)registry::parse_rfc3339(header);
  if (auto delay = registry::parse_retry_after(header, now))
    check(delay->count() >= 0, "negative Retry-After");

  if (auto location = registry::resolve_location(base, header); location.ok()) {
    (void)registry::url_origin(*location);
    (void)registry::same_origin(base, *location);
    auto redacted = registry::redact_url(*location);
    check(redacted.find('?') == std::string::npos || redacted.find("<redacted>") != std::string::npos,
          "'{}' keeps its query when redacted: '{}'", *location, redacted);
  }
  if (auto range = registry::parse_content_range(header)) {
    check(range->has_range ? range->first <= range->last : range->total.has_value(), "range {}-{} of '{}'",
          range->first, range->last, header);
    if (range->has_range && range->total) {
      check(range->last < *range->total, "range {}-{} of {} bytes", range->first, range->last, *range->total);
    }
  }
  registry::HttpResponse answer;
  answer.status = body.empty() ? 206 : 400 + static_cast<long>(body.size() % 200);
  answer.headers = {{"content-range", std::string(header)}, {"content-type", "application/json"}};
  answer.body = std::string(body);
  auto detail = registry::error_detail(answer);
  check(std::none_of(detail.begin(), detail.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; }),
        "a control character in the error detail '{}'", detail);
  std::optional<std::uint64_t> total;
  std::uint64_t skip = 0;
  const std::uint64_t pos = body.size();
  answer.status = 206;
  if (!registry::accept_range_head(answer, pos, "fuzz", total, skip)) {
    check(skip == 0 || skip == pos, "skip {} of a range asked from {}", skip, pos);
  }
  (void)registry::url_authority(base);
  (void)registry::is_loopback_host(header);
  (void)registry::redact_header(header);
  (void)registry::redact_url(header);
  // Whatever the value of a credential header, nothing of it reaches a log (`header` holds no
  // newline, so the line has no ending to keep).
  for (std::string_view name : {"Authorization", "proxy-authorization", "Cookie"}) {
    std::string line = std::string(name) + ": " + std::string(header);
    auto redacted = registry::redact_header(line);
    check(redacted == std::string(name) + ": <redacted>", "'{}' is logged as '{}'", line, redacted);
  }
  return 0;
}
