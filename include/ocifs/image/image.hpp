// Image: an image ready to serve — resolved, every layer indexed (in parallel, reusing cached
// indexes), the merged Tree built, and a ContentReader over the layers' decoded streams.
// Immutable after open(): safe to use from every FUSE thread. Walked layers
// (FirstOpen::walk_uncompressed) each have a verification thread, stopped and joined by the
// destructor (at most one range request of waiting).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "ocifs/cache/cache.hpp"
#include "ocifs/compress/span_cache.hpp"
#include "ocifs/image/content_reader.hpp"
#include "ocifs/image/image_source.hpp"
#include "ocifs/image/prefetcher.hpp"
#include "ocifs/image/tree.hpp"

namespace ocifs::image {

struct LayerInfo {
  std::string digest;
  compress::Encoding encoding = compress::Encoding::tar;
  std::uint64_t compressed_size = 0;
  std::uint64_t decoded_size = 0;
  std::size_t entries = 0;
  bool from_cache = false;
  bool per_frame = false;  // zstd read frame by frame: sequential reads want a cursor per open file
  bool walked = false;     // shown from its tar headers; its bytes are verified in the background
  std::string toc_format;  // "estargz", "zstd:chunked": opened from its TOC, read chunk by chunk
  std::string index_source;  // layer::OpenLayer::index_source: cache, scan, walk, toc, shared
};

struct OpenOptions {
  ResolveOptions resolve;
  unsigned jobs = 0;  // layers indexed at once; 0 = number of CPUs
  // Called from indexing threads with a layer's position and the raw bytes read so far.
  std::function<void(std::size_t layer, std::uint64_t bytes_read)> on_progress;
  // Called once resolution is done, before indexing starts (progress display set-up).
  std::function<void(const ResolvedImage&)> on_resolved;
  // FirstOpen::walk_uncompressed (mount): remote uncompressed layers without an index are shown
  // from a walk of their tar headers, and verified in the background once open() has returned;
  // reads of their files wait for that. Other commands want everything verified up front.
  layer::FirstOpen first_open = layer::FirstOpen::scan;
  // What to fetch in the background once open() has returned (prefetcher.hpp). Unless none, the
  // files the image's first mount read (Cache::read_access_record) come first.
  PrefetchMode prefetch = PrefetchMode::none;
  // Keep the files this mount reads as the image's access record, if it has none yet (written
  // when the Image goes away).
  bool record_access = false;
  // Memory for decoded spans of compressed layers, shared by all of them (SpanCache).
  std::size_t span_cache_bytes = compress::SpanCache::kDefaultBudget;
};

class Image {
 public:
  ~Image();
  Image(const Image&) = delete;
  Image& operator=(const Image&) = delete;

  static Result<std::unique_ptr<Image>> open(const oci::ImageRef& ref, const cache::Cache& cache,
                                             const OpenOptions& options = {});

  const ResolvedImage& resolved() const { return resolved_; }
  const Tree& tree() const { return tree_; }
  const ContentReader& content() const { return *content_; }
  const std::vector<LayerInfo>& layers() const { return layers_; }
  // What `ocifs status` shows, as JSON: the image, and per layer its format, state (ready,
  // verifying, failed: its background verification failed, or reads found bytes unlike its
  // recorded digests), sizes, reads that failed verification and, for registry layers, bytes
  // cached and fetched, reads, cache hits and fetch errors. Safe from any thread.
  std::string status_json() const;

 private:
  Image() = default;

  ResolvedImage resolved_;
  Tree tree_;
  std::vector<LayerInfo> layers_;
  std::unique_ptr<ContentReader> content_;
  std::shared_ptr<compress::SpanCache> spans_;  // the layers' decoded spans; its read-ahead stops first
  std::vector<std::shared_ptr<const io::GatedSource>> gates_;  // per layer; null unless walked
  std::vector<std::shared_ptr<const io::ReadErrors>> read_errors_;  // per layer; null if read by TOC
  std::optional<cache::Cache> record_to_;  // where this mount's access record goes, if it is the first
  std::vector<std::jthread> verifiers_;
  std::unique_ptr<Prefetcher> prefetcher_;  // last: joined before the readers they open go away
};

}  // namespace ocifs::image
