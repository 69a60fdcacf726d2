// OCI 1.1 referrers (distribution spec 1.1): artifacts whose `subject` is a manifest, listed by a
// registry's referrers API or, where it has none, in an image index tagged `sha256-<hex>` (the
// referrers tag schema) that whoever pushes an artifact keeps up to date. Functions only.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/oci/types.hpp"

namespace ocifs::oci {

// The annotation that orders referrers of one type: the newest is used.
inline constexpr std::string_view kAnnotationCreated = "org.opencontainers.image.created";

// "sha256-<hex>" for "sha256:<hex>": the tag of the referrers tag schema.
std::string referrers_tag(std::string_view digest);

// The config an artifact without one names (image spec 1.1), and its bytes.
inline constexpr std::string_view kEmptyConfigBytes = "{}";
Descriptor empty_config_descriptor();

// The referrers listed in an index (a referrers API answer or the tag schema's index), those of
// `artifact_type` only when it is not empty, newest first (by kAnnotationCreated, then by
// their order in the index, later first).
Result<std::vector<Descriptor>> parse_referrers(std::string_view index_json, std::string_view artifact_type,
                                                std::string_view where);

// The tag schema's index once `added` is in it: `existing` (nullopt: a new index) without any
// entry of the same digest and, with `replace_type`, without the other referrers of its
// artifact type (superseded: the index keeps what others attached, signatures and SBOMs).
Result<std::string> referrers_index_with(const std::optional<std::string>& existing, const Descriptor& added,
                                         bool replace_type, std::string_view where);

}  // namespace ocifs::oci
