// Image references and what else names an image in text: ImageRef (transports), Reference
// (docker/distribution's normalisation), Digest, Platform. Parsing the canonical form of a
// parsed reference must give the same reference back.
// libfuzzer: -max_len=4096
#include <string>

#include "ocifs/oci/image_ref.hpp"
#include "ocifs/oci/types.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto ref = oci::Reference::parse(text); ref.ok()) {
    auto again = oci::Reference::parse(ref->str());
    check(again.ok(), "'{}' parses, its canonical form '{}' does not: {}", text, ref->str(),
          again.ok() ? "" : again.error().message);
    check(again->registry == ref->registry && again->repository == ref->repository &&
              again->tag == ref->tag && again->digest == ref->digest,
          "'{}' and its canonical form '{}' name different images", text, ref->str());
    check(!ref->registry.empty() && !ref->repository.empty(), "'{}' parses to an empty name", text);
    check(ref->digest.empty() || oci::Digest::parse(ref->digest).ok(), "'{}' has digest '{}'", text,
          ref->digest);
    (void)ref->api_host();
  }
  if (auto image = oci::ImageRef::parse(text); image.ok()) {
    auto again = oci::ImageRef::parse(image->str());
    check(again.ok(), "'{}' parses, its form '{}' does not: {}", text, image->str(),
          again.ok() ? "" : again.error().message);
    check(again->transport == image->transport && again->path == image->path && again->tag == image->tag &&
              again->reference.str() == image->reference.str(),
          "'{}' and its form '{}' name different images", text, image->str());
  }
  if (auto digest = oci::Digest::parse(text); digest.ok()) {
    check(digest->str() == text, "digest '{}' shown as '{}'", text, digest->str());
  }
  if (auto platform = oci::Platform::parse(text); platform.ok()) {
    auto again = oci::Platform::parse(platform->str());
    check(again.ok() && again->normalized() == platform->normalized(),
          "platform '{}' shown as '{}' reads back as {}", text, platform->str(),
          again.ok() ? again->str() : again.error().message);
    (void)oci::platform_match_score(*platform, oci::Platform::host());
    (void)oci::platform_match_score(oci::Platform::host(), *platform);
  }
  return 0;
}
