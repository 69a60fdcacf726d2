// What a registry's answers mean: status classes, the error text a registry sends, byte ranges
// (Content-Range), and text from a registry made safe for our messages. Functions only; pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "ocifs/registry/http_client.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::registry {

bool is_redirect(long status);
// Worth another attempt after a pause: rate limited, or the server or a gateway failed.
bool is_retryable_status(long status);
bool is_success(long status);

// Printable, one line, bounded: registry messages end up in our error messages.
std::string sanitize(std::string_view text, std::size_t limit = 200);
// The registry's JSON error ({"errors":[{"code","message"}]}), or a short text body; "" otherwise.
std::string error_detail(const HttpResponse& r);
// permission_denied for 401 and 403, no_such_file_or_directory for 404, else io_error.
std::errc errc_for_status(long status);

struct ContentRange {
  bool has_range = false;  // false for "bytes */N": no range, only the total
  std::uint64_t first = 0, last = 0;
  std::optional<std::uint64_t> total;
};
// "bytes 100-199/1000", "bytes 100-199/*"; for 416 "bytes */1000" gives only the total. A range
// that ends at or past its total, or that gives neither range nor total, is no Content-Range.
std::optional<ContentRange> parse_content_range(std::string_view value);

// The head of the answer to a GET with `Range: bytes=pos-…`. A 206 must start at pos (its
// total, if given, is kept); any other success is the whole blob, of which the first pos bytes
// are to be skipped. An error when the 206 starts elsewhere.
std::optional<Error> accept_range_head(const HttpResponse& head, std::uint64_t pos, std::string_view context,
                                       std::optional<std::uint64_t>& total, std::uint64_t& skip);

}  // namespace ocifs::registry
