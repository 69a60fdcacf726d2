// Images inside archives (image/archive_source.hpp, docker_archive_source.hpp,
// oci_layout_source.hpp): the archive's tar walked into members (gzip archives decoded through
// a seek index), then a docker-archive resolved through manifest.json and the config named by
// its digest, or an oci-archive through index.json, nested indexes and digest-checked blobs.
// Whatever resolves must give a blob for every layer of its manifest.
//
// Input: u8 flags (bit 0: oci-archive, bit 1: ask for a tag), then the archive.
// libfuzzer: -max_len=262144
#include <string>

#include "ocifs/image/archive_source.hpp"
#include "ocifs/image/docker_archive_source.hpp"
#include "ocifs/image/oci_layout_source.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint8_t flags = in.u8();
  const std::string_view bytes = in.rest();
  auto archive = image::ArchiveSource::open(std::make_shared<fuzz::ViewSource>(bytes, "fuzz.tar"));
  if (!archive.ok()) return 0;
  for (const auto& name : (*archive)->names()) {
    auto member = (*archive)->member(name);
    if (member.ok())
      check((*member)->size() <= (1ull << 40), "member '{}' of {} bytes", name, (*member)->size());
  }

  oci::ImageRef ref;
  ref.path = "fuzz.tar";
  image::ResolveOptions options;
  options.platform = oci::Platform::parse("linux/amd64").value();
  Result<image::ResolvedImage> resolved = Error{};
  if (flags & 1) {
    ref.transport = oci::Transport::oci_archive;
    if (flags & 2) ref.tag = "t";
    image::LayoutFiles files{"fuzz.tar", [&](const std::string& path) { return (*archive)->member(path); }};
    resolved = image::resolve_oci_layout(files, ref, options);
  } else {
    ref.transport = oci::Transport::docker_archive;
    if (flags & 2) ref.tag = "example.com/app:t";
    resolved = image::resolve_docker_archive(**archive, ref, options);
  }
  if (!resolved.ok()) return 0;
  check(resolved->layers.size() == resolved->manifest.layers.size(), "{} layer blobs for {} layers",
        resolved->layers.size(), resolved->manifest.layers.size());
  for (const auto& layer : resolved->layers) {
    check(layer.blob != nullptr && !layer.name.empty(), "a layer without a blob or a name");
  }
  return 0;
}
