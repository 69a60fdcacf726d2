#include "ocifs/image/docker_archive_source.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "ocifs/oci/docker_archive_manifest.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/sha256.hpp"
#include "source_util.hpp"

namespace ocifs::image {

namespace {

std::string normalized_name(std::string_view name) {
  auto ref = oci::Reference::parse(name);
  return ref ? ref->str() : std::string(name);
}

// The 64 hex digits a member path names its content by ("<hex>.json", "blobs/sha256/<hex>"),
// or empty when it does not.
std::string_view named_hex(std::string_view path) {
  auto slash = path.rfind('/');
  auto base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  if (base.ends_with(".json")) base.remove_suffix(5);
  return util::is_sha256_hex(base) ? base : std::string_view();
}

std::string_view layer_media_type(compress::Encoding encoding) {
  switch (encoding) {
    case compress::Encoding::gzip:
      return oci::media_type::kDockerLayerGzip;
    case compress::Encoding::zstd:
      return oci::media_type::kOciLayerZstd;
    case compress::Encoding::tar:
      break;
  }
  return oci::media_type::kDockerLayerTar;
}

}  // namespace

Result<ResolvedImage> resolve_docker_archive(const ArchiveSource& archive, const oci::ImageRef& ref,
                                             const ResolveOptions& options) {
  const std::string name = ref.str();
  auto context = fmt::format("cannot resolve {}", name);
  auto manifest_member = archive.member("manifest.json");
  if (!manifest_member) {
    return std::move(manifest_member)
        .error()
        .with_context(fmt::format("{}: {} is not a docker-archive", context, archive.describe()));
  }
  OCIFS_ASSIGN(auto manifest_bytes, io::read_all(**manifest_member, limits::kMaxManifestBytes));
  OCIFS_ASSIGN(auto entries,
               oci::parse_docker_archive_manifest(manifest_bytes, (*manifest_member)->describe()));

  auto all_tags = [&] {
    std::string out;
    for (const auto& e : entries) {
      for (const auto& t : e.repo_tags) out += fmt::format("{}{}", out.empty() ? "" : ", ", t);
    }
    return out.empty() ? std::string("no tags") : out;
  };
  const oci::DockerArchiveImage* entry = nullptr;
  if (ref.tag.empty()) {
    if (entries.size() != 1) {
      return make_error(entries.empty() ? std::errc::no_such_file_or_directory : std::errc::invalid_argument,
                        "{}: {} holds {} images; name one as {}:NAME:TAG ({})", context, archive.describe(),
                        entries.size(), name, all_tags());
    }
    entry = &entries.front();
  } else {
    auto wanted = normalized_name(ref.tag);
    for (const auto& e : entries) {
      if (std::any_of(e.repo_tags.begin(), e.repo_tags.end(),
                      [&](const std::string& t) { return normalized_name(t) == wanted; })) {
        entry = &e;
        break;
      }
    }
    if (!entry) {
      return make_error(std::errc::no_such_file_or_directory, "{}: no image tagged {} in {} (available: {})",
                        context, ref.tag, archive.describe(), all_tags());
    }
  }

  ResolvedImage image;
  image.name = name;
  OCIFS_ASSIGN(auto config_blob, archive.member(entry->config));
  OCIFS_ASSIGN(image.config_json, io::read_all(*config_blob, limits::kMaxConfigBytes));
  // The config is what its content hashes to, whatever its member is called: nothing in a
  // docker-archive signs the name (manifest.json is not hashed either), and skopeo and umoci
  // accept a config rewritten after `docker save` the same way. The layers are still checked
  // against the diff_ids this content lists.
  auto config_hex = util::sha256_hex(image.config_json);
  if (auto named = named_hex(entry->config); !named.empty() && named != config_hex) {
    spdlog::warn("{}: config {} is not named after its content, which hashes to sha256:{}; using that digest",
                 name, config_blob->describe(), config_hex);
  }
  OCIFS_ASSIGN(image.config, oci::parse_config(image.config_json, config_blob->describe()));
  OCIFS_TRY(detail::check_platform(name, options.platform, image.config.platform));
  if (image.config.diff_ids.size() != entry->layers.size()) {
    return make_error(std::errc::invalid_argument,
                      "{}: manifest.json lists {} layers but config {} has {} diff_ids", context,
                      entry->layers.size(), entry->config, image.config.diff_ids.size());
  }

  auto& manifest = image.manifest;
  manifest.schema_version = 2;
  manifest.media_type = oci::media_type::kDockerManifest;
  manifest.config.media_type = oci::media_type::kDockerConfig;
  manifest.config.digest = "sha256:" + config_hex;
  manifest.config.size = static_cast<std::int64_t>(image.config_json.size());
  for (std::size_t i = 0; i < entry->layers.size(); ++i) {
    const auto& diff_id = image.config.diff_ids[i];
    auto layer_name = detail::layer_name(i, diff_id);
    auto digest = oci::Digest::parse(diff_id);
    if (!digest) return std::move(digest).error().with_context(fmt::format("{}: {}", context, layer_name));
    auto blob = archive.member(entry->layers[i]);
    if (!blob) return std::move(blob).error().with_context(fmt::format("{}: {}", context, layer_name));
    OCIFS_ASSIGN(auto encoding, compress::detect_encoding(**blob));
    oci::Descriptor d;
    d.media_type = layer_media_type(encoding);
    d.digest = diff_id;
    d.size = static_cast<std::int64_t>((*blob)->size());
    manifest.layers.push_back(std::move(d));
    image.layers.push_back(layer::LayerBlob{std::move(*blob), diff_id, true, std::move(layer_name), {}});
  }
  image.manifest_json = oci::to_json(manifest);
  image.manifest_descriptor.media_type = manifest.media_type;
  image.manifest_descriptor.digest = "sha256:" + util::sha256_hex(image.manifest_json);
  image.manifest_descriptor.size = static_cast<std::int64_t>(image.manifest_json.size());
  if (!image.config.platform.architecture.empty()) image.manifest_descriptor.platform = image.config.platform;
  return image;
}

}  // namespace ocifs::image
