// Result<T> / Error: how the core reports failure. Exceptions are for bugs and bad_alloc only.
// Plain values: not synchronised, like any value type.
#pragma once

#include <cassert>
#include <string>
#include <system_error>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace ocifs::util {

// An error is a portable errno-like code (what the FUSE edge replies) plus a message that reads
// "cannot <verb> <object>: <reason>" and names the digest, offset or path involved.
struct Error {
  std::errc code = std::errc::io_error;
  std::string message;

  int errno_value() const { return static_cast<int>(code); }
  // Prefixes context: Error{..., "x"}.with_context("cannot open y") -> "cannot open y: x".
  Error with_context(std::string_view context) const {
    return Error{code, fmt::format("{}: {}", context, message)};
  }
};

template <class... Args>
Error make_error(std::errc code, fmt::format_string<Args...> format, Args&&... args) {
  return Error{code, fmt::format(format, std::forward<Args>(args)...)};
}

// Error from the current errno (or an explicit one), e.g. after a failed syscall.
Error errno_error(int err, std::string_view context);

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::move(value)) {}
  Result(Error error) : state_(std::move(error)) {}

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(state_); }
  const T& value() const& { assert(ok()); return std::get<0>(state_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& { assert(!ok()); return std::get<1>(state_); }
  Error&& error() && { assert(!ok()); return std::get<1>(std::move(state_)); }

 private:
  std::variant<T, Error> state_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error)), ok_(false) {}

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& { assert(!ok_); return error_; }
  Error&& error() && { assert(!ok_); return std::move(error_); }

 private:
  Error error_;
  bool ok_ = true;
};

inline Result<void> success() { return {}; }

}  // namespace ocifs::util

namespace ocifs {
using util::Error;
using util::make_error;
using util::Result;
}  // namespace ocifs

// Evaluates a Result-returning expression; on error returns the error from the enclosing function.
#define OCIFS_TRY_CAT2(a, b) a##b
#define OCIFS_TRY_CAT(a, b) OCIFS_TRY_CAT2(a, b)
#define OCIFS_TRY(expr)                                        \
  do {                                                         \
    auto&& ocifs_try_result_ = (expr);                         \
    if (!ocifs_try_result_) return std::move(ocifs_try_result_).error(); \
  } while (0)
// Declares `decl` from the value of a Result-returning expression, or returns its error.
#define OCIFS_ASSIGN(decl, expr) OCIFS_ASSIGN_IMPL(OCIFS_TRY_CAT(ocifs_result_, __LINE__), decl, expr)
#define OCIFS_ASSIGN_IMPL(tmp, decl, expr)          \
  auto tmp = (expr);                                \
  if (!tmp) return std::move(tmp).error();          \
  decl = std::move(tmp).value()
