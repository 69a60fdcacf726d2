// Layer scanning: one streaming pass over a layer blob that verifies its digest, walks its tar
// headers and records the seek index, persisted in the cache; open_layer() reuses a stored index
// when it checks out. Functions only; each call is independent, so layers scan in parallel.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <stop_token>
#include <string>

#include "ocifs/cache/cache.hpp"
#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/compress/span_cache.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/io/gated_source.hpp"
#include "ocifs/io/read_errors.hpp"
#include "ocifs/layer/layer_index.hpp"
#include "ocifs/layer/metadata_budget.hpp"
#include "ocifs/layer/shared_index.hpp"

namespace ocifs::layer {

struct LayerBlob {
  io::BlobSourcePtr blob;
  // "sha256:<hex>": the blob's digest, or (digest_of_decoded) the digest of its decoded tar, as
  // docker-archive's diff_ids are. It keys the cache too.
  std::string digest;
  bool digest_of_decoded = false;
  std::string name;  // for messages, e.g. "layer 2 (sha256:ab12…)"
  // Remote blobs: starts fetching the whole blob in the background, for a layer about to be
  // scanned. Empty for local blobs.
  std::function<void()> prefetch;
  // The manifest's media type says plain tar. A hint (the encoding is detected from the bytes):
  // such a layer is likely to be walked rather than streamed (FirstOpen::walk_uncompressed).
  bool declared_uncompressed = false;
  // The manifest's annotations of the layer: a TOC's digest and position (toc_layer.hpp).
  std::map<std::string, std::string> annotations{};
  // The manifest's media type of the layer (empty for docker-archive layers). A hint too: a
  // layer called gzip or zstd whose bytes are neither is read as a plain tar, and when that
  // fails the error says what the media type promised.
  std::string media_type{};
  // What the image's layers may hold together (util/limits.hpp), shared by its layers; null:
  // the layer is held to the limits alone.
  std::shared_ptr<MetadataBudget> budget{};
  // An index of this layer another machine pushed to the registry (shared_index.hpp): used when
  // there is none in the cache, instead of reading the layer whole.
  std::optional<SharedIndexRef> shared_index{};
  // With shared_index: the whole blob is streamed in the background and scanned; the layer is
  // failed (reads get EIO) unless its digest and the scan's entries, block digests and decoded
  // bytes agree with the shared index (--shared-index=verify).
  bool verify_shared_index = false;
};

// Called now and then with the raw blob bytes read so far.
using ProgressFn = std::function<void(std::uint64_t bytes_read)>;

// Scans `layer` once: decodes, walks tar headers, verifies the digest over every byte, and
// returns the index. zstd layers whose frames are too large to read per frame get their decoded
// stream written to the cache (committed only if the digest verifies), within its share of the
// cache budget (Cache::decoded_copy_limit; a layer that needs more is refused). A layer that
// decodes to more than limits::kMaxDecodedLayerBytes is refused.
Result<LayerIndex> scan_layer(const LayerBlob& layer, const cache::Cache& cache, const ProgressFn& progress = {});

struct OpenLayer {
  std::shared_ptr<const LayerIndex> index;
  compress::SeekableReaderPtr reader;  // the decoded stream
  bool from_cache = false;             // the index was loaded, not scanned
  // Set when `index` came from a header walk (FirstOpen::walk_uncompressed): the reader's reads
  // wait until this has run. It scans the whole blob, verifying its digest, checks that the scan
  // found exactly the walked entries, stores the index and lets the reads through; on any failure
  // the reads get its error instead. A stop requested through the token ends it at its next read
  // (and keeps the cached bytes: they were not found bad). Call once, from any thread.
  std::function<Result<void>(std::stop_token)> verify{};
  // With `verify`: the gate its reads wait on (open once verified, or failed), for status.
  std::shared_ptr<const io::GatedSource> gate{};
  // The reads that found bytes unlike the layer's recorded block digests, for status (null for
  // a layer read by its TOC: its chunks are checked by the ChunkedReader).
  std::shared_ptr<const io::ReadErrors> read_errors{};
  // "estargz" or "zstd:chunked" when opened from its TOC (toc_layer.hpp); empty otherwise.
  std::string toc_format{};
  // Where the index came from: "cache", "scan", "walk" (tar headers, verified in the background),
  // "toc" or "shared" (a shared index from the registry), for status.
  std::string index_source{};
  // eStargz `.prefetch.landmark`: the blob's bytes before this hold what the image's author
  // marked as needed first.
  std::optional<std::uint64_t> landmark_end{};
  // From a shared index (`use`): the decoded ranges the pushing machine's first mount read, in
  // that order (ReadFirst::rank), for the prefetcher when this machine has no record of its own.
  std::vector<ReadFirst> read_first{};
};

// How a layer without a stored index is opened.
enum class FirstOpen {
  scan,  // one verified pass over the whole blob before anything is shown
  // A remote (unstable) uncompressed layer: its tar headers are walked by range (header_walk.hpp)
  // and its tree is shown at once; its bytes are served only after OpenLayer::verify. Other
  // layers are scanned.
  walk_uncompressed,
};

// Loads the layer's index from the cache (rebuilding it if missing, damaged or of another
// format version), scanning and persisting it otherwise, and opens a reader on its stream.
// Gzip readers keep decoded spans in `spans` (shared by an image's layers; null: their own).
Result<OpenLayer> open_layer(const LayerBlob& layer, const cache::Cache& cache, const ProgressFn& progress = {},
                             const std::shared_ptr<compress::SpanCache>& spans = nullptr,
                             FirstOpen first_open = FirstOpen::scan);

}  // namespace ocifs::layer
