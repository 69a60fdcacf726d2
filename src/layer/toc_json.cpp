// The TOC JSON shared by eStargz and zstd:chunked (the blob formats are in lazy_toc.hpp).
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
#include "toc_json.hpp"

#include <array>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>

#include "ocifs/util/limits.hpp"
#include "ocifs/util/text.hpp"
#include "toc_builder.hpp"

namespace ocifs::layer::toc {

namespace {

using util::shown;

// xattrs per entry; ext4 keeps all of an inode's xattrs in one 4 KiB block, so real files have a few.
constexpr std::size_t kMaxXattrs = 1024;
// Numbers are integers in [0, 2^63): Go writes int64, and offsets and sizes are used as such.
constexpr std::uint64_t kMaxNumber = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

using json = nlohmann::json;

class TocHandler final : public nlohmann::json_sax<json> {
 public:
  TocHandler(TocBuilder& builder, Format format, std::string_view layer, std::size_t max_entries)
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
    if (skip_depth_ > 0) return nest_skipped();
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
        return xattr_not_string();
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
    if (skip_depth_ > 0) return nest_skipped();
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
        return xattr_not_string();
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
        if (kind != Scalar::string) return xattr_not_string();
        entry_.xattrs.emplace_back(std::move(xattr_name_), std::move(*s));
        return true;
      default:
        return fail_structure();
    }
  }

  // One more level inside a value being skipped (an unknown field's), within the nesting limit.
  bool nest_skipped() {
    if (++skip_depth_ > limits::kMaxJsonDepth) {
      return fail_toc(fmt::format("arrays and objects nest deeper than {}", limits::kMaxJsonDepth));
    }
    return true;
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
  bool xattr_not_string() {
    return fail_entry(fmt::format("xattr '{}' is not a string", shown(xattr_name_)));
  }

  TocBuilder& builder_;
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

}  // namespace

Result<Toc> parse_toc(Format format, std::string_view text, std::uint64_t data_end, std::string_view layer,
                      const TocLimits& limits) {
  if (text.size() > limits.max_json_size) {
    return make_error(std::errc::file_too_large, "cannot parse {} of {}: {} bytes of JSON (limit {})",
                      format_name(format), layer, text.size(), limits.max_json_size);
  }
  TocBuilder builder(format, data_end, layer, limits.max_entries);
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

}  // namespace ocifs::layer::toc
