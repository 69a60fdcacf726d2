#!/usr/bin/python3
"""An HTTP/1.1 reverse proxy on 127.0.0.1 in front of a test registry, with faults a test
switches on for the next N matching requests, request/byte counters, and traffic shaping.

    with FaultProxy(reg) as px:                      # px.host = '127.0.0.1:PORT'
        f = px.add_fault('drop_mid_body', count=2)   # the next 2 blob GETs (BLOBS) are cut
        ... mount px.ref('img:t') ...
        assert f.hits == 2 and px.blob_bytes > 0
        with px.fault('status_429', retry_after=1):  # removed again when the block ends
            ...

Faults (kind, extra parameters).  Each is scoped by `path` (a regex on the URL path, default
BLOBS), `methods` (default GET), `ranges` (None: any request; 'bounded': `Range: bytes=A-B`;
'open': no Range or `bytes=A-`, as a client streaming a blob sends) and `count` (None = every
matching request).  A fault that
changes an answer is only spent on a request the registry answered 2xx, so an auth round
trip (401 without a token) does not use it up; `status*` and a `stall` before the answer are
spent at once.
  status (code, headers=(), body=None)  answer code with a distribution error body
  status_429 (retry_after=1)            429 TOOMANYREQUESTS + Retry-After
  status_503 (retry_after=None)         503 UNAVAILABLE (+ Retry-After when given)
  expire_token                          401 + a Bearer challenge with error="invalid_token",
                                        as if the token had just expired (Basic for htpasswd)
  redirect_blobs_to_other_host (ttl=None, reject_auth=True, host='localhost')
                                        307 to a second listener http://localhost:PORT2/cdn/…
                                        (another host name, another port), which serves the blob
                                        like a CDN: an `Authorization` header there is recorded
                                        in cdn_records and, with reject_auth, answered 400 (as
                                        Docker Hub's CDN does); after ttl seconds the signed URL
                                        answers 403
  ignore_range                          drop the Range header: 200 and the whole blob
  reject_multirange                     400 when Range holds several ranges (GCS)
  drop_mid_body (after=None)            headers and `after` body bytes (default half), then close
  stall (seconds=5, after=None, resume=False)
                                        after=None: send nothing; else stop after `after` body
                                        bytes; for `seconds`, then close (or carry on if resume)
  corrupt_blob (at=None, blob_at=None)  flip one byte of the body (default: the middle one); with
                                        blob_at, the byte at that offset of the blob, in whichever
                                        answers carry it (counted in `flips`)

Referrers (FaultProxy(reg, referrers_api=True), or px.referrers_api = True): the OCI
distribution-spec 1.1 referrers API, which docker-registry 2.8 lacks (its router answers 404
text/plain and no OCI-Subject).  A manifest PUT whose JSON body has a "subject" goes to the
registry as usual; on its 201 the proxy records the manifest's descriptor (mediaType, digest,
size, artifactType (else config.mediaType), annotations) under (repository, subject digest) and
adds `OCI-Subject: <subject digest>` to the answer, so the registry's tag `sha256-<hex>` is
neither needed nor made.  `GET /v2/<name>/referrers/<digest>[?artifactType=X]` is answered by
the proxy, never forwarded: 200 and an OCI image index of the recorded descriptors (filtered,
with `OCI-Filters-Applied: artifactType`, when X is given; none recorded: an empty list), 400
DIGEST_INVALID for a malformed digest.  Credentials are not checked there.  Faults apply to
these answers as to forwarded ones (scope them with path=REFERRERS).  referrers(name, digest)
lists what was recorded.

Counters: request_count, blob_bytes (body bytes of blob GETs served, CDN included),
referrers_requests (requests for a referrers path, emulated or forwarded), records /
cdn_records (one dict per request: via, peer (the client's port: same port, same connection),
method, path, range, auth, status, bytes, fault), count(method, path, status, via).
shape(bandwidth_bps, latency_ms) limits the body bandwidth of both listeners together (one
token bucket, like one link) and delays the start of every answer by latency_ms."""

import hashlib
import http.client
import json
import re
import secrets
import socket
import threading
import time
import urllib.parse

from loopback import LoopbackServer, QuietHandler

BLOBS = r'^/v2/.+/blobs/sha256:[0-9a-f]{64}$'
MANIFESTS = r'^/v2/.+/manifests/[^/]+$'
REFERRERS = r'^/v2/.+/referrers/[^/]+$'
ANY = r''
OCI_INDEX = 'application/vnd.oci.image.index.v1+json'

HOP_BY_HOP = {'connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te',
              'trailer', 'transfer-encoding', 'upgrade', 'expect', 'content-length'}
CHUNK = 64 * 1024
SHAPED_CHUNK = 16 * 1024
KINDS = {'status', 'status_429', 'status_503', 'expire_token', 'redirect_blobs_to_other_host',
         'ignore_range', 'reject_multirange', 'drop_mid_body', 'stall', 'corrupt_blob'}
_REPO = re.compile(r'^/v2/(.+)/(?:blobs|manifests|tags|referrers)/')
_REFERRERS = re.compile(r'^/v2/(.+)/referrers/([^/]*)$')
_MANIFEST = re.compile(r'^/v2/(.+)/manifests/([^/]+)$')
# distribution-spec digest grammar; the registered algorithms with their exact encodings
_DIGEST = re.compile(r'[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+')
_ENCODED = {'sha256': re.compile(r'[a-f0-9]{64}'), 'sha512': re.compile(r'[a-f0-9]{128}')}


class Fault:
    """One switched-on fault; a context manager that removes it on exit.  hits: times applied;
    remaining: applications left (None = unlimited)."""

    def __init__(self, proxy, kind, path, count, methods, params, ranges=None):
        if kind not in KINDS:
            raise ValueError('unknown fault %r; known: %s' % (kind, ', '.join(sorted(KINDS))))
        if ranges not in (None, 'bounded', 'open'):
            raise ValueError('ranges must be None, bounded or open, not %r' % (ranges,))
        self.proxy, self.kind, self.params, self.ranges = proxy, kind, params, ranges
        self.pattern = re.compile(path)
        self.methods = {m.upper() for m in methods}
        self.remaining, self.hits, self.flips = count, 0, 0
        self._lock = threading.Lock()

    @property
    def immediate(self):
        """Spent before the registry is asked (the others need a 2xx answer to act on)."""
        return self.kind.startswith('status') or (self.kind == 'stall'
                                                  and self.params.get('after') is None)

    def matches(self, method, path, headers):
        if self.remaining == 0 or method not in self.methods or not self.pattern.search(path):
            return False
        rng = headers.get('Range')
        if self.ranges is not None:
            bounded = rng is not None and re.fullmatch(r'bytes=\d+-\d+', rng.strip()) is not None
            if bounded != (self.ranges == 'bounded'):
                return False
        if self.kind == 'ignore_range':
            return rng is not None
        if self.kind == 'reject_multirange':
            return rng is not None and ',' in rng
        return True

    def take(self):
        with self._lock:
            if self.remaining == 0:
                return False
            if self.remaining is not None:
                self.remaining -= 1
            self.hits += 1
            return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.proxy.remove_fault(self)
        return False

    def __repr__(self):
        return 'Fault(%s, hits=%d, remaining=%s)' % (self.kind, self.hits, self.remaining)


class _TokenBucket:
    """Bandwidth limit shared by all connections: take(n) sleeps until n bytes may go."""

    def __init__(self, bits_per_s, burst_bytes=None):
        self.rate = bits_per_s / 8.0
        self.burst = burst_bytes or max(SHAPED_CHUNK, int(self.rate / 50))
        self.tokens, self.t = float(self.burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self, n, stopping):
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            self.tokens -= n            # may go negative: later takers queue behind this one
            wait = -self.tokens / self.rate if self.tokens < 0 else 0
        if wait:
            stopping.wait(wait)


class _Handler(QuietHandler):
    def _any(self):
        if self.server.cdn:
            self.server.owner._serve_cdn(self)
        else:
            self.server.owner._serve(self)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any


class FaultProxy:
    """FaultProxy(upstream): upstream is a Registry (or anything with .host) or 'host:port'.
    Properties host, url, ref(repo_tag), creds (the upstream's), cdn_host.  referrers_api: emulate
    the OCI 1.1 referrers API (see the module docstring); an attribute, may be switched later."""

    def __init__(self, upstream, bandwidth_bps=None, latency_ms=0, upstream_timeout=120,
                 referrers_api=False):
        self.upstream = upstream
        self.referrers_api = referrers_api
        self._referrers = {}            # (repository, subject digest) -> [descriptor]
        self.upstream_host = upstream if isinstance(upstream, str) else upstream.host
        self.upstream_timeout = upstream_timeout
        self._lock = threading.Lock()
        self._faults = []
        self._cdn_urls = {}
        self._bucket, self.latency = None, 0.0
        self.shape(bandwidth_bps, latency_ms)
        self.reset_counters()
        self._server = self._cdn = None

    # ---- life cycle and addresses
    def start(self):
        self._server = LoopbackServer(_Handler)
        self._cdn = LoopbackServer(_Handler)
        for s, cdn in ((self._server, False), (self._cdn, True)):
            s.owner, s.cdn = self, cdn
        return self

    def stop(self):
        for s in (self._server, self._cdn):
            if s:
                s.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def host(self):
        return '127.0.0.1:%d' % self._server.port

    @property
    def url(self):
        return 'http://' + self.host

    @property
    def cdn_port(self):
        return self._cdn.port

    def ref(self, repo_tag):
        return '%s/%s' % (self.host, repo_tag)

    @property
    def creds(self):
        return getattr(self.upstream, 'creds', None)

    # ---- knobs
    def add_fault(self, kind, path=BLOBS, count=1, methods=('GET',), ranges=None, **params):
        f = Fault(self, kind, path, count, methods, params, ranges)
        with self._lock:
            self._faults.append(f)
        return f

    fault = add_fault           # reads better as a context manager: with px.fault(...):

    def remove_fault(self, f):
        with self._lock:
            if f in self._faults:
                self._faults.remove(f)

    def clear_faults(self):
        with self._lock:
            self._faults = []

    def shape(self, bandwidth_bps=None, latency_ms=0, burst_bytes=None):
        """Limit body bandwidth to bandwidth_bps bits/s (None: unlimited) and delay each answer
        by latency_ms."""
        self._bucket = _TokenBucket(bandwidth_bps, burst_bytes) if bandwidth_bps else None
        self.latency = (latency_ms or 0) / 1000.0

    # ---- counters
    def reset_counters(self):
        with self._lock:
            self.request_count = 0
            self.blob_bytes = 0
            self.referrers_requests = 0
            self.records = []
            self.cdn_records = []

    def count(self, method=None, path=None, status=None, via=None):
        """Requests seen (both listeners) matching method, path regex, status and via."""
        rx = re.compile(path) if path else None
        with self._lock:
            recs = self.records + self.cdn_records
        return sum(1 for r in recs
                   if (method is None or r['method'] == method)
                   and (rx is None or rx.search(urllib.parse.urlsplit(r['path']).path))
                   and (status is None or r['status'] == status)
                   and (via is None or r['via'] == via))

    def referrers(self, name, digest):
        """Copies of the descriptors recorded for manifests of repository `name` whose subject
        is `digest` (referrers_api), in push order."""
        with self._lock:
            return [dict(d) for d in self._referrers.get((name, digest), ())]

    def _record(self, h, via):
        rec = {'via': via, 'time': time.time(), 'peer': h.client_address[1],
               'method': h.command, 'path': h.path,
               'range': h.headers.get('Range'), 'auth': h.headers.get('Authorization') is not None,
               'status': None, 'bytes': 0, 'fault': None}
        with self._lock:
            self.request_count += 1
            (self.cdn_records if via == 'cdn' else self.records).append(rec)
        return rec

    # ---- the main listener
    def _match(self, h, path):
        with self._lock:
            for f in self._faults:
                if f.matches(h.command, path, h.headers):
                    return f
        return None

    def _serve(self, h):
        body = h.read_body()
        path = urllib.parse.urlsplit(h.path).path
        rec = self._record(h, 'proxy')
        referrers = _REFERRERS.match(path)
        if referrers:
            with self._lock:
                self.referrers_requests += 1
        emulate = self.referrers_api
        if self.latency:
            self._server.stopping.wait(self.latency)
        f = self._match(h, path)
        if f and f.immediate:
            if f.take():
                rec['fault'] = f.kind
                if f.kind == 'stall':
                    if not self._stall(h, f) or not f.params.get('resume'):
                        return self._hang_up(h)
                else:
                    return self._answer_status(h, f, rec)
            f = None
        drop = ('range',) if f and f.kind == 'ignore_range' else ()
        conn, extra = None, []
        try:
            if emulate and referrers:
                resp = self._referrers_answer(h, referrers)
            else:
                conn, resp = self._upstream(h, h.path, body, drop=drop)
        except OSError as e:
            rec['status'] = 502
            return h.send_registry_error(502, 'UNAVAILABLE', 'upstream: %s' % e)
        try:
            if emulate and h.command == 'PUT' and resp.status == 201:
                subject = self._note_referrer(h, path, body)
                if subject:
                    extra.append(('OCI-Subject', subject))
            if f and 200 <= resp.status < 300 and f.take():
                rec['fault'] = f.kind
                if f.kind == 'redirect_blobs_to_other_host':
                    return self._redirect(h, f, rec)
                if f.kind == 'reject_multirange':
                    rec['status'] = 400
                    return h.send_registry_error(400, 'RANGE_INVALID',
                                                 'multiple ranges are not supported')
                if f.kind == 'expire_token':
                    rec['status'] = 401
                    return h.send_registry_error(
                        401, 'UNAUTHORIZED', 'authentication required',
                        [('WWW-Authenticate', self._challenge(path))])
            else:
                f = None
            self._relay(h, resp, rec, f, blob=h.command == 'GET' and re.search(BLOBS, path),
                        extra=extra)
        finally:
            if conn:
                conn.close()

    # ---- the referrers API (referrers_api)
    def _note_referrer(self, h, path, body):
        """Record the descriptor of a manifest just pushed (201) if it names a subject; returns
        the subject's digest, else None."""
        m = _MANIFEST.match(path)
        try:
            doc = json.loads(body) if m else None
        except ValueError:
            return None
        subject = doc.get('subject') if isinstance(doc, dict) else None
        digest = subject.get('digest') if isinstance(subject, dict) else None
        if not isinstance(digest, str):
            return None
        desc = {'mediaType': doc.get('mediaType') or h.headers.get('Content-Type'),
                'digest': 'sha256:' + hashlib.sha256(body).hexdigest(), 'size': len(body)}
        config = doc.get('config')
        kind = doc.get('artifactType') or (config.get('mediaType')
                                           if isinstance(config, dict) else None)
        if kind:
            desc['artifactType'] = kind
        if doc.get('annotations'):
            desc['annotations'] = doc['annotations']
        with self._lock:
            known = self._referrers.setdefault((m.group(1), digest), [])
            known[:] = [d for d in known if d['digest'] != desc['digest']] + [desc]
        return digest

    def _referrers_answer(self, h, m):
        """The answer to GET /v2/<name>/referrers/<digest>, made here (an _Answer)."""
        name, digest = m.group(1), m.group(2)
        if h.command not in ('GET', 'HEAD'):
            return _Answer.error(405, 'UNSUPPORTED', 'the referrers API takes GET and HEAD')
        algo, _, encoded = digest.partition(':')
        if not _DIGEST.fullmatch(digest) or (algo in _ENCODED
                                             and not _ENCODED[algo].fullmatch(encoded)):
            return _Answer.error(400, 'DIGEST_INVALID', 'invalid digest %r' % digest)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(h.path).query)
        want = query.get('artifactType', [None])[0]
        found = self.referrers(name, digest)
        headers = [('Content-Type', OCI_INDEX)]
        if want is not None:
            found = [d for d in found if d.get('artifactType') == want]
            headers.append(('OCI-Filters-Applied', 'artifactType'))
        body = json.dumps({'schemaVersion': 2, 'mediaType': OCI_INDEX,
                           'manifests': found}).encode()
        return _Answer(200, headers, body)

    def _answer_status(self, h, f, rec):
        p = f.params
        code = {'status_429': 429, 'status_503': 503}.get(f.kind) or p.get('code', 500)
        headers = list(p.get('headers', ()))
        retry = p.get('retry_after', 1 if code == 429 else None)
        if retry is not None:
            headers.append(('Retry-After', str(retry)))
        rec['status'] = code
        if p.get('body') is not None:
            return h.send_simple(code, p['body'], headers)
        err = {429: 'TOOMANYREQUESTS', 503: 'UNAVAILABLE', 401: 'UNAUTHORIZED',
               403: 'DENIED', 404: 'BLOB_UNKNOWN'}.get(code, 'UNKNOWN')
        h.send_registry_error(code, err, 'injected by FaultProxy', headers)

    def _challenge(self, path):
        m = _REPO.match(path)
        scope = 'repository:%s:pull' % m.group(1) if m else ''
        ts = getattr(self.upstream, 'token_server', None)
        if ts is not None:
            return ('Bearer realm="%s",service="%s",scope="%s",error="invalid_token"'
                    % (ts.realm, ts.service, scope))
        return 'Basic realm="ocifs-test"'

    def _redirect(self, h, f, rec):
        key = secrets.token_hex(8)
        ttl = f.params.get('ttl')
        with self._lock:
            self._cdn_urls[key] = {'path': h.path, 'auth': h.headers.get('Authorization'),
                                   'expires': time.monotonic() + ttl if ttl else None,
                                   'reject_auth': f.params.get('reject_auth', True)}
        loc = 'http://%s:%d/cdn/%s%s' % (f.params.get('host', 'localhost'), self.cdn_port, key,
                                         h.path)
        rec['status'] = 307
        h.send_simple(307, b'', [('Location', loc)], content_type='text/plain')

    # ---- the second listener ("CDN")
    def _serve_cdn(self, h):
        h.read_body()
        rec = self._record(h, 'cdn')
        if self.latency:
            self._cdn.stopping.wait(self.latency)
        parts = urllib.parse.urlsplit(h.path).path.split('/', 3)     # '', 'cdn', key, rest
        with self._lock:
            u = self._cdn_urls.get(parts[2]) if len(parts) == 4 and parts[1] == 'cdn' else None
        if u is None:
            rec['status'] = 404
            return h.send_simple(404, {'error': 'no such signed URL'})
        if u['expires'] is not None and time.monotonic() > u['expires']:
            rec['status'] = 403
            return h.send_simple(403, b'<Error><Code>AccessDenied</Code>'
                                 b'<Message>Request has expired</Message></Error>',
                                 content_type='application/xml')
        if rec['auth'] and u['reject_auth']:
            rec['status'] = 400
            return h.send_simple(400, b'<Error><Code>InvalidArgument</Code><Message>Only one '
                                 b'auth mechanism allowed</Message></Error>',
                                 content_type='application/xml')
        try:
            conn, resp = self._upstream(h, u['path'], b'', drop=('authorization',),
                                        add=[('Authorization', u['auth'])] if u['auth'] else [])
        except OSError as e:
            rec['status'] = 502
            return h.send_simple(502, {'error': str(e)})
        try:
            self._relay(h, resp, rec, None, blob=h.command == 'GET')
        finally:
            conn.close()

    # ---- plumbing
    def _upstream(self, h, path, body, drop=(), add=()):
        host, port = self.upstream_host.rsplit(':', 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=self.upstream_timeout)
        conn.putrequest(h.command, path, skip_host=True, skip_accept_encoding=True)
        for k, v in h.headers.items():
            if k.lower() not in HOP_BY_HOP and k.lower() not in drop:
                conn.putheader(k, v)
        for k, v in add:
            conn.putheader(k, v)
        if body or h.command in ('POST', 'PUT', 'PATCH'):
            conn.putheader('Content-Length', str(len(body)))
        conn.endheaders(body or None)
        return conn, conn.getresponse()

    def _stall(self, h, f):
        """Wait f.params['seconds']; False when the proxy stops meanwhile."""
        return not h.server.stopping.wait(f.params.get('seconds', 5))

    def _relay(self, h, resp, rec, f, blob, extra=()):
        """Send the upstream answer to the client (plus headers `extra`), applying f (a body
        fault) if any."""
        rec['status'] = resp.status
        no_body = h.command == 'HEAD' or resp.status in (204, 304) or resp.status < 200
        length = resp.getheader('Content-Length')
        src = resp
        if length is None and not no_body:
            data = resp.read()            # chunked or close-delimited: small (errors, JSON)
            length, src = len(data), _Bytes(data)
        h.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP_BY_HOP and k.lower() not in ('date', 'server'):
                h.send_header(k, v)
        for k, v in extra:
            h.send_header(k, v)
        if length is not None:
            h.send_header('Content-Length', str(length))
        h.end_headers()
        if no_body:
            return h.wfile.flush()
        length = int(length)
        kind = f.kind if f else None
        p = f.params if f else {}
        cut = stall_at = flip_at = None
        if kind == 'drop_mid_body':
            cut = min(length, p['after'] if p.get('after') is not None else length // 2)
        elif kind == 'stall':
            stall_at = min(length, p['after'])
        elif kind == 'corrupt_blob' and length and p.get('blob_at') is not None:
            m = re.match(r'bytes (\d+)-', resp.getheader('Content-Range') or '')
            at = p['blob_at'] - (int(m.group(1)) if m else 0)
            flip_at = at if 0 <= at < length else None
        elif kind == 'corrupt_blob' and length:
            flip_at = min(length - 1, p['at'] if p.get('at') is not None else length // 2)
        sent = 0
        chunk_size = SHAPED_CHUNK if self._bucket else CHUNK
        while sent < length:
            n = min(chunk_size, length - sent)
            for mark in (cut, stall_at):
                if mark is not None and sent < mark < sent + n:
                    n = mark - sent
            chunk = src.read(n) if n else b''
            if n and not chunk:               # upstream ended early: pass the damage on
                h.close_connection = True
                return
            if flip_at is not None and sent <= flip_at < sent + len(chunk):
                b = bytearray(chunk)
                b[flip_at - sent] ^= 0xFF
                f.flips += 1
                chunk = bytes(b)
            if self._bucket:
                self._bucket.take(len(chunk), h.server.stopping)
            # Counted before the write: the client may look at the counters as soon as it has
            # the bytes (with TCP_NODELAY, before this thread runs again).
            rec['bytes'] += len(chunk)
            if blob:
                with self._lock:
                    self.blob_bytes += len(chunk)
            try:
                h.wfile.write(chunk)
            except OSError:
                h.close_connection = True
                return
            sent += len(chunk)
            if cut is not None and sent >= cut:
                return self._hang_up(h)
            if stall_at is not None and sent >= stall_at:
                stall_at = None
                h.wfile.flush()
                if not self._stall(h, f) or not p.get('resume'):
                    return self._hang_up(h)
        h.wfile.flush()

    @staticmethod
    def _hang_up(h):
        h.close_connection = True
        try:
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Bytes:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def read(self, n):
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


class _Answer(_Bytes):
    """An answer the proxy makes itself, shaped like the http.client response _relay reads."""

    def __init__(self, status, headers, body):
        super().__init__(body)
        self.status, self.reason = status, http.client.responses.get(status, '')
        self._headers = list(headers) + [('Content-Length', str(len(body)))]

    @classmethod
    def error(cls, status, code, message):
        body = json.dumps({'errors': [{'code': code, 'message': message, 'detail': None}]})
        return cls(status, [('Content-Type', 'application/json')], body.encode())

    def getheader(self, name, default=None):
        for k, v in self._headers:
            if k.lower() == name.lower():
                return v
        return default

    def getheaders(self):
        return list(self._headers)
