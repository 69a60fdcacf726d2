// registry/: registries.conf parsing, prefix matching, mirror order, drop-ins, blocked registries.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "ocifs/registry/registries_conf.hpp"
#include "temp_dir.hpp"

using namespace ocifs;
using namespace ocifs::registry;
namespace fs = std::filesystem;

namespace {

using ocifs::test::TempDir;

RegistriesConf parse(std::string_view text) {
  auto r = RegistriesConf::parse(text, "test.conf");
  if (!r) FAIL(r.error().message);
  return std::move(r).value();
}

std::vector<std::string> endpoint_names(const RegistriesConf& conf, std::string_view ref_text) {
  auto ref = oci::Reference::parse(ref_text);
  REQUIRE(ref.ok());
  auto eps = conf.endpoints(*ref);
  if (!eps) FAIL(eps.error().message);
  std::vector<std::string> out;
  for (const auto& e : *eps)
    out.push_back(e.str() + (e.mirror ? " (mirror)" : "") + (e.insecure ? " insecure" : ""));
  return out;
}

const char* kConf = R"(
unqualified-search-registries = ["docker.io", "quay.io"]

[[registry]]
prefix = "docker.io"
location = "docker.io"

[[registry.mirror]]
location = "mirror.local:5000"
insecure = true

[[registry.mirror]]
location = "mirror2.example.com/hub"

[[registry]]
prefix = "example.com/team"
location = "internal.example.com/mirrored-team"
insecure = true

[[registry]]
location = "blocked.example.com"
blocked = true

[[registry]]
prefix = "*.corp.example"
[[registry.mirror]]
location = "cache.corp.example"
pull-from-mirror = "digest-only"

[[registry]]
prefix = "quay.io/pinned"
mirror-by-digest-only = true
[[registry.mirror]]
location = "quaymirror.example"
)";

}  // namespace

TEST_CASE("registries.conf: mirrors in order, then the primary, with repository rewriting") {
  auto conf = parse(kConf);
  CHECK(endpoint_names(conf, "debian:bookworm") ==
        std::vector<std::string>{"mirror.local:5000/library/debian (mirror) insecure",
                                 "mirror2.example.com/hub/library/debian (mirror)",
                                 "docker.io/library/debian"});
  // A location with a namespace replaces the prefix.
  CHECK(endpoint_names(conf, "example.com/team/app:1") ==
        std::vector<std::string>{"internal.example.com/mirrored-team/app insecure"});
  // "example.com/teamx" does not match the prefix "example.com/team".
  CHECK(endpoint_names(conf, "example.com/teamx/app") == std::vector<std::string>{"example.com/teamx/app"});
  // No entry: the reference as is.
  CHECK(endpoint_names(conf, "ghcr.io/o/r") == std::vector<std::string>{"ghcr.io/o/r"});
  // Wildcards match subdomains only and keep the reference's own registry as primary.
  CHECK(endpoint_names(conf, "a.corp.example/x/y") ==
        std::vector<std::string>{"cache.corp.example/x/y (mirror)", "a.corp.example/x/y"});
  CHECK(endpoint_names(conf, "corp.example/x") == std::vector<std::string>{"corp.example/x"});
}

TEST_CASE("registries.conf: digest-only mirrors serve digests only") {
  auto conf = parse(kConf);
  auto ref = oci::Reference::parse("quay.io/pinned/app:v1");
  REQUIRE(ref.ok());
  auto eps = conf.endpoints(*ref);
  REQUIRE(eps.ok());
  REQUIRE(eps->size() == 2);
  CHECK((*eps)[0].mirror);
  CHECK((*eps)[0].use == MirrorUse::digest_only);
  CHECK_FALSE((*eps)[0].serves(false));
  CHECK((*eps)[0].serves(true));
  CHECK((*eps)[1].serves(false));
  CHECK((*eps)[1].api_host() == "quay.io");
  auto hub = conf.endpoints(*oci::Reference::parse("debian"));
  REQUIRE(hub.ok());
  CHECK(hub->back().api_host() == "registry-1.docker.io");
}

TEST_CASE("registries.conf: blocked registries are refused with the file named") {
  auto conf = parse(kConf);
  auto ref = oci::Reference::parse("blocked.example.com/x/y:1");
  REQUIRE(ref.ok());
  auto eps = conf.endpoints(*ref);
  REQUIRE_FALSE(eps.ok());
  CHECK(eps.error().code == std::errc::permission_denied);
  CHECK_THAT(eps.error().message, Catch::Contains("blocked") && Catch::Contains("test.conf") &&
                                      Catch::Contains("blocked.example.com/x/y"));
}

TEST_CASE("registries.conf: the most specific prefix wins, tags and digests match too") {
  auto conf = parse(R"(
[[registry]]
prefix = "docker.io"
location = "a.example"
[[registry]]
prefix = "docker.io/library"
location = "b.example/lib"
[[registry]]
prefix = "docker.io/library/debian:12"
location = "c.example/debian12"
)");
  CHECK(endpoint_names(conf, "alpine") == std::vector<std::string>{"b.example/lib/alpine"});
  CHECK(endpoint_names(conf, "someone/app") == std::vector<std::string>{"a.example/someone/app"});
  CHECK(endpoint_names(conf, "debian:12") == std::vector<std::string>{"c.example/debian12"});
  CHECK(endpoint_names(conf, "debian:11") == std::vector<std::string>{"b.example/lib/debian"});
  auto* found = conf.find("docker.io/library/debian:12");
  REQUIRE(found);
  CHECK(found->prefix == "docker.io/library/debian:12");
  CHECK(conf.find("docker.iox/foo") == nullptr);
}

TEST_CASE("registries.conf: the v1 tables") {
  auto conf = parse(R"(
[registries.search]
registries = ["docker.io"]
[registries.insecure]
registries = ["old.example:5000"]
[registries.block]
registries = ["bad.example"]
)");
  CHECK(endpoint_names(conf, "old.example:5000/x") ==
        std::vector<std::string>{"old.example:5000/x insecure"});
  CHECK_FALSE(conf.endpoints(*oci::Reference::parse("bad.example/x")).ok());
}

TEST_CASE("registries.conf: malformed files give errors naming the file and field") {
  struct Case {
    std::string text, expect;
  };
  const Case cases[] = {
      {"[[registry]\nprefix=1", "line 1"},
      {"[[registry]]\ninsecure = \"yes\"\nlocation = \"a.example\"", "insecure must be true or false"},
      {"[[registry]]\nblocked = true", "needs a prefix or a location"},
      {"[[registry]]\nlocation = \"https://a.example\"", "must not contain a scheme"},
      {"[[registry]]\nprefix = \"a.example\"\n[[registry.mirror]]\ninsecure = true", "needs a location"},
      {"[[registry]]\nprefix = \"a.example\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = "
       "\"x\"",
       "pull-from-mirror"},
      {"[[registry]]\nprefix = \"*.a.example/x\"", "wildcard"},
      {"registry = 5", "array of tables"},
  };
  for (const auto& c : cases) {
    INFO(c.text);
    auto r = RegistriesConf::parse(c.text, "bad.conf");
    REQUIRE_FALSE(r.ok());
    CHECK_THAT(r.error().message, Catch::Contains("bad.conf") && Catch::Contains(c.expect));
  }
}

TEST_CASE("registries.conf: drop-ins apply in order and replace entries with the same prefix") {
  TempDir dir;
  auto main = dir.write("registries.conf", R"(
[[registry]]
prefix = "docker.io"
[[registry.mirror]]
location = "old-mirror.example"
[[registry]]
prefix = "quay.io"
location = "quay.io"
)");
  dir.write("registries.conf.d/20-later.conf", R"(
[[registry]]
prefix = "docker.io"
[[registry.mirror]]
location = "new-mirror.example"
)");
  dir.write("registries.conf.d/10-first.conf", R"(
[[registry]]
prefix = "docker.io"
blocked = true
[[registry]]
prefix = "ghcr.io"
blocked = true
)");
  dir.write("registries.conf.d/ignored.txt", "not toml [[[");
  auto files = RegistriesConfFiles::locate(main, "", "/nonexistent-home");
  CHECK(files.file == main);
  REQUIRE(files.dropin_dirs.size() == 1);
  auto conf = RegistriesConf::load(files);
  REQUIRE(conf.ok());
  // 20-later.conf replaced both the main file's and 10-first.conf's docker.io entry.
  CHECK(endpoint_names(*conf, "debian") ==
        std::vector<std::string>{"new-mirror.example/library/debian (mirror)", "docker.io/library/debian"});
  CHECK_FALSE(conf->endpoints(*oci::Reference::parse("ghcr.io/a/b")).ok());
  CHECK(endpoint_names(*conf, "quay.io/a/b") == std::vector<std::string>{"quay.io/a/b"});

  dir.write("registries.conf.d/30-broken.conf", "[[registry]]\nprefix = ");
  auto broken = RegistriesConf::load(files);
  REQUIRE_FALSE(broken.ok());
  CHECK_THAT(broken.error().message, Catch::Contains("30-broken.conf"));
}

TEST_CASE("registries.conf: file lookup") {
  TempDir home;
  auto env_files = RegistriesConfFiles::locate("", "/env/registries.conf", home.path.string());
  CHECK(env_files.file == "/env/registries.conf");
  CHECK(env_files.dropin_dirs == std::vector<std::string>{"/env/registries.conf.d"});
  auto override_files = RegistriesConfFiles::locate("/flag.conf", "/env/registries.conf", home.path.string());
  CHECK(override_files.file == "/flag.conf");
  auto system = RegistriesConfFiles::locate("", "", home.path.string());
  CHECK(system.file == "/etc/containers/registries.conf");
  CHECK(system.dropin_dirs ==
        std::vector<std::string>{"/etc/containers/registries.conf.d",
                                 (home.path / ".config/containers/registries.conf.d").string()});
  auto user = home.write(".config/containers/registries.conf", "");
  auto user_files = RegistriesConfFiles::locate("", "", home.path.string());
  CHECK(user_files.file == user);
  CHECK(user_files.dropin_dirs == std::vector<std::string>{user + ".d"});
  // A missing file is an empty configuration.
  auto empty = RegistriesConf::load(RegistriesConfFiles{(home.path / "none.conf").string(), {}});
  REQUIRE(empty.ok());
  CHECK(empty->registries().empty());
}
