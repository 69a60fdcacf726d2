#include "ocifs/registry/registry_url.hpp"
#include "ocifs/util/text.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <memory>

namespace ocifs::registry {

namespace {

// scheme://[userinfo@]authority/path?query#fragment, split without validation.
struct UrlParts {
  std::string_view scheme, authority, rest;  // rest: path, query and fragment
};

UrlParts split_url(std::string_view url) {
  UrlParts p;
  auto sep = url.find("://");
  if (sep == std::string_view::npos) {
    p.rest = url;
    return p;
  }
  p.scheme = url.substr(0, sep);
  auto after = url.substr(sep + 3);
  auto end = after.find_first_of("/?#");
  p.authority = after.substr(0, end);
  p.rest = end == std::string_view::npos ? std::string_view{} : after.substr(end);
  if (auto at = p.authority.rfind('@'); at != std::string_view::npos)
    p.authority = p.authority.substr(at + 1);
  return p;
}

// Splits "host:port", "[v6]:port", "host" into host and port ("" when absent).
std::pair<std::string_view, std::string_view> split_host_port(std::string_view authority) {
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return {authority, {}};
    auto host = authority.substr(0, close + 1);
    auto rest = authority.substr(close + 1);
    if (!rest.empty() && rest.front() == ':') return {host, rest.substr(1)};
    return {host, {}};
  }
  auto colon = authority.rfind(':');
  if (colon == std::string_view::npos) return {authority, {}};
  return {authority.substr(0, colon), authority.substr(colon + 1)};
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
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

std::string token_url(std::string_view realm, std::string_view service,
                      const std::vector<std::string>& scopes) {
  std::string url(realm);
  char sep = url.find('?') == std::string::npos ? '?' : '&';
  if (!service.empty()) {
    url += fmt::format("{}service={}", sep, percent_encode(service));
    sep = '&';
  }
  for (const auto& scope : scopes) {
    url += fmt::format("{}scope={}", sep, percent_encode(scope));
    sep = '&';
  }
  return url;
}

Result<std::string> resolve_location(std::string_view base, std::string_view location) {
  auto fail = [&](std::string_view why) {
    return make_error(std::errc::protocol_error, "cannot follow redirect from {} to {}: {}", redact_url(base),
                      redact_url(location), why);
  };
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> url(curl_url(), &curl_url_cleanup);
  if (!url) throw std::bad_alloc();
  std::string base_s(base), location_s(location);
  if (curl_url_set(url.get(), CURLUPART_URL, base_s.c_str(), 0) != CURLUE_OK) return fail("bad base URL");
  // With a base already set, CURLUPART_URL resolves a relative reference against it.
  if (curl_url_set(url.get(), CURLUPART_URL, location_s.c_str(), CURLU_URLENCODE) != CURLUE_OK) {
    return fail("the Location header is not a URL");
  }
  char* out = nullptr;
  if (curl_url_get(url.get(), CURLUPART_URL, &out, 0) != CURLUE_OK || !out) return fail("unusable URL");
  std::string result(out);
  curl_free(out);
  auto scheme = util::ascii_lower(split_url(result).scheme);
  if (scheme != "http" && scheme != "https") return fail("only http and https redirects are followed");
  return result;
}

std::string url_origin(std::string_view url) {
  auto parts = split_url(url);
  if (parts.scheme.empty() || parts.authority.empty()) return {};
  auto scheme = util::ascii_lower(parts.scheme);
  auto [host, port] = split_host_port(parts.authority);
  std::string p(port);
  if (p.empty()) p = scheme == "https" ? "443" : scheme == "http" ? "80" : "";
  return fmt::format("{}://{}:{}", scheme, util::ascii_lower(host), p);
}

std::string url_authority(std::string_view url) { return std::string(split_url(url).authority); }

bool same_origin(std::string_view a, std::string_view b) {
  auto oa = url_origin(a);
  return !oa.empty() && oa == url_origin(b);
}

bool is_loopback_host(std::string_view host) {
  auto [name, port] = split_host_port(host);
  auto h = util::ascii_lower(name);
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
  auto parts = split_url(url);
  if (parts.scheme.empty()) {
    auto cut = url.find_first_of("?#");
    return cut == std::string_view::npos ? std::string(url)
                                         : fmt::format("{}?<redacted>", url.substr(0, cut));
  }
  auto rest = parts.rest;
  auto cut = rest.find_first_of("?#");
  if (cut == std::string_view::npos) return fmt::format("{}://{}{}", parts.scheme, parts.authority, rest);
  return fmt::format("{}://{}{}?<redacted>", parts.scheme, parts.authority, rest.substr(0, cut));
}

std::string redact_header(std::string_view line) {
  static constexpr std::array<std::string_view, 4> kSecret = {"authorization", "proxy-authorization",
                                                              "cookie", "set-cookie"};
  std::string_view ending = line.ends_with("\r\n") ? "\r\n" : line.ends_with('\n') ? "\n" : "";
  std::string_view body = line.substr(0, line.size() - ending.size());
  // A request line ("GET /path?query HTTP/1.1"): signed URLs carry their signature in the query.
  auto sp = body.find(' ');
  if (sp != std::string_view::npos && sp > 0 && body.rfind(" HTTP/") > sp &&
      std::all_of(body.begin(), body.begin() + sp, [](unsigned char c) { return std::isupper(c); })) {
    auto end = body.rfind(" HTTP/");
    auto target = body.substr(sp + 1, end - sp - 1);
    return fmt::format("{} {}{}{}", body.substr(0, sp), redact_url(target), body.substr(end), ending);
  }
  auto colon = body.find(':');
  if (colon == std::string_view::npos) return std::string(line);
  auto name = util::ascii_lower(body.substr(0, colon));
  while (!name.empty() && (name.back() == ' ' || name.back() == '\t')) name.pop_back();
  if (name == "location" || name == "content-location") {
    auto value = body.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    return fmt::format("{}: {}{}", body.substr(0, colon), redact_url(value), ending);
  }
  if (std::find(kSecret.begin(), kSecret.end(), name) == kSecret.end()) return std::string(line);
  // Keep the line ending, so multi-line debug blocks stay readable.
  return fmt::format("{}: <redacted>{}", body.substr(0, colon), ending);
}

}  // namespace ocifs::registry
