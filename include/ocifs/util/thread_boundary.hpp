// The exception boundary of every thread ocifs starts (FUSE requests have theirs in
// fuse/operations.cpp). Exceptions are for bugs and bad_alloc only (result.hpp); one escaping a
// thread's function would be std::terminate and take every mount of the process with it. Each
// thread body runs inside catch_all, which logs what escaped and hands it back as an Error, so
// that the thread's owner fails just that layer, stream or read — the way it fails for any
// other error. Stateless: thread-safe.
#pragma once

#include <spdlog/spdlog.h>

#include <exception>
#include <new>
#include <optional>
#include <string_view>

#include "ocifs/util/result.hpp"

namespace ocifs::util {

// Runs fn(); nullopt when it returned, else the Error "cannot WHAT: …" for what it threw.
template <class Fn>
std::optional<Error> catch_all(std::string_view what, Fn&& fn) noexcept {
  std::optional<Error> error;
  try {
    fn();
    return std::nullopt;
  } catch (const std::bad_alloc&) {
    error = make_error(std::errc::not_enough_memory, "cannot {}: out of memory", what);
  } catch (const std::exception& e) {
    error = make_error(std::errc::io_error, "cannot {}: internal error: {}", what, e.what());
  } catch (...) {
    error = make_error(std::errc::io_error, "cannot {}: internal error (an unknown exception)", what);
  }
  try {
    spdlog::error("{}", error->message);
  } catch (...) {  // logging itself ran out of memory: the Error still reaches the owner
  }
  return error;
}

}  // namespace ocifs::util
