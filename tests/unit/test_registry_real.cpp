// registry/: RegistryClient against a real registry — Debian's docker-registry (distribution
// 2.8.2) with a JWT token server behind the fault-injecting proxy of tests/integration
// (registry.py, faultproxy.py, tokenserver.py). A python driver starts them, uploads a small
// image and then applies faults the test asks for on stdin. The registry tools are required
// (docker-registry, htpasswd, python3-jwt, python3-cryptography: scripts/test installs them):
// without them the test fails, naming what is missing.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "ocifs/registry/registry_client.hpp"
#include "ocifs/util/sha256.hpp"

extern char** environ;

using namespace ocifs;
using namespace ocifs::registry;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

const char* kDriver = R"PY(
import json, os, random, sys
sys.path.insert(0, sys.argv[1])
import registry as R
try:
    R.require_registry_tools(tools=())
except Exception as e:  # common.Skip or common.Fail: either way this test cannot run
    print(json.dumps({'missing': str(e)}), flush=True)
    sys.exit(0)
with R.Registry(auth='token', user='smoke', password='smoke-secret') as reg, R.FaultProxy(reg) as px:
    c = reg.client()
    layer = random.Random(7).randbytes(3 * 1024 * 1024 + 123)
    ld = c.put_blob('smoke/app', layer)
    config = json.dumps({'architecture': 'amd64', 'os': 'linux', 'rootfs': {'type': 'layers', 'diff_ids': []}}).encode()
    cd = c.put_blob('smoke/app', config)
    manifest = json.dumps({'schemaVersion': 2, 'mediaType': R.OCI_MANIFEST,
        'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': cd, 'size': len(config)},
        'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest': ld, 'size': len(layer)}]}).encode()
    md = c.put_manifest('smoke/app', 'v1', manifest, R.OCI_MANIFEST)
    print(json.dumps({'proxy': px.host, 'creds': reg.creds, 'layer': ld, 'layer_size': len(layer),
                      'config': cd, 'config_bytes': config.decode(), 'manifest': md}), flush=True)
    for line in sys.stdin:
        cmd, _, arg = line.strip().partition(' ')
        if cmd == 'fault':
            kind, _, params = arg.partition(' ')
            px.add_fault(kind, **json.loads(params or '{}'))
            print('{}', flush=True)
        elif cmd == 'clear':
            px.clear_faults()
            print('{}', flush=True)
        elif cmd == 'counts':
            print(json.dumps({'cdn_requests': len(px.cdn_records),
                              'cdn_with_auth': sum(1 for r in px.cdn_records if r.get('auth')),
                              'tokens': reg.token_server.issued}), flush=True)
        else:
            break
)PY";

class Driver {
 public:
  Driver() {
    INFO("the registry driver needs /usr/bin/python3 (Debian package python3, installed by scripts/test)");
    REQUIRE(::access("/usr/bin/python3", X_OK) == 0);
    ::setenv("NO_PROXY", "*", 1);
    ::setenv("no_proxy", "*", 1);
    std::string tmpl = (fs::temp_directory_path() / "ocifs-realreg-XXXXXX").string();
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    auto script = dir_ / "driver.py";
    std::ofstream(script) << kDriver;
    int in[2], out[2];
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::string python = "/usr/bin/python3", path = script.string(),
                integration = fs::path(OCIFS_TEST_DATA).parent_path() / "integration";
    char* argv[] = {python.data(), path.data(), integration.data(), nullptr};
    REQUIRE(posix_spawn(&pid_, python.c_str(), &actions, nullptr, argv, environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    to_ = in[1];
    from_ = out[0];
    info = read_json(60'000);
  }
  ~Driver() {
    ::close(to_);  // EOF on stdin: the driver stops the registry and exits
    int status;
    for (int i = 0; i < 100 && ::waitpid(pid_, &status, WNOHANG) == 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    if (::waitpid(pid_, &status, WNOHANG) == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &status, 0);
    }
    ::close(from_);
    fs::remove_all(dir_);
  }

  json command(const std::string& line) {
    std::string l = line + "\n";
    REQUIRE(::write(to_, l.data(), l.size()) == static_cast<ssize_t>(l.size()));
    return read_json(30'000);
  }

  json info;

 private:
  json read_json(int timeout_ms) {
    std::string line;
    pollfd pfd{from_, POLLIN, 0};
    char c;
    while (::poll(&pfd, 1, timeout_ms) > 0 && ::read(from_, &c, 1) == 1 && c != '\n') line += c;
    auto j = json::parse(line, nullptr, false);
    if (j.is_discarded()) FAIL("registry driver said: " << line);
    return j;
  }

  fs::path dir_;
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
};

std::string bytes_of(std::span<const std::byte> s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

}  // namespace

TEST_CASE("registry against docker-registry + token server through the fault proxy") {
  Driver driver;
  if (driver.info.contains("missing")) {
    FAIL("cannot start the registry (scripts/test installs what it needs): "
         << driver.info["missing"].get<std::string>());
  }
  auto ref = oci::Reference::parse(driver.info["proxy"].get<std::string>() + "/smoke/app");
  REQUIRE(ref.ok());
  RegistryOptions opts;
  opts.creds = driver.info["creds"];
  opts.registries_conf = "/nonexistent/registries.conf";
  opts.certs_dirs = "";
  opts.read_deadline = std::chrono::milliseconds(3000);
  auto created = RegistryClient::create(*ref, opts);
  REQUIRE(created.ok());
  auto client = *created;
  std::string layer = driver.info["layer"], config = driver.info["config"];
  std::uint64_t layer_size = driver.info["layer_size"];

  // Manifest (distribution 2.8 refuses OCI manifests without the OCI type in Accept).
  auto m = client->get_manifest("v1");
  if (!m) FAIL(m.error().message);
  CHECK(m->media_type == "application/vnd.oci.image.manifest.v1+json");
  CHECK(m->digest == driver.info["manifest"]);
  REQUIRE(client->get_manifest(m->digest).ok());
  auto cfg = client->get_blob(config, 1 << 20);
  REQUIRE(cfg.ok());
  CHECK(*cfg == driver.info["config_bytes"]);

  // The whole layer, streamed, with the connection cut once in the middle.
  auto stream = [&](std::uint64_t from) {
    std::string data;
    auto r = client->stream_blob(layer, from, [&](std::span<const std::byte> c) -> Result<void> {
      data += bytes_of(c);
      return util::success();
    });
    if (!r) FAIL(r.error().message);
    return data;
  };
  driver.command("fault drop_mid_body");
  auto whole = stream(0);
  REQUIRE(whole.size() == layer_size);
  CHECK("sha256:" + util::sha256_hex(whole) == layer);
  CHECK(client->stats().retries >= 1);
  CHECK(stream(1'000'000) == whole.substr(1'000'000));

  auto read = [&](std::uint64_t off, std::size_t len) {
    std::vector<std::byte> buf(len);
    auto n = client->read_blob_range(layer, off, buf);
    if (!n) FAIL(n.error().message);
    return bytes_of(std::span(buf).first(*n));
  };
  CHECK(read(12345, 4096) == whole.substr(12345, 4096));
  CHECK(read(layer_size - 100, 4096) == whole.substr(layer_size - 100));

  // Redirects to a CDN on another host: never with Authorization; the signed URL expires after
  // 1 s and is resolved again.
  driver.command(R"(fault redirect_blobs_to_other_host {"count": null, "ttl": 1})");
  CHECK(read(500'000, 65536) == whole.substr(500'000, 65536));
  CHECK(read(2'000'000, 65536) == whole.substr(2'000'000, 65536));
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  CHECK(read(3'000'000, 1000) == whole.substr(3'000'000, 1000));
  auto counts = driver.command("counts");
  CHECK(counts["cdn_with_auth"] == 0);
  CHECK(counts["cdn_requests"] >= 3);
  driver.command("clear");
  // The cached CDN URL stays in use until it expires; then the registry serves blobs itself.
  std::this_thread::sleep_for(std::chrono::milliseconds(1300));
  CHECK(read(3'000'000, 1000) == whole.substr(3'000'000, 1000));

  // A server ignoring Range, an expired token, a rate limit: all still read right.
  driver.command("fault ignore_range");
  CHECK(read(777, 100) == whole.substr(777, 100));
  int tokens_before = driver.command("counts")["tokens"];
  driver.command("fault expire_token");
  CHECK(read(888, 100) == whole.substr(888, 100));
  CHECK(driver.command("counts")["tokens"] > tokens_before);
  driver.command(R"(fault status_429 {"retry_after": 1})");
  CHECK(read(999, 100) == whole.substr(999, 100));

  // A stalled answer: timed out (EIO at the FUSE edge) by the read deadline, naming digest and
  // offset. The stall outlasts the test (it ends when the proxy stops): only the deadline can
  // end the read, and a read that waited for the proxy to hang up would fail otherwise.
  driver.command(R"(fault stall {"seconds": 3600})");
  std::vector<std::byte> buf(100);
  auto stalled = client->read_blob_range(layer, 4321, buf);
  REQUIRE_FALSE(stalled.ok());
  CHECK(stalled.error().code == std::errc::timed_out);
  CHECK_THAT(stalled.error().message,
             Catch::Contains(layer) && Catch::Contains("offset 4321") && Catch::Contains("deadline"));
  driver.command("clear");
}
