// Digest parsing and media type classification.
#include "ocifs/oci/types.hpp"

#include <algorithm>
#include <array>

#include "ocifs/util/sha256.hpp"
#include "ocifs/util/text.hpp"

namespace ocifs::oci {

namespace {

constexpr std::array kLayerMediaTypes = {
    media_type::kOciLayerTar,
    media_type::kOciLayerGzip,
    media_type::kOciLayerZstd,
    std::string_view("application/vnd.oci.image.layer.nondistributable.v1.tar"),
    std::string_view("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"),
    std::string_view("application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"),
    media_type::kDockerLayerTar,
    media_type::kDockerLayerGzip,
    media_type::kDockerForeignLayerGzip,
};

}  // namespace

bool is_layer_media_type(std::string_view media_type) {
  return std::find(kLayerMediaTypes.begin(), kLayerMediaTypes.end(), media_type) != kLayerMediaTypes.end();
}

bool is_index_media_type(std::string_view media_type) {
  return media_type == media_type::kOciIndex || media_type == media_type::kDockerManifestList;
}

bool is_manifest_media_type(std::string_view media_type) {
  return media_type == media_type::kOciManifest || media_type == media_type::kDockerManifest;
}

Result<Digest> Digest::parse(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return make_error(std::errc::invalid_argument, "cannot parse digest \"{}\": expected ALGORITHM:HEX",
                      util::shown(text));
  }
  auto algorithm = text.substr(0, colon);
  auto hex = text.substr(colon + 1);
  if (algorithm != "sha256") {
    return make_error(std::errc::invalid_argument,
                      "cannot parse digest \"{}\": unsupported algorithm \"{}\" (only sha256)",
                      util::shown(text), util::shown(algorithm));
  }
  if (!util::is_sha256_hex(hex)) {
    return make_error(std::errc::invalid_argument,
                      "cannot parse digest \"{}\": a sha256 digest has 64 lowercase hex digits",
                      util::shown(text));
  }
  return Digest{std::string(algorithm), std::string(hex)};
}

}  // namespace ocifs::oci
