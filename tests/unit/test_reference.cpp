// Reference normalisation (docker/distribution's ParseNormalizedNamed) and ImageRef transports.
#include <catch2/catch.hpp>

#include "ocifs/oci/image_ref.hpp"

using namespace ocifs;
using oci::ImageRef;
using oci::Reference;
using oci::Transport;

namespace {
const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
}

TEST_CASE("Reference::parse normalises like docker/distribution") {
  struct Case {
    std::string input, registry, repository, tag, digest, canonical;
  };
  const std::string d = "sha256:" + kHex;
  const Case cases[] = {
      {"debian", "docker.io", "library/debian", "latest", "", "docker.io/library/debian:latest"},
      {"debian:bookworm", "docker.io", "library/debian", "bookworm", "", "docker.io/library/debian:bookworm"},
      {"library/debian", "docker.io", "library/debian", "latest", "", "docker.io/library/debian:latest"},
      {"docker.io/debian", "docker.io", "library/debian", "latest", "", "docker.io/library/debian:latest"},
      {"docker.io/library/debian:12", "docker.io", "library/debian", "12", "", "docker.io/library/debian:12"},
      {"index.docker.io/debian", "docker.io", "library/debian", "latest", "",
       "docker.io/library/debian:latest"},
      {"index.docker.io/foo/bar", "docker.io", "foo/bar", "latest", "", "docker.io/foo/bar:latest"},
      {"foo/bar", "docker.io", "foo/bar", "latest", "", "docker.io/foo/bar:latest"},
      {"foo/bar/baz", "docker.io", "foo/bar/baz", "latest", "", "docker.io/foo/bar/baz:latest"},
      {"ghcr.io/owner/image:v1.2.3", "ghcr.io", "owner/image", "v1.2.3", "", "ghcr.io/owner/image:v1.2.3"},
      {"ghcr.io/image", "ghcr.io", "image", "latest", "", "ghcr.io/image:latest"},
      {"localhost/foo", "localhost", "foo", "latest", "", "localhost/foo:latest"},
      {"localhost:5000/foo/bar:t", "localhost:5000", "foo/bar", "t", "", "localhost:5000/foo/bar:t"},
      {"127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", "", "127.0.0.1:5000/x:latest"},
      {"[::1]:5000/app:v1", "[::1]:5000", "app", "v1", "", "[::1]:5000/app:v1"},
      {"[2001:db8::1]/app", "[2001:db8::1]", "app", "latest", "", "[2001:db8::1]/app:latest"},
      {"localhost:5000", "docker.io", "library/localhost", "5000", "", "docker.io/library/localhost:5000"},
      {"Foo/bar", "Foo", "bar", "latest", "", "Foo/bar:latest"},
      {"debian@" + d, "docker.io", "library/debian", "", d, "docker.io/library/debian@" + d},
      {"debian:12@" + d, "docker.io", "library/debian", "12", d, "docker.io/library/debian:12@" + d},
      {"quay.io/a/b-c_d.e__f:T_a.g-1", "quay.io", "a/b-c_d.e__f", "T_a.g-1", "",
       "quay.io/a/b-c_d.e__f:T_a.g-1"},
      {"a--b", "docker.io", "library/a--b", "latest", "", "docker.io/library/a--b:latest"},
      {"my-registry.example.com:443/team/app", "my-registry.example.com:443", "team/app", "latest", "",
       "my-registry.example.com:443/team/app:latest"},
  };
  for (const auto& c : cases) {
    INFO(c.input);
    auto r = Reference::parse(c.input);
    REQUIRE(r.ok());
    CHECK(r->registry == c.registry);
    CHECK(r->repository == c.repository);
    CHECK(r->tag == c.tag);
    CHECK(r->digest == c.digest);
    CHECK(r->str() == c.canonical);
    // The canonical form parses to itself.
    auto again = Reference::parse(r->str());
    REQUIRE(again.ok());
    CHECK(again->str() == c.canonical);
  }
}

TEST_CASE("Reference::parse refuses malformed references") {
  struct Case {
    std::string input, reason;
  };
  const Case cases[] = {
      {"", "at least one component"},
      {"Debian", "must be lowercase"},
      {"docker.io/Library/debian", "must be lowercase"},
      {"ghcr.io/Owner/app:v1", "must be lowercase"},
      {"debian:", "invalid tag"},
      {"debian:-x", "invalid tag"},
      {"debian:.x", "invalid tag"},
      {"debian:a+b", "invalid tag"},
      {"debian:" + std::string(129, 'a'), "invalid tag"},
      {"debian@sha256:abc", "invalid sha256 digest"},
      {"debian@sha256:" + std::string(64, 'A'), "invalid sha256 digest"},
      {"debian@md5:0123", "unsupported digest algorithm"},
      {"debian@", "invalid digest"},
      {kHex, "64-byte hexadecimal"},
      {"foo//bar", "invalid repository name component"},
      {"foo/bar/", "invalid repository name component"},
      {"-foo", "invalid repository name component"},
      {"foo_", "invalid repository name component"},
      {"foo___bar", "invalid repository name component"},
      {"foo/ba r", "invalid repository name component"},
      {"ghcr.io/", "at least one component"},
      {"-ghcr.io/x", "invalid registry host"},
      {"ghcr.io:/x", "invalid registry host"},
      {"ghcr.io:12a/x", "invalid registry host"},
      {"[::1/x", "invalid registry host"},
      {"[zz::1]:5000/x", "invalid registry host"},
      {"ghcr.io/a:b/c", "invalid repository name component"},
      {"docker.io/" + std::string(250, 'a'), "not be more than 255"},
  };
  for (const auto& c : cases) {
    INFO(c.input);
    auto r = Reference::parse(c.input);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::Contains(c.reason));
    CHECK_THAT(r.error().message, Catch::StartsWith("cannot parse reference"));
  }
}

TEST_CASE("Reference::api_host") {
  CHECK(Reference::parse("debian")->api_host() == "registry-1.docker.io");
  CHECK(Reference::parse("index.docker.io/foo/bar")->api_host() == "registry-1.docker.io");
  CHECK(Reference::parse("ghcr.io/a/b")->api_host() == "ghcr.io");
  CHECK(Reference::parse("[::1]:5000/a")->api_host() == "[::1]:5000");
}

TEST_CASE("ImageRef::parse transports") {
  struct Case {
    std::string input;
    Transport transport;
    std::string path, tag, reference, str;
  };
  const Case cases[] = {
      {"debian", Transport::registry, "", "", "docker.io/library/debian:latest",
       "docker.io/library/debian:latest"},
      {"docker://debian:12", Transport::registry, "", "", "docker.io/library/debian:12",
       "docker.io/library/debian:12"},
      {"docker://localhost:5000/app", Transport::registry, "", "", "localhost:5000/app:latest",
       "localhost:5000/app:latest"},
      {"localhost:5000/app:v2", Transport::registry, "", "", "localhost:5000/app:v2",
       "localhost:5000/app:v2"},
      {"oci:/tmp/layout", Transport::oci_layout, "/tmp/layout", "", "", "oci:/tmp/layout"},
      {"oci:/tmp/layout:latest", Transport::oci_layout, "/tmp/layout", "latest", "",
       "oci:/tmp/layout:latest"},
      {"oci:rel/dir:v1.0", Transport::oci_layout, "rel/dir", "v1.0", "", "oci:rel/dir:v1.0"},
      {"oci-archive:/x/img.tar", Transport::oci_archive, "/x/img.tar", "", "", "oci-archive:/x/img.tar"},
      {"oci-archive:/x/img.tar:stable", Transport::oci_archive, "/x/img.tar", "stable", "",
       "oci-archive:/x/img.tar:stable"},
      {"docker-archive:/x/img.tar", Transport::docker_archive, "/x/img.tar", "", "",
       "docker-archive:/x/img.tar"},
      {"docker-archive:/x/img.tar:busybox:latest", Transport::docker_archive, "/x/img.tar", "busybox:latest",
       "", "docker-archive:/x/img.tar:busybox:latest"},
      {"docker-archive:/x.tar:localhost:5000/app:v1", Transport::docker_archive, "/x.tar",
       "localhost:5000/app:v1", "", "docker-archive:/x.tar:localhost:5000/app:v1"},
  };
  for (const auto& c : cases) {
    INFO(c.input);
    auto r = ImageRef::parse(c.input);
    REQUIRE(r.ok());
    CHECK(r->transport == c.transport);
    CHECK(r->path == c.path);
    CHECK(r->tag == c.tag);
    if (c.transport == Transport::registry) CHECK(r->reference.str() == c.reference);
    CHECK(r->str() == c.str);
  }
  // A registry host named like a transport keeps docker:// in its written form, so that the form
  // reads back as the same image (found by tests/fuzz: "docker://dir:1/o").
  for (std::string_view text : {"docker://dir:1/o", "docker://oci:5000/app:v1"}) {
    INFO(text);
    auto r = ImageRef::parse(text);
    REQUIRE(r.ok());
    CHECK(r->str().starts_with("docker://"));
    auto again = ImageRef::parse(r->str());
    REQUIRE(again.ok());
    CHECK(again->transport == Transport::registry);
    CHECK(again->reference.str() == r->reference.str());
  }
}

TEST_CASE("ImageRef::parse errors") {
  struct Case {
    std::string input, reason;
  };
  const Case cases[] = {
      {"oci:", "needs a path"},
      {"oci-archive::tag", "needs a path"},
      {"oci:/dir:", "empty image name"},
      {"docker-archive:/x.tar:Busybox:latest", "must be lowercase"},
      {"docker-archive:/x.tar:busybox@sha256:" + kHex, "not by digest"},
      {"docker://", "at least one component"},
      {"docker://Debian", "must be lowercase"},
      {"dir:/tmp/x", "not supported"},
      {"containers-storage:foo", "not supported"},
  };
  for (const auto& c : cases) {
    INFO(c.input);
    auto r = ImageRef::parse(c.input);
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::Contains(c.reason));
  }
}
