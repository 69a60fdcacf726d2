#include "ocifs/image/prefetcher.hpp"
#include "ocifs/image/content_reader.hpp"
#include "ocifs/layer/layer_scanner.hpp"
#include "ocifs/util/thread_boundary.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace ocifs::image {

namespace {

// While a read is fetching, the prefetcher looks again this often: short next to a range request
// (tens of ms), so the link goes back to prefetching soon, long enough not to spin.
constexpr auto kYield = std::chrono::milliseconds(20);

}  // namespace

Result<PrefetchMode> parse_prefetch_mode(std::string_view text) {
  if (text == "none") return PrefetchMode::none;
  if (text == "landmark") return PrefetchMode::landmark;
  if (text == "all") return PrefetchMode::all;
  return make_error(std::errc::invalid_argument, "--prefetch takes none, landmark or all, not '{}'", text);
}

std::vector<Prefetcher::Range> prefetch_plan(const Tree& tree, const ContentReader& content,
                                             const std::vector<std::uint32_t>& record,
                                             const std::vector<std::vector<layer::ReadFirst>>& read_first,
                                             const std::vector<layer::LayerBlob>& blobs,
                                             const std::vector<std::optional<std::uint64_t>>& landmarks,
                                             PrefetchMode mode, std::uint64_t budget) {
  std::vector<Prefetcher::Range> ranges;
  for (std::uint32_t inode : record) {
    if (inode < tree.inode_count()) content.blob_ranges(inode, ranges);
  }
  if (record.empty()) {
    struct Ranked {
      std::uint32_t rank;
      std::size_t layer;
      const layer::ReadFirst* range;
    };
    std::vector<Ranked> ranked;
    for (std::size_t i = 0; i < read_first.size() && i < content.layer_count(); ++i) {
      for (const auto& r : read_first[i]) ranked.push_back({r.rank, i, &r});
    }
    std::stable_sort(ranked.begin(), ranked.end(), [](const Ranked& a, const Ranked& b) { return a.rank < b.rank; });
    for (const auto& r : ranked) {
      const std::size_t before = ranges.size();
      content.layer_blob_ranges(r.layer, r.range->offset, r.range->length, ranges);
      // The blob ranges run to the next checkpoint the index kept; decoding the range stops sooner.
      if (const std::uint64_t end = r.range->compressed_end) {
        for (std::size_t j = before; j < ranges.size(); ++j) {
          auto& b = ranges[j];
          if (!b.index && b.offset < end) b.length = std::min(b.length, end - b.offset);
        }
      }
    }
  }
  // Index bytes first (nothing decodes without them), then ranges that touch merged.
  std::stable_partition(ranges.begin(), ranges.end(), [](const Prefetcher::Range& r) { return r.index; });
  std::vector<Prefetcher::Range> merged;
  for (auto& r : ranges) {
    if (!merged.empty()) {
      auto& last = merged.back();
      if (last.blob == r.blob && r.offset >= last.offset && r.offset <= last.offset + last.length) {
        last.length = std::max(last.length, r.offset + r.length - last.offset);
        continue;
      }
    }
    merged.push_back(std::move(r));
  }
  ranges = std::move(merged);
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    if (landmarks[i] && !blobs[i].blob->stable()) ranges.push_back({blobs[i].blob, 0, *landmarks[i]});
  }
  for (std::size_t i = 0; i < blobs.size() && mode == PrefetchMode::all; ++i) {
    if (!blobs[i].blob->stable()) ranges.push_back({blobs[i].blob, 0, blobs[i].blob->size()});
  }
  if (budget == 0) return ranges;
  std::uint64_t left = budget / 2;
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    if (ranges[i].length >= left) {
      ranges[i].length = left;
      ranges.resize(left > 0 ? i + 1 : i);
      break;
    }
    left -= ranges[i].length;
  }
  return ranges;
}

Prefetcher::Prefetcher(std::vector<Range> ranges)
    : ranges_(std::move(ranges)), thread_([this](std::stop_token stop) { run(stop); }) {}

Prefetcher::~Prefetcher() {
  thread_.request_stop();
}

void Prefetcher::run(std::stop_token stop) {
  if (util::catch_all("prefetch", [&] { fetch_all(stop); })) ++failed_;  // reads fetch what they need
  done_ = true;
}

void Prefetcher::fetch_all(const std::stop_token& stop) {
  for (const auto& range : ranges_) {
    for (std::uint64_t at = range.offset; at < range.offset + range.length && !stop.stop_requested();) {
      if (range.blob->fetching()) {  // a read is waiting on the link: let it have it
        std::this_thread::sleep_for(kYield);
        continue;
      }
      const std::uint64_t piece = std::min(kPiece, range.offset + range.length - at);
      if (auto fetched = range.blob->prefetch(at, piece); !fetched) {
        // Reads fetch what they need themselves; a prefetch that fails just stops for this blob.
        spdlog::info("prefetch of {} stopped: {}", range.blob->describe(), fetched.error().message);
        ++failed_;
        break;
      }
      at += piece;
    }
  }
}

}  // namespace ocifs::image
