// A layer's index as a registry blob other machines use instead of reading the layer whole
// (`ocifs index --push`, then any mount of the image): the entries, block digests and seek index
// of a verified scan, laid out to be read by range. A small head comes first (everything but the
// gzip checkpoints' inflate states, zstd-compressed), then each checkpoint's state on its own,
// fetched only when a read needs its span. Byte table in shared_index.cpp.
//
// Trust: the head is checked against the sha256 the artifact manifest's annotation gives, each
// state against the sha256 in the head, each blob byte a read uses against the head's block
// digests. A shared index is still only as trustworthy as whoever can push to the repository
// (ocifs(1), SHARED INDEXES): `--shared-index=verify` checks it against the layer.
//
// Functions and one thread-safe class (the states fetched on demand).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/io/blob_source.hpp"
#include "ocifs/layer/layer_index.hpp"
#include "ocifs/layer/metadata_budget.hpp"

namespace ocifs::layer {

// The artifact a shared index travels in, and its annotations (one blob per layer).
inline constexpr std::string_view kSharedIndexArtifactType = "application/vnd.ocifs.shared-index.v1";
inline constexpr std::string_view kSharedIndexBlobType = "application/vnd.ocifs.shared-index.layer.v1";
inline constexpr std::string_view kAnnotationLayerDigest = "dev.ocifs.layer.digest";
inline constexpr std::string_view kAnnotationIndexVersion = "dev.ocifs.index.version";
inline constexpr std::string_view kAnnotationHeadDigest = "dev.ocifs.index.head.digest";
inline constexpr std::string_view kAnnotationHeadSize = "dev.ocifs.index.head.size";
inline constexpr std::uint32_t kSharedIndexVersion = 2;

// A part of the layer the image's first mount read (on the machine that pushed): its decoded
// range and its place in that mount's read order. A shared index keeps checkpoints for these
// (and their states first, together), and lists them so that a mount elsewhere fetches them at
// once, in that order, instead of one read after another as the workload asks.
struct ReadFirst {
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::uint32_t rank = 0;
  // In a shared index: decoding the range reads no blob byte at or past this (0: not known).
  std::uint64_t compressed_end = 0;
};
// At most this many per layer (what an access record holds, Cache::kMaxAccessRecord).
inline constexpr std::size_t kMaxReadFirst = 1u << 20;

struct SharedIndexOptions {
  // Decoded bytes between the gzip checkpoints kept (at least; member starts are all kept, they
  // cost no state). A read inflates on average half this from its checkpoint, fetching what
  // that takes. 0: the smallest of 512 KiB, 1, 2, 4 … 32 MiB whose index is at most
  // `max_share` of the layer's compressed size (the local index keeps one every 512 KiB, ~8% of
  // a layer: states are 2-19 KiB each).
  std::uint64_t checkpoint_spacing = 0;
  double max_share = 0.018;
  // What the first mount read of this layer, in its read order (by rank; select_read_first).
  // The checkpoint before each range and those inside it are kept whatever the spacing, and
  // the spacing chosen is the smallest that keeps the whole within `max_share`.
  std::vector<ReadFirst> read_first;
  // The layer's blob (verified reads): with it, each read-first range gets a checkpoint exactly
  // where it starts and its exact compressed end, decoded here; without, the scan's checkpoints
  // bound them (up to 512 KiB of decoded bytes before and after each).
  io::BlobSourcePtr blob;
};
inline constexpr std::uint64_t kMinCheckpointSpacing = 512u << 10;
inline constexpr std::uint64_t kMaxCheckpointSpacing = 32u << 20;  // well inside SeekIndex's 64 MiB spans

struct SharedIndexBlob {
  std::string bytes;             // the blob
  std::uint64_t head_size = 0;   // [0, head_size) is the head
  std::string head_digest;       // "sha256:<hex>" of the head
  std::size_t checkpoints = 0;   // gzip checkpoints kept (member starts included)
  std::uint64_t spacing = 0;     // the checkpoint spacing chosen
  std::size_t states_bytes = 0;  // of those, bytes of inflate states
  std::size_t read_first = 0;    // ranges listed as read first
  std::size_t read_first_checkpoints = 0;  // checkpoints kept for them
};

// The shared form of a verified layer index (one from a scan: its states are all there). A zstd
// layer that needs a decoded copy in the cache cannot be read from a shared index: not_supported.
Result<SharedIndexBlob> build_shared_index(const LayerIndex& index, const SharedIndexOptions& options = {});

// A layer's gzip checkpoints as select_read_first weighs them, without the states themselves
// (an image's indexes hold ~8% of its layers in states: they are weighed one layer at a time).
struct CheckpointCosts {
  std::vector<std::uint64_t> offsets;     // decoded offset of each checkpoint
  std::vector<std::uint32_t> state_sizes;  // bytes of its packed state; 0 at member starts
  std::uint64_t decoded_size = 0;
};
CheckpointCosts checkpoint_costs(const LayerIndex& index);

// Of the ranges an image's first mount read (per layer of `layers`: the checkpoints of its
// verified index, null for a layer not shared), those to list as read first: by rank while the
// states of the checkpoints they need fit `budget` bytes (across all layers).
std::vector<std::vector<ReadFirst>> select_read_first(const std::vector<const CheckpointCosts*>& layers,
                                                      const std::vector<std::vector<ReadFirst>>& ranges,
                                                      std::uint64_t budget);

// Where a layer's shared index is, as its artifact manifest says.
struct SharedIndexRef {
  io::BlobSourcePtr blob;  // the index blob, read by range
  std::string head_digest;
  std::uint64_t head_size = 0;
};

// Reads and checks the head, and returns the index, its gzip states to be fetched from `ref.blob`
// when first needed (SeekIndex::remote_states), and in `read_first` (if given) the ranges the
// head lists as read first. Errors say what is wrong with the index (the caller ignores it and
// indexes the layer itself); the counts are charged to `budget` as LayerIndex::load does.
Result<LayerIndex> load_shared_index(const SharedIndexRef& ref, MetadataBudget* budget = nullptr,
                                     std::string_view layer_name = "layer",
                                     std::vector<ReadFirst>* read_first = nullptr);

}  // namespace ocifs::layer
