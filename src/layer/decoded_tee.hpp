// DecodedTee: a StreamDecoder that forwards to another one and writes every decoded byte it
// passes on — also the ones skipped — to a cache file, so that a zstd layer's decoded stream is
// kept from the same single pass that indexes it, with the sha256 of each of its blocks.
//
// The copy may take at most `limit` bytes (its share of --cache-max, decoded_copies.hpp): past
// that the file is dropped at once, and the scan goes on only while the layer may still turn out
// to be readable frame by frame; once the stream shows it needs the copy
// (StreamDecoder::needs_decoded_copy) reads fail with an error naming the layer and the limit.
// A decompression bomb therefore costs at most `limit` bytes of disk, and is refused after
// decoding about that much. One per scan; not synchronised.
#pragma once

#include <optional>

#include "ocifs/cache/cache.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/io/block_digests.hpp"

namespace ocifs::layer {

class DecodedTee final : public compress::StreamDecoder {
 public:
  DecodedTee(compress::StreamDecoder& inner, cache::PendingFile out, std::uint64_t limit,
             std::string layer_name)
      : inner_(inner), out_(std::move(out)), limit_(limit), layer_name_(std::move(layer_name)) {}

  Result<std::size_t> read(std::span<std::byte> out) override;
  // Reads into a buffer instead of skipping, so the bytes reach the file.
  Result<void> skip(std::uint64_t count) override;
  std::uint64_t position() const override { return inner_.position(); }
  // Reads the rest of the stream through the tee (the decoded file must be whole), then
  // finishes the inner decoder.
  Result<compress::SeekIndex> finish() override;
  std::string compressed_sha256() const override { return inner_.compressed_sha256(); }
  std::string decoded_sha256() const override { return inner_.decoded_sha256(); }
  bool needs_decoded_copy() const override { return inner_.needs_decoded_copy(); }

  // The file with the whole decoded stream, or nullopt when it went past the limit; after finish().
  std::optional<cache::PendingFile>& file() { return out_; }
  std::uint64_t written() const { return written_; }
  // Why the copy cannot be kept: the layer, the limit and what to do.
  Error over_limit() const;
  // Block digests of everything written; call after finish().
  io::BlockDigests block_digests() { return blocks_.finish(); }

 private:
  compress::StreamDecoder& inner_;
  std::optional<cache::PendingFile> out_;
  std::uint64_t limit_;
  std::string layer_name_;
  std::uint64_t written_ = 0;
  io::BlockHasher blocks_;
};

}  // namespace ocifs::layer
