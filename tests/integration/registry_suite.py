#!/usr/bin/python3
"""ocifs registry integration tests: real mounts from a real docker-registry on 127.0.0.1
(registry.py), through a fault-injecting proxy (faultproxy.py), compared with `umoci unpack`
of the same image.  Usage: /usr/bin/python3 registry_suite.py [CASE...]   (no CASE: all)

Each case is its own meson test (tests/integration/meson.build).  Exit codes: 0 pass, 1 fail
(also when umoci/skopeo/fusermount3/docker-registry/htpasswd/python3-jwt, which scripts/test
installs, are missing), 77 skip (no /dev/fuse, not root).  Env: OCIFS_BIN, OCIFS_TEST_KEEP=1, OCIFS_TEST_TMP, as for suite.py.

Every ocifs command runs with HOME, XDG_RUNTIME_DIR, XDG_CONFIG_HOME and DOCKER_CONFIG pointing
into the case's work dir (and REGISTRY_AUTH_FILE removed), so no credential file of the machine
is ever read, and tests only talk to the 127.0.0.1 servers they start.

Ways to make a read go to the network on a warm layer index ("index-only cache"): mount once
with cache A, then copy A without its blobs/ directory to B.  Mounting with B finds every layer
index (no stream at mount time) but no blob bytes, so each file read is a range request."""

import base64
import errno
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures  # noqa: E402
from suite import tree_equal  # noqa: E402
from common import (OCIFS, Fail, Mount, Skip, check, daemon_pids, is_mounted, log, main, run,  # noqa: E402
                    supervisor_pids, unmount)
from loopback import no_proxy_env  # noqa: E402
from registry import (BLOBS, DOCKER_LIST, DOCKER_MANIFEST, MANIFESTS, OCI_INDEX,  # noqa: E402
                      FaultProxy, Registry, push_image, push_layout, push_manifest_list,
                      require_registry_tools, skopeo)

TAG = fixtures.TAG
REPO = 'team/app'
# Short deadlines (--read-timeout etc.) so that the fault cases take seconds; the defaults are
# 30 s / 2 min / 30 s (include/ocifs/registry/registry_client.hpp).
READ_TIMEOUT = 3
STALL_TIMEOUT = 2
REQUEST_TIMEOUT = 6
FAST = ['--read-timeout', '%ds' % READ_TIMEOUT, '--stall-timeout', '%ds' % STALL_TIMEOUT,
        '--request-timeout', '%ds' % REQUEST_TIMEOUT]
STREAM_WAIT = READ_TIMEOUT / 3  # CachedBlobSource::Options::stream_wait: a third of the read deadline
FAIL_FAST = 2  # s: CachedBlobSource::Options::fail_fast
REG_TOOLS = ('umoci', 'skopeo')


# ------------------------------------------------------------------ helpers

def umoci_image(work):
    """The umoci multi-layer image (work/L, tag t) and its `umoci unpack` (work/ref/rootfs)."""
    require_registry_tools(('skopeo', 'umoci'))
    layout = fixtures.build_umoci_image(work.path)
    return layout, fixtures.umoci_unpack(layout, TAG, work('ref'))


def clean_env(work, **extra):
    """os.environ for ocifs: loopback never proxied, no credential file of this machine."""
    env = no_proxy_env()
    for k in ('REGISTRY_AUTH_FILE', 'OCIFS_CACHE_DIR', 'CONTAINERS_REGISTRIES_CONF'):
        env.pop(k, None)
    home = work('home')
    for d in ('home', 'home/run', 'home/config', 'home/.docker'):
        os.makedirs(work(d), exist_ok=True)
    env.update(HOME=home, XDG_RUNTIME_DIR=work('home/run'), XDG_CONFIG_HOME=work('home/config'),
               DOCKER_CONFIG=work('home/.docker'),
               CONTAINERS_REGISTRIES_CONF=work('home/registries.conf'))
    if not os.path.exists(work('home/registries.conf')):
        open(work('home/registries.conf'), 'w').close()
    env.update(extra)
    return env


def oc(work, *args, env=None, timeout=None, **kw):
    """Run ocifs with the clean env."""
    kw_t = {} if timeout is None else {'timeout': timeout}
    return run([OCIFS] + [str(a) for a in args], env=env or clean_env(work), **kw_t, **kw)


def mount(work, ref, mnt, cache, extra=(), env=None, **kw):
    return Mount(ref, mnt, cache, extra=list(extra), env=env or clean_env(work), **kw)


def status_of(work, mnt):
    """`ocifs status --json MNT`, parsed."""
    r = oc(work, 'status', '--json', mnt)
    check(r.returncode == 0, 'ocifs status: exit %d: %s' % (r.returncode, err_text(r)[-500:]))
    return json.loads(r.stdout)


def err_text(r):
    return (r.stderr + r.stdout).decode(errors='replace')


def refused(work, args, what, timeout=None, env=None, mnt=None):
    """`ocifs mount ARGS MNT` must fail cleanly: exit 1..127, nothing mounted, a message.
    Returns (stderr text, seconds taken)."""
    mnt = mnt or work('mnt-refused')
    os.makedirs(mnt, exist_ok=True)
    t0 = time.time()
    try:
        r = oc(work, 'mount', *args, mnt, env=env, timeout=timeout)
    finally:
        mounted = is_mounted(mnt)
        unmount(mnt)
    dt = time.time() - t0
    err = err_text(r)
    check(r.returncode != 0, '%s: mount succeeded, must be refused (stderr %r)' % (what, err))
    check(0 < r.returncode < 128, '%s: exit %d looks like a crash: %s' % (what, r.returncode, err[-2000:]))
    check(not mounted, '%s: exit %d but mounted' % (what, r.returncode))
    check(err.strip(), '%s: refused without a message' % what)
    log('  refused %s in %.1fs (exit %d): %s' % (what, dt, r.returncode,
                                                 err.strip().splitlines()[-1][:300]))
    return err, dt


def layer_descs(reg, repo_tag):
    repo, _, tag = repo_tag.rpartition(':')
    return reg.client().layers(repo, tag)


def compressed_size(reg, repo_tag):
    """Sum of the layer sizes and the config size of repo_tag (first platform)."""
    repo, _, tag = repo_tag.rpartition(':')
    c = reg.client()
    _, man, _ = c.manifest(repo, tag)
    if 'manifests' in man:
        _, man, _ = c.manifest(repo, man['manifests'][0]['digest'])
    return sum(l['size'] for l in man['layers']) + man['config']['size']


def index_only_copy(src, dst):
    """A copy of cache src without its blob bytes (layer indexes, documents, refs only; no
    access record either, which would have the next mount prefetch what the first one read)."""
    shutil.copytree(src, dst, ignore=lambda d, names: ['blobs', 'access'] if os.path.samefile(d, src) else [])
    check(not os.path.exists(os.path.join(dst, 'blobs')), 'index-only copy has blobs')
    return dst


def warm_index_cache(work, ref, reference, name='A'):
    """Mount ref cold with cache work/cache-A (tree compared), return an index-only copy."""
    cache = work('cache-' + name)
    with mount(work, ref, work('mnt-' + name), cache):
        tree_equal(reference, work('mnt-' + name), 'cold mount to warm the index')
    return index_only_copy(cache, work('cache-' + name + '-idx'))


def regular_files(root):
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                out.append(os.path.relpath(p, root))
    return sorted(out)


def read_file(path):
    with open(path, 'rb') as f:
        return f.read()


def format_byte_size(n):
    """cache::format_byte_size (src/cache/byte_size.cpp)."""
    units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB']
    if n < 1024:
        return '%d B' % n
    v, u = float(n), 0
    while v >= 1024 and u < 6:
        v /= 1024
        u += 1
    if v >= 99.95:
        return '%.0f %s' % (v, units[u])
    if v >= 9.995:
        return '%.1f %s' % (v, units[u])
    return '%.2f %s' % (v, units[u])


def no_secret(text, secrets_, what):
    for s in secrets_:
        check(s not in text, '%s: the output contains the secret %r:\n%s' % (what, s, text[-2000:]))


# ------------------------------------------------------------------ 1. anonymous pull

def case_anonymous(work):
    """Anonymous pull through the proxy: cold mount = umoci unpack and fetches at most the
    image's compressed size; warm remount fetches 0 blob bytes (no blob request); --offline
    makes 0 requests; --offline for a never-seen tag (and an empty cache) is refused with a
    clear message and 0 requests; ls, cat, inspect --json against the registry."""
    layout, reference = umoci_image(work)
    with Registry() as reg, FaultProxy(reg) as px:
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':v1')
        ref = px.ref(REPO + ':v1')
        total = compressed_size(reg, REPO + ':v1')
        cache, mnt = work('cache'), work('mnt')
        with mount(work, ref, mnt, cache):
            tree_equal(reference, mnt, 'cold mount')
            status = status_of(work, mnt)
            sizes = [l['size'] for l in layer_descs(reg, REPO + ':v1')]
            check([l['size'] for l in status['layers']] == sizes, 'status sizes %r, want %r' % (status, sizes))
            for l in status['layers']:
                check(l['source'] == 'registry' and l['state'] == 'ready' and l['fetch_errors'] == 0
                      and l['cached'] == l['size'] and 0 < l['fetched'] <= l['size']
                      and l['reads'] >= l['cache_hits'] > 0,
                      'status after a cold mount and a full read: %r' % l)
        cold = px.blob_bytes
        log('  cold mount + reading every file: %d blob bytes, %d requests (image: %d bytes)' % (
            cold, px.request_count, total))
        check(cold > 0, 'cold mount fetched no blob bytes')
        check(cold <= total, 'cold mount + reading every file fetched %d blob bytes, more than the '
              "image's compressed size %d (issue 3: no more than once)" % (cold, total))

        px.reset_counters()
        with mount(work, ref, mnt, cache):
            tree_equal(reference, mnt, 'warm remount')
        log('  warm remount: %d requests, %d blob bytes' % (px.request_count, px.blob_bytes))
        check(px.blob_bytes == 0 and px.count(path=BLOBS) == 0,
              'warm remount: %d blob bytes in %d blob requests, want 0' % (
                  px.blob_bytes, px.count(path=BLOBS)))

        px.reset_counters()
        with mount(work, ref, mnt, cache, extra=['--offline']):
            tree_equal(reference, mnt, '--offline remount')
        check(px.request_count == 0, '--offline made %d requests: %s' % (
            px.request_count, [(r['method'], r['path']) for r in px.records]))

        # --offline, tag never resolved with this cache / empty cache
        px.reset_counters()
        err, _ = refused(work, ['--cache-dir', cache, '--offline', px.ref(REPO + ':never')],
                         '--offline, never-seen tag', timeout=60)
        check('--offline' in err and REPO + ':never' in err and 'never' in err.replace(
            REPO + ':never', ''), '--offline never-seen tag: message must name the image and say '
              'the tag was never resolved with --offline:\n%s' % err)
        err, _ = refused(work, ['--cache-dir', work('empty-cache'), '--offline', ref],
                         '--offline, empty cache', timeout=60)
        check('--offline' in err and REPO in err, '--offline empty cache: message %r' % err)
        check(px.request_count == 0, '--offline refusals made %d requests' % px.request_count)

        # ls / cat / inspect --json, against the registry (fresh cache: bytes come from it)
        c2 = work('cache-cli')
        r = oc(work, 'ls', '--cache-dir', c2, ref, check_rc=True)
        for n in os.listdir(reference):
            check(os.fsencode(n) in r.stdout, 'ls /: %r missing:\n%s' % (n, r.stdout.decode(errors='replace')))
        r = oc(work, 'ls', '--cache-dir', c2, ref, '/opq', check_rc=True)
        check(b'only_new' in r.stdout and b'a1' not in r.stdout, 'ls /opq: %r' % r.stdout)
        for p in ('etc/os-release', 'data/large', 'hl/orig'):
            r = oc(work, 'cat', '--cache-dir', c2, ref, p, check_rc=True)
            check(r.stdout == read_file(os.path.join(reference, p)), 'cat %s: wrong bytes (%d)' % (
                p, len(r.stdout)))
        r = oc(work, 'cat', '--cache-dir', c2, ref, 'no/such/file')
        check(0 < r.returncode < 128 and r.stderr.strip(), 'cat of a missing file: exit %d %r' % (
            r.returncode, r.stderr))
        r = oc(work, 'inspect', '--json', '--cache-dir', c2, ref, check_rc=True)
        try:
            j = json.loads(r.stdout)
        except ValueError as e:
            raise Fail('inspect --json is not JSON (%s): %r' % (e, r.stdout[:2000]))
        flat = json.dumps(j)
        for l in layer_descs(reg, REPO + ':v1'):
            check(l['digest'] in flat, 'inspect --json lacks layer %s' % l['digest'])
        r = oc(work, 'inspect', '--cache-dir', c2, ref, check_rc=True)
        check(b'127.0.0.1' in r.stdout or REPO.encode() in r.stdout,
              'inspect does not name the image: %r' % r.stdout[:500])


# ------------------------------------------------------------------ 2. compression variants

def case_compression(work):
    """gzip, zstd (skopeo --dest-compress-format zstd), uncompressed (raw push of an
    uncompressed conversion) and Docker v2s2: media types checked at the registry; each cold
    mount = umoci unpack (of the gzip original); each warm remount fetches 0 blob bytes."""
    layout, reference = umoci_image(work)
    conv = fixtures.skopeo_convert(layout, work.path)
    plain_layout = conv['uncompressed'][len('oci:'):].rsplit(':', 1)[0]
    failures = []
    with Registry() as reg, FaultProxy(reg) as px:
        c = reg.client()
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':gzip')
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':zstd', compress='zstd')
        push_layout(plain_layout, reg, REPO + ':plain')
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':docker', fmt='v2s2')
        want = {'gzip': (None, '.tar+gzip'), 'zstd': (None, '.tar+zstd'),
                'plain': (None, 'image.layer.v1.tar'),
                'docker': (DOCKER_MANIFEST, 'docker.image.rootfs.diff.tar.gzip')}
        for tag, (mt, suffix) in want.items():
            got_mt, man, _ = c.manifest(REPO, tag)
            check(mt is None or got_mt == mt, '%s: manifest type %s' % (tag, got_mt))
            check(all(l['mediaType'].endswith(suffix) for l in man['layers']),
                  '%s: layer media types %s' % (tag, [l['mediaType'] for l in man['layers']]))
        for tag in want:
            try:
                ref = px.ref('%s:%s' % (REPO, tag))
                cache, mnt = work('cache-' + tag), work('mnt-' + tag)
                px.reset_counters()
                with mount(work, ref, mnt, cache):
                    tree_equal(reference, mnt, '%s (cold)' % tag)
                log('  %s: cold mount + full read fetched %d blob bytes' % (tag, px.blob_bytes))
                check(px.blob_bytes > 0, '%s: no blob bytes on a cold mount' % tag)
                px.reset_counters()
                with mount(work, ref, mnt, cache):
                    tree_equal(reference, mnt, '%s (warm)' % tag)
                check(px.blob_bytes == 0, '%s: warm remount fetched %d blob bytes' % (tag, px.blob_bytes))
            except Fail as e:
                failures.append('%s: %s' % (tag, e))
    check(not failures, '\n'.join(failures))


# ------------------------------------------------------------------ 3. Basic auth, credential sources

HELPER = '''#!/bin/sh
# docker credential helper for the ocifs tests: logs its calls, answers for one host
read -r url
echo "$0 $1 $url" >> "%(log)s"
if [ "$1" = get ] && [ "$url" = "%(host)s" -o "$url" = "http://%(host)s" -o "$url" = "https://%(host)s" ]; then
  printf '{"ServerURL":"%%s","Username":"%(user)s","Secret":"%(password)s"}\\n' "$url"
  exit 0
fi
echo "credentials not found in native keychain"
exit 1
'''


def case_auth_basic(work):
    """htpasswd Basic auth: no creds and wrong creds refused (exit 1..127, the message names the
    registry and 401/unauthorized, never a password); --creds, --authfile, REGISTRY_AUTH_FILE,
    $DOCKER_CONFIG/config.json (auths), a credential helper via credsStore and via credHelpers
    (docker-credential-NAME on PATH, called with the registry host): each mount = umoci unpack."""
    layout, reference = umoci_image(work)
    password = 'Pw-s3cret-9f27xq'
    wrong = 'Wrong-pw-77aa3k'
    with Registry(auth='htpasswd', user='ocifs', password=password) as reg, FaultProxy(reg) as px:
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':v1')
        ref, host = px.ref(REPO + ':v1'), px.host
        b64 = base64.b64encode(('ocifs:' + password).encode()).decode()

        # refusals
        for what, extra in (('no credentials', []), ('wrong password', ['--creds', 'ocifs:' + wrong]),
                            ('wrong user', ['--creds', 'nobody:' + password])):
            err, _ = refused(work, ['--cache-dir', work('cache-bad')] + extra + [ref], what, timeout=120)
            check(host in err, '%s: message does not name the registry %s:\n%s' % (what, host, err))
            check('401' in err or 'unauthorized' in err.lower(),
                  '%s: message does not say 401/unauthorized:\n%s' % (what, err))
            no_secret(err, [password, wrong, b64], what)
        r = oc(work, 'ls', '--cache-dir', work('cache-bad'), '--creds', 'ocifs:' + wrong, ref)
        check(0 < r.returncode < 128, 'ls with a wrong password: exit %d' % r.returncode)
        no_secret(err_text(r), [password, wrong], 'ls with a wrong password')

        # credential sources, each with a fresh cache (so blobs are fetched with those creds)
        authjson = work('auth.json')
        with open(authjson, 'w') as f:
            json.dump({'auths': {host: {'auth': b64}}}, f)
        bindir = work('bin')
        os.makedirs(bindir)
        helper_log = work('helper.log')
        for name in ('ocifsstore', 'ocifshelper'):
            p = os.path.join(bindir, 'docker-credential-' + name)
            with open(p, 'w') as f:
                f.write(HELPER % {'log': helper_log, 'host': host, 'user': 'ocifs',
                                  'password': password})
            os.chmod(p, 0o755)
        path_env = bindir + ':' + os.environ.get('PATH', '/usr/bin:/bin')

        def docker_config(doc):
            d = work('dockercfg-%d' % len(os.listdir(work.path)))
            os.makedirs(d)
            with open(os.path.join(d, 'config.json'), 'w') as f:
                json.dump(doc, f)
            return d

        sources = [
            ('--creds', ['--creds', 'ocifs:' + password], {}),
            ('--authfile', ['--authfile', authjson], {}),
            ('REGISTRY_AUTH_FILE', [], {'REGISTRY_AUTH_FILE': authjson}),
            ('DOCKER_CONFIG auths', [], {'DOCKER_CONFIG': docker_config({'auths': {host: {'auth': b64}}})}),
            ('credsStore', [], {'PATH': path_env,
                                'DOCKER_CONFIG': docker_config({'credsStore': 'ocifsstore'})}),
            ('credHelpers', [], {'PATH': path_env, 'DOCKER_CONFIG': docker_config(
                {'auths': {'other.example:5000': {'auth': 'eDp5'}},
                 'credHelpers': {host: 'ocifshelper'}})}),
        ]
        failures = []
        for i, (what, extra, envx) in enumerate(sources):
            try:
                env = clean_env(work, **envx)
                px.reset_counters()
                with mount(work, ref, work('mnt'), work('cache-%d' % i), extra=extra, env=env) as m:
                    tree_equal(reference, work('mnt'), 'credentials from %s' % what)
                    no_secret(err_text(m.result), [password, b64], 'mount with %s' % what)
                check(px.count(path=BLOBS, status=200) > 0,
                      '%s: no blob was fetched (%s)' % (what, px.records[-5:]))
                if what in ('credsStore', 'credHelpers'):
                    calls = open(helper_log).read() if os.path.exists(helper_log) else ''
                    name = 'ocifsstore' if what == 'credsStore' else 'ocifshelper'
                    check(re.search(r'docker-credential-%s get (https?://)?%s' % (name, re.escape(host)),
                                    calls), '%s: helper not called with %s; calls:\n%s' % (what, host, calls))
            except Fail as e:
                failures.append('%s: %s' % (what, e))
        if os.path.exists(helper_log):
            log('  helper calls: %s' % open(helper_log).read().strip().replace('\n', '; '))
        check(not failures, '\n'.join(failures))


def _proc_text(pid, what):
    with open('/proc/%d/%s' % (pid, what), 'rb') as f:
        return f.read().replace(b'\0', b' ').decode(errors='replace')


def _children(pid):
    """Pids whose parent is pid (from /proc/*/stat)."""
    out = []
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                stat_ = open('/proc/%s/stat' % p).read()
            except OSError:
                continue
            if int(stat_.rsplit(')', 1)[1].split()[1]) == pid:
                out.append(int(p))
    return out


def case_auth_creds_forms(work):
    """Credentials kept out of /proc (issue 9 §5), htpasswd Basic auth: --creds USER:PASS and
    --creds=USER:PASS are overwritten in argv before the daemon forks: /proc/PID/cmdline of the
    daemon shows no password, nor does the waiting parent's (caught while the daemon is blocked
    opening a FIFO in place of a layout's oci-layout); --creds-file FILE, -o creds_file=FILE,
    --creds - (standard input, with the backgrounding mount) and OCIFS_CREDS each mount the image
    (= umoci unpack), with no password in the daemon's cmdline or environ; a credentials file
    without ':' is refused (exit 1), --creds with --creds-file is a usage error (exit 2)."""
    w = fixtures.build_small_image(work.path)
    w.write(TAG)
    reference = fixtures.umoci_unpack(w.path, TAG, work('ref'))
    password = 'Cr3ds-never-in-proc-5k'
    creds = 'ocifs:' + password
    with Registry(auth='htpasswd', user='ocifs', password=password) as reg:
        push_image('oci:%s:%s' % (w.path, TAG), reg, REPO + ':v1')
        ref = reg.ref(REPO + ':v1')
        creds_file = work('creds.txt')
        with open(creds_file, 'w') as f:
            f.write(creds + '\n')
        forms = [
            ('--creds', ['--creds', creds], {}, None),
            ('--creds=', ['--creds=' + creds], {}, None),
            ('--creds-file', ['--creds-file', creds_file], {}, None),
            ('-o creds_file=', ['-o', 'creds_file=' + creds_file], {}, None),
            ('--creds -', ['--creds', '-'], {}, (creds + '\n').encode()),
            ('OCIFS_CREDS', [], {'OCIFS_CREDS': creds}, None),
        ]
        failures = []
        for i, (what, extra, envx, stdin) in enumerate(forms):
            mnt = work('mnt-%d' % i)
            os.makedirs(mnt)
            try:
                r = run([OCIFS, 'mount', '--cache-dir', work('cache-%d' % i)] + extra + [ref, mnt],
                        env=clean_env(work, **envx), input=stdin)
                check(r.returncode == 0 and is_mounted(mnt), '%s: mount exit %d: %s' % (
                    what, r.returncode, err_text(r)[-1000:]))
                no_secret(err_text(r), [password], 'mount with %s' % what)
                # the supervisor (the `ocifs mount` process) and its server: neither shows them
                pids = daemon_pids(mnt)
                check(len(pids) == 2, '%s: daemon pids %s' % (what, pids))
                for pid in pids:
                    cmdline, environ = _proc_text(pid, 'cmdline'), _proc_text(pid, 'environ')
                    no_secret(cmdline, [password, creds], '%s: /proc/%d/cmdline' % (what, pid))
                    no_secret(environ, [password, creds], '%s: /proc/%d/environ' % (what, pid))
                cmdline = [_proc_text(p, 'cmdline') for p in pids if not _proc_text(p, 'cmdline').startswith('ocifs:')][0]
                if what.startswith('--creds') and what != '--creds -' and what != '--creds-file':
                    check('x' * len(creds) in cmdline, '%s: the value is not overwritten in place: %r' % (
                        what, cmdline))
                tree_equal(reference, mnt, 'credentials from %s' % what)
                log('  %s: daemons %s: %s' % (what, pids, cmdline.strip()[-120:]))
            except Fail as e:
                failures.append(str(e))
            finally:
                unmount(mnt)
        check(not failures, '\n'.join(failures))

        # the parent too, caught while the daemon waits: oci-layout is a FIFO nobody writes yet
        layout = work('fifo-layout')
        shutil.copytree(w.path, layout)
        os.unlink(os.path.join(layout, 'oci-layout'))
        os.mkfifo(os.path.join(layout, 'oci-layout'))
        mnt = work('mnt-fifo')
        os.makedirs(mnt)
        p = subprocess.Popen([OCIFS, 'mount', '--cache-dir', work('cache-fifo'), '--creds', creds,
                              'oci:%s:%s' % (layout, TAG), mnt], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=clean_env(work))
        try:
            deadline = time.time() + 30  # s: a fork takes milliseconds
            children = []
            while not children and p.poll() is None and time.time() < deadline:
                children = _children(p.pid)
                time.sleep(0.02)
            check(children, 'HANG or exit: no daemon forked by the mount (exit %r)' % p.poll())
            for pid, who in ((p.pid, 'parent'), (children[0], 'daemon')):
                cmdline = _proc_text(pid, 'cmdline')
                no_secret(cmdline, [password], '/proc/%d/cmdline of the %s' % (pid, who))
                check('--creds ' + 'x' * len(creds) in cmdline, '%s: %r' % (who, cmdline))
            log('  parent %d and daemon %d: %s' % (p.pid, children[0], cmdline.strip()[-100:]))
            with open(os.path.join(layout, 'oci-layout'), 'wb'):
                pass  # the daemon's open returns; a FIFO is no layout file: the mount is refused
            out, err = p.communicate(timeout=30)
            check(p.returncode == 1 and b'oci-layout' in err, 'FIFO layout: exit %d %r' % (p.returncode, err))
        finally:
            if p.poll() is None:
                for pid in _children(p.pid):
                    os.kill(pid, signal.SIGKILL)
                p.kill()
                p.wait()
            unmount(mnt)

        # refusals
        bad = work('nocolon.txt')
        with open(bad, 'w') as f:
            f.write(password + '\n')
        err, _ = refused(work, ['--creds-file', bad, ref], 'a password-only credentials file')
        check(bad in err and 'USER:PASSWORD' in err, 'password-only file: %r' % err)
        no_secret(err, [password], 'password-only file')
        r = oc(work, 'mount', '--creds', creds, '--creds-file', creds_file, ref, work('mnt-0'))
        check(r.returncode == 2, '--creds with --creds-file: exit %d, want 2 (usage)' % r.returncode)
        check(not is_mounted(work('mnt-0')), '--creds with --creds-file mounted')


# ------------------------------------------------------------------ 4. Bearer tokens

def case_auth_token(work):
    """Bearer token auth (JWT token server): anonymous pull when allowed (anonymous tokens
    asked for and issued), refused when credentials are required (401, names the registry,
    no password), --creds then works; a token expiring every 2 s while a file is read over a
    slow link and while reads start after expiry: more tokens issued, content correct."""
    layout, reference = umoci_image(work)
    password = 'Tok-s3cret-p4ss'
    with Registry(auth='token', user='ocifs', password=password, anonymous_pull=True) as reg, \
            FaultProxy(reg) as px:
        ts = reg.token_server
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':v1')
        ref = px.ref(REPO + ':v1')
        ts.reset_counters()
        with mount(work, ref, work('mnt'), work('cache-anon')):
            tree_equal(reference, work('mnt'), 'anonymous Bearer pull')
        anon = [h for h in ts.history if h['status'] == 200]
        check(anon and all(h['user'] == '' for h in anon),
              'anonymous pull: tokens issued %s' % [(h['user'], h['status']) for h in ts.history])
        check(any('repository:%s:pull' % REPO in ' '.join(h['scopes']) for h in anon),
              'no token for scope repository:%s:pull: %s' % (REPO, [h['scopes'] for h in anon]))

        ts.anonymous_pull = False
        err, _ = refused(work, ['--cache-dir', work('cache-noauth'), ref], 'token auth, no creds',
                         timeout=120)
        check(px.host in err and ('401' in err or 'unauthorized' in err.lower()),
              'no-creds refusal must name %s and 401/unauthorized:\n%s' % (px.host, err))
        err, _ = refused(work, ['--cache-dir', work('cache-noauth'), '--creds', 'ocifs:wrongpw-1x', ref],
                         'token auth, wrong password', timeout=120)
        no_secret(err, ['wrongpw-1x', password], 'wrong token creds')
        check('401' in err or 'unauthorized' in err.lower(), 'wrong creds: %s' % err)

        ts.reset_counters()
        cache = work('cache-creds')
        with mount(work, ref, work('mnt'), cache, extra=['--creds', 'ocifs:' + password]) as m:
            tree_equal(reference, work('mnt'), 'Bearer pull with --creds')
            no_secret(err_text(m.result), [password], 'mount with --creds')
        check(ts.issued >= 1 and all(h['user'] == 'ocifs' for h in ts.history if h['status'] == 200),
              'tokens with creds: %s' % [(h['user'], h['status']) for h in ts.history])

        # expiry: index-only cache, so every read is a range request that needs a token
        idx = index_only_copy(cache, work('cache-idx'))
        ts.expires_in = 2
        mnt = work('mnt-exp')
        with mount(work, ref, mnt, idx, extra=['--creds', 'ocifs:' + password]):
            issued0 = ts.issued
            time.sleep(3)                        # the mount's token has expired
            want = read_file(os.path.join(reference, 'etc/os-release'))
            got = read_file(os.path.join(mnt, 'etc/os-release'))
            check(got == want, 'read after token expiry: %r, want %r' % (got[:100], want[:100]))
            issued1 = ts.issued
            check(issued1 > issued0, 'read after expiry: no new token (issued %d -> %d)' % (
                issued0, issued1))
            # a long read over a slow link (2 MiB/s): the token expires in the middle of it
            px.shape(bandwidth_bps=16 * 1024 * 1024)
            t0 = time.time()
            got = read_file(os.path.join(mnt, 'data/large'))
            dt = time.time() - t0
            px.shape(None)
            check(got == read_file(os.path.join(reference, 'data/large')),
                  'data/large read across token expiry: wrong bytes (%d)' % len(got))
            issued2 = ts.issued
            log('  tokens: %d issued at mount, %d after a read past expiry, %d after a %.1fs read'
                % (issued0, issued1, issued2, dt))
            check(dt > 2.5 and issued2 > issued1, 'mid-read refresh: read took %.1fs, tokens %d -> %d'
                  % (dt, issued1, issued2))
            tree_equal(reference, mnt, 'index-only cache with 2 s tokens')
        refused_tokens = [h for h in ts.history if h['status'] != 200]
        check(not refused_tokens, 'token requests refused: %s' % refused_tokens)


# ------------------------------------------------------------------ 5. manifest lists

def case_manifest_list(work):
    """OCI index and Docker manifest list (linux/amd64, linux/arm64/v8): default = the host's
    platform, --platform linux/arm64 picks arm64/v8 (its /platform file), each tree = umoci
    unpack of that platform's image; an absent platform is refused naming the available ones."""
    require_registry_tools(('skopeo', 'umoci'))
    host_arch = {'x86_64': 'amd64', 'aarch64': 'arm64'}.get(os.uname().machine)
    if host_arch is None:
        raise Skip('host architecture %s is in neither image' % os.uname().machine)
    host_plat = {'amd64': 'linux/amd64', 'arm64': 'linux/arm64/v8'}[host_arch]
    with Registry() as reg, FaultProxy(reg) as px:
        push_manifest_list(reg, 'team/multi:oci', work('m1'))
        push_manifest_list(reg, 'team/multi:docker', work('m2'), fmt='v2s2')
        c = reg.client()
        check(c.manifest('team/multi', 'oci')[0] == OCI_INDEX, 'oci tag is not an OCI index')
        check(c.manifest('team/multi', 'docker')[0] == DOCKER_LIST, 'docker tag is not a list')
        refs = {}
        for plat in ('linux/amd64', 'linux/arm64/v8'):
            parts = plat.split('/')
            dest = work('pulled-' + parts[1])
            args = ['copy', '-q', '--src-tls-verify=false', '--src-no-creds',
                    '--override-os', parts[0], '--override-arch', parts[1]]
            if len(parts) > 2:
                args += ['--override-variant', parts[2]]
            skopeo(*args, reg.docker_ref('team/multi:oci'), 'oci:%s:%s' % (dest, TAG))
            refs[plat] = fixtures.umoci_unpack(dest, TAG, work('ref-' + parts[1]))
            check(read_file(os.path.join(refs[plat], 'platform')) == plat.encode() + b'\n',
                  'umoci unpack of %s: wrong /platform' % plat)
        ign = {'.': {'mtime'}}          # no '.' entry in the layer: umoci uses the unpack time
        mnt = work('mnt')
        for tag in ('oci', 'docker'):
            ref = px.ref('team/multi:' + tag)
            for plat, want in ((None, host_plat), ('linux/arm64', 'linux/arm64/v8'),
                               ('linux/amd64', 'linux/amd64')):
                extra = ['--platform', plat] if plat else []
                with mount(work, ref, mnt, work('cache'), extra=extra):
                    got = read_file(os.path.join(mnt, 'platform')).decode().strip()
                    check(got == want, '%s --platform %s: got image %s, want %s' % (tag, plat, got, want))
                    tree_equal(refs[want], mnt, '%s --platform %s' % (tag, plat), ignore_at=ign)
            err, _ = refused(work, ['--cache-dir', work('cache'), '--platform', 'linux/s390x', ref],
                             '%s: absent platform' % tag, timeout=60)
            check('linux/s390x' in err and 'linux/amd64' in err and 'linux/arm64' in err,
                  '%s: refusal of linux/s390x must list the available platforms:\n%s' % (tag, err))


# ------------------------------------------------------------------ 6. faults

def _fault_setup(work, auth=None, tag='v1', layout=None):
    layout, reference = layout or umoci_image(work)
    reg = Registry(auth=auth).start()
    try:
        push_image('oci:%s:%s' % (layout, TAG), reg, '%s:%s' % (REPO, tag))
        px = FaultProxy(reg).start()
    except BaseException:
        reg.stop()
        raise
    return reg, px, reference


def _teardown(reg, px):
    px.stop()
    reg.stop()


def _layer_path(reg, i=None, repo_tag=REPO + ':v1'):
    """Path regex for the blob of layer i (None: every layer blob)."""
    layers = layer_descs(reg, repo_tag)
    if i is None:
        return r'^/v2/.+/blobs/(%s)$' % '|'.join(re.escape(l['digest']) for l in layers)
    return r'^/v2/.+/blobs/%s$' % re.escape(layers[i]['digest'])


def case_fault_redirect(work):
    """Blob GETs answered 307 to another host (localhost:OTHER_PORT) with token auth: the cold
    mount = umoci unpack and no Authorization reaches the other host (it would answer 400);
    lazy reads on an index-only cache through redirects whose signed URLs expire after 1 s
    (403): re-resolved, correct bytes."""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, auth='token', layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        creds = ['--creds', reg.creds]
        f = px.add_fault('redirect_blobs_to_other_host', count=None)
        cache = work('cache')
        with mount(work, ref, work('mnt'), cache, extra=creds):
            tree_equal(reference, work('mnt'), 'cold mount through 307 redirects')
        nlayers = len(layer_descs(reg, REPO + ':v1'))
        log('  %d redirects, CDN requests: %s' % (f.hits, [(r['status'], r['auth']) for r in px.cdn_records]))
        check(f.hits >= nlayers, 'only %d blob GETs redirected, want >= %d layers' % (f.hits, nlayers))
        check(px.cdn_records and all(not r['auth'] for r in px.cdn_records),
              'Authorization forwarded to the other host: %s' % [r for r in px.cdn_records if r['auth']])
        check(all(r['status'] in (200, 206) for r in px.cdn_records),
              'CDN answers: %s' % [r['status'] for r in px.cdn_records])
        px.remove_fault(f)

        idx = index_only_copy(cache, work('cache-idx'))
        px.reset_counters()
        f = px.add_fault('redirect_blobs_to_other_host', count=None, ttl=1)
        mnt = work('mnt-idx')
        with mount(work, ref, mnt, idx, extra=creds):
            a = read_file(os.path.join(mnt, 'etc/passwd'))          # layer 1
            time.sleep(1.5)                      # the signed URL of layer 1 has expired
            b = read_file(os.path.join(mnt, 'data/large'))          # layer 1 too
            check(a == read_file(os.path.join(reference, 'etc/passwd')), 'etc/passwd via CDN')
            check(b == read_file(os.path.join(reference, 'data/large')), 'data/large via CDN (expired URL)')
            tree_equal(reference, mnt, 'lazy reads through expiring redirects')
        statuses = [r['status'] for r in px.cdn_records]
        log('  lazy: %d redirects, CDN statuses %s' % (f.hits, statuses))
        check(all(not r['auth'] for r in px.cdn_records), 'Authorization forwarded on lazy reads')
        check(206 in statuses, 'no ranged read went to the CDN: %s' % statuses)
        check(403 in statuses, 'the expired signed URL was never tried (no 403): %s' % statuses)
        check(f.hits < len(statuses), 'resolved URLs are not reused: %d redirects for %d CDN '
              'requests' % (f.hits, len(statuses)))
    finally:
        _teardown(reg, px)


def case_fault_ranges(work):
    """Lazy range reads on an index-only cache: a server ignoring Range (200 + whole blob) for
    every request, then a server answering 400 to multi-range requests: trees = umoci unpack.
    (ocifs only sends single ranges, which is asserted: the 400 fault is never hit.)"""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        idx = warm_index_cache(work, ref, reference)
        px.reset_counters()
        f = px.add_fault('ignore_range', count=None)
        mnt = work('mnt')
        with mount(work, ref, mnt, index_only_copy(idx, work('c1'))):
            tree_equal(reference, mnt, 'server ignoring Range')
        log('  ignore_range: %d hits, %d blob bytes' % (f.hits, px.blob_bytes))
        check(f.hits > 0 and px.count(path=BLOBS, status=200) > 0,
              'no ranged read reached the server (hits %d)' % f.hits)
        px.remove_fault(f)

        px.reset_counters()
        f = px.add_fault('reject_multirange', count=None)
        with mount(work, ref, mnt, index_only_copy(idx, work('c2'))):
            tree_equal(reference, mnt, 'server refusing multi-range')
        ranges = [r['range'] for r in px.records if r['range']]
        check(ranges, 'no ranged request was made')
        multi = [r for r in ranges if ',' in r]
        log('  %d ranged requests, %d multi-range, fault hits %d' % (len(ranges), len(multi), f.hits))
        check(f.hits == len(multi), 'fault hits %d != multi-range requests %d' % (f.hits, len(multi)))
        check(px.count(path=BLOBS, status=400) == f.hits, '400s')
    finally:
        _teardown(reg, px)


def _gap_after(px, kind):
    """Seconds between each answer with fault `kind` and the next request for the same path."""
    recs = sorted(px.records, key=lambda r: r['time'])
    gaps = []
    for i, r in enumerate(recs):
        if r['fault'] == kind:
            nxt = [x for x in recs[i + 1:] if x['path'] == r['path']]
            if nxt:
                gaps.append(nxt[0]['time'] - r['time'])
    return gaps


def case_fault_429_503(work):
    """429 with Retry-After: 2 on the manifest and on 2 blob GETs, then 503 on 3 blob GETs (cold
    mounts): trees = umoci unpack, every fault hit, each retry waits >= Retry-After; 503 on
    every blob GET: refused naming 503, within the retry budget."""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        fm = px.add_fault('status_429', path=MANIFESTS, count=1, retry_after=2)
        fb = px.add_fault('status_429', count=2, retry_after=2)
        with mount(work, ref, work('mnt'), work('c429')):
            tree_equal(reference, work('mnt'), '429 Retry-After')
        gaps = _gap_after(px, 'status_429')
        log('  429: hits %d+%d, retry gaps %s' % (fm.hits, fb.hits, ['%.2f' % g for g in gaps]))
        check(fm.hits == 1 and fb.hits == 2, '429 hits %d %d' % (fm.hits, fb.hits))
        check(len(gaps) == 3 and all(g >= 1.9 for g in gaps),
              'retries after 429 must wait Retry-After (2 s): gaps %s' % gaps)

        px.reset_counters()
        f = px.add_fault('status_503', count=3)
        with mount(work, ref, work('mnt'), work('c503')):
            tree_equal(reference, work('mnt'), '3 x 503')
        check(f.hits == 3, '503 hits %d' % f.hits)

        px.reset_counters()
        f = px.add_fault('status_503', count=None)
        err, dt = refused(work, ['--cache-dir', work('c503all'), ref], '503 on every blob GET',
                          timeout=300)
        check('503' in err, 'message does not say 503:\n%s' % err)
        log('  503 forever: %d blob GETs before giving up, %.1fs' % (f.hits, dt))
        check(f.hits == 5 and 'after 5 attempts' in err,
              'want 5 attempts (RegistryOptions::max_attempts) before giving up, and a message '
              'saying so; %d GETs:\n%s' % (f.hits, err))
    finally:
        _teardown(reg, px)


def case_fault_drop(work):
    """Connections dropped mid-body: on 3 blob GETs of the cold mount (the stream resumes with a
    Range from the byte reached), then on 2 lazy range reads (index-only cache): trees = umoci
    unpack."""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        big = _layer_path(reg)
        f = px.add_fault('drop_mid_body', path=big, count=3)
        cache = work('cache')
        with mount(work, ref, work('mnt'), cache):
            tree_equal(reference, work('mnt'), 'cold mount with 3 dropped connections')
        check(f.hits == 3, 'drop hits %d' % f.hits)
        resumed = [r for r in px.records if r['range'] and re.match(r'bytes=[1-9]\d*-\d*$', r['range'])]
        log('  dropped 3, resumed with %s' % [r['range'] for r in resumed])
        check(resumed, 'no resumed request (Range: bytes=N-…) after the drops: %s' % [
            (r['fault'], r['range']) for r in px.records])

        px.reset_counters()
        f = px.add_fault('drop_mid_body', count=2, after=100)
        mnt = work('mnt-idx')
        with mount(work, ref, mnt, index_only_copy(cache, work('cache-idx'))):
            tree_equal(reference, mnt, 'lazy reads with 2 dropped connections')
        check(f.hits == 2, 'lazy drop hits %d' % f.hits)
    finally:
        _teardown(reg, px)


def case_fault_corrupt(work):
    """A layer blob with one byte flipped on every GET: the cold mount is refused naming that
    layer's digest, ls/cat refuse too; without the fault a remount with the same cache fetches
    that layer again and = umoci unpack (nothing corrupt was kept in the cache)."""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        layers = layer_descs(reg, REPO + ':v1')
        bad = layers[0]['digest']
        f = px.add_fault('corrupt_blob', path=_layer_path(reg, 0), count=None)
        cache = work('cache')
        err, _ = refused(work, ['--cache-dir', cache, ref], 'corrupt layer blob', timeout=300)
        check(bad.split(':')[1][:12] in err, 'message does not name the layer %s:\n%s' % (bad, err))
        check(f.hits >= 1, 'corrupt fault not hit')
        for args in (['ls', '--cache-dir', cache, ref], ['cat', '--cache-dir', cache, ref, 'etc/passwd']):
            r = oc(work, *args, timeout=300)
            check(0 < r.returncode < 128 and bad.split(':')[1][:12] in err_text(r),
                  '`ocifs %s` with a corrupt layer: exit %d %r' % (args[0], r.returncode, err_text(r)[-1000:]))
            check(r.stdout == b'' or args[0] == 'ls' and b'passwd' not in r.stdout,
                  '`ocifs %s` served data from a corrupt layer: %r' % (args[0], r.stdout[:200]))
        r = oc(work, 'cache', 'ls', '--cache-dir', cache)
        log('  cache ls after the refusal:\n' + '\n'.join(
            '  | ' + l for l in r.stdout.decode(errors='replace').splitlines()))
        px.remove_fault(f)
        px.reset_counters()
        with mount(work, ref, work('mnt'), cache):
            tree_equal(reference, work('mnt'), 'remount after the corrupt blob, same cache')
        check(px.count(path=_layer_path(reg, 0)) > 0,
              'the remount did not fetch the layer that was corrupt again')
    finally:
        _teardown(reg, px)


def case_fault_corrupt_lazy(work):
    """Lazy reads (index-only cache) while every blob GET has one byte flipped: EIO or the right
    bytes, never wrong ones, at least one EIO; once the fault is gone the same mount = umoci
    unpack."""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        idx = warm_index_cache(work, ref, reference)
        mnt = work('mnt-idx')
        with mount(work, ref, mnt, idx):
            f = px.add_fault('corrupt_blob', count=None)
            results = []
            for p in ('data/large', 'data/text', 'bin/busybox', 'etc/os-release'):
                want = read_file(os.path.join(reference, p))
                try:
                    got = read_file(os.path.join(mnt, p))
                except OSError as e:
                    check(e.errno == errno.EIO, '%s: %r, want EIO' % (p, e))
                    results.append('%s: EIO' % p)
                    continue
                check(got == want, '%s: WRONG BYTES served from a corrupt range (%d bytes)' % (p, len(got)))
                results.append('%s: right bytes' % p)
            log('  corrupt lazy reads (%d hits): %s' % (f.hits, '; '.join(results)))
            check(f.hits > 0, 'no lazy read reached the server')
            check(any('EIO' in r for r in results), 'corrupt ranges never gave EIO: %s' % results)
            px.remove_fault(f)
            tree_equal(reference, mnt, 'same mount once the fault is gone')
    finally:
        _teardown(reg, px)


def case_fault_stall_cold(work):
    """The registry stalls every layer blob GET (headers never come) during a cold mount with
    short deadlines (FAST): it is refused within a bound, not a hang, with a message naming a
    layer; nothing is mounted. The bound: the scan waits STREAM_WAIT for the layer's stream, then
    READ_TIMEOUT for a range read; the other layers stop at once and the streams are cancelled."""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        layers = layer_descs(reg, REPO + ':v1')
        # layer blobs only: the config (fetched whole, within the request deadline) comes through
        f = px.add_fault('stall', path=_layer_path(reg), count=None, seconds=3600)
        err, dt = refused(work, FAST + ['--cache-dir', work('cache'), ref], 'stalled server, cold mount',
                          timeout=120)
        log('  %d stalled GETs, refused after %.1fs' % (f.hits, dt))
        bound = STREAM_WAIT + READ_TIMEOUT + 10
        check(dt <= bound, 'refusal took %.0fs, more than %ds' % (dt, bound))
        check(any(l['digest'].split(':')[1][:12] in err for l in layers),
              'message names no layer:\n%s' % err)
    finally:
        _teardown(reg, px)


def case_fault_interrupted_mount(work):
    """Ctrl-C while a cold mount waits on a stalled registry: `ocifs mount` dies with SIGINT
    (its process group gets it, as from a terminal), and nothing is left behind — no mount
    later, no supervisor, no server still indexing in its own process group."""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        px.add_fault('stall', path=_layer_path(reg), count=None, seconds=3600)
        mnt = work('mnt')
        os.makedirs(mnt)
        p = subprocess.Popen([OCIFS, 'mount', '--cache-dir', work('cache'), ref, mnt], env=clean_env(work),
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)  # resolved, its layers stalled
        os.killpg(p.pid, signal.SIGINT)
        rc = p.wait(timeout=60)
        check(rc != 0, 'ocifs mount exited 0 after SIGINT')
        deadline = time.time() + 10
        while daemon_pids(mnt) and time.time() < deadline:
            time.sleep(0.1)
        check(not daemon_pids(mnt), 'processes left after SIGINT: %s' % daemon_pids(mnt))
        check(not is_mounted(mnt), 'mounted after SIGINT')
    finally:
        _teardown(reg, px)


def case_fault_stall_read(work):
    """Warm index, blob bytes never fetched (index-only cache), short deadlines (FAST): the
    registry stalls every blob GET while a file is read; pread() fails with EIO within the read
    deadline (one fetch: the kernel's retry of a failed readahead fails fast), the mount answers
    stat/readdir meanwhile, and once the stall is gone the same mount reads the right bytes
    (tree = umoci unpack).  Also a stall in the middle of a body."""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        idx = warm_index_cache(work, ref, reference)
        mnt = work('mnt')
        for kind, params in (('headers', {}), ('mid-body', {'after': 1000})):
            px.reset_counters()
            with mount(work, ref, mnt, index_only_copy(idx, work('c-' + kind)), extra=FAST):
                check(px.blob_bytes == 0, 'index-only mount fetched %d blob bytes' % px.blob_bytes)
                f = px.add_fault('stall', count=None, seconds=3600, **params)
                result = {}

                t_start = [time.time()]

                def reader():
                    t0 = t_start[0] = time.time()
                    try:
                        fd = os.open(os.path.join(mnt, 'data/large'), os.O_RDONLY)
                        try:
                            result['data'] = os.pread(fd, 65536, 4 * 1024 * 1024)
                        finally:
                            os.close(fd)
                    except OSError as e:
                        result['error'] = e
                    result['time'] = time.time() - t0

                t = threading.Thread(target=reader, daemon=True)
                t.start()
                time.sleep(1)
                t1 = time.time()
                names = os.listdir(mnt)
                st = os.stat(os.path.join(mnt, 'etc/os-release'))
                check(time.time() - t1 < 5 and 'etc' in names and st.st_size > 0,
                      '%s: the mount did not answer readdir/stat during a stalled read' % kind)
                t.join(READ_TIMEOUT + 60)
                check(not t.is_alive(), 'HANG (%s): pread still blocked after %ds' % (
                    kind, READ_TIMEOUT + 60))
                log('  stall (%s): %d stalled GETs; pread -> %s after %.1fs' % (
                    kind, f.hits, result.get('error', 'data'), result['time']))
                check(f.hits >= 1, '%s: no read reached the server' % kind)
                e = result.get('error')
                check(isinstance(e, OSError) and e.errno == errno.EIO,
                      '%s: pread gave %r, want EIO' % (kind, e or ('%d bytes' % len(result['data']))))
                stalled = sorted((r['time'], r['range']) for r in px.records if r['fault'] == 'stall')
                log('  stalled GETs (s after the read began, Range): %s' % [
                    ('%.1f' % (t - t_start[0]), rg) for t, rg in stalled])
                # The kernel retries a failed readahead at once with a read of its own; ocifs
                # answers that retry without asking the registry again (fail-fast, 2 s), so one
                # read() waits for one fetch: its attempts (a stalled one is cut after
                # STALL_TIMEOUT and resumed) all start within its deadline, none after.
                bound = READ_TIMEOUT + 5
                check(result['time'] <= bound, '%s: EIO after %.1fs, want <= %ds (one fetch of %ds)'
                      % (kind, result['time'], bound, READ_TIMEOUT))
                late = [rg for t, rg in stalled if t - t_start[0] > READ_TIMEOUT]
                check(stalled and not late, '%s: stalled fetches after the read failed: %s' % (kind, late))
                ends = {rg.rpartition('-')[2] for _, rg in stalled}  # a resumed attempt starts later
                check(len(ends) == 1, '%s: several ranges fetched for one read(): %s' % (kind, stalled))
                px.remove_fault(f)
                px.clear_faults()
                time.sleep(FAIL_FAST + 0.5)  # reads right after a failure fail at once, by design
                check(is_mounted(mnt), 'the mount went away after a stalled read')
                tree_equal(reference, mnt, 'same mount after the stall (%s)' % kind)
    finally:
        _teardown(reg, px)


def _wide_image(work):
    """build_wide_image and its umoci unpack."""
    require_registry_tools(('skopeo', 'umoci'))
    layout = fixtures.build_wide_image(work.path)
    return layout, fixtures.umoci_unpack(layout, TAG, work('ref'))


def case_fault_stall_metadata(work):
    """Metadata never waits behind data. Index-only cache, short deadlines (FAST), every blob
    GET stalled: 24 concurrent reads of distinct files (more than the 4 request threads and
    the 8 read threads) are all waiting, yet `ls -lR` of a 3000-entry directory answers within
    1 s; every read gets EIO within its deadline (queueing included), `ocifs status` counts the
    timeouts; once the registry is healed the same mount = umoci unpack."""
    layout, reference = _wide_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        idx = warm_index_cache(work, ref, reference)
        mnt = work('mnt')
        with mount(work, ref, mnt, idx, extra=FAST):
            f = px.add_fault('stall', count=None, seconds=3600)
            files = sorted(n for n in os.listdir(os.path.join(mnt, 'data')))
            check(len(files) == 24, 'data/ holds %d files' % len(files))
            results = {}

            def reader(name):
                t0 = time.time()
                try:
                    fd = os.open(os.path.join(mnt, 'data', name), os.O_RDONLY)
                    try:
                        results[name] = (os.pread(fd, 65536, 512 * 1024), time.time() - t0)
                    finally:
                        os.close(fd)
                except OSError as e:
                    results[name] = (e, time.time() - t0)

            threads = [threading.Thread(target=reader, args=(n,), daemon=True) for n in files]
            for t in threads:
                t.start()
            # Every read is at the registry or queued behind those that are (on a loaded machine
            # the read threads take a while to get there).
            deadline = time.time() + 10
            while f.hits < 8 and time.time() < deadline:
                time.sleep(0.1)
            check(f.hits >= 8, 'only %d reads reached the stalled registry' % f.hits)
            t0 = time.time()
            r = run(['ls', '-lR', os.path.join(mnt, 'wide')], timeout=60)
            dt = time.time() - t0
            lines = r.stdout.decode().count('\n')
            log('  %d reads waiting on a stalled registry; ls -lR of 3000 entries: %.3fs (%d lines)'
                % (len(threads), dt, lines))
            check(r.returncode == 0 and lines >= 3000, 'ls -lR failed: %r' % err_text(r)[-500:])
            check(dt < 1.0, 'ls -lR took %.2fs while reads were stalled (metadata waited behind data)' % dt)
            for t in threads:
                t.join(READ_TIMEOUT + 60)
                check(not t.is_alive(), 'HANG: a read still blocked after %ds' % (READ_TIMEOUT + 60))
            times = sorted(v[1] for v in results.values())
            log('  reads: %s; EIO after %.1f-%.1fs' % (
                sorted({type(v[0]).__name__ for v in results.values()}), times[0], times[-1]))
            for name, (v, took) in sorted(results.items()):
                check(isinstance(v, OSError) and v.errno == errno.EIO,
                      '%s: %r, want EIO' % (name, v if isinstance(v, OSError) else '%d bytes' % len(v)))
                check(took <= READ_TIMEOUT + 5, '%s: EIO after %.1fs, want <= %ds' % (name, took, READ_TIMEOUT + 5))
            layer = status_of(work, mnt)['layers'][0]
            log('  status: read_errors %d, read_timeouts %d' % (layer['read_errors'], layer['read_timeouts']))
            check(layer['read_timeouts'] >= 1 and layer['read_errors'] >= layer['read_timeouts'],
                  'status does not count the timed-out reads: %r' % layer)
            px.remove_fault(f)
            px.clear_faults()
            time.sleep(FAIL_FAST + 0.5)
            tree_equal(reference, mnt, 'same mount once the registry is healed')
    finally:
        _teardown(reg, px)


def case_fault_stall_sigterm(work):
    """SIGTERM to a mount's supervisor while a read waits on a stalled registry: the read ends
    with an error within seconds, the mount and every ocifs process go. (The server is killed
    with the request it had read; the lazily unmounted connection lived on while the reader
    waited in it, and the supervisor waited for the connection to end: both for good.)"""
    layout, reference = _wide_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        idx = warm_index_cache(work, ref, reference)
        mnt = work('mnt')
        m = mount(work, ref, mnt, idx, extra=['--read-timeout', '10m'])
        with m:
            f = px.add_fault('stall', count=None, seconds=3600)
            name = sorted(os.listdir(os.path.join(mnt, 'data')))[0]
            result = {}

            def reader():
                t0 = time.time()
                try:
                    with open(os.path.join(mnt, 'data', name), 'rb') as fh:
                        result['value'] = fh.read(65536)
                except OSError as e:
                    result['value'] = e
                result['took'] = time.time() - t0

            t = threading.Thread(target=reader, daemon=True)
            t.start()
            deadline = time.time() + 10
            while f.hits == 0 and time.time() < deadline:
                time.sleep(0.05)
            check(f.hits >= 1, 'the read never reached the stalled registry')
            time.sleep(0.5)
            supervisor = supervisor_pids(mnt)
            check(len(supervisor) == 1, 'supervisor pids %s' % supervisor)
            os.kill(supervisor[0], signal.SIGTERM)
            t.join(15)
            check(not t.is_alive(), 'HANG: the read still waits 15 s after SIGTERM to the supervisor')
            log('  the read ended with %r' % (result['value'],))
            check(isinstance(result['value'], OSError), 'the read returned %r' % (result['value'],))
            deadline = time.time() + 10
            while (is_mounted(mnt) or daemon_pids(mnt)) and time.time() < deadline:
                time.sleep(0.1)
            check(not is_mounted(mnt), 'still mounted after SIGTERM')
            check(not daemon_pids(mnt), 'ocifs processes left after SIGTERM: %s' % daemon_pids(mnt))
    finally:
        _teardown(reg, px)


def case_fault_cut_every_64k(work):
    """A proxy that closes every blob answer after 64 KiB: each cut is resumed with Range from
    the byte reached and counts as progress, not as a failed attempt. A cold mount = umoci
    unpack (hundreds of cuts), and so do lazy reads on an index-only cache."""
    layout, reference = _wide_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        f = px.add_fault('drop_mid_body', count=None, after=64 * 1024)
        cache = work('cache')
        t0 = time.time()
        with mount(work, ref, work('mnt'), cache):
            tree_equal(reference, work('mnt'), 'cold mount, every answer cut after 64 KiB')
        log('  cold mount + tree: %.1fs, %d answers cut' % (time.time() - t0, f.hits))
        size = compressed_size(reg, REPO + ':v1')
        check(f.hits >= size // (64 * 1024) // 2, 'only %d cuts for %d bytes' % (f.hits, size))
        hits = f.hits
        mnt = work('mnt-idx')
        with mount(work, ref, mnt, index_only_copy(cache, work('cache-idx'))):
            tree_equal(reference, mnt, 'lazy reads, every answer cut after 64 KiB')
        log('  lazy reads: %d more answers cut' % (f.hits - hits))
        check(f.hits > hits, 'the lazy reads were not cut')
    finally:
        _teardown(reg, px)


# ------------------------------------------------------------------ 7. ocifs cache

def _du(work, cache):
    r = oc(work, 'cache', 'du', '--cache-dir', cache, check_rc=True)
    out = r.stdout.decode()
    m = re.search(r'^blobs\s+(.+?) present of (.+?) in (\d+) blobs? \((\d+) complete\)', out, re.M)
    check(m, 'cache du: no blobs line:\n%s' % out)
    return out, m.group(1), m.group(2), int(m.group(3)), int(m.group(4))


def case_cache_commands(work):
    """`ocifs cache ls|du|gc` after a registry mount: ls lists every layer blob at 100%, du's
    blob line agrees (count, complete, present = full = the sum of the layer sizes), gc
    --cache-max 1 evicts everything (du: 0 B present), a remount then refetches (blob_bytes > 0)
    and = umoci unpack; lazy reads (index-only cache) of the whole tree with --cache-max 2M (the
    image is 14.7 MiB), then a remount reading it all again: right bytes, the remount fetches
    all but <= 3 MiB again, at most 2 MiB of blob bytes are left; a cold mount with --cache-max
    4M (less than the largest layer) works and = umoci unpack."""
    layout, reference = umoci_image(work)
    reg, px, _ = _fault_setup(work, layout=(layout, reference))
    try:
        ref = px.ref(REPO + ':v1')
        layers = layer_descs(reg, REPO + ':v1')
        cache, mnt = work('cache'), work('mnt')
        with mount(work, ref, mnt, cache):
            tree_equal(reference, mnt, 'cold mount')
        r = oc(work, 'cache', 'ls', '--cache-dir', cache, check_rc=True)
        out = r.stdout.decode()
        log('  cache ls:\n' + '\n'.join('    ' + l for l in out.splitlines()))
        for l in layers:
            line = [x for x in out.splitlines() if x.startswith(l['digest'])]
            check(line and ' 100%' in line[0] and format_byte_size(l['size']) in line[0],
                  'cache ls: layer %s (%s) not listed complete:\n%s' % (
                      l['digest'], format_byte_size(l['size']), out))
        du, present, full, n, complete = _du(work, cache)
        log('  cache du:\n' + '\n'.join('    ' + x for x in du.splitlines()))
        total = sum(l['size'] for l in layers)
        check(n == len(layers) and complete == n, 'du: %d blobs %d complete, want %d' % (n, complete, len(layers)))
        check(present == full == format_byte_size(total),
              'du: %s present of %s, want both %s' % (present, full, format_byte_size(total)))

        r = oc(work, 'cache', 'gc', '--cache-dir', cache, '--cache-max', '1', check_rc=True)
        log('  cache gc --cache-max 1: ' + r.stdout.decode().strip().replace('\n', ' | '))
        check(b'evicted' in r.stdout, 'gc did not evict: %r' % r.stdout)
        du, present, full, n, complete = _du(work, cache)
        check(present == '0 B', 'du after gc to 1 byte: %s present' % present)
        px.reset_counters()
        with mount(work, ref, mnt, cache):
            at_mount = px.blob_bytes
            tree_equal(reference, mnt, 'remount after gc')
        log('  remount after gc: %d blob bytes at mount, %d after reading everything' % (
            at_mount, px.blob_bytes))
        check(px.blob_bytes > 0, 'remount after gc fetched no blob bytes')

        # a small budget with lazy reads (index-only cache): evicted ranges are fetched again
        small = index_only_copy(cache, work('cache-small'))
        with mount(work, ref, mnt, small, extra=['--cache-max', '2M']):
            tree_equal(reference, mnt, 'lazy reads with --cache-max 2M')
        px.reset_counters()
        with mount(work, ref, mnt, small, extra=['--cache-max', '2M']):
            tree_equal(reference, mnt, 'remount with --cache-max 2M')
        du, present, full, n, complete = _du(work, small)
        log('  --cache-max 2M: the remount fetched %d blob bytes again; du says %s present' % (
            px.blob_bytes, present))
        check(px.blob_bytes >= total - (3 << 20), '--cache-max 2M: the remount fetched only %d of '
              '%d bytes again: more than the budget was kept' % (px.blob_bytes, total))
        m = re.match(r'([\d.]+) (B|KiB|MiB|GiB)$', present)
        size = float(m.group(1)) * {'B': 1, 'KiB': 1024, 'MiB': 1 << 20, 'GiB': 1 << 30}[m.group(2)]
        check(size <= 2 << 20, '--cache-max 2M left %s of blob bytes' % present)

        # a cold mount with a budget smaller than a layer: the layers are not streamed ahead
        # (they would evict each other); the scans fetch what they read
        px.reset_counters()
        with mount(work, ref, mnt, work('cache-cold-small'), extra=['--cache-max', '4M']):
            tree_equal(reference, mnt, 'cold mount with --cache-max 4M')
        log('  cold mount with --cache-max 4M: %d blob bytes for %d of layers' % (px.blob_bytes, total))
    finally:
        _teardown(reg, px)


# ------------------------------------------------------------------ uncompressed layers: header walk

def _read_in_thread(path):
    """Starts reading path on a thread; returns (thread, result dict: 'data' or 'error')."""
    result = {}

    def reader():
        try:
            result['data'] = read_file(path)
        except OSError as e:
            result['error'] = e
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    return t, result


def case_uncompressed_walk(work):
    """Uncompressed layers (raw push of the skopeo conversion) on a cold mount are shown from
    their tar headers, read by range; their bytes are verified by a stream of the rest once the
    mount is live, and served only after that. Through a 40 Mbit/s link: the mount goes live
    having fetched under half of the blob bytes (the 20 MiB data/sparse and data/large are
    skipped), every path can be listed and stat'ed, a read waits while the rest arrives; then the
    read completes, the tree = umoci unpack, every blob byte was fetched once, and a warm remount
    fetches none. With the verifying requests corrupted, the mount still goes live but the read
    gets EIO; a remount without the fault (same cache) walks again and = umoci unpack."""
    layout, reference = umoci_image(work)
    conv = fixtures.skopeo_convert(layout, work.path)
    plain_layout = conv['uncompressed'][len('oci:'):].rsplit(':', 1)[0]
    with Registry() as reg, FaultProxy(reg) as px:
        push_layout(plain_layout, reg, REPO + ':plain')
        layers = layer_descs(reg, REPO + ':plain')
        check(all(l['mediaType'].endswith('.tar') for l in layers), 'layers not plain tar: %s' % layers)
        total = sum(l['size'] for l in layers)
        layer_path = _layer_path(reg, None, REPO + ':plain')
        ref, mnt, cache = px.ref(REPO + ':plain'), work('mnt'), work('cache')
        big = 'data/large'
        want_big = read_file(os.path.join(reference, big))

        px.shape(40_000_000)  # the rest of the blobs takes ~10 s: time to look while it comes
        t0 = time.time()
        with mount(work, ref, mnt, cache):
            live = time.time() - t0
            walked = px.blob_bytes
            log('  live after %.2f s with %d of %d blob bytes fetched (%.1f%%)' % (
                live, walked, total, 100.0 * walked / total))
            check(walked < total / 2, 'the walk fetched %d of %d blob bytes' % (walked, total))
            states = [(l['walked'], l['state']) for l in status_of(work, mnt)['layers']]
            check(states[0] == (True, 'verifying') and all(w for w, _ in states),
                  'status right after going live (walked, state): %s' % states)
            paths = 0
            for dirpath, dirs, files in os.walk(mnt):
                for n in dirs + files:
                    os.lstat(os.path.join(dirpath, n))
                    paths += 1
            check(os.path.getsize(os.path.join(mnt, big)) == len(want_big), 'size of %s' % big)
            thread, result = _read_in_thread(os.path.join(mnt, big))
            thread.join(1.5)
            check(thread.is_alive() and not result,
                  'a read of %s returned before its layer was verified: %s' % (
                      big, 'error %r' % result.get('error') if 'error' in result else 'data'))
            px.shape(None)
            thread.join(120)
            check(not thread.is_alive(), 'the read of %s still waits 120 s later' % big)
            check(result.get('data') == want_big, 'read of %s after verification: %r' % (
                big, result.get('error') or '%d bytes, wrong' % len(result.get('data', b''))))
            tree_equal(reference, mnt, 'uncompressed, walked (cold)')
            states = [l['state'] for l in status_of(work, mnt)['layers']]
            check(states == ['ready'] * len(layers), 'status after the reads: %s' % states)
            log('  %d paths listed while the layers were unverified; the read waited %.1f s' % (
                paths, time.time() - t0 - live))
        ranges = [r['range'] for r in px.records if re.search(layer_path, urllib.parse.urlsplit(r['path']).path)]
        check(all(r and re.fullmatch(r'bytes=\d+-\d+', r) for r in ranges), 'unbounded requests: %s' % ranges)
        image_bytes = compressed_size(reg, REPO + ':plain')  # layers and config
        log('  cold mount + full read: %d blob bytes for %d (%.4fx)' % (
            px.blob_bytes, image_bytes, px.blob_bytes / image_bytes))
        check(px.blob_bytes <= image_bytes, 'cold mount + full read fetched %d bytes for %d' % (
            px.blob_bytes, image_bytes))
        px.reset_counters()
        with mount(work, ref, mnt, cache):
            tree_equal(reference, mnt, 'uncompressed, warm remount')
        check(px.blob_bytes == 0, 'warm remount fetched %d blob bytes' % px.blob_bytes)

        # one byte flipped in the zeros of data/sparse, which the walk skips and the verifying
        # requests bring: the mount goes live, and the read gets EIO, never bytes
        blob = os.path.join(plain_layout, 'blobs', 'sha256', layers[0]['digest'].split(':')[1])
        with tarfile.open(blob) as tf:
            sparse = [m for m in tf.getmembers() if m.name.lstrip('./') == 'data/sparse'][0]
        cache2 = work('cache-corrupt')
        px.reset_counters()
        bad = px.add_fault('corrupt_blob', path=_layer_path(reg, 0, REPO + ':plain'), count=None,
                           blob_at=sparse.offset_data + (5 << 20))
        with mount(work, ref, mnt, cache2):
            try:
                got = read_file(os.path.join(mnt, 'etc/passwd'))
                raise Fail('read from a layer that fails verification gave %r' % got[:100])
            except OSError as e:
                check(e.errno == errno.EIO, 'read from a layer that fails verification: %r, want EIO' % e)
            first = status_of(work, mnt)['layers'][0]
            check(first['state'] == 'failed' and 'does not match' in first.get('error', ''),
                  'status of the layer that failed verification: %r' % first)
        check(bad.flips == 1, 'the corrupt byte was sent %d times' % bad.flips)
        px.remove_fault(bad)
        px.reset_counters()
        with mount(work, ref, mnt, cache2):
            tree_equal(reference, mnt, 'remount after a corrupt stream')
        check(px.count(path=_layer_path(reg, 0, REPO + ':plain'), status=206) > 0,
              'the remount did not fetch the corrupt layer again')


CASES = {
    'anonymous': case_anonymous,
    'compression': case_compression,
    'auth_basic': case_auth_basic,
    'auth_creds_forms': case_auth_creds_forms,
    'auth_token': case_auth_token,
    'manifest_list': case_manifest_list,
    'fault_redirect': case_fault_redirect,
    'fault_ranges': case_fault_ranges,
    'fault_429_503': case_fault_429_503,
    'fault_drop': case_fault_drop,
    'fault_corrupt': case_fault_corrupt,
    'fault_corrupt_lazy': case_fault_corrupt_lazy,
    'fault_stall_cold': case_fault_stall_cold,
    'fault_stall_read': case_fault_stall_read,
    'fault_interrupted_mount': case_fault_interrupted_mount,
    'fault_stall_metadata': case_fault_stall_metadata,
    'fault_stall_sigterm': case_fault_stall_sigterm,
    'fault_cut_every_64k': case_fault_cut_every_64k,
    'cache_commands': case_cache_commands,
    'uncompressed_walk': case_uncompressed_walk,
}
for _fn in CASES.values():
    _fn.tools = REG_TOOLS

if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--list':
        print('\n'.join(CASES))
        sys.exit(0)
    sys.exit(main(CASES))
