// resolve_image: dispatch on the transport to the source that reads it.
#include "ocifs/image/image_source.hpp"

#include <filesystem>
#include <limits>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/byte_size.hpp"
#include "ocifs/image/archive_source.hpp"
#include "ocifs/image/docker_archive_source.hpp"
#include "ocifs/image/oci_layout_source.hpp"
#include "ocifs/image/registry_source.hpp"
#include "ocifs/io/file_source.hpp"

namespace ocifs::image {

namespace {

Result<std::shared_ptr<const ArchiveSource>> open_archive(const oci::ImageRef& ref,
                                                          const ResolveOptions& options) {
  auto file = io::FileSource::open(ref.path);
  if (!file) return std::move(file).error().with_context(fmt::format("cannot resolve {}", ref.str()));
  ArchiveOptions archive_options;
  archive_options.cache = options.cache;
  if (options.cache) {
    // The blob cache's budget (0: none, then neither is this).
    auto budget = options.blob_cache ? options.blob_cache->max_bytes()
                                     : cache::default_cache_max(options.cache->root());
    archive_options.decompress_limit = budget ? budget : std::numeric_limits<std::uint64_t>::max();
  }
  auto archive = ArchiveSource::open(std::move(*file), archive_options);
  if (!archive) return std::move(archive).error().with_context(fmt::format("cannot resolve {}", ref.str()));
  return archive;
}

}  // namespace

Result<SharedIndexMode> parse_shared_index_mode(std::string_view text) {
  if (text == "use") return SharedIndexMode::use;
  if (text == "verify") return SharedIndexMode::verify;
  if (text == "off") return SharedIndexMode::off;
  return make_error(std::errc::invalid_argument, "--shared-index must be use, verify or off, not \"{}\"", text);
}

Result<ResolvedImage> resolve_image(const oci::ImageRef& ref, const ResolveOptions& options) {
  switch (ref.transport) {
    case oci::Transport::registry:
      return resolve_registry(ref, options);
    case oci::Transport::oci_layout: {
      std::error_code ec;
      if (!std::filesystem::is_directory(ref.path, ec)) {
        return make_error(std::errc::not_a_directory, "cannot resolve {}: {} is not a directory", ref.str(),
                          ref.path);
      }
      std::filesystem::path root = ref.path;
      LayoutFiles files{ref.path, [root](const std::string& path) -> Result<io::BlobSourcePtr> {
                          OCIFS_ASSIGN(auto file, io::FileSource::open(root / path));
                          return io::BlobSourcePtr(std::move(file));
                        }};
      return resolve_oci_layout(files, ref, options);
    }
    case oci::Transport::oci_archive: {
      OCIFS_ASSIGN(auto archive, open_archive(ref, options));
      LayoutFiles files{archive->describe(),
                        [archive](const std::string& path) { return archive->member(path); }};
      return resolve_oci_layout(files, ref, options);
    }
    case oci::Transport::docker_archive: {
      OCIFS_ASSIGN(auto archive, open_archive(ref, options));
      return resolve_docker_archive(*archive, ref, options);
    }
  }
  return make_error(std::errc::invalid_argument, "cannot resolve {}: unknown transport", ref.str());
}

}  // namespace ocifs::image
