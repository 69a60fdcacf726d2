// DecodedCopies: the decoded streams of zstd layers that cannot be read frame by frame, kept
// under ROOT/decoded/sha256/<hex> (Cache::create_decoded), seen as a part of the cache budget.
// --cache-max bounds blob chunks and decoded copies together: the copies may take at most a
// share of it (share_of(): half), the least recently used going first; the blob cache counts
// what they take when it trims its chunks (blob_cache.hpp).
//
// Last use is the file's mtime, set when a mount opens the copy (touch()). Stateless apart from
// the root: thread-safe. Processes sharing a cache may remove each other's copies; a process
// reading one keeps its bytes (the open file), and the next mount decodes the layer again.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace ocifs::cache {

class DecodedCopies {
 public:
  struct Copy {
    std::string digest;  // "sha256:<hex>" of the layer
    std::uint64_t bytes = 0;
    std::int64_t last_use = 0;  // seconds since the epoch
  };
  struct Trimmed {
    std::uint64_t files = 0;
    std::uint64_t bytes = 0;
  };

  explicit DecodedCopies(std::filesystem::path root) : dir_(std::move(root) / "decoded" / "sha256") {}

  // What decoded copies may take of a cache budget: one copy, and all of them together. A budget
  // of 0 (no limit) allows what a layer can decode to (limits::kMaxDecodedLayerBytes).
  static std::uint64_t share_of(std::uint64_t budget);

  std::vector<Copy> list() const;  // least recently used first
  std::uint64_t total_bytes() const;
  // Removes copies, least recently used first, until at most `target_bytes` remain; never the
  // copy of `keep` (a digest).
  Trimmed trim(std::uint64_t target_bytes, std::string_view keep = {}) const;
  // Marks the copy of `digest` used now.
  void touch(std::string_view digest) const;

 private:
  std::filesystem::path dir_;
};

}  // namespace ocifs::cache
