// Image source resolution: OCI layouts written by the test (real sha256 digests), oci-archive and
// docker-archive files built with libarchive (incl. symlinked and hard-linked members, gzip), and
// real images made offline with umoci + skopeo (required: scripts/test installs them).
#include <archive.h>
#include <archive_entry.h>
#include <stdlib.h>
#include <unistd.h>
#include <zstd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/cache.hpp"
#include "ocifs/compress/encoding.hpp"
#include "ocifs/image/archive_source.hpp"
#include "ocifs/image/image_source.hpp"
#include "ocifs/image/prefetcher.hpp"
#include "ocifs/io/file_source.hpp"
#include "ocifs/util/sha256.hpp"
#include "temp_dir.hpp"

using namespace ocifs;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

using ocifs::test::TempDir;

void write(const fs::path& path, std::string_view data) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  REQUIRE(out.good());
}

std::string read_blob(const io::BlobSource& blob) {
  auto data = io::read_all(blob, 1u << 30);
  REQUIRE(data.ok());
  return *data;
}

struct TarMember {
  enum Kind { file, symlink, hardlink, dir } kind = file;
  std::string path;
  std::string data;    // file content
  std::string target;  // symlink / hardlink target
};

void add_member(struct archive* a, const TarMember& m) {
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, m.path.c_str());
  archive_entry_set_mtime(e, 1700000000, 0);
  switch (m.kind) {
    case TarMember::file:
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, static_cast<la_int64_t>(m.data.size()));
      break;
    case TarMember::symlink:
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_perm(e, 0777);
      archive_entry_set_symlink(e, m.target.c_str());
      break;
    case TarMember::hardlink:
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_hardlink(e, m.target.c_str());
      archive_entry_set_size(e, 0);
      break;
    case TarMember::dir:
      archive_entry_set_filetype(e, AE_IFDIR);
      archive_entry_set_perm(e, 0755);
      break;
  }
  REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
  if (m.kind == TarMember::file && !m.data.empty()) {
    REQUIRE(archive_write_data(a, m.data.data(), m.data.size()) == static_cast<la_ssize_t>(m.data.size()));
  }
  archive_entry_free(e);
}

void write_tar(const fs::path& path, const std::vector<TarMember>& members, bool gzip = false) {
  struct archive* a = archive_write_new();
  REQUIRE(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
  if (gzip) REQUIRE(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
  REQUIRE(archive_write_open_filename(a, path.c_str()) == ARCHIVE_OK);
  for (const auto& m : members) add_member(a, m);
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
}

// A layer tar in memory holding `files` (path -> content).
std::string make_layer(const std::vector<std::pair<std::string, std::string>>& files) {
  std::size_t total = 1u << 20;
  for (const auto& f : files) total += f.second.size() + 1024;
  std::string buf(total, '\0');
  size_t used = 0;
  struct archive* a = archive_write_new();
  REQUIRE(archive_write_set_format_pax_restricted(a) == ARCHIVE_OK);
  REQUIRE(archive_write_open_memory(a, buf.data(), buf.size(), &used) == ARCHIVE_OK);
  for (const auto& [p, d] : files) add_member(a, TarMember{TarMember::file, p, d, ""});
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  buf.resize(used);
  return buf;
}

std::string sha(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

// An OCI image layout under construction in a directory.
struct Layout {
  fs::path dir;

  explicit Layout(fs::path d) : dir(std::move(d)) {
    write(dir / "oci-layout", R"({"imageLayoutVersion": "1.0.0"})");
  }

  json add_blob(std::string_view data, std::string_view media_type, bool store = true) {
    auto digest = sha(data);
    if (store) write(dir / "blobs" / "sha256" / digest.substr(7), data);
    return json{{"mediaType", media_type}, {"digest", digest}, {"size", data.size()}};
  }

  json add_config(const std::string& arch, const std::vector<std::string>& diff_ids,
                  const std::string& variant = "") {
    json config = {{"architecture", arch},
                   {"os", "linux"},
                   {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
                   {"config", {{"Cmd", {"/bin/sh"}}}}};
    if (!variant.empty()) config["variant"] = variant;
    return add_blob(config.dump(), "application/vnd.oci.image.config.v1+json");
  }

  // A manifest with one tar layer per entry of `layers`; returns its descriptor.
  json add_image(const std::string& arch, const std::vector<std::string>& layers,
                 const std::string& variant = "",
                 const char* layer_type = "application/vnd.oci.image.layer.v1.tar") {
    json manifest = {{"schemaVersion", 2}, {"mediaType", "application/vnd.oci.image.manifest.v1+json"}};
    std::vector<std::string> diff_ids;
    json descs = json::array();
    for (const auto& l : layers) {
      descs.push_back(add_blob(l, layer_type));
      diff_ids.push_back(sha(l));
    }
    manifest["config"] = add_config(arch, diff_ids, variant);
    manifest["layers"] = descs;
    auto d = add_blob(manifest.dump(2), "application/vnd.oci.image.manifest.v1+json");
    json platform = {{"architecture", arch}, {"os", "linux"}};
    if (!variant.empty()) platform["variant"] = variant;
    d["platform"] = platform;
    return d;
  }

  void write_index(const json& manifests) {
    write(dir / "index.json", json{{"schemaVersion", 2}, {"manifests", manifests}}.dump(2));
  }
};

json named(json d, const std::string& name) {
  d["annotations"] = {{"org.opencontainers.image.ref.name", name}};
  return d;
}

oci::ImageRef layout_ref(const fs::path& dir, const std::string& tag = "") {
  auto ref = oci::ImageRef::parse("oci:" + dir.string() + (tag.empty() ? "" : ":" + tag));
  REQUIRE(ref.ok());
  return *ref;
}

image::ResolveOptions for_platform(const std::string& p) {
  auto platform = oci::Platform::parse(p);
  REQUIRE(platform.ok());
  image::ResolveOptions options;
  options.platform = *platform;
  return options;
}

std::string error_of(const Result<image::ResolvedImage>& r) {
  REQUIRE_FALSE(r.ok());
  return r.error().message;
}

// Every file of a layout directory as tar members, paths relative to it.
std::vector<TarMember> layout_members(const fs::path& dir, const std::string& prefix = "") {
  std::vector<TarMember> out;
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    out.push_back({TarMember::file, prefix + fs::relative(f, dir).string(), data, ""});
  }
  return out;
}

bool have_tool(const char* name) {
  return std::system(fmt::format("command -v {} >/dev/null 2>&1", name).c_str()) == 0;
}

}  // namespace

TEST_CASE("oci layout: one image, no tag") {
  TempDir tmp;
  Layout layout(tmp.path / "img");
  auto l1 = make_layer({{"etc/hostname", "box\n"}});
  auto l2 = make_layer({{"bin/hello", "#!/bin/sh\necho hi\n"}});
  auto m = layout.add_image("amd64", {l1, l2});
  layout.write_index(json::array({named(m, "latest")}));

  auto r = image::resolve_image(layout_ref(layout.dir), for_platform("linux/amd64"));
  REQUIRE(r.ok());
  CHECK(r->name == "oci:" + layout.dir.string());
  CHECK(r->manifest_descriptor.digest == m["digest"]);
  CHECK(r->manifest_json.size() == m["size"].get<std::size_t>());
  CHECK(r->manifest.layers.size() == 2);
  CHECK(r->config.platform.architecture == "amd64");
  CHECK(r->config.cmd == std::vector<std::string>{"/bin/sh"});
  CHECK(r->platform_choices.empty());
  REQUIRE(r->layers.size() == 2);
  CHECK(r->layers[0].digest == sha(l1));
  CHECK_FALSE(r->layers[0].digest_of_decoded);
  CHECK(r->layers[0].name == "layer 1 (" + sha(l1).substr(0, 19) + "…)");
  CHECK(r->layers[1].name.starts_with("layer 2 (sha256:"));
  CHECK(read_blob(*r->layers[0].blob) == l1);
  CHECK(read_blob(*r->layers[1].blob) == l2);

  // By name too; and a single-platform image is not refused for the host default.
  auto by_name = image::resolve_image(layout_ref(layout.dir, "latest"));
  REQUIRE(by_name.ok());
  CHECK(by_name->layers.size() == 2);
  // An explicit other platform is.
  CHECK_THAT(error_of(image::resolve_image(layout_ref(layout.dir), for_platform("linux/s390x"))),
             Catch::Contains("the image is for linux/amd64, not linux/s390x"));
}

TEST_CASE("oci layout: choosing by org.opencontainers.image.ref.name") {
  TempDir tmp;
  Layout layout(tmp.path / "img");
  auto v1 = layout.add_image("amd64", {make_layer({{"v", "1"}})});
  auto v2 = layout.add_image("amd64", {make_layer({{"v", "2"}})});
  auto full = layout.add_image("amd64", {make_layer({{"v", "3"}})});
  layout.write_index(
      json::array({named(v1, "v1"), named(v2, "v2"), named(full, "docker.io/library/app:v3")}));

  auto r2 = image::resolve_image(layout_ref(layout.dir, "v2"));
  REQUIRE(r2.ok());
  CHECK(r2->manifest_descriptor.digest == v2["digest"]);
  auto r1 = image::resolve_image(layout_ref(layout.dir, "v1"));
  REQUIRE(r1.ok());
  CHECK(r1->manifest_descriptor.digest == v1["digest"]);
  // ref.name holding a full reference matches its short form.
  auto r3 = image::resolve_image(layout_ref(layout.dir, "app:v3"));
  REQUIRE(r3.ok());
  CHECK(r3->manifest_descriptor.digest == full["digest"]);

  auto none = error_of(image::resolve_image(layout_ref(layout.dir)));
  CHECK_THAT(none, Catch::Contains("lists 3 images"));
  CHECK_THAT(none, Catch::Contains("v1, v2"));
  auto missing = error_of(image::resolve_image(layout_ref(layout.dir, "v9")));
  CHECK_THAT(missing, Catch::Contains("no image named \"v9\""));
  CHECK_THAT(missing, Catch::Contains("v1"));

  // Entries without a name cannot be chosen: they are counted, not offered as a name.
  auto unnamed = v2;
  unnamed.erase("annotations");
  layout.write_index(json::array({named(v1, "v1"), unnamed, named(full, "")}));
  auto some = error_of(image::resolve_image(layout_ref(layout.dir)));
  CHECK_THAT(some, Catch::Contains("name one of: v1 (as oci:"));
  CHECK_THAT(some, Catch::Contains("2 images have no org.opencontainers.image.ref.name annotation"));
  CHECK_THAT(some, !Catch::Contains("unnamed"));
  // (Unnamed entries that all carry a platform are one image for several platforms.)
  unnamed.erase("platform");
  layout.write_index(json::array({unnamed, named(full, "")}));
  auto all = error_of(image::resolve_image(layout_ref(layout.dir)));
  CHECK_THAT(all, !Catch::Contains("name one of"));
  CHECK_THAT(all, Catch::Contains("lists 2 images, and 2 images have no"));
}

TEST_CASE("oci layout: multi-platform nested index, platform choice") {
  TempDir tmp;
  Layout layout(tmp.path / "img");
  auto amd64 = layout.add_image("amd64", {make_layer({{"arch", "amd64"}})});
  auto arm64 = layout.add_image("arm64", {make_layer({{"arch", "arm64"}})}, "v8");
  auto armv7 = layout.add_image("arm", {make_layer({{"arch", "armv7"}})}, "v7");
  auto attestation =
      layout.add_blob(json{{"schemaVersion", 2},
                           {"config", layout.add_blob("{}", "application/vnd.oci.image.config.v1+json")},
                           {"layers", json::array()}}
                          .dump(),
                      "application/vnd.oci.image.manifest.v1+json");
  attestation["platform"] = {{"architecture", "unknown"}, {"os", "unknown"}};
  attestation["annotations"] = {{"vnd.docker.reference.type", "attestation-manifest"}};

  SECTION("nested OCI index") {
    auto index = layout.add_blob(json{{"schemaVersion", 2},
                                      {"mediaType", "application/vnd.oci.image.index.v1+json"},
                                      {"manifests", {attestation, amd64, arm64, armv7}}}
                                     .dump(),
                                 "application/vnd.oci.image.index.v1+json");
    layout.write_index(json::array({named(index, "latest")}));

    auto a = image::resolve_image(layout_ref(layout.dir, "latest"), for_platform("linux/arm64"));
    REQUIRE(a.ok());
    CHECK(a->manifest_descriptor.digest == arm64["digest"]);
    CHECK(a->platform_choices.size() == 4);
    REQUIRE(a->manifest_descriptor.platform);
    CHECK(a->manifest_descriptor.platform->architecture == "arm64");

    auto b = image::resolve_image(layout_ref(layout.dir), for_platform("linux/x86_64"));
    REQUIRE(b.ok());
    CHECK(b->manifest_descriptor.digest == amd64["digest"]);
    CHECK(read_blob(*b->layers[0].blob) == make_layer({{"arch", "amd64"}}));

    auto c = image::resolve_image(layout_ref(layout.dir), for_platform("linux/armhf"));
    REQUIRE(c.ok());
    CHECK(c->manifest_descriptor.digest == armv7["digest"]);

    auto none = error_of(image::resolve_image(layout_ref(layout.dir), for_platform("linux/arm/v6")));
    CHECK_THAT(none, Catch::Contains("no image for platform linux/arm/v6"));
    CHECK_THAT(none, Catch::Contains("linux/amd64, linux/arm64, linux/arm/v7"));
    CHECK_THAT(none, !Catch::Contains("unknown"));
    CHECK_THAT(error_of(image::resolve_image(layout_ref(layout.dir), for_platform("windows/amd64"))),
               Catch::Contains("no image for platform windows/amd64"));
  }
  SECTION("fallback: arm64 runs arm/v7; docker manifest list without mediaType in the descriptor") {
    auto index_json = json{{"schemaVersion", 2},
                           {"mediaType", "application/vnd.docker.distribution.manifest.list.v2+json"},
                           {"manifests", {attestation, amd64, armv7}}}
                          .dump();
    auto index = layout.add_blob(index_json, "");
    index.erase("mediaType");
    // Two levels of nesting.
    auto outer = layout.add_blob(json{{"schemaVersion", 2}, {"manifests", {index}}}.dump(),
                                 "application/vnd.oci.image.index.v1+json");
    layout.write_index(json::array({outer}));
    auto r = image::resolve_image(layout_ref(layout.dir), for_platform("linux/arm64"));
    REQUIRE(r.ok());
    CHECK(r->manifest_descriptor.digest == armv7["digest"]);
    CHECK(r->platform_choices.size() == 3);
  }
  SECTION("top-level index.json listing platforms directly") {
    layout.write_index(json::array({named(amd64, "latest"), named(arm64, "latest")}));
    auto r = image::resolve_image(layout_ref(layout.dir, "latest"), for_platform("linux/aarch64"));
    REQUIRE(r.ok());
    CHECK(r->manifest_descriptor.digest == arm64["digest"]);
    auto untagged = image::resolve_image(layout_ref(layout.dir), for_platform("linux/amd64"));
    REQUIRE(untagged.ok());
    CHECK(untagged->manifest_descriptor.digest == amd64["digest"]);
  }
}

TEST_CASE("oci layout: verification and clear errors") {
  TempDir tmp;
  Layout layout(tmp.path / "img");
  auto layer = make_layer({{"f", "data"}});

  SECTION("manifest digest mismatch") {
    auto m = layout.add_image("amd64", {layer});
    auto path = layout.dir / "blobs/sha256" / m["digest"].get<std::string>().substr(7);
    auto bytes = *io::read_file(path, 1 << 20);
    bytes[bytes.size() - 2] = ' ';  // same size, other content
    write(path, bytes);
    layout.write_index(json::array({m}));
    auto e = error_of(image::resolve_image(layout_ref(layout.dir)));
    CHECK_THAT(e, Catch::Contains("does not match its digest"));
    CHECK_THAT(e, Catch::Contains(path.string()));
  }
  SECTION("config digest mismatch") {
    auto m = layout.add_image("amd64", {layer});
    auto manifest = json::parse(
        *io::read_file(layout.dir / "blobs/sha256" / m["digest"].get<std::string>().substr(7), 1 << 20));
    auto config_path =
        layout.dir / "blobs/sha256" / manifest["config"]["digest"].get<std::string>().substr(7);
    auto config = *io::read_file(config_path, 1 << 20);
    config[config.find("amd64")] = 'b';
    write(config_path, config);
    layout.write_index(json::array({m}));
    CHECK_THAT(error_of(image::resolve_image(layout_ref(layout.dir))), Catch::Contains("config"));
    CHECK_THAT(error_of(image::resolve_image(layout_ref(layout.dir))),
               Catch::Contains("does not match its digest"));
  }
  SECTION("size mismatch") {
    auto m = layout.add_image("amd64", {layer});
    m["size"] = m["size"].get<int>() + 1;
    layout.write_index(json::array({m}));
    CHECK_THAT(error_of(image::resolve_image(layout_ref(layout.dir))),
               Catch::Contains("its descriptor says"));
  }
  SECTION("missing layer blob") {
    json manifest = {
        {"schemaVersion", 2},
        {"config", layout.add_config("amd64", {sha(layer)})},
        {"layers", {layout.add_blob(layer, "application/vnd.oci.image.layer.v1.tar+gzip", false)}}};
    layout.write_index(
        json::array({layout.add_blob(manifest.dump(), "application/vnd.oci.image.manifest.v1+json")}));
    auto e = error_of(image::resolve_image(layout_ref(layout.dir)));
    CHECK_THAT(e, Catch::Contains("layer 1"));
    CHECK_THAT(e, Catch::Contains(sha(layer)));
    CHECK_THAT(e, Catch::Contains("blobs/sha256/" + sha(layer).substr(7)));
    CHECK_THAT(e, Catch::Contains("is missing"));
  }
  SECTION("missing manifest blob") {
    auto d = layout.add_blob("{}", "application/vnd.oci.image.manifest.v1+json", false);
    layout.write_index(json::array({d}));
    auto e = error_of(image::resolve_image(layout_ref(layout.dir)));
    CHECK_THAT(e, Catch::Contains(d["digest"].get<std::string>()));
    CHECK_THAT(e, Catch::Contains("is missing"));
  }
  SECTION("unknown layer media type") {
    auto m = layout.add_image("amd64", {layer}, "", "application/vnd.cncf.helm.chart.content.v1.tar+gzip");
    layout.write_index(json::array({m}));
    auto e = error_of(image::resolve_image(layout_ref(layout.dir)));
    CHECK_THAT(e, Catch::Contains("layer 1 (sha256:"));
    CHECK_THAT(e, Catch::Contains("application/vnd.cncf.helm.chart.content.v1.tar+gzip"));
    CHECK_THAT(e, Catch::Contains("not a container image layer"));
  }
  SECTION("artifact config media type") {
    json manifest = {{"schemaVersion", 2},
                     {"config", layout.add_blob("{}", "application/vnd.cncf.helm.config.v1+json")},
                     {"layers", json::array()}};
    layout.write_index(
        json::array({layout.add_blob(manifest.dump(), "application/vnd.oci.image.manifest.v1+json")}));
    CHECK_THAT(error_of(image::resolve_image(layout_ref(layout.dir))),
               Catch::Contains("not a container image"));
  }
  SECTION("schema1 manifest") {
    auto d = layout.add_blob(R"({"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []})",
                             "application/vnd.docker.distribution.manifest.v1+prettyjws");
    layout.write_index(json::array({d}));
    CHECK_THAT(error_of(image::resolve_image(layout_ref(layout.dir))),
               Catch::Contains("schema1 manifests are obsolete"));
  }
  SECTION("malformed index.json") {
    write(layout.dir / "index.json", "{\"manifests\": [");
    auto e = error_of(image::resolve_image(layout_ref(layout.dir)));
    CHECK_THAT(e, Catch::Contains("index.json"));
    CHECK_THAT(e, Catch::Contains("malformed JSON"));
  }
  SECTION("empty index") {
    layout.write_index(json::array());
    CHECK_THAT(error_of(image::resolve_image(layout_ref(layout.dir))), Catch::Contains("lists no images"));
  }
  SECTION("index loop") {
    // An index cannot contain its own digest, but a chain deeper than the limit is refused.
    json d = layout.add_image("amd64", {layer});
    for (int i = 0; i < 10; ++i) {
      d = layout.add_blob(json{{"schemaVersion", 2}, {"manifests", {d}}}.dump(),
                          "application/vnd.oci.image.index.v1+json");
    }
    layout.write_index(json::array({d}));
    CHECK_THAT(error_of(image::resolve_image(layout_ref(layout.dir))), Catch::Contains("nest more than"));
  }
  SECTION("not a layout") {
    fs::remove(layout.dir / "oci-layout");
    auto e = error_of(image::resolve_image(layout_ref(layout.dir)));
    CHECK_THAT(e, Catch::Contains("is not an OCI image layout"));
    CHECK_THAT(error_of(image::resolve_image(layout_ref(tmp.path / "nope"))),
               Catch::Contains("is not a directory"));
  }
}

TEST_CASE("registry references: --offline resolves from the cache alone") {
  TempDir tmp;
  auto cache = cache::Cache::open(tmp.path / "cache");
  REQUIRE(cache.ok());
  auto blobs = cache::BlobCache::open(tmp.path / "cache", 0);
  REQUIRE(blobs.ok());
  auto ref = oci::ImageRef::parse("127.0.0.1:5000/team/app:v1");
  REQUIRE(ref.ok());
  image::ResolveOptions options;
  options.offline = true;
  CHECK_THAT(error_of(image::resolve_image(*ref, options)), Catch::Contains("need a cache directory"));
  options.cache = &*cache;
  options.blob_cache = *blobs;
  CHECK_THAT(error_of(image::resolve_image(*ref, options)), Catch::Contains("never resolved"));

  std::string layer = "not really a layer, never read here";
  std::string config = R"({"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}})";
  auto digest = [](const std::string& bytes) { return "sha256:" + util::sha256_hex(bytes); };
  nlohmann::json manifest = {
      {"schemaVersion", 2},
      {"mediaType", "application/vnd.oci.image.manifest.v1+json"},
      {"config",
       {{"mediaType", "application/vnd.oci.image.config.v1+json"}, {"digest", digest(config)}, {"size", config.size()}}},
      {"layers",
       {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"}, {"digest", digest(layer)}, {"size", layer.size()}}}}};
  std::string manifest_bytes = manifest.dump();
  REQUIRE(cache->write_ref("127.0.0.1:5000", "team/app", "v1", digest(manifest_bytes)).ok());
  CHECK_THAT(error_of(image::resolve_image(*ref, options)),
             Catch::Contains("manifest " + digest(manifest_bytes) + " is not in the cache and --offline"));
  REQUIRE(cache->write_document(digest(manifest_bytes), manifest_bytes).ok());
  CHECK_THAT(error_of(image::resolve_image(*ref, options)), Catch::Contains("config " + digest(config)));
  REQUIRE(cache->write_document(digest(config), config).ok());
  auto resolved = image::resolve_image(*ref, options);
  REQUIRE(resolved.ok());
  REQUIRE(resolved->layers.size() == 1);
  CHECK(resolved->layers[0].digest == digest(layer));
  CHECK(resolved->layers[0].blob->size() == layer.size());
  CHECK(resolved->layers[0].prefetch);
  // Its bytes are not cached: reading them offline is an error, not a hang or zeros.
  std::string buf(8, '\0');
  auto read = resolved->layers[0].blob->read_at(0, std::as_writable_bytes(std::span(buf)));
  REQUIRE(!read.ok());
  CHECK_THAT(read.error().message, Catch::Contains("offline"));
}

TEST_CASE("ArchiveSource: members in place, links followed") {
  TempDir tmp;
  auto path = tmp.path / "a.tar";
  write_tar(path, {{TarMember::dir, "dir/", "", ""},
                   {TarMember::file, "dir/a.txt", "alpha", ""},
                   {TarMember::file, "./b.txt", std::string(3000, 'b'), ""},
                   {TarMember::symlink, "dir/link", "", "a.txt"},
                   {TarMember::symlink, "up", "", "dir/../dir/link"},
                   {TarMember::symlink, "abs", "", "/b.txt"},
                   {TarMember::hardlink, "hard", "", "dir/a.txt"},
                   {TarMember::symlink, "loop1", "", "loop2"},
                   {TarMember::symlink, "loop2", "", "loop1"},
                   {TarMember::symlink, "dangling", "", "nothing"}});
  auto file = io::FileSource::open(path);
  REQUIRE(file.ok());
  auto archive = image::ArchiveSource::open(*file);
  REQUIRE(archive.ok());
  auto& a = **archive;
  CHECK(a.encoding() == compress::Encoding::tar);
  CHECK(read_blob(**a.member("dir/a.txt")) == "alpha");
  CHECK(read_blob(**a.member("./dir/a.txt")) == "alpha");
  CHECK(read_blob(**a.member("/b.txt")) == std::string(3000, 'b'));
  CHECK(read_blob(**a.member("dir/link")) == "alpha");
  CHECK(read_blob(**a.member("up")) == "alpha");
  CHECK(read_blob(**a.member("abs")) == std::string(3000, 'b'));
  CHECK(read_blob(**a.member("hard")) == "alpha");
  CHECK((*a.member("dir/a.txt"))->describe() == path.string() + ":dir/a.txt");
  CHECK(a.contains("hard"));
  CHECK_FALSE(a.contains("dangling"));
  auto missing = a.member("nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == std::errc::no_such_file_or_directory);
  CHECK_THAT(missing.error().message, Catch::Contains("nope"));
  CHECK_THAT(missing.error().message, Catch::Contains(path.string()));
  CHECK_THAT(a.member("loop1").error().message, Catch::Contains("too many levels of links"));
  CHECK_THAT(a.member("dir").error().message, Catch::Contains("not a regular file"));

  // Not a tar at all / truncated.
  write(tmp.path / "junk.tar", std::string(1024, 'x'));
  CHECK_FALSE(image::ArchiveSource::open(*io::FileSource::open(tmp.path / "junk.tar")).ok());
  // A member's data cut short: the message names the archive once, with the member and offsets.
  std::string whole = read_blob(**file);
  write(tmp.path / "cut.tar", whole.substr(0, 2048 + 1000));  // inside b.txt's 3000 bytes
  auto cut = image::ArchiveSource::open(*io::FileSource::open(tmp.path / "cut.tar"));
  REQUIRE_FALSE(cut.ok());
  auto message = cut.error().message;
  auto named = "cannot read " + (tmp.path / "cut.tar").string();
  CHECK(message.find(named) == 0);
  CHECK(message.find(named, 1) == std::string::npos);
  CHECK_THAT(message, Catch::Contains("b.txt' (header at offset") && Catch::Contains("bytes short"));
}

TEST_CASE("ArchiveSource: a zstd-compressed archive is decompressed into the cache, within a limit") {
  TempDir tmp;
  std::string big(300000, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i * 7919 % 26);
  auto plain = tmp.path / "a.tar";
  write_tar(plain, {{TarMember::file, "dir/a.txt", "alpha", ""},
                    {TarMember::file, "big", big, ""},
                    {TarMember::symlink, "link", "", "dir/a.txt"}});
  std::string tar = read_blob(**io::FileSource::open(plain));
  // One frame, as the zstd CLI writes it.
  std::string zst(ZSTD_compressBound(tar.size()), '\0');
  auto n = ZSTD_compress(zst.data(), zst.size(), tar.data(), tar.size(), 3);
  REQUIRE_FALSE(ZSTD_isError(n));
  zst.resize(n);
  write(tmp.path / "a.tar.zst", zst);
  auto file = io::FileSource::open(tmp.path / "a.tar.zst");
  REQUIRE(file.ok());
  auto cache = cache::Cache::open(tmp.path / "cache");
  REQUIRE(cache.ok());

  image::ArchiveOptions options;
  options.cache = &*cache;
  options.decompress_limit = tar.size();
  auto archive = image::ArchiveSource::open(*file, options);
  REQUIRE(archive.ok());
  auto& a = **archive;
  CHECK(a.encoding() == compress::Encoding::zstd);
  CHECK(read_blob(**a.member("dir/a.txt")) == "alpha");
  CHECK(read_blob(**a.member("link")) == "alpha");
  CHECK(read_blob(**a.member("big")) == big);
  CHECK((*a.member("big"))->describe() == (tmp.path / "a.tar.zst").string() + ":big");
  CHECK(fs::is_empty(tmp.path / "cache" / "tmp"));  // the decompressed copy has no name

  options.decompress_limit = tar.size() - 1;
  auto over = image::ArchiveSource::open(*file, options);
  REQUIRE_FALSE(over.ok());
  CHECK(over.error().code == std::errc::file_too_large);
  CHECK_THAT(over.error().message, Catch::Contains((tmp.path / "a.tar.zst").string()) &&
                                       Catch::Contains("--cache-max") && Catch::Contains("zstd -d"));
  auto nowhere = image::ArchiveSource::open(*file);
  REQUIRE_FALSE(nowhere.ok());
  CHECK_THAT(nowhere.error().message, Catch::Contains("needs a cache directory"));
  write(tmp.path / "cut.tar.zst", zst.substr(0, zst.size() / 2));
  auto cut = image::ArchiveSource::open(*io::FileSource::open(tmp.path / "cut.tar.zst"), options);
  REQUIRE_FALSE(cut.ok());
  CHECK_THAT(cut.error().message, Catch::Contains("cut.tar.zst") && Catch::Contains("zstd"));
}

TEST_CASE("oci-archive") {
  TempDir tmp;
  Layout layout(tmp.path / "img");
  auto l1 = make_layer({{"hello", "world"}});
  auto amd64 = layout.add_image("amd64", {l1});
  auto arm64 = layout.add_image("arm64", {make_layer({{"hello", "arm"}})});
  auto index = layout.add_blob(json{{"schemaVersion", 2}, {"manifests", {amd64, arm64}}}.dump(),
                               "application/vnd.oci.image.index.v1+json");
  layout.write_index(json::array({named(index, "stable")}));
  auto members = layout_members(layout.dir, "./");
  members.insert(members.begin(), TarMember{TarMember::dir, "blobs/", "", ""});
  write_tar(tmp.path / "img.tar", members);

  for (std::string tag : {"", "stable"}) {
    auto ref = oci::ImageRef::parse("oci-archive:" + (tmp.path / "img.tar").string() +
                                    (tag.empty() ? "" : ":" + tag));
    REQUIRE(ref.ok());
    auto r = image::resolve_image(*ref, for_platform("linux/amd64"));
    REQUIRE(r.ok());
    CHECK(r->manifest_descriptor.digest == amd64["digest"]);
    REQUIRE(r->layers.size() == 1);
    CHECK(read_blob(*r->layers[0].blob) == l1);
    CHECK_THAT(r->layers[0].blob->describe(), Catch::Contains("img.tar:blobs/sha256/"));
    CHECK(r->platform_choices.size() == 2);
  }
  auto wrong = oci::ImageRef::parse("oci-archive:" + (tmp.path / "img.tar").string() + ":nope");
  CHECK_THAT(error_of(image::resolve_image(*wrong)), Catch::Contains("no image named \"nope\""));

  // A gzip-compressed archive is read through its decoded view.
  write_tar(tmp.path / "img.tar.gz", members, true);
  auto gz = oci::ImageRef::parse("oci-archive:" + (tmp.path / "img.tar.gz").string());
  auto r = image::resolve_image(*gz, for_platform("linux/arm64"));
  REQUIRE(r.ok());
  CHECK(read_blob(*r->layers[0].blob) == make_layer({{"hello", "arm"}}));

  // A missing blob names the archive and the member.
  std::vector<TarMember> without;
  for (const auto& m : members) {
    if (m.path != "./blobs/sha256/" + sha(l1).substr(7)) without.push_back(m);
  }
  write_tar(tmp.path / "broken.tar", without);
  auto broken = oci::ImageRef::parse("oci-archive:" + (tmp.path / "broken.tar").string());
  auto e = error_of(image::resolve_image(*broken, for_platform("linux/amd64")));
  CHECK_THAT(e, Catch::Contains(sha(l1)));
  CHECK_THAT(e, Catch::Contains("broken.tar"));

  // Not an archive of a layout.
  write_tar(tmp.path / "other.tar", {{TarMember::file, "x", "y", ""}});
  auto other = oci::ImageRef::parse("oci-archive:" + (tmp.path / "other.tar").string());
  CHECK_THAT(error_of(image::resolve_image(*other)), Catch::Contains("is not an OCI image layout"));
  auto absent = oci::ImageRef::parse("oci-archive:" + (tmp.path / "absent.tar").string());
  CHECK_THAT(error_of(image::resolve_image(*absent)), Catch::Contains("absent.tar"));
}

namespace {

// A docker-save style archive: two images, the second sharing the first's layer through a
// symlinked layer.tar (as skopeo writes them) and a hard link (as some tools do).
struct DockerArchive {
  std::string l1 = make_layer({{"etc/os-release", "ID=test\n"}});
  std::string l2 = make_layer({{"bin/app", "app v1"}});
  std::string config1, config2;
  std::vector<TarMember> members;

  DockerArchive() {
    auto config = [](const std::string& arch, const std::vector<std::string>& diff_ids) {
      return json{{"architecture", arch},
                  {"os", "linux"},
                  {"config", {{"Env", {"PATH=/bin"}}}},
                  {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}}}
          .dump();
    };
    config1 = config("amd64", {sha(l1)});
    config2 = config("amd64", {sha(l1), sha(l2)});
    auto c1 = util::sha256_hex(config1) + ".json";
    auto c2 = util::sha256_hex(config2) + ".json";
    json manifest = json::array({
        {{"Config", c1}, {"RepoTags", {"busybox:latest"}}, {"Layers", {"aaa/layer.tar"}}},
        {{"Config", c2},
         {"RepoTags", {"localhost:5000/app:v1", "docker.io/library/app:v1"}},
         {"Layers", {"bbb/layer.tar", "ccc/layer.tar"}}},
    });
    members = {
        {TarMember::dir, "aaa", "", ""},
        {TarMember::file, "aaa/layer.tar", l1, ""},
        {TarMember::file, "aaa/VERSION", "1.0", ""},
        {TarMember::dir, "bbb", "", ""},
        {TarMember::symlink, "bbb/layer.tar", "", "../aaa/layer.tar"},
        {TarMember::file, "ccc.tar", l2, ""},
        {TarMember::dir, "ccc", "", ""},
        {TarMember::hardlink, "ccc/layer.tar", "", "ccc.tar"},
        {TarMember::file, c1, config1, ""},
        {TarMember::file, c2, config2, ""},
        {TarMember::file, "manifest.json", manifest.dump(), ""},
        {TarMember::file, "repositories", "{}", ""},
    };
  }
};

oci::ImageRef docker_ref(const fs::path& path, const std::string& tag = "") {
  auto ref = oci::ImageRef::parse("docker-archive:" + path.string() + (tag.empty() ? "" : ":" + tag));
  REQUIRE(ref.ok());
  return *ref;
}

void check_app_image(const image::ResolvedImage& r, const DockerArchive& d) {
  REQUIRE(r.layers.size() == 2);
  CHECK(r.layers[0].digest == sha(d.l1));
  CHECK(r.layers[0].digest_of_decoded);
  CHECK(r.layers[1].digest == sha(d.l2));
  CHECK(r.layers[1].name.starts_with("layer 2 (sha256:"));
  CHECK(read_blob(*r.layers[0].blob) == d.l1);  // through the symlink
  CHECK(read_blob(*r.layers[1].blob) == d.l2);  // through the hard link
  CHECK(r.config_json == d.config2);
  CHECK(r.config.env == std::vector<std::string>{"PATH=/bin"});
  CHECK(r.manifest.media_type == oci::media_type::kDockerManifest);
  CHECK(r.manifest.config.digest == sha(d.config2));
  CHECK(r.manifest.config.media_type == oci::media_type::kDockerConfig);
  REQUIRE(r.manifest.layers.size() == 2);
  CHECK(r.manifest.layers[0].media_type == oci::media_type::kDockerLayerTar);
  CHECK(r.manifest.layers[0].size == static_cast<std::int64_t>(d.l1.size()));
  CHECK(r.manifest_descriptor.digest == sha(r.manifest_json));
  CHECK(r.manifest_descriptor.media_type == oci::media_type::kDockerManifest);
  auto reparsed = oci::parse_manifest(r.manifest_json, "synthesized");
  REQUIRE(reparsed.ok());
  CHECK(reparsed->layers.size() == 2);
  CHECK(reparsed->config.digest == r.manifest.config.digest);
}

}  // namespace

TEST_CASE("docker-archive") {
  TempDir tmp;
  DockerArchive d;
  auto path = tmp.path / "save.tar";
  write_tar(path, d.members);

  SECTION("choose by RepoTags, normalised both ways") {
    for (std::string tag :
         {"localhost:5000/app:v1", "app:v1", "docker.io/library/app:v1", "library/app:v1"}) {
      INFO(tag);
      auto r = image::resolve_image(docker_ref(path, tag));
      REQUIRE(r.ok());
      check_app_image(*r, d);
      CHECK(r->name == "docker-archive:" + path.string() + ":" + tag);
    }
    auto busybox = image::resolve_image(docker_ref(path, "docker.io/library/busybox:latest"));
    REQUIRE(busybox.ok());
    REQUIRE(busybox->layers.size() == 1);
    CHECK(read_blob(*busybox->layers[0].blob) == d.l1);
    CHECK(image::resolve_image(docker_ref(path, "busybox")).ok());  // default tag latest
  }
  SECTION("errors") {
    auto several = error_of(image::resolve_image(docker_ref(path)));
    CHECK_THAT(several, Catch::Contains("holds 2 images"));
    CHECK_THAT(several, Catch::Contains("busybox:latest"));
    auto wrong = error_of(image::resolve_image(docker_ref(path, "busybox:1.36")));
    CHECK_THAT(wrong, Catch::Contains("no image tagged busybox:1.36"));
    CHECK_THAT(wrong, Catch::Contains("localhost:5000/app:v1"));
  }
  SECTION("the only image, no tag") {
    std::vector<TarMember> one;
    for (const auto& m : d.members) {
      if (m.path == "manifest.json") {
        auto manifest = json::parse(m.data);
        manifest.erase(0);
        manifest[0]["RepoTags"] = nullptr;
        one.push_back({TarMember::file, "manifest.json", manifest.dump(), ""});
      } else {
        one.push_back(m);
      }
    }
    write_tar(tmp.path / "one.tar", one);
    auto r = image::resolve_image(docker_ref(tmp.path / "one.tar"));
    REQUIRE(r.ok());
    check_app_image(*r, d);
  }
  SECTION("gzipped docker-archive (docker save | gzip)") {
    write_tar(tmp.path / "save.tar.gz", d.members, true);
    auto r = image::resolve_image(docker_ref(tmp.path / "save.tar.gz", "app:v1"));
    REQUIRE(r.ok());
    check_app_image(*r, d);
    CHECK_THAT(r->layers[1].blob->describe(), Catch::Contains("save.tar.gz"));
  }
  SECTION("gzipped docker-archive with members spanning many checkpoints") {
    // ~3 MiB of incompressible data: reads through the decoded view resume from checkpoints.
    std::string big(3u << 20, '\0');
    std::uint64_t x = 0x9e3779b97f4a7c15ull;
    for (auto& c : big) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      c = static_cast<char>(x);
    }
    auto layer = make_layer({{"big.bin", big}});
    auto config = json{{"architecture", "amd64"},
                       {"os", "linux"},
                       {"rootfs", {{"type", "layers"}, {"diff_ids", {sha(d.l1), sha(layer)}}}}}
                      .dump();
    json manifest = json::array(
        {{{"Config", "blobs/sha256/" + util::sha256_hex(config)},
          {"RepoTags", {"big:1"}},
          {"Layers",
           {"blobs/sha256/" + util::sha256_hex(d.l1), "blobs/sha256/" + util::sha256_hex(layer)}}}});
    write_tar(tmp.path / "big.tar.gz",
              {{TarMember::file, "blobs/sha256/" + util::sha256_hex(d.l1), d.l1, ""},
               {TarMember::file, "blobs/sha256/" + util::sha256_hex(layer), layer, ""},
               {TarMember::file, "blobs/sha256/" + util::sha256_hex(config), config, ""},
               {TarMember::file, "manifest.json", manifest.dump(), ""}},
              true);
    auto r = image::resolve_image(docker_ref(tmp.path / "big.tar.gz"));
    REQUIRE(r.ok());
    REQUIRE(r->layers.size() == 2);
    CHECK(read_blob(*r->layers[0].blob) == d.l1);
    CHECK(read_blob(*r->layers[1].blob) == layer);
    std::string tail(1000, '\0');
    REQUIRE(r->layers[1].blob->read_exact(layer.size() - 1000, std::as_writable_bytes(std::span(tail))).ok());
    CHECK(tail == layer.substr(layer.size() - 1000));
  }
  SECTION("broken archives") {
    auto rewrite = [&](const std::string& name, const std::function<void(TarMember&)>& change) {
      auto members = d.members;
      for (auto& m : members) change(m);
      write_tar(tmp.path / name, members);
      return docker_ref(tmp.path / name, "app:v1");
    };
    auto no_layer = rewrite("nolayer.tar", [](TarMember& m) {
      if (m.path == "ccc.tar") m.path = "zzz.tar";
    });
    auto e = error_of(image::resolve_image(no_layer));
    CHECK_THAT(e, Catch::Contains("layer 2"));
    CHECK_THAT(e, Catch::Contains("ccc.tar"));
    // A config edited after saving, under its old name: taken by the digest of its content (as
    // skopeo and umoci do), and its diff_ids still decide the layers.
    std::string edited = json::parse(d.config2).dump(2);
    REQUIRE(edited != d.config2);
    auto renamed_config = rewrite("editedconfig.tar", [&](TarMember& m) {
      if (m.data == d.config2) m.data = edited;
    });
    auto renamed = image::resolve_image(renamed_config);
    REQUIRE(renamed.ok());
    CHECK(renamed->config_json == edited);
    CHECK(renamed->manifest.config.digest == sha(edited));
    CHECK(renamed->layers.size() == 2);
    auto count = rewrite("count.tar", [&](TarMember& m) {
      if (m.path == "manifest.json") {
        auto manifest = json::parse(m.data);
        manifest[1]["Layers"].push_back("aaa/layer.tar");
        m.data = manifest.dump();
      }
    });
    CHECK_THAT(error_of(image::resolve_image(count)), Catch::Contains("lists 3 layers but config"));
    auto no_manifest = rewrite("nomanifest.tar", [](TarMember& m) {
      if (m.path == "manifest.json") m.path = "other.json";
    });
    CHECK_THAT(error_of(image::resolve_image(no_manifest)), Catch::Contains("is not a docker-archive"));
  }
  SECTION("platform") {
    CHECK(image::resolve_image(docker_ref(path, "app:v1"), for_platform("linux/amd64")).ok());
    CHECK_THAT(error_of(image::resolve_image(docker_ref(path, "app:v1"), for_platform("linux/arm64"))),
               Catch::Contains("the image is for linux/amd64, not linux/arm64"));
  }
}

TEST_CASE("real images made offline with umoci and skopeo", "[tools]") {
  // scripts/test installs both: a missing one fails the test rather than passing it unrun.
  for (const char* tool : {"umoci", "skopeo"}) {
    INFO(tool << " is not installed (Debian package " << tool << ", installed by scripts/test)");
    REQUIRE(have_tool(tool));
  }
  TempDir tmp;
  auto dir = tmp.path / "layout";
  auto rootfs = tmp.path / "content";
  write(rootfs / "hello.txt", "hello from umoci\n");
  auto run = [](const std::string& cmd) {
    INFO(cmd);
    REQUIRE(std::system((cmd + " >/dev/null 2>&1").c_str()) == 0);
  };
  run(fmt::format("umoci init --layout {}", dir.string()));
  run(fmt::format("umoci new --image {}:base", dir.string()));
  run(fmt::format("umoci insert --image {}:base {} /srv", dir.string(), (rootfs / "hello.txt").string()));
  auto policy = tmp.path / "policy.json";
  write(policy, R"({"default": [{"type": "insecureAcceptAnything"}]})");
  auto skopeo = fmt::format("skopeo --policy {} --insecure-policy copy --quiet", policy.string());
  run(fmt::format("{} oci:{}:base oci-archive:{}:base", skopeo, dir.string(),
                  (tmp.path / "img.tar").string()));
  run(fmt::format("{} oci:{}:base docker-archive:{}:example.com/demo:v1", skopeo, dir.string(),
                  (tmp.path / "docker.tar").string()));

  const std::string names[] = {
      "oci:" + dir.string() + ":base", "oci-archive:" + (tmp.path / "img.tar").string(),
      "docker-archive:" + (tmp.path / "docker.tar").string() + ":example.com/demo:v1",
      "docker-archive:" + (tmp.path / "docker.tar").string()};
  for (const auto& name : names) {
    INFO(name);
    auto ref = oci::ImageRef::parse(name);
    REQUIRE(ref.ok());
    auto r = image::resolve_image(*ref);
    if (!r.ok()) FAIL(r.error().message);
    REQUIRE(r->layers.size() == 1);
    auto data = read_blob(*r->layers[0].blob);
    CHECK(data.size() == r->layers[0].blob->size());
    CHECK_FALSE(r->config.diff_ids.empty());
  }
}

TEST_CASE("Prefetcher: a fetch that throws ends the prefetch, not the process") {
  // A registry-like blob (prefetch() fetches) whose fetch throws; the next range is fine.
  class ThrowingBlob final : public io::BlobSource {
   public:
    std::uint64_t size() const override { return 1u << 20; }
    std::string describe() const override { return "throwing.blob"; }
    Result<std::size_t> read_at(std::uint64_t, std::span<std::byte> buf) const override { return buf.size(); }
    bool stable() const override { return false; }
    Result<void> prefetch(std::uint64_t, std::uint64_t) const override { throw std::runtime_error("a bug in a fetch"); }
  };
  auto blob = std::make_shared<ThrowingBlob>();
  image::Prefetcher prefetcher({{blob, 0, 1u << 20}, {blob, 0, 100}});
  for (int i = 0; i < 1000 && !prefetcher.done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(prefetcher.done());
  CHECK(prefetcher.failed_ranges() == 1);
}
