#include "toc_builder.hpp"

#include <algorithm>
#include <array>
#include <limits>

#include "ocifs/util/base64.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/path.hpp"
#include "ocifs/util/rfc3339.hpp"
#include "ocifs/util/sha256.hpp"
#include "ocifs/util/text.hpp"

namespace ocifs::layer::toc {

namespace {

using util::shown;

// Decompressed bytes per compressed byte at most: deflate's maximum is 1032:1 (a 258-byte match
// in 2 bits); zstd's is 32768:1 (a 128 KiB RLE block in 4 bytes). Twice that, to be generous.
constexpr std::uint64_t kGzipRatio = 2048;
constexpr std::uint64_t kZstdRatio = 65536;

// The entry kinds by their `type`; "chunk" is not one (it continues the file before it).
constexpr std::array<std::pair<std::string_view, EntryKind>, 7> kKinds = {{
    {"reg", EntryKind::regular},
    {"dir", EntryKind::directory},
    {"symlink", EntryKind::symlink},
    {"hardlink", EntryKind::hardlink},
    {"char", EntryKind::char_device},
    {"block", EntryKind::block_device},
    {"fifo", EntryKind::fifo},
}};

// A u32 field (ids, device numbers) into `out`; why not, if it does not fit.
std::optional<std::string> take_u32(const RawEntry& e, Field field, std::uint32_t& out) {
  if (e.num(field) > std::numeric_limits<std::uint32_t>::max()) {
    return fmt::format("{} {} is out of range", display_name(field), e.num(field));
  }
  out = static_cast<std::uint32_t>(e.num(field));
  return std::nullopt;
}

// The xattrs of `e`, decoded from base64 into `f`; why not, if one is refused.
std::optional<std::string> take_xattrs(const RawEntry& e, TocFile& f) {
  f.xattrs.reserve(e.xattrs.size());
  for (const auto& [name, encoded] : e.xattrs) {
    if (name.empty() || name.size() > limits::kMaxXattrNameBytes || name.find('\0') != std::string::npos) {
      return fmt::format("bad xattr name '{}'", shown(name));
    }
    auto value = util::base64_decode(encoded, util::Base64Padding::required);
    if (!value) return fmt::format("xattr '{}' is not valid base64", shown(name));
    if (value->size() > limits::kMaxXattrValueBytes) {
      return fmt::format("xattr '{}' has {} bytes (limit {})", shown(name), value->size(),
                         limits::kMaxXattrValueBytes);
    }
    f.xattrs.push_back({name, std::move(*value)});
  }
  return std::nullopt;
}

}  // namespace

TocBuilder::TocBuilder(Format format, std::uint64_t data_end, std::string_view layer, std::size_t max_entries)
    : format_(format), data_end_(data_end), layer_(layer) {
  // Reserving avoids reallocations for typical TOCs without trusting the input for a size.
  files_.reserve(std::min<std::size_t>(max_entries, 1024));
}

Error TocBuilder::fail(std::size_t index, std::string_view name, std::string_view reason) const {
  return make_error(std::errc::io_error, "cannot parse {} of {}: entry {} '{}': {}", format_name(format_),
                    layer_, index, shown(name), reason);
}

Error TocBuilder::fail_toc(std::string_view reason) const {
  return make_error(std::errc::io_error, "cannot parse {} of {}: {}", format_name(format_), layer_, reason);
}

std::string TocBuilder::chunk_name(std::size_t file, const TocChunk& c) const {
  return fmt::format("chunk at file offset {} of '{}' (entry {})", c.file_offset, shown(files_[file].path),
                     files_[file].toc_index);
}

Result<void> TocBuilder::add(const RawEntry& e, std::size_t index) {
  const std::string& type = e.str(Field::type);
  const std::string& raw_name = e.str(Field::name);
  for (Field f : {Field::digest, Field::chunk_digest}) {
    const std::string& d = e.str(f);
    if (!d.empty() && !util::is_sha256_digest(d)) {
      return fail(
          index, raw_name,
          fmt::format("{} '{}' is not \"sha256:\" and 64 lowercase hex digits", display_name(f), shown(d)));
    }
  }
  if (type == "chunk") {
    if (!open_reg_) return fail(index, raw_name, "a chunk entry that does not follow a non-empty reg entry");
    return add_chunk(e, index);
  }
  OCIFS_TRY(close_file());

  TocFile f;
  f.toc_index = index;
  auto kind = std::find_if(kKinds.begin(), kKinds.end(), [&](const auto& k) { return k.first == type; });
  if (type.empty()) return fail(index, raw_name, "no type");
  if (kind == kKinds.end()) return fail(index, raw_name, fmt::format("unknown type '{}'", shown(type)));
  f.kind = kind->second;

  auto path = util::normalise_path(raw_name);
  if (!path) return fail(index, raw_name, path.error().message);
  f.path = std::move(*path);
  if (f.path.empty() && f.kind != EntryKind::directory) {
    return fail(index, raw_name, fmt::format("a {} entry names the root directory", type));
  }
  f.mode = static_cast<std::uint32_t>(e.num(Field::mode) & 07777);
  std::optional<std::string> why = take_u32(e, Field::uid, f.uid);
  if (!why) why = take_u32(e, Field::gid, f.gid);
  if (why) return fail(index, raw_name, *why);
  if (const std::string& t = e.str(Field::modtime);
      !t.empty() && !util::parse_rfc3339(t, f.mtime_sec, f.mtime_nsec)) {
    return fail(index, raw_name, fmt::format("modtime '{}' is not an RFC 3339 time", shown(t)));
  }
  if (f.kind == EntryKind::symlink || f.kind == EntryKind::hardlink) {
    why = take_link(f, e.str(Field::link_name));
  } else if (f.kind == EntryKind::char_device || f.kind == EntryKind::block_device) {
    why = take_u32(e, Field::dev_major, f.dev_major);
    if (!why) why = take_u32(e, Field::dev_minor, f.dev_minor);
  }
  if (!why) why = take_xattrs(e, f);
  if (why) return fail(index, raw_name, *why);

  bool hidden = is_stargz_metadata(f.path);
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

std::optional<std::string> TocBuilder::take_link(TocFile& f, const std::string& link) const {
  if (f.kind == EntryKind::symlink) {
    if (link.empty()) return std::string("a symlink without linkName");
    if (auto problem = util::path_problem(link)) return fmt::format("the symlink target: {}", *problem);
    f.link_target = link;
    return std::nullopt;
  }
  if (link.empty()) return std::string("a hard link without linkName");
  auto target = util::normalise_path(link);
  if (!target) return fmt::format("the hard link target '{}': {}", shown(link), target.error().message);
  f.link_target = std::move(*target);
  auto it = seen_.find(f.link_target);
  if (it == seen_.end())
    return fmt::format("hard link to '{}', which no earlier entry has", shown(f.link_target));
  if (it->second == EntryKind::directory)
    return fmt::format("hard link to the directory '{}'", shown(f.link_target));
  return std::nullopt;
}

Result<void> TocBuilder::add_chunk(const RawEntry& e, std::size_t index) {
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

Result<void> TocBuilder::close_file() {
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

Result<Toc> TocBuilder::finish(int version) {
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

}  // namespace ocifs::layer::toc
