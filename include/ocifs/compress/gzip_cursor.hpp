// GzipCursor: one live ISA-L inflate stream over a gzip blob, positioned by the checkpoints of its
// SeekIndex. Reads at or after its position continue decoding as long as no checkpoint lies
// between the position and the offset asked for; anything else restarts from the last checkpoint
// at or before the offset. Crosses member boundaries. Not synchronised: one user at a time.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "ocifs/compress/seekable_reader.hpp"

namespace ocifs::compress {

class IsalInflater;

class GzipCursor final : public ReadCursor {
 public:
  // `index` must be a validated gzip index (points sorted, the first at decoded offset 0).
  GzipCursor(std::shared_ptr<const SeekIndex> index, io::BlobSourcePtr blob);
  ~GzipCursor() override;

  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) override;

  // Decodes up to `offset` and returns a checkpoint there, as a scan would have taken it (its
  // state packed with zstd at `level`), or nullopt where none can be taken (at a member's end).
  // For `ocifs index --push`: checkpoints exactly where reads will start.
  Result<std::optional<GzipCheckpoint>> checkpoint_at(std::uint64_t offset, int level);
  // The blob offset of the first byte the decoding has not consumed: decoding as far as it has
  // come read nothing at or past it.
  std::uint64_t input_position() const { return consumed(); }

 private:
  Result<void> restart(const GzipCheckpoint& point);
  // Fills `out` completely (callers clamp it to the decoded size) or fails.
  Result<void> inflate_into(std::span<std::byte> out);
  Result<void> check_trailer();
  Result<void> refill();
  // Over a network, input missing for a read is fetched in one request: what decoding from the
  // position to the read's end (`target`, decoded) will need, as estimated from the compression
  // ratio of the span starting at `point` (plan_fetches, per read; fetch_ahead, from refill),
  // rather than one request per input block as decoding asks for them.
  void plan_fetches(const GzipCheckpoint& point, std::uint64_t target);
  void fetch_ahead();
  std::uint64_t consumed() const;
  Error error(std::string_view reason) const;

  std::shared_ptr<const SeekIndex> index_;
  io::BlobSourcePtr blob_;
  std::unique_ptr<IsalInflater> inflater_;
  bool live_ = false;  // the stream is positioned at position_
  bool eof_ = false;   // the blob has no more bytes
  std::uint64_t position_ = 0;
  std::vector<std::byte> in_;
  std::uint64_t in_offset_ = 0;  // compressed offset of in_[0]
  std::size_t in_size_ = 0;
  std::vector<std::byte> scratch_;  // decoded bytes before the offset asked for
  std::uint64_t target_ = 0;        // plan_fetches: the decoded end of the current read
  double ratio_ = 0;                // compressed bytes per decoded byte around it (0: unknown)
  std::uint64_t fetch_limit_ = 0;   // no fetch ahead goes past this blob offset
};

}  // namespace ocifs::compress
