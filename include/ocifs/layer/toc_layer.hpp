// Layers pulled lazily by their table of contents (eStargz, zstd:chunked): opened from the TOC
// instead of a scan. The first mount reads the footer and the TOC by range (two small requests),
// checks the TOC against the digest the manifest's layer annotations give, and builds the index
// from it; the footer and TOC stay in the blob cache, so a remount asks nothing of the registry.
// File data is fetched chunk by chunk as it is read, each chunk checked against its digest in the
// TOC (compress::ChunkedReader). The layer's whole-blob digest is never checked: the TOC's chain
// (manifest → TOC digest → chunk digests) covers every byte that is served.
//
// What a TOC cannot say exactly, and umoci unpack of the same layer would: names that are not
// UTF-8 (the producers write U+FFFD; ocifs reads those entries' tar headers back, see
// as_toc_spells), sub-second mtimes (whole seconds), sparse holes. Functions only; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "ocifs/layer/layer_scanner.hpp"

namespace ocifs::layer {

enum class TocFormat { none, estargz, zstd_chunked };

std::string_view to_string(TocFormat format);

// What a name becomes in a TOC: Go's encoding/json writes each byte that is not part of valid
// UTF-8 (overlong forms and surrogates included) as U+FFFD. A tar header's name is taken over the
// TOC's only if it spells the same.
std::string as_toc_spells(std::string_view raw);

// What the layer's annotations announce.
TocFormat toc_format_of(const LayerBlob& layer);

// Opens `layer` from its TOC. Errors name the layer: a footer or position outside the blob, a TOC
// that does not match its digest, a TOC the parser refuses (layer/lazy_toc.hpp), chunks without
// digests (such a layer can only be scanned).
Result<OpenLayer> open_toc_layer(const LayerBlob& layer, TocFormat format,
                                 const std::shared_ptr<compress::SpanCache>& spans);

}  // namespace ocifs::layer
