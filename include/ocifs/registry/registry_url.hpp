// URLs of the distribution API, their parts, and redaction of what must never reach a log.
// URLs are split and percent-encoded by libcurl's URL API (CURLU, curl_easy_escape), the parser
// that reads every request's URL; nothing here splits one by hand. Functions only; pure (no I/O).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ocifs/util/result.hpp"

namespace ocifs::registry {

// "https://HOST" (HOST as in references: "ghcr.io", "localhost:5000", "[::1]:5000").
std::string base_url(bool plain_http, std::string_view host);
// BASE/v2/REPOSITORY/manifests/REFERENCE and BASE/v2/REPOSITORY/blobs/DIGEST. The parts are
// validated by their callers (oci::Reference, oci::Digest, the tag syntax); nothing is escaped.
std::string manifest_path(std::string_view repository, std::string_view reference);
std::string blob_path(std::string_view repository, std::string_view digest);

// RFC 3986 percent-encoding of everything but unreserved characters.
std::string percent_encode(std::string_view text);
// The token request: REALM?service=S&scope=A&scope=B (appended with & when REALM has a query);
// "" when REALM is not an absolute URL.
std::string token_url(std::string_view realm, std::string_view service,
                      const std::vector<std::string>& scopes);

// Resolves a Location header against the URL that answered (absolute, absolute-path or relative).
Result<std::string> resolve_location(std::string_view base, std::string_view location);
// The scheme of an absolute URL, lowercase ("https"); "" when `url` is not one curl can fetch.
std::string url_scheme(std::string_view url);
// "scheme://host:port", lowercase, the default port made explicit; "" when `url` does not parse.
std::string url_origin(std::string_view url);
// The host[:port] of a URL, without user info ("cdn.example.com", "127.0.0.1:5000", "[::1]:5000").
std::string url_authority(std::string_view url);
bool same_origin(std::string_view a, std::string_view b);
// "host[:port][/path]" (a registries.conf location): what may follow "https://" in a URL, without
// user info, query or fragment.
bool is_host_location(std::string_view location);

// localhost, 127.0.0.0/8 and ::1, with or without a port: Docker reaches these over plain HTTP
// when HTTPS fails.
bool is_loopback_host(std::string_view host);

// For logs and error messages: drops user info, query and fragment (signed CDN URLs carry
// their signature in the query): "https://cdn.example.com/blob?<redacted>".
std::string redact_url(std::string_view url);
// For debug logs of header lines: the value of Authorization, Proxy-Authorization, Cookie and
// Set-Cookie becomes "<redacted>"; Location values and request-line targets lose their query
// (redact_url); other lines are returned unchanged.
std::string redact_header(std::string_view line);

}  // namespace ocifs::registry
