// Cache: the on-disk cache directory, content-addressed by digest. Layout:
//
//   ROOT/index/sha256/<hex>.idx      layer indexes (LayerIndex::serialize)
//   ROOT/decoded/sha256/<hex>        decoded streams of zstd layers that cannot be read per frame
//                                    (part of the --cache-max budget: decoded_copies.hpp)
//   ROOT/documents/sha256/<hex>      registry manifests, indexes and configs (checked on read)
//   ROOT/refs/<host>/<repository>/<tag>  the manifest digest a registry tag last resolved to (under
//                                    a referrers tag sha256-<hex>: the shared index artifact last
//                                    used for that manifest, for --offline)
//   ROOT/access/sha256/<hex>         files an image's first mount read, by manifest digest
//   ROOT/tmp/                        temp files, renamed into place when complete; unnamed
//                                    scratch files (ScratchFile: decompressed archives)
//
// Every write is a temp file + rename, so readers never see half a file and two processes
// indexing the same layer both succeed. Stateless apart from the root path: thread-safe.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/cache/scratch_file.hpp"
#include "ocifs/io/fd.hpp"
#include "ocifs/io/file_source.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::cache {

class BlobCache;

// A file being written into the cache; removed unless commit() is called.
class PendingFile {
 public:
  PendingFile(io::Fd fd, std::filesystem::path temp, std::filesystem::path final_path)
      : fd_(std::move(fd)), temp_(std::move(temp)), final_(std::move(final_path)) {}
  PendingFile(PendingFile&&) = default;
  PendingFile& operator=(PendingFile&&) = default;
  ~PendingFile();

  Result<void> write(std::string_view data);
  // fsync + rename into place.
  Result<void> commit();

 private:
  io::Fd fd_;
  std::filesystem::path temp_;
  std::filesystem::path final_;
  bool committed_ = false;
};

class Cache {
 public:
  // --cache-dir, else $OCIFS_CACHE_DIR, else $XDG_CACHE_HOME/ocifs, else ~/.cache/ocifs.
  static std::filesystem::path default_root();
  static Result<Cache> open(std::filesystem::path root);

  const std::filesystem::path& root() const { return root_; }

  // Raw bytes of the stored index of a layer, or nullopt when there is none.
  Result<std::optional<std::string>> read_index(std::string_view digest) const;
  Result<void> write_index(std::string_view digest, std::string_view bytes) const;
  // The same as a file to read in pieces (a layer index can be hundreds of MB), and a file to
  // write one into, moved into place by PendingFile::commit().
  Result<std::optional<std::shared_ptr<io::FileSource>>> open_index(std::string_view digest) const;
  Result<PendingFile> create_index(std::string_view digest) const;
  bool has_index(std::string_view digest) const;
  void remove_index(std::string_view digest) const;

  // A manifest, index or config by digest; nullopt when absent. The bytes are checked against
  // the digest: a damaged copy is removed and reported absent.
  Result<std::optional<std::string>> read_document(std::string_view digest) const;
  Result<void> write_document(std::string_view digest, std::string_view bytes) const;

  // The files (inode indexes of the image's tree) the first mount of the image with manifest
  // `digest` read, in order: what a later cold mount prefetches first. A hint only: it decides
  // an order, never a byte, so it is not checked beyond its format (at most kMaxAccessRecord
  // numbers; a damaged record reads as none).
  static constexpr std::size_t kMaxAccessRecord = 1u << 20;
  Result<std::optional<std::vector<std::uint32_t>>> read_access_record(std::string_view digest) const;
  Result<void> write_access_record(std::string_view digest, const std::vector<std::uint32_t>& inodes) const;
  // The digest `tag` of `repository` at `host` last resolved to (for --offline); nullopt if never.
  Result<std::optional<std::string>> read_ref(std::string_view host, std::string_view repository,
                                              std::string_view tag) const;
  Result<void> write_ref(std::string_view host, std::string_view repository, std::string_view tag,
                         std::string_view digest) const;

  std::filesystem::path decoded_path(std::string_view digest) const;
  Result<PendingFile> create_decoded(std::string_view digest) const;
  // Decoded copies share the budget of the blob cache (--cache-max), when there is one: one copy
  // may be at most decoded_copy_limit() bytes. commit_decoded() makes room for `file` among the
  // other copies (least recently used go), moves it into place, and has the blob cache trim its
  // chunks so that blobs and copies together stay within the budget. touch_decoded() marks a
  // copy used (a mount opened it).
  void set_blob_cache(std::shared_ptr<BlobCache> blobs) { blobs_ = std::move(blobs); }
  std::uint64_t decoded_copy_limit() const;
  Result<void> commit_decoded(PendingFile& file, std::string_view digest, std::uint64_t bytes) const;
  void touch_decoded(std::string_view digest) const;

  // An unnamed file in tmp/ that takes at most `limit` bytes and is gone once closed.
  Result<ScratchFile> create_scratch(std::uint64_t limit) const;

 private:
  explicit Cache(std::filesystem::path root) : root_(std::move(root)) {}
  // "sha256:<hex>" -> "sha256/<hex>", refusing anything that is not a plain digest.
  Result<std::filesystem::path> digest_path(std::string_view digest) const;
  // refs/<host>/<repository>/<tag>, refusing components that could leave the refs directory.
  Result<std::filesystem::path> ref_path(std::string_view host, std::string_view repository,
                                         std::string_view tag) const;

  // Creates ROOT/tmp/<prefix>.PID.X, to be renamed to `final_path`.
  Result<PendingFile> create_pending(std::string_view prefix, std::filesystem::path final_path) const;

  std::filesystem::path root_;
  std::shared_ptr<BlobCache> blobs_;  // the budget; null: none
};

}  // namespace ocifs::cache
