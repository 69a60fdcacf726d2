#include "ocifs/oci/inspect_document.hpp"

#include <nlohmann/json.hpp>

namespace ocifs::oci {

namespace {

// A stored document that fails to parse is shown as its text rather than dropped.
nlohmann::json embed(std::string_view text) {
  auto parsed = nlohmann::json::parse(text, nullptr, false);
  return parsed.is_discarded() ? nlohmann::json(std::string(text)) : parsed;
}

}  // namespace

std::string inspect_document(std::string_view name, const Descriptor& manifest, std::string_view manifest_json,
                             std::string_view config_json, const std::vector<Descriptor>& platforms,
                             const std::vector<Descriptor>& referrers) {
  nlohmann::json doc;
  doc["name"] = std::string(name);
  doc["digest"] = manifest.digest;
  doc["mediaType"] = manifest.media_type;
  doc["manifest"] = embed(manifest_json);
  doc["config"] = embed(config_json);
  auto list = nlohmann::json::array();
  for (const auto& d : platforms) {
    nlohmann::json entry{{"digest", d.digest}, {"mediaType", d.media_type}, {"size", d.size}};
    if (d.platform) entry["platform"] = d.platform->str();
    list.push_back(std::move(entry));
  }
  doc["platforms"] = std::move(list);
  auto refs = nlohmann::json::array();
  for (const auto& d : referrers) {
    nlohmann::json entry{{"digest", d.digest}, {"mediaType", d.media_type}, {"size", d.size},
                         {"artifactType", d.artifact_type}};
    if (!d.annotations.empty()) entry["annotations"] = d.annotations;
    refs.push_back(std::move(entry));
  }
  doc["referrers"] = std::move(refs);
  return doc.dump(2, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace ocifs::oci
