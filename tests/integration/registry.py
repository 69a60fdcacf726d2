#!/usr/bin/python3
"""Real registries for the ocifs tests: Debian's docker-registry (distribution 2.8.2) on
127.0.0.1, in one of three auth modes, plus pushing and pulling with skopeo.

    with Registry(auth='token', expires_in=2) as reg, FaultProxy(reg) as px:
        push_image(layout_ref, reg, 'img:t')             # push directly, not through the proxy
        with Mount(px.ref('img:t'), mnt, cache): ...     # ocifs reads through the proxy
        assert reg.token_server.issued >= 2 and px.blob_bytes > 0

Everything the tests need is re-exported here: TokenServer (tokenserver.py), FaultProxy and
its path patterns (faultproxy.py), http_request (loopback.py).

The registry is configured only by the file written here: REGISTRY_* variables (which
distribution reads as config overrides) are removed from its environment."""

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time

import fixtures
from common import Fail
from faultproxy import ANY, BLOBS, MANIFESTS, FaultProxy
from loopback import free_port, http_request, no_proxy_env, stop_process_group
from tokenserver import TokenServer, decode_token

__all__ = ['Registry', 'RegistryClient', 'RegistryError', 'require_registry_tools', 'push_image',
           'pull_image', 'push_layout', 'push_manifest_list', 'build_multiarch_layout', 'skopeo',
           'parse_challenge', 'digest_of', 'OCI_MANIFEST', 'OCI_INDEX', 'DOCKER_MANIFEST',
           'DOCKER_LIST', 'MANIFEST_ACCEPT',
           # re-exported, so that tests need one import
           'TokenServer', 'decode_token', 'FaultProxy', 'ANY', 'BLOBS', 'MANIFESTS',
           'http_request', 'free_port']

REGISTRY_BIN = '/usr/bin/docker-registry'
OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json'
OCI_INDEX = 'application/vnd.oci.image.index.v1+json'
DOCKER_MANIFEST = 'application/vnd.docker.distribution.manifest.v2+json'
DOCKER_LIST = 'application/vnd.docker.distribution.manifest.list.v2+json'
MANIFEST_ACCEPT = ', '.join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST))
SKOPEO_TIMEOUT = 300
# The registry runs in its own session (so stop() can kill its group) and so escapes meson's
# kill of a timed-out test's process group: have the kernel kill it when this process dies
# (PR_SET_PDEATHSIG survives the exec; it fires when the *thread* that started it exits).
_DEATHSIG = ['setpriv', '--pdeathsig', 'KILL'] if shutil.which('setpriv') else []


def require_registry_tools(tools=('skopeo',)):
    """Raise common.Fail unless docker-registry, htpasswd, python3-jwt/-cryptography and the
    given tools are installed (scripts/test installs them all: missing is a broken set-up)."""
    missing = [t for t in (REGISTRY_BIN, 'htpasswd') + tuple(tools) if not shutil.which(t)]
    for mod in ('jwt', 'cryptography'):
        try:
            __import__(mod)
        except ImportError:
            missing.append('python3-' + mod)
    if missing:
        raise Fail('missing %s (scripts/test installs docker-registry apache2-utils python3-jwt '
                   'python3-cryptography skopeo)' % ', '.join(missing))


class RegistryError(AssertionError):
    """The registry did not start or a push/pull failed; the message carries the log tail."""


class Registry:
    """`docker-registry serve` on 127.0.0.1:PORT with filesystem storage in a temp dir.

    auth: None | 'htpasswd' (bcrypt, `htpasswd -Bbn`) | 'token' (a TokenServer: token_server=
    one you made, else one is started and stopped with the registry, built from user/password
    and **token_kw, e.g. expires_in=2, anonymous_pull=True, alg='ES256', key_header='x5c').
    Deletes are disabled.  start() waits until GET /v2/ answers 200 or 401."""

    def __init__(self, auth=None, user='ocifs', password='ocifs-secret', token_server=None,
                 workdir=None, startup_timeout=30, **token_kw):
        if auth not in (None, 'htpasswd', 'token'):
            raise ValueError('auth must be None, htpasswd or token')
        if token_kw and auth != 'token':
            raise ValueError('token options given without auth="token": %s' % sorted(token_kw))
        self.auth, self.user, self.password = auth, user, password
        self.token_server, self._own_ts = token_server, False
        self._token_kw = token_kw
        self._workdir, self._own_dir = workdir, workdir is None
        self.startup_timeout = startup_timeout
        self.workdir = self.storage = self.config_path = self.log_path = None
        self.port = None
        self.proc = None

    # ---- addresses
    @property
    def host(self):
        return '127.0.0.1:%d' % self.port

    @property
    def url(self):
        return 'http://' + self.host

    @property
    def creds(self):
        """'user:password' for skopeo when the registry wants credentials, else None."""
        if self.auth == 'htpasswd':
            return '%s:%s' % (self.user, self.password)
        if self.auth == 'token':
            return self.token_server.creds
        return None

    def ref(self, repo_tag):
        """'127.0.0.1:PORT/repo:tag', the form `ocifs mount` takes."""
        return '%s/%s' % (self.host, repo_tag)

    def docker_ref(self, repo_tag):
        return 'docker://' + self.ref(repo_tag)

    def client(self, creds=None):
        """A RegistryClient for this registry (its own credentials by default)."""
        return RegistryClient(self.host, creds or self.creds)

    # ---- life cycle
    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _auth_config(self):
        if self.auth == 'htpasswd':
            r = subprocess.run(['htpasswd', '-Bbn', self.user, self.password],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
            if r.returncode != 0:
                raise RegistryError('htpasswd failed: %s' % r.stderr.decode(errors='replace'))
            path = os.path.join(self.workdir, 'htpasswd')
            with open(path, 'wb') as f:
                f.write(r.stdout.strip() + b'\n')
            return ('auth:\n  htpasswd:\n    realm: ocifs-test\n    path: %s\n' % path)
        if self.auth == 'token':
            if self.token_server is None:
                self.token_server = TokenServer(
                    user=self.user, password=self.password,
                    workdir=os.path.join(self.workdir, 'tokens'), **self._token_kw)
                self._own_ts = True
                self.token_server.start()
            ts = self.token_server
            if not ts.running:
                raise ValueError('start the TokenServer first (with TokenServer(...) as ts:)')
            return ('auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: %s\n'
                    '    rootcertbundle: %s\n' % (ts.realm, ts.service, ts.issuer, ts.cert_path))
        return ''

    def _write_config(self):
        cfg = ('version: 0.1\n'
               'log:\n  level: info\n  formatter: text\n'
               'storage:\n'
               '  filesystem:\n    rootdirectory: %s\n'
               '  delete:\n    enabled: false\n'
               '  maintenance:\n    uploadpurging:\n      enabled: false\n'
               'http:\n  addr: 127.0.0.1:%d\n  secret: %s\n'
               '  headers:\n    X-Content-Type-Options: [nosniff]\n'
               % (self.storage, self.port, base64.b16encode(os.urandom(16)).decode()))
        with open(self.config_path, 'w') as f:
            f.write(cfg + self._auth_config())

    def start(self):
        if not os.access(REGISTRY_BIN, os.X_OK):
            raise Fail('%s is missing (scripts/test installs docker-registry)' % REGISTRY_BIN)
        self.workdir = self._workdir or tempfile.mkdtemp(prefix='ocifs-registry-')
        self.storage = os.path.join(self.workdir, 'storage')
        self.config_path = os.path.join(self.workdir, 'config.yml')
        self.log_path = os.path.join(self.workdir, 'registry.log')
        os.makedirs(self.storage, exist_ok=True)
        env = {k: v for k, v in no_proxy_env().items() if not k.startswith('REGISTRY_')}
        try:
            for _ in range(3):                # free_port() can race with another process
                self.port = free_port()
                self._write_config()
                with open(self.log_path, 'ab') as log:
                    self.proc = subprocess.Popen(_DEATHSIG + [REGISTRY_BIN, 'serve',
                                                              self.config_path],
                                                 stdin=subprocess.DEVNULL, stdout=log,
                                                 stderr=subprocess.STDOUT, env=env,
                                                 start_new_session=True)
                if self._wait_ready():
                    return self
                rc = self.proc.poll()
                self._kill()
                if 'address already in use' not in self.log_tail(5):
                    break
            self._own_dir = False          # keep the log the message points to
            raise RegistryError('docker-registry %s; %s:\n%s' % (
                'exited with %d' % rc if rc is not None else
                'did not answer GET /v2/ within %ds' % self.startup_timeout,
                self.log_path, self.log_tail()))
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self):
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                status, _, _ = http_request(self.url + '/v2/', timeout=2)
                if status in (200, 401):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def _kill(self):
        """SIGTERM the registry's process group, SIGKILL it after 10 s."""
        p, self.proc = self.proc, None
        stop_process_group(p)

    def stop(self):
        """Stop the registry (and the token server it started); remove its temp dir unless
        OCIFS_TEST_KEEP is set or the caller gave the workdir.  Idempotent."""
        self._kill()
        if self._own_ts and self.token_server:
            self.token_server.stop()
            self._own_ts = False
        if self.workdir and self._own_dir and not os.environ.get('OCIFS_TEST_KEEP'):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, n=40):
        try:
            with open(self.log_path, 'rb') as f:
                return b''.join(f.readlines()[-n:]).decode(errors='replace')
        except OSError:
            return '(no log)'


class RegistryClient:
    """A minimal distribution client in python, for assertions and fault checks: Basic or
    Bearer auth from the 401 challenge (tokens cached per scope), no redirects followed.

    get(path, headers) -> (status, headers, body); manifest(repo, ref); blob(repo, digest,
    range_=None); token(scope) -> the raw Bearer token (None without token auth)."""

    def __init__(self, host, creds=None):
        self.host, self.creds = host, creds
        self._tokens = {}

    def _basic(self):
        return 'Basic ' + base64.b64encode(self.creds.encode()).decode() if self.creds else None

    def token(self, scope, challenge=None):
        if scope in self._tokens:
            return self._tokens[scope]
        challenge = challenge or self._challenge()
        if not challenge or not challenge.lower().startswith('bearer'):
            return None
        params = parse_challenge(challenge)
        q = 'service=%s&scope=%s' % (params.get('service', ''), scope)
        hdr = {'Authorization': self._basic()} if self.creds else {}
        status, _, body = http_request(params['realm'] + '?' + q, headers=hdr)
        if status != 200:
            raise RegistryError('token request for %s: HTTP %d %r' % (scope, status, body[:300]))
        tok = json.loads(body)
        self._tokens[scope] = tok.get('token') or tok.get('access_token')
        return self._tokens[scope]

    def _challenge(self):
        status, h, _ = http_request('http://%s/v2/' % self.host)
        return h.get('WWW-Authenticate') if status == 401 else None

    def request(self, method, path, headers=None, data=None, scope=None):
        """One request to http://HOST/path (or a full URL) with auth; a 401 is answered once
        (a fresh token for the challenge's scope, or Basic) and the request repeated."""
        headers = dict(headers or {})
        url = path if path.startswith('http') else 'http://%s%s' % (self.host, path)
        if scope and scope in self._tokens:
            headers['Authorization'] = 'Bearer ' + self._tokens[scope]
        elif self.creds and not scope:
            headers['Authorization'] = self._basic()
        status, h, body = http_request(url, method=method, headers=headers, data=data)
        if status == 401:
            ch = h.get('WWW-Authenticate', '')
            if ch.lower().startswith('bearer'):
                self._tokens.pop(scope, None)
                scope = scope or parse_challenge(ch).get('scope', '')
                headers['Authorization'] = 'Bearer ' + self.token(scope, ch)
            elif self.creds:
                headers['Authorization'] = self._basic()
            else:
                return status, h, body
            status, h, body = http_request(url, method=method, headers=headers, data=data)
        return status, h, body

    def get(self, path, headers=None, scope=None):
        return self.request('GET', path, headers, scope=scope)

    def manifest(self, repo, ref, accept=MANIFEST_ACCEPT):
        """(media type, parsed manifest, raw bytes); raises unless 200."""
        status, h, body = self.get('/v2/%s/manifests/%s' % (repo, ref), {'Accept': accept},
                                   scope='repository:%s:pull' % repo)
        if status != 200:
            raise RegistryError('manifest %s:%s: HTTP %d %r' % (repo, ref, status, body[:300]))
        return h.get('Content-Type'), json.loads(body), body

    def blob(self, repo, digest, range_=None):
        hdr = {'Range': range_} if range_ else {}
        return self.get('/v2/%s/blobs/%s' % (repo, digest), hdr, scope='repository:%s:pull' % repo)

    def put_blob(self, repo, data):
        """Upload data as a blob (POST, then PUT with ?digest=); returns its digest."""
        scope = 'repository:%s:pull,push' % repo
        digest = digest_of(data)
        status, h, body = self.request('POST', '/v2/%s/blobs/uploads/' % repo, data=b'',
                                       scope=scope)
        if status != 202:
            raise RegistryError('upload start: HTTP %d %r' % (status, body[:300]))
        loc = h['Location']
        loc += ('&' if '?' in loc else '?') + 'digest=' + digest
        if not loc.startswith('http'):
            loc = 'http://%s%s' % (self.host, loc)
        status, _, body = self.request('PUT', loc, {'Content-Type': 'application/octet-stream'},
                                       data=data, scope=scope)
        if status != 201:
            raise RegistryError('upload of %s: HTTP %d %r' % (digest, status, body[:300]))
        return digest

    def put_manifest(self, repo, ref, raw, media_type):
        status, _, body = self.request('PUT', '/v2/%s/manifests/%s' % (repo, ref),
                                       {'Content-Type': media_type}, data=raw,
                                       scope='repository:%s:pull,push' % repo)
        if status != 201:
            raise RegistryError('manifest %s:%s: HTTP %d %r' % (repo, ref, status, body[:300]))
        return digest_of(raw)

    def layers(self, repo, ref):
        """The layer descriptors of repo:ref (first platform of an index)."""
        mt, man, _ = self.manifest(repo, ref)
        if 'manifests' in man:
            mt, man, _ = self.manifest(repo, man['manifests'][0]['digest'])
        return man['layers']


def parse_challenge(value):
    """{realm, service, scope, error, ...} from a WWW-Authenticate value (quoted values may
    contain commas and spaces)."""
    _, _, rest = value.strip().partition(' ')
    out, i = {}, 0
    while i < len(rest):
        eq = rest.find('=', i)
        if eq < 0:
            break
        key = rest[i:eq].strip(' ,')
        if rest[eq + 1:eq + 2] == '"':
            end = rest.find('"', eq + 2)
            end = len(rest) if end < 0 else end
            out[key] = rest[eq + 2:end]
            i = end + 1
        else:
            end = rest.find(',', eq)
            end = len(rest) if end < 0 else end
            out[key] = rest[eq + 1:end].strip()
            i = end
        i += 1 if i < len(rest) and rest[i] == ',' else 0
    return out


# ---------------------------------------------------------------- skopeo

def _where(registry):
    """(host, default creds) of a Registry, a FaultProxy or a 'host:port' string."""
    if isinstance(registry, str):
        return registry, None
    return registry.host, getattr(registry, 'creds', None)


def _oci_ref(src):
    """A transport ref; a bare layout path means its tag 't' (fixtures.TAG)."""
    if ':' in src.split('/', 1)[0] or src.startswith(('oci:', 'oci-archive:', 'docker-archive:',
                                                      'dir:', 'docker://')):
        return src
    return 'oci:%s:%s' % (src, fixtures.TAG)


def skopeo(*args, timeout=SKOPEO_TIMEOUT):
    """Run skopeo (policy: accept anything; loopback never proxied); raise with its stderr."""
    cmd = ['skopeo', '--insecure-policy'] + [str(a) for a in args]
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           env=no_proxy_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise RegistryError('HANG: %s did not finish within %ds' % (' '.join(cmd), timeout))
    if r.returncode != 0:
        raise RegistryError('%s exited %d:\n%s' % (' '.join(cmd), r.returncode,
                                                     r.stderr.decode(errors='replace')[-3000:]))
    return r


def _creds_args(flag, creds):
    if creds:
        return ['--%s-creds' % flag, creds]
    return ['--%s-no-creds' % flag]


def push_image(src, registry, repo_tag, creds=None, compress=None, fmt=None, all_=False):
    """Push src ('oci:DIR:TAG', any skopeo ref, or a layout path = its tag 't') to
    registry/repo_tag with skopeo; returns the pushed manifest's (or index's) digest.

    registry: a Registry, a FaultProxy or 'host:port'; creds default to the registry's.
    compress: None (blobs as they are: an uncompressed OCI layer stays uncompressed), 'gzip'
    or 'zstd'.  fmt: None (manifests byte for byte), 'oci' or 'v2s2' (Docker schema 2; a
    list becomes a Docker manifest list).  all_: every image of an index.

    Why --preserve-digests, and compression done in a local copy first: skopeo 1.9 reuses a
    blob the destination already has (or one its blob-info cache in /var/lib/containers/cache
    knows as a twin) instead of recompressing, so `--dest-compress-format zstd` to a registry
    that holds the gzip layers silently pushes gzip.  An exact push of an already converted
    layout cannot be rewritten that way."""
    host, default_creds = _where(registry)
    tmp = tempfile.mkdtemp(prefix='ocifs-push-')
    try:
        src = _oci_ref(src)
        if compress not in (None, 'gzip', 'zstd'):
            raise ValueError('compress: None, gzip or zstd')
        if compress:
            staged = 'oci:%s:%s' % (os.path.join(tmp, 'staged'), fixtures.TAG)
            skopeo('copy', '-q', *(['--all'] if all_ else []), '--dest-compress',
                   '--dest-compress-format', compress, src, staged)
            src = staged
        digestfile = os.path.join(tmp, 'digest')
        args = ['copy', '-q', '--dest-tls-verify=false', '--digestfile', digestfile]
        args += _creds_args('dest', creds or default_creds)
        args += ['--format', fmt] if fmt else ['--preserve-digests']
        if all_:
            args += ['--all']
        skopeo(*args, src, 'docker://%s/%s' % (host, repo_tag))
        with open(digestfile) as f:
            return f.read().strip()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def pull_image(registry, repo_tag, dest, tag=fixtures.TAG, creds=None, all_=False):
    """skopeo copy docker://registry/repo_tag oci:dest:tag; returns 'oci:dest:tag'."""
    host, default_creds = _where(registry)
    args = ['copy', '-q', '--src-tls-verify=false'] + _creds_args('src', creds or default_creds)
    if all_:
        args += ['--all']
    ref = 'oci:%s:%s' % (dest, tag)
    skopeo(*args, 'docker://%s/%s' % (host, repo_tag), ref)
    return ref


def push_layout(layout, registry, repo_tag, tag=fixtures.TAG, creds=None):
    """Push an OCI layout's tag byte for byte with RegistryClient, without skopeo: for
    documents skopeo would refuse or normalise (unknown media types, foreign layers with
    `urls`, odd annotations).  Blobs as they are, manifests and indexes verbatim, children of
    an index by digest.  Returns the digest of what the tag names."""
    host, default_creds = _where(registry)
    c = RegistryClient(host, creds or default_creds)
    repo, _, ref = repo_tag.rpartition(':')
    blob = lambda d: open(os.path.join(layout, 'blobs', *d.split(':', 1)), 'rb').read()  # noqa

    def push(desc, ref):
        raw = blob(desc['digest'])
        doc = json.loads(raw)
        if 'manifests' in doc:
            for child in doc['manifests']:
                push(child, child['digest'])
        else:
            for d in [doc['config']] + doc['layers']:
                c.put_blob(repo, blob(d['digest']))
        return c.put_manifest(repo, ref, raw, doc.get('mediaType') or desc['mediaType'])

    with open(os.path.join(layout, 'index.json')) as f:
        top = [d for d in json.load(f)['manifests']
               if d.get('annotations', {}).get('org.opencontainers.image.ref.name') == tag]
    if not top:
        raise RegistryError('%s has no tag %s' % (layout, tag))
    return push(top[0], ref)


def build_multiarch_layout(path, platforms=('linux/amd64', 'linux/arm64/v8'), tag=fixtures.TAG):
    """An OCI layout whose tag is an image index with one small image per platform; each
    image's only file, /platform, holds its platform string.  Returns 'oci:path:tag'."""
    descs = []
    for plat in platforms:
        w = fixtures.OCIWriter(path)
        t = fixtures.TarBuilder()
        t.file('platform', plat.encode() + b'\n')
        t.file('filler', plat.encode() * 4096)
        w.add_layer(t.getvalue())
        w.write('tmp', platform=plat)
        with open(os.path.join(path, 'index.json')) as f:
            d = json.load(f)['manifests'][0]
        d.pop('annotations', None)
        parts = plat.split('/')
        d['platform'] = {'os': parts[0], 'architecture': parts[1]}
        if len(parts) > 2:
            d['platform']['variant'] = parts[2]
        descs.append(d)
    ib = json.dumps({'schemaVersion': 2, 'mediaType': OCI_INDEX, 'manifests': descs}).encode()
    dig = fixtures.OCIWriter(path).blob(ib)
    with open(os.path.join(path, 'index.json'), 'w') as f:
        json.dump({'schemaVersion': 2, 'manifests': [{
            'mediaType': OCI_INDEX, 'digest': dig, 'size': len(ib),
            'annotations': {'org.opencontainers.image.ref.name': tag}}]}, f)
    return 'oci:%s:%s' % (path, tag)


def push_manifest_list(registry, repo_tag, work, platforms=('linux/amd64', 'linux/arm64/v8'),
                       src=None, creds=None, fmt=None):
    """Push a multi-platform image (build_multiarch_layout(work/'multiarch') unless src is an
    index ref) with `skopeo copy --all`; returns the digest of the pushed index.
    fmt='v2s2' pushes a Docker manifest list of Docker schema 2 manifests instead of OCI."""
    src = src or build_multiarch_layout(os.path.join(work, 'multiarch'), platforms)
    return push_image(src, registry, repo_tag, creds=creds, fmt=fmt, all_=True)


def digest_of(data):
    return 'sha256:' + fixtures.sha256(data)

