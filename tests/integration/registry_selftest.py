#!/usr/bin/python3
"""Self-test of the registry test infrastructure (registry.py, tokenserver.py, faultproxy.py)
with curl, skopeo and urllib only, no ocifs: each auth mode of a real docker-registry, pushes and
pulls (also through the proxy), token issuance and refusals, manifest lists, raw layout pushes,
every proxy fault, and traffic shaping.

    /usr/bin/python3 tests/integration/registry_selftest.py [CASE...]     exit 0 / 1 / 77

Fails when docker-registry, htpasswd, skopeo, curl or python3-jwt/-cryptography are missing
(scripts/test installs them).  Needs neither root nor /dev/fuse."""

import hashlib
import http.client
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402
from common import Fail, check, log  # noqa: E402
from faultproxy import REFERRERS  # noqa: E402
from loopback import no_proxy_env  # noqa: E402
from registry import (BLOBS, DOCKER_LIST, DOCKER_MANIFEST, MANIFEST_ACCEPT,  # noqa: E402
                      MANIFESTS, OCI_INDEX, OCI_MANIFEST, FaultProxy, Registry, RegistryClient,
                      RegistryError, decode_token, digest_of, http_request, parse_challenge,
                      pull_image, push_image, push_layout, push_manifest_list,
                      require_registry_tools, skopeo)

BIG = 640 * 1024
EMPTY_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a'


def small_image(work):
    return fixtures.build_small_image(work, 'S').write(fixtures.TAG)


def big_layout(work):
    """One gzip layer of ~640 KiB of random bytes (incompressible: the blob is that big)."""
    w = fixtures.OCIWriter(os.path.join(work, 'B'))
    t = fixtures.TarBuilder()
    t.file('random', random.Random(7).randbytes(BIG))
    w.add_layer(t.getvalue())
    w.write(fixtures.TAG)
    return w.path


def layout_blob(layout, digest):
    with open(os.path.join(layout, 'blobs', 'sha256', digest.split(':', 1)[1]), 'rb') as f:
        return f.read()


def curl(*args):
    r = subprocess.run(['curl', '-sS', '--max-time', '30'] + list(args), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60, env=no_proxy_env())
    return r.returncode, r.stdout, r.stderr.decode(errors='replace')


def curl_status(*args):
    rc, out, err = curl('-o', '/dev/null', '-w', '%{http_code}', *args)
    check(rc == 0, 'curl %s failed: %s' % (args, err))
    return int(out)


def raw_get(host, path, headers=None, timeout=10, conn=None):
    """(status, headers, body, complete) over http.client: a cut body is returned, not raised."""
    c = conn or http.client.HTTPConnection(*host.split(':'), timeout=timeout)
    c.request('GET', path, headers=headers or {})
    r = c.getresponse()
    try:
        body, complete = r.read(), True
    except http.client.IncompleteRead as e:
        body, complete = e.partial, False
    if conn is None:
        c.close()
    return r.status, r.headers, body, complete


def sha(b):
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------- cases

def case_auth_none(work):
    """No auth: skopeo push (gzip and zstd), skopeo pull through the proxy, curl ranges."""
    ref = small_image(work)
    with Registry() as reg, FaultProxy(reg) as px:
        push_image(ref, reg, 'small:t')
        push_image(ref, reg, 'small:zstd', compress='zstd')
        c = reg.client()
        layers = c.layers('small', 't')
        zl = c.layers('small', 'zstd')
        check(all(l['mediaType'].endswith('+gzip') for l in layers), layers)
        check(all(l['mediaType'].endswith('+zstd') for l in zl), zl)
        check(px.request_count == 0, 'pushes went to the registry, not the proxy')
        pulled = pull_image(px, 'small:t', work('pulled'))
        man = json.load(open(os.path.join(work('pulled'), 'blobs', 'sha256', json.load(
            open(work('pulled', 'index.json')))['manifests'][0]['digest'].split(':')[1])))
        check([l['digest'] for l in man['layers']] == [l['digest'] for l in layers],
              'pulled layers differ from pushed: %s' % pulled)
        want = sum(l['size'] for l in layers) + man['config']['size']
        check(px.blob_bytes == want, 'proxy blob_bytes %d != %d' % (px.blob_bytes, want))
        check(px.count('GET', BLOBS) == len(layers) + 1, 'blob GETs %d' % px.count('GET', BLOBS))
        d = layers[0]['digest']
        blob = c.blob('small', d)[2]
        url = '%s/v2/small/blobs/%s' % (px.url, d)
        rc, out, err = curl('-r', '10-19', url)
        check(rc == 0 and out == blob[10:20], 'curl -r 10-19 through the proxy: %r %s' % (out, err))
        rc, out, err = curl('-D', '-', '-o', '/dev/null', '-r', '0-1,4-5', url)
        check(b' 206' in out and b'multipart/byteranges' in out,
              'multi-range through the proxy: %r' % out[:300])
        log('  pushed gzip+zstd, pulled through the proxy (%d requests, %d blob bytes)'
            % (px.request_count, px.blob_bytes))
        d = push_image(ref, px, 'viaproxy:t')      # chunked uploads, Location through the proxy
        check(px.count('PATCH') + px.count('PUT') >= 3 and
              reg.client().manifest('viaproxy', d)[0], 'push through the proxy')


def case_auth_htpasswd(work):
    """htpasswd (bcrypt): Basic challenge, wrong credentials refused, right ones work."""
    ref = small_image(work)
    with Registry(auth='htpasswd') as reg, FaultProxy(reg) as px:
        status, h, _ = http_request(reg.url + '/v2/')
        check(status == 401 and h.get('WWW-Authenticate', '').startswith('Basic'),
              'anonymous /v2/: %d %s' % (status, h.get('WWW-Authenticate')))
        check(curl_status('-u', 'ocifs:wrong', reg.url + '/v2/') == 401, 'wrong password')
        check(curl_status('-u', 'nobody:ocifs-secret', reg.url + '/v2/') == 401, 'wrong user')
        check(curl_status('-u', reg.creds, reg.url + '/v2/') == 200, 'right creds')
        push_image(ref, reg, 'small:t')
        try:
            pull_image(px, 'small:t', work('bad'), creds='ocifs:wrong')
            raise Fail('pull with a wrong password succeeded')
        except RegistryError as e:
            check('401' in str(e) or 'unauthorized' in str(e).lower(), str(e)[-500:])
        pull_image(px, 'small:t', work('pulled'))
        check(px.count(status=401) >= 2, 'the proxy saw the 401s')


def case_auth_token(work):
    """Token auth (RS256, libtrust kid): refusals, token contents, expiry at the registry,
    anonymous pull-only tokens, skopeo push and pull through the proxy."""
    ref = small_image(work)
    with Registry(auth='token') as reg, FaultProxy(reg) as px:
        ts = reg.token_server
        status, h, _ = http_request(reg.url + '/v2/')
        ch = parse_challenge(h.get('WWW-Authenticate', ''))
        check(status == 401 and ch.get('realm') == ts.realm and ch.get('service') == ts.service,
              'challenge: %s' % h.get('WWW-Authenticate'))
        push_image(ref, reg, 'small:t')
        check(ts.issued >= 1, 'skopeo push fetched a token')
        ts.reset_counters()
        tok_url = '%s?service=%s&scope=repository:small:pull,push' % (ts.realm, ts.service)
        check(curl_status(tok_url) == 401, 'token without credentials')
        check(curl_status('-u', 'ocifs:wrong', tok_url) == 401, 'token with a wrong password')
        check(curl_status('-u', ts.creds, ts.realm + '?service=other&scope=x') == 400,
              'token for another service')
        ts.expires_in = 2                 # knobs apply to the next token
        rc, out, err = curl('-u', ts.creds, tok_url)
        ans = json.loads(out)
        check(set(ans) >= {'token', 'access_token', 'expires_in', 'issued_at'} and
              ans['expires_in'] == 2, ans)
        hdr, claims = decode_token(ans['token'])
        check(re.fullmatch(r'([A-Z2-7]{4}:){11}[A-Z2-7]{4}', hdr.get('kid', '')), hdr)
        check(claims['access'] == [{'type': 'repository', 'name': 'small',
                                    'actions': ['pull', 'push']}], claims)
        check((ts.requests, ts.refused, ts.issued) == (4, 2, 1),
              'counters %d %d %d' % (ts.requests, ts.refused, ts.issued))
        # the token works, then expires at the registry after expires_in (not 60 s later)
        url = reg.url + '/v2/small/manifests/t'
        fresh = {'Accept': MANIFEST_ACCEPT, 'Authorization': 'Bearer ' + ans['token']}
        check(http_request(url, headers=fresh)[0] == 200, 'fresh token refused')
        time.sleep(max(0, 2.3 - (time.time() - claims['iat'])))
        status, h, _ = http_request(url, headers=fresh)
        check(status == 401 and 'invalid_token' in h.get('WWW-Authenticate', ''),
              'expired token: %d %s' % (status, h.get('WWW-Authenticate')))
        ts.expires_in = 60
        # skopeo through the proxy: wrong credentials refused, right ones pull
        try:
            pull_image(px, 'small:t', work('bad'), creds='ocifs:wrong')
            raise Fail('pull with a wrong password succeeded')
        except RegistryError:
            pass
        before = ts.issued
        pull_image(px, 'small:t', work('pulled'))
        check(ts.issued > before, 'pull fetched a token')
        # anonymous pull-only tokens
        ts.anonymous_pull = True
        rc, out, err = curl(tok_url)
        check(decode_token(json.loads(out)['token'])[1]['access'][0]['actions'] == ['pull'],
              'anonymous token must be pull-only: %r' % out[:200])
        skopeo('inspect', '--raw', '--tls-verify=false', '--no-creds',
               'docker://' + px.ref('small:t'))
        log('  token server: %d requests, %d issued, %d refused' % (ts.requests, ts.issued,
                                                                   ts.refused))


def case_auth_token_es256_x5c(work):
    """ES256 with the certificate in the JWT's x5c header (the other way 2.8.2 finds the key)."""
    ref = small_image(work)
    with Registry(auth='token', alg='ES256', key_header='x5c') as reg:
        push_image(ref, reg, 'small:t')
        c = reg.client()
        c.manifest('small', 't')
        hdr, _ = decode_token(c.token('repository:small:pull'))
        check(hdr['alg'] == 'ES256' and 'x5c' in hdr and 'kid' not in hdr, hdr)


def case_manifest_list(work):
    """OCI index and Docker manifest list pushes with skopeo --all, pulled through the proxy."""
    with Registry() as reg, FaultProxy(reg) as px:
        d_oci = push_manifest_list(reg, 'multi:oci', work('m1'))
        d_docker = push_manifest_list(reg, 'multi:docker', work('m2'), fmt='v2s2')
        c = reg.client()
        for tag, d, lt, mt in (('oci', d_oci, OCI_INDEX, None),
                               ('docker', d_docker, DOCKER_LIST, DOCKER_MANIFEST)):
            got, idx, raw = c.manifest('multi', tag)
            check(got == lt and digest_of(raw) == d, '%s: %s %s' % (tag, got, d))
            plats = [(m['platform']['architecture'], m['platform'].get('variant'))
                     for m in idx['manifests']]
            check(plats == [('amd64', None), ('arm64', 'v8')], plats)
            check(mt is None or all(m['mediaType'] == mt for m in idx['manifests']), idx)
        pull_image(px, 'multi:docker', work('pulled'), all_=True)
        check(px.count('GET', MANIFESTS) >= 3, 'index and both manifests through the proxy')


def case_push_layout(work):
    """Uncompressed layers stay uncompressed, bytes intact: raw push_layout, and push_image."""
    w = fixtures.OCIWriter(work('U'))
    t = fixtures.TarBuilder()
    t.file('plain', b'plain tar layer\n' * 1000)
    w.add_layer(t.getvalue(), 'none')
    w.write(fixtures.TAG)
    with Registry(auth='htpasswd') as reg:
        push_layout(w.path, reg, 'plain:t')
        c = reg.client()
        layers = c.layers('plain', 't')
        check(layers[0]['mediaType'] == 'application/vnd.oci.image.layer.v1.tar', layers)
        body = c.blob('plain', layers[0]['digest'])[2]
        check(body == layout_blob(w.path, layers[0]['digest']), 'blob bytes differ')
        d = push_image(w.path, reg, 'plain:skopeo')
        want = json.load(open(os.path.join(w.path, 'index.json')))['manifests'][0]['digest']
        check(d == want and c.layers('plain', 'skopeo') == layers,
              'push_image is not exact: %s != %s' % (d, want))


def case_faults(work):
    """Every FaultProxy fault, checked with direct requests (no auth registry)."""
    layout = big_layout(work)
    with Registry() as reg, FaultProxy(reg) as px:
        push_layout(layout, reg, 'big:t')
        layer = reg.client().layers('big', 't')[0]
        d, size = layer['digest'], layer['size']
        blob = layout_blob(layout, d)
        path = '/v2/big/blobs/%s' % d
        host = px.host
        # pass-through, keep-alive (HEAD, GET, ranged GET on one connection), byte counter
        conn = http.client.HTTPConnection(*host.split(':'), timeout=10)
        conn.request('HEAD', path)
        r = conn.getresponse()
        check(r.status == 200 and int(r.headers['Content-Length']) == size and r.read() == b'',
              'HEAD')
        s1, _, b1, _ = raw_get(host, path, conn=conn)
        s2, _, b2, _ = raw_get(host, path, {'Range': 'bytes=100-199'}, conn=conn)
        conn.close()
        check((s1, s2) == (200, 206) and b1 == blob and b2 == blob[100:200], 'pass-through')
        check(len({r['peer'] for r in px.records}) == 1, 'keep-alive: %s' % px.records)
        check(px.blob_bytes == size + 100, 'blob_bytes %d' % px.blob_bytes)
        px.reset_counters()
        check(raw_get(host, '/v2/big/manifests/t',
                      {'Accept': MANIFEST_ACCEPT})[0] == 200 and px.blob_bytes == 0,
              'a manifest is not blob bytes')

        f = px.add_fault('ignore_range', count=1)
        s, _, b, _ = raw_get(host, path)                       # no Range: not spent
        s, _, b, _ = raw_get(host, path, {'Range': 'bytes=0-9'})
        check(s == 200 and len(b) == size and f.hits == 1, 'ignore_range: %d %d' % (s, len(b)))
        s, _, b, _ = raw_get(host, path, {'Range': 'bytes=0-9'})
        check(s == 206 and len(b) == 10, 'ignore_range spent after 1')

        f = px.add_fault('reject_multirange', count=1)
        check(raw_get(host, path, {'Range': 'bytes=0-9'})[0] == 206, 'single range passes')
        check(raw_get(host, path, {'Range': 'bytes=0-1,4-5'})[0] == 400, 'multi-range: 400')
        s, h, _, _ = raw_get(host, path, {'Range': 'bytes=0-1,4-5'})
        check(s == 206 and 'multipart/byteranges' in h['Content-Type'], 'then multipart again')

        with px.fault('status', path=MANIFESTS, code=404, count=None) as f:
            check(raw_get(host, path)[0] == 200 and
                  raw_get(host, '/v2/big/manifests/t', {'Accept': MANIFEST_ACCEPT})[0] == 404 and
                  f.hits == 1, 'a fault scoped to manifests')
        check(raw_get(host, '/v2/big/manifests/t', {'Accept': MANIFEST_ACCEPT})[0] == 200,
              'a fault removed by its with block')
        px.add_fault('status_429', retry_after=3)
        s, h, b, _ = raw_get(host, path)
        check(s == 429 and h['Retry-After'] == '3' and b'TOOMANYREQUESTS' in b, '429')
        px.add_fault('status_503', count=2)
        check([raw_get(host, path)[0] for _ in range(3)] == [503, 503, 200], '503 twice')

        px.add_fault('drop_mid_body')
        s, h, b, complete = raw_get(host, path)
        check(s == 200 and not complete and len(b) == size // 2 and b == blob[:size // 2]
              and int(h['Content-Length']) == size, 'drop_mid_body: %d bytes' % len(b))
        px.add_fault('drop_mid_body', after=1000, path=BLOBS)
        s, _, b, complete = raw_get(host, path, {'Range': 'bytes=5000-9999'})
        check(s == 206 and not complete and b == blob[5000:6000], 'drop within a range')

        px.add_fault('corrupt_blob')
        s, _, b, complete = raw_get(host, path)
        diff = [i for i in range(size) if b[i] != blob[i]] if len(b) == size else None
        check(complete and diff == [size // 2], 'corrupt_blob: differing offsets %s' % diff)

        px.add_fault('stall', seconds=1.5)                     # nothing at all
        t0 = time.time()
        try:
            raw_get(host, path, timeout=0.5)
            raise Fail('stall: an answer came')
        except (socket.timeout, TimeoutError):
            pass
        check(time.time() - t0 < 1.4, 'stall: the client timeout fired')
        px.add_fault('stall', seconds=1, after=4096, resume=True)
        t0 = time.time()
        s, _, b, complete = raw_get(host, path)
        check(complete and b == blob and time.time() - t0 >= 0.95, 'stall mid-body, resumed')
        px.add_fault('stall', seconds=0.5, after=4096)
        s, _, b, complete = raw_get(host, path)
        check(not complete and b == blob[:4096], 'stall mid-body, then closed')

        # redirect: another host name and port; Authorization must not follow the hop
        px.reset_counters()
        f = px.add_fault('redirect_blobs_to_other_host', count=3, ttl=1)
        s, h, _, _ = raw_get(host, path, {'Authorization': 'Bearer not-for-the-cdn'})
        loc = h['Location']
        check(s == 307 and loc.startswith('http://localhost:%d/cdn/' % px.cdn_port), loc)
        cdn_path = loc.split('/', 3)[3]
        s, _, b, _ = raw_get('127.0.0.1:%d' % px.cdn_port, '/' + cdn_path, {'Range': 'bytes=0-99'})
        check(s == 206 and b == blob[:100] and not px.cdn_records[-1]['auth'], 'CDN range')
        s, _, _, _ = raw_get('127.0.0.1:%d' % px.cdn_port, '/' + cdn_path,
                             {'Authorization': 'Bearer not-for-the-cdn'})
        check(s == 400 and px.cdn_records[-1]['auth'], 'CDN with Authorization: %d' % s)
        rc, out, err = curl('-L', '-H', 'Authorization: Bearer secret', px.url + path)
        check(rc == 0 and out == blob, 'curl -L through the redirect: %s' % err)
        check(not px.cdn_records[-1]['auth'], 'curl forwarded Authorization to the other host')
        check(px.blob_bytes == 100 + size, 'CDN bytes are blob bytes: %d' % px.blob_bytes)
        time.sleep(1.1)
        check(raw_get('127.0.0.1:%d' % px.cdn_port, '/' + cdn_path)[0] == 403, 'signed URL ttl')
        check(f.hits == 2 and f.remaining == 1, f)
        px.clear_faults()
        check(raw_get(host, path)[0] == 200, 'faults cleared')


def case_expire_token(work):
    """expire_token: a 401 Bearer challenge as if the token expired; the client refreshes."""
    layout = big_layout(work)
    with Registry(auth='token') as reg, FaultProxy(reg) as px:
        ts = reg.token_server
        push_layout(layout, reg, 'big:t')
        c = RegistryClient(px.host, px.creds)          # through the proxy
        d = c.layers('big', 't')[0]['digest']
        tok = c.token('repository:big:pull')
        path = '/v2/big/blobs/%s' % d
        f = px.add_fault('expire_token', path=BLOBS)
        s, h, _, _ = raw_get(px.host, path)                       # no token: plain 401, unspent
        check(s == 401 and f.hits == 0, 'unauthenticated request spent the fault')
        s, h, _, _ = raw_get(px.host, path, {'Authorization': 'Bearer ' + tok})
        ch = parse_challenge(h.get('WWW-Authenticate', ''))
        check(s == 401 and ch.get('error') == 'invalid_token' and ch.get('realm') == ts.realm
              and ch.get('scope') == 'repository:big:pull', 'expire_token: %d %s' % (s, ch))
        px.add_fault('expire_token', path=BLOBS)
        issued = ts.issued
        s, _, b = c.blob('big', d)
        check(s == 200 and len(b) > 0 and ts.issued == issued + 1,
              'client refresh: %d, issued %d -> %d' % (s, issued, ts.issued))


def case_redirect_skopeo(work):
    """skopeo pulls through redirects to the other host with token auth; no Authorization
    reaches the CDN listener."""
    ref = small_image(work)
    with Registry(auth='token') as reg, FaultProxy(reg) as px:
        push_image(ref, reg, 'small:t')
        f = px.add_fault('redirect_blobs_to_other_host', count=None)
        pull_image(px, 'small:t', work('pulled'))
        check(f.hits >= 3 and len(px.cdn_records) == f.hits, 'redirects %d' % f.hits)
        check(all(r['status'] == 200 and not r['auth'] for r in px.cdn_records),
              px.cdn_records)


def case_shape(work):
    """Bandwidth (token bucket) and added latency."""
    layout = big_layout(work)
    with Registry() as reg, FaultProxy(reg, latency_ms=200) as px:
        push_layout(layout, reg, 'big:t')
        d = reg.client().layers('big', 't')[0]['digest']
        t0 = time.time()
        raw_get(px.host, '/v2/')
        lat = time.time() - t0
        check(0.19 <= lat < 1.0, 'latency %.3f' % lat)
        px.shape(bandwidth_bps=8 * 1024 * 1024)                # 1 MiB/s
        t0 = time.time()
        s, _, b, _ = raw_get(px.host, '/v2/big/blobs/' + d, timeout=30)
        dt = time.time() - t0
        want = len(b) / (1024 * 1024)
        check(s == 200 and 0.8 * want <= dt <= 2.5 * want + 0.3,
              '%d bytes at 8 Mbit/s took %.2fs (expected ~%.2fs)' % (len(b), dt, want))
        log('  latency %.0f ms, %d bytes in %.2fs at 8 Mbit/s' % (lat * 1000, len(b), dt))


def case_referrers(work):
    """FaultProxy(referrers_api=True): a manifest with a subject gets OCI-Subject and is listed
    by the emulated referrers API (filtered by artifactType or not); the registry keeps no
    referrers tag.  Without the emulation the registry's own 404 comes through."""
    empty = b'{}'
    art_type = 'application/vnd.example.sig.v1'
    with Registry() as reg, FaultProxy(reg, referrers_api=True) as px:
        c = RegistryClient(px.host)
        cfg, data = b'{"architecture":"amd64","os":"linux"}', b'not really a tar'
        cfg_d, layer = c.put_blob('app', cfg), c.put_blob('app', data)
        image = json.dumps({
            'schemaVersion': 2, 'mediaType': OCI_MANIFEST,
            'config': {'mediaType': 'application/vnd.oci.image.config.v1+json', 'digest': cfg_d,
                       'size': len(cfg)},
            'layers': [{'mediaType': 'application/vnd.oci.image.layer.v1.tar', 'digest': layer,
                        'size': len(data)}]}).encode()
        subject = c.put_manifest('app', 'v1', image, OCI_MANIFEST)
        check(c.put_blob('app', empty) == EMPTY_DIGEST, 'the empty descriptor digest')
        art = json.dumps({
            'schemaVersion': 2, 'mediaType': OCI_MANIFEST, 'artifactType': art_type,
            'config': {'mediaType': 'application/vnd.oci.empty.v1+json', 'digest': EMPTY_DIGEST,
                       'size': 2},
            'layers': [{'mediaType': 'application/vnd.example.sig.layer.v1', 'digest': layer,
                        'size': len(data)}],
            'subject': {'mediaType': OCI_MANIFEST, 'digest': subject, 'size': len(image)},
            'annotations': {'dev.example.who': 'selftest'}}).encode()
        s, h, b = c.request('PUT', '/v2/app/manifests/' + digest_of(art),
                            {'Content-Type': OCI_MANIFEST}, data=art)
        check(s == 201 and h.get('OCI-Subject') == subject,
              'artifact PUT: %d OCI-Subject %s %r' % (s, h.get('OCI-Subject'), b[:200]))
        # a second referrer without artifactType: its config's media type stands in
        other = json.dumps({
            'schemaVersion': 2, 'mediaType': OCI_MANIFEST,
            'config': {'mediaType': 'application/vnd.example.other.config.v1+json',
                       'digest': EMPTY_DIGEST, 'size': 2},
            'layers': [], 'subject': {'mediaType': OCI_MANIFEST, 'digest': subject,
                                      'size': len(image)}}).encode()
        other_d = c.put_manifest('app', 'other', other, OCI_MANIFEST)
        check(c.put_manifest('app', 'v2', image, OCI_MANIFEST) == subject,
              'a manifest without a subject')
        px.reset_counters()
        want = {'mediaType': OCI_MANIFEST, 'digest': digest_of(art), 'size': len(art),
                'artifactType': art_type, 'annotations': {'dev.example.who': 'selftest'}}
        want_other = {'mediaType': OCI_MANIFEST, 'digest': other_d, 'size': len(other),
                      'artifactType': 'application/vnd.example.other.config.v1+json'}
        path = '/v2/app/referrers/' + subject

        def referrers(query=''):
            s, h, b = http_request(px.url + path + query, headers={'Accept': OCI_INDEX})
            check(s == 200 and h.get('Content-Type') == OCI_INDEX,
                  'referrers%s: %d %s %r' % (query, s, h.get('Content-Type'), b[:200]))
            idx = json.loads(b)
            check(idx['schemaVersion'] == 2 and idx['mediaType'] == OCI_INDEX, idx)
            return h, idx['manifests']

        h, got = referrers()
        check(got == [want, want_other] and 'OCI-Filters-Applied' not in h, got)
        h, got = referrers('?artifactType=' + urllib.parse.quote(art_type, safe=''))
        check(got == [want] and h.get('OCI-Filters-Applied') == 'artifactType', got)
        h, got = referrers('?artifactType=application%2Fvnd.example.none')
        check(got == [] and h.get('OCI-Filters-Applied') == 'artifactType', got)
        s, _, b = http_request(px.url + '/v2/app/referrers/sha256:' + '0' * 64)
        check(s == 200 and json.loads(b)['manifests'] == [], 'unknown digest: %d %r' % (s, b))
        s, _, b = http_request(px.url + '/v2/app/referrers/sha256:abc')
        check(s == 400 and b'DIGEST_INVALID' in b, 'malformed digest: %d %r' % (s, b))
        check(px.referrers_requests == 5 and px.count('GET', REFERRERS) == 5 and
              px.count('GET', REFERRERS, 200) == 4, 'referrers counted: %d %s'
              % (px.referrers_requests, px.records))
        check(px.referrers('app', subject) == [want, want_other], 'px.referrers()')
        # the registry itself made no referrers tag and has no referrers API
        tag = 'sha256-' + subject.split(':', 1)[1]
        s, _, _ = reg.client().get('/v2/app/manifests/' + tag, {'Accept': MANIFEST_ACCEPT})
        check(s == 404, 'the registry has the tag %s: %d' % (tag, s))
        s, _, _ = http_request(reg.url + path)
        check(s == 404, 'docker-registry answered its referrers path: %d' % s)
        # faults apply to the emulated answers; switched off, the registry's 404 comes through
        with px.fault('status_503', path=REFERRERS) as f:
            check(http_request(px.url + path)[0] == 503 and f.hits == 1, 'a fault on referrers')
        px.referrers_api = False
        s, h, _ = c.request('PUT', '/v2/app/manifests/' + digest_of(art),
                            {'Content-Type': OCI_MANIFEST}, data=art)
        check(s == 201 and 'OCI-Subject' not in h, 'OCI-Subject without the emulation')
        check(http_request(px.url + path)[0] == 404 and px.referrers_requests == 7,
              'forwarded referrers request')
        log('  %d referrers recorded for %s' % (len(px.referrers('app', subject)), subject))


CASES = {
    'auth_none': case_auth_none,
    'auth_htpasswd': case_auth_htpasswd,
    'auth_token': case_auth_token,
    'auth_token_es256_x5c': case_auth_token_es256_x5c,
    'manifest_list': case_manifest_list,
    'push_layout': case_push_layout,
    'faults': case_faults,
    'expire_token': case_expire_token,
    'redirect_skopeo': case_redirect_skopeo,
    'shape': case_shape,
    'referrers': case_referrers,
}


class _Work:
    def __init__(self, name):
        self.path = tempfile.mkdtemp(prefix='ocifs-regtest-%s-' % name,
                                     dir=os.environ.get('OCIFS_TEST_TMP') or None)

    def __call__(self, *parts):
        return os.path.join(self.path, *parts)

    def __fspath__(self):
        return self.path


def main(argv):
    names = argv[1:] or list(CASES)
    try:
        require_registry_tools(('skopeo', 'curl'))
    except Fail as e:
        print('FAIL:', e)
        return 1
    failed = []
    t_all = time.time()
    for name in names:
        if name not in CASES:
            print('unknown case %s; known: %s' % (name, ' '.join(CASES)))
            return 2
        work = _Work(name)
        t0 = time.time()
        log('== %s' % name)
        try:
            CASES[name](work)
            log('PASS %s (%.1fs)' % (name, time.time() - t0))
        except Exception as e:
            log('FAIL %s: %s' % (name, e if isinstance(e, (Fail, RegistryError))
                                 else ''.join(traceback.format_exception(e))))
            failed.append(name)
        finally:
            if os.environ.get('OCIFS_TEST_KEEP'):
                log('keeping', work.path)
            else:
                shutil.rmtree(work.path, ignore_errors=True)
    log('%d cases in %.1fs' % (len(names), time.time() - t_all))
    if failed:
        log('failed: ' + ' '.join(failed))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
