// The small files of the cache directory (cache.hpp), read back as a later mount reads them:
// access records (the files an image's first mount read), tag refs (the digest a tag resolved
// to, for --offline) and stored registry documents (checked against their digest, then parsed).
// A record that reads must write back to a record that reads the same; a ref must be a digest.
//
// Input: u8 which (0 access record, 1 ref, 2 document under its own digest, 3 document under
// another), then the file's bytes.
// libfuzzer: -max_len=65536
#include <string>

#include "ocifs/cache/cache.hpp"
#include "ocifs/oci/types.hpp"
#include "ocifs/util/sha256.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const int which = in.u8() % 4;
  const std::string_view bytes = in.rest();
  fuzz::empty_scratch();
  const auto root = fuzz::scratch_dir() / "cache";
  auto cache = cache::Cache::open(root);
  check(cache.ok(), "cannot open the cache: {}", cache.ok() ? "" : cache.error().message);
  const std::string hex = util::sha256_hex(bytes);
  const std::string digest = "sha256:" + hex;

  if (which == 0) {
    fuzz::write_file(root / "access" / "sha256" / hex, bytes);
    auto record = cache->read_access_record(digest);
    check(record.ok(), "read_access_record: {}", record.ok() ? "" : record.error().message);
    if (!*record) return 0;
    check((*record)->size() <= cache::Cache::kMaxAccessRecord, "{} inodes", (*record)->size());
    check(cache->write_access_record(digest, **record).ok(), "write_access_record");
    auto again = cache->read_access_record(digest);
    check(again.ok() && *again && **again == **record, "an access record changed on a round trip");
  } else if (which == 1) {
    fuzz::write_file(root / "refs" / "registry.example" / "team" / "app" / "latest", bytes);
    auto ref = cache->read_ref("registry.example", "team/app", "latest");
    check(ref.ok(), "read_ref: {}", ref.ok() ? "" : ref.error().message);
    if (*ref) check(util::is_sha256_digest(**ref), "ref '{}' is not a digest", **ref);
  } else {
    const std::string name = which == 2 ? hex : std::string(64, 'a');
    fuzz::write_file(root / "documents" / "sha256" / name, bytes);
    auto doc = cache->read_document("sha256:" + name);
    check(doc.ok(), "read_document: {}", doc.ok() ? "" : doc.error().message);
    if (!*doc) return 0;
    check(**doc == bytes && name == hex, "a document that does not match its digest was read");
    // What a registry source does with a cached document: its media type says how to parse it.
    auto type = oci::sniff_media_type(**doc, "cached document");
    if (type.ok() && oci::is_index_media_type(*type)) {
      (void)oci::parse_index(**doc, "cached document");
    } else if (type.ok()) {
      (void)oci::parse_manifest(**doc, "cached document");
    }
    (void)oci::parse_config(**doc, "cached document");
  }
  return 0;
}
