// Per-block sha256 of a blob, recorded while the whole blob was verified against its digest,
// so that later reads can check just the blocks they touch. A blob's digest covers every byte;
// re-hashing a 1 GiB layer to serve a 4 KiB read would cost a second, a 64 KiB block ~0.05 ms.
//
// BlockDigests: plain value. BlockHasher: one sequential stream; not synchronised.
// VerifiedSource: thread-safe; each block is checked once per source (an atomic bitmap), the
// first time a read touches it; a block that does not match is recorded in its ReadErrors.
#pragma once

#include <array>
#include <atomic>
#include <memory>
#include <vector>

#include "ocifs/io/blob_source.hpp"
#include "ocifs/io/read_errors.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::io {

struct BlockDigests {
  // = cache::ChunkMap::kChunkSize (a block is checked whole, so it is fetched whole). Indexes
  // stored with other block sizes stay valid.
  static constexpr std::uint64_t kDefaultBlockSize = 64u << 10;

  std::uint64_t block_size = kDefaultBlockSize;
  std::uint64_t blob_size = 0;
  std::vector<std::array<std::uint8_t, 32>> digests;  // ceil(blob_size / block_size) of them

  bool covers(std::uint64_t size) const;  // consistent with a blob of `size` bytes
};

class BlockHasher {
 public:
  explicit BlockHasher(std::uint64_t block_size = BlockDigests::kDefaultBlockSize);
  // Feeds the next bytes of the blob, in order.
  void update(std::span<const std::byte> data);
  BlockDigests finish();

 private:
  BlockDigests result_;
  util::Sha256 hasher_;
  std::uint64_t in_block_ = 0;
};

class VerifiedSource final : public BlobSource {
 public:
  // `errors` (may be null) counts the reads that found a block unlike its digest.
  VerifiedSource(BlobSourcePtr inner, BlockDigests digests, std::shared_ptr<ReadErrors> errors = nullptr);

  std::uint64_t size() const override { return inner_->size(); }
  // Serves blocks already checked straight from the inner source; a block touched for the first
  // time is read whole and checked, and the bytes returned are the checked ones.
  // A block that does not match is an EIO error naming the blob and the block's offsets.
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;
  std::string describe() const override { return inner_->describe(); }
  Result<void> prefetch(std::uint64_t offset, std::uint64_t length) const override {
    return inner_->prefetch(offset, length);
  }
  bool fetching() const override { return inner_->fetching(); }
  std::uint64_t local_prefix(std::uint64_t offset, std::uint64_t length) const override {
    return inner_->local_prefix(offset, length);
  }

 private:
  bool is_verified(std::uint64_t block) const;
  // Reads block `block` into `data` (its exact length) and checks it.
  Result<void> verify_block(std::uint64_t block, std::span<std::byte> data) const;

  BlobSourcePtr inner_;
  BlockDigests digests_;
  std::shared_ptr<ReadErrors> errors_;
  mutable std::unique_ptr<std::atomic<std::uint64_t>[]> verified_;  // one bit per block
};

}  // namespace ocifs::io
