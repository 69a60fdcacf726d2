#include "shared_index_lookup.hpp"

#include <spdlog/spdlog.h>

#include <charconv>

#include "ocifs/cache/registry_remote_blob.hpp"
#include "ocifs/oci/referrers.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::image {

namespace {

// The artifacts that may hold the image's shared index, newest first: the registry's referrers
// (the digest of the one used is remembered in the cache, under the referrers tag, for
// --offline), or, offline, the one remembered.
Result<std::vector<std::string>> candidates(const SharedIndexLookup& in) {
  const std::string tag = oci::referrers_tag(in.manifest_digest);
  std::vector<std::string> out;
  if (!in.client) {
    OCIFS_ASSIGN(auto remembered, in.cache.read_ref(in.ref.registry, in.ref.repository, tag));
    if (remembered) out.push_back(std::move(*remembered));
    return out;
  }
  OCIFS_ASSIGN(auto listed, in.client->get_referrers(in.manifest_digest, layer::kSharedIndexArtifactType));
  if (!listed) return out;
  OCIFS_ASSIGN(auto referrers, oci::parse_referrers(listed->index_json, layer::kSharedIndexArtifactType,
                                                    fmt::format("the referrers of {}", in.manifest_digest)));
  for (auto& d : referrers) out.push_back(std::move(d.digest));
  return out;
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return n;
}

std::string annotation(const oci::Descriptor& d, std::string_view key) {
  auto it = d.annotations.find(std::string(key));
  return it == d.annotations.end() ? std::string() : it->second;
}

// The layers an artifact manifest has shared indexes for; errors when it is not one of ours.
Result<std::map<std::string, layer::SharedIndexRef>> read_artifact(const SharedIndexLookup& in,
                                                                   const std::string& digest) {
  oci::Descriptor descriptor;
  descriptor.digest = digest;
  OCIFS_ASSIGN(auto json, in.fetch_manifest(descriptor));
  OCIFS_ASSIGN(auto manifest, oci::parse_manifest(json, fmt::format("shared index {}", digest)));
  if (manifest.artifact_type != layer::kSharedIndexArtifactType) {
    return make_error(std::errc::invalid_argument, "{} is not a shared index (artifact type \"{}\")", digest,
                      manifest.artifact_type);
  }
  if (!manifest.subject || manifest.subject->digest != in.manifest_digest) {
    return make_error(std::errc::invalid_argument, "shared index {} refers to another image", digest);
  }
  std::map<std::string, layer::SharedIndexRef> out;
  for (const auto& blob : manifest.layers) {
    if (blob.media_type != layer::kSharedIndexBlobType) continue;
    const std::string layer_digest = annotation(blob, layer::kAnnotationLayerDigest);
    const std::string version = annotation(blob, layer::kAnnotationIndexVersion);
    const std::string head_digest = annotation(blob, layer::kAnnotationHeadDigest);
    auto head_size = parse_size(annotation(blob, layer::kAnnotationHeadSize));
    if (version != std::to_string(layer::kSharedIndexVersion)) {
      spdlog::warn("{}: the shared index of {} has format version \"{}\" (this ocifs reads {}); ignored",
                   in.image_name, layer_digest, version, layer::kSharedIndexVersion);
      continue;
    }
    if (!util::is_sha256_digest(layer_digest) || !util::is_sha256_digest(head_digest) || !head_size ||
        !util::is_sha256_digest(blob.digest) || blob.size < 0) {
      spdlog::warn("{}: shared index {} has a blob ({}) without the annotations it needs; ignored", in.image_name,
                   digest, blob.digest);
      continue;
    }
    auto entry = in.blob_cache->entry(blob.digest, static_cast<std::uint64_t>(blob.size));
    if (!entry) {
      spdlog::warn("{}: {}", in.image_name, entry.error().message);
      continue;
    }
    std::shared_ptr<cache::RemoteBlob> remote;
    if (in.client) remote = std::make_shared<cache::RegistryRemoteBlob>(in.client, blob.digest);
    auto source = std::make_shared<cache::CachedBlobSource>(std::move(entry).value(), std::move(remote),
                                                            in.blob_options);
    out.insert_or_assign(layer_digest, layer::SharedIndexRef{std::move(source), head_digest, *head_size});
  }
  return out;
}

}  // namespace

std::map<std::string, layer::SharedIndexRef> find_shared_indexes(const SharedIndexLookup& in) {
  auto found = candidates(in);
  if (!found) {
    spdlog::warn("{}: cannot look for a shared index: {}", in.image_name, found.error().message);
    return {};
  }
  for (const auto& digest : *found) {
    auto layers = read_artifact(in, digest);
    if (!layers) {
      spdlog::warn("{}: {}; ignored", in.image_name, layers.error().message);
      continue;
    }
    if (in.client) {
      auto remembered = in.cache.write_ref(in.ref.registry, in.ref.repository,
                                           oci::referrers_tag(in.manifest_digest), digest);
      if (!remembered) spdlog::info("{}", remembered.error().message);
    }
    spdlog::debug("{}: shared index {} covers {} layers", in.image_name, digest, layers->size());
    return std::move(layers).value();
  }
  return {};
}

}  // namespace ocifs::image
