// TarWalker: tar header parsing. The header block (512 bytes; all numbers are octal text unless
// the first byte has bit 7 set, then big-endian base-256, 0xff first = negative):
//
//   offset size  field            notes
//   0      100   name             NUL-terminated unless full
//   100    8     mode             07777 bits kept
//   108    8     uid
//   116    8     gid
//   124    12    size             bytes of data following the header, padded to 512
//   136    12    mtime            seconds since the epoch (base-256 may be negative)
//   148    8     chksum           sum of the 512 bytes with this field as 8 spaces (signed or unsigned)
//   156    1     typeflag         0 \0 7 regular, 1 hard link, 2 symlink, 3 char, 4 block, 5 dir, 6 fifo,
//                                 x PAX, g PAX global, L GNU long name, K GNU long link,
//                                 X Solaris extended header (PAX records, applied as x),
//                                 S GNU old sparse, D GNU dumpdir, V volume label
//   157    100   linkname
//   257    6     magic            "ustar\0" (POSIX) or "ustar " (GNU, with version " \0")
//   263    2     version
//   265    32    uname            ignored (numeric ids win)
//   297    32    gname            ignored
//   329    8     devmajor
//   337    8     devminor
//   345    155   prefix           POSIX only: path = prefix "/" name
//   GNU instead: 345 atime[12], 357 ctime[12], 369 offset[12], 381 longnames[4], 385 unused[1],
//   386 sparse[4] x {offset[12], numbytes[12]}, 482 isextended[1], 483 realsize[12]
//   GNU sparse extension block: 21 x {offset[12], numbytes[12]}, 504 isextended[1]
//
// PAX mtime "-1.5" is -1.5 s (POSIX, GNU tar, Go archive/tar) = sec -2, nsec 500000000; libarchive
// reads and writes it as -1 s + 0.5 s, which differs only for negative fractional times.
// PAX records: "LEN KEY=VALUE\n" with LEN the decimal length of the whole record, so values may
// hold NUL and newline bytes. GNU sparse 1.0 stores its map at the start of the data as
// decimal lines "N\n" then N x "OFFSET\nLENGTH\n", padded with NULs to a 512-byte boundary.
#include "ocifs/layer/tar_walker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <limits>
#include <unordered_map>

#include "ocifs/util/base64.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/path.hpp"
#include "ocifs/util/text.hpp"

namespace ocifs::layer {

namespace {

constexpr std::uint64_t kBlock = 512;  // the tar record: every header and data run is padded to it
// The limits (util/limits.hpp): one payload, all extension headers of one entry (a stream of 'x'
// headers must not pile up), extents per sparse file.
constexpr std::uint64_t kMaxPayload = limits::kMaxTarExtensionBytes;
constexpr std::uint64_t kMaxExtensions = limits::kMaxTarExtensionsPerEntry;
constexpr std::uint64_t kMaxSparseExtents = limits::kMaxSparseExtentsPerFile;

std::uint64_t round_up(std::uint64_t n) { return (n + kBlock - 1) / kBlock * kBlock; }

std::string_view field(const std::byte* block, std::size_t offset, std::size_t size) {
  const char* p = reinterpret_cast<const char*>(block) + offset;
  const void* nul = std::memchr(p, 0, size);
  return std::string_view(p, nul ? static_cast<const char*>(nul) - p : size);
}

// Parses an octal or base-256 numeric field. `allow_negative` only for mtime.
std::optional<std::int64_t> parse_number(const std::byte* block, std::size_t offset, std::size_t size,
                                         bool allow_negative) {
  const auto* p = reinterpret_cast<const unsigned char*>(block) + offset;
  if (p[0] & 0x80) {
    bool negative = p[0] == 0xff;
    if (!negative && p[0] != 0x80) {
      // Only GNU's 0x80 marker is in use; other bits in the first byte would be value bits of a
      // number too large for 64 bits anyway.
      return std::nullopt;
    }
    if (negative && !allow_negative) return std::nullopt;
    std::uint64_t value = 0;
    // Bytes before the last 8 must be pure sign extension.
    std::size_t start = size > 8 ? size - 8 : 1;
    for (std::size_t i = 1; i < start; ++i) {
      if (p[i] != (negative ? 0xff : 0x00)) return std::nullopt;
    }
    if (size <= 8) value = negative ? ~std::uint64_t{0} : 0;
    for (std::size_t i = start; i < size; ++i) value = (value << 8) | p[i];
    bool sign_bit = value >> 63;
    if (sign_bit != negative) return std::nullopt;
    return static_cast<std::int64_t>(value);
  }
  std::size_t i = 0;
  while (i < size && (p[i] == ' ' || p[i] == 0)) {
    if (p[i] == 0) {
      // An all-NUL field is zero; a NUL after leading spaces ends it too.
      return 0;
    }
    ++i;
  }
  std::uint64_t value = 0;
  for (; i < size && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (value > (std::uint64_t{std::numeric_limits<std::int64_t>::max()} >> 3)) return std::nullopt;
    value = value * 8 + (p[i] - '0');
  }
  for (; i < size; ++i) {
    if (p[i] != ' ' && p[i] != 0) return std::nullopt;
  }
  return static_cast<std::int64_t>(value);
}

template <class T>
bool parse_decimal(std::string_view s, T& out) {
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

// PAX time: [-]SECONDS[.FRACTION]; a negative time is normalised to nsec >= 0.
bool parse_pax_time(std::string_view s, std::int64_t& sec, std::uint32_t& nsec) {
  bool negative = !s.empty() && s[0] == '-';
  if (negative) s.remove_prefix(1);
  auto dot = s.find('.');
  std::string_view whole = s.substr(0, dot);
  std::string_view frac = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
  std::uint64_t w = 0;
  if (!parse_decimal(whole, w) || w > std::uint64_t{std::numeric_limits<std::int64_t>::max()} - 1)
    return false;
  std::uint32_t f = 0;
  for (std::size_t i = 0; i < 9; ++i) {
    char c = i < frac.size() ? frac[i] : '0';
    if (c < '0' || c > '9') return false;
    f = f * 10 + static_cast<std::uint32_t>(c - '0');
  }
  for (std::size_t i = 9; i < frac.size(); ++i) {
    if (frac[i] < '0' || frac[i] > '9') return false;
  }
  if (!negative) {
    sec = static_cast<std::int64_t>(w);
    nsec = f;
  } else if (f == 0) {
    sec = -static_cast<std::int64_t>(w);
    nsec = 0;
  } else {
    sec = -static_cast<std::int64_t>(w) - 1;
    nsec = 1'000'000'000 - f;
  }
  return true;
}

// libarchive URL-encodes xattr names in LIBARCHIVE.xattr.* keys ('%', '=' and non-printables).
std::optional<std::string> url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// What went wrong in the stream, for a message that already begins "cannot read NAME: ": when
// the stream is the tar file itself (an archive's member list) its own error begins the same way.
std::string reason_of(const Error& error, std::string_view name) {
  std::string_view message = error.message;
  if (auto prefix = fmt::format("cannot read {}: ", name); message.starts_with(prefix)) {
    message.remove_prefix(prefix.size());
  }
  return std::string(message);
}

bool is_zero_block(const std::array<std::byte, 512>& b) {
  return std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0}; });
}

}  // namespace

struct TarWalker::Extensions {
  bool any = false;
  std::uint64_t first_offset = 0;  // offset of the first extension header of the entry
  std::uint64_t bytes = 0;         // payload bytes of all of them
  std::optional<std::string> long_name;
  std::optional<std::string> long_link;
  std::vector<std::pair<std::string, std::string>> pax;  // in order: GNU sparse 0.0 repeats keys
};

TarWalker::TarWalker(compress::StreamDecoder& stream, std::string name)
    : stream_(stream), name_(std::move(name)) {}

Result<std::size_t> TarWalker::read_full(std::span<std::byte> out) {
  std::size_t done = 0;
  while (done < out.size()) {
    OCIFS_ASSIGN(std::size_t n, stream_.read(out.subspan(done)));
    if (n == 0) break;
    done += n;
  }
  return done;
}

void TarWalker::set_pending(std::uint64_t data_size) {
  pending_data_ = data_size;
  pending_padding_ = static_cast<std::size_t>(round_up(data_size) - data_size);
}

Result<void> TarWalker::skip_pending() {
  if (pending_data_ > 0) {
    auto skipped = stream_.skip(pending_data_);
    pending_data_ = 0;
    if (!skipped) {
      pending_padding_ = 0;
      return Error{
          skipped.error().code,
          fmt::format("cannot read {}: entry '{}' (header at offset {}) has data up to offset {}: {}", name_,
                      prev_path_, prev_header_offset_, prev_data_end_, reason_of(skipped.error(), name_))};
    }
  }
  // The padding to the next 512-byte block may be missing at the very end: umoci 0.4.7 writes
  // layers that stop right after the last file's data. A short read here is the end of the
  // archive, which the next header read reports.
  if (pending_padding_ > 0) {
    Block pad;
    OCIFS_TRY(read_full(std::span(pad).first(pending_padding_)));
    pending_padding_ = 0;
  }
  return util::success();
}

Result<std::optional<TarWalker::Block>> TarWalker::read_header(const Extensions& ext) {
  std::uint64_t offset = stream_.position();
  Block block;
  OCIFS_ASSIGN(std::size_t n, read_full(block));
  if (n == 0 && !ext.any) return std::optional<Block>();
  if (n < kBlock) {
    return make_error(
        std::errc::io_error, "cannot read {}: stream ends inside a tar header at offset {}{}", name_,
        offset + n,
        ext.any ? fmt::format(" (entry headers start at offset {})", ext.first_offset) : std::string());
  }
  if (is_zero_block(block)) {
    if (ext.any) {
      return make_error(
          std::errc::io_error,
          "cannot read {}: archive ends at offset {} right after extension headers at offset {}", name_,
          offset, ext.first_offset);
    }
    // End of archive: two zero blocks, or one followed by the end of the stream.
    Block second;
    OCIFS_ASSIGN(std::size_t m, read_full(second));
    if (m == kBlock && !is_zero_block(second)) {
      spdlog::warn("{}: lone zero block at offset {} taken as the end of the archive", name_, offset);
    }
    return std::optional<Block>();
  }
  // Checksum: the field counts as spaces; old writers summed signed chars.
  const auto* u = reinterpret_cast<const unsigned char*>(block.data());
  std::int64_t sum_unsigned = 0, sum_signed = 0;
  for (std::size_t i = 0; i < kBlock; ++i) {
    bool in_field = i >= 148 && i < 156;
    sum_unsigned += in_field ? ' ' : u[i];
    sum_signed += in_field ? ' ' : static_cast<signed char>(u[i]);
  }
  auto stored = parse_number(block.data(), 148, 8, false);
  if (!stored || (*stored != sum_unsigned && *stored != sum_signed)) {
    return make_error(std::errc::io_error,
                      "cannot read {}: bad tar header checksum at offset {} (stored '{}', computed {})",
                      name_, offset, field(block.data(), 148, 8), sum_unsigned);
  }
  return std::optional<Block>(block);
}

Result<std::string> TarWalker::read_payload(const Block& header, std::uint64_t header_offset, char type) {
  auto size = parse_number(header.data(), 124, 12, false);
  if (!size) {
    return make_error(std::errc::io_error, "cannot read {}: bad size field in '{}' header at offset {}",
                      name_, type, header_offset);
  }
  if (static_cast<std::uint64_t>(*size) > kMaxPayload) {
    return make_error(std::errc::file_too_large,
                      "cannot read {}: '{}' extension header at offset {} declares {} bytes (limit {})",
                      name_, type, header_offset, *size, kMaxPayload);
  }
  std::string payload(static_cast<std::size_t>(*size), '\0');
  OCIFS_ASSIGN(std::size_t n, read_full(std::as_writable_bytes(std::span(payload))));
  if (n < payload.size()) {
    return make_error(
        std::errc::io_error,
        "cannot read {}: stream ends at offset {} inside the '{}' extension header at offset {}", name_,
        stream_.position(), type, header_offset);
  }
  std::uint64_t padding = round_up(payload.size()) - payload.size();
  if (padding > 0) {
    auto skipped = stream_.skip(padding);
    if (!skipped) {
      return Error{skipped.error().code,
                   fmt::format("cannot read {}: '{}' extension header at offset {}: {}", name_, type,
                               header_offset, reason_of(skipped.error(), name_))};
    }
  }
  return payload;
}

namespace {

Result<std::vector<std::pair<std::string, std::string>>> parse_pax(std::string_view data,
                                                                   std::string_view layer,
                                                                   std::uint64_t offset) {
  std::vector<std::pair<std::string, std::string>> records;
  std::size_t pos = 0;
  while (pos < data.size()) {
    if (data[pos] == '\0' && data.find_first_not_of('\0', pos) == std::string_view::npos) {
      break;  // NUL padding after the last record
    }
    auto bad = [&](std::string_view why) {
      return make_error(std::errc::io_error,
                        "cannot parse PAX header of {} at offset {}: {} (record at byte {})", layer, offset,
                        why, pos);
    };
    std::size_t space = data.find(' ', pos);
    if (space == std::string_view::npos || space == pos || space - pos > 20) return bad("no record length");
    std::uint64_t length = 0;
    if (!parse_decimal(data.substr(pos, space - pos), length)) return bad("bad record length");
    if (length <= space - pos + 1 || length > data.size() - pos) return bad("record length out of range");
    std::string_view record = data.substr(space + 1, pos + length - space - 1);
    if (record.empty() || record.back() != '\n') return bad("record does not end in a newline");
    record.remove_suffix(1);
    std::size_t eq = record.find('=');
    if (eq == std::string_view::npos || eq == 0) return bad("record without keyword");
    records.emplace_back(std::string(record.substr(0, eq)), std::string(record.substr(eq + 1)));
    pos += length;
  }
  return records;
}

}  // namespace

Result<std::optional<TarEntry>> TarWalker::next() {
  if (done_) return std::optional<TarEntry>();
  for (;;) {
    OCIFS_TRY(skip_pending());
    Extensions ext;
    for (;;) {
      std::uint64_t header_offset = stream_.position();
      OCIFS_ASSIGN(auto header, read_header(ext));
      if (!header) {
        done_ = true;
        return std::optional<TarEntry>();
      }
      char type = static_cast<char>((*header)[156]);
      // Solaris tar's 'X' holds PAX records too; GNU tar and Python's tarfile apply it as 'x'.
      if (type == 'L' || type == 'K' || type == 'x' || type == 'X' || type == 'g') {
        if (!ext.any) ext.first_offset = header_offset;
        OCIFS_ASSIGN(std::string payload, read_payload(*header, header_offset, type));
        ext.bytes += payload.size();
        if (ext.bytes > kMaxExtensions) {
          return make_error(std::errc::file_too_large,
                            "cannot read {}: extension headers from offset {} to {} hold over {} bytes",
                            name_, ext.first_offset, header_offset, kMaxExtensions);
        }
        if (type == 'g') {
          // Global headers set defaults for every later entry; images never rely on them and
          // we ignore them, but a malformed one is still an error.
          OCIFS_ASSIGN(auto records, parse_pax(payload, name_, header_offset));
          for (auto& [key, value] : records) {
            if (key == "path") global_pax_path_ = value;
          }
          continue;
        }
        ext.any = true;
        if (type == 'L' || type == 'K') {
          // NUL-terminated, padded with NULs; a NUL with more name after it stays, and the entry
          // is skipped for it (a name shown cut at the NUL would be another name).
          auto nul = payload.find('\0');
          if (nul != std::string::npos && payload.find_first_not_of('\0', nul) == std::string::npos) {
            payload.resize(nul);
          }
          (type == 'L' ? ext.long_name : ext.long_link) = std::move(payload);
        } else {
          OCIFS_ASSIGN(auto records, parse_pax(payload, name_, header_offset));
          for (auto& r : records) ext.pax.push_back(std::move(r));
        }
        continue;
      }
      if (!ext.any) ext.first_offset = header_offset;
      OCIFS_ASSIGN(auto entry, make_entry(*header, header_offset, ext));
      if (entry) return entry;
      break;  // skipped: its data is in pending_data_
    }
  }
}

Result<std::optional<TarEntry>> TarWalker::make_entry(const Block& header, std::uint64_t header_offset,
                                                      Extensions& ext) {
  const std::byte* h = header.data();
  char type = static_cast<char>(h[156]);
  std::string_view magic = std::string_view(reinterpret_cast<const char*>(h) + 257, 6);
  bool posix = magic == std::string_view("ustar\0", 6);
  bool gnu = magic == "ustar ";

  TarEntry e;
  e.header_offset = ext.first_offset;

  std::string raw_path;
  std::string_view name_field = field(h, 0, 100);
  if (ext.long_name) {
    raw_path = *ext.long_name;
  } else if (posix && !field(h, 345, 155).empty()) {
    raw_path = fmt::format("{}/{}", field(h, 345, 155), name_field);
  } else {
    raw_path = std::string(name_field);
  }
  std::string raw_link = ext.long_link ? *ext.long_link : std::string(field(h, 157, 100));

  auto bad_field = [&](std::string_view what) {
    return make_error(std::errc::io_error, "cannot read {}: bad {} field in the header of '{}' at offset {}",
                      name_, what, util::shown(raw_path), header_offset);
  };
  auto mode = parse_number(h, 100, 8, false);
  auto uid = parse_number(h, 108, 8, false);
  auto gid = parse_number(h, 116, 8, false);
  auto size = parse_number(h, 124, 12, false);
  auto mtime = parse_number(h, 136, 12, true);
  if (!mode) return bad_field("mode");
  if (!uid || *uid > std::numeric_limits<std::uint32_t>::max()) return bad_field("uid");
  if (!gid || *gid > std::numeric_limits<std::uint32_t>::max()) return bad_field("gid");
  if (!size) return bad_field("size");
  if (!mtime) return bad_field("mtime");
  e.mode = static_cast<std::uint32_t>(*mode) & 07777;
  e.uid = static_cast<std::uint32_t>(*uid);
  e.gid = static_cast<std::uint32_t>(*gid);
  e.mtime_sec = *mtime;
  std::uint64_t data_size = static_cast<std::uint64_t>(*size);
  if (posix || gnu) {
    if (type == '3' || type == '4') {
      auto major = parse_number(h, 329, 8, false);
      auto minor = parse_number(h, 337, 8, false);
      if (!major || *major > std::numeric_limits<std::uint32_t>::max()) return bad_field("devmajor");
      if (!minor || *minor > std::numeric_limits<std::uint32_t>::max()) return bad_field("devminor");
      e.dev_major = static_cast<std::uint32_t>(*major);
      e.dev_minor = static_cast<std::uint32_t>(*minor);
    }
  }

  // PAX overrides, in record order (a later record wins).
  bool pax_sparse = false;
  std::optional<std::string> sparse_name;                 // GNU.sparse.name beats path whatever the order
  std::unordered_map<std::string, std::size_t> xattr_at;  // name -> index in e.xattrs
  std::optional<std::uint64_t> sparse_real_size;
  std::optional<std::uint64_t> sparse_numblocks;
  std::vector<std::uint64_t> sparse_numbers;  // 0.0 offset/numbytes pairs, 0.1 map
  int sparse_major = 0;
  auto bad_pax = [&](std::string_view key, std::string_view value) {
    return make_error(std::errc::io_error, "cannot read {}: bad PAX {} '{}' for '{}' (headers at offset {})",
                      name_, util::shown(key), util::escaped(value, 64), util::shown(raw_path),
                      ext.first_offset);
  };
  for (auto& [key, value] : ext.pax) {
    if (key == "path") {
      if (!value.empty()) raw_path = value;
    } else if (key == "linkpath") {
      if (!value.empty()) raw_link = value;
    } else if (key == "size") {
      if (!value.empty() && (!parse_decimal(value, data_size) ||
                             data_size > std::uint64_t{std::numeric_limits<std::int64_t>::max()})) {
        return bad_pax(key, value);
      }
    } else if (key == "uid") {
      if (!value.empty() && !parse_decimal(value, e.uid)) return bad_pax(key, value);
    } else if (key == "gid") {
      if (!value.empty() && !parse_decimal(value, e.gid)) return bad_pax(key, value);
    } else if (key == "mtime") {
      if (!value.empty() && !parse_pax_time(value, e.mtime_sec, e.mtime_nsec)) return bad_pax(key, value);
    } else if (key == "SCHILY.devmajor") {
      if (!parse_decimal(value, e.dev_major)) return bad_pax(key, value);
    } else if (key == "SCHILY.devminor") {
      if (!parse_decimal(value, e.dev_minor)) return bad_pax(key, value);
    } else if (key.starts_with("SCHILY.xattr.") || key.starts_with("LIBARCHIVE.xattr.")) {
      Xattr x;
      if (key.starts_with("SCHILY.")) {
        x.name = key.substr(13);
        x.value = value;
      } else {
        auto name = url_decode(std::string_view(key).substr(17));
        auto decoded = util::base64_decode(value);
        if (!name || !decoded) {
          spdlog::warn("{}: ignoring undecodable PAX record {} of '{}' at offset {}", name_, util::shown(key),
                       util::shown(raw_path), ext.first_offset);
          continue;
        }
        x.name = std::move(*name);
        x.value = std::move(*decoded);
      }
      if (x.name.empty()) continue;
      if (x.name.size() > limits::kMaxXattrNameBytes || x.name.find('\0') != std::string::npos ||
          x.value.size() > limits::kMaxXattrValueBytes) {
        // Linux could neither set nor list it (names are NUL-separated by listxattr).
        spdlog::warn(
            "{}: ignoring xattr '{}' of '{}' at offset {}: a name of {} bytes (limit {}, no NUL) or a "
            "value of {} bytes (limit {})",
            name_, util::shown(x.name), util::shown(raw_path), ext.first_offset, x.name.size(),
            limits::kMaxXattrNameBytes, x.value.size(), limits::kMaxXattrValueBytes);
        continue;
      }
      // libarchive writes each xattr twice (LIBARCHIVE.xattr base64 and SCHILY.xattr raw).
      auto [it, fresh] = xattr_at.try_emplace(x.name, e.xattrs.size());
      if (fresh) {
        e.xattrs.push_back(std::move(x));
      } else {
        e.xattrs[it->second].value = std::move(x.value);
      }
    } else if (key.starts_with("GNU.sparse.")) {
      pax_sparse = true;
      std::string_view k = std::string_view(key).substr(11);
      std::uint64_t n = 0;
      if (k == "name") {
        sparse_name = value;
      } else if (k == "size" || k == "realsize") {
        if (!parse_decimal(value, n) || n > limits::kMaxFileBytes) return bad_pax(key, value);
        sparse_real_size = n;
      } else if (k == "numblocks") {
        if (!parse_decimal(value, n) || n > kMaxSparseExtents) return bad_pax(key, value);
        sparse_numblocks = n;
      } else if (k == "offset" || k == "numbytes") {
        if (!parse_decimal(value, n) || sparse_numbers.size() >= 2 * kMaxSparseExtents)
          return bad_pax(key, value);
        // 0.0 alternates offset and numbytes records.
        if ((k == "offset") != (sparse_numbers.size() % 2 == 0)) return bad_pax(key, value);
        sparse_numbers.push_back(n);
      } else if (k == "map") {
        sparse_numbers.clear();
        std::string_view rest = value;
        while (!rest.empty()) {
          auto comma = rest.find(',');
          if (!parse_decimal(rest.substr(0, comma), n) || sparse_numbers.size() >= 2 * kMaxSparseExtents) {
            return bad_pax(key, value);
          }
          sparse_numbers.push_back(n);
          rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        }
        if (sparse_numbers.size() % 2) return bad_pax(key, value);
      } else if (k == "major") {
        if (!parse_decimal(value, sparse_major)) return bad_pax(key, value);
      }
    }
    // uname, gname, atime, ctime, comment, charset, hdrcharset: not used.
  }

  if (sparse_name) raw_path = *sparse_name;

  switch (type) {
    case '0':
    case '\0':
    case '7':
    case 'S':
      // Pre-POSIX (V7) archives mark directories with type NUL and a trailing slash, as Go's
      // archive/tar reads them; types '0' and '7' are files whatever the name says (Docker keeps
      // them files). Either way the entry's size is data that follows, never headers.
      e.kind = (type == '\0' && !raw_path.empty() && raw_path.back() == '/') ? EntryKind::directory
                                                                             : EntryKind::regular;
      break;
    case '1':
      e.kind = EntryKind::hardlink;
      break;
    case '2':
      e.kind = EntryKind::symlink;
      break;
    case '3':
      e.kind = EntryKind::char_device;
      break;
    case '4':
      e.kind = EntryKind::block_device;
      break;
    case '5':
    case 'D':
      e.kind = EntryKind::directory;
      break;
    case '6':
      e.kind = EntryKind::fifo;
      break;
    default: {
      // 'V' (volume label) is harmless; anything else we cannot represent.
      if (type != 'V') {
        spdlog::warn("{}: skipping '{}' at offset {}: unknown tar entry type '{}' (0x{:02x})", name_,
                     util::shown(raw_path), header_offset,
                     std::isprint(static_cast<unsigned char>(type)) ? type : '?',
                     static_cast<unsigned char>(type));
      }
      prev_path_ = util::shown(raw_path);
      prev_header_offset_ = header_offset;
      prev_data_end_ = stream_.position() + data_size;
      set_pending(data_size);
      return std::optional<TarEntry>();
    }
  }

  bool has_data = e.kind == EntryKind::regular || type == 'D' ||
                  (type == '\0' && e.kind == EntryKind::directory) ||
                  (e.kind == EntryKind::hardlink && data_size > 0);
  std::uint64_t stored = has_data ? data_size : 0;
  std::uint64_t stored_remaining = stored;
  if (e.kind == EntryKind::regular) e.size = stored;
  if (e.kind == EntryKind::hardlink) e.size = stored;
  prev_path_ = util::shown(raw_path);
  prev_header_offset_ = ext.first_offset;
  // Every data offset and size of a layer stays within kMaxDecodedLayerBytes, so sums of them
  // (offset + size, here and in the index and the tree) cannot overflow.
  if (const std::uint64_t at = stream_.position();
      at > limits::kMaxDecodedLayerBytes || stored > limits::kMaxDecodedLayerBytes - at) {
    return make_error(
        std::errc::file_too_large,
        "cannot read {}: entry '{}' at offset {} stores {} bytes at decoded offset {}, past the "
        "limit of {} bytes for a layer",
        name_, prev_path_, ext.first_offset, stored, at, limits::kMaxDecodedLayerBytes);
  }

  if (type == 'S') {
    OCIFS_TRY(read_old_gnu_sparse(header, e, stored_remaining));
  } else if (pax_sparse && e.kind == EntryKind::regular) {
    if (!sparse_real_size) {
      return make_error(std::errc::io_error,
                        "cannot read {}: sparse entry '{}' at offset {} has no real size", name_, prev_path_,
                        ext.first_offset);
    }
    e.size = *sparse_real_size;
    if (sparse_major == 1) {
      OCIFS_TRY(read_sparse_map_1_0(e, stored_remaining));
    } else {
      if (sparse_numblocks && *sparse_numblocks * 2 != sparse_numbers.size()) {
        return make_error(std::errc::io_error,
                          "cannot read {}: sparse entry '{}' at offset {} declares {} extents but maps {}",
                          name_, prev_path_, ext.first_offset, *sparse_numblocks, sparse_numbers.size() / 2);
      }
      if (sparse_numbers.size() % 2) {
        return make_error(std::errc::io_error,
                          "cannot read {}: sparse entry '{}' at offset {} has an odd map", name_, prev_path_,
                          ext.first_offset);
      }
      for (std::size_t i = 0; i < sparse_numbers.size(); i += 2) {
        e.sparse.push_back({sparse_numbers[i], sparse_numbers[i + 1]});
      }
    }
    OCIFS_TRY(check_sparse(e, stored_remaining));
  }

  e.data_offset = stream_.position();
  e.stored_size = stored_remaining;
  prev_data_end_ = e.data_offset + stored_remaining;
  set_pending(stored_remaining);

  // Names: checked after the headers are consumed so that a skipped entry leaves the stream at
  // its data, like any other.
  auto skip = [&](std::string_view what, std::string_view raw, std::string_view why) {
    spdlog::warn("{}: skipping the entry at offset {}: its {} '{}' cannot be shown: {}", name_,
                 ext.first_offset, what, util::shown(raw), why);
    return std::optional<TarEntry>();
  };
  auto path = util::normalise_path(raw_path);
  if (!path) return skip("path", raw_path, path.error().message);
  e.path = std::move(*path);
  const bool links = e.kind == EntryKind::hardlink || e.kind == EntryKind::symlink;
  if (auto why = util::path_problem(raw_link); why && links) return skip("link target", raw_link, *why);
  if (e.kind == EntryKind::hardlink) {
    auto target = util::normalise_path(raw_link);
    if (!target) return skip("hard link target", raw_link, target.error().message);
    e.link_target = std::move(*target);
  } else if (e.kind == EntryKind::symlink) {
    e.link_target = std::move(raw_link);
  }
  return std::optional<TarEntry>(std::move(e));
}

Result<void> TarWalker::read_old_gnu_sparse(const Block& header, TarEntry& entry,
                                            std::uint64_t& stored_remaining) {
  const std::byte* h = header.data();
  auto real = parse_number(h, 483, 12, false);
  if (!real) {
    return make_error(std::errc::io_error,
                      "cannot read {}: bad realsize in the sparse header of '{}' at offset {}", name_,
                      prev_path_, prev_header_offset_);
  }
  entry.size = static_cast<std::uint64_t>(*real);
  // Reads up to `count` 24-byte {offset, numbytes} pairs from `block` at `at`; an empty offset
  // field ends the list.
  auto add_pairs = [&](const std::byte* block, std::size_t at, std::size_t count,
                       std::uint64_t offset) -> Result<void> {
    for (std::size_t i = 0; i < count; ++i) {
      std::size_t p = at + i * 24;
      if (block[p] == std::byte{0}) break;
      auto off = parse_number(block, p, 12, false);
      auto len = parse_number(block, p + 12, 12, false);
      if (!off || !len) {
        return make_error(std::errc::io_error,
                          "cannot read {}: bad sparse map of '{}' in the block at offset {}", name_,
                          prev_path_, offset);
      }
      if (entry.sparse.size() >= kMaxSparseExtents) {
        return make_error(std::errc::io_error,
                          "cannot read {}: sparse map of '{}' at offset {} has over {} extents", name_,
                          prev_path_, prev_header_offset_, kMaxSparseExtents);
      }
      entry.sparse.push_back({static_cast<std::uint64_t>(*off), static_cast<std::uint64_t>(*len)});
    }
    return util::success();
  };
  OCIFS_TRY(add_pairs(h, 386, 4, prev_header_offset_));
  bool extended = h[482] != std::byte{0};
  while (extended) {
    std::uint64_t offset = stream_.position();
    Block block;
    OCIFS_ASSIGN(std::size_t n, read_full(block));
    if (n < kBlock) {
      return make_error(
          std::errc::io_error,
          "cannot read {}: stream ends at offset {} inside the sparse headers of '{}' (offset {})", name_,
          offset + n, prev_path_, prev_header_offset_);
    }
    OCIFS_TRY(add_pairs(block.data(), 0, 21, offset));
    extended = block[504] != std::byte{0};
  }
  return check_sparse(entry, stored_remaining);
}

Result<void> TarWalker::read_sparse_map_1_0(TarEntry& entry, std::uint64_t& stored_remaining) {
  // Numbers are read line by line from whole blocks; the map is part of the stored data.
  std::string text;
  std::size_t pos = 0;
  std::uint64_t map_offset = stream_.position();
  std::uint64_t stored = stored_remaining;
  auto next_number = [&](std::uint64_t& out) -> Result<void> {
    for (;;) {
      auto nl = text.find('\n', pos);
      if (nl != std::string::npos) {
        if (!parse_decimal(std::string_view(text).substr(pos, nl - pos), out)) {
          return make_error(std::errc::io_error, "cannot read {}: bad sparse map of '{}' at offset {}", name_,
                            prev_path_, map_offset);
        }
        pos = nl + 1;
        return util::success();
      }
      if (text.size() - pos > 40) {
        return make_error(std::errc::io_error, "cannot read {}: bad sparse map of '{}' at offset {}", name_,
                          prev_path_, map_offset);
      }
      if (stored_remaining < kBlock) {
        return make_error(std::errc::io_error,
                          "cannot read {}: sparse map of '{}' at offset {} runs past the entry's {} bytes",
                          name_, prev_path_, map_offset, stored);
      }
      Block block;
      OCIFS_ASSIGN(std::size_t n, read_full(block));
      if (n < kBlock) {
        return make_error(std::errc::io_error,
                          "cannot read {}: stream ends at offset {} inside the sparse map of '{}'", name_,
                          stream_.position(), prev_path_);
      }
      stored_remaining -= kBlock;
      text.erase(0, pos);
      pos = 0;
      text.append(reinterpret_cast<const char*>(block.data()), kBlock);
    }
  };
  std::uint64_t count = 0;
  OCIFS_TRY(next_number(count));
  if (count > kMaxSparseExtents) {
    return make_error(std::errc::io_error,
                      "cannot read {}: sparse map of '{}' at offset {} has {} extents (limit {})", name_,
                      prev_path_, map_offset, count, kMaxSparseExtents);
  }
  for (std::uint64_t i = 0; i < count; ++i) {
    SparseExtent x;
    OCIFS_TRY(next_number(x.offset));
    OCIFS_TRY(next_number(x.length));
    entry.sparse.push_back(x);
  }
  return util::success();
}

Result<void> TarWalker::check_sparse(TarEntry& entry, std::uint64_t stored) {
  std::uint64_t end = 0, total = 0;
  std::vector<SparseExtent> kept;
  kept.reserve(entry.sparse.size());
  for (const auto& x : entry.sparse) {
    if (x.offset < end || x.length > entry.size || x.offset > entry.size - x.length) {
      return make_error(
          std::errc::io_error,
          "cannot read {}: sparse map of '{}' at offset {} has extent {}+{} out of order or beyond the "
          "size {}",
          name_, prev_path_, prev_header_offset_, x.offset, x.length, entry.size);
    }
    end = x.offset + x.length;
    total += x.length;
    if (x.length > 0) kept.push_back(x);  // GNU tar ends maps with a zero-length extent at the size
  }
  if (total > stored) {
    return make_error(std::errc::io_error,
                      "cannot read {}: sparse map of '{}' at offset {} maps {} bytes but the entry stores {}",
                      name_, prev_path_, prev_header_offset_, total, stored);
  }
  // A file that is all hole (GNU tar maps it as just {size, 0}) keeps one empty extent at its
  // end: an empty map would read it as plain data, the bytes of whatever follows in the tar.
  if (kept.empty()) kept.push_back(SparseExtent{entry.size, 0});
  entry.sparse = std::move(kept);
  return util::success();
}

}  // namespace ocifs::layer
