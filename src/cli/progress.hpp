// Progress: a one-line indexing progress display on a terminal (stderr), repainted ten times a
// second from its own thread; silent when stderr is not a terminal or when quiet. The callbacks
// are called from indexing threads: counters are atomics.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ocifs/image/image.hpp"

namespace ocifs::cli {

class Progress {
 public:
  explicit Progress(bool quiet);
  ~Progress();

  // Hooks the display into image opening.
  void attach(image::OpenOptions& options);
  void finish();

 private:
  void start(const image::ResolvedImage& image);
  void paint(bool final);

  bool enabled_;
  std::vector<std::uint64_t> sizes_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> done_;
  std::chrono::steady_clock::time_point started_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread painter_;
};

}  // namespace ocifs::cli
