// Lazy-pull TOCs: eStargz footers, the zstd:chunked position annotation, and the TOC JSON shared
// by eStargz and zstd:chunked (formats in lazy_toc.hpp).
//
// TOC JSON (stargz-snapshotter estargz/types.go JTOC, containers/storage minimal.TOC):
//   {"version": 1, "entries": [ENTRY, ...], ...other keys ignored (tarSplitDigest)}
//   ENTRY fields, all optional unless noted; unknown fields are ignored:
//     name         string   tar path (required); "./" and "/" prefixes are stripped
//     type         string   dir reg symlink hardlink char block fifo chunk (required)
//     size         int      regular file size
//     modtime      string   RFC 3339 (eStargz: whole seconds in UTC; zstd:chunked: Go's
//                           RFC3339Nano with a zone offset)
//     linkName     string   symlink / hard link target
//     mode         int      tar mode (type bits may be present: only 07777 is kept)
//     uid gid      int
//     userName groupName accesstime changetime   ignored
//     devMajor devMinor int  devices only
//     xattrs       object   name -> base64 of the value (Go's []byte and containers/storage
//                           both encode base64)
//     digest       string   "sha256:<hex>" of the whole file
//     offset       int      blob offset of the gzip member / zstd frame of the data (0 = none)
//     innerOffset  int      eStargz: decompressed offset of the data inside that member
//     endOffset    int      zstd:chunked: end of the file's last frame
//     chunkOffset  int      offset of this chunk in the file
//     chunkSize    int      chunk size; 0 = up to the end of the file
//     chunkDigest  string   "sha256:<hex>" of the chunk
//     chunkType    string   "" (data) or "zeros"
//   A regular file of size > 0 is its `reg` entry (the first chunk) followed by one `chunk`
//   entry per further chunk, whose `name` is ignored (the Go reader ignores it too).
// Keys are matched case-insensitively, as Go's encoding/json and containers/storage do; a key
// given twice in one object is an error. Numbers must be integers in [0, 2^63).
//
// The JSON is read with a SAX handler, one entry at a time, so memory is proportional to the
// result rather than to a DOM of the whole document (a DOM costs ~10x the JSON size).
#include "ocifs/layer/lazy_toc.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "ocifs/util/base64.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/text.hpp"

namespace ocifs::layer {

namespace {

// The limits the tar walker applies too (util/limits.hpp).
constexpr std::size_t kMaxPath = limits::kMaxPathBytes;
constexpr std::size_t kMaxXattrName = limits::kMaxXattrNameBytes;
constexpr std::size_t kMaxXattrValue = limits::kMaxXattrValueBytes;
// Per entry; ext4 keeps all of an inode's xattrs in one 4 KiB block, so real files have a few.
constexpr std::size_t kMaxXattrs = 1024;
constexpr std::uint64_t kMaxNumber = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
// Decompressed bytes per compressed byte at most: deflate's maximum is 1032:1 (a 258-byte match
// in 2 bits); zstd's is 32768:1 (a 128 KiB RLE block in 4 bytes). Twice that, to be generous.
constexpr std::uint64_t kGzipRatio = 2048;
constexpr std::uint64_t kZstdRatio = 65536;
// A zstd skippable frame header: magic (4) + LE32 length (4).
constexpr std::uint64_t kSkippableHeader = 8;

constexpr std::string_view kTocName = "stargz.index.json";
constexpr std::string_view kPrefetchLandmark = ".prefetch.landmark";
constexpr std::string_view kNoPrefetchLandmark = ".no.prefetch.landmark";

enum class Format { estargz, zstd_chunked };

std::string_view format_name(Format f) {
  return f == Format::estargz ? "eStargz TOC" : "zstd:chunked manifest";
}

// Names in messages: bounded and escaped (util/text.hpp).
std::string shown(std::string_view s) { return util::shown(s); }

// ---- small parsers ----------------------------------------------------------------------------

bool is_lower_hex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool valid_digest(std::string_view d) {
  constexpr std::string_view kPrefix = "sha256:";
  if (d.size() != kPrefix.size() + 64 || !d.starts_with(kPrefix)) return false;
  return std::all_of(d.begin() + kPrefix.size(), d.end(), is_lower_hex);
}

bool parse_digits(std::string_view s, std::uint32_t& out) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

// RFC 3339: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM), as Go's time.Parse(RFC3339) reads it.
bool parse_rfc3339(std::string_view s, std::int64_t& sec, std::uint32_t& nsec) {
  if (s.size() < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':')
    return false;
  std::uint32_t year, month, day, hour, minute, second;
  if (!parse_digits(s.substr(0, 4), year) || !parse_digits(s.substr(5, 2), month) ||
      !parse_digits(s.substr(8, 2), day) || !parse_digits(s.substr(11, 2), hour) ||
      !parse_digits(s.substr(14, 2), minute) || !parse_digits(s.substr(17, 2), second)) {
    return false;
  }
  static constexpr std::array<unsigned, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  if (month < 1 || month > 12 || day < 1 || day > kDays[month - 1] + (month == 2 && leap ? 1 : 0) ||
      hour > 23 || minute > 59 || second > 59) {
    return false;
  }
  std::size_t i = 19;
  std::uint32_t frac = 0;
  if (s[i] == '.') {
    std::size_t digits = 0;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, ++digits) {
      if (digits < 9) frac = frac * 10 + static_cast<std::uint32_t>(s[i] - '0');
    }
    if (digits == 0) return false;
    for (; digits < 9; ++digits) frac *= 10;
  }
  std::int64_t zone = 0;
  std::string_view rest = s.substr(i);
  if (rest == "Z") {
    zone = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    std::uint32_t zh, zm;
    if (!parse_digits(rest.substr(1, 2), zh) || !parse_digits(rest.substr(4, 2), zm) || zh > 23 || zm > 59)
      return false;
    zone = (rest[0] == '-' ? -1 : 1) * static_cast<std::int64_t>(zh * 3600 + zm * 60);
  } else {
    return false;
  }
  sec = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - zone;
  nsec = frac;
  return true;
}

enum class NameError { none, dotdot, nul, too_long, component_too_long };

// Strips leading "./" and "/", drops empty and "." components and a trailing "/"; "" is the root.
NameError normalise_name(std::string_view raw, std::string& out) {
  out.clear();
  if (raw.size() > kMaxPath) return NameError::too_long;
  if (raw.find('\0') != std::string_view::npos) return NameError::nul;
  std::size_t i = 0;
  while (i <= raw.size()) {
    std::size_t slash = raw.find('/', i);
    if (slash == std::string_view::npos) slash = raw.size();
    std::string_view part = raw.substr(i, slash - i);
    if (part == "..") return NameError::dotdot;
    if (part.size() > limits::kMaxNameBytes) return NameError::component_too_long;
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out += part;
    }
    i = slash + 1;
  }
  return NameError::none;
}

std::string_view name_error_text(NameError e) {
  switch (e) {
    case NameError::dotdot:
      return "has a '..' component";
    case NameError::nul:
      return "contains a NUL byte";
    case NameError::too_long:
      return "is longer than 4096 bytes";
    case NameError::component_too_long:
      return "has a component longer than 255 bytes (NAME_MAX)";
    case NameError::none:
      break;
  }
  return "";
}

// ---- one JSON entry as written ----------------------------------------------------------------

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

constexpr std::array<FieldInfo, static_cast<std::size_t>(Field::count)> kFields = {{
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
constexpr bool fields_in_order() {
  for (std::size_t i = 0; i < kFields.size(); ++i) {
    if (static_cast<std::size_t>(kFields[i].field) != i) return false;
  }
  return true;
}
static_assert(fields_in_order());

bool iequals(std::string_view a, std::string_view lower) {
  if (a.size() != lower.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != lower[i]) return false;
  }
  return true;
}

const FieldInfo* find_field(std::string_view key) {
  for (const auto& f : kFields) {
    if (iequals(key, f.key)) return &f;
  }
  return nullptr;
}

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

// ---- building the Toc from entries, one at a time ---------------------------------------------

class Builder {
 public:
  Builder(Format format, std::uint64_t data_end, std::string_view layer, std::size_t max_entries)
      : format_(format), data_end_(data_end), layer_(layer) {
    // Reserving avoids reallocations for typical TOCs without trusting the input for a size.
    files_.reserve(std::min<std::size_t>(max_entries, 1024));
  }

  Result<void> add(const RawEntry& e, std::size_t index);
  Result<Toc> finish(int version);

  Error fail(std::size_t index, std::string_view name, std::string_view reason) const {
    return make_error(std::errc::io_error, "cannot parse {} of {}: entry {} '{}': {}", format_name(format_),
                      layer_, index, shown(name), reason);
  }
  Error fail_toc(std::string_view reason) const {
    return make_error(std::errc::io_error, "cannot parse {} of {}: {}", format_name(format_), layer_, reason);
  }

 private:
  Result<void> add_chunk(const RawEntry& e, std::size_t index);
  Result<void> close_file();
  std::string chunk_name(std::size_t file, const TocChunk& c) const {
    return fmt::format("chunk at file offset {} of '{}' (entry {})", c.file_offset, shown(files_[file].path),
                       files_[file].toc_index);
  }

  Format format_;
  std::uint64_t data_end_;
  std::string_view layer_;
  std::vector<TocFile> files_;
  std::vector<bool> hidden_;                         // per file: stargz.index.json or a landmark
  std::vector<std::uint64_t> end_offsets_;           // per file: `endOffset`, 0 if none
  bool open_reg_ = false;                            // files_.back() is a regular file taking chunks
  std::uint64_t covered_ = 0;                        // bytes of it covered by chunks so far
  std::unordered_map<std::string, EntryKind> seen_;  // paths so far, for hard link targets
  std::optional<std::uint64_t> prefetch_landmark_;
  bool no_prefetch_landmark_ = false;
};

Result<void> Builder::add(const RawEntry& e, std::size_t index) {
  const std::string& type = e.str(Field::type);
  const std::string& raw_name = e.str(Field::name);
  for (Field f : {Field::digest, Field::chunk_digest}) {
    const std::string& d = e.str(f);
    if (!d.empty() && !valid_digest(d)) {
      return fail(index, raw_name,
                  fmt::format("{} '{}' is not \"sha256:\" and 64 lowercase hex digits",
                              kFields[static_cast<std::size_t>(f)].display, shown(d)));
    }
  }
  if (type == "chunk") {
    if (!open_reg_) return fail(index, raw_name, "a chunk entry that does not follow a non-empty reg entry");
    return add_chunk(e, index);
  }
  OCIFS_TRY(close_file());

  TocFile f;
  f.toc_index = index;
  if (type == "reg") {
    f.kind = EntryKind::regular;
  } else if (type == "dir") {
    f.kind = EntryKind::directory;
  } else if (type == "symlink") {
    f.kind = EntryKind::symlink;
  } else if (type == "hardlink") {
    f.kind = EntryKind::hardlink;
  } else if (type == "char") {
    f.kind = EntryKind::char_device;
  } else if (type == "block") {
    f.kind = EntryKind::block_device;
  } else if (type == "fifo") {
    f.kind = EntryKind::fifo;
  } else if (type.empty()) {
    return fail(index, raw_name, "no type");
  } else {
    return fail(index, raw_name, fmt::format("unknown type '{}'", shown(type)));
  }

  if (auto err = normalise_name(raw_name, f.path); err != NameError::none) {
    return fail(index, raw_name, fmt::format("the name {}", name_error_text(err)));
  }
  if (f.path.empty() && f.kind != EntryKind::directory) {
    return fail(index, raw_name, fmt::format("a {} entry names the root directory", type));
  }
  f.mode = static_cast<std::uint32_t>(e.num(Field::mode) & 07777);
  for (auto [field, out] : {std::pair{Field::uid, &f.uid}, std::pair{Field::gid, &f.gid}}) {
    if (e.num(field) > std::numeric_limits<std::uint32_t>::max()) {
      return fail(index, raw_name,
                  fmt::format("{} {} is out of range", kFields[static_cast<std::size_t>(field)].display,
                              e.num(field)));
    }
    *out = static_cast<std::uint32_t>(e.num(field));
  }
  if (const std::string& t = e.str(Field::modtime);
      !t.empty() && !parse_rfc3339(t, f.mtime_sec, f.mtime_nsec)) {
    return fail(index, raw_name, fmt::format("modtime '{}' is not an RFC 3339 time", shown(t)));
  }

  const std::string& link = e.str(Field::link_name);
  if (f.kind == EntryKind::symlink) {
    if (link.empty()) return fail(index, raw_name, "a symlink without linkName");
    if (link.size() > kMaxPath || link.find('\0') != std::string::npos) {
      return fail(index, raw_name, "the symlink target is longer than 4096 bytes or contains a NUL byte");
    }
    f.link_target = link;
  } else if (f.kind == EntryKind::hardlink) {
    if (link.empty()) return fail(index, raw_name, "a hard link without linkName");
    if (auto err = normalise_name(link, f.link_target); err != NameError::none) {
      return fail(index, raw_name,
                  fmt::format("the hard link target '{}' {}", shown(link), name_error_text(err)));
    }
    auto it = seen_.find(f.link_target);
    if (it == seen_.end()) {
      return fail(index, raw_name,
                  fmt::format("hard link to '{}', which no earlier entry has", shown(f.link_target)));
    }
    if (it->second == EntryKind::directory) {
      return fail(index, raw_name, fmt::format("hard link to the directory '{}'", shown(f.link_target)));
    }
  } else if (f.kind == EntryKind::char_device || f.kind == EntryKind::block_device) {
    for (auto [field, out] :
         {std::pair{Field::dev_major, &f.dev_major}, std::pair{Field::dev_minor, &f.dev_minor}}) {
      if (e.num(field) > std::numeric_limits<std::uint32_t>::max()) {
        return fail(index, raw_name,
                    fmt::format("{} {} is out of range", kFields[static_cast<std::size_t>(field)].display,
                                e.num(field)));
      }
      *out = static_cast<std::uint32_t>(e.num(field));
    }
  }

  f.xattrs.reserve(e.xattrs.size());
  for (const auto& [name, encoded] : e.xattrs) {
    if (name.empty() || name.size() > kMaxXattrName || name.find('\0') != std::string::npos) {
      return fail(index, raw_name, fmt::format("bad xattr name '{}'", shown(name)));
    }
    auto value = util::base64_decode(encoded, util::Base64Padding::required);
    if (!value) return fail(index, raw_name, fmt::format("xattr '{}' is not valid base64", shown(name)));
    if (value->size() > kMaxXattrValue) {
      return fail(
          index, raw_name,
          fmt::format("xattr '{}' has {} bytes (limit {})", shown(name), value->size(), kMaxXattrValue));
    }
    f.xattrs.push_back({name, std::move(*value)});
  }

  bool hidden = f.path == kTocName || f.path == kPrefetchLandmark || f.path == kNoPrefetchLandmark;
  if (f.path == kPrefetchLandmark) {
    if (e.num(Field::offset) > data_end_) {
      return fail(
          index, raw_name,
          fmt::format("offset {} is past the end of the data at {}", e.num(Field::offset), data_end_));
    }
    prefetch_landmark_ = e.num(Field::offset);
  } else if (f.path == kNoPrefetchLandmark) {
    no_prefetch_landmark_ = true;
  }
  if (!hidden) seen_[f.path] = f.kind;

  std::uint64_t end_offset = 0;
  if (f.kind == EntryKind::regular) {
    f.size = e.num(Field::size);
    f.digest = e.str(Field::digest);
    if (f.size > 0) end_offset = e.num(Field::end_offset);
  }
  files_.push_back(std::move(f));
  hidden_.push_back(hidden);
  end_offsets_.push_back(end_offset);
  if (files_.back().kind == EntryKind::regular && files_.back().size > 0) {
    open_reg_ = true;
    covered_ = 0;
    return add_chunk(e, index);
  }
  return util::success();
}

Result<void> Builder::add_chunk(const RawEntry& e, std::size_t index) {
  TocFile& f = files_.back();
  TocChunk c;
  const std::string& type = e.str(Field::chunk_type);
  if (type == "zeros") {
    c.zeros = true;
  } else if (!type.empty()) {
    return fail(index, f.path, fmt::format("unknown chunkType '{}'", shown(type)));
  }
  c.file_offset = e.num(Field::chunk_offset);
  if (c.file_offset != covered_) {
    return fail(
        index, f.path,
        fmt::format("chunk at file offset {} where the chunks so far end at {} (chunks must cover the "
                    "file in order)",
                    c.file_offset, covered_));
  }
  if (covered_ >= f.size) {
    return fail(index, f.path,
                fmt::format("chunk at file offset {} is past the file size {}", covered_, f.size));
  }
  c.size = e.num(Field::chunk_size) != 0 ? e.num(Field::chunk_size) : f.size - covered_;
  if (c.size > f.size - covered_) {
    return fail(
        index, f.path,
        fmt::format("chunk [{}, {}) goes past the file size {}", covered_, covered_ + c.size, f.size));
  }
  c.digest = e.str(Field::chunk_digest);
  c.blob_offset = e.num(Field::offset);
  c.inner_offset = e.num(Field::inner_offset);
  if (c.blob_offset == 0 && !c.zeros) {
    return fail(index, f.path,
                fmt::format("chunk at file offset {} has no offset in the blob", c.file_offset));
  }
  if (c.blob_offset == 0 && c.inner_offset != 0) {
    return fail(index, f.path,
                fmt::format("zeros chunk at file offset {} has an innerOffset but no offset", c.file_offset));
  }
  if (c.blob_offset >= data_end_ && c.blob_offset != 0) {
    return fail(
        index, f.path,
        fmt::format("chunk at file offset {} has blob offset {}, not before the end of the data at {}",
                    c.file_offset, c.blob_offset, data_end_));
  }
  covered_ += c.size;
  f.chunks.push_back(std::move(c));
  return util::success();
}

Result<void> Builder::close_file() {
  if (!open_reg_) return util::success();
  open_reg_ = false;
  TocFile& f = files_.back();
  if (covered_ != f.size) {
    return fail(f.toc_index, f.path,
                fmt::format("the chunks cover only [0, {}) of the {} bytes of the file", covered_, f.size));
  }
  if (f.chunks.size() == 1 && f.chunks[0].digest.empty()) f.chunks[0].digest = f.digest;
  return util::success();
}

Result<Toc> Builder::finish(int version) {
  OCIFS_TRY(close_file());
  const std::uint64_t ratio = format_ == Format::estargz ? kGzipRatio : kZstdRatio;

  // 1. Blob order: chunks in TOC order must not go back in the blob; chunks sharing a gzip
  //    member (same offset) must follow each other in it (innerOffset).
  {
    const TocChunk* prev = nullptr;
    std::size_t prev_file = 0;
    for (std::size_t i = 0; i < files_.size(); ++i) {
      for (const TocChunk& c : files_[i].chunks) {
        if (c.blob_offset == 0) continue;
        if (prev && c.blob_offset < prev->blob_offset) {
          return fail_toc(
              fmt::format("{} starts at blob offset {}, before the previous {} at {}: chunks out of "
                          "order in the blob",
                          chunk_name(i, c), c.blob_offset, chunk_name(prev_file, *prev), prev->blob_offset));
        }
        if (prev && c.blob_offset == prev->blob_offset && c.inner_offset < prev->inner_offset + prev->size) {
          return fail_toc(
              fmt::format("{} at blob offset {} innerOffset {} overlaps the previous {} "
                          "(innerOffset {}, {} bytes)",
                          chunk_name(i, c), c.blob_offset, c.inner_offset, chunk_name(prev_file, *prev),
                          prev->inner_offset, prev->size));
        }
        prev = &c;
        prev_file = i;
      }
    }
  }

  // 2. Ends, from the last chunk back: a chunk's data ends where the next chunk at another offset
  //    begins (its member/frames go on with tar headers up to there), or at the data end; an
  //    `endOffset` gives the end of a file's last chunk exactly.
  {
    std::uint64_t last = data_end_, following = data_end_;
    for (std::size_t i = files_.size(); i-- > 0;) {
      auto& chunks = files_[i].chunks;
      for (std::size_t j = chunks.size(); j-- > 0;) {
        TocChunk& c = chunks[j];
        if (c.blob_offset == 0) continue;
        if (c.blob_offset != last) {
          following = last;
          last = c.blob_offset;
        }
        c.blob_end = following;
        std::uint64_t explicit_end = end_offsets_[i];
        if (j + 1 == chunks.size() && explicit_end != 0) {
          if (explicit_end <= c.blob_offset || explicit_end > following) {
            return fail_toc(
                fmt::format("{}: endOffset {} is not in ({}, {}] (after its offset, not past the "
                            "next chunk or the end of the data)",
                            chunk_name(i, c), explicit_end, c.blob_offset, following));
          }
          c.blob_end = explicit_end;
        }
      }
    }
  }

  // 3. Sizes: what a range can inflate to is bounded by the format's maximum ratio.
  for (std::size_t i = 0; i < files_.size(); ++i) {
    for (const TocChunk& c : files_[i].chunks) {
      if (c.zeros || c.blob_offset == 0) continue;
      std::uint64_t need = c.inner_offset + c.size;  // both < 2^63: no overflow
      std::uint64_t compressed = c.blob_end - c.blob_offset;
      if ((need - 1) / ratio + 1 > compressed) {
        return fail_toc(
            fmt::format("{}: {} bytes (innerOffset {}) cannot come out of {} compressed bytes at "
                        "blob offset {}",
                        chunk_name(i, c), c.size, c.inner_offset, compressed, c.blob_offset));
      }
    }
  }

  Toc toc;
  toc.version = version;
  toc.data_end = data_end_;
  toc.prefetch_landmark_offset = prefetch_landmark_;
  toc.no_prefetch_landmark = no_prefetch_landmark_;
  std::size_t visible = static_cast<std::size_t>(std::count(hidden_.begin(), hidden_.end(), false));
  toc.entries.reserve(visible);
  for (std::size_t i = 0; i < files_.size(); ++i) {
    if (!hidden_[i]) toc.entries.push_back(std::move(files_[i]));
  }
  return toc;
}

// ---- the SAX handler --------------------------------------------------------------------------

using json = nlohmann::json;

class TocHandler final : public nlohmann::json_sax<json> {
 public:
  TocHandler(Builder& builder, Format format, std::string_view layer, std::size_t max_entries)
      : builder_(builder), format_(format), layer_(layer), max_entries_(max_entries) {}

  bool null() override { return scalar(Scalar::null, 0, nullptr); }
  bool boolean(bool) override { return scalar(Scalar::other, 0, nullptr); }
  bool number_integer(number_integer_t v) override {
    return v < 0 ? scalar(Scalar::negative, 0, nullptr)
                 : scalar(Scalar::integer, static_cast<std::uint64_t>(v), nullptr);
  }
  bool number_unsigned(number_unsigned_t v) override {
    return v > kMaxNumber ? scalar(Scalar::too_big, 0, nullptr) : scalar(Scalar::integer, v, nullptr);
  }
  bool number_float(number_float_t, const string_t&) override { return scalar(Scalar::fraction, 0, nullptr); }
  bool string(string_t& s) override { return scalar(Scalar::string, 0, &s); }
  bool binary(binary_t&) override { return scalar(Scalar::other, 0, nullptr); }

  bool start_object(std::size_t) override {
    if (skip_depth_ > 0) {
      if (++skip_depth_ > limits::kMaxJsonDepth) {
        return fail_toc(fmt::format("arrays and objects nest deeper than {}", limits::kMaxJsonDepth));
      }
      return true;
    }
    switch (state_) {
      case State::top:
        state_ = State::root;
        return true;
      case State::root_value:
        if (root_field_ == RootField::unknown) return start_skip(State::root);
        return fail_toc(root_field_ == RootField::version ? "field \"version\" is not an integer"
                                                          : "field \"entries\" is not an array");
      case State::entries:
        if (count_ >= max_entries_) {
          error_ = make_error(std::errc::file_too_large, "cannot parse {} of {}: more than {} entries",
                              format_name(format_), layer_, max_entries_);
          return false;
        }
        entry_.clear();
        seen_.fill(false);
        state_ = State::entry;
        return true;
      case State::entry_value:
        if (!field_) return start_skip(State::entry);
        if (field_->kind == FieldKind::object) {
          state_ = State::xattrs;
          return true;
        }
        return wrong_type();
      case State::xattr_value:
        return fail_entry(fmt::format("xattr '{}' is not a string", shown(xattr_name_)));
      default:
        return fail_structure();
    }
  }

  bool end_object() override {
    if (skip_depth_ > 0) return end_skip();
    switch (state_) {
      case State::root:
        state_ = State::done;
        return true;
      case State::entry: {
        state_ = State::entries;
        auto added = builder_.add(entry_, count_++);
        if (!added) {
          error_ = std::move(added).error();
          return false;
        }
        return true;
      }
      case State::xattrs:
        state_ = State::entry;
        return true;
      default:
        return fail_structure();
    }
  }

  bool start_array(std::size_t) override {
    if (skip_depth_ > 0) {
      if (++skip_depth_ > limits::kMaxJsonDepth) {
        return fail_toc(fmt::format("arrays and objects nest deeper than {}", limits::kMaxJsonDepth));
      }
      return true;
    }
    switch (state_) {
      case State::top:
        return fail_toc("the document is not a JSON object");
      case State::root_value:
        if (root_field_ == RootField::entries) {
          state_ = State::entries;
          return true;
        }
        if (root_field_ == RootField::unknown) return start_skip(State::root);
        return fail_toc("field \"version\" is not an integer");
      case State::entry_value:
        if (!field_) return start_skip(State::entry);
        return wrong_type();
      case State::entries:
        return fail_toc(fmt::format("entry {} is not an object", count_));
      case State::xattr_value:
        return fail_entry(fmt::format("xattr '{}' is not a string", shown(xattr_name_)));
      default:
        return fail_structure();
    }
  }

  bool end_array() override {
    if (skip_depth_ > 0) return end_skip();
    if (state_ == State::entries) {
      state_ = State::root;
      return true;
    }
    return fail_structure();
  }

  bool key(string_t& k) override {
    if (skip_depth_ > 0) return true;
    switch (state_) {
      case State::root: {
        root_field_ = iequals(k, "version")   ? RootField::version
                      : iequals(k, "entries") ? RootField::entries
                                              : RootField::unknown;
        if (root_field_ != RootField::unknown) {
          auto& seen = root_field_ == RootField::version ? seen_version_ : seen_entries_;
          if (seen) return fail_toc(fmt::format("field \"{}\" appears twice", shown(k)));
          seen = true;
        }
        state_ = State::root_value;
        return true;
      }
      case State::entry: {
        field_ = find_field(k);
        if (field_) {
          auto& seen = seen_[static_cast<std::size_t>(field_->field)];
          if (seen) return fail_entry(fmt::format("field \"{}\" appears twice", field_->display));
          seen = true;
        }
        state_ = State::entry_value;
        return true;
      }
      case State::xattrs:
        if (entry_.xattrs.size() >= kMaxXattrs) {
          return fail_entry(fmt::format("more than {} xattrs", kMaxXattrs));
        }
        for (const auto& [name, value] : entry_.xattrs) {
          if (name == k) return fail_entry(fmt::format("xattr '{}' appears twice", shown(k)));
        }
        xattr_name_ = k;
        state_ = State::xattr_value;
        return true;
      default:
        return fail_structure();
    }
  }

  bool parse_error(std::size_t position, const std::string&, const json::exception&) override {
    if (!error_) {
      error_ = make_error(std::errc::io_error, "cannot parse {} of {}: malformed JSON at byte {}",
                          format_name(format_), layer_, position);
    }
    return false;
  }

  bool complete() const { return state_ == State::done; }
  bool has_version() const { return seen_version_; }
  std::int64_t version() const { return version_; }
  std::optional<Error>& error() { return error_; }

 private:
  enum class State { top, root, root_value, entries, entry, entry_value, xattrs, xattr_value, done };
  enum class RootField { version, entries, unknown };
  enum class Scalar { null, integer, negative, too_big, fraction, string, other };

  bool scalar(Scalar kind, std::uint64_t number, string_t* s) {
    if (skip_depth_ > 0) return true;
    switch (state_) {
      case State::top:
        return fail_toc("the document is not a JSON object");
      case State::root_value:
        state_ = State::root;
        if (root_field_ == RootField::unknown) return true;
        if (kind == Scalar::null) return true;  // "entries": null is an empty list (as in Go)
        if (root_field_ == RootField::version) {
          if (kind != Scalar::integer) return fail_toc("field \"version\" is not an integer");
          version_ = static_cast<std::int64_t>(number);
          return true;
        }
        return fail_toc("field \"entries\" is not an array");
      case State::entries:
        return fail_toc(fmt::format("entry {} is not an object", count_));
      case State::entry_value: {
        state_ = State::entry;
        if (!field_ || kind == Scalar::null) return true;  // unknown field; null = absent
        auto i = static_cast<std::size_t>(field_->field);
        if (field_->kind == FieldKind::string && kind == Scalar::string) {
          entry_.strings[i] = std::move(*s);
          return true;
        }
        if (field_->kind == FieldKind::integer && kind == Scalar::integer) {
          entry_.numbers[i] = number;
          return true;
        }
        if (field_->kind == FieldKind::integer && (kind == Scalar::negative || kind == Scalar::too_big)) {
          return fail_entry(fmt::format("field \"{}\" is out of range [0, 2^63)", field_->display));
        }
        return wrong_type();
      }
      case State::xattr_value:
        state_ = State::xattrs;
        if (kind == Scalar::null) {
          entry_.xattrs.emplace_back(std::move(xattr_name_), std::string());
          return true;
        }
        if (kind != Scalar::string)
          return fail_entry(fmt::format("xattr '{}' is not a string", shown(xattr_name_)));
        entry_.xattrs.emplace_back(std::move(xattr_name_), std::move(*s));
        return true;
      default:
        return fail_structure();
    }
  }

  bool start_skip(State after) {
    skip_depth_ = 1;
    after_skip_ = after;
    return true;
  }
  bool end_skip() {
    if (--skip_depth_ == 0) state_ = after_skip_;
    return true;
  }
  bool wrong_type() {
    static constexpr std::array<std::string_view, 3> kKinds = {"a string", "an integer", "an object"};
    return fail_entry(fmt::format("field \"{}\" is not {}", field_->display,
                                  kKinds[static_cast<std::size_t>(field_->kind)]));
  }
  bool fail_toc(std::string_view reason) {
    error_ = builder_.fail_toc(reason);
    return false;
  }
  bool fail_entry(std::string_view reason) {
    error_ = builder_.fail(count_, entry_.str(Field::name), reason);
    return false;
  }
  bool fail_structure() { return fail_toc("unexpected JSON structure"); }

  Builder& builder_;
  Format format_;
  std::string_view layer_;
  std::size_t max_entries_;
  State state_ = State::top;
  State after_skip_ = State::top;
  std::size_t skip_depth_ = 0;
  RootField root_field_ = RootField::unknown;
  bool seen_version_ = false, seen_entries_ = false;
  std::int64_t version_ = 0;
  const FieldInfo* field_ = nullptr;
  std::array<bool, static_cast<std::size_t>(Field::count)> seen_{};
  std::string xattr_name_;
  RawEntry entry_;
  std::size_t count_ = 0;
  std::optional<Error> error_;
};

Result<Toc> parse_toc(Format format, std::string_view text, std::uint64_t data_end, std::string_view layer,
                      const TocLimits& limits) {
  if (text.size() > limits.max_json_size) {
    return make_error(std::errc::file_too_large, "cannot parse {} of {}: {} bytes of JSON (limit {})",
                      format_name(format), layer, text.size(), limits.max_json_size);
  }
  Builder builder(format, data_end, layer, limits.max_entries);
  TocHandler handler(builder, format, layer, limits.max_entries);
  bool ok = false;
  try {
    ok = json::sax_parse(text.begin(), text.end(), &handler);
  } catch (const json::exception& e) {
    return make_error(std::errc::io_error, "cannot parse {} of {}: {}", format_name(format), layer, e.what());
  }
  if (handler.error()) return std::move(*handler.error());
  if (!ok || !handler.complete()) return builder.fail_toc("incomplete JSON");
  if (!handler.has_version()) return builder.fail_toc("no \"version\"");
  if (handler.version() != 1)
    return builder.fail_toc(fmt::format("version {} (only 1 is known)", handler.version()));
  return builder.finish(1);
}

// ---- footers ----------------------------------------------------------------------------------

std::uint8_t byte_at(std::span<const std::byte> b, std::size_t i) { return static_cast<std::uint8_t>(b[i]); }

std::string_view text_at(std::span<const std::byte> b, std::size_t offset, std::size_t size) {
  return std::string_view(reinterpret_cast<const char*>(b.data()) + offset, size);
}

// The gzip header up to XLEN: magic, deflate, FLG with FEXTRA and no FNAME/FCOMMENT/FHCRC or
// reserved bits (they would move the Extra field), then XLEN.
std::optional<std::string> check_gzip_header(std::span<const std::byte> f, std::uint16_t xlen) {
  if (byte_at(f, 0) != 0x1f || byte_at(f, 1) != 0x8b || byte_at(f, 2) != 8) return "no gzip header";
  std::uint8_t flags = byte_at(f, 3);
  if ((flags & 0x04) == 0 || (flags & 0xfe & ~0x04) != 0) {
    return fmt::format("gzip flags 0x{:02x} are not FEXTRA alone", flags);
  }
  std::uint16_t got = static_cast<std::uint16_t>(byte_at(f, 10) | (byte_at(f, 11) << 8));
  if (got != xlen) return fmt::format("gzip Extra field of {} bytes, not {}", got, xlen);
  return std::nullopt;
}

// "%016x" then "STARGZ" at `at`.
std::optional<std::string> read_offset(std::span<const std::byte> f, std::size_t at, std::uint64_t& out) {
  if (text_at(f, at + 16, 6) != "STARGZ") return "no STARGZ magic";
  out = 0;
  for (std::size_t i = 0; i < 16; ++i) {
    char c = static_cast<char>(byte_at(f, at + i));
    int v = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (v < 0) {
      // Shown escaped: the bytes are the blob's, not text.
      return fmt::format("TOC offset {:?} is not 16 hex digits", text_at(f, at, 16));
    }
    out = out << 4 | static_cast<std::uint64_t>(v);
  }
  return std::nullopt;
}

std::optional<std::string> parse_footer_51(std::span<const std::byte> f, std::uint64_t& offset) {
  if (auto e = check_gzip_header(f, 26)) return e;
  if (byte_at(f, 12) != 'S' || byte_at(f, 13) != 'G') return "Extra subfield is not 'SG'";
  if (byte_at(f, 14) != 22 || byte_at(f, 15) != 0) return "'SG' subfield is not 22 bytes";
  return read_offset(f, 16, offset);
}

std::optional<std::string> parse_footer_47(std::span<const std::byte> f, std::uint64_t& offset) {
  if (auto e = check_gzip_header(f, 22)) return e;
  return read_offset(f, 12, offset);
}

bool is_external_toc_footer(std::span<const std::byte> f) {
  constexpr std::string_view kMagic = "STARGZEXTERNALTOC";
  return !check_gzip_header(f, 21) && text_at(f, 16, kMagic.size()) == kMagic;
}

}  // namespace

Result<EstargzFooter> decode_estargz_footer(std::span<const std::byte> tail, std::uint64_t blob_size) {
  auto bad = [&](std::string_view reason) {
    return make_error(std::errc::io_error, "cannot read the eStargz footer of a {}-byte blob: {}", blob_size,
                      reason);
  };
  if (tail.size() > blob_size) {
    return make_error(std::errc::invalid_argument,
                      "cannot read the eStargz footer: {} bytes of tail but the blob has {}", tail.size(),
                      blob_size);
  }
  if (tail.size() < kLegacyStargzFooterSize) {
    return bad(fmt::format("{} bytes are too few for a footer", tail.size()));
  }
  EstargzFooter footer;
  std::optional<std::string> why51;
  if (tail.size() >= kEstargzFooterSize) {
    why51 = parse_footer_51(tail.last(kEstargzFooterSize), footer.toc_offset);
    if (!why51) footer.size = kEstargzFooterSize;
  }
  if (footer.size == 0) {
    auto why47 = parse_footer_47(tail.last(kLegacyStargzFooterSize), footer.toc_offset);
    if (why47) {
      if (is_external_toc_footer(tail.last(46)))
        return bad("its TOC is kept in a separate image (not supported)");
      return bad(why51 ? fmt::format("{} (legacy 47-byte footer: {})", *why51, *why47) : *why47);
    }
    footer.size = kLegacyStargzFooterSize;
    footer.legacy = true;
  }
  if (footer.toc_offset >= blob_size - footer.size) {
    return bad(fmt::format("TOC offset {} is not before the {}-byte footer at {}", footer.toc_offset,
                           footer.size, blob_size - footer.size));
  }
  return footer;
}

bool has_stargz_footer(const io::BlobSource& blob) {
  const std::uint64_t size = blob.size();
  if (size < kLegacyStargzFooterSize) return false;
  std::array<std::byte, kEstargzFooterSize> tail{};
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, tail.size()));
  if (!blob.read_exact(size - n, std::span(tail).first(n))) return false;
  return decode_estargz_footer(std::span(tail).first(n), size).ok();
}

bool is_stargz_metadata(std::string_view path) {
  return path == kTocName || path == kPrefetchLandmark || path == kNoPrefetchLandmark;
}

Result<std::uint64_t> parse_estargz_footer(std::span<const std::byte> tail, std::uint64_t blob_size) {
  OCIFS_ASSIGN(EstargzFooter footer, decode_estargz_footer(tail, blob_size));
  return footer.toc_offset;
}

Result<ZstdChunkedPosition> parse_zstd_chunked_position(std::string_view annotation, std::uint64_t blob_size,
                                                        const TocLimits& limits) {
  auto bad = [&](std::string_view reason) {
    return make_error(std::errc::io_error, "cannot parse the zstd:chunked manifest position '{}': {}",
                      shown(annotation), reason);
  };
  std::array<std::uint64_t, 4> v{};
  std::string_view rest = annotation;
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::size_t colon = rest.find(':');
    if ((i + 1 < v.size()) == (colon == std::string_view::npos))
      return bad("not four numbers separated by ':'");
    std::string_view part = rest.substr(0, colon);
    if (part.empty() || !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return bad("not four numbers separated by ':'");
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v[i]);
    if (ec != std::errc() || ptr != part.data() + part.size()) return bad("a number is out of range");
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
  }
  ZstdChunkedPosition pos{v[0], v[1], v[2]};
  if (v[3] != 1) return bad(fmt::format("manifest type {} (only 1 is known)", v[3]));
  if (pos.offset < kSkippableHeader) return bad("the offset leaves no room for the skippable frame header");
  if (pos.length == 0 || pos.offset > blob_size || pos.length > blob_size - pos.offset) {
    return bad(fmt::format("the manifest is not inside the {}-byte blob", blob_size));
  }
  if (pos.length > limits.max_json_size || pos.uncompressed_length > limits.max_json_size) {
    return make_error(
        std::errc::file_too_large,
        "cannot parse the zstd:chunked manifest position '{}': the manifest is larger than {} bytes",
        shown(annotation), limits.max_json_size);
  }
  return pos;
}

Result<Toc> parse_estargz_toc(std::string_view toc_json, std::uint64_t toc_offset, std::uint64_t blob_size,
                              std::string_view layer_name, const TocLimits& limits) {
  if (toc_offset >= blob_size) {
    return make_error(std::errc::io_error,
                      "cannot parse eStargz TOC of {}: TOC offset {} is past the {}-byte blob", layer_name,
                      toc_offset, blob_size);
  }
  return parse_toc(Format::estargz, toc_json, toc_offset, layer_name, limits);
}

Result<Toc> parse_zstd_chunked_manifest(std::string_view json, std::uint64_t manifest_offset,
                                        std::uint64_t blob_size, std::string_view layer_name,
                                        const TocLimits& limits) {
  if (manifest_offset < kSkippableHeader || manifest_offset > blob_size) {
    return make_error(
        std::errc::io_error,
        "cannot parse zstd:chunked manifest of {}: manifest offset {} is not inside the {}-byte blob "
        "after its frame header",
        layer_name, manifest_offset, blob_size);
  }
  return parse_toc(Format::zstd_chunked, json, manifest_offset - kSkippableHeader, layer_name, limits);
}

}  // namespace ocifs::layer
