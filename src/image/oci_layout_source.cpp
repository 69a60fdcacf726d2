#include "ocifs/image/oci_layout_source.hpp"

#include <algorithm>
#include <map>
#include <set>

#include "ocifs/util/limits.hpp"
#include "ocifs/util/sha256.hpp"
#include "ocifs/util/text.hpp"
#include "source_util.hpp"

namespace ocifs::image {

namespace {

constexpr std::string_view kRefName = "org.opencontainers.image.ref.name";
constexpr std::string_view kContainerdName = "io.containerd.image.name";

struct Context {
  const LayoutFiles& files;
  std::string name;  // ImageRef::str(), for messages
};

std::string blob_path(const oci::Digest& digest) {
  return fmt::format("blobs/{}/{}", digest.algorithm, digest.hex);
}

std::string annotation(const oci::Descriptor& d, std::string_view key) {
  auto it = d.annotations.find(std::string(key));
  return it == d.annotations.end() ? std::string() : it->second;
}

Result<oci::Digest> descriptor_digest(const Context& ctx, const oci::Descriptor& d, std::string_view what) {
  auto digest = oci::Digest::parse(d.digest);
  if (!digest)
    return std::move(digest).error().with_context(fmt::format("cannot resolve {}: {}", ctx.name, what));
  return digest;
}

Result<io::BlobSourcePtr> open_blob(const Context& ctx, const oci::Descriptor& d, std::string_view what) {
  OCIFS_ASSIGN(auto digest, descriptor_digest(ctx, d, what));
  auto blob = ctx.files.open(blob_path(digest));
  if (!blob) {
    const bool missing = blob.error().code == std::errc::no_such_file_or_directory;
    return std::move(blob).error().with_context(
        fmt::format("cannot resolve {}: {} {} {} {}", ctx.name, what, d.digest,
                    missing ? "is missing from" : "cannot be opened in", ctx.files.where));
  }
  if (d.size >= 0 && (*blob)->size() != static_cast<std::uint64_t>(d.size)) {
    return make_error(std::errc::io_error,
                      "cannot resolve {}: {} {} ({}) has {} bytes, its descriptor says {}", ctx.name, what,
                      d.digest, (*blob)->describe(), (*blob)->size(), d.size);
  }
  return blob;
}

// Reads a manifest, index or config blob whole and checks it against the descriptor's digest.
Result<std::string> read_verified(const Context& ctx, const oci::Descriptor& d, std::string_view what,
                                  std::uint64_t limit) {
  OCIFS_ASSIGN(auto blob, open_blob(ctx, d, what));
  OCIFS_ASSIGN(auto digest, descriptor_digest(ctx, d, what));
  auto read = io::read_all(*blob, limit);
  if (!read)
    return read.error().with_context(fmt::format("cannot resolve {}: {} {}", ctx.name, what, d.digest));
  std::string bytes = std::move(read).value();
  auto actual = util::sha256_hex(bytes);
  if (actual != digest.hex) {
    return make_error(std::errc::io_error,
                      "cannot resolve {}: {} {} does not match its digest (its content hashes to sha256:{})",
                      ctx.name, what, blob->describe(), actual);
  }
  return bytes;
}

// Reference-normalised form of a name for loose matching ("busybox:latest" ==
// "docker.io/library/busybox:latest"); empty if it does not parse as a reference.
std::string normalized_name(std::string_view name) {
  auto ref = oci::Reference::parse(name);
  return ref ? ref->str() : std::string();
}

// The entries of the layout's index.json that `tag` names.
Result<std::vector<oci::Descriptor>> select_by_tag(const Context& ctx, const oci::Index& index,
                                                   const std::string& tag) {
  std::vector<oci::Descriptor> out;
  if (tag.empty()) {
    std::set<std::string> names;
    bool all_have_platform = true;
    for (const auto& d : index.manifests) {
      names.insert(annotation(d, kRefName));
      all_have_platform = all_have_platform && d.platform.has_value();
    }
    // One image, or one name for several platforms (a multi-platform image copied entry by entry).
    if (index.manifests.size() == 1 || (names.size() == 1 && all_have_platform)) return index.manifests;
    if (index.manifests.empty()) {
      return make_error(std::errc::no_such_file_or_directory,
                        "cannot resolve {}: index.json in {} lists no images", ctx.name, ctx.files.where);
    }
    // Only names that select an image: an entry without one cannot be named at all.
    std::string listed;
    for (const auto& n : names) {
      if (!n.empty()) listed += fmt::format("{}{}", listed.empty() ? "" : ", ", n);
    }
    auto unnamed = std::count_if(index.manifests.begin(), index.manifests.end(),
                                 [](const oci::Descriptor& d) { return annotation(d, kRefName).empty(); });
    std::string rest = unnamed == 0 ? std::string()
                                    : fmt::format("{} {} no {} annotation and cannot be chosen", unnamed,
                                                  unnamed == 1 ? "image has" : "images have", kRefName);
    if (listed.empty()) {
      return make_error(std::errc::invalid_argument, "cannot resolve {}: {} lists {} images, and {}",
                        ctx.name, ctx.files.where, index.manifests.size(), rest);
    }
    return make_error(std::errc::invalid_argument,
                      "cannot resolve {}: {} lists {} images; name one of: {} (as {}:NAME){}", ctx.name,
                      ctx.files.where, index.manifests.size(), listed, ctx.name,
                      rest.empty() ? rest : "; " + rest);
  }
  for (const auto& d : index.manifests) {
    if (annotation(d, kRefName) == tag) out.push_back(d);
  }
  if (out.empty()) {
    // Tools disagree on what ref.name holds ("latest" or a full reference): compare normalised.
    auto wanted = normalized_name(tag);
    for (const auto& d : index.manifests) {
      for (auto key : {kRefName, kContainerdName}) {
        auto n = annotation(d, key);
        if (!wanted.empty() && !n.empty() && normalized_name(n) == wanted) {
          out.push_back(d);
          break;
        }
      }
    }
  }
  if (out.empty()) {
    std::set<std::string> names;
    for (const auto& d : index.manifests) {
      if (auto n = annotation(d, kRefName); !n.empty()) names.insert(n);
    }
    std::string listed;
    for (const auto& n : names) listed += fmt::format("{}{}", listed.empty() ? "" : ", ", util::shown(n));
    return make_error(std::errc::no_such_file_or_directory,
                      "cannot resolve {}: no image named \"{}\" in {} (available: {})", ctx.name, tag,
                      ctx.files.where, listed.empty() ? std::string("none") : listed);
  }
  return out;
}

}  // namespace

Result<ResolvedImage> resolve_oci_layout(const LayoutFiles& files, const oci::ImageRef& ref,
                                         const ResolveOptions& options) {
  Context ctx{files, ref.str()};
  const oci::Platform wanted = options.platform ? options.platform->normalized() : oci::Platform::host();

  auto layout_file = files.open("oci-layout");
  if (!layout_file) {
    return std::move(layout_file)
        .error()
        .with_context(fmt::format("cannot resolve {}: {} is not an OCI image layout", ctx.name, files.where));
  }
  OCIFS_ASSIGN(auto layout_json, io::read_all(**layout_file, 1u << 20));
  OCIFS_ASSIGN(auto version, oci::parse_layout_version(layout_json, (*layout_file)->describe()));
  if (!version.starts_with("1.")) {
    return make_error(std::errc::not_supported,
                      "cannot resolve {}: OCI layout version {} in {} is not supported", ctx.name, version,
                      (*layout_file)->describe());
  }
  auto index_file = files.open("index.json");
  if (!index_file)
    return std::move(index_file).error().with_context(fmt::format("cannot resolve {}", ctx.name));
  OCIFS_ASSIGN(auto index_json, io::read_all(**index_file, limits::kMaxManifestBytes));
  OCIFS_ASSIGN(auto index, oci::parse_index(index_json, (*index_file)->describe()));

  ResolvedImage image;
  image.name = ctx.name;
  OCIFS_ASSIGN(auto candidates, select_by_tag(ctx, index, ref.tag));
  oci::Descriptor chosen;
  if (candidates.size() == 1) {
    chosen = candidates.front();
  } else {
    image.platform_choices = candidates;
    OCIFS_ASSIGN(chosen, detail::choose_platform(ctx.name, candidates, wanted));
  }

  auto fetch = [&](const oci::Descriptor& d, std::string_view what) {
    return read_verified(ctx, d, what, what == "config" ? limits::kMaxConfigBytes : limits::kMaxManifestBytes);
  };
  OCIFS_TRY(detail::follow_indexes(ctx.name, chosen, wanted, fetch, image));
  OCIFS_TRY(detail::read_config(ctx.name, options, fetch, image));
  // One open file per blob, not per layer: layers may name the same blob many times.
  std::map<std::string, io::BlobSourcePtr, std::less<>> opened;
  for (std::size_t i = 0; i < image.manifest.layers.size(); ++i) {
    const auto& d = image.manifest.layers[i];
    OCIFS_ASSIGN(auto name, detail::checked_layer_name(ctx.name, i, d));
    auto& blob = opened[d.digest];
    if (!blob) {
      OCIFS_ASSIGN(blob, open_blob(ctx, d, name));
    } else if (d.size >= 0 && blob->size() != static_cast<std::uint64_t>(d.size)) {
      return make_error(std::errc::io_error, "cannot resolve {}: {} {} has {} bytes, its descriptor says {}",
                        ctx.name, name, d.digest, blob->size(), d.size);
    }
    image.layers.push_back(layer::LayerBlob{blob, d.digest, false, std::move(name), {}});
    image.layers.back().media_type = d.media_type;
  }
  return image;
}

}  // namespace ocifs::image
