// Resolving an image inside an OCI image layout (image-spec image-layout.md): `oci-layout`,
// `index.json`, blobs at blobs/<alg>/<hex>. The layout is reached through a LayoutFiles, so the
// same code serves a directory (oci:) and the members of a tar (oci-archive:).
// Every manifest, index and config read is verified against its descriptor's sha256 and size;
// layers are opened (existence, size) but not hashed (the layer scan verifies them).
// Functions only; thread-safe.
#pragma once

#include <functional>
#include <string>

#include "ocifs/image/image_source.hpp"

namespace ocifs::image {

struct LayoutFiles {
  std::string where;  // for messages: the directory or archive path
  // Opens the file at a layout-relative path ("index.json", "blobs/sha256/…"); a missing file
  // is an error naming its full path.
  std::function<Result<io::BlobSourcePtr>(const std::string& path)> open;
};

// Picks the image named `ref.tag` (annotation org.opencontainers.image.ref.name; empty: the only
// image), follows nested indexes choosing the platform, and opens manifest, config and layers.
Result<ResolvedImage> resolve_oci_layout(const LayoutFiles& files, const oci::ImageRef& ref,
                                         const ResolveOptions& options);

}  // namespace ocifs::image
