// ChunkMap::parse: the blob cache's map files (format in chunk_map.hpp). The trailing sha256 is
// recomputed first so that mutations reach the checks behind it. A map that parses must
// serialize back to the same bytes and be consistent: present chunks within the blob, merged
// with itself unchanged.
// libfuzzer: -max_len=262144
#include <string>

#include "ocifs/cache/chunk_map.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  fuzz::fix_sha256_trailer(bytes, 64);
  auto map = cache::ChunkMap::parse(bytes);
  if (!map) return 0;
  check(map->serialize() == bytes, "a map that parses does not serialize to the same bytes");
  check(map->present_bytes() <= map->blob_size(), "{} bytes present of {}", map->present_bytes(),
        map->blob_size());
  std::uint64_t total = 0;
  for (std::uint64_t i = 0; i < map->chunk_count(); ++i) total += map->chunk_length(i);
  check(total == map->blob_size(), "chunks add up to {} of {}", total, map->blob_size());
  auto merged = *map;
  merged.merge(*map);
  check(merged.serialize() == bytes, "merging a map with itself changes it");
  return 0;
}
