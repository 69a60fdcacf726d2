// Resolving an ImageRef to one image: manifest, config and a BlobSource per layer, with the
// platform chosen from manifest lists. Local transports read everything in place (archives by
// member offset, never extracted); registries through the cache (registry_source.hpp). Functions only; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ocifs/io/blob_source.hpp"
#include "ocifs/layer/layer_scanner.hpp"
#include "ocifs/oci/image_ref.hpp"
#include "ocifs/oci/types.hpp"
#include "ocifs/registry/registry_client.hpp"

namespace ocifs::cache {
class Cache;
class BlobCache;
}  // namespace ocifs::cache

namespace ocifs::image {

// What to do with a shared layer index found in the registry (--shared-index).
enum class SharedIndexMode {
  use,     // read the layers it covers lazily, trusting whoever could push to the repository
  verify,  // the same, and stream and scan each such layer in the background: it fails unless
           // the index describes it exactly
  off,     // never look
};
Result<SharedIndexMode> parse_shared_index_mode(std::string_view text);

struct ResolveOptions {
  std::optional<oci::Platform> platform;  // default: Platform::host()
  // Registry references only: the cache keeps documents and tag resolutions, the blob cache
  // layer bytes; with `offline` nothing is asked of the registry.
  registry::RegistryOptions registry;
  bool offline = false;
  const cache::Cache* cache = nullptr;
  std::shared_ptr<cache::BlobCache> blob_cache;
  SharedIndexMode shared_index = SharedIndexMode::use;
};

struct ResolvedImage {
  std::string name;                  // ImageRef::str()
  oci::Descriptor manifest_descriptor;  // of the chosen manifest (digest, size, platform)
  std::string manifest_json;         // raw bytes as stored
  oci::Manifest manifest;
  std::string config_json;
  oci::ImageConfig config;
  std::vector<oci::Descriptor> platform_choices;  // entries of the manifest list, if any
  std::vector<layer::LayerBlob> layers;          // bottom first
};

Result<ResolvedImage> resolve_image(const oci::ImageRef& ref, const ResolveOptions& options = {});

}  // namespace ocifs::image
