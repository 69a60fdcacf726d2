#include "progress.hpp"
#include "ocifs/util/thread_boundary.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
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

std::string rate_and_eta(std::uint64_t done, std::uint64_t total, double secs) {
  double rate = secs > 0 ? done / secs : 0;
  if (done >= total) return fmt::format("{}/s", human(rate));
  if (rate <= 0) return "starting";
  return fmt::format("{}/s, {:.0f} s left", human(rate), (total - done) / rate);
}

// Pipe mode repeats the total this often: a log shows the mount is alive without a line a chunk.
constexpr auto kPipeTotalEvery = std::chrono::seconds(5);

}  // namespace

Progress::Progress(bool quiet, bool forced)
    : enabled_(!quiet && (forced || ::isatty(STDERR_FILENO))), terminal_(::isatty(STDERR_FILENO)) {}

Progress::~Progress() { finish(); }

void Progress::attach(image::OpenOptions& options) {
  if (!enabled_) return;
  options.on_resolved = [this](const image::ResolvedImage& image) { start(image); };
  options.on_progress = [this](std::size_t layer, std::uint64_t bytes) {
    if (done_ && layer < sizes_.size()) done_[layer].store(bytes, std::memory_order_relaxed);
  };
}

void Progress::start(const image::ResolvedImage& image) {
  for (const auto& layer : image.layers) {
    sizes_.push_back(layer.blob->size());
    names_.push_back(layer.name);
  }
  reported_.assign(sizes_.size(), false);
  done_ = std::make_unique<std::atomic<std::uint64_t>[]>(sizes_.size());
  started_ = last_total_ = std::chrono::steady_clock::now();
  if (terminal_) paint(false);  // at once: what is about to be indexed, even if it takes 50 ms
  painter_ = std::thread([this] {
    (void)util::catch_all("paint the progress line", [this] {  // the indexing goes on without it
      std::unique_lock lock(mutex_);
      while (!wake_.wait_for(lock, std::chrono::milliseconds(100), [this] { return stop_; })) paint(false);
    });
  });
}

std::string Progress::layer_line(std::size_t i, double secs) const {
  auto d = std::min(done_[i].load(std::memory_order_relaxed), sizes_[i]);
  return fmt::format("{:<30} {:>10} / {:<10} {}", names_[i], human(d), human(sizes_[i]),
                     d >= sizes_[i] ? "done" : rate_and_eta(d, sizes_[i], secs));
}

void Progress::paint(bool final) {
  auto now = std::chrono::steady_clock::now();
  double secs = std::chrono::duration<double>(now - started_).count();
  std::uint64_t total = 0, done = 0;
  std::size_t complete = 0;
  for (std::size_t i = 0; i < sizes_.size(); ++i) {
    auto d = std::min(done_[i].load(std::memory_order_relaxed), sizes_[i]);
    total += sizes_[i];
    done += d;
    complete += d == sizes_[i];
  }
  auto total_line = fmt::format("indexing {}/{} layers: {} / {} ({})", complete, sizes_.size(), human(done),
                                human(total), rate_and_eta(done, total, secs));
  std::string out;
  if (terminal_) {
    // Back to the first line of the previous paint, then every line rewritten and cleared.
    if (painted_lines_ > 0) out += fmt::format("\033[{}F", painted_lines_);
    for (std::size_t i = 0; i < sizes_.size(); ++i) out += "\033[K  " + layer_line(i, secs) + "\n";
    out += "\033[K" + total_line + "\n";
    painted_lines_ = sizes_.size() + 1;
  } else {
    for (std::size_t i = 0; i < sizes_.size(); ++i) {
      if (reported_[i] || done_[i].load(std::memory_order_relaxed) < sizes_[i]) continue;
      reported_[i] = true;
      out += "  " + layer_line(i, secs) + "\n";
    }
    if (final || now - last_total_ >= kPipeTotalEvery) {
      last_total_ = now;
      out += total_line + "\n";
    }
  }
  std::fputs(out.c_str(), stderr);
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
  if (terminal_) {
    // Erase the display: the mount's own messages follow.
    if (painted_lines_ > 0) std::fprintf(stderr, "\033[%zuF\033[J", painted_lines_);
  } else {
    paint(true);
  }
  std::fflush(stderr);
}

}  // namespace ocifs::cli
