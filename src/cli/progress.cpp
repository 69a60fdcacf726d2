#include "progress.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace ocifs::cli {

namespace {

std::string human(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  return fmt::format("{:.1f} {}", bytes, units[u]);
}

}  // namespace

Progress::Progress(bool quiet) : enabled_(!quiet && ::isatty(STDERR_FILENO)) {}

Progress::~Progress() { finish(); }

void Progress::attach(image::OpenOptions& options) {
  if (!enabled_) return;
  options.on_resolved = [this](const image::ResolvedImage& image) { start(image); };
  options.on_progress = [this](std::size_t layer, std::uint64_t bytes) {
    if (done_ && layer < sizes_.size()) done_[layer].store(bytes, std::memory_order_relaxed);
  };
}

void Progress::start(const image::ResolvedImage& image) {
  for (const auto& layer : image.layers) sizes_.push_back(layer.blob->size());
  done_ = std::make_unique<std::atomic<std::uint64_t>[]>(sizes_.size());
  started_ = std::chrono::steady_clock::now();
  painter_ = std::thread([this] {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; })) paint(false);
  });
}

void Progress::paint(bool final) {
  std::uint64_t total = 0, done = 0;
  std::size_t complete = 0;
  for (std::size_t i = 0; i < sizes_.size(); ++i) {
    auto d = std::min(done_[i].load(std::memory_order_relaxed), sizes_[i]);
    total += sizes_[i];
    done += d;
    complete += d == sizes_[i];
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  double rate = secs > 0 ? done / secs : 0;
  std::string eta = rate > 0 && done < total ? fmt::format(", {:.0f} s left", (total - done) / rate) : "";
  std::fprintf(stderr, "\r\033[Kindexing %zu/%zu layers: %s / %s (%s/s%s)%s", complete, sizes_.size(),
               human(done).c_str(), human(total).c_str(), human(rate).c_str(), eta.c_str(), final ? "\n" : "");
  std::fflush(stderr);
}

void Progress::finish() {
  if (!painter_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  painter_.join();
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
}

}  // namespace ocifs::cli
