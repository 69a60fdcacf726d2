// IdentityDecoder: the StreamDecoder of an uncompressed blob. Hashes every byte, also the ones
// the caller skips. One per scan; not synchronised.
#pragma once

#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::compress {

class IdentityDecoder final : public StreamDecoder {
 public:
  IdentityDecoder(io::BlobSourcePtr blob, const ScanOptions& options);

  Result<std::size_t> read(std::span<std::byte> out) override;
  Result<void> skip(std::uint64_t count) override;
  std::uint64_t position() const override { return position_; }
  Result<SeekIndex> finish() override;
  std::string compressed_sha256() const override { return digest_; }
  std::string decoded_sha256() const override;

 private:
  io::BlobSourcePtr blob_;
  bool hash_decoded_;
  bool verify_;
  std::uint64_t position_ = 0;
  util::Sha256 hasher_;
  std::string digest_;
};

}  // namespace ocifs::compress
