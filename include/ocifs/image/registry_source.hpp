// Resolving a registry reference (distribution API): the manifest by tag or digest, nested
// indexes with the platform chosen, the config; each layer a cache::CachedBlobSource over the
// persistent blob cache, fetched lazily from the registry. Manifests, indexes and configs are
// kept in the cache (documents/), and the digest each tag last resolved to (refs/), so that
// --offline resolves from the cache alone. Functions only; thread-safe.
#pragma once

#include "ocifs/image/image_source.hpp"

namespace ocifs::image {

// Needs options.cache and options.blob_cache. Online it asks the registry for the tag's
// manifest every time (tags move) and everything else only when the cache lacks it.
Result<ResolvedImage> resolve_registry(const oci::ImageRef& ref, const ResolveOptions& options);

// Every artifact the registry lists as referring to manifest `digest` (shared indexes,
// signatures, SBOMs: referrers API, else the referrers tag schema), newest first; empty offline.
Result<std::vector<oci::Descriptor>> list_referrers(const oci::ImageRef& ref, const ResolveOptions& options,
                                                    std::string_view digest);

}  // namespace ocifs::image
