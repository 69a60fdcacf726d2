// `ocifs index --push`: the indexes this machine built for an image's layers, shared through the
// image's registry as an OCI 1.1 artifact whose subject is the image manifest (one blob per layer:
// layer/shared_index.hpp), so that other machines mount it lazily. On registries without the
// referrers API the referrers tag schema's index (`sha256-<hex>`) is updated too, last, so that
// a push that fails leaves it as it was. Functions only.
#pragma once

#include <string>
#include <vector>

#include "ocifs/cache/cache.hpp"
#include "ocifs/image/image_source.hpp"
#include "ocifs/image/tree.hpp"
#include "ocifs/layer/shared_index.hpp"
#include "ocifs/registry/registry_client.hpp"

namespace ocifs::image {

struct SharedLayerReport {
  std::string layer_digest;
  std::string blob_digest;      // empty: not shared (`skipped` says why)
  std::uint64_t blob_size = 0;  // the shared index blob
  std::uint64_t head_size = 0;  // of which the head (what a mount fetches first)
  std::size_t checkpoints = 0;
  std::uint64_t spacing = 0;    // decoded bytes between them
  std::size_t read_first = 0;   // ranges listed as read first, and checkpoints kept for them
  std::size_t read_first_checkpoints = 0;
  std::string skipped;
};

struct SharedIndexPush {
  std::string artifact_digest;
  bool referrers_api = false;  // the registry keeps referrers itself (no tag schema update)
  std::vector<SharedLayerReport> layers;
};

// Pushes the shared index of `image`, whose layers must have verified indexes in `cache` (an
// image just opened with SharedIndexMode::off). Layers read by their TOC (eStargz,
// zstd:chunked) are lazy already and are left out, as are zstd layers that need a decoded copy.
// `read_first`, per layer (may be empty): what to list as read first in each layer's index.
Result<SharedIndexPush> push_shared_index(const ResolvedImage& image, const cache::Cache& cache,
                                          registry::RegistryClient& client,
                                          const layer::SharedIndexOptions& options = {},
                                          const std::vector<std::vector<layer::ReadFirst>>& read_first = {});

// Per layer of `tree`'s image (`layers` of them): the data of the files an access record lists
// (Cache::read_access_record: inode indexes in the order the image's first mount read them),
// ranked by that order. Inodes the tree does not have, and files without data, are skipped.
std::vector<std::vector<layer::ReadFirst>> read_first_of(const Tree& tree, const std::vector<std::uint32_t>& record,
                                                         std::size_t layers);

}  // namespace ocifs::image
