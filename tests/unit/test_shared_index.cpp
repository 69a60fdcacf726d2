// The shared index blob (layer/shared_index.hpp): built from a scanned gzip layer, read back by
// range, its checkpoint states fetched and checked only when a read needs them.
#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <random>
#include <string>

#include "ocifs/cache/cache.hpp"
#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/layer/layer_scanner.hpp"
#include "ocifs/layer/shared_index.hpp"
#include "ocifs/util/sha256.hpp"
#include "temp_dir.hpp"

using namespace ocifs;

namespace {

la_ssize_t append_cb(struct archive*, void* data, const void* buf, size_t n) {
  static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// Text that compresses about 3:1, so that a few MiB decode past several 512 KiB checkpoints.
std::string text(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  static const char* words[] = {"layer ", "index ", "gzip ", "span ", "fuse ", "mount ", "tree ", "blob\n"};
  std::string out;
  while (out.size() < size) out += words[rng() % 8] + std::to_string(rng() % 1000);
  out.resize(size);
  return out;
}

std::string gzip_layer(const std::vector<std::pair<std::string, std::string>>& files) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  REQUIRE(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
  archive_write_set_bytes_in_last_block(a, 1);
  REQUIRE(archive_write_open(a, &out, nullptr, append_cb, nullptr) == ARCHIVE_OK);
  for (const auto& [path, content] : files) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, path.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    archive_write_data(a, content.data(), content.size());
    archive_entry_free(e);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

// Counts the bytes read through it: what a registry would have served.
class CountingSource final : public io::BlobSource {
 public:
  explicit CountingSource(std::string data) : inner_(std::move(data), "shared index") {}
  std::uint64_t size() const override { return inner_.size(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    auto n = inner_.read_at(offset, buf);
    if (n) bytes += *n;
    return n;
  }
  std::string describe() const override { return inner_.describe(); }
  mutable std::atomic<std::uint64_t> bytes{0};

 private:
  io::MemorySource inner_;
};

std::string read_all(const compress::SeekableReader& reader, std::uint64_t offset, std::size_t size) {
  std::string out(size, '\0');
  auto n = reader.read_at(offset, std::as_writable_bytes(std::span(out)));
  REQUIRE(n);
  out.resize(*n);
  return out;
}

// A gzip layer of three files (3 MiB of text, a small file, 5 MiB of text), scanned.
struct ScannedLayer {
  test::TempDir dir;
  std::vector<std::pair<std::string, std::string>> files = {
      {"a.txt", text(3u << 20, 1)}, {"etc/hostname", "box\n"}, {"b.txt", text(5u << 20, 2)}};
  std::string blob = gzip_layer(files);
  layer::LayerBlob layer{std::make_shared<io::MemorySource>(blob, "layer"), "sha256:" + util::sha256_hex(blob), false,
                         "layer 1", {}};
  Result<layer::LayerIndex> scanned = scan();

  Result<layer::LayerIndex> scan() {
    auto cache = cache::Cache::open(dir.path);
    REQUIRE(cache);
    auto index = layer::scan_layer(layer, *cache);
    REQUIRE(index);
    return index;
  }
};

}  // namespace

TEST_CASE("a shared index reads a gzip layer by range, fetching states as reads need them") {
  ScannedLayer scan;
  const auto& files = scan.files;
  const auto& layer = scan.layer;
  const std::string& digest = layer.digest;
  auto& scanned = scan.scanned;
  const std::size_t local_points = scanned->seek_index().gzip_points.size();
  REQUIRE(local_points >= 12);  // 8 MiB decoded at 512 KiB
  auto local = compress::make_seekable_reader(scanned->seek_index(), layer.blob, nullptr, nullptr);
  REQUIRE(local);

  layer::SharedIndexOptions options;
  options.checkpoint_spacing = 2u << 20;
  auto shared = layer::build_shared_index(*scanned, options);
  REQUIRE(shared);
  CHECK(shared->checkpoints >= 4);
  CHECK(shared->checkpoints <= local_points / 3);
  CHECK(shared->head_size < shared->bytes.size());

  auto source = std::make_shared<CountingSource>(shared->bytes);
  layer::SharedIndexRef ref{source, shared->head_digest, shared->head_size};

  SECTION("the tree comes from the head alone, and every byte reads as from the local index") {
    auto index = layer::load_shared_index(ref);
    if (!index) FAIL(index.error().message);
    CHECK(source->bytes == shared->head_size);  // no state fetched yet
    CHECK(index->digest() == digest);
    CHECK(index->entries_digest() == scanned->entries_digest());
    CHECK(index->blob_blocks().digests == scanned->blob_blocks().digests);
    REQUIRE(index->size() == files.size());

    auto reader = compress::make_seekable_reader(index->seek_index(), layer.blob, nullptr, nullptr);
    REQUIRE(reader);
    // A read in the middle of b.txt fetches one state, not all of them.
    const auto& b = index->entries()[2];
    CHECK(read_all(**reader, b.data_offset + (3u << 20), 1000) == files[2].second.substr(3u << 20, 1000));
    const std::uint64_t after_one = source->bytes;
    CHECK(after_one > shared->head_size);
    CHECK(after_one - shared->head_size < (shared->bytes.size() - shared->head_size) / 2);
    // Then everything, against the local index's decoding.
    const std::uint64_t size = index->seek_index().decoded_size;
    CHECK(read_all(**reader, 0, size) == read_all(**local, 0, size));
    for (std::size_t i = 0; i < files.size(); ++i) {
      const auto& e = index->entries()[i];
      CHECK(index->path(e) == files[i].first);
      CHECK(read_all(**reader, e.data_offset, e.size) == files[i].second);
    }
  }

  SECTION("a damaged state fails the reads of its span only") {
    std::string damaged = shared->bytes;
    damaged[damaged.size() - 100] ^= 0x40;  // inside the last state
    auto bad_source = std::make_shared<io::MemorySource>(damaged, "shared index");
    auto index = layer::load_shared_index({bad_source, shared->head_digest, shared->head_size});
    REQUIRE(index);  // the head is intact
    auto reader = compress::make_seekable_reader(index->seek_index(), layer.blob, nullptr, nullptr);
    REQUIRE(reader);
    const auto& points = index->seek_index().gzip_points;
    const std::uint64_t last = points.back().decoded_offset;
    std::string buf(4096, '\0');
    auto bad = (*reader)->read_at(last + 10, std::as_writable_bytes(std::span(buf)));
    REQUIRE(!bad);
    CHECK(bad.error().code == std::errc::io_error);
    CHECK(bad.error().message.find("does not match the digest") != std::string::npos);
    // The first span needs no state (a member start); the second's state is intact.
    CHECK(read_all(**reader, 512, 1000) == read_all(**local, 512, 1000));
    CHECK(read_all(**reader, points[1].decoded_offset + 10, 1000) ==
          read_all(**local, points[1].decoded_offset + 10, 1000));
  }

  SECTION("a head that does not check out is refused, naming why") {
    auto wrong_digest =
        layer::load_shared_index({source, "sha256:" + std::string(64, '0'), shared->head_size});
    REQUIRE(!wrong_digest);
    CHECK(wrong_digest.error().message.find("head's digest") != std::string::npos);

    auto too_big = layer::load_shared_index({source, shared->head_digest, std::uint64_t{1} << 40});
    REQUIRE(!too_big);

    std::string other_version = shared->bytes;
    other_version[8] = 9;
    auto head = other_version.substr(0, shared->head_size);
    auto v9 = layer::load_shared_index({std::make_shared<io::MemorySource>(other_version, "v9"),
                                        "sha256:" + util::sha256_hex(head), shared->head_size});
    REQUIRE(!v9);
    CHECK(v9.error().message.find("format version 9") != std::string::npos);
  }
}

TEST_CASE("a zstd layer that needs a decoded copy is not shared") {
  layer::LayerIndex index;
  index.seek_index().encoding = compress::Encoding::zstd;
  index.seek_index().zstd_spilled = true;
  auto shared = layer::build_shared_index(std::move(index));
  REQUIRE(!shared);
  CHECK(shared.error().code == std::errc::not_supported);
}

TEST_CASE("a shared index lists what the pushing machine read first, with checkpoints and states for it") {
  ScannedLayer scan;
  const auto& layer = scan.layer;
  auto& scanned = scan.scanned;
  const auto& local = scanned->seek_index();
  const auto& hostname = scanned->entries()[1];
  const auto& b = scanned->entries()[2];

  layer::SharedIndexOptions options;
  options.checkpoint_spacing = 32u << 20;  // no checkpoint but for the ranges
  const std::uint64_t in_b = b.data_offset + (1u << 20) + 200000;  // not near a scan checkpoint
  options.read_first = {{in_b, 1u << 20, 7}, {hostname.data_offset, hostname.size, 3}};
  auto shared = layer::build_shared_index(*scanned, options);
  REQUIRE(shared);
  CHECK(shared->read_first == 2);
  // hostname: the checkpoint before it; 1 MiB of b: the one before it (none inside: a range is
  // fetched whole, and one inside is kept only every 4 MiB).
  CHECK(shared->read_first_checkpoints == 2);
  CHECK(shared->checkpoints == 3);  // and the member start

  std::vector<layer::ReadFirst> listed;
  auto index = layer::load_shared_index({std::make_shared<io::MemorySource>(shared->bytes, "shared index"),
                                         shared->head_digest, shared->head_size},
                                        nullptr, "layer 1", &listed);
  if (!index) FAIL(index.error().message);
  REQUIRE(listed.size() == 2);
  // In rank order, each with a compressed end at or past the first local checkpoint after it.
  CHECK(listed[0].offset == hostname.data_offset);
  CHECK(listed[0].rank == 3);
  CHECK(listed[1].offset == in_b);
  CHECK(listed[1].length == 1u << 20);
  CHECK(listed[1].rank == 7);
  for (const auto& r : listed) {
    auto next = std::find_if(local.gzip_points.begin(), local.gzip_points.end(),
                             [&](const auto& p) { return p.decoded_offset >= r.offset + r.length; });
    REQUIRE(next != local.gzip_points.end());
    CHECK(r.compressed_end >= next->compressed_offset);
    CHECK(r.compressed_end < local.compressed_size);
  }
  // The states read first lie first, together, right after the head.
  const auto& points = index->seek_index().gzip_points;
  const auto& states = index->seek_index().remote_states;
  REQUIRE(states);
  auto hostname_point = std::prev(std::upper_bound(points.begin(), points.end(), hostname.data_offset,
                                                   [](std::uint64_t off, const auto& p) { return off < p.decoded_offset; }));
  auto first = states->location(static_cast<std::size_t>(hostname_point - points.begin()));
  REQUIRE(first);
  CHECK(first->offset == shared->head_size);
  // A reader's blob ranges put the state a read needs before the layer bytes.
  auto reader = compress::make_seekable_reader(index->seek_index(), layer.blob, nullptr, nullptr);
  REQUIRE(reader);
  std::vector<compress::BlobRange> ranges;
  (*reader)->blob_ranges(hostname.data_offset, hostname.size, ranges);
  REQUIRE(ranges.size() == 2);
  CHECK(ranges[0].index);
  CHECK(ranges[0].offset == first->offset);
  CHECK(ranges[0].length == first->length);
  CHECK(!ranges[1].index);
  CHECK(read_all(**reader, hostname.data_offset, hostname.size) == "box\n");

  SECTION("with the layer's blob, checkpoints exactly where the ranges start, and exact ends") {
    options.blob = layer.blob;
    auto exact = layer::build_shared_index(*scanned, options);
    REQUIRE(exact);
    CHECK(exact->read_first_checkpoints == 2);
    std::vector<layer::ReadFirst> exact_listed;
    auto loaded = layer::load_shared_index({std::make_shared<io::MemorySource>(exact->bytes, "shared index"),
                                            exact->head_digest, exact->head_size},
                                           nullptr, "layer 1", &exact_listed);
    REQUIRE(loaded);
    // b's range gets a checkpoint of its own; hostname, just after a scan checkpoint, uses that.
    const auto& exact_points = loaded->seek_index().gzip_points;
    CHECK(std::any_of(exact_points.begin(), exact_points.end(), [&](const auto& p) { return p.decoded_offset == in_b; }));
    CHECK(std::any_of(exact_points.begin(), exact_points.end(), [&](const auto& p) {
      return p.decoded_offset <= hostname.data_offset && hostname.data_offset - p.decoded_offset <= (16u << 10);
    }));
    REQUIRE(exact_listed.size() == 2);
    for (std::size_t i = 0; i < 2; ++i) CHECK(exact_listed[i].compressed_end <= listed[i].compressed_end);
    // Decoding a range from its own checkpoint reads no blob byte at or past its end.
    auto reader = compress::make_seekable_reader(loaded->seek_index(), layer.blob, nullptr, nullptr);
    REQUIRE(reader);
    CHECK(read_all(**reader, hostname.data_offset, hostname.size) == "box\n");
    CHECK(read_all(**reader, in_b, 1u << 20) == scan.files[2].second.substr(in_b - b.data_offset, 1u << 20));
    std::vector<compress::BlobRange> ranges;
    (*reader)->blob_ranges(in_b, 1u << 20, ranges);
    REQUIRE(!ranges.empty());
    CHECK(ranges.back().offset < exact_listed[1].compressed_end);
  }

  SECTION("across layers, ranges are taken by rank while their states fit the budget") {
    const auto costs = layer::checkpoint_costs(*scanned);
    const std::vector<const layer::CheckpointCosts*> layers{&costs, nullptr, &costs};
    const std::vector<std::vector<layer::ReadFirst>> ranges{
        {{hostname.data_offset, hostname.size, 5}}, {{0, 10, 0}}, {{b.data_offset, 100, 1}}};
    auto all = layer::select_read_first(layers, ranges, 1u << 30);
    CHECK(all[0].size() == 1);
    CHECK(all[1].empty());  // not a shared layer
    CHECK(all[2].size() == 1);
    // b (rank 1) needs the state of the checkpoint before it; with no budget for any state,
    // neither range is taken, and the later one is not taken past the first that did not fit.
    auto none = layer::select_read_first(layers, ranges, 0);
    CHECK(none[0].empty());
    CHECK(none[2].empty());
  }
}
