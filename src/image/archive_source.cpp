#include "ocifs/image/archive_source.hpp"

#include "ocifs/compress/identity_decoder.hpp"
#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/layer/tar_walker.hpp"
#include "ocifs/util/path.hpp"

namespace ocifs::image {

namespace {

// Links followed before giving up (Linux's MAXSYMLINKS).
constexpr int kMaxLinks = 40;
// Decompression writes 1 MiB at a time: the write calls cost nothing next to zstd (~1 GB/s).
constexpr std::size_t kDecompressBuffer = 1u << 20;

// A member name as the archive's tar entries are named: ".." steps up, as a symlink's target
// does (never above the root). `from` is the directory a relative name starts in ("" = root).
Result<std::string> member_path(std::string_view name, std::string_view from = {}) {
  if (name.starts_with('/') || from.empty()) return util::normalise_path(name, util::DotDot::resolve);
  return util::normalise_path(fmt::format("{}/{}", from, name), util::DotDot::resolve);
}

std::string_view parent_of(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
}

// A zstd archive decompressed whole into `scratch`: the zstd CLI writes one frame, which cannot be
// read in place (a read would decode from the start), and skopeo reads such archives the same
// way, through a decompressed copy.
Result<io::BlobSourcePtr> decompress(const io::BlobSourcePtr& archive, cache::ScratchFile scratch) {
  compress::ScanOptions options;
  options.hash = false;
  OCIFS_ASSIGN(auto decoder, compress::make_stream_decoder(compress::Encoding::zstd, archive, options));
  std::vector<std::byte> buf(kDecompressBuffer);
  for (;;) {
    OCIFS_ASSIGN(std::size_t n, decoder->read(buf));
    if (n == 0) break;
    if (auto written = scratch.write(std::span(buf).first(n)); !written) {
      if (written.error().code != std::errc::file_too_large) {
        return std::move(written).error().with_context(
            fmt::format("cannot decompress {}", archive->describe()));
      }
      return make_error(
          std::errc::file_too_large,
          "cannot decompress {}: a zstd-compressed archive is decompressed into the cache directory, "
          "and this one holds more than the cache budget of {} bytes (--cache-max); decompress it "
          "first (zstd -d)",
          archive->describe(), scratch.limit());
    }
  }
  OCIFS_TRY(decoder->finish());  // trailing garbage after the last frame is an error
  return io::BlobSourcePtr(
      std::move(scratch).into_source(fmt::format("{} (decompressed)", archive->describe())));
}

}  // namespace

Result<std::shared_ptr<const ArchiveSource>> ArchiveSource::open(io::BlobSourcePtr archive,
                                                                 const ArchiveOptions& options) {
  OCIFS_ASSIGN(auto encoding, compress::detect_encoding(*archive));
  compress::ScanOptions scan;
  scan.hash = false;
  io::BlobSourcePtr stream = archive;  // the tar: the file itself, or its decoded view
  if (encoding == compress::Encoding::zstd) {
    if (!options.cache) {
      return make_error(
          std::errc::not_supported,
          "cannot decompress {}: a zstd-compressed archive needs a cache directory to decompress "
          "into",
          archive->describe());
    }
    OCIFS_ASSIGN(auto scratch, options.cache->create_scratch(options.decompress_limit));
    OCIFS_ASSIGN(stream, decompress(archive, std::move(scratch)));
  }
  std::unique_ptr<compress::StreamDecoder> decoder;
  if (encoding == compress::Encoding::gzip) {
    OCIFS_ASSIGN(decoder, compress::make_stream_decoder(encoding, archive, scan));
  } else {
    decoder = std::make_unique<compress::IdentityDecoder>(stream, scan);
  }
  // Errors of the walk and the decoder name the archive already.
  std::map<std::string, Member, std::less<>> members;
  layer::TarWalker walker(*decoder, archive->describe());
  while (true) {
    OCIFS_ASSIGN(auto next, walker.next());
    if (!next) break;
    auto& entry = *next;
    Member m;
    m.kind = entry.kind;
    m.offset = entry.data_offset;
    m.size = entry.size;
    m.sparse = !entry.sparse.empty();
    m.link_target = std::move(entry.link_target);
    members.insert_or_assign(std::move(entry.path), std::move(m));  // a later duplicate wins
  }
  if (encoding == compress::Encoding::gzip) {
    OCIFS_ASSIGN(auto index, decoder->finish());
    OCIFS_ASSIGN(auto reader, compress::make_seekable_reader(index, archive));
    stream = std::make_shared<compress::DecodedSource>(std::move(reader),
                                                       fmt::format("{} (decoded)", archive->describe()));
  }
  return std::shared_ptr<const ArchiveSource>(
      new ArchiveSource(std::move(archive), std::move(stream), encoding, std::move(members)));
}

Result<const std::pair<const std::string, ArchiveSource::Member>*> ArchiveSource::find(
    std::string_view path, std::string* last) const {
  auto normal = member_path(path);
  if (!normal) {
    return make_error(std::errc::no_such_file_or_directory, "cannot read {} in {}: {}", path, archive_->describe(),
                      normal.error().message);
  }
  std::string current = std::move(*normal);
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
      case layer::EntryKind::hardlink: {
        // A symlink's target is relative to its directory; a hard link's names a member.
        auto next = member_path(m.link_target, m.kind == layer::EntryKind::symlink ? parent_of(current) : "");
        if (!next) {
          return make_error(std::errc::no_such_file_or_directory, "cannot read {} in {}: it links to {}: {}", path,
                            archive_->describe(), m.link_target, next.error().message);
        }
        current = std::move(*next);
        break;
      }
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
    if (last != *member_path(path)) {  // (a path member_path refuses is an error from find())
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
