// What every image source does once it can fetch documents: platform choice in manifest lists,
// nested indexes, the config, layer checks.
#include "source_util.hpp"

#include "ocifs/util/text.hpp"
namespace ocifs::image::detail {
namespace {

// Nested indexes followed before giving up (real images nest at most once).
constexpr int kMaxDepth = 8;

std::string annotation(const oci::Descriptor& d, std::string_view key) {
  auto it = d.annotations.find(std::string(key));
  return it == d.annotations.end() ? std::string() : it->second;
}

bool is_attestation(const oci::Descriptor& d) {
  if (annotation(d, "vnd.docker.reference.type") == "attestation-manifest") return true;
  return d.platform && d.platform->os == "unknown" && d.platform->architecture == "unknown";
}

std::string platform_list(const std::vector<oci::Descriptor>& list) {
  std::string out;
  for (const auto& d : list) {
    if (is_attestation(d)) continue;
    if (!out.empty()) out += ", ";
    out += d.platform ? d.platform->normalized().str() : fmt::format("{} (no platform)", d.digest);
  }
  return out.empty() ? std::string("none") : out;
}

}  // namespace

Result<oci::Descriptor> choose_platform(std::string_view name, const std::vector<oci::Descriptor>& list,
                                        const oci::Platform& wanted) {
  const oci::Descriptor* best = nullptr;
  int best_score = 0;
  for (const auto& d : list) {
    if (is_attestation(d)) continue;
    int score = d.platform ? oci::platform_match_score(wanted, *d.platform) : 1;
    if (score > best_score) {
      best = &d;
      best_score = score;
    }
  }
  if (!best) {
    return make_error(
        std::errc::no_such_file_or_directory,
        "cannot resolve {}: no image for platform {} (available: {}); choose one with --platform", name,
        wanted.normalized().str(), platform_list(list));
  }
  return *best;
}

Result<void> follow_indexes(std::string_view name, oci::Descriptor chosen, const oci::Platform& wanted,
                            const FetchDocument& fetch, ResolvedImage& image) {
  std::string manifest_json;
  for (int depth = 0;; ++depth) {
    if (depth > kMaxDepth) {
      return make_error(std::errc::too_many_symbolic_link_levels,
                        "cannot resolve {}: indexes nest more than {} deep (a loop?)", name, kMaxDepth);
    }
    const bool index_type = oci::is_index_media_type(chosen.media_type);
    OCIFS_ASSIGN(auto bytes, fetch(chosen, index_type ? "index" : "manifest"));
    auto media_type = chosen.media_type;
    if (media_type.empty()) {
      OCIFS_ASSIGN(media_type, oci::sniff_media_type(bytes, chosen.digest));
    }
    if (oci::is_index_media_type(media_type)) {
      OCIFS_ASSIGN(auto nested, oci::parse_index(bytes, fmt::format("index {}", chosen.digest)));
      image.platform_choices = nested.manifests;
      OCIFS_ASSIGN(chosen, choose_platform(name, nested.manifests, wanted));
      continue;
    }
    if (!oci::is_manifest_media_type(media_type) && media_type != oci::media_type::kDockerSchema1 &&
        media_type != oci::media_type::kDockerSchema1Signed) {
      return make_error(
          std::errc::not_supported,
          "cannot resolve {}: {} has media type \"{}\", which is neither an image manifest nor an index",
          name, chosen.digest, util::shown(media_type));
    }
    manifest_json = std::move(bytes);
    break;
  }
  OCIFS_ASSIGN(image.manifest, oci::parse_manifest(manifest_json, fmt::format("{} ({})", chosen.digest, name)));
  image.manifest_json = std::move(manifest_json);
  image.manifest_descriptor = chosen;
  if (image.manifest_descriptor.media_type.empty()) image.manifest_descriptor.media_type = image.manifest.media_type;
  return util::success();
}

Result<void> read_config(std::string_view name, const ResolveOptions& options, const FetchDocument& fetch,
                         ResolvedImage& image) {
  const auto& config_desc = image.manifest.config;
  if (!config_desc.media_type.empty() && config_desc.media_type != oci::media_type::kOciConfig &&
      config_desc.media_type != oci::media_type::kDockerConfig) {
    return make_error(std::errc::not_supported,
                      "cannot resolve {}: manifest {} is not a container image (config media type \"{}\")",
                      name, image.manifest_descriptor.digest, util::shown(config_desc.media_type));
  }
  OCIFS_ASSIGN(image.config_json, fetch(config_desc, "config"));
  OCIFS_ASSIGN(image.config, oci::parse_config(image.config_json, fmt::format("config {}", config_desc.digest)));
  if (!image.manifest_descriptor.platform && !image.config.platform.architecture.empty()) {
    image.manifest_descriptor.platform = image.config.platform;
  }
  return check_platform(name, options.platform, image.config.platform);
}

Result<std::string> checked_layer_name(std::string_view name, std::size_t index, const oci::Descriptor& d) {
  auto layer = layer_name(index, d.digest);
  if (!oci::is_layer_media_type(d.media_type)) {
    return make_error(std::errc::not_supported,
                      "cannot resolve {}: {} has media type \"{}\", which is not a container image layer",
                      name, layer, d.media_type.empty() ? std::string("(none)") : util::shown(d.media_type));
  }
  return layer;
}

}  // namespace ocifs::image::detail
