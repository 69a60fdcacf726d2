#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>

#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../../src/layer/entry_table.hpp"
#include "../../src/layer/scan_source.hpp"
#include "ocifs/cache/cache.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/layer/layer_scanner.hpp"
#include "ocifs/util/sha256.hpp"
#include "temp_dir.hpp"

using namespace ocifs;
namespace fs = std::filesystem;

namespace {

using ocifs::test::TempDir;

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

std::string digest_of(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

layer::LayerBlob blob_of(const std::string& data, std::string digest, bool of_decoded = false) {
  return layer::LayerBlob{std::make_shared<io::MemorySource>(data, "layer.blob"), std::move(digest),
                          of_decoded, "layer 1 (test)", {}};
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

namespace {

// Fails every read that touches byte `bad_at` and on.
class FailingSource final : public io::BlobSource {
 public:
  FailingSource(std::string data, std::uint64_t bad_at) : data_(std::move(data)), bad_at_(bad_at) {}
  std::uint64_t size() const override { return data_.size(); }
  std::string describe() const override { return "failing.blob"; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    if (offset + buf.size() > bad_at_ && offset < data_.size()) {
      return make_error(std::errc::io_error, "cannot read failing.blob at offset {}: injected", offset);
    }
    return data_.copy(reinterpret_cast<char*>(buf.data()), buf.size(),
                      std::min<std::uint64_t>(offset, data_.size()));
  }

 private:
  std::string data_;
  std::uint64_t bad_at_;
};

std::string random_bytes(std::size_t size, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

io::BlockDigests blocks_of(std::string_view data) {
  io::BlockHasher hasher;
  hasher.update(std::as_bytes(std::span(data.data(), data.size())));
  return hasher.finish();
}

}  // namespace

TEST_CASE("ScanSource: read-ahead, hashed off the reading thread") {
  std::string data = random_bytes(1'300'000, 11);  // 5 blocks of 256 KiB, the last one short
  auto blob = std::make_shared<io::MemorySource>(data, "pipe.blob");
  // Small chunks and ring, so reads straddle chunks and the reader waits for room.
  for (layer::ScanSource::Options options :
       {layer::ScanSource::Options{1000, 3}, layer::ScanSource::Options{},
        layer::ScanSource::Options{1 << 16, 1}}) {
    INFO("chunk " << options.chunk << " slots " << options.slots);
    std::uint64_t last_progress = 0;
    layer::ScanSource source(
        blob, [&](std::uint64_t n) { last_progress = n; }, options);
    CHECK(source.size() == data.size());
    CHECK(source.describe() == "pipe.blob");

    SECTION("sequential reads of any size, and jumps ahead") {
      std::mt19937 rng(3);
      std::uint64_t offset = 0;
      std::string buf;
      while (offset < data.size()) {
        if (rng() % 5 == 0) offset += rng() % 20000;  // skipped bytes are still hashed
        buf.assign(1 + rng() % 70000, '\0');
        auto n = source.read_at(offset, std::as_writable_bytes(std::span(buf)));
        REQUIRE(n);
        CHECK(*n == std::min<std::uint64_t>(buf.size(),
                                            data.size() - std::min<std::uint64_t>(offset, data.size())));
        CHECK(buf.substr(0, *n) == data.substr(std::min<std::uint64_t>(offset, data.size()), *n));
        offset += std::max<std::size_t>(*n, 1);
      }
      auto end = source.read_at(data.size(), std::as_writable_bytes(std::span(buf)));
      REQUIRE(end);
      CHECK(*end == 0);
      auto digests = source.finish();
      if (!digests) FAIL(digests.error().message);
      CHECK(digests->sha256 == util::sha256_hex(data));
      CHECK(digests->blocks.blob_size == data.size());
      CHECK(digests->blocks.digests == blocks_of(data).digests);
      CHECK(source.direct_reads() == 0);
    }
    SECTION("finish without reading everything still hashes the whole blob") {
      std::string buf(5000, '\0');
      REQUIRE(source.read_at(0, std::as_writable_bytes(std::span(buf))));
      auto digests = source.finish();
      REQUIRE(digests);
      CHECK(digests->sha256 == util::sha256_hex(data));
      CHECK(digests->blocks.digests == blocks_of(data).digests);
    }
    SECTION("a read going back is served from the blob, and refused at the end") {
      std::string buf(300000, '\0');
      REQUIRE(source.read_at(0, std::as_writable_bytes(std::span(buf))));
      std::string back(1000, '\0');
      auto n = source.read_at(1234, std::as_writable_bytes(std::span(back)));
      REQUIRE(n);
      CHECK(*n == back.size());
      CHECK(back == data.substr(1234, 1000));
      CHECK(source.direct_reads() == 1);
      // Sequential reading continues where it was.
      auto next = source.read_at(300000, std::as_writable_bytes(std::span(back)));
      REQUIRE(next);
      CHECK(back == data.substr(300000, 1000));
      auto digests = source.finish();
      REQUIRE_FALSE(digests);
      CHECK_THAT(digests.error().message,
                 Catch::Contains("pipe.blob") && Catch::Contains("not read in order"));
    }
    SECTION("destroyed half-way: the reader stops") {
      std::string buf(10, '\0');
      REQUIRE(source.read_at(0, std::as_writable_bytes(std::span(buf))));
    }
    (void)last_progress;
  }
}

TEST_CASE("ScanSource: progress, an empty blob and read errors") {
  std::string data = random_bytes(9u << 20, 12);
  std::vector<std::uint64_t> reports;
  {
    layer::ScanSource source(std::make_shared<io::MemorySource>(data, "p.blob"),
                             [&](std::uint64_t n) { reports.push_back(n); });
    std::string buf(1u << 20, '\0');
    for (std::uint64_t offset = 0; offset < data.size(); offset += buf.size()) {
      REQUIRE(source.read_at(offset, std::as_writable_bytes(std::span(buf))));
    }
    REQUIRE(source.finish());
    source.report_final();
  }
  CHECK(reports == std::vector<std::uint64_t>{4u << 20, 8u << 20, 9u << 20});

  layer::ScanSource empty(std::make_shared<io::MemorySource>("", "e.blob"));
  std::string buf(10, '\0');
  auto n = empty.read_at(0, std::as_writable_bytes(std::span(buf)));
  REQUIRE(n);
  CHECK(*n == 0);
  auto digests = empty.finish();
  REQUIRE(digests);
  CHECK(digests->sha256 == util::sha256_hex(std::string_view()));
  CHECK(digests->blocks.digests.empty());

  std::string small = random_bytes(3u << 20, 13);
  layer::ScanSource failing(std::make_shared<FailingSource>(small, 2u << 20), {}, {1u << 20, 2});
  std::string big(1u << 20, '\0');
  REQUIRE(failing.read_at(0, std::as_writable_bytes(std::span(big))));
  REQUIRE(failing.read_at(1u << 20, std::as_writable_bytes(std::span(big))));
  auto bad = failing.read_at(2u << 20, std::as_writable_bytes(std::span(big)));
  REQUIRE_FALSE(bad);
  CHECK_THAT(bad.error().message, Catch::Contains("injected"));
  auto failed = failing.finish();
  REQUIRE_FALSE(failed);
  CHECK_THAT(failed.error().message, Catch::Contains("injected"));
}

TEST_CASE("ScanSource: an exception on the read-ahead thread fails the scan, not the process") {
  // A source whose read throws (a bug, or bad_alloc), on the read-ahead thread.
  class ThrowingSource final : public io::BlobSource {
   public:
    std::uint64_t size() const override { return 3u << 20; }
    std::string describe() const override { return "throwing.blob"; }
    Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
      if (offset >= (1u << 20)) throw std::bad_alloc();
      std::memset(buf.data(), 'x', buf.size());
      return buf.size();
    }
  };
  layer::ScanSource source(std::make_shared<ThrowingSource>(), {}, {1u << 20, 2});
  std::string buf(1u << 20, '\0');
  REQUIRE(source.read_at(0, std::as_writable_bytes(std::span(buf))));
  auto bad = source.read_at(1u << 20, std::as_writable_bytes(std::span(buf)));
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == std::errc::not_enough_memory);
  CHECK_THAT(bad.error().message, Catch::Contains("throwing.blob") && Catch::Contains("out of memory"));
  auto finished = source.finish();
  REQUIRE_FALSE(finished);
  CHECK(finished.error().message == bad.error().message);
}

TEST_CASE("scan a gzip and a zstd layer: the read-ahead's digest is checked") {
  TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  auto files = sample_files();
  for (int filter : {1, 2}) {
    INFO("filter " << filter);
    std::string data = make_layer(files, filter);
    // The decoded tar (libarchive pads it differently when it writes no filter).
    std::string tar;
    {
      auto decoder =
          compress::make_stream_decoder(filter == 1 ? compress::Encoding::gzip : compress::Encoding::zstd,
                                        std::make_shared<io::MemorySource>(data, "d"));
      REQUIRE(decoder);
      std::string buf(1 << 16, '\0');
      while (auto n = (*decoder)->read(std::as_writable_bytes(std::span(buf)))) {
        if (*n == 0) break;
        tar.append(buf, 0, *n);
      }
    }
    auto index = layer::scan_layer(blob_of(data, digest_of(data)), *cache);
    if (!index) FAIL(index.error().message);
    CHECK(index->size() == files.size());
    CHECK(index->blob_blocks().blob_size == data.size());
    CHECK(index->blob_blocks().digests == blocks_of(data).digests);

    std::string wrong = digest_of("something else");
    auto refused = layer::scan_layer(blob_of(data, wrong), *cache);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message ==
          "cannot verify layer 1 (test): digest " + digest_of(data) + " does not match " + wrong);

    // A diff_id (docker-archive): the digest of the decoded tar.
    auto by_diff_id = layer::scan_layer(blob_of(data, digest_of(tar), true), *cache);
    if (!by_diff_id) FAIL(by_diff_id.error().message);
    auto wrong_diff_id = layer::scan_layer(blob_of(data, digest_of(data), true), *cache);
    REQUIRE_FALSE(wrong_diff_id);
    CHECK_THAT(wrong_diff_id.error().message, Catch::Contains(digest_of(tar)));

    // The blob changes while it is read: the read error reaches the scan.
    auto failing = layer::LayerBlob{std::make_shared<FailingSource>(data, data.size() / 2), digest_of(data),
                                    false, "layer 1 (test)", {}};
    auto broken = layer::scan_layer(failing, *cache);
    REQUIRE_FALSE(broken);
    CHECK_THAT(broken.error().message, Catch::Contains("injected"));
  }
}

TEST_CASE("without_entries keeps every other entry as it was") {
  auto files = sample_files();
  const std::string tar = make_layer(files, 0);
  TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  auto index = layer::scan_layer(blob_of(tar, digest_of(tar)), *cache);
  REQUIRE(index);
  auto same = layer::without_entries(*index, [](std::string_view) { return false; });
  CHECK(same.serialize() == index->serialize());
  auto fewer = layer::without_entries(*index, [](std::string_view p) { return p == "usr/share/big.txt"; });
  REQUIRE(fewer.size() == index->size() - 1);
  for (const auto& e : fewer.entries()) CHECK(fewer.path(e) != "usr/share/big.txt");
  CHECK(fewer.digest() == index->digest());
  CHECK(fewer.blob_blocks().digests == index->blob_blocks().digests);
}
