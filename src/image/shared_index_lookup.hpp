// Finding an image's shared layer indexes (layer/shared_index.hpp) in its registry: the newest
// referrer of the image manifest with ocifs's artifact type whose manifest checks out, and in it
// one blob per layer. What it finds is a hint: any problem is a warning, and the layers it does
// not cover are indexed the normal way. Functions only.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/cache.hpp"
#include "ocifs/cache/cached_blob_source.hpp"
#include "ocifs/layer/shared_index.hpp"
#include "ocifs/oci/image_ref.hpp"
#include "ocifs/oci/types.hpp"
#include "ocifs/registry/registry_client.hpp"

namespace ocifs::image {

struct SharedIndexLookup {
  std::string image_name;  // for messages
  const oci::Reference& ref;
  std::string manifest_digest;
  const cache::Cache& cache;
  std::shared_ptr<cache::BlobCache> blob_cache;
  std::shared_ptr<registry::RegistryClient> client;  // null: --offline (only what the cache remembers)
  cache::CachedBlobSource::Options blob_options;
  // A manifest by digest, as the image's own are fetched: from the cache, else from the registry
  // (checked against the digest), then kept.
  std::function<Result<std::string>(const oci::Descriptor&)> fetch_manifest;
};

// By layer digest: where each layer's shared index is. Its blobs are read through the blob cache.
std::map<std::string, layer::SharedIndexRef> find_shared_indexes(const SharedIndexLookup& in);

}  // namespace ocifs::image
