#include "json_util.hpp"

namespace ocifs::oci::detail {

Result<json> parse_json(std::string_view text, std::string_view where) {
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    return make_error(std::errc::invalid_argument, "cannot parse {}: malformed JSON at byte {}", where,
                      e.byte);
  } catch (const json::exception& e) {
    return make_error(std::errc::invalid_argument, "cannot parse {}: {}", where, e.what());
  }
}

Error bad_field(std::string_view where, std::string_view field, std::string_view reason) {
  return make_error(std::errc::invalid_argument, "cannot parse {}: field \"{}\" {}", where, field, reason);
}

std::string field_path(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : fmt::format("{}.{}", path, key);
}

Result<std::string> get_string(const json& obj, const char* key, std::string_view where,
                               std::string_view path, bool required) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) {
      return bad_field(where, field_path(path, key), it == obj.end() ? "is missing" : "is null, not a string");
    }
    return std::string();
  }
  if (!it->is_string()) return bad_field(where, field_path(path, key), "is not a string");
  return it->get<std::string>();
}

Result<std::int64_t> get_int(const json& obj, const char* key, std::string_view where, std::string_view path,
                             bool required, std::int64_t fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) {
      return bad_field(where, field_path(path, key), it == obj.end() ? "is missing" : "is null, not an integer");
    }
    return fallback;
  }
  if (!it->is_number_integer()) return bad_field(where, field_path(path, key), "is not an integer");
  return it->get<std::int64_t>();
}

Result<std::vector<std::string>> get_strings(const json& obj, const char* key, std::string_view where,
                                             std::string_view path) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_array()) return bad_field(where, field_path(path, key), "is not an array");
  for (const auto& v : *it) {
    if (!v.is_string()) return bad_field(where, field_path(path, key), "has an element that is not a string");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Result<std::map<std::string, std::string>> get_string_map(const json& obj, const char* key,
                                                          std::string_view where, std::string_view path) {
  std::map<std::string, std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_object()) return bad_field(where, field_path(path, key), "is not an object");
  for (const auto& [k, v] : it->items()) {
    if (!v.is_string())
      return bad_field(where, field_path(path, fmt::format("{}.{}", key, k)), "is not a string");
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

}  // namespace ocifs::oci::detail
