#include "registry_response.hpp"

#include <nlohmann/json.hpp>

#include "ocifs/util/text.hpp"

namespace ocifs::registry {

bool is_redirect(long s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }
bool is_retryable_status(long s) { return s == 429 || s == 500 || s == 502 || s == 503 || s == 504; }
bool is_success(long s) { return s >= 200 && s < 300; }

std::string sanitize(std::string_view text, std::size_t limit) {
  std::string out;
  for (unsigned char c : text) {
    if (out.size() >= limit) {
      out += "…";
      break;
    }
    out += (c < 0x20 || c == 0x7f) ? ' ' : static_cast<char>(c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

std::string error_detail(const HttpResponse& r) {
  if (r.body.empty()) return {};
  auto doc = nlohmann::json::parse(r.body, nullptr, false);
  if (!doc.is_discarded() && doc.is_object()) {
    std::string out;
    if (auto errors = doc.find("errors"); errors != doc.end() && errors->is_array()) {
      int n = 0;
      for (const auto& e : *errors) {
        if (!e.is_object() || ++n > 3) continue;
        auto field = [&](const char* k) {
          auto it = e.find(k);
          return it != e.end() && it->is_string() ? sanitize(it->get<std::string>()) : std::string();
        };
        auto code = field("code"), message = field("message");
        if (code.empty() && message.empty()) continue;
        if (!out.empty()) out += "; ";
        out += code.empty() ? message : message.empty() ? code : code + ": " + message;
      }
    }
    for (const char* k : {"message", "error", "details"}) {
      if (!out.empty()) break;
      if (auto it = doc.find(k); it != doc.end() && it->is_string()) out = sanitize(it->get<std::string>());
    }
    return out;
  }
  if (util::ascii_lower(r.header("content-type")).starts_with("text/plain")) {
    auto line = std::string_view(r.body).substr(0, r.body.find('\n'));
    return sanitize(line);
  }
  return {};
}

std::errc errc_for_status(long s) {
  switch (s) {
    case 401:
    case 403:
      return std::errc::permission_denied;
    case 404:
      return std::errc::no_such_file_or_directory;
    default:
      return std::errc::io_error;
  }
}

std::optional<ContentRange> parse_content_range(std::string_view v) {
  auto num = [](std::string_view s) -> std::optional<std::uint64_t> {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n;
  };
  if (!util::ascii_lower(v.substr(0, 6)).starts_with("bytes ")) return std::nullopt;
  v.remove_prefix(6);
  auto slash = v.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  ContentRange cr;
  auto total = v.substr(slash + 1);
  if (total != "*") {
    cr.total = num(total);
    if (!cr.total) return std::nullopt;
  }
  auto range = v.substr(0, slash);
  if (range == "*") {
    if (!cr.total) return std::nullopt;
    return cr;
  }
  auto dash = range.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto first = num(range.substr(0, dash)), last = num(range.substr(dash + 1));
  if (!first || !last || *last < *first || (cr.total && *last >= *cr.total)) return std::nullopt;
  cr.has_range = true;
  cr.first = *first;
  cr.last = *last;
  return cr;
}

std::optional<Error> accept_range_head(const HttpResponse& head, std::uint64_t pos, std::string_view context,
                                       std::optional<std::uint64_t>& total, std::uint64_t& skip) {
  if (head.status != 206) {
    skip = pos;
    return std::nullopt;
  }
  auto cr = parse_content_range(head.header("content-range"));
  if (!cr || !cr->has_range || cr->first != pos) {
    return make_error(std::errc::io_error, "{}: the registry answered range \"{}\"", context,
                      sanitize(head.header("content-range"), 80));
  }
  total = cr->total;
  return std::nullopt;
}

}  // namespace ocifs::registry
