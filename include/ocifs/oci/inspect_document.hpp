// The `ocifs inspect --json` document: name, manifest digest, the manifest and config documents
// as stored, the platforms a manifest list offered, and the artifacts that refer to the manifest
// (shared indexes, signatures, SBOMs). Pure function.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ocifs/oci/types.hpp"

namespace ocifs::oci {

std::string inspect_document(std::string_view name, const Descriptor& manifest, std::string_view manifest_json,
                             std::string_view config_json, const std::vector<Descriptor>& platforms,
                             const std::vector<Descriptor>& referrers = {});

}  // namespace ocifs::oci
