#include "ocifs/image/registry_source.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/cache.hpp"
#include "ocifs/cache/cached_blob_source.hpp"
#include "ocifs/cache/registry_remote_blob.hpp"
#include "ocifs/oci/referrers.hpp"
#include "ocifs/registry/registry_client.hpp"
#include "ocifs/util/limits.hpp"
#include "shared_index_lookup.hpp"
#include "source_util.hpp"

namespace ocifs::image {
namespace {

struct Context {
  std::string name;  // ImageRef::str(), for messages
  const oci::Reference& ref;
  const cache::Cache& cache;
  std::shared_ptr<registry::RegistryClient> client;  // null: --offline
};

Error offline_error(const Context& ctx, std::string_view what, std::string_view digest) {
  return make_error(std::errc::no_such_file_or_directory,
                    "cannot resolve {}: {} {} is not in the cache and --offline was given", ctx.name, what,
                    digest);
}

// A manifest, index or config: from the cache, else from the registry (which verifies it
// against the digest) and then kept.
Result<std::string> fetch_document(const Context& ctx, const oci::Descriptor& d, std::string_view what) {
  OCIFS_ASSIGN(auto cached, ctx.cache.read_document(d.digest));
  if (cached) return std::move(*cached);
  if (!ctx.client) return offline_error(ctx, what, d.digest);
  std::string bytes;
  if (what == "config") {
    OCIFS_ASSIGN(bytes, ctx.client->get_blob(d.digest, limits::kMaxConfigBytes));
  } else {
    OCIFS_ASSIGN(auto fetched, ctx.client->get_manifest(d.digest));
    bytes = std::move(fetched.bytes);
  }
  if (d.size >= 0 && bytes.size() != static_cast<std::uint64_t>(d.size)) {
    return make_error(std::errc::io_error, "cannot resolve {}: {} {} has {} bytes, its descriptor says {}",
                      ctx.name, what, d.digest, bytes.size(), d.size);
  }
  if (auto stored = ctx.cache.write_document(d.digest, bytes); !stored) {
    spdlog::warn("{}", stored.error().message);  // still usable, only not kept
  }
  return bytes;
}

// The descriptor of what the reference names: by digest as given, by tag as the registry (or,
// offline, the cache) says now.
Result<oci::Descriptor> top_descriptor(const Context& ctx) {
  oci::Descriptor top;
  top.size = -1;
  if (!ctx.ref.digest.empty()) {
    top.digest = ctx.ref.digest;
    return top;
  }
  if (!ctx.client) {
    OCIFS_ASSIGN(auto digest, ctx.cache.read_ref(ctx.ref.registry, ctx.ref.repository, ctx.ref.tag));
    if (!digest) {
      return make_error(std::errc::no_such_file_or_directory,
                        "cannot resolve {} with --offline: this tag was never resolved with this cache "
                        "(mount it once online, or name the image by digest)",
                        ctx.name);
    }
    top.digest = std::move(*digest);
    return top;
  }
  OCIFS_ASSIGN(auto fetched, ctx.client->get_manifest(ctx.ref.tag));
  top.digest = fetched.digest;
  top.media_type = fetched.media_type;
  top.size = static_cast<std::int64_t>(fetched.bytes.size());
  OCIFS_TRY(ctx.cache.write_document(fetched.digest, fetched.bytes));
  OCIFS_TRY(ctx.cache.write_ref(ctx.ref.registry, ctx.ref.repository, ctx.ref.tag, fetched.digest));
  return top;
}

}  // namespace

Result<ResolvedImage> resolve_registry(const oci::ImageRef& ref, const ResolveOptions& options) {
  if (!options.cache || !options.blob_cache) {
    return make_error(std::errc::invalid_argument, "cannot resolve {}: registry images need a cache directory",
                      ref.str());
  }
  std::shared_ptr<registry::RegistryClient> client;
  if (!options.offline) {
    OCIFS_ASSIGN(client, registry::RegistryClient::create(ref.reference, options.registry));
  }
  Context ctx{ref.str(), ref.reference, *options.cache, client};
  const oci::Platform wanted = options.platform ? options.platform->normalized() : oci::Platform::host();

  ResolvedImage image;
  image.name = ctx.name;
  OCIFS_ASSIGN(auto top, top_descriptor(ctx));
  auto fetch = [&](const oci::Descriptor& d, std::string_view what) { return fetch_document(ctx, d, what); };
  OCIFS_TRY(detail::follow_indexes(ctx.name, top, wanted, fetch, image));
  OCIFS_TRY(detail::read_config(ctx.name, options, fetch, image));

  // Streams for every layer at once only when the layers fit in the cache budget twice over:
  // otherwise the streams evict each other's chunks before the scans reach them, and the scans
  // had better fetch what they read, by range, as they go.
  std::uint64_t total = 0;
  for (const auto& d : image.manifest.layers) total += static_cast<std::uint64_t>(std::max<std::int64_t>(d.size, 0));
  const std::uint64_t budget = options.blob_cache->max_bytes();
  const bool stream_layers = budget == 0 || total <= budget / 2;

  // A read waits for a stream at most a third of its deadline: a stalled stream leaves it the
  // rest to fetch its bytes by range.
  cache::CachedBlobSource::Options blob_options;
  blob_options.stream_wait = std::min(blob_options.stream_wait, options.registry.read_deadline / 3);
  for (std::size_t i = 0; i < image.manifest.layers.size(); ++i) {
    const auto& d = image.manifest.layers[i];
    OCIFS_ASSIGN(auto name, detail::checked_layer_name(ctx.name, i, d));
    if (d.size < 0) {
      return make_error(std::errc::invalid_argument, "cannot resolve {}: {} has no size in the manifest",
                        ctx.name, name);
    }
    OCIFS_ASSIGN(auto entry, options.blob_cache->entry(d.digest, static_cast<std::uint64_t>(d.size)));
    std::shared_ptr<cache::RemoteBlob> remote;
    if (client) remote = std::make_shared<cache::RegistryRemoteBlob>(client, d.digest);
    auto source = std::make_shared<cache::CachedBlobSource>(std::move(entry), std::move(remote), blob_options);
    layer::LayerBlob blob{source, d.digest, false, std::move(name), {}};
    blob.declared_uncompressed = d.media_type.ends_with(".tar");
    blob.media_type = d.media_type;
    blob.annotations = d.annotations;
    // A layer that must be scanned is read whole, in order: stream it at once, every layer in
    // parallel, rather than in range requests as the scan gets there.
    if (stream_layers) blob.prefetch = [source] { source->start_stream(); };
    image.layers.push_back(std::move(blob));
  }
  // A shared index is looked for only when some layer has no index here yet: a warm mount asks
  // the registry nothing more.
  const bool all_indexed = std::all_of(image.layers.begin(), image.layers.end(),
                                       [&](const layer::LayerBlob& blob) { return ctx.cache.has_index(blob.digest); });
  if (options.shared_index != SharedIndexMode::off && !all_indexed) {
    auto shared = find_shared_indexes({ctx.name, ctx.ref, image.manifest_descriptor.digest, ctx.cache,
                                       options.blob_cache, client, blob_options,
                                       [&](const oci::Descriptor& d) { return fetch(d, "shared index manifest"); }});
    for (auto& blob : image.layers) {
      auto it = shared.find(blob.digest);
      if (it == shared.end()) continue;
      blob.shared_index = it->second;
      blob.verify_shared_index = options.shared_index == SharedIndexMode::verify;
    }
  }
  return image;
}

Result<std::vector<oci::Descriptor>> list_referrers(const oci::ImageRef& ref, const ResolveOptions& options,
                                                    std::string_view digest) {
  if (options.offline || ref.transport != oci::Transport::registry) return std::vector<oci::Descriptor>{};
  OCIFS_ASSIGN(auto client, registry::RegistryClient::create(ref.reference, options.registry));
  OCIFS_ASSIGN(auto listed, client->get_referrers(digest, ""));
  if (!listed) return std::vector<oci::Descriptor>{};
  return oci::parse_referrers(listed->index_json, "", fmt::format("the referrers of {}", digest));
}

}  // namespace ocifs::image
