// The StreamDecoder of an uncompressed tar: the decoded stream is the blob itself.
#include "ocifs/compress/identity_decoder.hpp"

#include <algorithm>
#include <array>

namespace ocifs::compress {

IdentityDecoder::IdentityDecoder(io::BlobSourcePtr blob, const ScanOptions& options)
    : blob_(std::move(blob)),
      hash_raw_(options.hash && options.hash_compressed),
      hash_decoded_(options.hash_decoded),
      verify_(options.hash) {}

Result<std::size_t> IdentityDecoder::read(std::span<std::byte> out) {
  OCIFS_ASSIGN(std::size_t n, blob_->read_at(position_, out));
  if (hashing()) hasher_.update(out.first(n));
  position_ += n;
  return n;
}

Result<void> IdentityDecoder::skip(std::uint64_t count) {
  if (count > blob_->size() - std::min(position_, blob_->size())) {
    return make_error(std::errc::io_error, "cannot read {}: data ends at offset {}, {} bytes short",
                      blob_->describe(), blob_->size(), position_ + count - blob_->size());
  }
  if (!verify_) {
    position_ += count;
    return util::success();
  }
  // The digest covers every byte, so skipped data is still read (in 1 MiB blocks), also when
  // the caller hashes the raw bytes itself as they go past.
  if (skip_buffer_.empty()) skip_buffer_.resize(1u << 20);
  auto& buf = skip_buffer_;
  while (count > 0) {
    auto want = std::min<std::uint64_t>(count, buf.size());
    OCIFS_TRY(blob_->read_exact(position_, std::span(buf).first(want)));
    if (hashing()) hasher_.update(std::span(buf).first(want));
    position_ += want;
    count -= want;
  }
  return util::success();
}

Result<SeekIndex> IdentityDecoder::finish() {
  if (position_ < blob_->size()) OCIFS_TRY(skip(blob_->size() - position_));
  if (hashing()) digest_ = hasher_.hex_digest();
  SeekIndex index;
  index.encoding = Encoding::tar;
  index.compressed_size = blob_->size();
  index.decoded_size = blob_->size();
  return index;
}

std::string IdentityDecoder::compressed_sha256() const { return hash_raw_ ? digest_ : std::string(); }
std::string IdentityDecoder::decoded_sha256() const { return hash_decoded_ ? digest_ : std::string(); }

}  // namespace ocifs::compress
