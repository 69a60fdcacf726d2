// The header walk: an uncompressed layer's entry table read from its tar headers alone, by range,
// never reading the data of a file larger than the read-ahead window. For a registry layer on
// its first mount, so the tree can go live before the whole blob has arrived.
//
// Nothing it returns is verified (a tar blob has one digest, over every byte): its index may be
// shown, never trusted. open_layer (FirstOpen::walk_uncompressed) pairs it with a verified scan
// that must agree with it before any byte of the layer is served.
#pragma once

#include "ocifs/layer/layer_index.hpp"
#include "ocifs/layer/layer_scanner.hpp"

namespace ocifs::layer {

// Walks `layer`'s tar headers. The blob is read ahead in a window that doubles while the walk
// reads on (skipping less than kWindowAlign past its end: a run of small files costs few
// requests) and drops back to kMinWindow after a longer skip over file data; windows end on
// kWindowAlign boundaries. `progress` gets
// the walk's position in the blob. The index has a plain-tar seek index and the layer's digest,
// and no block digests.
Result<LayerIndex> walk_tar_headers(const LayerBlob& layer, const ProgressFn& progress = {});

// 1 MiB: four blob-cache chunks, the shortest present run a registry stream skips rather than
// downloads again (cached_blob_source.cpp), so the walk and the verification after it fetch every
// byte once. 8 MiB at most: what a stream would bring in the time of a round trip or two.
inline constexpr std::uint64_t kMinWindow = 1u << 20;
inline constexpr std::uint64_t kMaxWindow = 8u << 20;
inline constexpr std::uint64_t kWindowAlign = 256u << 10;

}  // namespace ocifs::layer
