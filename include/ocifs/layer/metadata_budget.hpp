// MetadataBudget: what the layers of one image may hold together in memory (util/limits.hpp:
// entries, metadata bytes, xattr and sparse records), charged as each layer's index is built or
// loaded, before it is allocated, so that an image past a limit is refused having cost at most
// one entry (or one index header) more than the limit. Layers of an image share one budget;
// without one (tests, a verification rescan) a layer is held to the same limits alone.
// Thread-safe: layers are indexed in parallel (atomic counters).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "ocifs/util/result.hpp"

namespace ocifs::layer {

// What one entry, or one whole index, costs.
struct MetadataUse {
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;    // paths, link targets, xattr names and values
  std::uint64_t records = 0;  // xattrs and sparse extents
};

class MetadataBudget {
 public:
  // What was being added when a limit was passed, e.g. "entry 'a/b' (header offset 1536)" or
  // "its stored index": only formatted then.
  using What = std::function<std::string()>;

  // Adds `use` to the image's total. An error (file_too_large) naming the layer, `what` and the
  // limit passed; the charge then stays, so every later charge fails too.
  Result<void> charge(const MetadataUse& use, std::string_view layer_name, const What& what);

  // Gives back a charge whose index was not kept after all (a stored index that failed to load).
  void release(const MetadataUse& use);

  MetadataUse used() const;

  // The same check for one layer alone: `total` is what the layer holds with `use` added.
  static Result<void> check(const MetadataUse& total, std::string_view layer_name, const What& what);

 private:
  std::atomic<std::uint64_t> entries_{0};
  std::atomic<std::uint64_t> bytes_{0};
  std::atomic<std::uint64_t> records_{0};
};

}  // namespace ocifs::layer
