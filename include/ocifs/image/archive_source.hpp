// ArchiveSource: the members of a tar archive (an oci-archive or docker-archive file) read in
// place: each member is a SliceSource of the archive, never extracted. A gzip-compressed archive
// (`docker save | gzip`) is decoded once to list its members and record a seek index; members
// are then slices of the decoded view (compress::DecodedSource). A zstd-compressed one
// (`.tar.zst`) is decompressed whole into a cache::ScratchFile, within a byte limit, and read
// from there: the zstd CLI writes a single frame, which has no place to resume from but its start.
// Immutable once opened: safe to use from many threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/cache/cache.hpp"
#include "ocifs/compress/encoding.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/layer/tar_entry.hpp"

namespace ocifs::image {

struct ArchiveOptions {
  // Where a zstd-compressed archive is decompressed (null: such archives are refused), and how
  // many decoded bytes it may take there (the cache budget, --cache-max).
  const cache::Cache* cache = nullptr;
  std::uint64_t decompress_limit = 0;
};

class ArchiveSource {
 public:
  // Walks the archive's tar headers once (data is seeked over, not read, when uncompressed).
  static Result<std::shared_ptr<const ArchiveSource>> open(io::BlobSourcePtr archive,
                                                           const ArchiveOptions& options = {});

  // The regular member at `path` ("./x", "/x" and "x" are the same), symlinks (relative to the
  // member's directory, as skopeo writes them for shared layers) and hard links followed.
  // A missing member is an error naming the archive and the path (errc::no_such_file_or_directory).
  Result<io::BlobSourcePtr> member(std::string_view path) const;
  bool contains(std::string_view path) const;
  std::vector<std::string> names() const;  // every member path, sorted

  compress::Encoding encoding() const { return encoding_; }
  std::string describe() const { return archive_->describe(); }

 private:
  struct Member {
    layer::EntryKind kind = layer::EntryKind::regular;
    std::uint64_t offset = 0;  // data offset in the decoded stream
    std::uint64_t size = 0;
    bool sparse = false;
    std::string link_target;
  };

  ArchiveSource(io::BlobSourcePtr archive, io::BlobSourcePtr stream, compress::Encoding encoding,
                std::map<std::string, Member, std::less<>> members)
      : archive_(std::move(archive)),
        stream_(std::move(stream)),
        encoding_(encoding),
        members_(std::move(members)) {}

  // The regular member `path` leads to after following links; nullptr if there is none (then
  // `last` receives the path that was missing).
  Result<const std::pair<const std::string, Member>*> find(std::string_view path,
                                                           std::string* last = nullptr) const;

  io::BlobSourcePtr archive_;  // the file as stored
  io::BlobSourcePtr stream_;   // the decoded tar stream (== archive_ when uncompressed)
  compress::Encoding encoding_;
  std::map<std::string, Member, std::less<>> members_;
};

}  // namespace ocifs::image
