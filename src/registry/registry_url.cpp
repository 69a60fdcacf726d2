#include "ocifs/registry/registry_url.hpp"
#include "ocifs/util/text.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>
#include <optional>

namespace ocifs::registry {

namespace {

// An absolute URL as libcurl's URL API reads it: the one parser of URLs here, the same that
// reads the URL of every request.
class ParsedUrl {
 public:
  // nullopt when `text` is not an absolute URL of a scheme curl knows.
  static std::optional<ParsedUrl> parse(std::string_view text, unsigned flags = 0) {
    ParsedUrl url;
    if (!url.url_) throw std::bad_alloc();
    if (curl_url_set(url.url_.get(), CURLUPART_URL, std::string(text).c_str(), flags) != CURLUE_OK) return std::nullopt;
    return url;
  }
  // The part as curl keeps it (not decoded); "" when the URL has none.
  std::string get(CURLUPart part, unsigned flags = 0) const {
    char* value = nullptr;
    if (curl_url_get(url_.get(), part, &value, flags) != CURLUE_OK || !value) return {};
    std::string out(value);
    curl_free(value);
    return out;
  }
  bool set(CURLUPart part, const char* value, unsigned flags = 0) {
    return curl_url_set(url_.get(), part, value, flags) == CURLUE_OK;
  }

 private:
  ParsedUrl() = default;
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> url_{curl_url(), &curl_url_cleanup};
};

// "host" or "host:port" of a parsed URL, the port only where one is written.
std::string authority_of(const ParsedUrl& url) {
  auto host = url.get(CURLUPART_HOST);
  auto port = url.get(CURLUPART_PORT);
  return port.empty() ? host : fmt::format("{}:{}", host, port);
}

}  // namespace

std::string base_url(bool plain_http, std::string_view host) {
  return fmt::format("{}://{}", plain_http ? "http" : "https", host);
}

std::string manifest_path(std::string_view repository, std::string_view reference) {
  return fmt::format("/v2/{}/manifests/{}", repository, reference);
}

std::string blob_path(std::string_view repository, std::string_view digest) {
  return fmt::format("/v2/{}/blobs/{}", repository, digest);
}

std::string percent_encode(std::string_view text) {
  // The handle argument is ignored since curl 7.82.
  std::unique_ptr<char, decltype(&curl_free)> out(
      curl_easy_escape(nullptr, text.data(), static_cast<int>(text.size())), &curl_free);
  if (!out) throw std::bad_alloc();
  return std::string(out.get());
}

std::string token_url(std::string_view realm, std::string_view service,
                      const std::vector<std::string>& scopes) {
  auto url = ParsedUrl::parse(realm);
  if (!url) return {};
  // The parameters go after the realm's own query, if it has one. They are appended as text: curl
  // would rewrite their escapes ("%3A" as "%3a") when it puts a URL back together.
  url->set(CURLUPART_FRAGMENT, nullptr);
  std::string out = url->get(CURLUPART_URL);
  char sep = url->get(CURLUPART_QUERY).empty() ? '?' : '&';
  auto append = [&](std::string_view name, std::string_view value) {
    out += fmt::format("{}{}={}", sep, name, percent_encode(value));
    sep = '&';
  };
  if (!service.empty()) append("service", service);
  for (const auto& scope : scopes) append("scope", scope);
  return out;
}

Result<std::string> resolve_location(std::string_view base, std::string_view location) {
  auto fail = [&](std::string_view why) {
    return make_error(std::errc::protocol_error, "cannot follow redirect from {} to {}: {}", redact_url(base),
                      redact_url(location), why);
  };
  auto url = ParsedUrl::parse(base);
  if (!url) return fail("bad base URL");
  // With a base already set, CURLUPART_URL resolves a relative reference against it.
  if (!url->set(CURLUPART_URL, std::string(location).c_str(), CURLU_URLENCODE)) {
    return fail("the Location header is not a URL");
  }
  auto result = url->get(CURLUPART_URL);
  if (result.empty()) return fail("unusable URL");
  auto scheme = url->get(CURLUPART_SCHEME);
  if (scheme != "http" && scheme != "https") return fail("only http and https redirects are followed");
  return result;
}

std::string url_scheme(std::string_view url) {
  auto parsed = ParsedUrl::parse(url);
  return parsed ? parsed->get(CURLUPART_SCHEME) : std::string();
}

std::string url_origin(std::string_view url) {
  auto parsed = ParsedUrl::parse(url, CURLU_NON_SUPPORT_SCHEME);
  if (!parsed) return {};
  // curl gives the scheme in lower case and the default port of http(s) when none is written.
  return fmt::format("{}://{}:{}", parsed->get(CURLUPART_SCHEME), util::ascii_lower(parsed->get(CURLUPART_HOST)),
                     parsed->get(CURLUPART_PORT, CURLU_DEFAULT_PORT));
}

std::string url_authority(std::string_view url) {
  auto parsed = ParsedUrl::parse(url, CURLU_NON_SUPPORT_SCHEME);
  return parsed ? authority_of(*parsed) : std::string();
}

bool is_host_location(std::string_view location) {
  if (location.empty() || location.starts_with('/')) return false;
  auto parsed = ParsedUrl::parse(fmt::format("https://{}", location), CURLU_DISALLOW_USER);
  return parsed && parsed->get(CURLUPART_QUERY).empty() && parsed->get(CURLUPART_FRAGMENT).empty() &&
         location.find_first_of("?#") == std::string_view::npos;
}

bool same_origin(std::string_view a, std::string_view b) {
  auto oa = url_origin(a);
  return !oa.empty() && oa == url_origin(b);
}

bool is_loopback_host(std::string_view host) {
  auto parsed = ParsedUrl::parse(fmt::format("http://{}", host));
  if (!parsed) return false;
  // curl writes an IPv4 address as a dotted quad whichever way it was given ("127.1").
  auto h = util::ascii_lower(parsed->get(CURLUPART_HOST));
  if (h == "localhost" || h == "[::1]" || h == "::1") return true;
  if (!h.starts_with("127.")) return false;
  // A dotted quad in 127.0.0.0/8.
  int dots = 0, digits = 0;
  for (char c : h) {
    if (c == '.') {
      if (digits == 0) return false;
      ++dots;
      digits = 0;
    } else if (std::isdigit(static_cast<unsigned char>(c)) && ++digits <= 3) {
    } else {
      return false;
    }
  }
  return dots == 3 && digits > 0;
}

std::string redact_url(std::string_view url) {
  auto parsed = ParsedUrl::parse(url, CURLU_NON_SUPPORT_SCHEME);
  if (!parsed) {
    // A relative reference (a request target, a Location): its query and fragment go.
    if (url.find("://") != std::string_view::npos) return "<a URL that does not parse>";
    auto cut = url.find_first_of("?#");
    return cut == std::string_view::npos ? std::string(url) : fmt::format("{}?<redacted>", url.substr(0, cut));
  }
  const bool secret = !parsed->get(CURLUPART_QUERY).empty() || !parsed->get(CURLUPART_FRAGMENT).empty();
  return fmt::format("{}://{}{}{}", parsed->get(CURLUPART_SCHEME), authority_of(*parsed),
                     parsed->get(CURLUPART_PATH), secret ? "?<redacted>" : "");
}

std::string redact_header(std::string_view line) {
  static constexpr std::array<std::string_view, 4> kSecret = {"authorization", "proxy-authorization",
                                                              "cookie", "set-cookie"};
  std::string_view ending = line.ends_with("\r\n") ? "\r\n" : line.ends_with('\n') ? "\n" : "";
  std::string_view body = line.substr(0, line.size() - ending.size());
  // A request line ("GET /path?query HTTP/1.1"): signed URLs carry their signature in the query.
  auto sp = body.find(' ');
  auto end = body.rfind(" HTTP/");  // npos when absent: not a request line
  if (sp != std::string_view::npos && sp > 0 && end != std::string_view::npos && end > sp &&
      std::all_of(body.begin(), body.begin() + sp, [](unsigned char c) { return std::isupper(c); })) {
    auto target = body.substr(sp + 1, end - sp - 1);
    return fmt::format("{} {}{}{}", body.substr(0, sp), redact_url(target), body.substr(end), ending);
  }
  auto colon = body.find(':');
  if (colon == std::string_view::npos) return std::string(line);
  auto name = util::ascii_lower(util::trim(body.substr(0, colon)));
  if (name == "location" || name == "content-location") {
    auto value = util::trim(body.substr(colon + 1));
    return fmt::format("{}: {}{}", body.substr(0, colon), redact_url(value), ending);
  }
  if (std::find(kSecret.begin(), kSecret.end(), name) == kSecret.end()) return std::string(line);
  // Keep the line ending, so multi-line debug blocks stay readable.
  return fmt::format("{}: <redacted>{}", body.substr(0, colon), ending);
}

}  // namespace ocifs::registry
