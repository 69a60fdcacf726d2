#include "ocifs/image/archive_source.hpp"

#include "ocifs/compress/identity_decoder.hpp"
#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/layer/tar_walker.hpp"

namespace ocifs::image {

namespace {

// Links followed before giving up (Linux's MAXSYMLINKS).
constexpr int kMaxLinks = 40;

// Joins `path` onto `base` (a directory, "" = root) and normalises: no empty, "." or leading
// components; ".." pops (never above the root).
std::string normalize(std::string_view base, std::string_view path) {
  std::vector<std::string_view> parts;
  auto push = [&](std::string_view s) {
    std::size_t start = 0;
    while (start <= s.size()) {
      auto slash = s.find('/', start);
      auto part = s.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
      if (part == "..") {
        if (!parts.empty()) parts.pop_back();
      } else if (!part.empty() && part != ".") {
        parts.push_back(part);
      }
      if (slash == std::string_view::npos) break;
      start = slash + 1;
    }
  };
  if (!path.starts_with('/')) push(base);
  push(path);
  std::string out;
  for (auto part : parts) {
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

std::string_view parent_of(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

}  // namespace

Result<std::shared_ptr<const ArchiveSource>> ArchiveSource::open(io::BlobSourcePtr archive) {
  OCIFS_ASSIGN(auto encoding, compress::detect_encoding(*archive));
  compress::ScanOptions options;
  options.hash = false;
  std::unique_ptr<compress::StreamDecoder> decoder;
  if (encoding == compress::Encoding::tar) {
    decoder = std::make_unique<compress::IdentityDecoder>(archive, options);
  } else {
    OCIFS_ASSIGN(decoder, compress::make_stream_decoder(encoding, archive, options));
  }
  auto context = fmt::format("cannot list the members of {}", archive->describe());
  std::map<std::string, Member, std::less<>> members;
  layer::TarWalker walker(*decoder, archive->describe());
  while (true) {
    auto next = walker.next();
    if (!next) return std::move(next).error().with_context(context);
    if (!*next) break;
    auto& entry = **next;
    Member m;
    m.kind = entry.kind;
    m.offset = entry.data_offset;
    m.size = entry.size;
    m.sparse = !entry.sparse.empty();
    m.link_target = std::move(entry.link_target);
    members.insert_or_assign(std::move(entry.path), std::move(m));  // a later duplicate wins
  }
  io::BlobSourcePtr stream = archive;
  if (encoding != compress::Encoding::tar) {
    auto index = decoder->finish();
    if (!index) return std::move(index).error().with_context(context);
    if (index->zstd_spilled) {
      return make_error(std::errc::not_supported,
                        "{}: its zstd frames are too large to read in place; decompress it first (zstd -d)",
                        context);
    }
    OCIFS_ASSIGN(auto reader, compress::make_seekable_reader(*index, archive));
    stream = std::make_shared<compress::DecodedSource>(std::move(reader),
                                                       fmt::format("{} (decoded)", archive->describe()));
  }
  return std::shared_ptr<const ArchiveSource>(
      new ArchiveSource(std::move(archive), std::move(stream), encoding, std::move(members)));
}

Result<const std::pair<const std::string, ArchiveSource::Member>*> ArchiveSource::find(
    std::string_view path, std::string* last) const {
  std::string current = normalize("", path);
  for (int hops = 0; hops <= kMaxLinks; ++hops) {
    auto it = members_.find(current);
    if (it == members_.end()) {
      if (last) *last = std::move(current);
      return nullptr;
    }
    const Member& m = it->second;
    switch (m.kind) {
      case layer::EntryKind::regular:
        return &*it;
      case layer::EntryKind::symlink:
        current = normalize(parent_of(current), m.link_target);
        break;
      case layer::EntryKind::hardlink:
        current = normalize("", m.link_target);
        break;
      default:
        return make_error(std::errc::invalid_argument, "cannot read {} in {}: not a regular file", it->first,
                          archive_->describe());
    }
  }
  return make_error(std::errc::too_many_symbolic_link_levels,
                    "cannot read {} in {}: too many levels of links", path, archive_->describe());
}

Result<io::BlobSourcePtr> ArchiveSource::member(std::string_view path) const {
  std::string last;
  OCIFS_ASSIGN(auto found, find(path, &last));
  if (!found) {
    if (last != normalize("", path)) {
      return make_error(std::errc::no_such_file_or_directory,
                        "cannot read {} in {}: it links to {}, which is missing", path, archive_->describe(),
                        last);
    }
    return make_error(std::errc::no_such_file_or_directory, "cannot read {} in {}: no such member", path,
                      archive_->describe());
  }
  const auto& [name, m] = *found;
  if (m.sparse) {
    return make_error(std::errc::not_supported,
                      "cannot read {} in {}: sparse archive members are not supported", name,
                      archive_->describe());
  }
  if (m.offset + m.size > stream_->size()) {
    return make_error(std::errc::io_error,
                      "cannot read {} in {}: its data ends at offset {}, past the end ({})", name,
                      archive_->describe(), m.offset + m.size, stream_->size());
  }
  return io::BlobSourcePtr(std::make_shared<io::SliceSource>(
      stream_, m.offset, m.size, fmt::format("{}:{}", archive_->describe(), name)));
}

bool ArchiveSource::contains(std::string_view path) const {
  auto found = find(path);
  return found && *found;
}

std::vector<std::string> ArchiveSource::names() const {
  std::vector<std::string> out;
  out.reserve(members_.size());
  for (const auto& [name, m] : members_) out.push_back(name);
  return out;
}

}  // namespace ocifs::image
