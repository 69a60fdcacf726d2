// registry/: where credentials come from (auth.json / config.json precedence, key normalisation)
// and the docker-credential-helpers protocol, with helper scripts written to a temp dir on PATH.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "ocifs/util/base64.hpp"
#include "ocifs/registry/credential_helper.hpp"
#include "ocifs/registry/credentials.hpp"
#include "temp_dir.hpp"

using namespace ocifs;
using namespace ocifs::registry;
namespace fs = std::filesystem;

namespace {

using ocifs::test::TempDir;

// Puts `dir` first on PATH for the lifetime of the object.
struct PathPrefix {
  std::string old;
  explicit PathPrefix(const fs::path& dir) {
    const char* p = std::getenv("PATH");
    old = p ? p : "";
    ::setenv("PATH", (dir.string() + ":" + old).c_str(), 1);
  }
  ~PathPrefix() { ::setenv("PATH", old.c_str(), 1); }
};

std::string auth_entry(const std::string& user, const std::string& pass) {
  return R"({"auth":")" + util::base64_encode(user + ":" + pass) + R"("})";
}

// A helper that logs its argument and stdin to LOG and answers per server URL.
const char* kHelper = R"(#!/bin/sh
[ "$1" = get ] || { echo "unexpected action $1" >&2; exit 2; }
read -r url || true
echo "$url" >> "$(dirname "$0")/helper.log"
case "$url" in
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hubuser","Secret":"hubpass"}' ;;
  ghcr.io) echo '{"ServerURL":"ghcr.io","Username":"<token>","Secret":"refresh-me"}' ;;
  slow.example) exec sleep 60 ;;
  broken.example) echo 'keychain locked' ; exit 3 ;;
  garbage.example) echo 'not json' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
)";

}  // namespace

TEST_CASE("auth_file_paths: order and environment overrides") {
  CredentialEnvironment env;
  env.home = "/home/u";
  env.uid = 1000;
  CHECK(auth_file_paths(env) == std::vector<std::string>{"/run/containers/1000/auth.json",
                                                         "/home/u/.config/containers/auth.json",
                                                         "/home/u/.docker/config.json"});
  env.xdg_runtime_dir = "/run/user/1000";
  env.xdg_config_home = "/xdg";
  env.docker_config = "/dc";
  env.registry_auth_file = "/env/auth.json";
  CHECK(auth_file_paths(env) == std::vector<std::string>{"/env/auth.json",
                                                         "/run/user/1000/containers/auth.json",
                                                         "/xdg/containers/auth.json", "/dc/config.json"});
  env.authfile = "/flag/auth.json";  // --authfile wins over REGISTRY_AUTH_FILE
  CHECK(auth_file_paths(env).front() == "/flag/auth.json");
  CHECK(auth_file_paths(env).size() == 4);
}

TEST_CASE("CredentialEnvironment::from_process reads the variables") {
  ::setenv("REGISTRY_AUTH_FILE", "/x/auth.json", 1);
  ::setenv("DOCKER_CONFIG", "/x/docker", 1);
  auto env = CredentialEnvironment::from_process("");
  CHECK(env.registry_auth_file == "/x/auth.json");
  CHECK(env.docker_config == "/x/docker");
  CHECK(env.uid == ::getuid());
  CHECK_FALSE(env.home.empty());
  ::unsetenv("REGISTRY_AUTH_FILE");
  ::unsetenv("DOCKER_CONFIG");
}

TEST_CASE("normalize_auth_key") {
  CHECK(normalize_auth_key("https://index.docker.io/v1/") == "docker.io");
  CHECK(normalize_auth_key("index.docker.io") == "docker.io");
  CHECK(normalize_auth_key("registry-1.docker.io") == "docker.io");
  CHECK(normalize_auth_key("docker.io") == "docker.io");
  CHECK(normalize_auth_key("docker.io/library") == "docker.io/library");
  CHECK(normalize_auth_key("http://localhost:5000/v2/") == "localhost:5000");
  CHECK(normalize_auth_key("https://ghcr.io") == "ghcr.io");
  CHECK(normalize_auth_key("quay.io/team/app") == "quay.io/team/app");
  CHECK(normalize_auth_key("quay.io/team/") == "quay.io/team");
  CHECK(credential_server_url("docker.io") == "https://index.docker.io/v1/");
  CHECK(credential_server_url("ghcr.io") == "ghcr.io");
}

TEST_CASE("CredentialLookup: first match wins across files, most specific key within one") {
  TempDir dir;
  auto first = dir.write("first.json", R"({"auths":{"quay.io/team":)" + auth_entry("team", "t") + R"(}})");
  auto second = dir.write("second.json", R"({"auths":{
      "https://index.docker.io/v1/":)" + auth_entry("hub", "h1") +
                                             R"(,
      "quay.io":)" + auth_entry("quayall", "q") +
                                             R"(,
      "quay.io/team/app":)" + auth_entry("app", "a") +
                                             R"(,
      "http://localhost:5000/v2/":)" + auth_entry("local", "l:with:colons") +
                                             R"(,
      "ghcr.io":{"identitytoken":"idtok"}}})");
  CredentialLookup lookup("", {dir.path / "missing.json", first, second});

  auto find = [&](std::string_view reg, std::string_view repo) {
    auto r = lookup.find(reg, repo);
    REQUIRE(r.ok());
    return *r;
  };
  auto hub = find("docker.io", "library/debian");
  REQUIRE(hub);
  CHECK(hub->credentials.username == "hub");
  CHECK(hub->credentials.password == "h1");
  CHECK(hub->source == second);

  // quay.io/team in the first file wins over quay.io/team/app in the second (file order first).
  auto team = find("quay.io", "team/app");
  REQUIRE(team);
  CHECK(team->credentials.username == "team");
  CHECK(find("quay.io", "other/x")->credentials.username == "quayall");

  auto local = find("localhost:5000", "x");
  REQUIRE(local);
  CHECK(local->credentials.password == "l:with:colons");

  auto gh = find("ghcr.io", "o/r");
  REQUIRE(gh);
  CHECK(gh->credentials.identity_token == "idtok");
  CHECK(gh->credentials.username.empty());

  CHECK_FALSE(find("example.com", "x"));

  // Within one file the most specific entry wins.
  CredentialLookup only_second("", {second});
  auto app = only_second.find("quay.io", "team/app");
  REQUIRE(app.ok());
  CHECK((*app)->credentials.username == "app");
}

TEST_CASE("CredentialLookup: --creds wins over every file") {
  TempDir dir;
  auto file = dir.write("auth.json", R"({"auths":{"ghcr.io":)" + auth_entry("file", "f") + "}}");
  CredentialLookup lookup("me:s3cret:x", {file});
  auto r = lookup.find("ghcr.io", "a/b");
  REQUIRE(r.ok());
  REQUIRE(*r);
  CHECK((*r)->credentials.username == "me");
  CHECK((*r)->credentials.password == "s3cret:x");
  CHECK((*r)->source == "--creds");
}

TEST_CASE("CredentialLookup: malformed files are errors naming the file, empty ones are not") {
  TempDir dir;
  auto bad = dir.write("bad.json", "{not json");
  auto r = CredentialLookup("", {bad}).find("ghcr.io", "a");
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains(bad));
  auto bad_auth = dir.write("badauth.json", R"({"auths":{"ghcr.io":{"auth":"bm9jb2xvbg=="}}})");  // "nocolon"
  auto r2 = CredentialLookup("", {bad_auth}).find("ghcr.io", "a");
  REQUIRE_FALSE(r2.ok());
  CHECK_THAT(r2.error().message, Catch::Contains("USER:PASSWORD"));
  auto empty = dir.write("empty.json", "\n");
  auto r3 = CredentialLookup("", {empty}).find("ghcr.io", "a");
  REQUIRE(r3.ok());
  CHECK_FALSE(*r3);
}

TEST_CASE("credential helpers: credHelpers, credsStore and the protocol") {
  TempDir dir;
  dir.write("bin/docker-credential-fake", kHelper, true);
  PathPrefix path(dir.path / "bin");
  auto log = dir.path / "bin" / "helper.log";

  SECTION("run_credential_helper") {
    auto hub = run_credential_helper("fake", "https://index.docker.io/v1/", std::chrono::seconds(10));
    REQUIRE(hub.ok());
    REQUIRE(*hub);
    CHECK((*hub)->username == "hubuser");
    CHECK((*hub)->password == "hubpass");

    auto token = run_credential_helper("fake", "ghcr.io", std::chrono::seconds(10));
    REQUIRE(token.ok());
    REQUIRE(*token);
    CHECK((*token)->identity_token == "refresh-me");
    CHECK((*token)->username.empty());

    auto none = run_credential_helper("fake", "unknown.example", std::chrono::seconds(10));
    REQUIRE(none.ok());
    CHECK_FALSE(*none);

    auto broken = run_credential_helper("fake", "broken.example", std::chrono::seconds(10));
    REQUIRE_FALSE(broken.ok());
    CHECK_THAT(broken.error().message, Catch::Contains("docker-credential-fake") &&
                                           Catch::Contains("exit status 3") &&
                                           Catch::Contains("keychain locked"));

    auto garbage = run_credential_helper("fake", "garbage.example", std::chrono::seconds(10));
    REQUIRE_FALSE(garbage.ok());
    CHECK_THAT(garbage.error().message, Catch::Contains("not a JSON object"));

    // The helper sleeps a minute: only the 300 ms timeout can end it sooner ("killed").
    auto slow = run_credential_helper("fake", "slow.example", std::chrono::milliseconds(300));
    REQUIRE_FALSE(slow.ok());
    CHECK_THAT(slow.error().message, Catch::Contains("killed"));

    auto missing = run_credential_helper("nosuchhelper", "ghcr.io", std::chrono::seconds(10));
    REQUIRE_FALSE(missing.ok());
    CHECK_THAT(missing.error().message, Catch::Contains("not found on PATH"));

    auto bad_name = run_credential_helper("../evil", "ghcr.io", std::chrono::seconds(10));
    REQUIRE_FALSE(bad_name.ok());

    // The server URL arrived on stdin, exactly.
    std::ifstream in(log);
    std::string first;
    std::getline(in, first);
    CHECK(first == "https://index.docker.io/v1/");
  }

  SECTION("credHelpers picks the helper per registry, credsStore is the fallback") {
    auto file = dir.write("config.json", R"({
        "auths": {"https://index.docker.io/v1/": {}, "quay.io": )" +
                                             auth_entry("quser", "qp") + R"(},
        "credHelpers": {"https://ghcr.io": "fake"},
        "credsStore": "fake"})");
    CredentialLookup lookup("", {file});
    auto gh = lookup.find("ghcr.io", "a/b");
    REQUIRE(gh.ok());
    REQUIRE(*gh);
    CHECK((*gh)->credentials.identity_token == "refresh-me");
    CHECK_THAT((*gh)->source, Catch::Contains("docker-credential-fake"));
    // Docker Hub's empty entry defers to the store, asked with Docker Hub's server URL.
    auto hub = lookup.find("docker.io", "library/debian");
    REQUIRE(hub.ok());
    REQUIRE(*hub);
    CHECK((*hub)->credentials.username == "hubuser");
    // An entry with credentials is used as is.
    auto quay = lookup.find("quay.io", "x/y");
    REQUIRE(quay.ok());
    CHECK((*quay)->credentials.username == "quser");
    // "credentials not found" from the store: anonymous.
    auto other = lookup.find("example.com", "x");
    REQUIRE(other.ok());
    CHECK_FALSE(*other);
  }
}
