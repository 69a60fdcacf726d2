// DecodedTee: a StreamDecoder that forwards to another one and writes every decoded byte it
// passes on — also the ones skipped — to a cache file, so that a zstd layer's decoded stream is
// kept from the same single pass that indexes it, with the sha256 of each of its blocks.
// One per scan; not synchronised.
#pragma once

#include "ocifs/cache/cache.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/io/block_digests.hpp"

namespace ocifs::layer {

class DecodedTee final : public compress::StreamDecoder {
 public:
  DecodedTee(compress::StreamDecoder& inner, cache::PendingFile& out) : inner_(inner), out_(out) {}

  Result<std::size_t> read(std::span<std::byte> out) override;
  // Reads into a buffer instead of skipping, so the bytes reach the file.
  Result<void> skip(std::uint64_t count) override;
  std::uint64_t position() const override { return inner_.position(); }
  // Reads the rest of the stream through the tee (the decoded file must be whole), then
  // finishes the inner decoder.
  Result<compress::SeekIndex> finish() override;
  std::string compressed_sha256() const override { return inner_.compressed_sha256(); }
  std::string decoded_sha256() const override { return inner_.decoded_sha256(); }
  // Block digests of everything written; call after finish().
  io::BlockDigests block_digests() { return blocks_.finish(); }

 private:
  compress::StreamDecoder& inner_;
  cache::PendingFile& out_;
  io::BlockHasher blocks_;
};

}  // namespace ocifs::layer
