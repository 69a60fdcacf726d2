// GatedSource: a blob whose bytes must not be served yet. Its tree can be shown before its bytes
// are verified (an uncompressed registry layer indexed from its tar headers alone), but its bytes
// cannot: reads wait until open() supplies the source to read through (a VerifiedSource, once
// the whole blob has matched its digest) or fail() ends the wait with the error every read then
// gets. Either is final. A read waits at most until its thread's deadline (util/deadline.hpp),
// then fails with std::errc::timed_out. Thread-safe.
//
// StoppableSource: reads fail once a stop is requested, so that a background pass over a blob
// (a verification that an unmount cuts short) ends at its next read.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <stop_token>

#include "ocifs/io/blob_source.hpp"

namespace ocifs::io {

class GatedSource final : public BlobSource {
 public:
  GatedSource(std::uint64_t size, std::string name) : size_(size), name_(std::move(name)) {}

  // Lets reads through `inner` (of the same size). Ignored after open() or fail().
  void open(BlobSourcePtr inner);
  // Every read, waiting or to come, gets `error`. Ignored after open() or fail().
  void fail(Error error);
  bool is_open() const;
  // The error given to fail(), if it was called.
  std::optional<Error> failure() const;

  std::uint64_t size() const override { return size_; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::string describe() const override { return name_; }
  bool stable() const override { return false; }
  bool discard(std::uint64_t offset, std::uint64_t length) const override;
  // Forwarded once open; nothing to fetch for before (the verification fetches it all).
  Result<void> prefetch(std::uint64_t offset, std::uint64_t length) const override;
  bool fetching() const override;
  std::uint64_t local_prefix(std::uint64_t offset, std::uint64_t length) const override;

 private:
  // Waits for open() or fail() (at most until the thread's deadline); the source to read
  // through, or the error.
  Result<BlobSourcePtr> wait() const;
  // The source given to open(), or null; the lock is not held while the caller uses it.
  BlobSourcePtr opened() const;

  std::uint64_t size_;
  std::string name_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  BlobSourcePtr inner_;         // under mu_
  std::optional<Error> error_;  // under mu_
};

class StoppableSource final : public BlobSource {
 public:
  StoppableSource(BlobSourcePtr inner, std::stop_token stop) : inner_(std::move(inner)), stop_(std::move(stop)) {}

  std::uint64_t size() const override { return inner_->size(); }
  // ECANCELED once a stop is requested; otherwise the inner source's read.
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::string describe() const override { return inner_->describe(); }
  bool stable() const override { return inner_->stable(); }
  bool discard(std::uint64_t offset, std::uint64_t length) const override { return inner_->discard(offset, length); }
  Result<void> prefetch(std::uint64_t offset, std::uint64_t length) const override {
    return inner_->prefetch(offset, length);
  }
  bool fetching() const override { return inner_->fetching(); }
  std::uint64_t local_prefix(std::uint64_t offset, std::uint64_t length) const override {
    return inner_->local_prefix(offset, length);
  }

 private:
  BlobSourcePtr inner_;
  std::stop_token stop_;
};

}  // namespace ocifs::io
