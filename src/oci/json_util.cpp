#include "json_util.hpp"

#include "ocifs/util/limits.hpp"

namespace ocifs::oci::detail {

namespace {

// The parser callback behind parse_json: decides per event what is kept, tracking per open
// container whether it is kept, whether it is an object and the key being read in it. nlohmann
// does not call back at the end of a container it discards, so the stack is set by the depth
// each event comes with (a container at depth d has d containers around it).
class Filter {
 public:
  explicit Filter(const KeepKey& keep) : keep_(keep) {}

  bool operator()(int depth, json::parse_event_t event, json& parsed) {
    const auto d = static_cast<std::size_t>(depth);
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start: {
        truncate(d);
        bool kept = value_kept();
        if (d >= limits::kMaxJsonDepth) {
          too_deep_ = true;
          kept = false;
        }
        if (kept) kept = count();
        open_.push_back({kept, event == json::parse_event_t::object_start, {}, true});
        return kept;
      }
      case json::parse_event_t::key: {
        truncate(d);
        if (open_.empty() || !open_.back().kept) return false;
        Open& in = open_.back();
        in.key = parsed.get_ref<const std::string&>();
        path_.clear();
        for (std::size_t i = 0; i + 1 < open_.size(); ++i) {
          if (open_[i].object) path_.push_back(open_[i].key);
        }
        in.key_kept = !keep_ || keep_(path_, in.key);
        return in.key_kept;
      }
      case json::parse_event_t::value:
        truncate(d);
        return value_kept() && count();
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end: {
        truncate(d + 1);
        const bool kept = !open_.empty() && open_.back().kept;
        if (!open_.empty()) open_.pop_back();
        return kept;
      }
    }
    return true;
  }

  bool too_deep() const { return too_deep_; }
  bool too_many() const { return too_many_; }

 private:
  struct Open {
    bool kept;
    bool object;
    std::string key;  // objects: the key whose value is being read
    bool key_kept;
  };
  void truncate(std::size_t n) {
    if (open_.size() > n) open_.resize(n);
  }
  // A value in an object goes with its key's decision; in an array or at the top, its parent's.
  bool value_kept() const {
    if (open_.empty()) return true;
    const Open& parent = open_.back();
    return parent.kept && (!parent.object || parent.key_kept);
  }
  bool count() {
    if (++values_ <= limits::kMaxJsonValues) return true;
    too_many_ = true;
    return false;
  }

  const KeepKey& keep_;
  std::vector<Open> open_;
  std::vector<std::string> path_;
  std::size_t values_ = 0;
  bool too_deep_ = false;
  bool too_many_ = false;
};

}  // namespace

Result<json> parse_json(std::string_view text, std::string_view where, const KeepKey& keep) {
  Filter filter(keep);
  json doc;
  try {
    doc = json::parse(text.begin(), text.end(), std::ref(filter));
  } catch (const json::parse_error& e) {
    return make_error(std::errc::invalid_argument, "cannot parse {}: malformed JSON at byte {}", where,
                      e.byte);
  } catch (const json::exception& e) {
    return make_error(std::errc::invalid_argument, "cannot parse {}: {}", where, e.what());
  }
  if (filter.too_deep()) {
    return make_error(std::errc::invalid_argument, "cannot parse {}: arrays and objects nest deeper than {}",
                      where, limits::kMaxJsonDepth);
  }
  if (filter.too_many()) {
    return make_error(std::errc::file_too_large, "cannot parse {}: it holds more than {} values", where,
                      limits::kMaxJsonValues);
  }
  return doc;
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
    if (required) return bad_field(where, field_path(path, key), "is missing");
    return std::string();
  }
  if (!it->is_string()) return bad_field(where, field_path(path, key), "is not a string");
  return it->get<std::string>();
}

Result<std::int64_t> get_int(const json& obj, const char* key, std::string_view where, std::string_view path,
                             bool required, std::int64_t fallback) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return bad_field(where, field_path(path, key), "is missing");
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
