// ReadErrors: the reads of one layer that found bytes unlike the digests recorded when the layer
// was verified (a local blob changed under a live mount, a registry that keeps serving corrupt
// data): how many, and the last message. Recorded by the layer's VerifiedSources, shown by
// `ocifs status`. Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "ocifs/util/result.hpp"

namespace ocifs::io {

class ReadErrors {
 public:
  struct Snapshot {
    std::uint64_t count = 0;
    std::string last;  // the last error's message; empty while count is 0
  };

  void record(const Error& error);
  Snapshot snapshot() const;

 private:
  mutable std::mutex mutex_;
  Snapshot state_;
};

}  // namespace ocifs::io
