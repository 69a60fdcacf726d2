// The manifest.json of a `docker save` archive (oci/docker_archive_manifest.hpp): what parses
// lists images within the layer limit, each with a config member.
// libfuzzer: -max_len=65536
#include <string>

#include "ocifs/oci/docker_archive_manifest.hpp"
#include "ocifs/util/limits.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto images = oci::parse_docker_archive_manifest(text, "manifest.json");
  if (!images.ok()) return 0;
  for (const auto& image : *images) {
    check(!image.config.empty(), "an image without a config");
    check(image.layers.size() <= limits::kMaxLayers, "{} layers", image.layers.size());
  }
  return 0;
}
