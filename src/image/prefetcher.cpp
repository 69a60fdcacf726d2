#include "ocifs/image/prefetcher.hpp"
#include "ocifs/util/thread_boundary.hpp"

#include <spdlog/spdlog.h>

#include <chrono>

namespace ocifs::image {

namespace {

constexpr auto kYield = std::chrono::milliseconds(20);

}  // namespace

Result<PrefetchMode> parse_prefetch_mode(std::string_view text) {
  if (text == "none") return PrefetchMode::none;
  if (text == "landmark") return PrefetchMode::landmark;
  if (text == "all") return PrefetchMode::all;
  return make_error(std::errc::invalid_argument, "--prefetch takes none, landmark or all, not '{}'", text);
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
