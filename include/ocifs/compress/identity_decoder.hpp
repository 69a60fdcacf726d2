// IdentityDecoder: the StreamDecoder of an uncompressed blob. Reads every byte, also the ones the
// caller skips (unless ScanOptions::hash is off), and hashes them when a digest is asked for
// (hash_compressed or hash_decoded: the same bytes). One per scan; not synchronised.
#pragma once

#include <vector>

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
  std::string compressed_sha256() const override;
  std::string decoded_sha256() const override;

 private:
  bool hashing() const { return hash_raw_ || hash_decoded_; }

  io::BlobSourcePtr blob_;
  bool hash_raw_;
  bool hash_decoded_;
  bool verify_;  // read skipped bytes instead of seeking over them
  std::vector<std::byte> skip_buffer_;
  std::uint64_t position_ = 0;
  util::Sha256 hasher_;
  std::string digest_;
};

}  // namespace ocifs::compress
