#include "ocifs/oci/docker_archive_manifest.hpp"

#include "json_util.hpp"
#include "ocifs/util/limits.hpp"

namespace ocifs::oci {

using namespace detail;

Result<std::vector<DockerArchiveImage>> parse_docker_archive_manifest(std::string_view text,
                                                                      std::string_view where) {
  OCIFS_ASSIGN(auto doc, parse_json(text, where));
  if (!doc.is_array()) {
    return make_error(std::errc::invalid_argument, "cannot parse {}: expected a JSON array of images", where);
  }
  std::vector<DockerArchiveImage> images;
  for (std::size_t i = 0; i < doc.size(); ++i) {
    const auto& entry = doc[i];
    auto path = fmt::format("[{}]", i);
    if (!entry.is_object()) return bad_field(where, path, "is not an object");
    DockerArchiveImage image;
    OCIFS_ASSIGN(image.config, get_string(entry, "Config", where, path, true));
    if (image.config.empty()) return bad_field(where, field_path(path, "Config"), "is empty");  // found by tests/fuzz
    OCIFS_ASSIGN(image.repo_tags, get_strings(entry, "RepoTags", where, path));
    OCIFS_ASSIGN(image.layers, get_strings(entry, "Layers", where, path));
    if (image.layers.size() > limits::kMaxLayers) {
      return make_error(
          std::errc::file_too_large,
          "cannot parse {}: image {} has {} layers, more than the limit of {} (overlayfs stacks at "
          "most 500 layers)",
          where, i, image.layers.size(), limits::kMaxLayers);
    }
    images.push_back(std::move(image));
  }
  return images;
}

}  // namespace ocifs::oci
