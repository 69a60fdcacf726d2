// Progress: indexing progress on stderr — one line per layer (bytes, rate, time left) and a
// total. On a terminal it is repainted in place ten times a second from its own thread and
// erased at the end; on a pipe it is silent unless asked for (--progress), and then prints a
// line when a layer is done and the total every few seconds. Quiet wins. The callbacks are
// called from indexing threads: counters are atomics.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ocifs/image/image.hpp"

namespace ocifs::cli {

class Progress {
 public:
  Progress(bool quiet, bool forced);
  ~Progress();

  // Hooks the display into image opening.
  void attach(image::OpenOptions& options);
  void finish();

 private:
  void start(const image::ResolvedImage& image);
  void paint(bool final);
  std::string layer_line(std::size_t layer, double secs) const;

  bool enabled_;
  bool terminal_;
  std::vector<std::uint64_t> sizes_;
  std::vector<std::string> names_;
  std::vector<bool> reported_;  // pipe mode: the layer's "done" line was printed (painter only)
  std::unique_ptr<std::atomic<std::uint64_t>[]> done_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::steady_clock::time_point last_total_;
  std::size_t painted_lines_ = 0;  // terminal mode: lines to move up before repainting
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread painter_;
};

}  // namespace ocifs::cli
