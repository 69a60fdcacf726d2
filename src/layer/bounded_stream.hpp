// BoundedStream: a StreamDecoder that forwards to another one and refuses to go past
// limits::kMaxDecodedLayerBytes of decoded stream, so that a decompression bomb (a gzip or zstd
// layer of a few MB that inflates to terabytes) costs a bounded amount of CPU and every offset
// and size taken from the stream fits the limits' arithmetic. One per scan; not synchronised.
#pragma once

#include <string>

#include "ocifs/compress/stream_decoder.hpp"

namespace ocifs::layer {

class BoundedStream final : public compress::StreamDecoder {
 public:
  BoundedStream(compress::StreamDecoder& inner, std::uint64_t limit, std::string layer_name)
      : inner_(inner), limit_(limit), layer_name_(std::move(layer_name)) {}

  Result<std::size_t> read(std::span<std::byte> out) override;
  Result<void> skip(std::uint64_t count) override;
  std::uint64_t position() const override { return inner_.position(); }
  // Reads what is left through the bound, then finishes the inner decoder (which then has
  // nothing left to read).
  Result<compress::SeekIndex> finish() override;
  std::string compressed_sha256() const override { return inner_.compressed_sha256(); }
  std::string decoded_sha256() const override { return inner_.decoded_sha256(); }
  bool needs_decoded_copy() const override { return inner_.needs_decoded_copy(); }

 private:
  Error too_large(std::uint64_t at) const;

  compress::StreamDecoder& inner_;
  std::uint64_t limit_;
  std::string layer_name_;
};

}  // namespace ocifs::layer
