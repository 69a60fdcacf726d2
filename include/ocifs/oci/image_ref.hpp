// What the user names on the command line: a registry reference or a local transport.
// Plain values; not synchronised.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ocifs/util/result.hpp"

namespace ocifs::oci {

// A registry reference normalised as docker/distribution does.
struct Reference {
  std::string registry;    // "docker.io", "ghcr.io", "localhost:5000", "[::1]:5000"
  std::string repository;  // "library/debian"
  std::string tag;         // "latest" when neither tag nor digest was given
  std::string digest;      // "sha256:…" or empty; wins over the tag

  static Result<Reference> parse(std::string_view text);
  std::string str() const;  // canonical "docker.io/library/debian:bookworm[@sha256:…]"
  // Host to talk to: "registry-1.docker.io" for docker.io, else registry.
  std::string api_host() const;
};

enum class Transport { registry, oci_layout, oci_archive, docker_archive };

struct ImageRef {
  Transport transport = Transport::registry;
  Reference reference;  // transport == registry
  std::string path;     // local transports: the directory or archive file
  // oci:/oci-archive: the org.opencontainers.image.ref.name to pick (empty: the only image);
  // docker-archive: "NAME:TAG" to pick from RepoTags (empty: the only image).
  std::string tag;

  // "oci:DIR[:TAG]", "oci-archive:FILE[:TAG]", "docker-archive:FILE[:NAME:TAG]", optional
  // "docker://" prefix, otherwise a registry reference.
  static Result<ImageRef> parse(std::string_view text);
  std::string str() const;
};

}  // namespace ocifs::oci
