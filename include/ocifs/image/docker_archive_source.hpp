// Resolving an image inside a `docker save` archive (also written by skopeo and podman):
// manifest.json lists {Config, RepoTags, Layers}; layers are tar members (plain tar as docker
// writes them, or gzip), identified by the config's rootfs.diff_ids (digest of the decoded tar).
// The config is identified by the digest of its content: a config member named "<hex>.json"
// after another digest (edited after saving) is taken with a warning, as skopeo and umoci do.
// The manifest is synthesized (Docker schema2 media types). Its layer descriptors carry the
// diff_id and the member size: the digest of the stored bytes is not recorded by the format.
// Functions only; thread-safe.
#pragma once

#include "ocifs/image/archive_source.hpp"
#include "ocifs/image/image_source.hpp"

namespace ocifs::image {

// Picks the entry whose RepoTags contain `ref.tag` (both normalised like a registry reference:
// "busybox:latest" matches "docker.io/library/busybox:latest"), or the only entry.
Result<ResolvedImage> resolve_docker_archive(const ArchiveSource& archive, const oci::ImageRef& ref,
                                             const ResolveOptions& options);

}  // namespace ocifs::image
