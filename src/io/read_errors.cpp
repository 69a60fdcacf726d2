#include "ocifs/io/read_errors.hpp"

namespace ocifs::io {

void ReadErrors::record(const Error& error) {
  std::lock_guard lock(mutex_);
  ++state_.count;
  state_.last = error.message;
}

ReadErrors::Snapshot ReadErrors::snapshot() const {
  std::lock_guard lock(mutex_);
  return state_;
}

}  // namespace ocifs::io
