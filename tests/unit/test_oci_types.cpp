// oci/types: digests, platforms (containerd normalisation and matching), media types and the
// JSON documents of the image spec.
#include <catch2/catch.hpp>

#include "ocifs/oci/docker_archive_manifest.hpp"
#include "ocifs/oci/referrers.hpp"
#include "ocifs/oci/types.hpp"

using namespace ocifs;
using namespace ocifs::oci;

namespace {
const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kDigest = "sha256:" + kHex;

Platform P(std::string os, std::string arch, std::string variant = "") {
  Platform p;
  p.os = std::move(os);
  p.architecture = std::move(arch);
  p.variant = std::move(variant);
  return p;
}
}  // namespace

TEST_CASE("Digest::parse") {
  auto d = Digest::parse(kDigest);
  REQUIRE(d.ok());
  CHECK(d->algorithm == "sha256");
  CHECK(d->hex == kHex);
  CHECK(d->str() == kDigest);
  for (std::string bad :
       {std::string("sha256"), std::string("sha256:abc"), "sha512:" + kHex,
        "sha256:" + kHex.substr(0, 63) + "G", "SHA256:" + kHex, "sha256:" + kHex + "0", std::string("")}) {
    INFO(bad);
    auto r = Digest::parse(bad);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::StartsWith("cannot parse digest"));
  }
}

TEST_CASE("Platform::parse normalises like containerd") {
  struct Case {
    std::string input, expected;
  };
  const Case cases[] = {
      {"linux/amd64", "linux/amd64"},      {"linux/x86_64", "linux/amd64"},
      {"linux/x86-64", "linux/amd64"},     {"Linux/AMD64", "linux/amd64"},
      {"linux/aarch64", "linux/arm64"},    {"linux/arm64/v8", "linux/arm64"},
      {"linux/aarch64/v8", "linux/arm64"}, {"linux/arm64/v9", "linux/arm64/v9"},
      {"linux/armhf", "linux/arm/v7"},     {"linux/armel", "linux/arm/v6"},
      {"linux/arm", "linux/arm/v7"},       {"linux/arm/7", "linux/arm/v7"},
      {"linux/arm/v6", "linux/arm/v6"},    {"linux/arm/5", "linux/arm/v5"},
      {"linux/i386", "linux/386"},         {"linux/i686", "linux/386"},
      {"linux/386", "linux/386"},          {"linux/s390x", "linux/s390x"},
      {"linux/ppc64le", "linux/ppc64le"},  {"linux/riscv64", "linux/riscv64"},
      {"windows/amd64", "windows/amd64"},  {"arm64", "linux/arm64"},
      {"linux/amd64/v1", "linux/amd64"},   {"linux/amd64/v3", "linux/amd64/v3"},
  };
  for (const auto& c : cases) {
    INFO(c.input);
    auto p = Platform::parse(c.input);
    REQUIRE(p.ok());
    CHECK(p->str() == c.expected);
  }
  for (std::string bad : {"", "linux/", "/amd64", "linux/amd64/v7/x", "linux/am d64", "plan10"}) {
    INFO(bad);
    auto p = Platform::parse(bad);
    REQUIRE_FALSE(p.ok());
    CHECK_THAT(p.error().message, Catch::StartsWith("cannot parse platform"));
  }
  auto os_only = Platform::parse("linux");
  REQUIRE(os_only.ok());
  CHECK(os_only->architecture == Platform::host().architecture);
}

TEST_CASE("Platform::host is normalised") {
  auto host = Platform::host();
  CHECK(host.os == "linux");
  CHECK_FALSE(host.architecture.empty());
  CHECK(host == host.normalized());
  CHECK(platform_match_score(host, host) > 0);
}

TEST_CASE("platform_match_score: exact beats fallbacks, os must match") {
  struct Case {
    Platform wanted, candidate;
    bool matches;
  };
  const Case cases[] = {
      {P("linux", "amd64"), P("linux", "amd64"), true},
      {P("linux", "amd64"), P("linux", "x86_64"), true},
      {P("linux", "amd64"), P("linux", "386"), true},
      {P("linux", "amd64"), P("linux", "arm64"), false},
      {P("linux", "amd64"), P("windows", "amd64"), false},
      {P("linux", "amd64"), P("unknown", "unknown"), false},
      {P("linux", "arm64"), P("linux", "arm64", "v8"), true},
      {P("linux", "arm64"), P("linux", "aarch64"), true},
      {P("linux", "arm64"), P("linux", "arm", "v8"), true},
      {P("linux", "arm64"), P("linux", "arm", "v7"), true},
      {P("linux", "arm64"), P("linux", "amd64"), false},
      {P("linux", "arm", "v7"), P("linux", "arm", "v7"), true},
      {P("linux", "arm", "v7"), P("linux", "arm"), true},
      {P("linux", "arm", "v7"), P("linux", "arm", "v6"), true},
      {P("linux", "arm", "v7"), P("linux", "arm", "v5"), true},
      {P("linux", "arm", "v6"), P("linux", "arm", "v7"), false},
      {P("linux", "arm", "v7"), P("linux", "arm64"), false},
      {P("linux", "386"), P("linux", "amd64"), false},
      {P("linux", "amd64", "v3"), P("linux", "amd64", "v2"), true},
      {P("linux", "amd64"), P("linux", "amd64", "v3"), false},
      {P("linux", "s390x"), P("linux", "s390x"), true},
      // Variants no CPU has (a manifest list may say anything; found by fuzz_image_ref: the
      // differences overflowed): unknown variants, never a negative or overflowed score.
      {P("linux", "amd64", "v630265938"), P("linux", "amd64", "v1"), true},
      {P("linux", "amd64", "v99"), P("linux", "amd64", "v1"), true},
      {P("linux", "amd64"), P("linux", "amd64", "v-5"), true},
      {P("linux", "arm", "v99"), P("linux", "arm", "v5"), true},
  };
  for (const auto& c : cases) {
    INFO(c.wanted.str() << " <- " << c.candidate.str());
    CHECK((platform_match_score(c.wanted, c.candidate) > 0) == c.matches);
  }
  // Exact is best; nearer fallbacks beat farther ones.
  auto arm7 = P("linux", "arm", "v7");
  CHECK(platform_match_score(arm7, P("linux", "arm", "v7")) >
        platform_match_score(arm7, P("linux", "arm", "v6")));
  CHECK(platform_match_score(arm7, P("linux", "arm", "v6")) >
        platform_match_score(arm7, P("linux", "arm", "v5")));
  auto arm64 = P("linux", "arm64");
  CHECK(platform_match_score(arm64, P("linux", "arm64")) >
        platform_match_score(arm64, P("linux", "arm", "v8")));
  CHECK(platform_match_score(arm64, P("linux", "arm", "v8")) >
        platform_match_score(arm64, P("linux", "arm", "v7")));
  auto amd64 = P("linux", "amd64");
  CHECK(platform_match_score(amd64, P("linux", "amd64")) > platform_match_score(amd64, P("linux", "386")));
}

TEST_CASE("media type classification") {
  CHECK(is_layer_media_type(media_type::kOciLayerGzip));
  CHECK(is_layer_media_type(media_type::kOciLayerZstd));
  CHECK(is_layer_media_type(media_type::kOciLayerTar));
  CHECK(is_layer_media_type(media_type::kDockerLayerGzip));
  CHECK(is_layer_media_type(media_type::kDockerForeignLayerGzip));
  CHECK(is_layer_media_type("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"));
  CHECK_FALSE(is_layer_media_type("application/vnd.in-toto+json"));
  CHECK_FALSE(is_layer_media_type(media_type::kOciConfig));
  CHECK(is_index_media_type(media_type::kOciIndex));
  CHECK(is_index_media_type(media_type::kDockerManifestList));
  CHECK_FALSE(is_index_media_type(media_type::kOciManifest));
  CHECK(is_manifest_media_type(media_type::kOciManifest));
  CHECK(is_manifest_media_type(media_type::kDockerManifest));
  CHECK_FALSE(is_manifest_media_type(media_type::kDockerSchema1));
}

TEST_CASE("parse_manifest") {
  SECTION("OCI manifest with unknown fields and annotations") {
    std::string json = R"({
      "schemaVersion": 2,
      "mediaType": "application/vnd.oci.image.manifest.v1+json",
      "artifactType": "ignored",
      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": ")" +
                       kDigest + R"(", "size": 123},
      "layers": [
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ")" +
                       kDigest + R"(", "size": 32,
         "annotations": {"a": "b"}, "urls": ["https://example.com/x"], "future": {"x": 1}},
        {"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": ")" +
                       kDigest + R"(", "size": 0}
      ],
      "annotations": {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"}
    })";
    auto m = parse_manifest(json, "test manifest");
    REQUIRE(m.ok());
    CHECK(m->schema_version == 2);
    CHECK(m->media_type == media_type::kOciManifest);
    CHECK(m->config.digest == kDigest);
    CHECK(m->config.size == 123);
    REQUIRE(m->layers.size() == 2);
    CHECK(m->layers[0].annotations.at("a") == "b");
    CHECK(m->layers[0].urls.at(0) == "https://example.com/x");
    CHECK(m->layers[1].media_type == media_type::kOciLayerZstd);
    CHECK(m->annotations.size() == 1);

    // Round trip through to_json.
    auto again = parse_manifest(to_json(*m), "round trip");
    REQUIRE(again.ok());
    CHECK(again->layers.size() == 2);
    CHECK(again->layers[0].annotations == m->layers[0].annotations);
    CHECK(again->config.size == 123);
  }
  SECTION("mediaType omitted, size omitted") {
    std::string json =
        R"({"schemaVersion": 2, "config": {"mediaType": "x", "digest": ")" + kDigest + R"("}, "layers": []})";
    auto m = parse_manifest(json, "m");
    REQUIRE(m.ok());
    CHECK(m->media_type == media_type::kOciManifest);
    CHECK(m->config.size == -1);
    CHECK(m->layers.empty());
    // to_json leaves the size out again: -1 would not parse (found by tests/fuzz, documents).
    auto again = parse_manifest(to_json(*m), "round trip");
    REQUIRE(again.ok());
    CHECK(again->config.size == -1);
  }
  SECTION("schema1 is refused clearly") {
    for (
        std::string json :
        {std::string(R"({"schemaVersion": 1, "name": "x", "fsLayers": []})"),
         std::string(
             R"({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"})")}) {
      auto m = parse_manifest(json, "docker.io/library/old:1");
      REQUIRE_FALSE(m.ok());
      CHECK_THAT(m.error().message, Catch::Contains("cannot use manifest docker.io/library/old:1"));
      CHECK_THAT(m.error().message, Catch::Contains("schema1 manifests are obsolete"));
      CHECK(m.error().code == std::errc::not_supported);
    }
  }
  SECTION("malformed documents name where and what") {
    struct Case {
      std::string json, reason;
    };
    const Case cases[] = {
        {"{", "malformed JSON"},
        {"", "malformed JSON"},
        {"[]", "not a JSON object"},
        {R"({"schemaVersion": 2, "layers": []})", "\"config\" is missing"},
        {R"({"schemaVersion": 2, "config": {"mediaType": "x"}})", "\"config.digest\" is missing"},
        {R"({"schemaVersion": 2, "config": null})", "\"config\" is null, not a descriptor"},
        {R"({"schemaVersion": 2, "config": {"digest": null}})", "\"config.digest\" is null, not a string"},
        {R"({"schemaVersion": 2, "config": {"digest": "nope"}})", "\"config.digest\" is not a digest"},
        {R"({"schemaVersion": 2, "config": {"digest": ")" + kDigest + R"(", "size": "12"}})",
         "\"config.size\" is not an integer"},
        {R"({"schemaVersion": 2, "config": {"digest": ")" + kDigest + R"(", "size": -4}})", "is negative"},
        {R"({"schemaVersion": 2, "config": {"digest": ")" + kDigest + R"("}, "layers": {}})",
         "\"layers\" is not an array"},
        {R"({"schemaVersion": 2, "config": {"digest": ")" + kDigest + R"("}, "layers": [{"digest": 5}]})",
         "\"layers[0].digest\" is not a string"},
        {R"({"schemaVersion": 2, "config": {"digest": ")" + kDigest + R"(", "annotations": {"a": 1}}})",
         "\"config.annotations.a\" is not a string"},
        {R"({"schemaVersion": "2"})", "\"schemaVersion\" is not an integer"},
        {R"({"schemaVersion": 3, "config": {}})", "schemaVersion 3 is not supported"},
        {R"({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []})",
         "image index"},
        {R"({"schemaVersion": 2, "manifests": []})", "image index"},
        {R"({"schemaVersion": 2, "mediaType": "text/plain"})", "is not an image manifest"},
    };
    for (const auto& c : cases) {
      INFO(c.json);
      auto m = parse_manifest(c.json, "blobs/sha256/abc");
      REQUIRE_FALSE(m.ok());
      CHECK_THAT(m.error().message, Catch::Contains("blobs/sha256/abc"));
      CHECK_THAT(m.error().message, Catch::Contains(c.reason));
    }
  }
}

TEST_CASE("parse_index") {
  std::string json = R"({
    "schemaVersion": 2,
    "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
    "manifests": [
      {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "digest": ")" +
                     kDigest + R"(",
       "size": 10, "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": ")" +
                     kDigest + R"(", "size": 11,
       "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0.17763.1", "os.features": ["win32k"]}},
      {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": ")" +
                     kDigest + R"(", "size": 12,
       "platform": {"architecture": "unknown", "os": "unknown"},
       "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
    ]
  })";
  auto index = parse_index(json, "index.json");
  REQUIRE(index.ok());
  CHECK(index->media_type == media_type::kDockerManifestList);
  REQUIRE(index->manifests.size() == 3);
  REQUIRE(index->manifests[0].platform);
  CHECK(index->manifests[0].platform->str() == "linux/arm/v7");
  CHECK(index->manifests[1].platform->os_version == "10.0.17763.1");
  CHECK(index->manifests[1].platform->os_features == std::vector<std::string>{"win32k"});
  CHECK(index->manifests[2].annotations.size() == 1);

  auto no_type = parse_index(R"({"schemaVersion": 2, "manifests": []})", "index.json");
  REQUIRE(no_type.ok());
  CHECK(no_type->media_type == media_type::kOciIndex);

  auto missing = parse_index(R"({"schemaVersion": 2})", "x/index.json");
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.error().message, Catch::Contains("x/index.json"));
  CHECK_THAT(missing.error().message, Catch::Contains("\"manifests\" is missing"));
  auto null = parse_index(R"({"schemaVersion": 2, "manifests": null})", "x/index.json");
  REQUIRE_FALSE(null.ok());
  CHECK_THAT(null.error().message, Catch::Contains("\"manifests\" is null, not an array"));
  auto bad_platform = parse_index(
      R"({"manifests": [{"digest": ")" + kDigest + R"(", "platform": {"os": "linux"}}]})", "index.json");
  REQUIRE_FALSE(bad_platform.ok());
  CHECK_THAT(bad_platform.error().message, Catch::Contains("manifests[0].platform.architecture"));
  auto manifest =
      parse_index(R"({"mediaType": "application/vnd.oci.image.manifest.v1+json", "manifests": []})", "i");
  REQUIRE_FALSE(manifest.ok());
  CHECK_THAT(manifest.error().message, Catch::Contains("is not an image index"));
  auto schema1 = parse_index(R"({"schemaVersion": 1})", "i");
  REQUIRE_FALSE(schema1.ok());
  CHECK_THAT(schema1.error().message, Catch::Contains("obsolete"));
}

TEST_CASE("parse_config") {
  std::string json = R"({
    "created": "2024-05-01T12:00:00Z",
    "architecture": "arm64", "os": "linux", "variant": "v8",
    "config": {"Env": ["PATH=/usr/bin"], "Entrypoint": null, "Cmd": ["/bin/sh"], "WorkingDir": "/w",
               "User": "1000:1000", "Labels": {"x": "y"}, "ExposedPorts": {"80/tcp": {}}},
    "rootfs": {"type": "layers", "diff_ids": [")" +
                     kDigest + R"("]},
    "history": [{"created_by": "x"}]
  })";
  auto c = parse_config(json, "config sha256:1234");
  REQUIRE(c.ok());
  CHECK(c->platform.architecture == "arm64");
  CHECK(c->platform.variant == "v8");
  CHECK(c->created == "2024-05-01T12:00:00Z");
  CHECK(c->env == std::vector<std::string>{"PATH=/usr/bin"});
  CHECK(c->entrypoint.empty());
  CHECK(c->cmd == std::vector<std::string>{"/bin/sh"});
  CHECK(c->working_dir == "/w");
  CHECK(c->user == "1000:1000");
  CHECK(c->diff_ids == std::vector<std::string>{kDigest});

  auto minimal = parse_config(R"({"architecture": "amd64", "os": "linux", "config": null})", "c");
  REQUIRE(minimal.ok());
  CHECK(minimal->diff_ids.empty());

  for (std::string bad :
       {std::string("nope"), std::string(R"({"config": []})"), std::string(R"({"config": {"Env": "A=B"}})"),
        std::string(R"({"rootfs": {"diff_ids": ["x"]}})")}) {
    INFO(bad);
    auto r = parse_config(bad, "config sha256:1234");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::StartsWith("cannot parse config sha256:1234"));
  }
}

TEST_CASE("sniff_media_type") {
  CHECK(*sniff_media_type(R"({"mediaType": "application/vnd.oci.image.index.v1+json"})", "x") ==
        media_type::kOciIndex);
  CHECK(*sniff_media_type(R"({"schemaVersion": 2, "manifests": []})", "x") == media_type::kOciIndex);
  CHECK(*sniff_media_type(R"({"schemaVersion": 2, "config": {}, "layers": []})", "x") ==
        media_type::kOciManifest);
  CHECK(*sniff_media_type(R"({"schemaVersion": 1, "fsLayers": []})", "x") == media_type::kDockerSchema1);
  CHECK_FALSE(sniff_media_type(R"({"schemaVersion": 2})", "x").ok());
  CHECK_FALSE(sniff_media_type("not json", "x").ok());
}

TEST_CASE("parse_layout_version and docker-archive manifest.json") {
  CHECK(*parse_layout_version(R"({"imageLayoutVersion": "1.0.0"})", "oci-layout") == "1.0.0");
  CHECK_FALSE(parse_layout_version(R"({})", "oci-layout").ok());

  auto images = parse_docker_archive_manifest(
      R"([{"Config": "abc.json", "RepoTags": ["busybox:latest"], "Layers": ["l1/layer.tar", "l2/layer.tar"]},
          {"Config": "def.json", "RepoTags": null, "Layers": [], "LayerSources": {}}])",
      "a.tar:manifest.json");
  REQUIRE(images.ok());
  REQUIRE(images->size() == 2);
  CHECK((*images)[0].config == "abc.json");
  CHECK((*images)[0].repo_tags == std::vector<std::string>{"busybox:latest"});
  CHECK((*images)[0].layers.size() == 2);
  CHECK((*images)[1].repo_tags.empty());
  auto bad = parse_docker_archive_manifest(R"([{"RepoTags": []}])", "a.tar:manifest.json");
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("[0].Config"));
  auto empty = parse_docker_archive_manifest(R"([{"Config": "a.json"}, {"Config": ""}])", "m");
  REQUIRE_FALSE(empty.ok());
  CHECK_THAT(empty.error().message, Catch::Contains("[1].Config"));
  CHECK_FALSE(parse_docker_archive_manifest(R"({})", "m").ok());
}

TEST_CASE("referrers: artifact manifests, the tag schema's index, newest first") {
  CHECK(referrers_tag("sha256:" + std::string(64, 'a')) == "sha256-" + std::string(64, 'a'));
  auto empty = empty_config_descriptor();
  CHECK(empty.digest == "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
  CHECK(empty.size == 2);

  // An artifact manifest writes and reads back its artifactType and subject.
  Manifest artifact;
  artifact.media_type = media_type::kOciManifest;
  artifact.artifact_type = "application/x.test";
  artifact.config = empty;
  Descriptor subject{std::string(media_type::kOciManifest), "sha256:" + std::string(64, 'b'), 123, {}, {}, {}};
  artifact.subject = subject;
  auto parsed = parse_manifest(to_json(artifact), "artifact");
  REQUIRE(parsed.ok());
  CHECK(parsed->artifact_type == "application/x.test");
  REQUIRE(parsed->subject);
  CHECK(parsed->subject->digest == subject.digest);

  auto entry = [](char c, std::string type, std::string created) {
    Descriptor d{std::string(media_type::kOciManifest), "sha256:" + std::string(64, c), 10, {}, {}, {}, type};
    if (!created.empty()) d.annotations[std::string(kAnnotationCreated)] = created;
    return d;
  };
  // Pushing ours twice keeps one of our type (the newer), and keeps what others attached.
  auto first = referrers_index_with(std::nullopt, entry('1', "ours", "2026-01-01T00:00:00Z"), true, "tag");
  REQUIRE(first.ok());
  auto signed_ = referrers_index_with(*first, entry('2', "signature", ""), false, "tag");
  REQUIRE(signed_.ok());
  auto second = referrers_index_with(*signed_, entry('3', "ours", "2026-02-01T00:00:00Z"), true, "tag");
  REQUIRE(second.ok());
  auto all = parse_referrers(*second, "", "tag");
  REQUIRE(all.ok());
  REQUIRE(all->size() == 2);
  auto ours = parse_referrers(*second, "ours", "tag");
  REQUIRE(ours.ok());
  REQUIRE(ours->size() == 1);
  CHECK((*ours)[0].digest == "sha256:" + std::string(64, '3'));

  // Newest first, by the created annotation, whatever the order listed.
  Index listed;
  listed.media_type = media_type::kOciIndex;
  listed.manifests = {entry('4', "ours", "2026-03-01T00:00:00Z"), entry('5', "ours", "2026-05-01T00:00:00Z"),
                      entry('6', "ours", "2026-04-01T00:00:00Z")};
  auto newest = parse_referrers(to_json(listed), "ours", "api");
  REQUIRE(newest.ok());
  REQUIRE(newest->size() == 3);
  CHECK((*newest)[0].digest.back() == '5');
  CHECK((*newest)[1].digest.back() == '6');
  CHECK_FALSE(parse_referrers("{\"manifests\": 5}", "", "bad").ok());
}
