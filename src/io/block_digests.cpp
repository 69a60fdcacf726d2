#include "ocifs/io/block_digests.hpp"

#include <algorithm>
#include <cstring>

namespace ocifs::io {

bool BlockDigests::covers(std::uint64_t size) const {
  return block_size > 0 && blob_size == size && digests.size() == (size + block_size - 1) / block_size;
}

BlockHasher::BlockHasher(std::uint64_t block_size) { result_.block_size = block_size; }

void BlockHasher::update(std::span<const std::byte> data) {
  while (!data.empty()) {
    auto take = std::min<std::uint64_t>(data.size(), result_.block_size - in_block_);
    hasher_.update(data.first(take));
    data = data.subspan(take);
    in_block_ += take;
    result_.blob_size += take;
    if (in_block_ == result_.block_size) {
      result_.digests.push_back(hasher_.digest());
      in_block_ = 0;
    }
  }
}

BlockDigests BlockHasher::finish() {
  if (in_block_ > 0) result_.digests.push_back(hasher_.digest());
  in_block_ = 0;
  return std::move(result_);
}

VerifiedSource::VerifiedSource(BlobSourcePtr inner, BlockDigests digests, std::shared_ptr<ReadErrors> errors)
    : inner_(std::move(inner)),
      digests_(std::move(digests)),
      errors_(std::move(errors)),
      verified_(std::make_unique<std::atomic<std::uint64_t>[]>((digests_.digests.size() + 63) / 64)) {}

bool VerifiedSource::is_verified(std::uint64_t block) const {
  return verified_[block / 64].load(std::memory_order_acquire) & (std::uint64_t{1} << (block % 64));
}

Result<void> VerifiedSource::verify_block(std::uint64_t block, std::span<std::byte> data) const {
  std::uint64_t start = block * digests_.block_size;
  OCIFS_TRY(inner_->read_exact(start, data));
  auto matches = [&] {
    util::Sha256 hasher;
    hasher.update(data);
    return hasher.digest() == digests_.digests[block];
  };
  bool good = matches();
  if (!good && inner_->discard(start, data.size())) {
    // A damaged cached copy: fetched again from where it came from, and checked again.
    OCIFS_TRY(inner_->read_exact(start, data));
    good = matches();
  }
  if (!good) {
    auto error =
        make_error(std::errc::io_error,
                   "cannot read {}: bytes {}-{} do not match the digest recorded when the blob was verified "
                   "(the blob changed or is corrupt)",
                   inner_->describe(), start, start + data.size() - 1);
    if (errors_) errors_->record(error);
    return error;
  }
  verified_[block / 64].fetch_or(std::uint64_t{1} << (block % 64), std::memory_order_acq_rel);
  return util::success();
}

Result<std::size_t> VerifiedSource::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (offset >= digests_.blob_size || buf.empty()) return std::size_t{0};
  const std::uint64_t end = std::min<std::uint64_t>(offset + buf.size(), digests_.blob_size);
  const std::uint64_t bs = digests_.block_size;
  std::vector<std::byte> block_data;
  // Block by block: verified blocks are read in place; a block seen for the first time is read
  // whole, checked, and the caller's part copied from the checked bytes.
  for (std::uint64_t at = offset; at < end;) {
    std::uint64_t block = at / bs;
    std::uint64_t block_start = block * bs;
    std::uint64_t block_end = std::min(block_start + bs, digests_.blob_size);
    std::uint64_t upto = std::min(end, block_end);
    auto out = buf.subspan(at - offset, upto - at);
    // Bytes of an unstable source (a cache that may fetch a range again) are checked every time.
    if (is_verified(block) && inner_->stable()) {
      OCIFS_TRY(inner_->read_exact(at, out));
    } else {
      block_data.resize(block_end - block_start);
      OCIFS_TRY(verify_block(block, block_data));
      std::memcpy(out.data(), block_data.data() + (at - block_start), out.size());
    }
    at = upto;
  }
  return static_cast<std::size_t>(end - offset);
}

}  // namespace ocifs::io
