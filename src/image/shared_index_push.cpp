#include "ocifs/image/shared_index_push.hpp"

#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <optional>

#include "ocifs/io/block_digests.hpp"
#include "ocifs/layer/layer_index.hpp"
#include "ocifs/layer/toc_layer.hpp"
#include "ocifs/oci/referrers.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::image {

namespace {

// Now as RFC 3339 in UTC, to the second: what orders the referrers of one type.
std::string now_rfc3339() {
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}",
                     std::chrono::floor<std::chrono::seconds>(std::chrono::system_clock::now()));
}

// The layer's verified index from the cache.
Result<layer::LayerIndex> cached_index(const layer::LayerBlob& blob, const cache::Cache& cache) {
  OCIFS_ASSIGN(auto file, cache.open_index(blob.digest));
  if (!file) {
    return make_error(std::errc::no_such_file_or_directory, "no index of {} in the cache (it was not scanned here)",
                      blob.name);
  }
  OCIFS_ASSIGN(auto index, layer::LayerIndex::load(**file, nullptr, blob.name));
  if (index.digest() != blob.digest) {
    return make_error(std::errc::invalid_argument, "the cached index of {} describes {}", blob.name, index.digest());
  }
  return index;
}

}  // namespace

std::vector<std::vector<layer::ReadFirst>> read_first_of(const Tree& tree, const std::vector<std::uint32_t>& record,
                                                         std::size_t layers) {
  std::vector<std::vector<layer::ReadFirst>> out(layers);
  std::uint32_t rank = 0;
  for (std::uint32_t inode : record) {
    if (inode >= tree.inode_count()) continue;
    const Inode& node = tree.inode(inode);
    if (!node.is_regular() || node.size == 0 || node.layer >= layers) continue;
    std::uint64_t stored = node.size;
    if (auto extents = tree.sparse(node); !extents.empty()) {
      stored = 0;
      for (const auto& e : extents) stored += e.length;
    }
    if (stored == 0 || out[node.layer].size() >= layer::kMaxReadFirst) continue;
    out[node.layer].push_back({node.data_offset, stored, rank++});
  }
  return out;
}

Result<SharedIndexPush> push_shared_index(const ResolvedImage& image, const cache::Cache& cache,
                                          registry::RegistryClient& client, const layer::SharedIndexOptions& options,
                                          const std::vector<std::vector<layer::ReadFirst>>& read_first) {
  client.request_push();
  SharedIndexPush out;
  oci::Manifest artifact;
  artifact.media_type = oci::media_type::kOciManifest;
  artifact.artifact_type = layer::kSharedIndexArtifactType;
  artifact.config = oci::empty_config_descriptor();
  artifact.annotations[std::string(oci::kAnnotationCreated)] = now_rfc3339();
  oci::Descriptor subject;
  subject.media_type = image.manifest.media_type.empty() ? image.manifest_descriptor.media_type : image.manifest.media_type;
  subject.digest = image.manifest_descriptor.digest;
  subject.size = static_cast<std::int64_t>(image.manifest_json.size());
  artifact.subject = subject;

  // What to list as read first in the layers shared: the states of the checkpoints that needs get
  // half of the share, across the image (weighed one layer at a time: indexes hold ~8% of their
  // layers in states, too much to keep them all at once).
  std::vector<std::optional<layer::CheckpointCosts>> costs(image.layers.size());
  std::vector<const layer::CheckpointCosts*> weighed(image.layers.size(), nullptr);
  std::uint64_t shared_bytes = 0;
  for (std::size_t i = 0; i < image.layers.size(); ++i) {
    if (layer::toc_format_of(image.layers[i]) != layer::TocFormat::none) continue;
    OCIFS_ASSIGN(auto index, cached_index(image.layers[i], cache));
    if (index.seek_index().zstd_spilled) continue;  // not shared: build_shared_index says why
    costs[i] = layer::checkpoint_costs(index);
    weighed[i] = &*costs[i];
    shared_bytes += index.seek_index().compressed_size;
  }
  const auto read_first_budget = static_cast<std::uint64_t>(options.max_share / 2 * static_cast<double>(shared_bytes));
  const auto selected = layer::select_read_first(weighed, read_first, read_first_budget);
  costs.clear();

  for (std::size_t i = 0; i < image.layers.size(); ++i) {
    const auto& blob = image.layers[i];
    SharedLayerReport report;
    report.layer_digest = blob.digest;
    if (layer::toc_format_of(blob) != layer::TocFormat::none) {
      report.skipped = "read by its TOC already";
      out.layers.push_back(std::move(report));
      continue;
    }
    OCIFS_ASSIGN(auto index, cached_index(blob, cache));
    auto layer_options = options;
    layer_options.read_first = selected[i];
    // Exact checkpoints for what is read first are decoded from the layer (the cache's copy, or
    // fetched), each block checked against the index's digests.
    if (!selected[i].empty()) {
      layer_options.blob = std::make_shared<io::VerifiedSource>(blob.blob, index.blob_blocks());
    }
    auto shared_blob = layer::build_shared_index(index, layer_options);
    if (!shared_blob) {
      if (shared_blob.error().code != std::errc::not_supported) return std::move(shared_blob).error();
      report.skipped = shared_blob.error().message;
      out.layers.push_back(std::move(report));
      continue;
    }
    auto& sblob = *shared_blob;
    report.blob_digest = "sha256:" + util::sha256_hex(sblob.bytes);
    report.blob_size = sblob.bytes.size();
    report.head_size = sblob.head_size;
    report.checkpoints = sblob.checkpoints;
    report.spacing = sblob.spacing;
    report.read_first = sblob.read_first;
    report.read_first_checkpoints = sblob.read_first_checkpoints;
    OCIFS_TRY(client.push_blob(report.blob_digest, sblob.bytes));
    oci::Descriptor d;
    d.media_type = layer::kSharedIndexBlobType;
    d.digest = report.blob_digest;
    d.size = static_cast<std::int64_t>(report.blob_size);
    d.annotations[std::string(layer::kAnnotationLayerDigest)] = blob.digest;
    d.annotations[std::string(layer::kAnnotationIndexVersion)] = std::to_string(layer::kSharedIndexVersion);
    d.annotations[std::string(layer::kAnnotationHeadDigest)] = sblob.head_digest;
    d.annotations[std::string(layer::kAnnotationHeadSize)] = std::to_string(sblob.head_size);
    artifact.layers.push_back(std::move(d));
    out.layers.push_back(std::move(report));
  }
  if (artifact.layers.empty()) {
    return make_error(std::errc::not_supported, "cannot push a shared index of {}: none of its layers needs one",
                      image.name);
  }
  OCIFS_TRY(client.push_blob(artifact.config.digest, oci::kEmptyConfigBytes));
  const std::string manifest = oci::to_json(artifact);
  out.artifact_digest = "sha256:" + util::sha256_hex(manifest);
  OCIFS_ASSIGN(out.referrers_api, client.push_manifest(out.artifact_digest, oci::media_type::kOciManifest, manifest));
  if (out.referrers_api) return out;

  // The referrers tag schema: read, add this artifact (superseding older shared indexes, keeping
  // what others attached), write back.
  const std::string tag = oci::referrers_tag(subject.digest);
  std::optional<std::string> existing;
  if (auto got = client.get_manifest(tag); got) {
    existing = std::move(got->bytes);
  } else if (got.error().code != std::errc::no_such_file_or_directory) {
    return std::move(got).error();
  }
  oci::Descriptor listed;
  listed.media_type = oci::media_type::kOciManifest;
  listed.digest = out.artifact_digest;
  listed.size = static_cast<std::int64_t>(manifest.size());
  listed.artifact_type = layer::kSharedIndexArtifactType;
  listed.annotations = artifact.annotations;
  OCIFS_ASSIGN(auto index, oci::referrers_index_with(existing, listed, true, fmt::format("{}:{}", image.name, tag)));
  OCIFS_TRY(client.push_manifest(tag, oci::media_type::kOciIndex, index));
  return out;
}

}  // namespace ocifs::image
