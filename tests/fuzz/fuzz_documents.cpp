// Image documents as a registry or a layout serves them (src/oci/): manifests, indexes, configs,
// the oci-layout file, and what is built from them: following nested indexes to the manifest
// for a platform, reading the config, naming the layers (image/source_util.hpp), and the
// `ocifs inspect --json` document. The input is up to four documents; a descriptor is served
// the document its digest hashes to (digests are verified by the sources, not here).
// Properties: a parsed manifest written out by to_json parses back the same; the inspect
// document is valid JSON.
//
// Input: u8 platform choice, u8 N (1 to 4 documents), N - 1 documents as u16 length + bytes,
// then the last document (the rest).
// libfuzzer: -max_len=65536
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "../../src/image/source_util.hpp"
#include "ocifs/image/image_source.hpp"
#include "ocifs/oci/inspect_document.hpp"
#include "ocifs/oci/types.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

namespace {

void check_manifest_round_trip(const oci::Manifest& m) {
  auto again = oci::parse_manifest(oci::to_json(m), "to_json");
  check(again.ok(), "to_json of a manifest does not parse: {}", again.ok() ? "" : again.error().message);
  check(again->layers.size() == m.layers.size() && again->config.digest == m.config.digest &&
            again->media_type == m.media_type && again->annotations == m.annotations,
        "a manifest changes through to_json");
  for (std::size_t i = 0; i < m.layers.size(); ++i) {
    const auto &a = m.layers[i], &b = again->layers[i];
    check(a.digest == b.digest && a.media_type == b.media_type && a.size == b.size &&
              a.annotations == b.annotations && a.urls == b.urls,
          "layer {} changes through to_json", i);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  static const char* kPlatforms[] = {"linux/amd64", "linux/arm64", "linux/arm/v7", "windows/amd64"};
  auto wanted = oci::Platform::parse(kPlatforms[in.u8() % 4]);
  const int count = 1 + in.u8() % 4;
  std::vector<std::string> docs;
  for (int i = 1; i < count; ++i) docs.emplace_back(in.sized());
  docs.emplace_back(in.rest());

  for (const auto& d : docs) {
    if (auto m = oci::parse_manifest(d, "manifest"); m.ok()) check_manifest_round_trip(*m);
    if (auto index = oci::parse_index(d, "index"); index.ok()) {
      for (const auto& e : index->manifests) {
        if (e.platform) (void)oci::platform_match_score(*wanted, *e.platform);
      }
    }
    (void)oci::parse_config(d, "config");
    (void)oci::sniff_media_type(d, "document");
    (void)oci::parse_layout_version(d, "oci-layout");
  }

  // Resolution as the sources do it, over these documents.
  auto fetch = [&](const oci::Descriptor& d, std::string_view) -> Result<std::string> {
    return docs[std::hash<std::string>{}(d.digest) % docs.size()];
  };
  image::ResolvedImage image;
  image.name = "fuzz";
  oci::Descriptor start{.media_type = "", .digest = "sha256:start"};
  if (!image::detail::follow_indexes(image.name, start, *wanted, fetch, image).ok()) return 0;
  check_manifest_round_trip(image.manifest);
  image::ResolveOptions options;
  options.platform = *wanted;
  if (!image::detail::read_config(image.name, options, fetch, image).ok()) return 0;
  for (std::size_t i = 0; i < image.manifest.layers.size(); ++i) {
    (void)image::detail::checked_layer_name(image.name, i, image.manifest.layers[i]);
  }
  auto doc = oci::inspect_document(image.name, image.manifest_descriptor, image.manifest_json,
                                   image.config_json, image.platform_choices);
  check(!nlohmann::json::parse(doc, nullptr, false).is_discarded(), "the inspect document is not JSON");
  return 0;
}
