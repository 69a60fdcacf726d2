// The manifest.json of a `docker save` archive (also written by skopeo and podman): one entry per
// image with its config file, repo tags and layer files, paths relative to the archive root.
// Plain values; not synchronised.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ocifs/util/result.hpp"

namespace ocifs::oci {

struct DockerArchiveImage {
  std::string config;                  // "Config": member path of the config JSON
  std::vector<std::string> repo_tags;  // "RepoTags" as written ("busybox:latest"); may be empty
  std::vector<std::string> layers;     // "Layers": member paths, bottom first
};

// Parses manifest.json (a JSON array); malformed input is an error naming `where`.
Result<std::vector<DockerArchiveImage>> parse_docker_archive_manifest(std::string_view json,
                                                                      std::string_view where);

}  // namespace ocifs::oci
