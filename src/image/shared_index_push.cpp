#include "ocifs/image/shared_index_push.hpp"

#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <optional>

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

// The layer's verified index from the cache, as its shared blob.
Result<layer::SharedIndexBlob> shared_blob(const layer::LayerBlob& blob, const cache::Cache& cache,
                                           const layer::SharedIndexOptions& options) {
  OCIFS_ASSIGN(auto file, cache.open_index(blob.digest));
  if (!file) {
    return make_error(std::errc::no_such_file_or_directory, "no index of {} in the cache (it was not scanned here)",
                      blob.name);
  }
  OCIFS_ASSIGN(auto index, layer::LayerIndex::load(**file, nullptr, blob.name));
  if (index.digest() != blob.digest) {
    return make_error(std::errc::invalid_argument, "the cached index of {} describes {}", blob.name, index.digest());
  }
  return layer::build_shared_index(index, options);
}

}  // namespace

Result<SharedIndexPush> push_shared_index(const ResolvedImage& image, const cache::Cache& cache,
                                          registry::RegistryClient& client, const layer::SharedIndexOptions& options) {
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

  for (const auto& blob : image.layers) {
    SharedLayerReport report;
    report.layer_digest = blob.digest;
    if (layer::toc_format_of(blob) != layer::TocFormat::none) {
      report.skipped = "read by its TOC already";
      out.layers.push_back(std::move(report));
      continue;
    }
    auto shared = shared_blob(blob, cache, options);
    if (!shared) {
      if (shared.error().code != std::errc::not_supported) return std::move(shared).error();
      report.skipped = shared.error().message;
      out.layers.push_back(std::move(report));
      continue;
    }
    report.blob_digest = "sha256:" + util::sha256_hex(shared->bytes);
    report.blob_size = shared->bytes.size();
    report.head_size = shared->head_size;
    report.checkpoints = shared->checkpoints;
    report.spacing = shared->spacing;
    OCIFS_TRY(client.push_blob(report.blob_digest, shared->bytes));
    oci::Descriptor d;
    d.media_type = layer::kSharedIndexBlobType;
    d.digest = report.blob_digest;
    d.size = static_cast<std::int64_t>(report.blob_size);
    d.annotations[std::string(layer::kAnnotationLayerDigest)] = blob.digest;
    d.annotations[std::string(layer::kAnnotationIndexVersion)] = std::to_string(layer::kSharedIndexVersion);
    d.annotations[std::string(layer::kAnnotationHeadDigest)] = shared->head_digest;
    d.annotations[std::string(layer::kAnnotationHeadSize)] = std::to_string(shared->head_size);
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
