// The shared index blob (layer/shared_index.hpp): built from a scanned gzip layer, read back by
// range, its checkpoint states fetched and checked only when a read needs them.
#include <archive.h>
#include <archive_entry.h>

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

}  // namespace

TEST_CASE("a shared index reads a gzip layer by range, fetching states as reads need them") {
  test::TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  std::vector<std::pair<std::string, std::string>> files = {
      {"a.txt", text(3u << 20, 1)}, {"etc/hostname", "box\n"}, {"b.txt", text(5u << 20, 2)}};
  const std::string blob = gzip_layer(files);
  const std::string digest = "sha256:" + util::sha256_hex(blob);
  layer::LayerBlob layer{std::make_shared<io::MemorySource>(blob, "layer"), digest, false, "layer 1", {}};
  auto scanned = layer::scan_layer(layer, *cache);
  REQUIRE(scanned);
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
