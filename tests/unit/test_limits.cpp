// The resource limits of util/limits.hpp, one mechanism at a time: escaping names for messages,
// the image's metadata budget, a stored index charged before it is read, decoded zstd copies
// within their share of the cache budget, the decoded-size bound of a scan, JSON nesting and
// value counts, manifests' layer counts, holes of any size, trees 2000 levels deep.
#include <zlib.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "../../src/layer/bounded_stream.hpp"
#include "../../src/layer/entry_table.hpp"
#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/cache.hpp"
#include "ocifs/cache/decoded_copies.hpp"
#include "ocifs/compress/chunked_reader.hpp"
#include "ocifs/compress/identity_decoder.hpp"
#include "ocifs/image/tree_builder.hpp"
#include "ocifs/layer/layer_scanner.hpp"
#include "ocifs/layer/lazy_toc.hpp"
#include "ocifs/layer/toc_layer.hpp"
#include "ocifs/oci/types.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/sha256.hpp"
#include "ocifs/util/text.hpp"
#include "temp_dir.hpp"

using namespace ocifs;
namespace fs = std::filesystem;

namespace {

using test::TempDir;

std::string digest_of(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

layer::TarEntry entry(std::string path, layer::EntryKind kind = layer::EntryKind::regular) {
  layer::TarEntry e;
  e.path = std::move(path);
  e.kind = kind;
  e.mode = 0644;
  return e;
}

// One zstd frame (no content size, 128 KiB window): a raw block with `head`, `zeros` zero bytes
// as RLE blocks, a last raw block with `tail`. 128 KiB of zeros cost 4 bytes.
std::string zstd_zeros_frame(std::string_view head, std::uint64_t zeros, std::string_view tail) {
  std::string out("\x28\xb5\x2f\xfd\x00\x38", 6);
  auto block = [&](bool last, int type, std::uint32_t size, std::string_view payload) {
    std::uint32_t v = (last ? 1u : 0u) | (static_cast<std::uint32_t>(type) << 1) | (size << 3);
    out += static_cast<char>(v & 0xff);
    out += static_cast<char>((v >> 8) & 0xff);
    out += static_cast<char>((v >> 16) & 0xff);
    out.append(payload);
  };
  block(false, 0, static_cast<std::uint32_t>(head.size()), head);
  for (std::uint64_t left = zeros; left > 0;) {
    auto n = static_cast<std::uint32_t>(std::min<std::uint64_t>(left, 128u << 10));
    block(false, 1, n, std::string_view("\0", 1));
    left -= n;
  }
  block(true, 0, static_cast<std::uint32_t>(tail.size()), tail);
  return out;
}

std::string ustar(std::string_view name, std::uint64_t size) {
  std::string h(512, '\0');
  h.replace(0, name.size(), name);
  auto octal = [](std::uint64_t v, std::size_t width) {
    std::string s(width - 1, '0');
    for (std::size_t i = width - 1; i-- > 0; v >>= 3) s[i] = static_cast<char>('0' + (v & 7));
    return s + '\0';
  };
  h.replace(100, 8, octal(0644, 8));
  h.replace(108, 8, octal(0, 8));
  h.replace(116, 8, octal(0, 8));
  h.replace(124, 12, octal(size, 12));
  h.replace(136, 12, octal(1700000000, 12));
  h[156] = '0';
  h.replace(257, 8,
            std::string("ustar\0"
                        "00",
                        8));
  h.replace(148, 8, "        ");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  h.replace(148, 8, octal(sum, 7) + ' ');
  return h;
}

}  // namespace

TEST_CASE("names are escaped for messages and listings as GNU ls -b does") {
  CHECK(util::escaped("plain name.txt") == "plain name.txt");
  CHECK(util::escaped("caf\xc3\xa9 \xe2\x9c\x93") == "caf\xc3\xa9 \xe2\x9c\x93");  // UTF-8 stays
  CHECK(util::escaped(std::string("a\0b", 3)) == "a\\000b");
  CHECK(util::escaped("\x1b]0;x\x07\n\t\r\\") == "\\033]0;x\\a\\n\\t\\r\\\\");
  CHECK(util::escaped("\x7f") == "\\177");
  CHECK(util::escaped("\xc2\x9b[31m") == "\\302\\233[31m");   // C1 CSI in UTF-8
  CHECK(util::escaped("\x9b\xff\xc3") == "\\233\\377\\303");  // not UTF-8
  CHECK(util::escaped("\xed\xa0\x80") == "\\355\\240\\200");  // a surrogate
  CHECK(util::escaped(std::string(300, 'x'), 10) == "xxxxxxxxxx…(300 bytes)");
  CHECK(util::shown(std::string(300, 'y')).size() < 300);
}

TEST_CASE("the metadata budget: the image's layers together, charged entry by entry") {
  layer::MetadataBudget budget;
  REQUIRE(budget.charge({limits::kMaxEntriesPerImage - 1, 0, 0}, "layer 1", [] { return std::string("x"); }));
  auto walker_layer = [&](int entries) {
    layer::EntryAdmission admission("layer 2 (sha256:ab12)", &budget);
    Result<void> last = util::success();
    for (int i = 0; i < entries && last; ++i) last = admission.admit(entry("dir/file" + std::to_string(i)));
    return last;
  };
  auto r = walker_layer(3);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == std::errc::file_too_large);
  CHECK_THAT(r.error().message, Catch::Contains("layer 2 (sha256:ab12)") && Catch::Contains("'dir/file1'") &&
                                    Catch::Contains("more than the limit of 2097152"));
  SECTION("names") {
    layer::MetadataBudget names;
    layer::EntryAdmission admission("layer 1", &names);
    auto big = entry(std::string(4000, 'n'));
    Result<void> last = util::success();
    std::size_t admitted = 0;
    while (last) {
      last = admission.admit(big);
      if (last) ++admitted;
    }
    CHECK(admitted == limits::kMaxMetadataBytesPerImage / 4000);
    CHECK_THAT(last.error().message, Catch::Contains("bytes of names"));
  }
  SECTION("a layer alone is held to the same limits") {
    layer::EntryAdmission alone("layer 1", nullptr);
    auto x = entry("x");
    x.xattrs.resize(limits::kMaxRecordsPerImage + 1, layer::Xattr{"user.a", "b"});
    CHECK_FALSE(alone.admit(x));
  }
}

TEST_CASE("a stored index is charged from its header, before it is read, and given back if it fails") {
  layer::LayerIndex index;
  for (int i = 0; i < 10; ++i) index.add(entry("f" + std::to_string(i)));
  const std::string bytes = index.serialize();
  io::MemorySource file(bytes, "idx");
  layer::MetadataBudget budget;
  REQUIRE(budget.charge({limits::kMaxEntriesPerImage - 5, 0, 0}, "other", [] { return std::string(); }));
  auto loaded = layer::LayerIndex::load(file, &budget, "layer 2");
  REQUIRE_FALSE(loaded);
  CHECK_THAT(loaded.error().message, Catch::Contains("layer 2") && Catch::Contains("its stored index"));
  layer::MetadataBudget fresh;
  std::string damaged = bytes;
  damaged[bytes.size() - 1] ^= 1;  // the checksum
  io::MemorySource bad(damaged, "idx");
  CHECK_FALSE(layer::LayerIndex::load(bad, &fresh, "layer 1"));
  CHECK(fresh.used().entries == 0);  // given back: the layer is scanned and charged again
  auto good = layer::LayerIndex::load(file, &fresh, "layer 1");
  REQUIRE(good);
  CHECK(fresh.used().entries == 10);
}

TEST_CASE("a layer decoding past the limit is refused, whatever skips or reads it") {
  const std::string tar = ustar("big", 5000) + std::string(5120, '\0') + std::string(1024, '\0');
  auto source = std::make_shared<io::MemorySource>(tar, "t");
  compress::IdentityDecoder decoder(source, compress::ScanOptions{});
  layer::BoundedStream bounded(decoder, 4096, "layer 1 (test)");
  std::byte buf[512];
  REQUIRE(*bounded.read(buf) == 512);
  auto skipped = bounded.skip(5000);
  REQUIRE_FALSE(skipped);
  CHECK_THAT(skipped.error().message, Catch::Contains("layer 1 (test)") && Catch::Contains("more than 4096"));
  compress::IdentityDecoder again(source, compress::ScanOptions{});
  layer::BoundedStream drained(again, 4096, "layer 1 (test)");
  auto finished = drained.finish();
  REQUIRE_FALSE(finished);
  CHECK(finished.error().code == std::errc::file_too_large);
  compress::IdentityDecoder exact(source, compress::ScanOptions{});
  layer::BoundedStream fits(exact, tar.size(), "layer 1 (test)");
  CHECK(fits.finish());
}

TEST_CASE("decoded zstd copies: within their share of the cache budget, trimmed least recently used first") {
  TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  auto blobs = cache::BlobCache::open(dir.path, 8u << 20);  // --cache-max 8M: a copy may take 4 MiB
  REQUIRE(blobs);
  cache->set_blob_cache(*blobs);
  CHECK(cache->decoded_copy_limit() == (4u << 20));

  SECTION("a single-frame layer over the share is refused soon after, leaving nothing") {
    std::string blob = zstd_zeros_frame(ustar("zeros", 64u << 20), 64u << 20, std::string(1024, '\0'));
    CHECK(blob.size() < 5000);
    layer::LayerBlob layer{
        std::make_shared<io::MemorySource>(blob, "bomb"), digest_of(blob), false, "layer 1 (bomb)", {}};
    auto scanned = layer::scan_layer(layer, *cache);
    REQUIRE_FALSE(scanned);
    CHECK(scanned.error().code == std::errc::file_too_large);
    CHECK_THAT(scanned.error().message, Catch::Contains("layer 1 (bomb)") && Catch::Contains("4.00 MiB"));
    CHECK_FALSE(fs::exists(cache->decoded_path(layer.digest)));
    CHECK(fs::is_empty(dir.path / "tmp"));
  }
  SECTION("one under the share is kept, and older copies make room for it") {
    std::string small = zstd_zeros_frame(ustar("zeros", 3u << 20), 3u << 20, std::string(1024, '\0'));
    std::string other = zstd_zeros_frame(ustar("other", 3u << 20), 3u << 20, std::string(1024, '\0'));
    layer::LayerBlob first{std::make_shared<io::MemorySource>(small, "a"), digest_of(small), false, "a", {}};
    layer::LayerBlob second{std::make_shared<io::MemorySource>(other, "b"), digest_of(other), false, "b", {}};
    REQUIRE(layer::scan_layer(first, *cache));
    CHECK(fs::exists(cache->decoded_path(first.digest)));
    REQUIRE(layer::scan_layer(second, *cache));
    CHECK(fs::exists(cache->decoded_path(second.digest)));
    CHECK_FALSE(fs::exists(cache->decoded_path(first.digest)));  // 3 + 3 MiB > 4 MiB: the older went
    // gc with a budget of 4 MiB (a 2 MiB share) removes the last one too.
    auto stats = (*blobs)->gc(4u << 20);
    REQUIRE(stats);
    CHECK(stats->decoded_removed == 1);
    CHECK(cache::DecodedCopies(dir.path).total_bytes() == 0);
  }
}

TEST_CASE("a hole of any declared size reads as zeros and allocates nothing") {
  compress::Chunk hole;
  hole.offset = 0;
  hole.size = std::uint64_t{1} << 50;
  hole.zeros = true;
  auto reader = std::make_shared<compress::ChunkedReader>(
      std::vector{hole}, hole.size, compress::ChunkCodec::zstd,
      std::make_shared<io::MemorySource>("", "empty"), nullptr, "layer 1 (holes)");
  std::vector<std::byte> buf(1u << 20, std::byte{1});
  auto n = reader->read_at(std::uint64_t{1} << 49, buf);
  REQUIRE(n);
  CHECK(*n == buf.size());
  CHECK(std::all_of(buf.begin(), buf.end(), [](std::byte b) { return b == std::byte{0}; }));
}

TEST_CASE("image documents: nesting, value counts and layer counts are bounded") {
  std::string deep =
      R"({"architecture":"amd64","os":"linux","x":)" + std::string(101, '[') + std::string(101, ']') + "}";
  auto r = oci::parse_config(deep, "config sha256:1");
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error().message, Catch::Contains("nest deeper than 100"));
  std::string fine =
      R"({"architecture":"amd64","os":"linux","x":)" + std::string(98, '[') + std::string(98, ']') + "}";
  CHECK(oci::parse_config(fine, "config sha256:1"));

  // Fields ocifs does not use cost nothing: a million of them in a config are not counted.
  std::string junk = R"({"architecture":"amd64","os":"linux","history":[)";
  for (int i = 0; i < 1000000; ++i) junk += "{},";
  junk += R"({}],"config":{"Env":["A=1"],"Labels":{"a":"b"}}})";
  auto c = oci::parse_config(junk, "config sha256:2");
  if (!c) FAIL(c.error().message);
  CHECK(c->env == std::vector<std::string>{"A=1"});
  // In a manifest every value is kept: too many of them are refused.
  std::string many = R"({"schemaVersion":2,"config":{"digest":"sha256:aa","size":1},"annotations":{"a":[)";
  for (std::size_t i = 0; i < limits::kMaxJsonValues; ++i) many += "1,";
  many += "1]}}";
  auto m = oci::parse_manifest(many, "manifest sha256:3");
  REQUIRE_FALSE(m);
  CHECK_THAT(m.error().message, Catch::Contains("more than 262144 values"));

  auto layers = [](std::size_t n) {
    std::string s = R"({"schemaVersion":2,"config":{"digest":"sha256:aa","size":1},"layers":[)";
    for (std::size_t i = 0; i < n; ++i) {
      s += std::string(i ? "," : "") +
           R"({"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:bb","size":1})";
    }
    return s + "]}";
  };
  CHECK(oci::parse_manifest(layers(500), "m"));
  auto too_many = oci::parse_manifest(layers(501), "m");
  REQUIRE_FALSE(too_many);
  CHECK_THAT(too_many.error().message, Catch::Contains("501 layers, more than the limit of 500"));
}

TEST_CASE("a tree 2000 directories deep is built and whited out without deep recursion") {
  std::string path;
  std::vector<layer::TarEntry> lower;
  for (int i = 0; i < 2000; ++i) {
    path += (i ? "/" : "") + std::string("d");
    lower.push_back(entry(path, layer::EntryKind::directory));
  }
  layer::LayerIndex bottom, top;
  for (const auto& e : lower) bottom.add(e);
  top.add(entry(".wh.d"));
  image::TreeBuilder builder;
  REQUIRE(builder.apply_layer(0, bottom));
  REQUIRE(builder.apply_layer(1, top));
  auto tree = std::move(builder).build();
  CHECK(tree.inode_count() == 1);
}

namespace {

std::string gzip_member(std::string_view data) {
  z_stream z{};
  REQUIRE(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  REQUIRE(deflate(&z, Z_FINISH) == Z_STREAM_END);
  out.resize(out.size() - z.avail_out);
  deflateEnd(&z);
  return out;
}

// Counts the reads below `limit` (the layer's data and headers, not its TOC or footer).
class CountingSource final : public io::BlobSource {
 public:
  CountingSource(std::string data, std::uint64_t limit) : data_(std::move(data)), limit_(limit) {}
  std::uint64_t size() const override { return data_.size(); }
  std::string describe() const override { return "estargz blob"; }
  bool stable() const override { return false; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    if (offset < limit_) ++reads_below;
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), data_.size() - std::min<std::uint64_t>(offset, data_.size())));
    std::memcpy(buf.data(), data_.data() + offset, n);
    return n;
  }
  mutable std::atomic<int> reads_below{0};

 private:
  std::string data_;
  std::uint64_t limit_;
};

}  // namespace

TEST_CASE("names a TOC cannot spell are read back in one pass: one fetch for a stretch of them") {
  // An eStargz layer of 300 empty files whose names are not UTF-8: their tar headers are one gzip
  // member, then the TOC member and the footer. The headers are not verified (only the TOC is),
  // and here every other one does not spell its name as the TOC does: those names stay as the
  // TOC gives them. Before, each name still unresolved fetched, decoded and walked the member
  // again (150 fetches here: O(n^2), up to 16 MiB each).
  constexpr int kFiles = 300;
  std::string tar, json = R"({"version":1,"entries":[)";
  for (int i = 0; i < kFiles; ++i) {
    const std::string raw = "caf\xe9-" + std::to_string(i);
    tar += ustar(i % 2 ? "other-" + std::to_string(i) : raw, 0);
    json += std::string(i ? "," : "") + R"({"name":")" + layer::as_toc_spells(raw) +
            R"(","type":"reg","size":0,"mode":420})";
  }
  json += "]}";
  std::string data = gzip_member(tar);
  const std::uint64_t toc_offset = data.size();
  data += gzip_member(ustar("stargz.index.json", json.size()) + json +
                      std::string((512 - json.size() % 512) % 512, '\0') + std::string(1024, '\0'));
  std::string footer("\x1f\x8b\x08\x04\0\0\0\0\0\xff\x1a\0SG\x16\0", 16);
  footer += fmt::format("{:016x}STARGZ", toc_offset);
  footer += std::string("\x01\0\0\xff\xff\0\0\0\0\0\0\0\0", 13);
  REQUIRE(footer.size() == layer::kEstargzFooterSize);
  data += footer;
  auto source = std::make_shared<CountingSource>(data, toc_offset);
  layer::LayerBlob blob{source, digest_of(data), false, "layer 1 (estargz)", {}};
  blob.annotations[std::string(layer::kEstargzTocDigestAnnotation)] = digest_of(json);
  auto opened = layer::open_toc_layer(blob, layer::TocFormat::estargz, nullptr);
  if (!opened) FAIL(opened.error().message);
  REQUIRE(opened->index->size() == kFiles);
  CHECK(opened->index->path(opened->index->entries()[8]) == "caf\xe9-8");             // read back
  CHECK(opened->index->path(opened->index->entries()[7]) == "caf\xef\xbf\xbd-7");  // the TOC's
  CHECK(source->reads_below.load() <= 2);
}
