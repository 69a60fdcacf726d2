// Private helpers shared by the image sources (oci layout, docker-archive). Functions only.
#pragma once

#include <string>
#include <string_view>

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

}  // namespace ocifs::image::detail
