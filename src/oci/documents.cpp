// JSON parsing of manifests, indexes, image configs and the oci-layout file, and the JSON of a
// synthesized manifest. Unknown fields are ignored; wrong types of known fields are errors.
#include <algorithm>
#include <cctype>

#include "json_util.hpp"
#include "ocifs/oci/types.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/text.hpp"

namespace ocifs::oci {

using namespace detail;

namespace {

constexpr std::string_view kSchema1Reason =
    "Docker schema1 manifests are obsolete and not supported; pull the image with a current client "
    "and push it again to convert it to schema2 or OCI";

Error schema1_error(std::string_view where) {
  return make_error(std::errc::not_supported, "cannot use manifest {}: {}", where, kSchema1Reason);
}

// Manifests and indexes alike: schema 1 is refused with its own explanation, anything but 2 as
// unsupported.
Result<void> require_schema2(int version, std::string_view media, std::string_view kind, std::string_view where) {
  if (version == 1 || media == media_type::kDockerSchema1 || media == media_type::kDockerSchema1Signed) {
    return schema1_error(where);
  }
  if (version != 2) {
    return make_error(std::errc::not_supported, "cannot use {} {}: schemaVersion {} is not supported", kind, where,
                      version);
  }
  return util::success();
}

Result<const json*> require_object(const json& doc, std::string_view where) {
  if (!doc.is_object())
    return make_error(std::errc::invalid_argument, "cannot parse {}: not a JSON object", where);
  return &doc;
}

// "alg:encoded" as the image spec's descriptor grammar allows (any algorithm, verified later).
bool plausible_digest(std::string_view d) {
  auto colon = d.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == d.size()) return false;
  auto alg = d.substr(0, colon);
  auto enc = d.substr(colon + 1);
  bool alg_ok = std::all_of(alg.begin(), alg.end(), [](unsigned char c) {
    return std::islower(c) || std::isdigit(c) || c == '+' || c == '.' || c == '_' || c == '-';
  });
  bool enc_ok = std::all_of(enc.begin(), enc.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '=' || c == '_' || c == '-';
  });
  return alg_ok && enc_ok;
}

Result<Platform> parse_platform(const json& p, std::string_view where, std::string_view path) {
  if (!p.is_object()) return bad_field(where, path, "is not an object");
  Platform platform;
  OCIFS_ASSIGN(platform.architecture, get_string(p, "architecture", where, path, true));
  OCIFS_ASSIGN(platform.os, get_string(p, "os", where, path, true));
  OCIFS_ASSIGN(platform.variant, get_string(p, "variant", where, path));
  OCIFS_ASSIGN(platform.os_version, get_string(p, "os.version", where, path));
  OCIFS_ASSIGN(platform.os_features, get_strings(p, "os.features", where, path));
  return platform;
}

Result<Descriptor> parse_descriptor(const json& d, std::string_view where, std::string_view path) {
  if (!d.is_object()) return bad_field(where, path, "is not an object");
  Descriptor desc;
  OCIFS_ASSIGN(desc.media_type, get_string(d, "mediaType", where, path));
  OCIFS_ASSIGN(desc.digest, get_string(d, "digest", where, path, true));
  if (!plausible_digest(desc.digest)) {
    return bad_field(where, field_path(path, "digest"),
                     fmt::format("is not a digest: \"{}\"", util::shown(desc.digest)));
  }
  OCIFS_ASSIGN(desc.size, get_int(d, "size", where, path, false, -1));
  if (d.contains("size") && desc.size < 0) return bad_field(where, field_path(path, "size"), "is negative");
  OCIFS_ASSIGN(desc.annotations, get_string_map(d, "annotations", where, path));
  OCIFS_ASSIGN(desc.urls, get_strings(d, "urls", where, path));
  OCIFS_ASSIGN(desc.artifact_type, get_string(d, "artifactType", where, path));
  if (auto it = d.find("platform"); it != d.end() && !it->is_null()) {
    OCIFS_ASSIGN(desc.platform, parse_platform(*it, where, field_path(path, "platform")));
  }
  return desc;
}

Result<std::vector<Descriptor>> parse_descriptors(const json& obj, const char* key, std::string_view where,
                                                  bool required) {
  std::vector<Descriptor> out;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return bad_field(where, key, it == obj.end() ? "is missing" : "is null, not an array");
    return out;
  }
  if (!it->is_array()) return bad_field(where, key, "is not an array");
  for (std::size_t i = 0; i < it->size(); ++i) {
    OCIFS_ASSIGN(auto desc, parse_descriptor((*it)[i], where, fmt::format("{}[{}]", key, i)));
    out.push_back(std::move(desc));
  }
  return out;
}

Result<int> parse_schema_version(const json& doc, std::string_view where) {
  OCIFS_ASSIGN(auto version, get_int(doc, "schemaVersion", where, "", false, 2));
  return static_cast<int>(version);
}

nlohmann::ordered_json descriptor_json(const Descriptor& d) {
  nlohmann::ordered_json j;
  j["mediaType"] = d.media_type;
  j["digest"] = d.digest;
  if (d.size >= 0) j["size"] = d.size;  // -1: the document had none (a negative one does not parse)
  if (!d.urls.empty()) j["urls"] = d.urls;
  if (!d.artifact_type.empty()) j["artifactType"] = d.artifact_type;
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  if (d.platform) {
    nlohmann::ordered_json p;
    p["architecture"] = d.platform->architecture;
    p["os"] = d.platform->os;
    if (!d.platform->os_version.empty()) p["os.version"] = d.platform->os_version;
    if (!d.platform->os_features.empty()) p["os.features"] = d.platform->os_features;
    if (!d.platform->variant.empty()) p["variant"] = d.platform->variant;
    j["platform"] = std::move(p);
  }
  return j;
}

}  // namespace

Result<Manifest> parse_manifest(std::string_view text, std::string_view where) {
  OCIFS_ASSIGN(auto doc, parse_json(text, where));
  OCIFS_TRY(require_object(doc, where));
  Manifest m;
  OCIFS_ASSIGN(m.schema_version, parse_schema_version(doc, where));
  OCIFS_ASSIGN(m.media_type, get_string(doc, "mediaType", where, ""));
  OCIFS_TRY(require_schema2(m.schema_version, m.media_type, "manifest", where));
  if (is_index_media_type(m.media_type)) {
    return make_error(std::errc::invalid_argument,
                      "cannot use manifest {}: it is an image index ({}), not a manifest", where,
                      m.media_type);
  }
  if (!m.media_type.empty() && !is_manifest_media_type(m.media_type)) {
    return make_error(std::errc::not_supported,
                      "cannot use manifest {}: media type \"{}\" is not an image manifest", where,
                      util::shown(m.media_type));
  }
  if (m.media_type.empty()) {
    if (doc.contains("manifests") && !doc.contains("config")) {
      return make_error(std::errc::invalid_argument,
                        "cannot use manifest {}: it is an image index, not a manifest", where);
    }
    m.media_type = media_type::kOciManifest;
  }
  auto config = doc.find("config");
  if (config == doc.end() || config->is_null())
    return bad_field(where, "config", config == doc.end() ? "is missing" : "is null, not a descriptor");
  OCIFS_ASSIGN(m.config, parse_descriptor(*config, where, "config"));
  if (auto layers = doc.find("layers");
      layers != doc.end() && layers->is_array() && layers->size() > limits::kMaxLayers) {
    return make_error(
        std::errc::file_too_large,
        "cannot use manifest {}: it has {} layers, more than the limit of {} (overlayfs stacks at "
        "most 500 layers)",
        where, layers->size(), limits::kMaxLayers);
  }
  OCIFS_ASSIGN(m.layers, parse_descriptors(doc, "layers", where, false));
  OCIFS_ASSIGN(m.artifact_type, get_string(doc, "artifactType", where, ""));
  if (auto subject = doc.find("subject"); subject != doc.end() && !subject->is_null()) {
    OCIFS_ASSIGN(m.subject, parse_descriptor(*subject, where, "subject"));
  }
  OCIFS_ASSIGN(m.annotations, get_string_map(doc, "annotations", where, ""));
  return m;
}

Result<Index> parse_index(std::string_view text, std::string_view where) {
  OCIFS_ASSIGN(auto doc, parse_json(text, where));
  OCIFS_TRY(require_object(doc, where));
  Index index;
  OCIFS_ASSIGN(index.schema_version, parse_schema_version(doc, where));
  OCIFS_ASSIGN(index.media_type, get_string(doc, "mediaType", where, ""));
  OCIFS_TRY(require_schema2(index.schema_version, index.media_type, "index", where));
  if (!index.media_type.empty() && !is_index_media_type(index.media_type)) {
    return make_error(std::errc::invalid_argument,
                      "cannot use index {}: media type \"{}\" is not an image index", where,
                      util::shown(index.media_type));
  }
  if (index.media_type.empty()) index.media_type = media_type::kOciIndex;
  OCIFS_ASSIGN(index.manifests, parse_descriptors(doc, "manifests", where, true));
  OCIFS_ASSIGN(index.annotations, get_string_map(doc, "annotations", where, ""));
  return index;
}

Result<ImageConfig> parse_config(std::string_view text, std::string_view where) {
  // Only what ImageConfig holds is built: a config's history, labels and the rest can be large.
  auto keep = [](std::span<const std::string> path, std::string_view key) {
    if (path.empty()) {
      return key == "architecture" || key == "os" || key == "variant" || key == "os.version" ||
             key == "os.features" || key == "created" || key == "config" || key == "rootfs";
    }
    if (path.size() == 1 && path[0] == "config") {
      return key == "Env" || key == "Entrypoint" || key == "Cmd" || key == "WorkingDir" || key == "User";
    }
    if (path.size() == 1 && path[0] == "rootfs") return key == "diff_ids";
    return true;
  };
  OCIFS_ASSIGN(auto doc, parse_json(text, where, keep));
  OCIFS_TRY(require_object(doc, where));
  ImageConfig c;
  OCIFS_ASSIGN(c.platform.architecture, get_string(doc, "architecture", where, ""));
  OCIFS_ASSIGN(c.platform.os, get_string(doc, "os", where, ""));
  OCIFS_ASSIGN(c.platform.variant, get_string(doc, "variant", where, ""));
  OCIFS_ASSIGN(c.platform.os_version, get_string(doc, "os.version", where, ""));
  OCIFS_ASSIGN(c.platform.os_features, get_strings(doc, "os.features", where, ""));
  OCIFS_ASSIGN(c.created, get_string(doc, "created", where, ""));
  if (auto it = doc.find("config"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) return bad_field(where, "config", "is not an object");
    OCIFS_ASSIGN(c.env, get_strings(*it, "Env", where, "config"));
    OCIFS_ASSIGN(c.entrypoint, get_strings(*it, "Entrypoint", where, "config"));
    OCIFS_ASSIGN(c.cmd, get_strings(*it, "Cmd", where, "config"));
    OCIFS_ASSIGN(c.working_dir, get_string(*it, "WorkingDir", where, "config"));
    OCIFS_ASSIGN(c.user, get_string(*it, "User", where, "config"));
  }
  if (auto it = doc.find("rootfs"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) return bad_field(where, "rootfs", "is not an object");
    OCIFS_ASSIGN(c.diff_ids, get_strings(*it, "diff_ids", where, "rootfs"));
    for (std::size_t i = 0; i < c.diff_ids.size(); ++i) {
      if (!plausible_digest(c.diff_ids[i])) {
        return bad_field(where, fmt::format("rootfs.diff_ids[{}]", i),
                         fmt::format("is not a digest: \"{}\"", util::shown(c.diff_ids[i])));
      }
    }
  }
  return c;
}

Result<std::string> sniff_media_type(std::string_view text, std::string_view where) {
  OCIFS_ASSIGN(auto doc, parse_json(text, where));
  OCIFS_TRY(require_object(doc, where));
  OCIFS_ASSIGN(auto media_type, get_string(doc, "mediaType", where, ""));
  if (!media_type.empty()) return media_type;
  OCIFS_ASSIGN(auto version, parse_schema_version(doc, where));
  if (version == 1) return std::string(media_type::kDockerSchema1);
  if (doc.contains("manifests")) return std::string(media_type::kOciIndex);
  if (doc.contains("layers") || doc.contains("config")) return std::string(media_type::kOciManifest);
  return make_error(std::errc::invalid_argument,
                    "cannot parse {}: neither a manifest nor an index (no mediaType, layers or manifests)",
                    where);
}

Result<std::string> parse_layout_version(std::string_view text, std::string_view where) {
  OCIFS_ASSIGN(auto doc, parse_json(text, where));
  OCIFS_TRY(require_object(doc, where));
  return get_string(doc, "imageLayoutVersion", where, "", true);
}

std::string to_json(const Manifest& manifest) {
  nlohmann::ordered_json j;
  j["schemaVersion"] = manifest.schema_version;
  j["mediaType"] = manifest.media_type;
  if (!manifest.artifact_type.empty()) j["artifactType"] = manifest.artifact_type;
  j["config"] = descriptor_json(manifest.config);
  auto layers = nlohmann::ordered_json::array();
  for (const auto& layer : manifest.layers) layers.push_back(descriptor_json(layer));
  j["layers"] = std::move(layers);
  if (manifest.subject) j["subject"] = descriptor_json(*manifest.subject);
  if (!manifest.annotations.empty()) j["annotations"] = manifest.annotations;
  return j.dump(3);
}

std::string to_json(const Index& index) {
  nlohmann::ordered_json j;
  j["schemaVersion"] = index.schema_version;
  j["mediaType"] = index.media_type;
  auto manifests = nlohmann::ordered_json::array();
  for (const auto& m : index.manifests) manifests.push_back(descriptor_json(m));
  j["manifests"] = std::move(manifests);
  if (!index.annotations.empty()) j["annotations"] = index.annotations;
  return j.dump(3);
}

}  // namespace ocifs::oci
