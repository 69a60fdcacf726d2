#!/usr/bin/python3
"""A JWT token issuer for distribution's `auth: token` (the Docker registry token spec), on
127.0.0.1, for tests of Bearer auth: scopes, Basic credentials, expiry and refresh.

    GET /token?service=S&scope=repository:NAME:pull[,push][&scope=...]   [Authorization: Basic]
      -> 200 {"token", "access_token", "expires_in", "issued_at"}
      -> 401 (with a Basic challenge) when credentials are required and missing or wrong
      -> 400 when `service` names another service

How distribution 2.8.2 accepts the token (registry/auth/token/token.go, checked by experiment
in registry_selftest.py): claims `iss` == auth.token.issuer, `aud` == auth.token.service (a
string, not a list: 2.8 unmarshals `aud` into a Go string), `exp`/`nbf` checked with a 60 s
leeway, `access` = [{type, name, actions}].  The signing key is found from the JWT header:
`x5c` (the cert chain, verified against rootcertbundle), else `jwk`, else `kid`, which 2.8
looks up among the keys of the rootcertbundle certs by their *libtrust* key id: sha256 of the
key's DER SubjectPublicKeyInfo, first 30 bytes, base32 without padding, in 12 groups of 4
joined by ':'.  Both `kid` (default) and `x5c` work; RS256 and ES256 both work.

The 60 s leeway means a token stays valid at the registry for a minute after its `exp`: to
make a short `expires_in` (e.g. 2 s, to test a refresh mid-read) bite, the `exp` claim is
written as iat + expires_in - registry_leeway, so the registry refuses the token exactly
expires_in seconds after issue.  The JSON answer still says expires_in.

Needs Debian's python3-jwt (PyJWT 2.6) and python3-cryptography; both are imported lazily so
importing this module never fails."""

import base64
import datetime
import hashlib
import importlib
import json
import os
import secrets
import shutil
import tempfile
import threading
import time
import urllib.parse

from loopback import LoopbackServer, QuietHandler


def libtrust_key_id(public_key):
    """docker/libtrust's KeyID() of a cryptography public key (the JWT `kid` distribution 2.8
    matches against its rootcertbundle)."""
    from cryptography.hazmat.primitives import serialization
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    s = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode().rstrip('=')
    return ':'.join(s[i:i + 4] for i in range(0, len(s), 4))


def make_signing_key(alg='RS256', common_name='ocifs test token issuer'):
    """(private key, self-signed cert) for RS256 (RSA 2048) or ES256 (P-256)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID
    if alg == 'RS256':
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == 'ES256':
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError('alg must be RS256 or ES256, not %r' % alg)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


class _TokenHandler(QuietHandler):
    def do_GET(self):
        self.server.owner._serve(self)

    def do_POST(self):
        # The OAuth2 form (POST with grant_type) is only used with identity tokens; say so.
        self.read_body()
        self.server.owner._note(self, None, [], 405)
        self.send_simple(405, {'error': 'unsupported', 'detail': 'use GET /token'})


class TokenServer:
    """with TokenServer(user='u', password='p', expires_in=2) as ts: ... ts.realm ...

    Knobs (plain attributes, may be changed while running):
      user, password   required Basic credentials; None = no accounts (everyone anonymous)
      anonymous_pull   with accounts: a request without credentials still gets pull-only
                       tokens (like a public repository on Docker Hub); wrong ones are 401
      grant_push       grant `push` when asked (skopeo pushes with the same credentials)
      expires_in       token lifetime in seconds (see the module docstring for the leeway)
    Counters: requests (every request seen), issued (tokens issued), refused (401s), and
    history: one dict per request {time, user, scopes, granted, status}."""

    def __init__(self, user=None, password=None, expires_in=60, grant_push=True,
                 anonymous_pull=False, alg='RS256', key_header='kid', service='ocifs-registry',
                 issuer='ocifs-token-issuer', registry_leeway=60, workdir=None):
        if key_header not in ('kid', 'x5c'):
            raise ValueError('key_header must be kid or x5c')
        importlib.import_module('jwt')    # python3-jwt: fail here, not in a handler thread
        from cryptography.hazmat.primitives import serialization
        self.user, self.password = user, password
        self.anonymous_pull, self.grant_push = anonymous_pull, grant_push
        self.expires_in, self.registry_leeway = expires_in, registry_leeway
        self.alg, self.key_header = alg, key_header
        self.service, self.issuer = service, issuer
        self.key, self.cert = make_signing_key(alg)
        self.kid = libtrust_key_id(self.key.public_key())
        self._workdir, self.workdir, self.cert_path = workdir, None, None
        self._cert_der_b64 = base64.b64encode(
            self.cert.public_bytes(serialization.Encoding.DER)).decode()
        self._lock = threading.Lock()
        self.requests = self.issued = self.refused = 0
        self.history = []
        self._server = None

    # ---- life cycle
    def start(self):
        """Write the cert (cert_path: the registry's rootcertbundle) and start serving."""
        from cryptography.hazmat.primitives import serialization
        self.workdir = self._workdir or tempfile.mkdtemp(prefix='ocifs-tokens-')
        os.makedirs(self.workdir, exist_ok=True)
        self.cert_path = os.path.join(self.workdir, 'token-issuer.crt')
        with open(self.cert_path, 'wb') as f:
            f.write(self.cert.public_bytes(serialization.Encoding.PEM))
        self._server = LoopbackServer(_TokenHandler)
        self._server.owner = self
        return self

    @property
    def running(self):
        return self._server is not None

    def stop(self):
        if self._server:
            self._server.stop()
            self._server = None
        if self.workdir and not self._workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    @property
    def port(self):
        return self._server.port

    @property
    def url(self):
        return 'http://127.0.0.1:%d' % self.port

    @property
    def realm(self):
        """The URL for auth.token.realm (and for a Bearer challenge)."""
        return self.url + '/token'

    @property
    def creds(self):
        """'user:password' for skopeo --creds, or None."""
        return None if self.user is None else '%s:%s' % (self.user, self.password)

    def reset_counters(self):
        with self._lock:
            self.requests = self.issued = self.refused = 0
            self.history = []

    # ---- tokens
    def make_token(self, access, subject='', expires_in=None):
        """A signed JWT for access = [{type, name, actions}] (also usable directly in tests)."""
        import jwt
        now = int(time.time())
        life = self.expires_in if expires_in is None else expires_in
        claims = {'iss': self.issuer, 'sub': subject, 'aud': self.service,
                  'exp': now + life - self.registry_leeway, 'nbf': now - 1, 'iat': now,
                  'jti': secrets.token_hex(12), 'access': access}
        headers = ({'kid': self.kid} if self.key_header == 'kid'
                   else {'x5c': [self._cert_der_b64]})
        return jwt.encode(claims, self.key, algorithm=self.alg, headers=headers)

    def _check_user(self, authz):
        """'' (anonymous), the user name, or None (refuse)."""
        if not authz:
            if self.user is None or self.anonymous_pull:
                return ''
            return None
        if self.user is None:
            return ''                     # no accounts: credentials are ignored
        scheme, _, b64 = authz.partition(' ')
        if scheme.lower() != 'basic':
            return None
        try:
            u, _, p = base64.b64decode(b64.strip()).decode().partition(':')
        except Exception:
            return None
        return u if (u, p) == (self.user, self.password) else None

    def _grant(self, user, scopes):
        access = []
        for scope in scopes:
            # TYPE:NAME:ACTIONS, NAME may not contain ':' but TYPE may carry "(class)"
            typ, _, rest = scope.partition(':')
            name, _, actions = rest.rpartition(':')
            if not name:
                continue
            wanted = [a for a in actions.split(',') if a]
            allowed = {'pull'}
            if self.grant_push and (user or self.user is None):
                allowed |= {'push'}
            got = [a for a in wanted if a in allowed]
            access.append({'type': typ, 'name': name, 'actions': got})
        return access

    def _note(self, h, user, scopes, status, granted=None):
        with self._lock:
            self.requests += 1
            if status == 401:
                self.refused += 1
            if status == 200:
                self.issued += 1
            self.history.append({'time': time.time(), 'path': h.path, 'user': user,
                                 'scopes': scopes, 'granted': granted, 'status': status})

    def _serve(self, h):
        u = urllib.parse.urlsplit(h.path)
        q = urllib.parse.parse_qs(u.query)
        scopes = [s for v in q.get('scope', []) for s in v.split(' ') if s]
        if u.path != '/token':
            self._note(h, None, scopes, 404)
            return h.send_simple(404, {'error': 'not found'})
        service = q.get('service', [None])[0]
        if service is not None and service != self.service:
            self._note(h, None, scopes, 400)
            return h.send_simple(400, {'error': 'invalid_request',
                                       'detail': 'unknown service %r' % service})
        user = self._check_user(h.headers.get('Authorization'))
        if user is None:
            self._note(h, None, scopes, 401)
            return h.send_simple(401, {'details': 'incorrect username or password'},
                                 [('WWW-Authenticate', 'Basic realm="ocifs-token"')])
        access = self._grant(user, scopes)
        token = self.make_token(access, subject=user)
        now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self._note(h, user, scopes, 200, access)
        h.send_simple(200, {'token': token, 'access_token': token,
                            'expires_in': self.expires_in,
                            'issued_at': now.isoformat().replace('+00:00', 'Z')})


def decode_token(token):
    """The (header, claims) of a JWT, unverified (tests look at scopes and lifetimes)."""
    def part(s):
        return json.loads(base64.urlsafe_b64decode(s + '=' * (-len(s) % 4)))
    h, c, _ = token.split('.')
    return part(h), part(c)
