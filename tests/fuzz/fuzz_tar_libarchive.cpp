// Differential: ocifs's TarWalker against libarchive's tar reader on the same bytes. Where both
// read an entry, they must agree on its name, type, size, mode, owner, times, link target,
// device numbers, sparse map and data bytes; an entry only libarchive reports must be one ocifs
// skipped on purpose (it says so in a warning naming the entry's offset). Entries are matched by
// the offset of their first header (TarEntry::header_offset, archive_read_header_position).
//
// Compared only where both claim success: entries both returned, before either one's error.
// The legitimate differences, each excluded below where it arises:
// - libarchive is more lenient (octal fields with trailing garbage, archives without padding,
//   bad headers it resynchronises over, ...): ocifs refusing is not compared.
// - Both read a PAX, GNU long name and sparse map the same way, but libarchive makes any
//   "regular" entry whose name ends in '/' a directory without data; ocifs keeps types '0' and
//   '7' files (as Docker does) and skips the data of a V7 (type NUL) directory (as Go's
//   archive/tar does). Past such an entry with data the two read different blocks as headers:
//   the comparison stops there.
// - Names: ocifs normalises paths ("./a//b/" -> "a/b") and hard link targets; libarchive keeps
//   them as written. The same normalisation is applied to libarchive's names here (written
//   independently of ocifs's). A name libarchive could not convert (ARCHIVE_WARN) is not
//   compared (a hard link's target it drops altogether: the entry then looks like a regular
//   file). A name or link target with a NUL byte is cut there by libarchive: ocifs skips
//   the entry (with a warning), so it is only ever in the "skipped" case.
// - ocifs skips (with a warning) entries whose name has a ".." component or passes PATH_MAX /
//   NAME_MAX, and entries of types it cannot show ('M', 'N', anything unknown, which libarchive
//   reads as regular files per POSIX); GNU volume labels ('V') neither reports.
// - Negative PAX times with a fraction: libarchive reads "-1.5" as -1 s + 0.5 s, POSIX, GNU tar
//   and Go (and ocifs) as -2 s + 0.5 s (documented in tar_walker.cpp): times not compared then.
// - Sparse maps: ocifs drops zero-length extents (GNU tar ends maps with one) but keeps one for a
//   file of holes only; libarchive drops them all. The realsize field of a GNU header: libarchive
//   takes a non-empty one as the size of an entry of any type, and ignores an empty one of an
//   old GNU sparse entry ('S'); GNU tar and ocifs read it for 'S' entries only, empty as 0.
//   Sparse files described by PAX records are compared only when the records are the complete
//   set GNU tar writes for format 1.0 (major 1, minor 0, name, realsize): libarchive and GNU tar
//   (whom ocifs follows) read the 0.x formats and incomplete or unknown versions differently
//   (libarchive reads a plain file where a record is missing or the minor is not 0). A sparse
//   map without extents (a file of holes only) over stored bytes: libarchive reads those bytes
//   as the file from offset 0, GNU tar and ocifs read holes.
// - A hard link with an empty link name: libarchive reports a regular file, ocifs a hard link to
//   "" (the root), which the tree builder drops with a warning (no directory can be hard linked).
// - Data is compared for files up to 1 MiB of logical size (sparse files can claim 2^63).
// libfuzzer: -max_len=262144
#include <archive.h>
#include <archive_entry.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <clocale>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "ocifs/compress/identity_decoder.hpp"
#include "ocifs/layer/tar_walker.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;
using layer::EntryKind;
using layer::TarEntry;

namespace {

constexpr std::uint64_t kMaxCompared = 1u << 20;

// ---- ocifs --------------------------------------------------------------------------------

// The offsets of the entries the walker skipped on purpose, from its warnings.
class SkipLog final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::vector<std::uint64_t> offsets;

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    static const std::regex kSkip(R"(skipping (?:the entry at offset (\d+)|'.*' at offset (\d+): unknown))");
    std::string text(msg.payload.data(), msg.payload.size());
    std::smatch m;
    if (std::regex_search(text, m, kSkip))
      offsets.push_back(std::stoull(m[1].matched ? m[1].str() : m[2].str()));
  }
  void flush_() override {}
};

std::shared_ptr<SkipLog> skip_log() {
  static auto sink = [] {
    auto s = std::make_shared<SkipLog>();
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("fuzz", s));
    spdlog::set_level(spdlog::level::warn);
    return s;
  }();
  return sink;
}

struct Walk {
  std::vector<TarEntry> entries;
  bool ok = true;
};

Walk ocifs_walk(std::string_view bytes) {
  Walk out;
  compress::IdentityDecoder decoder(std::make_shared<fuzz::ViewSource>(bytes), compress::ScanOptions{});
  layer::TarWalker walker(decoder, "layer fuzz");
  for (;;) {
    auto e = walker.next();
    if (!e.ok()) {
      out.ok = false;
      return out;
    }
    if (!*e) return out;
    out.entries.push_back(std::move(**e));
  }
}

// ---- libarchive ---------------------------------------------------------------------------

struct LaEntry {
  std::uint64_t header_offset = 0;
  bool name_converted = true;  // ARCHIVE_OK: names are as written
  std::string path, hardlink, symlink;
  unsigned filetype = 0;
  std::int64_t size = 0;
  bool size_set = false;
  unsigned perm = 0;
  std::int64_t uid = 0, gid = 0;
  std::int64_t mtime = 0;
  long mtime_nsec = 0;
  std::uint64_t rdevmajor = 0, rdevminor = 0;
  std::vector<layer::SparseExtent> sparse;
  std::optional<std::string> data;  // logical content, when small enough and readable
};

struct LaWalk {
  std::vector<LaEntry> entries;
  bool ok = true;
};

LaWalk libarchive_walk(std::string_view bytes) {
  LaWalk out;
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  if (archive_read_open_memory(a, bytes.data(), bytes.size()) != ARCHIVE_OK) {
    archive_read_free(a);
    out.ok = false;
    return out;
  }
  for (;;) {
    struct archive_entry* e = nullptr;
    int r = archive_read_next_header(a, &e);
    if (r == ARCHIVE_EOF) break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      out.ok = false;
      break;
    }
    LaEntry le;
    le.header_offset = static_cast<std::uint64_t>(archive_read_header_position(a));
    le.name_converted = r == ARCHIVE_OK;
    if (const char* p = archive_entry_pathname(e)) le.path = p;
    if (const char* p = archive_entry_hardlink(e)) le.hardlink = p;
    if (const char* p = archive_entry_symlink(e)) le.symlink = p;
    le.filetype = archive_entry_filetype(e);
    le.size_set = archive_entry_size_is_set(e);
    le.size = archive_entry_size(e);
    le.perm = archive_entry_perm(e) & 07777;
    le.uid = archive_entry_uid(e);
    le.gid = archive_entry_gid(e);
    le.mtime = archive_entry_mtime(e);
    le.mtime_nsec = archive_entry_mtime_nsec(e);
    le.rdevmajor = archive_entry_rdevmajor(e);
    le.rdevminor = archive_entry_rdevminor(e);
    if (archive_entry_sparse_reset(e) > 0) {
      la_int64_t off = 0, len = 0;
      while (archive_entry_sparse_next(e, &off, &len) == ARCHIVE_OK) {
        if (len > 0) le.sparse.push_back({static_cast<std::uint64_t>(off), static_cast<std::uint64_t>(len)});
      }
    }
    if (le.filetype == AE_IFREG && le.hardlink.empty() && le.size >= 0 &&
        static_cast<std::uint64_t>(le.size) <= kMaxCompared) {
      std::string data(static_cast<std::size_t>(le.size), '\0');
      // Sparse holes are left out of the blocks libarchive hands back: place each at its offset.
      const void* buf = nullptr;
      size_t n = 0;
      la_int64_t at = 0;
      bool good = true;
      for (;;) {
        int d = archive_read_data_block(a, &buf, &n, &at);
        if (d == ARCHIVE_EOF) break;
        if (d != ARCHIVE_OK || at < 0 || static_cast<std::uint64_t>(at) > data.size() ||
            n > data.size() - static_cast<std::size_t>(at)) {
          good = false;
          break;
        }
        std::memcpy(data.data() + at, buf, n);
      }
      if (good) le.data = std::move(data);
    }
    out.entries.push_back(std::move(le));
  }
  archive_read_free(a);
  return out;
}

// ---- comparison ---------------------------------------------------------------------------

// Paths as ocifs promises to show them (tar_entry.hpp), written independently of its code: no
// leading "/" or "./", no empty or "." components, no trailing "/".
std::string normalised(std::string_view raw) {
  std::string out;
  std::size_t i = 0;
  while (i <= raw.size()) {
    std::size_t slash = std::min(raw.find('/', i), raw.size());
    std::string_view part = raw.substr(i, slash - i);
    if (!part.empty() && part != ".") {
      if (!out.empty()) out += '/';
      out += part;
    }
    i = slash + 1;
  }
  return out;
}

EntryKind kind_of(const LaEntry& e) {
  if (!e.hardlink.empty()) return EntryKind::hardlink;
  switch (e.filetype) {
    case AE_IFDIR:
      return EntryKind::directory;
    case AE_IFLNK:
      return EntryKind::symlink;
    case AE_IFCHR:
      return EntryKind::char_device;
    case AE_IFBLK:
      return EntryKind::block_device;
    case AE_IFIFO:
      return EntryKind::fifo;
    default:
      return EntryKind::regular;
  }
}

// ocifs's view of a file's logical content: the stored runs placed at their extents.
std::string ocifs_content(std::string_view bytes, const TarEntry& e) {
  std::string out(static_cast<std::size_t>(e.size), '\0');
  if (e.sparse.empty()) return std::string(bytes.substr(e.data_offset, e.size));
  std::uint64_t stored = e.data_offset;
  for (const auto& x : e.sparse) {
    out.replace(x.offset, x.length, bytes.substr(stored, x.length));
    stored += x.length;
  }
  return out;
}

// The entry's own header block (after its extension headers) and the payloads of its PAX
// headers, as ocifs read them.
struct Headers {
  std::string_view own;
  std::string pax;
};

Headers headers(std::string_view bytes, const TarEntry& o) {
  Headers out;
  std::uint64_t at = o.header_offset;
  while (at + 512 <= o.data_offset) {
    std::string_view h = bytes.substr(at, 512);
    if (std::string_view("LKxXg").find(h[156]) == std::string_view::npos) {
      out.own = h;
      break;
    }
    std::uint64_t size = 0;  // an extension header's payload: octal (ocifs refuses the others here)
    for (std::size_t i = 124; i < 136 && h[i] >= '0' && h[i] <= '7'; ++i) size = size * 8 + (h[i] - '0');
    if (h[156] == 'x' || h[156] == 'X') out.pax += bytes.substr(at + 512, size);
    at += 512 + (size + 511) / 512 * 512;
  }
  return out;
}

// The realsize field of a GNU header (old GNU sparse entries, type 'S', carry one): libarchive
// takes it as the size whatever the type when it is not empty, and keeps the header's size when
// it is; GNU tar and ocifs read it for type 'S' only, an empty one as 0.
bool gnu_realsize_differs(std::string_view bytes, const TarEntry& o) {
  std::string_view h = headers(bytes, o).own;
  if (h.size() != 512 || h.substr(257, 8) != std::string_view("ustar  \0", 8)) return false;
  return (h[156] == 'S') == (h[483] == '\0');
}

// A sparse file described by PAX records other than the complete set GNU tar writes for format
// 1.0 (major 1, minor 0, name, realsize; the map in the data).
bool other_pax_sparse(std::string_view bytes, const TarEntry& o, const LaEntry& l) {
  Headers h = headers(bytes, o);
  if (h.pax.find("GNU.sparse.") == std::string::npos || (o.sparse.empty() && l.sparse.empty())) return false;
  for (const char* record :
       {" GNU.sparse.major=1\n", " GNU.sparse.minor=0\n", " GNU.sparse.name=", " GNU.sparse.realsize="}) {
    if (h.pax.find(record) == std::string::npos) return true;
  }
  return false;
}

// libarchive made a "regular" entry with a trailing '/' a directory, without data.
bool trailing_slash_directory(const TarEntry& o, const LaEntry& l) {
  return kind_of(l) == EntryKind::directory && !l.path.empty() && l.path.back() == '/' &&
         (o.kind == EntryKind::regular || o.kind == EntryKind::directory);
}

// After such an entry with data ocifs skips the data and libarchive does not: the two read
// different blocks as headers.
bool diverges_after(const TarEntry& o, const LaEntry& l) {
  return trailing_slash_directory(o, l) && (o.kind == EntryKind::regular ? o.size > 0 : o.stored_size > 0);
}

void compare(std::string_view bytes, const TarEntry& o, const LaEntry& l) {
  const auto at = o.header_offset;
  const EntryKind kind = kind_of(l);
  if (o.kind == EntryKind::hardlink && l.hardlink.empty() && (o.link_target.empty() || !l.name_converted)) {
    return;  // an empty link name, or one libarchive could not convert and dropped (excluded above)
  }
  if (trailing_slash_directory(o, l)) return;  // a file for ocifs, a directory for libarchive (above)
  check(o.kind == kind, "entry at {}: ocifs kind {}, libarchive {}", at, static_cast<int>(o.kind),
        static_cast<int>(kind));
  if (l.name_converted) {
    check(o.path == normalised(l.path), "entry at {}: ocifs path '{}', libarchive '{}'", at, o.path, l.path);
    if (kind == EntryKind::hardlink) {
      check(o.link_target == normalised(l.hardlink), "entry at {}: ocifs hard link to '{}', libarchive '{}'",
            at, o.link_target, l.hardlink);
    }
    if (kind == EntryKind::symlink) {
      check(o.link_target == l.symlink, "entry at {}: ocifs symlink to '{}', libarchive '{}'", at,
            o.link_target, l.symlink);
    }
  }
  check(o.mode == l.perm, "entry at {}: ocifs mode {:o}, libarchive {:o}", at, o.mode, l.perm);
  check(o.uid == l.uid && o.gid == l.gid, "entry at {}: ocifs owner {}:{}, libarchive {}:{}", at, o.uid,
        o.gid, l.uid, l.gid);
  const bool negative_fraction = o.mtime_sec < 0 && o.mtime_nsec != 0;
  if (!negative_fraction) {
    check(o.mtime_sec == l.mtime && o.mtime_nsec == static_cast<std::uint32_t>(l.mtime_nsec),
          "entry at {}: ocifs mtime {}.{:09}, libarchive {}.{:09}", at, o.mtime_sec, o.mtime_nsec, l.mtime,
          l.mtime_nsec);
  }
  if (kind == EntryKind::char_device || kind == EntryKind::block_device) {
    check(o.dev_major == l.rdevmajor && o.dev_minor == l.rdevminor,
          "entry at {}: ocifs device {}:{}, libarchive {}:{}", at, o.dev_major, o.dev_minor, l.rdevmajor,
          l.rdevminor);
  }
  if (kind != EntryKind::regular) return;
  if (gnu_realsize_differs(bytes, o)) return;  // excluded above
  if (other_pax_sparse(bytes, o, l)) return;   // excluded above
  const bool holes_only =
      std::all_of(o.sparse.begin(), o.sparse.end(), [](auto& x) { return x.length == 0; });
  if (!o.sparse.empty() && holes_only && l.sparse.empty()) return;  // a map without extents (above)
  check(l.size_set && o.size == static_cast<std::uint64_t>(l.size),
        "entry at {}: ocifs size {}, libarchive {}", at, o.size, l.size);
  std::vector<layer::SparseExtent> extents;  // ocifs keeps an empty one for a file of holes only
  std::copy_if(o.sparse.begin(), o.sparse.end(), std::back_inserter(extents),
               [](const layer::SparseExtent& x) { return x.length > 0; });
  check(extents.size() == l.sparse.size(), "entry at {}: ocifs has {} extents, libarchive {}", at,
        extents.size(), l.sparse.size());
  for (std::size_t i = 0; i < extents.size(); ++i) {
    check(extents[i].offset == l.sparse[i].offset && extents[i].length == l.sparse[i].length,
          "entry at {}: extent {} is {}+{} for ocifs, {}+{} for libarchive", at, i, extents[i].offset,
          extents[i].length, l.sparse[i].offset, l.sparse[i].length);
  }
  if (l.data && o.size <= kMaxCompared) {
    const std::string ours = ocifs_content(bytes, o);
    auto diff = std::mismatch(ours.begin(), ours.end(), l.data->begin(), l.data->end());
    check(ours == *l.data,
          "entry at {} ({}): the data differs at byte {} ({} and {} bytes; {} and {} extents)", at, o.path,
          diff.first - ours.begin(), ours.size(), l.data->size(), o.sparse.size(), l.sparse.size());
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  std::setlocale(LC_ALL, "C.UTF-8");  // PAX names are UTF-8: libarchive converts them to the locale's
  skip_log();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto log = skip_log();
  log->offsets.clear();
  Walk ours = ocifs_walk(bytes);
  LaWalk theirs = libarchive_walk(bytes);

  // Entries past the last one the failing side returned are not compared.
  std::uint64_t horizon = UINT64_MAX;
  if (!ours.ok) horizon = ours.entries.empty() ? 0 : ours.entries.back().header_offset + 1;
  if (!theirs.ok) {
    horizon = std::min<std::uint64_t>(horizon,
                                      theirs.entries.empty() ? 0 : theirs.entries.back().header_offset + 1);
  }

  std::map<std::uint64_t, const TarEntry*> by_offset;
  for (const auto& e : ours.entries) by_offset[e.header_offset] = &e;
  for (std::size_t i = 0; i < theirs.entries.size(); ++i) {
    const LaEntry& l = theirs.entries[i];
    if (l.header_offset >= horizon) break;
    auto it = by_offset.find(l.header_offset);
    if (it == by_offset.end()) {
      // Skipped on purpose: ocifs warned about an entry whose headers start in [this, next).
      std::uint64_t next = i + 1 < theirs.entries.size() ? theirs.entries[i + 1].header_offset : UINT64_MAX;
      bool warned = std::any_of(log->offsets.begin(), log->offsets.end(),
                                [&](std::uint64_t o) { return o >= l.header_offset && o < next; });
      check(warned, "libarchive reads '{}' at offset {}, ocifs neither returns nor skips it", l.path,
            l.header_offset);
      continue;
    }
    const TarEntry& o = *it->second;
    by_offset.erase(it);
    compare(bytes, o, l);
    if (diverges_after(o, l)) return 0;
  }
  for (const auto& [offset, e] : by_offset) {
    check(offset >= horizon, "ocifs reads '{}' at offset {}, libarchive does not", e->path, offset);
  }
  return 0;
}
