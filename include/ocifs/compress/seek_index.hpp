// SeekIndex: what random access into one decoded layer stream needs, recorded during the single
// scan of the blob and persisted inside the layer index file. Plain value; not synchronised.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/compress/encoding.hpp"
#include "ocifs/io/blob_source.hpp"

namespace ocifs::compress {

// A resume point inside a gzip stream: either the start of a member, or a snapshot of the
// ISA-L inflate state taken between two calls (it holds the bit buffer, the current block's
// decoding tables and the last 32 KiB of output; see src/compress/isal_inflater.hpp).
struct GzipCheckpoint {
  std::uint64_t compressed_offset = 0;  // the next blob byte the decoder reads from here
  std::uint64_t decoded_offset = 0;     // decoded stream position of this point
  bool member_start = false;            // the point is a gzip member header: no state needed
  // The inflate state, zstd-compressed (~19 KiB of 87 KiB); empty at member starts.
  std::string state;
};

// Inflate states kept outside the index: a shared index (layer/shared_index.hpp) carries only
// where each checkpoint's state is, and a state is fetched the first time a read needs its span.
class CheckpointStates {
 public:
  virtual ~CheckpointStates() = default;
  // The packed state of gzip checkpoint `point` (what GzipCheckpoint::state would hold), checked;
  // an error (EIO) when it cannot be fetched or does not match what the index recorded.
  virtual Result<std::shared_ptr<const std::string>> state(std::size_t point) const = 0;
  // Where that state lies (blob, offset, length), to fetch it ahead of the read that needs it;
  // nothing when it is not fetched from anywhere.
  struct Location {
    io::BlobSourcePtr blob;
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };
  virtual std::optional<Location> location(std::size_t point) const = 0;
};

// One zstd frame: where it starts in the blob and in the decoded stream.
struct ZstdFrame {
  std::uint64_t compressed_offset = 0;
  std::uint64_t compressed_size = 0;
  std::uint64_t decoded_offset = 0;
  std::uint64_t decoded_size = 0;
};

struct SeekIndex {
  Encoding encoding = Encoding::tar;
  std::uint64_t compressed_size = 0;
  std::uint64_t decoded_size = 0;
  std::vector<GzipCheckpoint> gzip_points;  // sorted by decoded_offset; first at 0, a member start
  std::vector<ZstdFrame> zstd_frames;       // sorted; skippable frames are not listed
  // zstd whose frames are too large to decode per read (one frame, or frames over
  // kSpillFrameSize): the decoded stream is kept in the cache and read with pread.
  bool zstd_spilled = false;
  // Set when the checkpoints' states are not in gzip_points (their `state` is empty but at member
  // starts): GzipCursor asks this for them. Not serialised.
  std::shared_ptr<const CheckpointStates> remote_states;

  // Versioned binary form, documented in seek_index.cpp; embedded in the layer index file.
  std::string serialize() const;
  static Result<SeekIndex> deserialize(std::string_view bytes);
};

// Frames above this decoded size are not decoded per read: one frame of a few MiB costs a few
// ms to decode, so a 4 KiB read would pay for it every time.
inline constexpr std::uint64_t kSpillFrameSize = 8u << 20;

}  // namespace ocifs::compress
