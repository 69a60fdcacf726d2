// registry/: RegistryClient against a small fake registry on 127.0.0.1 (python3 http.server,
// written to a temp dir and started per test): Bearer and Basic auth, token refresh and scope
// widening, redirects to a "CDN" on another port (no Authorization there, signed URL cached and
// re-resolved), Range answers 206/200/416, dropped connections, 429/503 retries, deadlines,
// mirrors, concurrent readers. Tests talk only to servers they start and stop. /usr/bin/python3
// is required (scripts/test installs it): without it every case fails, saying so. Waits are
// proven by order (the server holds an answer until the test releases it), not by timing.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "ocifs/registry/http_client.hpp"
#include "ocifs/registry/registry_client.hpp"
#include "ocifs/registry/tls_settings.hpp"
#include "../../src/registry/registry_response.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/sha256.hpp"
#include "temp_dir.hpp"

extern char** environ;

using namespace ocifs;
using namespace ocifs::registry;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using ocifs::test::TempDir;

const char* kServer = R"PY(
import base64, hashlib, json, re, secrets, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit, parse_qs

cfg = json.loads(sys.argv[1])
lock = threading.Lock()
blobs, manifests, tokens, ports = {}, {}, {}, {}
state = dict(redirect=0, ranges=1, fail_5xx=0, ratelimit=0, retry_after='1', drop_after=-1, drop_every=-1,
             sig_gen=0, token_ttl=60, required_scope='', access_token=0,
             auth=cfg.get('auth', 'bearer'), user=cfg.get('user', ''), password=cfg.get('password', ''))
stats = dict(token_requests=0, token_scopes=[], token_auth=[], cdn_with_auth=0, cdn_requests=0,
             registry_blob_requests=0, range_ignored=0, manifest_requests=0, pings=0, blob_bytes=0,
             held_blobs=0, held_tokens=0, answers=[])
# /control/hold?what=blobs|tokens: such answers wait (sending nothing) until /control/release,
# at most 60 s; held_* count the requests that waited. A test that must see a client give up
# before an answer comes holds the answer rather than delaying it by some amount of time.
released = dict(blobs=threading.Event(), tokens=threading.Event())
for e in released.values():
    e.set()

def hold(what):
    if not released[what].is_set():
        with lock:
            stats['held_' + what] += 1
        released[what].wait(60)

def basic(user, password):
    return 'Basic ' + base64.b64encode(('%s:%s' % (user, password)).encode()).decode()

class Handler(BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def log_message(self, *a):
        pass
    def send_response(self, code, message=None):
        # The status of every manifest and blob request the registry answered, in order.
        if self.path.startswith('/v2/') and self.path != '/v2/':
            with lock:
                stats['answers'].append(code)
        super().send_response(code, message)
    def reply(self, code, body=b'', headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def error(self, code, errcode, msg, headers=()):
        body = json.dumps({'errors': [{'code': errcode, 'message': msg, 'detail': None}]}).encode()
        self.reply(code, body, [('Content-Type', 'application/json')] + list(headers))
    def serve_blob(self, data):
        rng = self.headers.get('Range')
        with lock:
            drop, state['drop_after'] = state['drop_after'], -1
            if drop < 0:
                drop = state['drop_every']  # every answer, for good
        headers = [('Content-Type', 'application/octet-stream')]
        m = re.match(r'bytes=(\d+)-(\d*)$', rng or '')
        if m and state['ranges']:
            start = int(m[1])
            end = min(int(m[2]) if m[2] else len(data) - 1, len(data) - 1)
            if start >= len(data):
                return self.reply(416, b'', [('Content-Range', 'bytes */%d' % len(data))])
            body, code = data[start:end + 1], 206
            headers.append(('Content-Range', 'bytes %d-%d/%d' % (start, end, len(data))))
        else:
            if rng:
                with lock:
                    stats['range_ignored'] += 1
            body, code = data, 200
        hold('blobs')
        if 0 <= drop < len(body):
            self.send_response(code)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header('Content-Length', str(len(body)))
            self.end_headers()
            self.wfile.write(body[:drop])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            with lock:
                stats['blob_bytes'] += drop
            return
        with lock:
            stats['blob_bytes'] += len(body)
        self.reply(code, body, headers)

    def authorized(self, path, name):
        auth = state['auth']
        h = self.headers.get('Authorization', '')
        if auth == 'none':
            return True
        if auth == 'basic':
            if h == basic(state['user'], state['password']):
                return True
            self.error(401, 'UNAUTHORIZED', 'authentication required', [('WWW-Authenticate', 'Basic realm="fake"')])
            return False
        tok = h[7:] if h.startswith('Bearer ') else None
        with lock:
            info = tokens.get(tok)
        need = 'repository:%s:pull' % name if name else None
        fresh = info is not None and time.time() - info[0] < state['token_ttl']
        ok = fresh and (need is None or (need in info[1] and (not state['required_scope'] or state['required_scope'] in info[1])))
        if ok:
            return True
        chal = 'Bearer realm="http://127.0.0.1:%d/token",service="fake-registry"' % ports['registry']
        if fresh and need and state['required_scope'] and state['required_scope'] not in info[1]:
            chal += ',scope="%s",error="insufficient_scope"' % state['required_scope']
        elif need:
            chal += ',scope="%s"' % need
        self.error(401, 'UNAUTHORIZED', 'authentication required', [('WWW-Authenticate', chal)])
        return False

    def token(self, q):
        hold('tokens')
        with lock:
            stats['token_requests'] += 1
            stats['token_scopes'].append(' '.join(q.get('scope', [])))
            stats['token_auth'].append(self.headers.get('Authorization', ''))
        if state['user'] and self.headers.get('Authorization') != basic(state['user'], state['password']):
            return self.reply(401, b'{"details":"incorrect username or password"}', [('Content-Type', 'application/json')])
        scopes = set()
        for s in q.get('scope', []):
            parts = s.split(':')
            scopes.add(s)
            if len(parts) >= 3:
                for a in parts[-1].split(','):
                    scopes.add(':'.join(parts[:-1]) + ':' + a)
        tok = secrets.token_hex(16)
        with lock:
            tokens[tok] = (time.time(), scopes)
        key = 'access_token' if state['access_token'] else 'token'
        body = {key: tok, 'expires_in': state['token_ttl'],
                'issued_at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
        self.reply(200, json.dumps(body).encode(), [('Content-Type', 'application/json')])

    def do_POST(self):
        u = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get('Content-Length', 0)))
        q = parse_qs(u.query)
        if u.path == '/token':
            form = parse_qs(body.decode())
            with lock:
                stats['token_requests'] += 1
                stats['token_scopes'].append(' '.join(form.get('scope', [''])[0].split()))
                stats['token_auth'].append('refresh_token' if 'refresh_token' in form else '')
            if (form.get('grant_type') != ['refresh_token'] or not cfg.get('refresh_token')
                    or form.get('refresh_token') != [cfg['refresh_token']] or form.get('service') != ['fake-registry']):
                return self.reply(401, b'{"error":"invalid_grant"}', [('Content-Type', 'application/json')])
            scopes = set(form.get('scope', [''])[0].split())
            tok = secrets.token_hex(16)
            with lock:
                tokens[tok] = (time.time(), scopes)
            return self.reply(200, json.dumps({'access_token': tok, 'expires_in': 300}).encode(),
                              [('Content-Type', 'application/json')])
        if u.path == '/control/blob':
            d = 'sha256:' + hashlib.sha256(body).hexdigest()
            blobs[d] = body
            return self.reply(200, d.encode())
        m = re.match(r'^/control/manifest/(.+)/([^/]+)$', u.path)
        if m:
            d = 'sha256:' + hashlib.sha256(body).hexdigest()
            entry = (q.get('type', [''])[0], body)
            manifests[(m[1], m[2])] = entry
            manifests[(m[1], d)] = entry
            return self.reply(200, d.encode())
        if u.path == '/control/set':
            for k, v in q.items():
                state[k] = int(v[0]) if re.match(r'^-?\d+$', v[0]) else v[0]
            return self.reply(200, b'ok')
        if u.path in ('/control/hold', '/control/release'):
            e = released[q['what'][0]]
            e.clear() if u.path == '/control/hold' else e.set()
            return self.reply(200, b'ok')
        if u.path == '/control/revoke':
            with lock:
                tokens.clear()
            return self.reply(200, b'ok')
        self.reply(404)

    def do_GET(self):
        u = urlsplit(self.path)
        path, q = u.path, parse_qs(u.query)
        if path == '/control/stats':
            with lock:
                return self.reply(200, json.dumps(stats).encode())
        if path == '/token':
            return self.token(q)
        if not path.startswith('/v2/'):
            return self.reply(404)
        m = re.match(r'^/v2/(.+)/(manifests|blobs)/([^/]+)$', path)
        name = m[1] if m else None
        if m:
            with lock:
                rl = state['ratelimit'] > 0
                f5 = not rl and state['fail_5xx'] > 0
                if rl:
                    state['ratelimit'] -= 1
                if f5:
                    state['fail_5xx'] -= 1
            if rl:
                return self.error(429, 'TOOMANYREQUESTS', 'slow down', [('Retry-After', str(state['retry_after']))])
            if f5:
                return self.error(503, 'UNAVAILABLE', 'try later')
        elif path == '/v2/':
            with lock:
                stats['pings'] += 1
        if not self.authorized(path, name):
            return
        if path == '/v2/':
            return self.reply(200, b'{}', [('Content-Type', 'application/json')])
        if not m:
            return self.error(404, 'NAME_UNKNOWN', 'no such thing')
        if m[2] == 'manifests':
            with lock:
                stats['manifest_requests'] += 1
            if 'application/vnd.oci.image.manifest.v1+json' not in self.headers.get('Accept', ''):
                return self.error(404, 'MANIFEST_UNKNOWN', 'OCI manifest found, but accept header does not support OCI manifests')
            entry = manifests.get((name, m[3]))
            if not entry:
                return self.error(404, 'MANIFEST_UNKNOWN', 'manifest unknown')
            d = 'sha256:' + hashlib.sha256(entry[1]).hexdigest()
            headers = [('Docker-Content-Digest', d)]
            if entry[0]:
                headers.append(('Content-Type', entry[0]))
            return self.reply(200, entry[1], headers)
        data = blobs.get(m[3])
        if data is None:
            return self.error(404, 'BLOB_UNKNOWN', 'blob unknown to registry')
        with lock:
            stats['registry_blob_requests'] += 1
        if state['redirect']:
            loc = 'http://127.0.0.1:%d/cdn/%s?sig=%d&X-Amz-Signature=secret' % (ports['cdn'], m[3], state['sig_gen'])
            return self.reply(307, b'', [('Location', loc)])
        self.serve_blob(data)

class Cdn(Handler):
    def do_GET(self):
        u = urlsplit(self.path)
        q = parse_qs(u.query)
        with lock:
            stats['cdn_requests'] += 1
        if 'Authorization' in self.headers:
            with lock:
                stats['cdn_with_auth'] += 1
            return self.reply(400, b'<Error>Authorization header not allowed</Error>', [('Content-Type', 'application/xml')])
        if int(q.get('sig', ['-1'])[0]) != state['sig_gen']:
            return self.reply(403, b'<Error>Request has expired</Error>', [('Content-Type', 'application/xml')])
        data = blobs.get(u.path[len('/cdn/'):])
        if data is None:
            return self.reply(404)
        self.serve_blob(data)

class Server(ThreadingHTTPServer):
    daemon_threads = True
    def handle_error(self, request, client_address):
        pass  # connections the tests cut on purpose

def start(handler, tls=None):
    srv = Server(('127.0.0.1', 0), handler)
    if tls:
        import ssl
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls['cert'], tls['key'])
        if tls.get('client_ca'):
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(tls['client_ca'])
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]

ports['registry'] = start(Handler, cfg.get('tls'))
ports['cdn'] = start(Cdn)
print(ports['registry'], ports['cdn'], flush=True)
threading.Event().wait()
)PY";

std::string bytes_of(std::span<const std::byte> s) {
  return std::string(reinterpret_cast<const char*>(s.data()), s.size());
}

std::string random_blob(std::size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

class FakeRegistry {
 public:
  explicit FakeRegistry(const json& config = json::object()) : tls_(config.contains("tls")) {
    control_tls_.verify = false;
    if (tls_ && config["tls"].contains("control_cert")) {  // for a server that wants client certificates
      control_tls_.client_cert = config["tls"]["control_cert"];
      control_tls_.client_key = config["tls"]["control_key"];
    }
    // Tests only talk to 127.0.0.1: never through a proxy from the environment.
    ::setenv("NO_PROXY", "*", 1);
    ::setenv("no_proxy", "*", 1);
    // scripts/test installs python3: without it this suite cannot run, and must say so (a pass
    // without a server would prove nothing).
    INFO("the fake registry needs /usr/bin/python3 (Debian package python3, installed by scripts/test)");
    REQUIRE(::access("/usr/bin/python3", X_OK) == 0);
    auto script = dir_.path / "fake_registry.py";
    std::ofstream(script) << kServer;
    int out[2];
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    std::string python = "/usr/bin/python3", cfg = config.dump(), path = script.string();
    char* argv[] = {python.data(), path.data(), cfg.data(), nullptr};
    REQUIRE(posix_spawn(&pid_, python.c_str(), &actions, nullptr, argv, environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    ::close(out[1]);
    std::string line;
    pollfd pfd{out[0], POLLIN, 0};
    char c;
    while (line.find('\n') == std::string::npos && ::poll(&pfd, 1, 10'000) > 0 && ::read(out[0], &c, 1) == 1)
      line += c;
    ::close(out[0]);
    REQUIRE(std::sscanf(line.c_str(), "%d %d", &port_, &cdn_port_) == 2);
  }
  ~FakeRegistry() {
    ::kill(pid_, SIGTERM);
    int status;
    ::waitpid(pid_, &status, 0);
  }

  std::string host() const { return fmt::format("127.0.0.1:{}", port_); }
  oci::Reference ref(const std::string& repo = "test/repo") const {
    auto r = oci::Reference::parse(host() + "/" + repo);
    REQUIRE(r.ok());
    return *r;
  }
  RegistryOptions options() const {
    RegistryOptions o;
    o.plain_http = true;
    o.registries_conf = (dir_.path / "no-registries.conf").string();
    o.authfile = (dir_.path / "no-auth.json").string();
    o.certs_dirs = "";
    return o;
  }
  std::string post(const std::string& path, const std::string& body = "") {
    HttpRequest req;
    req.method = "POST";
    req.url = fmt::format("{}://{}{}", tls_ ? "https" : "http", host(), path);
    req.tls = &control_tls_;
    req.body = body;
    auto r = http_.perform(req);
    REQUIRE(r.transport_ok());
    REQUIRE(r.status == 200);
    return r.body;
  }
  std::string put_blob(const std::string& data) { return post("/control/blob", data); }
  std::string put_manifest(const std::string& repo, const std::string& tag, const std::string& type,
                           const std::string& bytes) {
    return post(fmt::format("/control/manifest/{}/{}?type={}", repo, tag, type), bytes);
  }
  void set(const std::string& key, const std::string& value) {
    post(fmt::format("/control/set?{}={}", key, value));
  }
  // Answers of `what` ("blobs", "tokens") wait, sending nothing, until release() (at most 60 s).
  void hold(const std::string& what) { post("/control/hold?what=" + what); }
  void release(const std::string& what) { post("/control/release?what=" + what); }
  // Until the server holds `count` requests of `what` (stats()["held_" + what]); false after a
  // minute without. Never throws for that, so that a test can still release what it holds.
  bool wait_held(const std::string& what, int count = 1) {
    for (int i = 0; i < 3000; ++i) {
      if (stats()["held_" + what] >= count) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }
  json stats() {
    HttpRequest req;
    req.url = fmt::format("{}://{}/control/stats", tls_ ? "https" : "http", host());
    req.tls = &control_tls_;
    auto r = http_.perform(req);
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  }

 private:
  TempDir dir_;
  bool tls_ = false;
  TlsSettings control_tls_;
  HttpClient http_{"ocifs-test"};
  pid_t pid_ = -1;
  int port_ = 0, cdn_port_ = 0;
};

std::shared_ptr<RegistryClient> make_client(const FakeRegistry& reg, RegistryOptions options,
                                            const std::string& repo = "test/repo") {
  auto c = RegistryClient::create(reg.ref(repo), std::move(options));
  if (!c) FAIL(c.error().message);
  return *c;
}

const std::string kOciManifestType = "application/vnd.oci.image.manifest.v1+json";

std::string manifest_for(const std::string& config_digest, std::size_t config_size) {
  return json{{"schemaVersion", 2},
              {"mediaType", kOciManifestType},
              {"config",
               {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                {"digest", config_digest},
                {"size", config_size}}},
              {"layers", json::array()}}
      .dump();
}

}  // namespace

TEST_CASE("registry: Bearer flow — ping, anonymous token, manifest by tag and digest, config blob") {
  FakeRegistry reg;
  std::string config = R"({"architecture":"amd64","os":"linux"})";
  auto config_digest = reg.put_blob(config);
  auto manifest = manifest_for(config_digest, config.size());
  auto manifest_digest = reg.put_manifest("test/repo", "v1", kOciManifestType, manifest);

  auto client = make_client(reg, reg.options());
  auto m = client->get_manifest("v1");
  if (!m) FAIL(m.error().message);
  CHECK(m->media_type == kOciManifestType);
  CHECK(m->digest == manifest_digest);
  CHECK(m->bytes == manifest);
  auto by_digest = client->get_manifest(manifest_digest);
  REQUIRE(by_digest.ok());
  CHECK(by_digest->bytes == manifest);

  auto blob = client->get_blob(config_digest, 1 << 20);
  if (!blob) FAIL(blob.error().message);
  CHECK(*blob == config);

  // Too small a limit is refused, without reading the whole blob.
  auto small = client->get_blob(config_digest, 4);
  REQUIRE_FALSE(small.ok());
  CHECK(small.error().code == std::errc::file_too_large);

  auto s = reg.stats();
  CHECK(s["pings"] == 1);
  CHECK(s["token_requests"] == 1);  // one token, cached for every request
  CHECK(s["token_scopes"][0] == "repository:test/repo:pull");
  CHECK(s["token_auth"][0] == "");  // anonymous
  CHECK(client->stats().requests >= 5);
  // The blob once whole, and the first chunk of the refused one (received before it was refused).
  CHECK(client->stats().blob_bytes == 2 * config.size());
  CHECK(client->describe() == reg.host() + "/test/repo");
}

TEST_CASE("registry: manifests — media type from the body, schema 1, digest mismatch, unknown") {
  FakeRegistry reg(json{{"auth", "none"}});
  auto client = make_client(reg, reg.options());

  // No Content-Type: the document's mediaType decides.
  auto index = json{{"schemaVersion", 2},
                    {"mediaType", "application/vnd.oci.image.index.v1+json"},
                    {"manifests", json::array()}}
                   .dump();
  reg.put_manifest("test/repo", "idx", "", index);
  auto m = client->get_manifest("idx");
  REQUIRE(m.ok());
  CHECK(m->media_type == "application/vnd.oci.image.index.v1+json");

  // application/json without mediaType: guessed from the fields.
  reg.put_manifest("test/repo", "guess", "application/json", R"({"schemaVersion":2,"manifests":[]})");
  auto g = client->get_manifest("guess");
  REQUIRE(g.ok());
  CHECK(g->media_type == "application/vnd.oci.image.index.v1+json");

  reg.put_manifest("test/repo", "old", "application/vnd.docker.distribution.manifest.v1+prettyjws",
                   R"({"schemaVersion":1,"name":"test/repo"})");
  auto old = client->get_manifest("old");
  REQUIRE_FALSE(old.ok());
  CHECK(old.error().code == std::errc::not_supported);
  CHECK_THAT(old.error().message, Catch::Contains("schema 1") && Catch::Contains("old"));
  reg.put_manifest("test/repo", "old2", "application/json", R"({"schemaVersion":1,"fsLayers":[]})");
  CHECK_THAT(client->get_manifest("old2").error().message, Catch::Contains("schema 1"));

  auto missing = client->get_manifest("nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == std::errc::no_such_file_or_directory);
  CHECK_THAT(missing.error().message, Catch::Contains("MANIFEST_UNKNOWN: manifest unknown") &&
                                          Catch::Contains(reg.host() + "/test/repo") &&
                                          Catch::Contains("HTTP 404"));

  auto bad_tag = client->get_manifest("a/../b");
  REQUIRE_FALSE(bad_tag.ok());
  CHECK(bad_tag.error().code == std::errc::invalid_argument);

  // A by-digest pull whose bytes hash differently is refused.
  std::string other =
      R"({"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]})";
  auto real = reg.put_manifest("test/repo", "x", kOciManifestType, other);
  std::string fake = "sha256:" + std::string(64, 'a');
  reg.put_manifest("test/repo", fake, kOciManifestType, other);  // served under a digest it does not have
  auto mismatch = client->get_manifest(fake);
  REQUIRE_FALSE(mismatch.ok());
  CHECK_THAT(mismatch.error().message, Catch::Contains(real));
}

TEST_CASE("registry: Basic auth with --creds; rejected credentials never show the password") {
  FakeRegistry reg(json{{"auth", "basic"}, {"user", "alice"}, {"password", "pa55:word"}});
  auto digest = reg.put_blob("hello");
  auto opts = reg.options();
  opts.creds = "alice:pa55:word";
  auto client = make_client(reg, opts);
  auto blob = client->get_blob(digest, 100);
  if (!blob) FAIL(blob.error().message);
  CHECK(*blob == "hello");

  opts.creds = "alice:wrong-secret";
  auto bad = make_client(reg, opts);
  auto r = bad->get_blob(digest, 100);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == std::errc::permission_denied);
  CHECK_THAT(r.error().message, Catch::Contains("HTTP 401") && Catch::Contains("--creds") &&
                                    Catch::Contains("not accepted") && Catch::Contains(digest));
  CHECK_THAT(r.error().message, !Catch::Contains("wrong-secret"));

  auto anonymous = make_client(reg, reg.options());
  auto a = anonymous->get_blob(digest, 100);
  REQUIRE_FALSE(a.ok());
  CHECK_THAT(a.error().message, Catch::Contains("no credentials found"));
}

TEST_CASE("registry: token server with credentials from an auth file; access_token; refused credentials") {
  FakeRegistry reg(json{{"auth", "bearer"}, {"user", "bob"}, {"password", "s3cret"}});
  auto digest = reg.put_blob("payload");
  reg.set("access_token", "1");
  TempDir dir;
  auto authfile = (dir.path / "auth.json").string();
  std::ofstream(authfile)
      << json{{"auths", {{"http://" + reg.host() + "/v2/", {{"auth", "Ym9iOnMzY3JldA=="}}}}}}.dump();
  auto opts = reg.options();
  opts.authfile = authfile;
  auto client = make_client(reg, opts);
  auto blob = client->get_blob(digest, 100);
  if (!blob) FAIL(blob.error().message);
  CHECK(*blob == "payload");
  auto s = reg.stats();
  CHECK(s["token_auth"].back() == "Basic Ym9iOnMzY3JldA==");

  opts.creds = "bob:nope";
  auto refused = make_client(reg, opts)->get_blob(digest, 100);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == std::errc::permission_denied);
  CHECK_THAT(refused.error().message, Catch::Contains("token server") && Catch::Contains("--creds"));
  CHECK_THAT(refused.error().message, !Catch::Contains("nope"));
}

TEST_CASE("registry: an identity token is exchanged with an OAuth2 refresh-token POST") {
  FakeRegistry reg(
      json{{"auth", "bearer"}, {"user", "dan"}, {"password", "pw"}, {"refresh_token", "rt-123"}});
  auto digest = reg.put_blob("oauth");
  TempDir dir;
  auto authfile = (dir.path / "auth.json").string();
  std::ofstream(authfile) << json{{"auths", {{reg.host(), {{"identitytoken", "rt-123"}}}}}}.dump();
  auto opts = reg.options();
  opts.authfile = authfile;
  auto blob = make_client(reg, opts)->get_blob(digest, 100);
  if (!blob) FAIL(blob.error().message);
  CHECK(*blob == "oauth");
  auto s = reg.stats();
  CHECK(s["token_auth"].back() == "refresh_token");
  CHECK(s["token_scopes"].back() == "repository:test/repo:pull");

  std::ofstream(authfile) << json{{"auths", {{reg.host(), {{"identitytoken", "rt-wrong"}}}}}}.dump();
  auto refused = make_client(reg, opts)->get_blob(digest, 100);
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(refused.error().message, Catch::Contains("refused") && Catch::Contains(authfile));
  CHECK_THAT(refused.error().message, !Catch::Contains("rt-wrong"));
}

TEST_CASE(
    "registry: tokens are refreshed on expiry, on revocation mid-read, and widened on insufficient_scope") {
  FakeRegistry reg;
  auto data = random_blob(100'000, 1);
  auto digest = reg.put_blob(data);
  auto client = make_client(reg, reg.options());
  std::vector<std::byte> buf(1000);
  REQUIRE(client->read_blob_range(digest, 0, buf).ok());
  CHECK(reg.stats()["token_requests"] == 1);

  // Revoked (as if expired early on the server): the 401 fetches a new token and the read succeeds.
  reg.post("/control/revoke");
  auto n = client->read_blob_range(digest, 5000, buf);
  if (!n) FAIL(n.error().message);
  CHECK(bytes_of(std::span(buf)) == data.substr(5000, 1000));
  CHECK(reg.stats()["token_requests"] == 2);

  // A short-lived token is refreshed before it expires, without a 401 round trip.
  reg.set("token_ttl", "2");
  reg.post("/control/revoke");
  REQUIRE(client->read_blob_range(digest, 0, buf).ok());
  int before = reg.stats()["token_requests"];
  auto answered = reg.stats()["answers"].size();
  // Past the refresh point (a quarter of the lifetime early, less the second of issued_at's
  // rounding): the next read refreshes first. Later is fine too: the refresh is still first.
  std::this_thread::sleep_for(std::chrono::milliseconds(1700));
  REQUIRE(client->read_blob_range(digest, 0, buf).ok());
  CHECK(reg.stats()["token_requests"] == before + 1);
  auto answers = reg.stats()["answers"].get<std::vector<int>>();
  CHECK(std::count(answers.begin() + static_cast<std::ptrdiff_t>(answered), answers.end(), 401) == 0);

  // insufficient_scope: the next token asks for both scopes.
  reg.set("token_ttl", "60");
  reg.set("required_scope", "repository:other/repo:pull");
  reg.post("/control/revoke");
  auto w = client->read_blob_range(digest, 10, buf);
  if (!w) FAIL(w.error().message);
  auto scopes = reg.stats()["token_scopes"];
  CHECK(scopes.back() == "repository:test/repo:pull repository:other/repo:pull");
}

TEST_CASE("registry: redirects to a CDN — no Authorization there, URL cached, expired URL re-resolved") {
  FakeRegistry reg;
  auto data = random_blob(300'000, 2);
  auto digest = reg.put_blob(data);
  reg.set("redirect", "1");
  auto client = make_client(reg, reg.options());

  std::vector<std::byte> buf(4096);
  for (std::uint64_t off : {0u, 4096u, 100'000u, 299'000u}) {
    auto n = client->read_blob_range(digest, off, buf);
    if (!n) FAIL(n.error().message);
    auto expect = data.substr(off, 4096);
    CHECK(*n == expect.size());
    CHECK(bytes_of(std::span(buf).first(*n)) == expect);
  }
  auto s = reg.stats();
  CHECK(s["cdn_with_auth"] == 0);
  CHECK(s["registry_blob_requests"] == 1);  // resolved once, then straight to the CDN
  CHECK(s["cdn_requests"] == 4);

  // The signed URL expires: 403 from the CDN, the registry is asked again, the read succeeds.
  reg.set("sig_gen", "1");
  auto n = client->read_blob_range(digest, 7, buf);
  if (!n) FAIL(n.error().message);
  CHECK(bytes_of(std::span(buf)) == data.substr(7, 4096));
  CHECK(reg.stats()["registry_blob_requests"] == 2);

  // Streaming and whole small blobs follow the same path.
  std::string streamed;
  auto st = client->stream_blob(digest, 0, [&](std::span<const std::byte> chunk) -> Result<void> {
    streamed += bytes_of(chunk);
    return util::success();
  });
  if (!st) FAIL(st.error().message);
  CHECK(streamed == data);
  auto whole = client->get_blob(digest, 1 << 20);
  REQUIRE(whole.ok());
  CHECK(reg.stats()["cdn_with_auth"] == 0);
}

TEST_CASE("registry: range answers — 206, short at the end, 416 past it, 200 ignoring Range") {
  FakeRegistry reg(json{{"auth", "none"}});
  auto data = random_blob(50'000, 3);
  auto digest = reg.put_blob(data);
  auto client = make_client(reg, reg.options());
  std::vector<std::byte> buf(10'000);

  auto n = client->read_blob_range(digest, 45'000, buf);
  REQUIRE(n.ok());
  CHECK(*n == 5'000);  // short only at the end
  CHECK(bytes_of(std::span(buf).first(5'000)) == data.substr(45'000));
  auto past = client->read_blob_range(digest, 50'000, buf);
  REQUIRE(past.ok());
  CHECK(*past == 0);
  auto far = client->read_blob_range(digest, 1'000'000, buf);
  REQUIRE(far.ok());
  CHECK(*far == 0);
  std::vector<std::byte> none;
  CHECK(*client->read_blob_range(digest, 0, none) == 0);

  reg.set("ranges", "0");
  auto whole = client->read_blob_range(digest, 20'000, buf);
  REQUIRE(whole.ok());
  CHECK(*whole == buf.size());
  CHECK(bytes_of(std::span(buf)) == data.substr(20'000, 10'000));
  auto tail = client->read_blob_range(digest, 48'000, buf);
  REQUIRE(tail.ok());
  CHECK(*tail == 2'000);
  CHECK(reg.stats()["range_ignored"] == 2);

  // stream_blob from an offset, with the server ignoring Range: skipped to the offset.
  std::string streamed;
  REQUIRE(client
              ->stream_blob(digest, 30'000,
                            [&](std::span<const std::byte> c) -> Result<void> {
                              streamed += bytes_of(c);
                              return util::success();
                            })
              .ok());
  CHECK(streamed == data.substr(30'000));

  auto unknown = client->read_blob_range("sha256:" + std::string(64, 'b'), 0, buf);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code == std::errc::io_error);
  CHECK_THAT(unknown.error().message, Catch::Contains("BLOB_UNKNOWN") && Catch::Contains("offset 0"));
}

TEST_CASE("registry: dropped connections resume with Range from the byte reached") {
  FakeRegistry reg(json{{"auth", "none"}});
  auto data = random_blob(2'000'000, 4);
  auto digest = reg.put_blob(data);
  auto client = make_client(reg, reg.options());

  reg.set("drop_after", "700000");
  std::string streamed;
  auto st = client->stream_blob(digest, 0, [&](std::span<const std::byte> c) -> Result<void> {
    streamed += bytes_of(c);
    return util::success();
  });
  if (!st) FAIL(st.error().message);
  CHECK(streamed == data);
  CHECK(client->stats().retries >= 1);

  reg.set("drop_after", "3000");
  std::vector<std::byte> buf(100'000);
  auto n = client->read_blob_range(digest, 123'456, buf);
  if (!n) FAIL(n.error().message);
  CHECK(*n == buf.size());
  CHECK(bytes_of(std::span(buf)) == data.substr(123'456, 100'000));

  // A sink error stops the stream and is returned as is.
  auto stopped = client->stream_blob(digest, 0, [&](std::span<const std::byte>) -> Result<void> {
    return make_error(std::errc::no_space_on_device, "cache full");
  });
  REQUIRE_FALSE(stopped.ok());
  CHECK(stopped.error().message == "cache full");
}

TEST_CASE("registry: 429 with Retry-After and 503 are retried; exhausted retries name the status") {
  FakeRegistry reg(json{{"auth", "none"}});
  auto digest = reg.put_blob("retry me");
  auto opts = reg.options();
  opts.max_attempts = 3;
  auto client = make_client(reg, opts);

  using Answers = std::vector<int>;
  reg.set("ratelimit", "1");
  auto start = std::chrono::steady_clock::now();
  auto r = client->get_blob(digest, 100);
  REQUIRE(r.ok());
  CHECK(reg.stats()["answers"].get<Answers>() == Answers{429, 200});  // retried after the 429
  CHECK(client->stats().retries == 1);
  // Retry-After: 1 was waited for. A lower bound only (a loaded machine can only make it longer).
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(900));
  reg.set("fail_5xx", "2");
  REQUIRE(client->get_blob(digest, 100).ok());
  CHECK(reg.stats()["answers"].get<Answers>() == Answers{429, 200, 503, 503, 200});
  CHECK(client->stats().retries == 3);

  reg.set("fail_5xx", "5");
  auto failed = client->get_blob(digest, 100);
  REQUIRE_FALSE(failed.ok());
  CHECK_THAT(failed.error().message, Catch::Contains("HTTP 503") && Catch::Contains("UNAVAILABLE") &&
                                         Catch::Contains("after 3 attempts"));
  reg.set("fail_5xx", "0");

  // A Retry-After longer than the read deadline fails at once, saying so: no retry is made (and
  // none is waited for: RetryBudget refuses such a wait without sleeping, test_registry_auth).
  reg.set("ratelimit", "1");
  reg.set("retry_after", "3600");
  std::vector<std::byte> buf(4);
  auto answers_before = reg.stats()["answers"].size();
  auto retries_before = client->stats().retries;
  auto limited = client->read_blob_range(digest, 0, buf);
  REQUIRE_FALSE(limited.ok());
  CHECK_THAT(limited.error().message,
             Catch::Contains("HTTP 429") && Catch::Contains("rate limited") && Catch::Contains("3600"));
  auto answers = reg.stats()["answers"].get<Answers>();
  CHECK(answers.size() == answers_before + 1);
  CHECK(answers.back() == 429);
  CHECK(client->stats().retries == retries_before);
}

TEST_CASE("registry: answers cut every 64 KiB still deliver whole ranges and streams (progress is no failure)") {
  FakeRegistry reg(json{{"auth", "none"}});
  auto data = random_blob(3'000'000, 11);
  auto digest = reg.put_blob(data);
  auto opts = reg.options();
  opts.max_attempts = 3;  // 46 cuts per blob: far more than the attempts allowed in a row
  auto client = make_client(reg, opts);
  reg.set("drop_every", "65536");

  std::vector<std::byte> buf(2'500'000);
  auto n = client->read_blob_range(digest, 100'000, buf);
  if (!n) FAIL(n.error().message);
  CHECK(*n == buf.size());
  CHECK(bytes_of(std::span(buf)) == data.substr(100'000, buf.size()));

  std::string streamed;
  auto st = client->stream_blob(digest, 0, [&](std::span<const std::byte> c) -> Result<void> {
    streamed += bytes_of(c);
    return util::success();
  });
  if (!st) FAIL(st.error().message);
  CHECK(streamed == data);
  CHECK(client->stats().retries >= 80);  // every cut was resumed
}

TEST_CASE("registry: a server that cuts every answer after a few bytes is given up on") {
  FakeRegistry reg(json{{"auth", "none"}});
  auto data = random_blob(1'000'000, 12);
  auto digest = reg.put_blob(data);
  auto opts = reg.options();
  opts.max_attempts = 3;
  auto client = make_client(reg, opts);
  std::vector<std::byte> buf(100);
  REQUIRE(client->read_blob_range(digest, 0, buf).ok());  // ping done
  reg.set("drop_every", "100");
  std::vector<std::byte> big(500'000);
  auto n = client->read_blob_range(digest, 0, big);
  REQUIRE_FALSE(n.ok());
  CHECK_THAT(n.error().message, Catch::Contains(digest) && Catch::Contains("after 3 attempts"));
  auto st = client->stream_blob(digest, 0, [](std::span<const std::byte>) -> Result<void> { return util::success(); });
  REQUIRE_FALSE(st.ok());
  CHECK_THAT(st.error().message, Catch::Contains("after 3 attempts"));
}

TEST_CASE("registry: a token fetch in flight holds up another request only until that request's deadline") {
  FakeRegistry reg;  // bearer auth
  auto digest = reg.put_blob(random_blob(10'000, 13));
  auto opts = reg.options();
  opts.read_deadline = std::chrono::seconds(20);
  auto client = make_client(reg, opts);
  reg.hold("tokens");  // the token server answers only when released
  std::vector<std::byte> first_buf(100);
  Result<std::size_t> first = std::size_t{0};
  std::atomic<bool> first_done{false};
  std::thread fetching([&] {
    first = client->read_blob_range(digest, 0, first_buf);
    first_done = true;
  });
  CHECK(reg.wait_held("tokens"));  // the first read's token request is out, and held

  std::vector<std::byte> buf(100);
  Result<std::size_t> second = std::size_t{0};
  {
    util::DeadlineScope scope(std::chrono::steady_clock::now() + std::chrono::milliseconds(500));
    second = client->read_blob_range(digest, 100, buf);
  }
  // The second read gave up while the token was still held: its deadline ended its wait, not the
  // token's arrival.
  CHECK_FALSE(first_done);
  CHECK(reg.stats()["token_requests"] == 0);
  reg.release("tokens");
  fetching.join();
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().code == std::errc::timed_out);
  if (!first) FAIL(first.error().message);  // the fetch itself went on, and its read succeeded
  CHECK(reg.stats()["token_requests"] == 1);
}

TEST_CASE("registry: a range read that outlives read_deadline fails, timed out, naming digest and offset") {
  FakeRegistry reg(json{{"auth", "none"}});
  auto digest = reg.put_blob(random_blob(10'000, 5));
  auto opts = reg.options();
  opts.read_deadline = std::chrono::milliseconds(800);
  auto client = make_client(reg, opts);
  std::vector<std::byte> buf(100);
  REQUIRE(client->read_blob_range(digest, 0, buf).ok());  // ping done, connection warm
  auto before = reg.stats();
  reg.hold("blobs");  // only the deadline can end the read (the server answers after 60 s)
  auto r = client->read_blob_range(digest, 4242, buf);
  auto held = reg.stats();
  reg.release("blobs");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == std::errc::timed_out);  // EIO at the FUSE edge, counted as a timeout
  CHECK_THAT(r.error().message,
             Catch::Contains(digest) && Catch::Contains("offset 4242") && Catch::Contains("deadline"));
  // The request reached the server, which had sent nothing when the read gave up.
  CHECK(held["held_blobs"] == 1);
  CHECK(held["blob_bytes"] == before["blob_bytes"]);
  CHECK(held["answers"].size() == before["answers"].size());
}

TEST_CASE("registry: a stream cancelled while the server sends nothing ends without an answer") {
  FakeRegistry reg(json{{"auth", "none"}});
  auto digest = reg.put_blob(random_blob(10'000, 6));
  auto client = make_client(reg, reg.options());
  std::vector<std::byte> buf(100);
  REQUIRE(client->read_blob_range(digest, 0, buf).ok());  // ping done, connection warm
  auto before = reg.stats();
  reg.hold("blobs");  // only the cancel can end the stream (the server answers after 60 s)
  std::atomic<bool> cancel{false};
  std::uint64_t received = 0;
  Result<void> r = util::success();
  std::thread streaming([&] {
    r = client->stream_blob(
        digest, 0,
        [&](std::span<const std::byte> data) -> Result<void> {
          received += data.size();
          return util::success();
        },
        [&] { return cancel.load(); });
  });
  CHECK(reg.wait_held("blobs"));  // the stream's request is at the server, unanswered
  cancel = true;
  streaming.join();
  auto after = reg.stats();
  reg.release("blobs");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == std::errc::operation_canceled);
  CHECK_THAT(r.error().message, Catch::Contains(digest) && Catch::Contains("cancelled"));
  CHECK(received == 0);
  // Ended by the cancel: the server was still holding its answer.
  CHECK(after["answers"].size() == before["answers"].size());
  CHECK(after["blob_bytes"] == before["blob_bytes"]);
}

TEST_CASE("registry: loopback falls back from HTTPS to HTTP; mirrors are tried in order") {
  FakeRegistry reg(json{{"auth", "none"}});
  auto digest = reg.put_blob("mirrored");
  reg.put_manifest("test/repo", "t", kOciManifestType, manifest_for(digest, 8));

  auto opts = reg.options();
  opts.plain_http = false;  // 127.0.0.1: HTTPS fails (plain server), HTTP is used
  auto client = make_client(reg, opts);
  auto m = client->get_manifest("t");
  if (!m) FAIL(m.error().message);

  // A mirror on a closed port, then one without the image, then the primary.
  TempDir dir;
  auto conf = (dir.path / "registries.conf").string();
  std::ofstream(conf) << fmt::format(R"(
[[registry]]
prefix = "{0}/test"
[[registry.mirror]]
location = "127.0.0.1:1/closed"
[[registry.mirror]]
location = "{0}/empty-mirror"
)",
                                     reg.host());
  opts = reg.options();
  opts.registries_conf = conf;
  opts.max_attempts = 2;
  auto mirrored = make_client(reg, opts);
  auto mm = mirrored->get_manifest("t");
  if (!mm) FAIL(mm.error().message);
  auto blob = mirrored->get_blob(digest, 100);
  REQUIRE(blob.ok());
  CHECK(*blob == "mirrored");

  // When all fail, the primary's error is reported and the others are named.
  auto missing = mirrored->get_manifest("missing");
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.error().message, Catch::Contains("MANIFEST_UNKNOWN") && Catch::Contains("tried") &&
                                          Catch::Contains("127.0.0.1:1/closed/repo"));

  // A blocked registry is refused when the client is created.
  std::ofstream(conf) << fmt::format("[[registry]]\nprefix = \"{}\"\nblocked = true\n", reg.host());
  auto blocked = RegistryClient::create(reg.ref(), opts);
  REQUIRE_FALSE(blocked.ok());
  CHECK_THAT(blocked.error().message, Catch::Contains("blocked"));
}

TEST_CASE("registry: many threads reading ranges at once share one client") {
  FakeRegistry reg;
  auto data = random_blob(1'000'000, 6);
  auto digest = reg.put_blob(data);
  reg.set("redirect", "1");
  auto client = make_client(reg, reg.options());
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<std::byte> buf(8192);
      for (int i = 0; i < 25; ++i) {
        std::uint64_t off = rng() % data.size();
        auto n = client->read_blob_range(digest, off, buf);
        if (!n || bytes_of(std::span(buf).first(*n)) != data.substr(off, 8192)) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
  auto s = reg.stats();
  CHECK(s["token_requests"] == 1);
  CHECK(s["pings"] == 1);
  CHECK(s["cdn_with_auth"] == 0);
}

TEST_CASE("registry: debug and trace logs never show credentials, tokens or URL signatures") {
  std::ostringstream log;
  auto previous = spdlog::default_logger();
  auto logger =
      std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::ostream_sink_mt>(log));
  logger->set_level(spdlog::level::trace);
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::trace);
  {
    FakeRegistry basic(json{{"auth", "basic"}, {"user", "carol"}, {"password", "hunter2hunter2"}});
    auto digest = basic.put_blob(random_blob(5000, 9));
    basic.set("redirect", "1");
    auto opts = basic.options();
    opts.creds = "carol:hunter2hunter2";
    std::vector<std::byte> buf(100);
    auto r = make_client(basic, opts)->read_blob_range(digest, 10, buf);
    if (!r) FAIL(r.error().message);

    FakeRegistry bearer;
    auto d2 = bearer.put_blob("x");
    REQUIRE(make_client(bearer, bearer.options())->get_blob(d2, 10).ok());
  }
  spdlog::set_default_logger(previous);
  spdlog::set_level(spdlog::level::warn);
  auto text = log.str();
  CHECK_THAT(text, Catch::Contains("Authorization: <redacted>"));
  CHECK_THAT(text, Catch::Contains("?<redacted>"));
  CHECK_THAT(text, Catch::Contains("GET http://127.0.0.1:"));  // the request summaries are there
  CHECK_THAT(text, !Catch::Contains("hunter2"));
  CHECK_THAT(text, !Catch::Contains("Y2Fyb2w6aHVudGVyMmh1bnRlcjI="));  // base64 of carol:hunter2hunter2
  CHECK_THAT(text, !Catch::Contains("X-Amz-Signature=secret"));
  CHECK_THAT(text, !Catch::Contains("Authorization: Bearer"));
  CHECK_THAT(text, Catch::Contains("WWW-Authenticate: Bearer realm="));  // challenges are no secret
  CHECK_THAT(text, !Catch::Contains("\"token\""));
}

TEST_CASE("registry: TLS — certs.d CAs and client certificates, --tls-verify=false") {
  INFO("the test CA is made with /usr/bin/openssl (Debian package openssl, installed by scripts/test)");
  REQUIRE(::access("/usr/bin/openssl", X_OK) == 0);
  TempDir pki;
  auto p = [&](const char* name) { return (pki.path / name).string(); };
  auto cmd = fmt::format(
      "cd '{0}' && exec >openssl.log 2>&1 && "
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj '/CN=ocifs test "
      "CA' && "
      "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj '/CN=127.0.0.1' && "
      "printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n' > ext && "
      "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 "
      "-extfile ext && "
      "openssl req -newkey rsa:2048 -nodes -keyout client.key -out client.csr -subj '/CN=ocifs client' && "
      "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.cert -days 2",
      pki.path.string());
  REQUIRE(std::system(cmd.c_str()) == 0);

  FakeRegistry reg(json{{"auth", "none"}, {"tls", {{"cert", p("server.crt")}, {"key", p("server.key")}}}});
  auto digest = reg.put_blob("over tls");
  auto opts = reg.options();
  opts.plain_http = false;
  opts.max_attempts = 2;

  // No CA for it: the certificate is refused (and the plain-HTTP fallback of loopback fails too).
  auto untrusted = make_client(reg, opts)->get_blob(digest, 100);
  REQUIRE_FALSE(untrusted.ok());
  CHECK_THAT(untrusted.error().message, Catch::Contains("certificate") && Catch::Contains(reg.host()));

  // certs.d/HOST:PORT/ca.crt is trusted in addition to the system CAs.
  TempDir certs;
  fs::create_directories(certs.path / reg.host());
  fs::copy_file(p("ca.crt"), certs.path / reg.host() / "ca.crt");
  opts.certs_dirs = "/nonexistent:" + certs.path.string();
  auto trusted = make_client(reg, opts)->get_blob(digest, 100);
  if (!trusted) FAIL(trusted.error().message);
  CHECK(*trusted == "over tls");

  // --tls-verify=false.
  auto noverify_opts = reg.options();
  noverify_opts.plain_http = false;
  noverify_opts.tls_verify = false;
  auto noverify = make_client(reg, noverify_opts)->get_blob(digest, 100);
  if (!noverify) FAIL(noverify.error().message);

  // A registry that wants a client certificate: client.cert + client.key from certs.d.
  FakeRegistry mtls(json{{"auth", "none"},
                         {"tls",
                          {{"cert", p("server.crt")},
                           {"key", p("server.key")},
                           {"client_ca", p("ca.crt")},
                           {"control_cert", p("client.cert")},
                           {"control_key", p("client.key")}}}});
  auto d2 = mtls.put_blob("mutual");
  auto mopts = mtls.options();
  mopts.plain_http = false;
  mopts.max_attempts = 2;
  TempDir mcerts;
  auto dir = mcerts.path / mtls.host();
  fs::create_directories(dir);
  fs::copy_file(p("ca.crt"), dir / "ca.crt");
  mopts.certs_dirs = mcerts.path.string();
  CHECK_FALSE(make_client(mtls, mopts)->get_blob(d2, 100).ok());  // no client certificate yet
  fs::copy_file(p("client.cert"), dir / "client.cert");
  auto no_key = RegistryClient::create(mtls.ref(), mopts);
  REQUIRE_FALSE(no_key.ok());
  CHECK_THAT(no_key.error().message, Catch::Contains("client.key"));
  fs::copy_file(p("client.key"), dir / "client.key");
  auto with_cert = make_client(mtls, mopts)->get_blob(d2, 100);
  if (!with_cert) FAIL(with_cert.error().message);
  CHECK(*with_cert == "mutual");
}

TEST_CASE("registry: Content-Range values, and the head of a ranged answer") {
  using registry::parse_content_range;
  auto r = parse_content_range("bytes 100-199/1000");
  REQUIRE(r);
  CHECK((r->has_range && r->first == 100 && r->last == 199 && r->total == std::uint64_t{1000}));
  r = parse_content_range("bytes 100-199/*");
  REQUIRE(r);
  CHECK((r->has_range && !r->total));
  r = parse_content_range("bytes */1000");  // a 416's: the total alone
  REQUIRE(r);
  CHECK((!r->has_range && r->total == std::uint64_t{1000}));
  // Found by fuzz_registry_answers: "bytes */0" read as the range 0-0, which a 206 for offset 0
  // then passed for. And a range at or past its own total is no range either.
  r = parse_content_range("bytes */0");
  REQUIRE(r);
  CHECK(!r->has_range);
  CHECK_FALSE(parse_content_range("bytes 0-20/10"));
  CHECK_FALSE(parse_content_range("bytes 10-10/10"));
  CHECK_FALSE(parse_content_range("bytes */*"));
  CHECK_FALSE(parse_content_range("bytes 5-3/10"));

  registry::HttpResponse head;
  head.status = 206;
  head.headers = {{"content-range", "bytes */0"}};
  std::optional<std::uint64_t> total;
  std::uint64_t skip = 0;
  CHECK(registry::accept_range_head(head, 0, "read", total, skip));  // refused: an error
  head.headers = {{"content-range", "bytes 0-9/10"}};
  CHECK_FALSE(registry::accept_range_head(head, 0, "read", total, skip));
  CHECK(total == std::uint64_t{10});
}
