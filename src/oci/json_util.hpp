// Private helpers of the oci module: typed access to nlohmann::json values that report wrong
// types and missing fields as Errors naming the document and the field. Functions only.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/util/result.hpp"

namespace ocifs::oci::detail {

using nlohmann::json;

// Whether to keep the value of `key` in an object reached through `path` (the keys of the
// enclosing objects, outermost first; array levels add nothing).
using KeepKey = std::function<bool(std::span<const std::string> path, std::string_view key)>;

// Parses a whole document; syntax errors name `where` and the byte offset. Only what `keep`
// keeps (everything without it) is built, so memory follows the fields used, not the document.
// A document nested deeper than limits::kMaxJsonDepth, or of more than limits::kMaxJsonValues
// kept values, is an error.
Result<json> parse_json(std::string_view text, std::string_view where, const KeepKey& keep = {});

Error bad_field(std::string_view where, std::string_view field, std::string_view reason);

// Field accessors. A missing or null field yields `fallback` (or an error when required).
Result<std::string> get_string(const json& obj, const char* key, std::string_view where,
                               std::string_view path, bool required = false);
Result<std::int64_t> get_int(const json& obj, const char* key, std::string_view where, std::string_view path,
                             bool required, std::int64_t fallback);
Result<std::vector<std::string>> get_strings(const json& obj, const char* key, std::string_view where,
                                             std::string_view path);
Result<std::map<std::string, std::string>> get_string_map(const json& obj, const char* key,
                                                          std::string_view where, std::string_view path);

// "path.key" or "key" for messages.
std::string field_path(std::string_view path, std::string_view key);

}  // namespace ocifs::oci::detail
