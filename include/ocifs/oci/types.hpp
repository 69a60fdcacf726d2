// Plain data of the OCI image spec and Docker schema2, and their JSON parsing. Values only;
// not synchronised. The only module that parses image documents (nlohmann/json, in its .cpp
// files; docs/architecture.md, "Library boundaries", lists the other documents and their owners).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/util/result.hpp"

namespace ocifs::oci {

namespace media_type {
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerSchema1 = "application/vnd.docker.distribution.manifest.v1+json";
inline constexpr std::string_view kDockerSchema1Signed = "application/vnd.docker.distribution.manifest.v1+prettyjws";
inline constexpr std::string_view kDockerLayerTar = "application/vnd.docker.image.rootfs.diff.tar";
inline constexpr std::string_view kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
inline constexpr std::string_view kDockerForeignLayerGzip = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
inline constexpr std::string_view kOciLayerTar = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
// The config of an artifact that needs none (image spec 1.1): the two bytes "{}".
inline constexpr std::string_view kOciEmpty = "application/vnd.oci.empty.v1+json";
}  // namespace media_type

// True for every layer media type ocifs can mount (tar, gzip, zstd, nondistributable variants).
bool is_layer_media_type(std::string_view media_type);
bool is_index_media_type(std::string_view media_type);
bool is_manifest_media_type(std::string_view media_type);

struct Digest {
  std::string algorithm;  // "sha256" (only algorithm accepted for content)
  std::string hex;        // lowercase, 64 chars for sha256
  // Accepts "sha256:<64 lowercase hex>" only; anything else is an error naming the input.
  static Result<Digest> parse(std::string_view text);
  std::string str() const { return algorithm + ":" + hex; }
  bool operator==(const Digest&) const = default;
};

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64", "arm64", "arm", ...
  std::string variant;       // "v7", "v8", or empty
  std::string os_version;
  std::vector<std::string> os_features;

  // "os/arch[/variant]", normalised (x86_64 -> amd64, aarch64 -> arm64, armhf -> arm/v7 ...).
  static Result<Platform> parse(std::string_view text);
  // The platform of this machine (uname), normalised.
  static Platform host();
  // containerd's normalisation: arch aliases, arm64 variant v8 dropped, arm default v7.
  Platform normalized() const;
  std::string str() const;  // "linux/arm/v7"
  bool operator==(const Platform&) const = default;
};

// How well `candidate` serves a request for `wanted`: 0 = not at all, higher = better (exact
// match beats fallbacks such as arm/v7 running arm/v6, amd64 running 386).
int platform_match_score(const Platform& wanted, const Platform& candidate);

struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<hex>" as written
  std::int64_t size = -1;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;
  std::vector<std::string> urls;
  std::string artifact_type;  // "artifactType" (image spec 1.1: descriptors of artifacts in indexes)
};

struct Manifest {
  int schema_version = 2;
  std::string media_type;
  std::string artifact_type;  // image spec 1.1 artifacts
  Descriptor config;
  std::vector<Descriptor> layers;
  std::optional<Descriptor> subject;  // the manifest an artifact refers to (referrers)
  std::map<std::string, std::string> annotations;
};

struct Index {
  int schema_version = 2;
  std::string media_type;
  std::vector<Descriptor> manifests;
  std::map<std::string, std::string> annotations;
};

struct ImageConfig {
  Platform platform;                   // os / architecture / variant
  std::vector<std::string> diff_ids;   // rootfs.diff_ids
  std::string created;
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::string user;
};

// Parsers: malformed JSON or missing required fields are errors naming `where`.
// parse_manifest refuses schema1 with a clear message ("Docker schema1 manifests are obsolete…").
Result<Manifest> parse_manifest(std::string_view json, std::string_view where);
Result<Index> parse_index(std::string_view json, std::string_view where);
Result<ImageConfig> parse_config(std::string_view json, std::string_view where);
// The mediaType of a manifest or index document (from "mediaType", else guessed from its fields:
// "manifests" -> index, "layers" -> manifest, schemaVersion 1 -> schema1).
Result<std::string> sniff_media_type(std::string_view json, std::string_view where);
// The imageLayoutVersion of an OCI layout's `oci-layout` file ("1.0.0").
Result<std::string> parse_layout_version(std::string_view json, std::string_view where);

// JSON of a manifest (for synthesized manifests, e.g. of a docker-archive image); fields as the
// image spec names them, empty optional fields left out.
std::string to_json(const Manifest& manifest);
std::string to_json(const Index& index);

}  // namespace ocifs::oci
