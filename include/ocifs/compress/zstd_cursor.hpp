// ZstdCursor: a ReadCursor over a ZstdReader that keeps its ZSTD_DCtx and the last frame it
// decoded, so that reads inside one frame decode it once. Not synchronised: one user at a time.
#pragma once

#include <memory>
#include <vector>

#include "ocifs/compress/zstd_reader.hpp"

namespace ocifs::compress {

class ZstdCursor final : public ReadCursor {
 public:
  explicit ZstdCursor(std::shared_ptr<const ZstdReader> reader);
  ~ZstdCursor() override;

  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) override;

 private:
  struct DCtxDeleter {
    void operator()(void* dctx) const;
  };

  std::shared_ptr<const ZstdReader> reader_;
  std::unique_ptr<void, DCtxDeleter> dctx_;
  std::size_t frame_ = 0;  // the frame in decoded_, when has_frame_
  bool has_frame_ = false;
  std::vector<std::byte> decoded_;
  std::vector<std::byte> compressed_;
};

}  // namespace ocifs::compress
