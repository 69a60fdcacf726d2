#include "ocifs/oci/referrers.hpp"

#include <algorithm>

#include "ocifs/util/sha256.hpp"

namespace ocifs::oci {

std::string referrers_tag(std::string_view digest) {
  std::string tag(digest);
  std::replace(tag.begin(), tag.end(), ':', '-');
  return tag;
}

Descriptor empty_config_descriptor() {
  Descriptor d;
  d.media_type = media_type::kOciEmpty;
  d.digest = "sha256:" + util::sha256_hex(kEmptyConfigBytes);
  d.size = static_cast<std::int64_t>(kEmptyConfigBytes.size());
  return d;
}

Result<std::vector<Descriptor>> parse_referrers(std::string_view index_json, std::string_view artifact_type,
                                                std::string_view where) {
  OCIFS_ASSIGN(Index index, parse_index(index_json, where));
  std::vector<Descriptor> out;
  for (auto& d : index.manifests) {
    if (artifact_type.empty() || d.artifact_type == artifact_type) out.push_back(std::move(d));
  }
  std::reverse(out.begin(), out.end());  // later entries first among equals
  auto created = [](const Descriptor& d) {
    auto it = d.annotations.find(std::string(kAnnotationCreated));
    return it == d.annotations.end() ? std::string() : it->second;  // RFC 3339 in UTC sorts as text
  };
  std::stable_sort(out.begin(), out.end(),
                   [&](const Descriptor& a, const Descriptor& b) { return created(a) > created(b); });
  return out;
}

Result<std::string> referrers_index_with(const std::optional<std::string>& existing, const Descriptor& added,
                                         bool replace_type, std::string_view where) {
  Index index;
  index.media_type = media_type::kOciIndex;
  if (existing) {
    OCIFS_ASSIGN(Index old, parse_index(*existing, where));
    for (auto& d : old.manifests) {
      if (d.digest == added.digest) continue;
      if (replace_type && !added.artifact_type.empty() && d.artifact_type == added.artifact_type) continue;
      index.manifests.push_back(std::move(d));
    }
  }
  index.manifests.push_back(added);
  return to_json(index);
}

}  // namespace ocifs::oci
