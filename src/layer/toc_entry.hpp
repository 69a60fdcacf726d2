// One entry of a lazy-pull TOC as its JSON writes it (before any check), and what the parts of
// the TOC parser share: the two formats, the field table, the names eStargz keeps for itself.
// The format of the JSON is described in toc_json.cpp. Plain values and constants: thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ocifs::layer::toc {

enum class Format { estargz, zstd_chunked };

inline std::string_view format_name(Format f) {
  return f == Format::estargz ? "eStargz TOC" : "zstd:chunked manifest";
}

// Entries eStargz writes for itself, never shown in the tree: the TOC's own tar entry and the
// prefetch landmarks (the end of the files to prefetch; or none to prefetch).
inline constexpr std::string_view kTocName = "stargz.index.json";
inline constexpr std::string_view kPrefetchLandmark = ".prefetch.landmark";
inline constexpr std::string_view kNoPrefetchLandmark = ".no.prefetch.landmark";

// clang-format off
enum class Field : std::uint8_t {
  name, type, size, modtime, link_name, mode, uid, gid, user_name, group_name, access_time, change_time,
  dev_major, dev_minor, xattrs, digest, offset, inner_offset, end_offset, chunk_offset, chunk_size,
  chunk_digest, chunk_type, count
};
// clang-format on
enum class FieldKind : std::uint8_t { string, integer, object };

struct FieldInfo {
  std::string_view key;  // lowercase: keys match case-insensitively
  std::string_view display;
  Field field;
  FieldKind kind;
};

inline constexpr std::array<FieldInfo, static_cast<std::size_t>(Field::count)> kFields = {{
    {"name", "name", Field::name, FieldKind::string},
    {"type", "type", Field::type, FieldKind::string},
    {"size", "size", Field::size, FieldKind::integer},
    {"modtime", "modtime", Field::modtime, FieldKind::string},
    {"linkname", "linkName", Field::link_name, FieldKind::string},
    {"mode", "mode", Field::mode, FieldKind::integer},
    {"uid", "uid", Field::uid, FieldKind::integer},
    {"gid", "gid", Field::gid, FieldKind::integer},
    {"username", "userName", Field::user_name, FieldKind::string},
    {"groupname", "groupName", Field::group_name, FieldKind::string},
    {"accesstime", "accesstime", Field::access_time, FieldKind::string},
    {"changetime", "changetime", Field::change_time, FieldKind::string},
    {"devmajor", "devMajor", Field::dev_major, FieldKind::integer},
    {"devminor", "devMinor", Field::dev_minor, FieldKind::integer},
    {"xattrs", "xattrs", Field::xattrs, FieldKind::object},
    {"digest", "digest", Field::digest, FieldKind::string},
    {"offset", "offset", Field::offset, FieldKind::integer},
    {"inneroffset", "innerOffset", Field::inner_offset, FieldKind::integer},
    {"endoffset", "endOffset", Field::end_offset, FieldKind::integer},
    {"chunkoffset", "chunkOffset", Field::chunk_offset, FieldKind::integer},
    {"chunksize", "chunkSize", Field::chunk_size, FieldKind::integer},
    {"chunkdigest", "chunkDigest", Field::chunk_digest, FieldKind::string},
    {"chunktype", "chunkType", Field::chunk_type, FieldKind::string},
}};

// kFields[i] describes Field i.
inline constexpr bool fields_in_order() {
  for (std::size_t i = 0; i < kFields.size(); ++i) {
    if (static_cast<std::size_t>(kFields[i].field) != i) return false;
  }
  return true;
}
static_assert(fields_in_order());

// `a` equals `lower` (a lowercase key) ignoring ASCII case.
inline bool iequals(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

// The field a key names, matched case-insensitively as Go's encoding/json does; nullptr: unknown.
inline const FieldInfo* find_field(std::string_view key) {
  for (const auto& f : kFields) {
    if (iequals(key, f.key)) return &f;
  }
  return nullptr;
}

inline std::string_view display_name(Field f) { return kFields[static_cast<std::size_t>(f)].display; }

// An entry as written: every known field's value (strings and numbers by Field), unchecked.
struct RawEntry {
  std::array<std::string, static_cast<std::size_t>(Field::count)> strings;
  std::array<std::uint64_t, static_cast<std::size_t>(Field::count)> numbers{};
  std::vector<std::pair<std::string, std::string>> xattrs;  // name, base64 value

  const std::string& str(Field f) const { return strings[static_cast<std::size_t>(f)]; }
  std::uint64_t num(Field f) const { return numbers[static_cast<std::size_t>(f)]; }
  void clear() {
    for (auto& s : strings) s.clear();
    numbers.fill(0);
    xattrs.clear();
  }
};

}  // namespace ocifs::layer::toc
