#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ocifs/cache/cache.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/layer/layer_scanner.hpp"
#include "ocifs/util/sha256.hpp"

using namespace ocifs;
namespace fs = std::filesystem;

namespace {

la_ssize_t append_cb(struct archive*, void* data, const void* buf, size_t n) {
  static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

struct File {
  std::string path;
  std::string content;
};

std::vector<File> sample_files() {
  std::string big;
  for (int i = 0; i < 300000; ++i) big += std::to_string(i * 31 % 1009) + ",";
  return {{"etc/hostname", "box\n"},
          {"usr/share/big.txt", big},
          {"bin/true", std::string(5000, '\x7f')},
          {"empty", ""}};
}

// filter: 0 none, 1 gzip, 2 zstd
std::string make_layer(const std::vector<File>& files, int filter) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (filter == 1) REQUIRE(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
  if (filter == 2) REQUIRE(archive_write_add_filter_zstd(a) == ARCHIVE_OK);
  // No zero padding after the compressed stream (libarchive pads to 10240 bytes by default; the
  // zstd decoder rightly calls bytes after the last frame garbage).
  if (filter != 0) archive_write_set_bytes_in_last_block(a, 1);
  REQUIRE(archive_write_open(a, &out, nullptr, append_cb, nullptr) == ARCHIVE_OK);
  for (const auto& f : files) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, f.path.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0644);
    archive_entry_set_size(e, static_cast<la_int64_t>(f.content.size()));
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    if (!f.content.empty()) archive_write_data(a, f.content.data(), f.content.size());
    archive_entry_free(e);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ocifs-layer-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::string digest_of(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

layer::LayerBlob blob_of(const std::string& data, std::string digest, bool of_decoded = false) {
  return layer::LayerBlob{std::make_shared<io::MemorySource>(data, "layer.blob"), std::move(digest),
                          of_decoded, "layer 1 (test)"};
}

std::string read_entry(const layer::OpenLayer& open, const layer::IndexEntry& e) {
  std::string out(e.size, '\0');
  auto n = open.reader->read_at(e.data_offset, std::as_writable_bytes(std::span(out)));
  REQUIRE(n);
  CHECK(*n == e.size);
  return out;
}

void check_contents(const layer::OpenLayer& open, const std::vector<File>& files) {
  REQUIRE(open.index->size() == files.size());
  for (std::size_t i = 0; i < files.size(); ++i) {
    const auto& e = open.index->entries()[i];
    CHECK(open.index->path(e) == files[i].path);
    CHECK(read_entry(open, e) == files[i].content);
  }
}

}  // namespace

TEST_CASE("scan an uncompressed layer") {
  TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  auto files = sample_files();
  std::string tar = make_layer(files, 0);

  SECTION("right digest") {
    std::uint64_t last = 0;
    int calls = 0;
    auto index = layer::scan_layer(blob_of(tar, digest_of(tar)), *cache, [&](std::uint64_t n) {
      CHECK(n >= last);
      last = n;
      ++calls;
    });
    if (!index) FAIL(index.error().message);
    CHECK(index->size() == files.size());
    CHECK(index->digest() == digest_of(tar));
    CHECK(index->seek_index().encoding == compress::Encoding::tar);
    CHECK(index->seek_index().decoded_size == tar.size());
    CHECK(calls >= 1);
    CHECK(last == tar.size());
  }
  SECTION("digest of the decoded stream") {
    auto index = layer::scan_layer(blob_of(tar, digest_of(tar), true), *cache);
    if (!index) FAIL(index.error().message);
  }
  SECTION("wrong digest") {
    std::string wrong = digest_of("something else");
    auto index = layer::scan_layer(blob_of(tar, wrong), *cache);
    REQUIRE_FALSE(index);
    CHECK(index.error().message ==
          "cannot verify layer 1 (test): digest " + digest_of(tar) + " does not match " + wrong);
    // Nothing was cached for it.
    auto opened = layer::open_layer(blob_of(tar, wrong), *cache);
    REQUIRE_FALSE(opened);
    auto stored = cache->read_index(wrong);
    REQUIRE(stored);
    CHECK_FALSE(*stored);
  }
  SECTION("corrupt tar") {
    std::string bad = tar;
    bad[100] ^= 1;  // inside the first header's mode field
    auto index = layer::scan_layer(blob_of(bad, digest_of(bad)), *cache);
    REQUIRE_FALSE(index);
    CHECK_THAT(index.error().message, Catch::Contains("layer 1 (test)") && Catch::Contains("checksum"));
  }
}

TEST_CASE("open_layer caches the index and rebuilds a damaged one") {
  TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  auto files = sample_files();
  for (int filter : {0, 1}) {
    std::string data = make_layer(files, filter);
    auto blob = blob_of(data, digest_of(data));

    auto first = layer::open_layer(blob, *cache);
    if (!first) FAIL(first.error().message);
    CHECK_FALSE(first->from_cache);
    check_contents(*first, files);

    int progress_calls = 0;
    auto second = layer::open_layer(blob, *cache, [&](std::uint64_t) { ++progress_calls; });
    REQUIRE(second);
    CHECK(second->from_cache);
    CHECK(progress_calls == 0);
    check_contents(*second, files);

    // Damage the stored index: one flipped byte.
    auto stored = cache->read_index(blob.digest);
    REQUIRE(stored);
    REQUIRE(*stored);
    std::string damaged = **stored;
    damaged[damaged.size() / 2] ^= 0x10;
    REQUIRE(cache->write_index(blob.digest, damaged));
    auto third = layer::open_layer(blob, *cache);
    REQUIRE(third);
    CHECK_FALSE(third->from_cache);
    check_contents(*third, files);
    auto rewritten = cache->read_index(blob.digest);
    REQUIRE(rewritten);
    CHECK(**rewritten == **stored);

    // Garbage and an index of another layer are rebuilt too.
    REQUIRE(cache->write_index(blob.digest, "not an index"));
    auto fourth = layer::open_layer(blob, *cache);
    REQUIRE(fourth);
    CHECK_FALSE(fourth->from_cache);
    std::string other = make_layer({{"x", "y"}}, 0);
    auto other_index = layer::scan_layer(blob_of(other, digest_of(other)), *cache);
    REQUIRE(other_index);
    REQUIRE(cache->write_index(blob.digest, other_index->serialize()));
    auto fifth = layer::open_layer(blob, *cache);
    REQUIRE(fifth);
    CHECK_FALSE(fifth->from_cache);
    check_contents(*fifth, files);
    auto sixth = layer::open_layer(blob, *cache);
    REQUIRE(sixth);
    CHECK(sixth->from_cache);
  }
}

TEST_CASE("a single-frame zstd layer is spilled into the cache") {
  TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  auto files = sample_files();
  std::string data = make_layer(files, 2);
  auto blob = blob_of(data, digest_of(data));

  auto first = layer::open_layer(blob, *cache);
  if (!first) FAIL(first.error().message);
  CHECK_FALSE(first->from_cache);
  REQUIRE(first->index->seek_index().encoding == compress::Encoding::zstd);
  REQUIRE(first->index->seek_index().zstd_spilled);
  CHECK(fs::file_size(cache->decoded_path(blob.digest)) == first->index->seek_index().decoded_size);
  check_contents(*first, files);

  auto second = layer::open_layer(blob, *cache);
  REQUIRE(second);
  CHECK(second->from_cache);
  check_contents(*second, files);

  // The decoded copy went away (evicted): the layer is scanned again to recreate it.
  fs::remove(cache->decoded_path(blob.digest));
  auto third = layer::open_layer(blob, *cache);
  if (!third) FAIL(third.error().message);
  CHECK_FALSE(third->from_cache);
  CHECK(fs::exists(cache->decoded_path(blob.digest)));
  check_contents(*third, files);

  SECTION("a wrong digest commits nothing") {
    std::string wrong = digest_of("other");
    auto bad = layer::scan_layer(blob_of(data, wrong), *cache);
    REQUIRE_FALSE(bad);
    CHECK_FALSE(fs::exists(cache->decoded_path(wrong)));
  }
}
