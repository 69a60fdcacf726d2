#include "json_util.hpp"

#include <optional>

#include "ocifs/util/limits.hpp"

namespace ocifs::oci::detail {

namespace {

// The DOM parse_json builds: a SAX handler that keeps what KeepKey keeps, counts what it keeps and
// the nesting, and stops the parse at once when either passes its limit. (nlohmann's own
// callback parser scans a whole array each time one of its objects ends: a manifest of 100k
// layers took 9 s.) A stack holds the open containers; only the innermost one grows, so the
// pointers into the ones around it stay valid.
class FilteredDom final : public nlohmann::json_sax<json> {
 public:
  explicit FilteredDom(const KeepKey& keep) : keep_(keep) {}

  bool null() override { return value(json(nullptr)); }
  bool boolean(bool v) override { return value(json(v)); }
  bool number_integer(number_integer_t v) override { return value(json(v)); }
  bool number_unsigned(number_unsigned_t v) override { return value(json(v)); }
  bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
  bool string(string_t& v) override { return value(json(std::move(v))); }
  bool binary(binary_t& v) override { return value(json::binary(std::move(v))); }
  bool start_object(std::size_t) override { return open(json::object()); }
  bool start_array(std::size_t) override { return open(json::array()); }
  bool end_object() override { return close(); }
  bool end_array() override { return close(); }

  bool key(string_t& k) override {
    if (skipped_ > 0) return true;
    Level& level = open_.back();
    level.key = std::move(k);
    if (keep_) {
      path_.clear();
      for (std::size_t i = 0; i + 1 < open_.size(); ++i) {
        if (open_[i].node->is_object()) path_.push_back(open_[i].key);
      }
      level.key_kept = keep_(path_, level.key);
    }
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception&) override {
    error_at_ = position;
    return false;
  }

  json& root() { return root_; }
  bool too_deep() const { return too_deep_; }
  bool too_many() const { return too_many_; }
  std::optional<std::size_t> error_at() const { return error_at_; }

 private:
  struct Level {
    json* node;
    std::string key;  // objects: the key whose value comes next
    bool key_kept = true;
  };

  // Where the next value goes, or null when it is not kept.
  json* slot() {
    if (open_.empty()) return &root_;
    Level& level = open_.back();
    if (level.node->is_array()) return &level.node->emplace_back();
    if (!level.key_kept) return nullptr;
    return &(*level.node)[level.key];
  }
  bool count() {
    if (++values_ <= limits::kMaxJsonValues) return true;
    too_many_ = true;
    return false;
  }
  bool value(json&& v) {
    if (skipped_ > 0) return true;
    if (open_.empty() || !open_.back().node->is_object() || open_.back().key_kept) {
      if (!count()) return false;
    }
    if (json* at = slot()) *at = std::move(v);
    return true;
  }
  bool open(json&& container) {
    if (open_.size() + skipped_ >= limits::kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    if (skipped_ > 0) return ++skipped_, true;
    if (!open_.empty() && open_.back().node->is_object() && !open_.back().key_kept) return skipped_ = 1, true;
    if (!count()) return false;
    json* at = slot();
    *at = std::move(container);
    open_.push_back(Level{at, {}, true});
    return true;
  }
  bool close() {
    if (skipped_ > 0) return --skipped_, true;
    open_.pop_back();
    return true;
  }

  const KeepKey& keep_;
  json root_;
  std::vector<Level> open_;
  std::vector<std::string> path_;
  std::size_t skipped_ = 0;  // depth inside a container that is not kept
  std::size_t values_ = 0;
  bool too_deep_ = false;
  bool too_many_ = false;
  std::optional<std::size_t> error_at_;
};

}  // namespace

Result<json> parse_json(std::string_view text, std::string_view where, const KeepKey& keep) {
  FilteredDom dom(keep);
  try {
    json::sax_parse(text.begin(), text.end(), &dom);
  } catch (const json::exception& e) {
    return make_error(std::errc::invalid_argument, "cannot parse {}: {}", where, e.what());
  }
  if (dom.too_deep()) {
    return make_error(std::errc::invalid_argument, "cannot parse {}: arrays and objects nest deeper than {}",
                      where, limits::kMaxJsonDepth);
  }
  if (dom.too_many()) {
    return make_error(std::errc::file_too_large, "cannot parse {}: it holds more than {} values", where,
                      limits::kMaxJsonValues);
  }
  if (dom.error_at()) {
    return make_error(std::errc::invalid_argument, "cannot parse {}: malformed JSON at byte {}", where,
                      *dom.error_at());
  }
  return std::move(dom.root());
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
