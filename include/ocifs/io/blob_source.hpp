// BlobSource: random access to the bytes of one blob, wherever they live (a file, a slice of an
// archive, a decompressed stream, a registry). Format code reads through this seam only.
// Implementations are safe to call from many threads at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ocifs/util/result.hpp"

namespace ocifs::io {

class BlobSource {
 public:
  virtual ~BlobSource() = default;

  virtual std::uint64_t size() const = 0;
  // Reads up to buf.size() bytes at `offset`; returns fewer only at the end of the blob.
  virtual Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const = 0;
  // What this is, for error messages: a path, "archive.tar:blobs/sha256/…", a digest.
  virtual std::string describe() const = 0;

  // Reads exactly buf.size() bytes or fails with an error naming the offset.
  Result<void> read_exact(std::uint64_t offset, std::span<std::byte> buf) const;

  // Whether bytes once read stay the same for this object's life (a file, memory). A cache that
  // may drop a range and fetch it again says no: VerifiedSource then checks every read.
  virtual bool stable() const { return true; }
  // Drops any cached copy of [offset, offset + length) so that the next read fetches it again;
  // false when there is nothing to drop (the bytes are the source's own).
  virtual bool discard(std::uint64_t /*offset*/, std::uint64_t /*length*/) const { return false; }
  // Brings [offset, offset + length) into a local cache, for a source that has one (a registry
  // blob), fetching what is missing; a no-op for bytes that are local anyway. For background
  // prefetching: it may take as long as the fetches do.
  virtual Result<void> prefetch(std::uint64_t /*offset*/, std::uint64_t /*length*/) const { return {}; }
  // Whether reads are waiting on fetches right now: a prefetcher lets them have the link.
  virtual bool fetching() const { return false; }
  // How many of the bytes [offset, offset + length) from `offset` on are local, i.e. can be read
  // without a fetch now (all of them for a file or memory).
  virtual std::uint64_t local_prefix(std::uint64_t /*offset*/, std::uint64_t length) const { return length; }
  // Whether reading [offset, offset + length) (within the blob) needs no fetch now.
  bool present(std::uint64_t offset, std::uint64_t length) const;
};

using BlobSourcePtr = std::shared_ptr<const BlobSource>;

// A window [offset, offset + length) of another source, e.g. one member of an uncompressed tar.
class SliceSource final : public BlobSource {
 public:
  SliceSource(BlobSourcePtr parent, std::uint64_t offset, std::uint64_t length, std::string name);

  std::uint64_t size() const override { return length_; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::string describe() const override { return name_; }

 private:
  BlobSourcePtr parent_;
  std::uint64_t offset_;
  std::uint64_t length_;
  std::string name_;
};

// Bytes held in memory (small manifests, tests).
class MemorySource final : public BlobSource {
 public:
  MemorySource(std::string data, std::string name) : data_(std::move(data)), name_(std::move(name)) {}

  std::uint64_t size() const override { return data_.size(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::string describe() const override { return name_; }

 private:
  std::string data_;
  std::string name_;
};

// Reads a whole (small) source into a string; refuses sources above `limit` bytes.
Result<std::string> read_all(const BlobSource& source, std::uint64_t limit);

}  // namespace ocifs::io
