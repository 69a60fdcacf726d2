// ZstdDecoder: the StreamDecoder of a zstd layer. Streams every frame through one ZSTD_DCtx,
// recording a ZstdFrame per data frame (skippable frames are hashed and skipped, not listed),
// with the window limited to 128 MiB (windowLog 27). One per scan; not synchronised.
#pragma once

#include <memory>
#include <vector>

#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::compress {

class ZstdDecoder final : public StreamDecoder {
 public:
  // 2^27 = 128 MiB: zstd's own default limit for decoders (ZSTD_WINDOWLOG_LIMIT_DEFAULT), which
  // `zstd --long=27` still fits and the 2 GiB windows of --long=31 do not.
  static constexpr int kWindowLogMax = 27;

  ZstdDecoder(io::BlobSourcePtr blob, const ScanOptions& options);
  ~ZstdDecoder() override;

  Result<std::size_t> read(std::span<std::byte> out) override;
  Result<void> skip(std::uint64_t count) override;
  std::uint64_t position() const override { return decoded_; }
  Result<SeekIndex> finish() override;
  std::string compressed_sha256() const override { return compressed_digest_; }
  std::string decoded_sha256() const override { return decoded_digest_; }
  bool needs_decoded_copy() const override {
    return largest_frame_ > kSpillFrameSize || (in_frame_ && frame_.decoded_size > kSpillFrameSize);
  }

 private:
  struct DCtxDeleter {
    void operator()(void* dctx) const;
  };

  Result<void> refill(std::size_t want);
  Error decode_error(std::string_view reason) const;
  std::uint64_t consumed() const { return in_offset_ + in_pos_; }

  io::BlobSourcePtr blob_;
  bool hash_raw_;
  bool hash_decoded_;
  std::unique_ptr<void, DCtxDeleter> dctx_;
  std::vector<std::byte> in_;
  std::uint64_t in_offset_ = 0;  // compressed offset of in_[0]
  std::size_t in_pos_ = 0;       // next byte zstd has not taken
  std::size_t in_size_ = 0;      // valid bytes in in_
  bool eof_ = false;             // every blob byte is in in_ or consumed
  bool in_frame_ = false;
  bool skippable_ = false;  // the current frame is a skippable frame
  ZstdFrame frame_;         // the current frame, sizes growing
  std::uint64_t decoded_ = 0;
  std::vector<ZstdFrame> frames_;
  std::uint64_t largest_frame_ = 0;  // decoded size of the largest finished data frame
  std::vector<std::byte> scratch_;
  util::Sha256 raw_hasher_;
  util::Sha256 decoded_hasher_;
  std::string compressed_digest_;
  std::string decoded_digest_;
  bool done_ = false;
  bool finished_ = false;
};

}  // namespace ocifs::compress
