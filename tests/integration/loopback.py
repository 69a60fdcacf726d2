#!/usr/bin/python3
"""Small shared pieces of the registry test servers (tokenserver.py, faultproxy.py, registry.py).

Tests only ever talk to servers they started themselves on 127.0.0.1, so everything here binds
that address, never follows environment proxies, and can be stopped from any thread, also while
a handler is blocked in a read (stop() shuts the connections down)."""

import json
import os
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOOPBACK = '127.0.0.1'


def free_port():
    """A port free on 127.0.0.1 right now (for child processes that must be told a port; servers
    in this process bind port 0 instead, which has no race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def stop_process_group(proc, grace=10):
    """SIGTERM the process group of `proc` (started with start_new_session=True), SIGKILL it
    after `grace` seconds, and reap it.  None is fine."""
    if proc is None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
            break
        except subprocess.TimeoutExpired:
            continue


def no_proxy_env(env=None):
    """os.environ (or env) with loopback excluded from any http(s)_proxy, for curl and skopeo."""
    env = dict(os.environ if env is None else env)
    for k in ('NO_PROXY', 'no_proxy'):
        env[k] = ','.join(x for x in (env.get(k), '127.0.0.1', 'localhost') if x)
    return env


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **kw):
        return None


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def http_request(url, method='GET', headers=None, data=None, timeout=30):
    """(status, headers, body) for one request; never raises on an HTTP status and never follows
    a redirect, so tests see exactly what the server answered.  Connection errors do raise."""
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        try:
            body = e.read()
        except Exception:           # a body cut short (a fault under test) is still an answer
            body = b''
        return e.code, e.headers, body


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive) handler base: no stderr chatter, JSON error helper, body reader."""
    protocol_version = 'HTTP/1.1'
    timeout = 120                  # an idle keep-alive connection is dropped after this

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        # Headers and body go out in separate writes: with Nagle's algorithm the body waited for
        # the client's delayed ACK of the headers, 40 ms on every keep-alive answer (real
        # registries, Go's net/http, set TCP_NODELAY).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def read_body(self):
        """The request body, de-chunked (skopeo uploads blobs with Transfer-Encoding: chunked)."""
        if 'chunked' in self.headers.get('Transfer-Encoding', '').lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b';')[0].strip() or b'0', 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b'\r\n', b'\n', b''):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(3)
        n = int(self.headers.get('Content-Length') or 0)
        return self.rfile.read(n) if n else b''

    def send_simple(self, code, body=b'', headers=(), content_type='application/json'):
        """A complete response with a Content-Length (keeps the connection usable)."""
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response_only(code)
        for k, v in headers:
            self.send_header(k, v)
        if body or code not in (204, 304):
            self.send_header('Content-Type', content_type)
            self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD' and body:
            self.wfile.write(body)
        self.wfile.flush()

    def send_registry_error(self, code, err, message, headers=()):
        """The distribution error body {"errors":[{code,message,detail}]}."""
        self.send_simple(code, {'errors': [{'code': err, 'message': message, 'detail': None}]},
                         headers)


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1:port (0 = any free) run on a daemon thread."""
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler, port=0):
        super().__init__((LOOPBACK, port), handler)
        self._conns = set()
        self._conns_lock = threading.Lock()
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={'poll_interval': 0.1},
                                        daemon=True, name='%s:%d' % (type(self).__name__,
                                                                     self.port))
        self._thread.start()

    @property
    def port(self):
        return self.server_address[1]

    def track(self, conn, add):
        with self._conns_lock:
            (self._conns.add if add else self._conns.discard)(conn)

    def stop(self):
        """Stop accepting, wake stalled handlers, cut open connections.  Idempotent."""
        if self.stopping.is_set():
            return
        self.stopping.set()
        self.shutdown()
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.server_close()
        self._thread.join(10)
