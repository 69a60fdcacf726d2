// Prefetcher: after a mount is live, brings registry layers' bytes into the blob cache in the
// background, so that later reads are local: the ranges of the files the image's first mount
// read, then (`--prefetch=landmark`) the ranges an eStargz image marks as needed first
// (everything before its `.prefetch.landmark`: one request per layer up to kPiece), then
// (`--prefetch=all`) every layer whole. One request at a time, in pieces of at most kPiece, and
// none while reads are waiting on fetches of that blob: on-demand reads keep the link. One
// thread; stopped and joined by the destructor (after at most one piece).
#pragma once

#include <atomic>
#include <optional>
#include <string_view>
#include <thread>
#include <vector>

#include "ocifs/compress/seekable_reader.hpp"

namespace ocifs::layer {
struct LayerBlob;
struct ReadFirst;
}  // namespace ocifs::layer

namespace ocifs::image {

class Tree;
class ContentReader;

enum class PrefetchMode { none, landmark, all };

Result<PrefetchMode> parse_prefetch_mode(std::string_view text);

class Prefetcher {
 public:
  // The blob cache's largest request (CachedBlobSource::Options::max_request): 1.3 s at
  // 100 Mbit/s, the longest a read that arrives meanwhile waits for the link.
  static constexpr std::uint64_t kPiece = 16u << 20;

  using Range = compress::BlobRange;

  // Fetches `ranges` in order.
  explicit Prefetcher(std::vector<Range> ranges);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;

  bool done() const { return done_; }
  std::uint64_t failed_ranges() const { return failed_; }

 private:
  void run(std::stop_token stop);  // the thread: fetch_all inside its exception boundary
  void fetch_all(const std::stop_token& stop);

  std::vector<Range> ranges_;
  std::atomic<bool> done_{false};
  std::atomic<std::uint64_t> failed_{0};
  std::jthread thread_;  // last: started once the rest is set up
};

// What a mount fetches in the background once live, in order: the files the image's first mount
// read (`record`, inode indexes of `tree`; others are ignored) or, without a record, the ranges
// shared indexes list as read first on the machine that pushed them (`read_first`, per layer of
// `blobs`, by rank), the ranges eStargz layers mark as needed first (`landmarks`, per layer), then
// (all) every registry layer. Of the first part, the index bytes (checkpoint states) come before
// the layer bytes, and ranges that touch are fetched as one. Stable (local) blobs are never
// fetched whole. At most half the blob cache's budget (0: none), as for the first mount's
// streams: a plan that does not fit evicts its own start, and the chunks reads are waiting for.
// (Image::open's plan, a function of its own for the tests.)
std::vector<Prefetcher::Range> prefetch_plan(const Tree& tree, const ContentReader& content,
                                             const std::vector<std::uint32_t>& record,
                                             const std::vector<std::vector<layer::ReadFirst>>& read_first,
                                             const std::vector<layer::LayerBlob>& blobs,
                                             const std::vector<std::optional<std::uint64_t>>& landmarks,
                                             PrefetchMode mode, std::uint64_t budget);

}  // namespace ocifs::image
