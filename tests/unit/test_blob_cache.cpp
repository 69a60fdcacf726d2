// BlobCache, BlobEntry and ChunkMap: the map's format and damage, present/absent accounting,
// two caches (as two processes) sharing one blob, LRU eviction that frees disk blocks, gc, and
// the --cache-max size parser.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <random>
#include <thread>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/byte_size.hpp"
#include "ocifs/cache/chunk_map.hpp"
#include "ocifs/util/sha256.hpp"
#include "sample_data.hpp"
#include "temp_dir.hpp"

using namespace ocifs;
namespace fs = std::filesystem;

namespace {

using ocifs::test::random_bytes;
using ocifs::test::TempDir;

constexpr std::uint64_t kChunk = cache::ChunkMap::kChunkSize;

std::string digest_of(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

std::span<const std::byte> chunk_of(const std::string& data, std::uint64_t chunk) {
  auto start = chunk * kChunk;
  auto len = std::min<std::uint64_t>(kChunk, data.size() - start);
  return std::as_bytes(std::span(data.data() + start, len));
}

std::string read_entry(cache::BlobEntry& entry, std::uint64_t offset, std::size_t len) {
  std::string out(len, '\0');
  auto n = entry.read(offset, std::as_writable_bytes(std::span(out)));
  REQUIRE(n);
  out.resize(*n);
  return out;
}

std::uint64_t allocated(const fs::path& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return static_cast<std::uint64_t>(st.st_blocks) * 512;
}

fs::path map_path(const fs::path& root, std::string_view digest) {
  return root / "blobs" / "sha256" / (std::string(digest.substr(7)) + ".map");
}

std::string slurp(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void spit(const fs::path& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

// Rewrites the last-use time of every present chunk of a blob's map (the blob must be closed).
void set_last_use(const fs::path& root, std::string_view digest, std::uint32_t t) {
  auto map = cache::ChunkMap::parse(slurp(map_path(root, digest)));
  REQUIRE(map);
  for (std::uint64_t c = 0; c < map->chunk_count(); ++c) map->set_last_use(c, t);
  spit(map_path(root, digest), map->serialize());
}

}  // namespace

TEST_CASE("ChunkMap round-trips bits and last-use times") {
  cache::ChunkMap map(10 * kChunk + 123);
  CHECK(map.chunk_count() == 11);
  CHECK(map.chunk_length(10) == 123);
  map.set(0);
  map.set(10);
  map.set(5);
  map.set_last_use(5, 1'700'000'000);
  map.set_last_use(10, 1'800'000'000);
  CHECK(map.present_chunks() == 3);
  CHECK(map.present_bytes() == 2 * kChunk + 123);
  CHECK(map.last_use_max() == 1'800'000'000);
  auto bytes = map.serialize();
  CHECK(bytes.size() == cache::ChunkMap::encoded_size(10 * kChunk + 123));
  CHECK(bytes.size() == 32 + 8 + 4 * 11 + 32);
  auto back = cache::ChunkMap::parse(bytes);
  REQUIRE(back);
  CHECK(back->blob_size() == map.blob_size());
  CHECK(back->words() == map.words());
  CHECK(back->last_use(5) == 1'700'000'000);
  CHECK(back->test(10));
  CHECK_FALSE(back->test(9));

  cache::ChunkMap empty(0);
  CHECK(empty.chunk_count() == 0);
  auto empty_back = cache::ChunkMap::parse(empty.serialize());
  REQUIRE(empty_back);
  CHECK(empty_back->present_bytes() == 0);

  cache::ChunkMap big(200 * kChunk);  // several bitmap words
  for (std::uint64_t c = 0; c < 200; c += 3) big.set(c);
  auto big_back = cache::ChunkMap::parse(big.serialize());
  REQUIRE(big_back);
  CHECK(big_back->present_chunks() == 67);
}

TEST_CASE("A damaged map is never trusted") {
  cache::ChunkMap map(100 * kChunk);
  for (std::uint64_t c = 0; c < 100; c += 2) map.set(c);
  const auto good = map.serialize();
  REQUIRE(cache::ChunkMap::parse(good));
  // Every single-byte change anywhere is caught: header checks or the checksum.
  for (std::size_t i = 0; i < good.size(); ++i) {
    auto bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    CHECK_FALSE(cache::ChunkMap::parse(bad));
  }
  CHECK_FALSE(cache::ChunkMap::parse(good.substr(0, good.size() - 1)));
  CHECK_FALSE(cache::ChunkMap::parse(good + "x"));
  CHECK_FALSE(cache::ChunkMap::parse(""));
  CHECK_FALSE(cache::ChunkMap::parse(std::string(good.size(), '\0')));

  // A well-formed, correctly summed map with bits beyond the last chunk is refused too.
  cache::ChunkMap odd(3 * kChunk);
  auto bytes = odd.serialize();
  bytes[32] = static_cast<char>(0xff);  // bits 0-7 of the first word; chunks 3-7 do not exist
  auto body = bytes.substr(0, bytes.size() - 32);
  util::Sha256 sum;
  sum.update(std::string_view(body));
  auto d = sum.digest();
  bytes = body + std::string(reinterpret_cast<const char*>(d.data()), d.size());
  CHECK_FALSE(cache::ChunkMap::parse(bytes));
}

TEST_CASE("Byte sizes parse as dd does and format in binary units") {
  auto parse = [](std::string_view s) {
    auto r = cache::parse_byte_size(s);
    REQUIRE(r);
    return *r;
  };
  CHECK(parse("0") == 0);
  CHECK(parse("unlimited") == 0);
  CHECK(parse("none") == 0);
  CHECK(parse("4096") == 4096);
  CHECK(parse("100B") == 100);
  CHECK(parse("10G") == (std::uint64_t{10} << 30));
  CHECK(parse("10g") == (std::uint64_t{10} << 30));
  CHECK(parse("512M") == (std::uint64_t{512} << 20));
  CHECK(parse("1.5GiB") == (std::uint64_t{3} << 29));
  CHECK(parse("1.5G") == (std::uint64_t{3} << 29));
  CHECK(parse("2T") == (std::uint64_t{2} << 40));
  CHECK(parse("1K") == 1024);
  CHECK(parse("1kB") == 1000);
  CHECK(parse("1KB") == 1000);
  CHECK(parse("2.5GB") == 2'500'000'000);
  CHECK(parse("1 MiB") == (1u << 20));
  CHECK(parse(".5K") == 512);
  CHECK(parse("1P") == (std::uint64_t{1} << 50));
  for (std::string_view bad : {"", "G", "abc", "10X", "10GiBs", "-1G", "1.5", "1e9", "99999999999999999999",
                               "20000000P", "10 G B"}) {
    auto r = cache::parse_byte_size(bad);
    CHECK_FALSE(r);
    if (!r) CHECK(r.error().message.find("cannot parse size") != std::string::npos);
  }
  CHECK(cache::format_byte_size(0) == "0 B");
  CHECK(cache::format_byte_size(812) == "812 B");
  CHECK(cache::format_byte_size(1024) == "1.00 KiB");
  CHECK(cache::format_byte_size(28730982) == "27.4 MiB");
  CHECK(cache::format_byte_size(std::uint64_t{512} << 20) == "512 MiB");
  CHECK(cache::format_byte_size(std::uint64_t{3} << 29) == "1.50 GiB");

  TempDir tmp;
  auto def = cache::default_cache_max(tmp.path / "not" / "yet");
  CHECK(def > 0);
  CHECK(def <= (std::uint64_t{10} << 30));
}

TEST_CASE("BlobEntry accounts for present and absent chunks and reads only present ones") {
  TempDir tmp;
  auto data = random_bytes(5 * kChunk + 1000, 1);
  auto digest = digest_of(data);
  auto blobs = cache::BlobCache::open(tmp.path, 0);
  REQUIRE(blobs);
  auto e = (*blobs)->entry(digest, data.size());
  REQUIRE(e);
  auto& entry = **e;
  CHECK(entry.digest() == digest);
  CHECK(entry.size() == data.size());
  CHECK(entry.chunk_count() == 6);
  CHECK(entry.chunk_length(5) == 1000);
  CHECK(entry.present_bytes() == 0);
  CHECK_FALSE(entry.complete());
  CHECK(entry.next_absent(0) == 0);
  CHECK(fs::file_size(entry.data_path()) == data.size());
  CHECK(allocated(entry.data_path()) == 0);  // sparse

  CHECK(read_entry(entry, 0, 100).empty());
  REQUIRE(entry.write_chunk(1, chunk_of(data, 1)));
  REQUIRE(entry.write_chunk(2, chunk_of(data, 2)));
  REQUIRE(entry.write_chunk(5, chunk_of(data, 5)));
  CHECK(entry.present_bytes() == 2 * kChunk + 1000);
  CHECK(entry.chunk_present(1));
  CHECK_FALSE(entry.chunk_present(0));
  CHECK(entry.present(kChunk, 2 * kChunk));
  CHECK(entry.present(kChunk + 10, 100));
  CHECK_FALSE(entry.present(kChunk, 3 * kChunk));
  CHECK(entry.present(5 * kChunk + 999, 1000));  // clipped to the blob's end
  CHECK(entry.next_absent(1) == 3);
  CHECK(entry.next_absent(5) == 6);
  // Reads stop at the first absent chunk.
  CHECK(read_entry(entry, 0, 10).empty());
  CHECK(read_entry(entry, kChunk + 5, 3 * kChunk) == data.substr(kChunk + 5, 2 * kChunk - 5));
  CHECK(read_entry(entry, 5 * kChunk + 10, 5000) == data.substr(5 * kChunk + 10));
  CHECK(read_entry(entry, data.size(), 10).empty());

  // Wrong lengths and indexes are refused.
  CHECK_FALSE(entry.write_chunk(0, chunk_of(data, 0).first(100)));
  CHECK_FALSE(entry.write_chunk(6, chunk_of(data, 5)));
  CHECK_FALSE(entry.write_chunk(5, chunk_of(data, 4)));

  for (std::uint64_t c : {0, 3, 4}) REQUIRE(entry.write_chunk(c, chunk_of(data, c)));
  CHECK(entry.complete());
  CHECK(entry.present_bytes() == data.size());
  CHECK(read_entry(entry, 0, data.size()) == data);
  CHECK(entry.last_use() > 0);

  // The same object while alive; a different size for the same digest is refused.
  auto again = (*blobs)->entry(digest, data.size());
  REQUIRE(again);
  CHECK(again->get() == &entry);
  CHECK_FALSE((*blobs)->entry(digest, data.size() + 1));
  CHECK_FALSE((*blobs)->entry("sha256:xyz", 10));
  CHECK_FALSE((*blobs)->entry("md5:" + std::string(64, 'a'), 10));
  CHECK_FALSE((*blobs)->entry("sha256:../../../../etc/passwd" + std::string(35, 'a'), 10));

  // An empty blob is complete from the start.
  auto empty = (*blobs)->entry(digest_of(""), 0);
  REQUIRE(empty);
  CHECK((*empty)->complete());
  CHECK((*empty)->chunk_count() == 0);
  CHECK(read_entry(**empty, 0, 10).empty());
  REQUIRE((*empty)->flush());

  // invalidate: absent in memory and on disk.
  REQUIRE(entry.invalidate(kChunk + 1, 10));
  CHECK_FALSE(entry.chunk_present(1));
  CHECK(entry.chunk_present(2));
  REQUIRE(entry.flush());
  auto map = cache::ChunkMap::parse(slurp(map_path(tmp.path, digest)));
  REQUIRE(map);
  CHECK_FALSE(map->test(1));
  CHECK(map->present_chunks() == 5);
}

TEST_CASE("Chunks persist across caches only after flush, and a damaged map counts as empty") {
  TempDir tmp;
  auto data = random_bytes(4 * kChunk, 2);
  auto digest = digest_of(data);
  {
    auto blobs = cache::BlobCache::open(tmp.path, 0);
    REQUIRE(blobs);
    auto entry = (*blobs)->entry(digest, data.size());
    REQUIRE(entry);
    REQUIRE((*entry)->write_chunk(0, chunk_of(data, 0)));
    REQUIRE((*entry)->write_chunk(3, chunk_of(data, 3)));
    // Not flushed yet (less than a second): another cache ("process") does not trust them.
    auto other = cache::BlobCache::open(tmp.path, 0);
    auto theirs = (*other)->entry(digest, data.size());
    REQUIRE(theirs);
    CHECK((*theirs)->present_bytes() == 0);
    REQUIRE((*entry)->flush());
    REQUIRE((*theirs)->refresh());
    CHECK((*theirs)->present_bytes() == 2 * kChunk);
    CHECK(read_entry(**theirs, 3 * kChunk, kChunk) == data.substr(3 * kChunk));
  }
  {
    // Reopened: what was flushed (and at destruction) is there.
    auto blobs = cache::BlobCache::open(tmp.path, 0);
    auto entry = (*blobs)->entry(digest, data.size());
    REQUIRE(entry);
    CHECK((*entry)->present_bytes() == 2 * kChunk);
    auto list = (*blobs)->list();
    REQUIRE(list);
    REQUIRE(list->size() == 1);
    CHECK(list->front().digest == digest);
    CHECK(list->front().present_bytes == 2 * kChunk);
    CHECK(list->front().size == data.size());
  }
  // Damage one byte of the map: nothing is trusted, and the untrusted data is dropped.
  auto path = map_path(tmp.path, digest);
  auto bytes = slurp(path);
  bytes[40] = static_cast<char>(bytes[40] ^ 1);
  spit(path, bytes);
  {
    auto blobs = cache::BlobCache::open(tmp.path, 0);
    auto list = (*blobs)->list();
    REQUIRE(list);
    REQUIRE(list->size() == 1);
    CHECK_FALSE(list->front().map_valid);
    CHECK(list->front().present_bytes == 0);
    auto entry = (*blobs)->entry(digest, data.size());
    REQUIRE(entry);
    CHECK((*entry)->present_bytes() == 0);
    CHECK(allocated((*entry)->data_path()) == 0);
    CHECK(read_entry(**entry, 0, 10).empty());
  }
  // A data file removed behind the cache's back: the map's marks are not trusted either.
  {
    auto blobs = cache::BlobCache::open(tmp.path, 0);
    auto entry = (*blobs)->entry(digest, data.size());
    REQUIRE((*entry)->write_chunk(1, chunk_of(data, 1)));
    REQUIRE((*entry)->flush());
  }
  fs::remove(tmp.path / "blobs" / "sha256" / digest.substr(7));
  {
    auto blobs = cache::BlobCache::open(tmp.path, 0);
    auto entry = (*blobs)->entry(digest, data.size());
    REQUIRE(entry);
    CHECK((*entry)->present_bytes() == 0);
  }
  // A map written for another size (a descriptor that lied) is reset for the new size.
  {
    auto blobs = cache::BlobCache::open(tmp.path, 0);
    auto entry = (*blobs)->entry(digest, 3 * kChunk);
    REQUIRE(entry);
    CHECK((*entry)->size() == 3 * kChunk);
    CHECK((*entry)->present_bytes() == 0);
  }
}

TEST_CASE("A process that dies keeps only the chunks it persisted") {
  TempDir tmp;
  auto data = random_bytes(4 * kChunk, 11);
  auto digest = digest_of(data);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child: one chunk persisted, one only written, then gone without any clean-up.
    auto blobs = cache::BlobCache::open(tmp.path, 0);
    auto entry = blobs ? (*blobs)->entry(digest, data.size()) : Result<std::shared_ptr<cache::BlobEntry>>(Error{});
    bool ok = entry && (*entry)->write_chunk(0, chunk_of(data, 0)) && (*entry)->flush() &&
              (*entry)->write_chunk(1, chunk_of(data, 1));
    ::_exit(ok ? 0 : 1);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  auto blobs = cache::BlobCache::open(tmp.path, 0);
  auto entry = (*blobs)->entry(digest, data.size());
  REQUIRE(entry);
  CHECK((*entry)->chunk_present(0));
  CHECK_FALSE((*entry)->chunk_present(1));
  CHECK(read_entry(**entry, 0, kChunk) == data.substr(0, kChunk));
}

TEST_CASE("Two caches writing different chunks of one blob both see the union") {
  TempDir tmp;
  auto data = random_bytes(8 * kChunk - 77, 3);
  auto digest = digest_of(data);
  auto a = cache::BlobCache::open(tmp.path, 0);
  auto b = cache::BlobCache::open(tmp.path, 0);
  auto ea = (*a)->entry(digest, data.size());
  auto eb = (*b)->entry(digest, data.size());
  REQUIRE(ea);
  REQUIRE(eb);
  REQUIRE(ea->get() != eb->get());
  // Interleaved writes and flushes: each flush merges, never overwrites the other's bits.
  for (std::uint64_t c = 0; c < 8; ++c) {
    auto& e = c % 2 == 0 ? *ea : *eb;
    REQUIRE(e->write_chunk(c, chunk_of(data, c)));
    REQUIRE(e->flush());
  }
  REQUIRE((*ea)->refresh());
  REQUIRE((*eb)->refresh());
  CHECK((*ea)->complete());
  CHECK((*eb)->complete());
  CHECK(read_entry(**ea, 0, data.size()) == data);
  CHECK(read_entry(**eb, 0, data.size()) == data);

  // Concurrently, from threads, on a second blob: no bit is lost.
  auto data2 = random_bytes(32 * kChunk, 4);
  auto digest2 = digest_of(data2);
  auto ea2 = (*a)->entry(digest2, data2.size());
  auto eb2 = (*b)->entry(digest2, data2.size());
  std::atomic<int> failures{0};  // no Catch2 assertions off the main thread
  auto writer = [&](cache::BlobEntry& e, std::uint64_t first) {
    for (std::uint64_t c = first; c < 32; c += 2) {
      if (!e.write_chunk(c, chunk_of(data2, c)) || !e.flush()) ++failures;
    }
  };
  std::thread ta(writer, std::ref(**ea2), 0);
  std::thread tb(writer, std::ref(**eb2), 1);
  ta.join();
  tb.join();
  CHECK(failures == 0);
  REQUIRE((*ea2)->refresh());
  CHECK((*ea2)->complete());
  auto map = cache::ChunkMap::parse(slurp(map_path(tmp.path, digest2)));
  REQUIRE(map);
  CHECK(map->present_chunks() == 32);
}

TEST_CASE("The budget evicts least recently used chunks first and frees their blocks") {
  TempDir tmp;
  auto old_data = random_bytes(8 * kChunk, 5);
  auto mid_data = random_bytes(8 * kChunk, 6);
  auto new_data = random_bytes(8 * kChunk, 7);
  auto old_d = digest_of(old_data), mid_d = digest_of(mid_data), new_d = digest_of(new_data);
  {
    auto blobs = cache::BlobCache::open(tmp.path, 0);
    for (auto [d, data] : {std::pair{old_d, &old_data}, {mid_d, &mid_data}, {new_d, &new_data}}) {
      auto entry = (*blobs)->entry(d, data->size());
      REQUIRE(entry);
      for (std::uint64_t c = 0; c < 8; ++c) REQUIRE((*entry)->write_chunk(c, chunk_of(*data, c)));
    }
  }
  set_last_use(tmp.path, old_d, 1'000'000'000);
  set_last_use(tmp.path, mid_d, 1'100'000'000);
  set_last_use(tmp.path, new_d, 1'200'000'000);
  auto dir = tmp.path / "blobs" / "sha256";
  CHECK(allocated(dir / old_d.substr(7)) >= 8 * kChunk);

  auto blobs = cache::BlobCache::open(tmp.path, 0);
  // 24 chunks present; trim to 12: all of the oldest blob, half of the middle one.
  auto stats = (*blobs)->gc(12 * kChunk);
  REQUIRE(stats);
  CHECK(stats->bytes_before == 24 * kChunk);
  CHECK(stats->bytes_after == 12 * kChunk);
  CHECK(stats->chunks_evicted == 12);
  CHECK(stats->blobs_removed == 1);  // the oldest is empty now: its files are deleted
  CHECK_FALSE(fs::exists(dir / old_d.substr(7)));
  CHECK_FALSE(fs::exists(map_path(tmp.path, old_d)));
  CHECK(allocated(dir / mid_d.substr(7)) <= 4 * kChunk + 64 * 1024);  // punched: blocks freed
  CHECK(allocated(dir / new_d.substr(7)) >= 8 * kChunk);
  auto list = (*blobs)->list();
  REQUIRE(list);
  REQUIRE(list->size() == 2);
  for (auto& info : *list) CHECK(info.present_bytes == (info.digest == new_d ? 8 * kChunk : 4 * kChunk));
  // What is left reads back intact; evicted chunks are absent.
  auto mid = (*blobs)->entry(mid_d, mid_data.size());
  REQUIRE(mid);
  std::uint64_t kept = 0;
  for (std::uint64_t c = 0; c < 8; ++c) {
    if (!(*mid)->chunk_present(c)) continue;
    ++kept;
    CHECK(read_entry(**mid, c * kChunk, kChunk) == mid_data.substr(c * kChunk, kChunk));
  }
  CHECK(kept == 4);
}

TEST_CASE("Writes beyond the budget evict the coldest chunks, never those of blobs open elsewhere") {
  TempDir tmp;
  auto data = random_bytes(16 * kChunk, 8);
  auto digest = digest_of(data);
  auto blobs = cache::BlobCache::open(tmp.path, 4 * kChunk);
  REQUIRE(blobs);
  {
    auto entry = (*blobs)->entry(digest, data.size());
    REQUIRE(entry);
    for (std::uint64_t c = 0; c < 16; ++c) REQUIRE((*entry)->write_chunk(c, chunk_of(data, c)));
    // The writer does not evict: the background pass does, soon after.
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while ((*entry)->present_bytes() > 4 * kChunk && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    CHECK((*entry)->present_bytes() <= 4 * kChunk);
    CHECK((*entry)->chunk_present(15));  // the newest stays
    REQUIRE((*entry)->flush());
    CHECK(allocated((*entry)->data_path()) <= 4 * kChunk + 64 * 1024);
    for (std::uint64_t c = 0; c < 16; ++c) REQUIRE((*entry)->write_chunk(c, chunk_of(data, c)));
    REQUIRE((*blobs)->settle());  // no background pass any more; this one is synchronous
    CHECK((*entry)->present_bytes() <= 4 * kChunk);
  }

  // Another cache (as another process) has a blob open: this one leaves it alone.
  auto other_data = random_bytes(8 * kChunk, 9);
  auto other_digest = digest_of(other_data);
  auto other = cache::BlobCache::open(tmp.path, 0);
  auto held = (*other)->entry(other_digest, other_data.size());
  REQUIRE(held);
  for (std::uint64_t c = 0; c < 8; ++c) REQUIRE((*held)->write_chunk(c, chunk_of(other_data, c)));
  REQUIRE((*held)->flush());
  set_last_use(tmp.path, other_digest, 1);  // the coldest of all; still not evictable
  auto stats = (*blobs)->gc(0);
  REQUIRE(stats);
  CHECK(stats->bytes_in_use == 8 * kChunk);
  CHECK(stats->bytes_after == 8 * kChunk);
  CHECK((*held)->complete());
  CHECK(read_entry(**held, 0, other_data.size()) == other_data);
  held->reset();
  // Once closed there, it goes.
  stats = (*blobs)->gc(0);
  REQUIRE(stats);
  CHECK(stats->bytes_after == 0);
  CHECK(stats->blobs_removed == 1);
}

TEST_CASE("gc removes temp files of dead writers and keeps fresh ones") {
  TempDir tmp;
  fs::create_directories(tmp.path / "tmp");
  fs::create_directories(tmp.path / "index" / "sha256");
  auto stale = tmp.path / "tmp" / "decoded.123.abc";
  auto fresh = tmp.path / "tmp" / "decoded.456.def";
  auto stale_idx = tmp.path / "index" / "sha256" / (std::string(64, 'a') + ".idx.tmp.123.abc");
  auto real_idx = tmp.path / "index" / "sha256" / (std::string(64, 'a') + ".idx");
  for (auto& p : {stale, fresh, stale_idx, real_idx}) spit(p, "12345");
  auto old = fs::file_time_type::clock::now() - std::chrono::hours(1);
  fs::last_write_time(stale, old);
  fs::last_write_time(stale_idx, old);
  fs::last_write_time(real_idx, old);
  auto blobs = cache::BlobCache::open(tmp.path, 0);
  auto stats = (*blobs)->gc(UINT64_MAX);
  REQUIRE(stats);
  CHECK(stats->temp_files_removed == 2);
  CHECK(stats->temp_bytes_removed == 10);
  CHECK_FALSE(fs::exists(stale));
  CHECK_FALSE(fs::exists(stale_idx));
  CHECK(fs::exists(fresh));
  CHECK(fs::exists(real_idx));
}

// Not run by default (`test_blob_cache "[bench]"`): what the fdatasync before each map write
// costs, per chunk versus batched (the policy in blob_entry.cpp), against plain pwrite.
TEST_CASE("Benchmark: crash-safe chunk writes", "[.][bench]") {
  TempDir tmp;
  constexpr std::uint64_t kChunks = 256;  // 64 MiB
  auto data = random_bytes(kChunks * kChunk, 10);
  auto seconds = [](auto d) { return std::chrono::duration<double>(d).count(); };
  auto run = [&](const char* name, auto&& body) {
    auto begin = std::chrono::steady_clock::now();
    body();
    auto s = seconds(std::chrono::steady_clock::now() - begin);
    fmt::print("{:<44} {:6.3f} s  {:7.1f} MiB/s\n", name, s, kChunks * kChunk / 1048576.0 / s);
  };
  run("pwrite only (no fdatasync, no map)", [&] {
    io::Fd fd(::open((tmp.path / "plain").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
    for (std::uint64_t c = 0; c < kChunks; ++c) REQUIRE(::pwrite(fd.get(), data.data() + c * kChunk, kChunk, c * kChunk) == kChunk);
  });
  run("pwrite + one fdatasync at the end", [&] {
    io::Fd fd(::open((tmp.path / "plain2").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644));
    for (std::uint64_t c = 0; c < kChunks; ++c) REQUIRE(::pwrite(fd.get(), data.data() + c * kChunk, kChunk, c * kChunk) == kChunk);
    REQUIRE(::fdatasync(fd.get()) == 0);
  });
  auto blobs = cache::BlobCache::open(tmp.path, 0);
  run("BlobEntry, flush (fdatasync + map) per chunk", [&] {
    auto d = data;
    d[0] ^= 1;
    auto entry = (*blobs)->entry(digest_of(d), d.size());
    for (std::uint64_t c = 0; c < kChunks; ++c) {
      REQUIRE((*entry)->write_chunk(c, chunk_of(d, c)));
      REQUIRE((*entry)->flush());
    }
  });
  run("BlobEntry, default policy (batched) + flush", [&] {
    auto entry = (*blobs)->entry(digest_of(data), data.size());
    for (std::uint64_t c = 0; c < kChunks; ++c) REQUIRE((*entry)->write_chunk(c, chunk_of(data, c)));
    REQUIRE((*entry)->flush());
  });
}
