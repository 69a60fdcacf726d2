// Private helpers shared by the image sources (oci layout, docker-archive). Functions only.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/image/image_source.hpp"
#include "ocifs/oci/types.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::image::detail {

// "layer 2 (sha256:ab12cd34ef56…)": 1-based from the bottom, 12 hex digits like docker's short ids.
inline std::string layer_name(std::size_t index, std::string_view digest) {
  auto colon = digest.find(':');
  auto shown =
      colon == std::string_view::npos ? digest : digest.substr(0, std::min(digest.size(), colon + 13));
  return fmt::format("layer {} ({}{})", index + 1, shown, shown.size() < digest.size() ? "…" : "");
}

// With an explicitly requested platform, an image of another one is refused (the host default
// is not enforced: a single-platform image is what the user named).
inline Result<void> check_platform(std::string_view name, const std::optional<oci::Platform>& wanted,
                                   const oci::Platform& have) {
  if (!wanted || have.os.empty() || have.architecture.empty()) return util::success();
  if (oci::platform_match_score(*wanted, have) > 0) return util::success();
  return make_error(std::errc::invalid_argument, "cannot resolve {}: the image is for {}, not {}", name,
                    have.normalized().str(), wanted->normalized().str());
}

// Reads a manifest, index or config named by a descriptor, verified against its digest; `what`
// is "manifest", "index" or "config" (for messages and size limits).
using FetchDocument = std::function<Result<std::string>(const oci::Descriptor&, std::string_view what)>;

// The best entry of a manifest list for `wanted`: highest platform_match_score, first on ties;
// attestation manifests never; entries without a platform only when nothing matches better.
Result<oci::Descriptor> choose_platform(std::string_view name, const std::vector<oci::Descriptor>& list,
                                        const oci::Platform& wanted);

// From `chosen` (a manifest or an index), follows nested indexes choosing `wanted`, and fills
// image.manifest, manifest_json, manifest_descriptor and platform_choices. Schema 1 is refused.
Result<void> follow_indexes(std::string_view name, oci::Descriptor chosen, const oci::Platform& wanted,
                            const FetchDocument& fetch, ResolvedImage& image);

// Reads and checks the config of image.manifest (a container image config for the platform asked
// for) into image.config_json and image.config.
Result<void> read_config(std::string_view name, const ResolveOptions& options, const FetchDocument& fetch,
                         ResolvedImage& image);

// layer_name() of layer `index`, after checking its media type is a container image layer.
Result<std::string> checked_layer_name(std::string_view name, std::size_t index, const oci::Descriptor& d);

}  // namespace ocifs::image::detail
