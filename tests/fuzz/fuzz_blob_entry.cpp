// The blob cache's entries over a damaged or forged map file (chunk_map.hpp; the trailing
// sha256 is recomputed so that mutations reach the checks behind it): opening the entry, reading
// what the map says is present, writing a chunk, invalidating, flushing, listing and collecting
// garbage. A map that does not fit the blob must be reset, never trusted; every byte read back
// must be the data file's.
//
// Input: u32 blob size (at most 5 chunks), u8 flags (bit 0: a budget of one chunk, bit 1: the data
// file a chunk shorter than the blob), then the map file.
// libfuzzer: -max_len=65536
#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "ocifs/cache/blob_cache.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

namespace {

const std::string kHex = std::string(63, '0') + "1";

char pattern(std::uint64_t offset) { return static_cast<char>((offset * 7 + 3) & 0xff); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint64_t blob_size = in.u32() % (5u << 18) + 1;
  const std::uint8_t flags = in.u8();
  std::string map(in.rest());
  fuzz::fix_sha256_trailer(map, 64);

  fuzz::empty_scratch();
  const auto root = fuzz::scratch_dir() / "cache";
  const auto dir = root / "blobs" / "sha256";
  std::string content(blob_size, '\0');
  for (std::uint64_t i = 0; i < blob_size; ++i) content[i] = pattern(i);
  const std::uint64_t data_size = (flags & 2) && blob_size > cache::ChunkMap::kChunkSize
                                      ? blob_size - cache::ChunkMap::kChunkSize
                                      : blob_size;
  fuzz::write_file(dir / kHex, std::string_view(content).substr(0, data_size));
  fuzz::write_file(dir / (kHex + ".map"), map);

  {
    auto cache = cache::BlobCache::open(root, (flags & 1) ? cache::ChunkMap::kChunkSize : 0);
    check(cache.ok(), "cannot open the cache: {}", cache.ok() ? "" : cache.error().message);
    auto entry = (*cache)->entry("sha256:" + kHex, blob_size);
    if (entry.ok()) {
      auto& e = **entry;
      check(e.size() == blob_size, "entry of {} bytes for a {}-byte blob", e.size(), blob_size);
      check(e.present_bytes() <= blob_size, "{} bytes present", e.present_bytes());
      std::string buf(cache::ChunkMap::kChunkSize + 17, '\0');
      for (std::uint64_t c = 0; c < e.chunk_count(); ++c) {
        const std::uint64_t offset = c * cache::ChunkMap::kChunkSize + (c % 3);
        auto n = e.read(offset, std::as_writable_bytes(std::span(buf)));
        if (!n.ok()) continue;
        check(*n == 0 || e.chunk_present(c), "read {} bytes of absent chunk {}", *n, c);
        for (std::size_t i = 0; i < *n; ++i) {
          check(buf[i] == content[offset + i], "byte {} read back wrong", offset + i);
        }
      }
      if (auto absent = e.next_absent(0); absent < e.chunk_count()) {
        const std::uint64_t at = absent * cache::ChunkMap::kChunkSize;
        auto chunk = std::string_view(content).substr(at, e.chunk_length(absent));
        // Without a budget it stays; with one, the eviction pass a write starts may take it.
        if (e.write_chunk(absent, fuzz::as_bytes(chunk)).ok() && !(flags & 1)) {
          check(e.chunk_present(absent), "chunk {} written but absent", absent);
        }
      }
      (void)e.invalidate(blob_size / 2, 1);
      (void)e.flush();
    }
    (void)(*cache)->list();
    (void)(*cache)->gc(0);
    (void)(*cache)->settle();
  }
  return 0;
}
