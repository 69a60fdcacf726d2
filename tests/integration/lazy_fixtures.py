#!/usr/bin/python3
"""Lazy-pull layer fixtures (eStargz, zstd:chunked) made by the real converter: Debian's
containerd plus stargz-snapshotter's `ctr-remote image convert`, pulling from and pushing to a
loopback Registry (registry.py).

    with Registry() as reg, Containerd(work('ctrd')) as ctrd:
        push_image(layout, reg, 'img:t')
        man = convert_and_push(ctrd, reg, 'img:t', 'img:esgz', 'estargz')
        toc_digest = man['layers'][0]['annotations'][TOC_DIGEST]

kind: 'estargz' (`--estargz --oci`), 'zstdchunked' (`--zstdchunked --oci`), or
'estargz-legacy': ctr-remote 0.12 cannot write the old (pre-eStargz) stargz format, so that
kind converts to eStargz and then swaps every layer's 51-byte footer for the 47-byte legacy one
(same TOC offset; the uncompressed tar, hence the diff_ids, do not change) and drops the eStargz
annotations, as the old `stargzify` output had none.  Only the footer is legacy: the TOC keeps
its eStargz shape (landmark entry, chunkDigest), which old readers ignore.

containerd runs as root with everything (root, state, sockets, config) under its workdir and
only the plugins that fetch/convert/push use: no CRI, no CNI, no runtimes, no overlayfs.  The
source is fetched with `ctr content fetch`, not `image pull`: pull would also unpack into a
snapshotter, which conversion does not need (and containerd 1.6's applier rejects the umoci
fixture: layer 2 holds `d2f/.wh.x` below the file `d2f`).

Run as a script for a self-check that prints what the converter writes (footers, TOCs,
annotations): `/usr/bin/python3 lazy_fixtures.py` (root; exit 77 when tools are missing)."""

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib

import fixtures
from common import Fail, Skip
from loopback import no_proxy_env, stop_process_group
from registry import OCI_MANIFEST, RegistryClient, RegistryError, digest_of, push_image

__all__ = ['Containerd', 'convert_and_push', 'require_lazy_tools', 'zstd_chunked_annotation',
           'legacy_footer', 'KINDS', 'TOC_DIGEST', 'UNCOMPRESSED_SIZE', 'ZSTD_CHUNKED_PREFIXES',
           'GZIP_LAYER', 'ZSTD_LAYER']

CONTAINERD = '/usr/bin/containerd'
CTR_REMOTE = '/usr/bin/ctr-remote'
NAMESPACE = 'ocifs'
CTR_TIMEOUT = 600
GZIP_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip'
ZSTD_LAYER = 'application/vnd.oci.image.layer.v1.tar+zstd'
TOC_DIGEST = 'containerd.io/snapshot/stargz/toc.digest'          # sha256 of the TOC JSON
UNCOMPRESSED_SIZE = 'io.containers.estargz.uncompressed-size'
# stargz-snapshotter 0.12 writes 'io.containers.'; containers/storage writes 'io.github.containers.'
ZSTD_CHUNKED_PREFIXES = ('io.containers.zstd-chunked.', 'io.github.containers.zstd-chunked.')
KINDS = ('estargz', 'zstdchunked', 'estargz-legacy')
_DEATHSIG = ['setpriv', '--pdeathsig', 'KILL'] if shutil.which('setpriv') else []
# Plugins containerd must not load: CRI (and with it CNI), runtimes/tasks (no containers run
# here), every snapshotter but native (fetch/convert/push never unpack), /opt/containerd.
_DISABLED = ['io.containerd.grpc.v1.cri', 'io.containerd.internal.v1.opt',
             'io.containerd.internal.v1.restart', 'io.containerd.monitor.v1.cgroups',
             'io.containerd.runtime.v1.linux', 'io.containerd.runtime.v2.task',
             'io.containerd.service.v1.tasks-service', 'io.containerd.grpc.v1.tasks',
             'io.containerd.snapshotter.v1.aufs', 'io.containerd.snapshotter.v1.btrfs',
             'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.zfs',
             'io.containerd.snapshotter.v1.overlayfs',
             'io.containerd.tracing.processor.v1.otlp', 'io.containerd.internal.v1.tracing']


def require_lazy_tools():
    """Raise common.Fail unless containerd and ctr-remote are installed (scripts/test installs
    them), common.Skip unless we are root."""
    missing = [t for t in (CONTAINERD, CTR_REMOTE) if not os.access(t, os.X_OK)]
    if missing:
        raise Fail('missing %s (scripts/test installs containerd stargz-snapshotter)'
                   % ', '.join(missing))
    if os.geteuid() != 0:
        raise Skip('containerd needs root')


class Containerd:
    """`containerd` on a unix socket under workdir; `with Containerd(dir) as c: c.ctr(...)`.

    Its own config (so /etc/containerd/config.toml is never read), --root, --state and
    --address, all under workdir; no TCP, debug or metrics listeners.  start() waits until
    `ctr version` answers; stop() SIGTERMs its process group, SIGKILLs after 10 s, waits."""

    def __init__(self, workdir, startup_timeout=30):
        self.workdir = os.path.abspath(workdir)
        self.root = os.path.join(self.workdir, 'root')
        self.state = os.path.join(self.workdir, 'state')
        self.address = os.path.join(self.workdir, 'containerd.sock')
        self.config_path = os.path.join(self.workdir, 'config.toml')
        self.log_path = os.path.join(self.workdir, 'containerd.log')
        self.startup_timeout = startup_timeout
        self.proc = None
        if len(self.address) + len('.ttrpc') >= 108:      # sun_path limit
            raise ValueError('workdir path too long for a unix socket: %s' % self.address)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def _write_config(self):
        q = json.dumps           # a JSON string is a valid TOML basic string
        cfg = ('version = 2\nroot = %s\nstate = %s\ndisabled_plugins = %s\n'
               '[grpc]\n  address = %s\n[ttrpc]\n  address = %s\n'
               '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
               % (q(self.root), q(self.state), q(_DISABLED), q(self.address),
                  q(self.address + '.ttrpc')))
        with open(self.config_path, 'w') as f:
            f.write(cfg)

    def start(self):
        require_lazy_tools()
        os.makedirs(self.workdir, exist_ok=True)
        self._write_config()
        cmd = _DEATHSIG + [CONTAINERD, '--config', self.config_path, '--root', self.root,
                           '--state', self.state, '--address', self.address]
        with open(self.log_path, 'ab') as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if os.path.exists(self.address):
                r = self._run(['version'], timeout=10, connect='1s')
                if r.returncode == 0:
                    return self
            time.sleep(0.1)
        rc = self.proc.poll()
        self.stop()
        raise RegistryError('containerd %s; %s:\n%s' % (
            'exited with %d' % rc if rc is not None else
            'did not answer within %ds' % self.startup_timeout, self.log_path, self.log_tail()))

    def stop(self):
        """Idempotent.  The workdir (content store, log) is the caller's to remove."""
        p, self.proc = self.proc, None
        stop_process_group(p)

    def log_tail(self, n=30):
        try:
            with open(self.log_path, 'rb') as f:
                return b''.join(f.readlines()[-n:]).decode(errors='replace')
        except OSError:
            return '(no log)'

    def _run(self, args, timeout=CTR_TIMEOUT, connect='10s'):
        cmd = [CTR_REMOTE, '--address', self.address, '--namespace', NAMESPACE,
               '--connect-timeout', connect] + [str(a) for a in args]
        try:
            return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=timeout, env=no_proxy_env())
        except subprocess.TimeoutExpired:
            raise RegistryError('HANG: %s did not finish within %ds' % (' '.join(cmd), timeout))

    def ctr(self, *args, timeout=CTR_TIMEOUT):
        """Run `ctr-remote --address SOCK --namespace ocifs ARGS`; raise with its stderr (and
        containerd's log tail) unless it exits 0.  Returns the CompletedProcess."""
        r = self._run(args, timeout)
        if r.returncode != 0:
            raise RegistryError('ctr-remote %s exited %d:\n%s\ncontainerd log:\n%s' % (
                ' '.join(map(str, args)), r.returncode,
                r.stderr.decode(errors='replace')[-3000:], self.log_tail(10)))
        return r


def zstd_chunked_annotation(annotations, name):
    """The value of zstd:chunked annotation `name` ('manifest-position', 'manifest-checksum')
    under whichever prefix the producer used, or None."""
    for p in ZSTD_CHUNKED_PREFIXES:
        if p + name in annotations:
            return annotations[p + name]
    return None


def _check_layers(man, kind):
    """Assert the converted manifest has the media types and annotations ctr-remote writes."""
    assert man.get('mediaType', OCI_MANIFEST) == OCI_MANIFEST, man.get('mediaType')
    assert man['config']['mediaType'] == 'application/vnd.oci.image.config.v1+json', man
    for l in man['layers']:
        ann = l.get('annotations', {})
        if kind == 'estargz-legacy':
            assert l['mediaType'] == GZIP_LAYER and TOC_DIGEST not in ann, l
            continue
        assert l['mediaType'] == (ZSTD_LAYER if kind == 'zstdchunked' else GZIP_LAYER), l
        assert ann.get(TOC_DIGEST, '').startswith('sha256:'), l
        assert int(ann[UNCOMPRESSED_SIZE]) > 0, l
        if kind == 'zstdchunked':
            pos = zstd_chunked_annotation(ann, 'manifest-position')
            assert pos and len(pos.split(':')) == 4 and pos.endswith(':1'), l
            off, clen, _ = map(int, pos.split(':')[:3])
            assert off + clen <= l['size'], l
            assert zstd_chunked_annotation(ann, 'manifest-checksum').startswith('sha256:'), l


def convert_and_push(ctrd, registry, src_repo_tag, dst_repo_tag, kind, prioritized=None,
                     chunk_size=None, level=None):
    """Fetch registry/src_repo_tag into ctrd (--plain-http), convert it to `kind` (see KINDS),
    push it as registry/dst_repo_tag and return the pushed manifest (a dict, read back with
    the registry's client) after checking its layers' media types and annotations.

    prioritized: paths for `--estargz-record-in` (eStargz puts them first, followed by a
    `.prefetch.landmark`; without it every layer starts with `.no.prefetch.landmark`).
    chunk_size: `--estargz-chunk-size` (default 4 MiB); level: `--estargz-compression-level`
    (default 9).  All three apply to zstdchunked too."""
    if kind not in KINDS:
        raise ValueError('kind must be one of %s' % (KINDS,))
    src, dst = registry.ref(src_repo_tag), registry.ref(dst_repo_tag)
    auth = ['--user', registry.creds] if getattr(registry, 'creds', None) else []
    ctrd.ctr('content', 'fetch', '--plain-http', *auth, src)
    opts = ['--zstdchunked' if kind == 'zstdchunked' else '--estargz', '--oci']
    if prioritized:
        rec = os.path.join(ctrd.workdir, 'record-%s.json' % digest_of(dst.encode())[7:19])
        with open(rec, 'w') as f:
            f.writelines(json.dumps({'path': p}) + '\n' for p in prioritized)
        opts += ['--estargz-record-in', rec]
    if chunk_size:
        opts += ['--estargz-chunk-size', chunk_size]
    if level is not None:
        opts += ['--estargz-compression-level', level]
    r = ctrd.ctr('image', 'convert', *opts, src, dst)
    digest = r.stdout.decode().split()[-1]
    repo, _, tag = dst_repo_tag.rpartition(':')
    client = registry.client() if hasattr(registry, 'client') else RegistryClient(registry.host)
    if kind == 'estargz-legacy':
        digest = _push_legacy(ctrd, registry, dst_repo_tag, digest)
    else:
        ctrd.ctr('image', 'push', '--plain-http', *auth, dst)
    _, man, raw = client.manifest(repo, tag)
    assert digest_of(raw) == digest, (digest_of(raw), digest)
    _check_layers(man, kind)
    return man


# ---------------------------------------------------------------- legacy stargz

def legacy_footer(toc_offset):
    """The 47-byte footer of pre-eStargz stargz (google/crfs): an empty gzip member (as Go's
    gzip.Writer at NoCompression writes it) whose raw Extra field is '%016xSTARGZ'."""
    extra = b'%016xSTARGZ' % toc_offset
    return (b'\x1f\x8b\x08\x04' + b'\0\0\0\0' + b'\x00\xff' + len(extra).to_bytes(2, 'little')
            + extra + b'\x01\x00\x00\xff\xff' + b'\0' * 8)


def estargz_toc_offset(footer):
    """TOC offset from an eStargz (51-byte) or legacy (47-byte) footer."""
    if len(footer) == 51 and footer[12:16] == b'SG\x16\x00' and footer[32:38] == b'STARGZ':
        return int(footer[16:32], 16)
    if len(footer) == 47 and footer[10:12] == b'\x16\x00' and footer[28:34] == b'STARGZ':
        return int(footer[12:28], 16)
    raise ValueError('not a stargz footer: %r' % footer)


def _push_legacy(ctrd, registry, dst_repo_tag, manifest_digest):
    """Rewrite the converted eStargz image (manifest_digest, in ctrd's content store) to legacy
    stargz in an OCI layout under ctrd.workdir and push that byte for byte with skopeo
    (RegistryClient.put_blob sends a large body before its 401 is answered, which Basic auth
    breaks); returns the pushed manifest's digest."""
    layout = tempfile.mkdtemp(prefix='legacy-', dir=ctrd.workdir)
    w = fixtures.OCIWriter(layout)

    def get(d):
        return ctrd.ctr('content', 'get', d).stdout
    man = json.loads(get(manifest_digest))
    for l in man['layers']:
        data = get(l['digest'])
        data = data[:-51] + legacy_footer(estargz_toc_offset(data[-51:]))
        l['digest'], l['size'] = w.blob(data), len(data)
        l.pop('annotations', None)
    w.blob(get(man['config']['digest']))
    raw = json.dumps(man, indent=2).encode()
    with open(os.path.join(layout, 'index.json'), 'w') as f:
        json.dump({'schemaVersion': 2, 'manifests': [{
            'mediaType': OCI_MANIFEST, 'digest': w.blob(raw), 'size': len(raw),
            'annotations': {'org.opencontainers.image.ref.name': fixtures.TAG}}]}, f)
    try:
        return push_image(layout, registry, dst_repo_tag)
    finally:
        shutil.rmtree(layout, ignore_errors=True)


# ---------------------------------------------------------------- self-check

def _zstd_d(data):
    """Decompress with the zstd CLI (skippable frames are skipped); stdlib has no zstd."""
    return subprocess.run(['zstd', '-dcq'], input=data, stdout=subprocess.PIPE, check=True,
                          timeout=120).stdout


def _sha(b):
    return 'sha256:' + hashlib.sha256(b).hexdigest()


def _short(e):
    """A TOC entry as one line, long fields cut."""
    e = {k: (v[:19] + '…' if isinstance(v, str) and len(v) > 24 else v) for k, v in e.items()}
    return json.dumps(e, ensure_ascii=False)


def _show_toc(label, toc_json, want_digest, blob, magic):
    """Print what a parser needs to know about a TOC (eStargz and zstd:chunked share it)."""
    toc = json.loads(toc_json)
    ents = toc['entries']
    print('  %s: %d bytes, sha256 %s annotation; version %r; keys %s' % (
        label, len(toc_json), '==' if _sha(toc_json) == want_digest else '!=',
        toc.get('version'), sorted(toc)))
    types = {}
    for e in ents:
        types[e['type']] = types.get(e['type'], 0) + 1
    print('  entries: %d, by type %s' % (len(ents), types))
    print('  fields used: %s' % sorted({k for e in ents for k in e}))
    land = [(i, e['name']) for i, e in enumerate(ents) if 'landmark' in e['name']]
    print('  landmarks (index, name): %s' % land)
    for e in ents[:8]:
        print('    ' + _short(e))
    shown = {}
    for e in ents:           # a few entries a parser must get right, at most 3 per name
        n = e['name']
        if (n in ('data/large', 'data/sparse', 'data/empty', 'data/subsec', 'xattr/user',
                  'xattr/cap', 'xattr/trusted', 'special/null', 'special/bigdev', 'special/fifo',
                  'sym/rel', 'hl/orig', 'keep/link2', 'modes/suid', 'modes/sticky',
                  'modes/owned', '.wh.gone', 'opq/.wh..wh..opq', 'opq/')
                or '\ufffd' in n or n.startswith('names/caf')) and shown.get(n, 0) < 3:
            shown[n] = shown.get(n, 0) + 1
            print('    ' + _short(e))
    _check_chunks(ents, blob, magic)
    return toc


def _member(blob, off, end, magic):
    """The uncompressed bytes of the one gzip member / zstd frame(s) in blob[off:end]."""
    if magic[:2] == b'\x1f\x8b':
        d = zlib.decompressobj(31)
        return d.decompress(blob[off:end]), len(blob[off:end]) - len(d.unused_data)
    return _zstd_d(blob[off:end]), end - off


def _check_chunks(ents, blob, magic):
    """Every entry with an offset: the compressed unit there starts with magic and decompresses
    to the chunk's bytes first (checked against chunkDigest); say what follows them."""
    offs = sorted({e['offset'] for e in ents if e.get('offset')})
    bad, tails, files = [], {}, {}
    for e in ents:
        if e['type'] == 'reg':
            files[e['name']] = e
        if not e.get('offset'):
            continue
        f = files[e['name']]
        n = e.get('chunkSize') or f['size'] - e.get('chunkOffset', 0)
        i = offs.index(e['offset'])
        end = offs[i + 1] if i + 1 < len(offs) else len(blob)
        data, used = _member(blob, e['offset'], end, magic)
        ok = blob[e['offset']:e['offset'] + len(magic)] == magic and \
            _sha(data[:n]) == e['chunkDigest']
        if not ok:
            bad.append(e['name'])
        rest = data[n:]
        pad = -n % 512
        kind = ('nothing' if not rest else
                'other bytes' if (n + len(rest)) % 512 or rest[:pad].strip(b'\0') else
                'tar padding only' if len(rest) == pad else
                'tar padding + next header(s)' if rest[pad + 257:pad + 262] == b'ustar' else
                'tar padding + other blocks')
        tails[kind] = tails.get(kind, 0) + 1
    print('  %d entries with offset: unit starts with %s, data first, sha256 == chunkDigest: %s;'
          ' after the data the unit holds %s' % (sum(1 for e in ents if e.get('offset')),
                                                  magic.hex(), 'all' if not bad else
                                                  'NOT %s' % bad[:5], tails))
    if 'innerOffset' in {k for e in ents for k in e}:
        print('  innerOffset used')


def _tar_order(tar):
    names = tarfile.open(fileobj=io.BytesIO(tar)).getnames()
    return '%d members, first %s, last %s' % (len(names), names[:3], names[-2:])


def _inspect_estargz(blob, layer, diff_id):
    ann = layer.get('annotations', {})
    legacy = blob[-47:-35] == b'\x1f\x8b\x08\x04\0\0\0\0\x00\xff\x16\x00'
    footer = blob[-47:] if legacy else blob[-51:]
    off = estargz_toc_offset(footer)
    print('  footer (%d bytes): %s' % (len(footer), footer.hex(' ')))
    print('  footer as text: %r -> TOC gzip member at %d (blob %d bytes)' % (
        footer[10:len(footer) - 13], off, len(blob)))
    tar = gzip.decompress(blob[off:-len(footer)])
    members = tarfile.open(fileobj=io.BytesIO(tar)).getmembers()
    print('  TOC member: tar of %d bytes holding %s' % (
        len(tar), [(m.name, m.size) for m in members]))
    toc_json = tarfile.open(fileobj=io.BytesIO(tar)).extractfile('stargz.index.json').read()
    _show_toc('TOC', toc_json, ann.get(TOC_DIGEST), blob, b'\x1f\x8b\x08')
    full = gzip.decompress(blob)
    print('  whole blob as tar.gz: %d bytes, sha256 %s diff_id, uncompressed-size %s; %s' % (
        len(full), '==' if _sha(full) == diff_id else '!=', ann.get(UNCOMPRESSED_SIZE),
        _tar_order(full)))


def _inspect_zstdchunked(blob, layer, diff_id):
    ann = layer['annotations']
    tail = blob[-48:]
    print('  last 48 bytes: %s' % tail.hex(' '))
    magic, size = tail[:4], int.from_bytes(tail[4:8], 'little')
    f = [int.from_bytes(tail[8 + 8 * i:16 + 8 * i], 'little') for i in range(4)]
    print('  skippable frame magic %s size %d; footer: offset %d compressed %d uncompressed %d '
          'type %d magic %r' % (magic.hex(), size, f[0], f[1], f[2], f[3], tail[40:]))
    pos = zstd_chunked_annotation(ann, 'manifest-position')
    print('  annotation manifest-position %s (%s footer)' % (
        pos, 'matches' if pos == '%d:%d:%d:%d' % tuple(f) else 'DIFFERS from'))
    off, clen = f[0], f[1]
    ctoc = blob[off:off + clen]
    print('  TOC frame: header before it %s; compressed TOC starts %s; sha256 %s '
          'manifest-checksum' % (blob[off - 8:off].hex(' '), ctoc[:4].hex(),
                                 '==' if _sha(ctoc) == zstd_chunked_annotation(
                                     ann, 'manifest-checksum') else '!='))
    _show_toc('TOC', _zstd_d(ctoc), ann.get(TOC_DIGEST), blob, b'\x28\xb5\x2f\xfd')
    full = _zstd_d(blob)
    print('  whole blob as tar.zst: %d bytes, sha256 %s diff_id, uncompressed-size %s; %s' % (
        len(full), '==' if _sha(full) == diff_id else '!=', ann.get(UNCOMPRESSED_SIZE),
        _tar_order(full)))


def main():
    from registry import Registry, require_registry_tools
    try:
        require_lazy_tools()
        require_registry_tools(('skopeo', 'umoci', 'zstd'))
    except Skip as e:
        print('SKIP:', e)
        return 77
    host_paths = ('/var/lib/containerd', '/run/containerd', '/opt/containerd')
    before = {p: os.path.exists(p) for p in host_paths}
    tmp = tempfile.mkdtemp(prefix='ocifs-lazy-')
    try:
        os.makedirs(os.path.join(tmp, 'img'))
        layout = fixtures.build_umoci_image(os.path.join(tmp, 'img'))
        with Registry() as reg, Containerd(os.path.join(tmp, 'ctrd')) as ctrd:
            push_image(layout, reg, 'umoci:t')
            client = reg.client()
            jobs = [('estargz', 'esgz', {}), ('zstdchunked', 'zstdc', {}),
                    ('estargz-legacy', 'legacy', {}),
                    ('estargz', 'esgz-prio', {'prioritized': ['etc/os-release', 'bin/busybox'],
                                              'chunk_size': 1 << 20})]
            mans = {}
            for kind, tag, kw in jobs:
                t0 = time.monotonic()
                mans[tag] = convert_and_push(ctrd, reg, 'umoci:t', 'umoci:' + tag, kind, **kw)
                print('== %s -> umoci:%s %s: %.1fs' % (kind, tag, kw or '', time.monotonic() - t0))
                for l in mans[tag]['layers']:
                    print('  %s %s %d %s' % (l['mediaType'], l['digest'][:19], l['size'],
                                             json.dumps(l.get('annotations', {}))))
            for tag, man in mans.items():
                cfg = json.loads(client.blob('umoci', man['config']['digest'])[2])
                for i in (0, 1):          # layer 0: big, chunked files; layer 1: whiteouts
                    layer = man['layers'][i]
                    blob = client.blob('umoci', layer['digest'])[2]
                    print('== umoci:%s layer %d %s (%d bytes)' % (tag, i, layer['mediaType'],
                                                                  len(blob)))
                    inspect = _inspect_zstdchunked if tag == 'zstdc' else _inspect_estargz
                    inspect(blob, layer, cfg['rootfs']['diff_ids'][i])
            ct, _, raw = client.manifest('umoci', 'esgz')
            print('== eStargz manifest as pushed (Content-Type %s), first 300 bytes:' % ct)
            print(raw[:300].decode())
    finally:
        if os.environ.get('OCIFS_TEST_KEEP'):
            print('keeping', tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    after = {p: os.path.exists(p) for p in host_paths}
    assert before == after, ('host containerd paths changed', before, after)
    return 0


if __name__ == '__main__':
    sys.exit(main())
