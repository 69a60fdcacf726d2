#!/usr/bin/python3
"""Hostile images against the resource limits (include/ocifs/util/limits.hpp), and their cases.

Every image is generated at test time: decompression bombs are zstd frames written block by block
(a 128 KiB run of zeros is a 4-byte RLE block), big layers are streamed through gzip; nothing
large is stored in the repository.  The cases are registered in suite.py (CASES) and meson.

Memory is measured as the peak RSS (VmHWM) of the mount's daemon, compared with the same
measurement for a tiny image, so the bound is on what the image adds.
"""

import gzip
import hashlib
import json
import os
import struct
import time

import fixtures
from common import OCIFS, Fail, Mount, check, daemon_pids, log, ocifs, run

TAG = fixtures.TAG
T0 = 1577836800


# ------------------------------------------------------------------ builders

def ustar_header(name, size=0, typ=b'0', mode=0o644):
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b'%07o\0' % mode
    h[108:116] = b'0000000\0'
    h[116:124] = b'0000000\0'
    h[124:136] = b'%011o\0' % size
    h[136:148] = b'%011o\0' % T0
    h[156:157] = typ
    h[257:265] = b'ustar\x0000'
    h[148:156] = b' ' * 8
    h[148:156] = b'%06o\0 ' % sum(h)
    return bytes(h)


def pax_header(records):
    """A PAX 'x' header block plus its payload: records = [(key bytes, value bytes)]."""
    body = b''
    for k, v in records:
        rest = b' ' + k + b'=' + v + b'\n'
        n = len(rest) + 1
        while len(str(n)) + len(rest) != n:
            n += 1
        body += str(n).encode() + rest
    return ustar_header(b'PaxHeaders/x', len(body), b'x') + body + b'\0' * (-len(body) % 512)


def tar_end():
    return b'\0' * 1024


class ZstdFrameWriter:
    """Writes zstd frames block by block: raw blocks for bytes, RLE blocks for runs of zeros.

    A frame has no content size and a 128 KiB window; an RLE block says "this byte, N times" in 4
    bytes, so 6 GiB of zeros is a 197 KB frame."""
    BLOCK = 128 * 1024

    def __init__(self, f):
        self.f = f
        self.in_frame = False

    def _block(self, last, typ, size, payload):
        v = last | (typ << 1) | (size << 3)
        self.f.write(struct.pack('<I', v)[:3] + payload)

    def start(self):
        self.f.write(b'\x28\xb5\x2f\xfd' + b'\x00' + bytes([(17 - 10) << 3]))
        self.in_frame = True

    def raw(self, data):
        for i in range(0, len(data), self.BLOCK):
            part = data[i:i + self.BLOCK]
            self._block(0, 0, len(part), part)

    def zeros(self, n):
        while n:
            k = min(self.BLOCK, n)
            self._block(0, 1, k, b'\0')
            n -= k

    def end(self):
        self._block(1, 0, 0, b'')   # an empty raw block ends the frame
        self.in_frame = False


def zstd_zeros_layer(path, zero_bytes, frame_bytes=None, name=b'zeros'):
    """A tar of one file of `zero_bytes` zeros, zstd-compressed: one frame, or frames of at most
    `frame_bytes` decoded bytes.  Returns (blob digest, diff_id)."""
    tar_hash = hashlib.sha256()
    with open(path, 'wb') as f:
        w = ZstdFrameWriter(f)
        head = ustar_header(name, zero_bytes)
        tail = b'\0' * (-zero_bytes % 512) + tar_end()
        tar_hash.update(head)
        w.start()
        w.raw(head)
        left, in_frame = zero_bytes, len(head)
        chunk = b'\0' * (1 << 20)
        while left:
            if frame_bytes and in_frame >= frame_bytes:
                w.end()
                w.start()
                in_frame = 0
            n = min(left, frame_bytes - in_frame if frame_bytes else left, 1 << 20)
            w.zeros(n)
            tar_hash.update(chunk[:n])
            left -= n
            in_frame += n
        w.raw(tail)
        tar_hash.update(tail)
        w.end()
    return 'sha256:' + file_sha256(path), 'sha256:' + tar_hash.hexdigest()


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for b in iter(lambda: f.read(1 << 20), b''):
            h.update(b)
    return h.hexdigest()


def empty_files_layer(path, n, per_dir=1000):
    """A gzip layer of `n` empty files in directories of `per_dir`, streamed: headers are a
    template with the name and checksum patched.  Returns (digest, diff_id, path bytes, name bytes)."""
    template = bytearray(ustar_header(b''))
    template[148:156] = b' ' * 8
    base = sum(template)
    tar_hash = hashlib.sha256()
    path_bytes = name_bytes = 0
    with open(path, 'wb') as raw, gzip.GzipFile(fileobj=raw, mode='wb', compresslevel=1, mtime=0) as gz:
        buf = []

        def emit(block):
            tar_hash.update(block)
            buf.append(block)
        made = 0
        d = 0
        while made < n:
            dname = b'd%05d' % d
            emit(ustar_header(dname + b'/', typ=b'5', mode=0o755))
            made += 1
            path_bytes += len(dname)
            name_bytes += len(dname)
            for i in range(min(per_dir, n - made)):
                fname = b'f%06d' % i
                full = dname + b'/' + fname
                h = bytearray(template)
                h[0:len(full)] = full
                h[148:156] = b'%06o\0 ' % (base + sum(full))
                emit(bytes(h))
                made += 1
                path_bytes += len(full)
                name_bytes += len(fname)
            d += 1
            gz.write(b''.join(buf))
            buf = []
        emit(tar_end())
        gz.write(b''.join(buf))
    return 'sha256:' + file_sha256(path), 'sha256:' + tar_hash.hexdigest(), path_bytes, name_bytes


class Layout:
    """An OCI layout of blobs written as files (big layers never pass through memory)."""

    def __init__(self, path):
        self.path = path
        os.makedirs(os.path.join(path, 'blobs', 'sha256'), exist_ok=True)
        with open(os.path.join(path, 'oci-layout'), 'w') as f:
            json.dump({'imageLayoutVersion': '1.0.0'}, f)
        self.layers = []   # (descriptor, diff_id)

    def blob_path(self, digest):
        return os.path.join(self.path, 'blobs', 'sha256', digest.split(':', 1)[1])

    def put(self, data):
        d = 'sha256:' + hashlib.sha256(data).hexdigest()
        with open(self.blob_path(d), 'wb') as f:
            f.write(data)
        return d

    def add_file_layer(self, tmp, digest, diff_id, media_type):
        os.replace(tmp, self.blob_path(digest))
        self.layers.append(({'mediaType': media_type, 'digest': digest,
                             'size': os.path.getsize(self.blob_path(digest))}, diff_id))

    def add_tar_layer(self, tar):
        data = gzip.compress(tar, compresslevel=6, mtime=0)
        self.layers.append(({'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip',
                             'digest': self.put(data), 'size': len(data)},
                            'sha256:' + hashlib.sha256(tar).hexdigest()))

    def write(self, config_bytes=None, layers=None):
        if config_bytes is None:
            config_bytes = json.dumps({
                'architecture': 'amd64', 'os': 'linux', 'created': '2020-01-01T00:00:00Z',
                'rootfs': {'type': 'layers', 'diff_ids': [d for _, d in self.layers]}}).encode()
        manifest = {'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
                    'config': {'mediaType': 'application/vnd.oci.image.config.v1+json',
                               'digest': self.put(config_bytes), 'size': len(config_bytes)},
                    'layers': layers if layers is not None else [d for d, _ in self.layers]}
        mb = json.dumps(manifest).encode()
        with open(os.path.join(self.path, 'index.json'), 'w') as f:
            json.dump({'schemaVersion': 2, 'manifests': [{
                'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': self.put(mb),
                'size': len(mb), 'annotations': {'org.opencontainers.image.ref.name': TAG}}]}, f)
        return 'oci:%s:%s' % (self.path, TAG)


# ------------------------------------------------------------------ measuring

def daemon_hwm_kib(mnt):
    """Peak RSS of the mount's server (the process that indexes and serves; its supervisor
    holds no image data)."""
    pids = [p for p in daemon_pids(mnt) if open('/proc/%d/cmdline' % p, 'rb').read().startswith(b'ocifs:\0server\0')]
    check(len(pids) == 1, 'expected one server for %s, found %s' % (mnt, pids))
    with open('/proc/%d/status' % pids[0]) as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1])
    raise Fail('no VmHWM for pid %d' % pids[0])


def du_bytes(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for n in files:
            st = os.lstat(os.path.join(dirpath, n))
            total += st.st_blocks * 512
    return total


def refused(r, what, *needles):
    err = r.stderr.decode(errors='replace')
    check(r.returncode != 0, '%s: succeeded, must be refused (stderr %r)' % (what, err[-2000:]))
    check(0 < r.returncode < 128, '%s: exit %d looks like a crash: %r' % (what, r.returncode, err[-2000:]))
    for n in needles:
        check(n in err, '%s: stderr lacks %r:\n%s' % (what, n, err[-3000:]))
    log('  refused: %s' % (err.strip().splitlines()[-1][:300] if err.strip() else ''))
    return err


# ------------------------------------------------------------------ cases

ZSTD = 'application/vnd.oci.image.layer.v1.tar+zstd'
GZIP = 'application/vnd.oci.image.layer.v1.tar+gzip'
MiB = 1 << 20


def case_hostile_zstd_bomb(work):
    """Decoded zstd copies count against --cache-max: a single-frame bomb is refused without
    filling the disk; a layer in small frames needs no copy and mounts; gc trims old copies."""
    # 1. One frame of 256 MiB of zeros (a 8 KB blob) with --cache-max 64M: a copy may take 32 MiB.
    lay = Layout(work('bomb'))
    digest, diff_id = zstd_zeros_layer(work('bomb.zst'), 256 * MiB)
    lay.add_file_layer(work('bomb.zst'), digest, diff_id, ZSTD)
    ref = lay.write()
    log('  bomb blob: %d bytes for 256 MiB' % os.path.getsize(lay.blob_path(digest)))
    cache = work('cache1')
    t0 = time.time()
    r = ocifs('index', '--cache-dir', cache, '--cache-max', '64M', ref)
    refused(r, 'single-frame zstd bomb', digest.split(':')[1][:12], '--cache-max', '32.0 MiB')
    log('  refused in %.2fs; cache holds %d bytes' % (time.time() - t0, du_bytes(cache)))
    check(du_bytes(cache) < 1 * MiB, 'the refused bomb left %d bytes in the cache' % du_bytes(cache))
    mnt = work('mnt')
    os.makedirs(mnt)
    r = run([OCIFS, 'mount', '--cache-dir', cache, '--cache-max', '64M', ref, mnt])
    refused(r, 'mounting the bomb', digest.split(':')[1][:12])

    # 2. 96 MiB of zeros in frames of 4 MiB: read frame by frame, no copy, whatever the budget.
    lay2 = Layout(work('frames'))
    digest2, diff2 = zstd_zeros_layer(work('frames.zst'), 96 * MiB, frame_bytes=4 * MiB)
    lay2.add_file_layer(work('frames.zst'), digest2, diff2, ZSTD)
    ref2 = lay2.write()
    cache2 = work('cache2')
    with Mount(ref2, mnt, cache2, extra=['--cache-max', '64M']):
        with open(os.path.join(mnt, 'zeros'), 'rb') as f:
            total, nonzero = 0, 0
            for b in iter(lambda: f.read(4 * MiB), b''):
                total += len(b)
                nonzero += len(b) - b.count(0)
        check(total == 96 * MiB and nonzero == 0, 'framed zeros: %d bytes, %d non-zero' % (total, nonzero))
    check(du_bytes(os.path.join(cache2, 'decoded')) == 0, 'a layer in small frames got a decoded copy')

    # 3. A copy made without a budget is trimmed by gc to the share of the budget it is given.
    lay3 = Layout(work('single'))
    digest3, diff3 = zstd_zeros_layer(work('single.zst'), 48 * MiB)
    lay3.add_file_layer(work('single.zst'), digest3, diff3, ZSTD)
    ref3 = lay3.write()
    cache3 = work('cache3')
    ocifs('index', '--cache-dir', cache3, '--cache-max', '0', ref3, check_rc=True)
    before = du_bytes(os.path.join(cache3, 'decoded'))
    check(before >= 48 * MiB, 'no decoded copy without a budget (%d bytes)' % before)
    r = ocifs('cache', 'gc', '--cache-dir', cache3, '--cache-max', '64M', check_rc=True)
    after = du_bytes(os.path.join(cache3, 'decoded'))
    log('  gc: decoded copies %d -> %d bytes; %s' % (before, after, r.stdout.decode().strip().replace('\n', '; ')))
    check(after == 0, 'gc --cache-max 64M left %d bytes of decoded copies (a 48 MiB copy is over the '
          '32 MiB share)' % after)
    # And the image still mounts within a budget that allows the copy (it is decoded again).
    with Mount(ref3, mnt, cache3, extra=['--cache-max', '256M']):
        check(os.path.getsize(os.path.join(mnt, 'zeros')) == 48 * MiB, 'size of the re-decoded layer')


case_hostile_zstd_bomb.tools = ()


def case_hostile_entry_memory(work):
    """Empty files: the daemon's peak RSS grows by at most 250 bytes an entry plus its path and
    name (measured: ~190; it was ~465 before the compact index and tree). The growth is the slope
    between 150k and 300k entries, so that what indexing costs whatever the layer (the read-ahead
    ring, decoder and packer buffers, thread arenas: up to 25 MB more when the machine is busy and
    the read-ahead runs ahead) cancels out."""
    # meson sets MALLOC_PERTURB_ for tests: glibc then writes every block it hands out, and the
    # untouched capacity of growing tables (reserved, never written) becomes resident: 301 bytes
    # an entry instead of 215. Memory is measured as a user runs the daemon.
    os.environ.pop('MALLOC_PERTURB_', None)
    sizes = (150_000, 300_000)
    refs, names = {}, {}
    t0 = time.time()
    for n in sizes:
        lay = Layout(work('l%d' % n))
        digest, diff_id, path_bytes, name_bytes = empty_files_layer(work('l%d.tgz' % n), n)
        lay.add_file_layer(work('l%d.tgz' % n), digest, diff_id, GZIP)
        refs[n] = lay.write()
        names[n] = path_bytes + name_bytes
    log('  %s entries generated in %.1fs' % (' and '.join(map(str, sizes)), time.time() - t0))
    mnt = work('mnt')
    peaks = {}
    for n in sizes:
        for cache_state in ('cold', 'warm'):
            with Mount(refs[n], mnt, work('cache-%d' % n)):
                peaks[n, cache_state] = daemon_hwm_kib(mnt)
                check(len(os.listdir(os.path.join(mnt, 'd00000'))) == 1000, 'd00000 holds 1000 files')
    lo, hi = sizes
    for state in ('cold', 'warm'):
        per_entry = (peaks[hi, state] - peaks[lo, state]) * 1024 / (hi - lo)
        name_bytes = (names[hi] - names[lo]) / (hi - lo)
        log('  %s: daemon peak %d KiB with %d entries, %d KiB with %d: %.0f bytes an entry (%.0f of them '
            'path and name)' % (state, peaks[lo, state], lo, peaks[hi, state], hi, per_entry, name_bytes))
        check(per_entry <= 250 + name_bytes, '%s mount: %.0f bytes an entry, bound %.0f' % (
            state, per_entry, 250 + name_bytes))


case_hostile_entry_memory.tools = ()


def case_hostile_metadata_budget(work):
    """An image whose names pass the 64 MiB budget is refused, naming layer, entry and limit,
    before it costs more; paths of 4095 bytes and components of 255 are fine below it."""
    comp = b'n' * 255
    deep = b'/'.join([comp] * 15) + b'/' + b'f' * 254       # 4094 bytes: legal
    assert len(deep) <= 4096
    lay = Layout(work('names'))
    count = (64 * MiB) // len(deep) + 100
    tmp = work('names.tgz')
    h = hashlib.sha256()
    with open(tmp, 'wb') as raw, gzip.GzipFile(fileobj=raw, mode='wb', compresslevel=1, mtime=0) as gz:
        for i in range(count):
            path = deep[:-8] + b'%08d' % i
            block = pax_header([(b'path', path)]) + ustar_header(b'placeholder')
            h.update(block)
            gz.write(block)
        h.update(tar_end())
        gz.write(tar_end())
    digest = 'sha256:' + file_sha256(tmp)
    lay.add_file_layer(tmp, digest, 'sha256:' + h.hexdigest(), GZIP)
    ref = lay.write()
    t0 = time.time()
    r = ocifs('ls', '--cache-dir', work('cache'), ref)
    refused(r, 'names past the budget', digest.split(':')[1][:12], 'more than the limit of 67108864',
            'bytes of names', "at entry 'nnnn")
    log('  refused after %.1fs' % (time.time() - t0))
    # Just below the budget, the same names mount.
    lay2 = Layout(work('names-ok'))
    t = fixtures.TarBuilder()
    for i in range(3):
        t.file(os.fsdecode(deep[:-8] + b'%08d' % i), b'deep\n')
    lay2.add_tar_layer(t.getvalue())
    ref2 = lay2.write()
    r = ocifs('cat', '--cache-dir', work('cache2'), ref2, os.fsdecode(deep[:-8] + b'%08d' % 2), check_rc=True)
    check(r.stdout == b'deep\n', 'a 4094-byte path reads back')


case_hostile_metadata_budget.tools = ()


def case_hostile_config(work):
    """Configs: parsed keeping only the fields ocifs uses (a 15 MiB config of small objects costs
    its size, not 25 times it); above 16 MiB, or nested deeper than 100, refused."""
    t = fixtures.TarBuilder()
    t.file('hello', b'hello\n')
    tar = t.getvalue()
    diff_id = 'sha256:' + hashlib.sha256(tar).hexdigest()

    def config(junk, labels='{}'):
        head = ('{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Labels":%s},'
                '"rootfs":{"type":"layers","diff_ids":["%s"]},"junk":' % (labels, diff_id)).encode()
        return head + junk + b'}'

    def image(name, cfg):
        lay = Layout(work(name))
        lay.add_tar_layer(tar)
        return lay.write(config_bytes=cfg)

    small = image('small', config(b'[]'))
    n = (15 * MiB) // 3
    big_junk = b'[' + b'{},' * (n - 1) + b'{}]'
    big = image('big', config(big_junk, '{"a":' + '{"b":' * 50 + '1' + '}' * 50 + '}'))
    mnt = work('mnt')
    peaks = {}
    for name, ref in (('small', small), ('big', big)):
        with Mount(ref, mnt, work('cache-' + name)):
            peaks[name] = daemon_hwm_kib(mnt)
            check(open(os.path.join(mnt, 'hello'), 'rb').read() == b'hello\n', 'hello in %s' % name)
    log('  daemon peak: %d KiB with a tiny config, %d KiB with 15 MiB of small objects' % (
        peaks['small'], peaks['big']))
    # The document itself is read whole (15 MiB) and kept for `inspect`; its DOM (~400 MB) is not built.
    check(peaks['big'] - peaks['small'] <= 3 * 15 * 1024, '15 MiB config: peak grew by %d KiB (bound %d)' % (
        peaks['big'] - peaks['small'], 3 * 15 * 1024))

    over = image('over', config(b'"' + b'x' * (17 * MiB) + b'"'))
    r = ocifs('index', '--cache-dir', work('c3'), over)
    refused(r, 'a 17 MiB config', '16777216')
    deep = image('deep', config(b'[' * 5000 + b']' * 5000))
    r = ocifs('index', '--cache-dir', work('c4'), deep)
    refused(r, 'a config nested 5000 deep', 'nest deeper than 100')


case_hostile_config.tools = ()


def case_hostile_layers(work):
    """Manifests naming one blob as thousands of layers: refused at once, never "missing"."""
    lay = Layout(work('L'))
    t = fixtures.TarBuilder()
    t.file('hello', b'hello\n')
    lay.add_tar_layer(t.getvalue())
    desc, _ = lay.layers[0]
    for count, needle in ((1000, 'has 1000 layers, more than the limit of 500'), (100_000, 'more than')):
        ref = lay.write(layers=[desc] * count)
        t0 = time.time()
        r = ocifs('ls', '--cache-dir', work('cache'), ref)
        err = refused(r, '%d layers' % count, needle)
        check('missing' not in err, '%d layers reported as missing: %s' % (count, err[-500:]))
        log('  %d layers refused in %.2fs' % (count, time.time() - t0))
    # 500 layers of the same blob are fine: one open file between them.
    ref = lay.write(layers=[desc] * 500)
    r = ocifs('cat', '--cache-dir', work('cache'), ref, 'hello', check_rc=True)
    check(r.stdout == b'hello\n', '500 layers of one blob')


case_hostile_layers.tools = ()


ESC_NAME = b'esc\x1b]0;owned\x07\x1b[31mred\x9b'


def name_bytes_layer():
    """Names that used to break listings or reach the terminal raw, and a smuggling header."""
    t = fixtures.TarBuilder()
    t.file('ok', b'fine\n')
    t.raw(pax_header([(b'path', b'\0starts-with-nul')]) + ustar_header(b'x1', 5) + b'hid1\n' + b'\0' * 507)
    t.raw(pax_header([(b'path', b'\0')]) + ustar_header(b'x2', 5) + b'hid2\n' + b'\0' * 507)
    t.raw(pax_header([(b'path', b'abc\0def')]) + ustar_header(b'x3', 5) + b'hid3\n' + b'\0' * 507)
    t.raw(pax_header([(b'path', b'dir/' + b'c' * 300)]) + ustar_header(b'x4', 5) + b'hid4\n' + b'\0' * 507)
    t.raw(pax_header([(b'path', ESC_NAME)]) + ustar_header(b'x5', 4) + b'esc\n' + b'\0' * 508)
    # A hard link to nothing, named with escapes: its warning carries the name.
    t.raw(pax_header([(b'path', b'hl-' + ESC_NAME), (b'linkpath', b'no/such/' + ESC_NAME)]) +
          ustar_header(b'x6', 0, b'1'))
    # A regular file whose name ends in '/', its body a valid header: Docker reads a file.
    body = ustar_header(b'smuggled', 0) + b'\0' * 512
    t.raw(ustar_header(b'evil/', len(body)) + body)
    t.file('after', b'after\n')
    return t.getvalue()


def case_hostile_name_bytes(work):
    """NUL bytes, names past NAME_MAX, escape sequences, a file named 'evil/': the root lists,
    nothing is cut short, no raw control byte reaches stdout or stderr, nothing is smuggled."""
    lay = Layout(work('N'))
    lay.add_tar_layer(name_bytes_layer())
    ref = lay.write()
    mnt = work('mnt')
    with Mount(ref, mnt, work('cache')) as m:
        try:
            names = os.listdir(os.fsencode(mnt))
        except OSError as e:   # EIO when a name started with NUL
            raise Fail('cannot list the root: %s' % e)
        log('  root: %s' % sorted(names))
        for gone in (b'abc', b'starts-with-nul', b'', b'smuggled', b'hl-' + ESC_NAME, b'dir'):
            check(gone not in names, '%r listed in %s' % (gone, sorted(names)))
        check(ESC_NAME in names, 'the escape-sequence name is a valid file name: %s' % names)
        evil = os.path.join(mnt, 'evil')
        check(os.path.isfile(evil), "'evil/' must be a regular file")
        check(open(evil, 'rb').read() == ustar_header(b'smuggled', 0) + b'\0' * 512,
              "'evil' holds its body")
        check(open(os.path.join(mnt, 'after'), 'rb').read() == b'after\n', 'the entry after it')
        err = m.result.stderr
        check(b'\x1b' not in err and b'\x07' not in err, 'raw control bytes in mount stderr: %r' % err[-2000:])
    for args in (['ls', ref], ['ls', '-l', ref]):
        r = ocifs(args[0], '--cache-dir', work('cache2'), *args[1:], check_rc=True)
        out, err = r.stdout, r.stderr
        for what, text in (('stdout', out), ('stderr', err)):
            for byte in (b'\x1b', b'\x07', b'\x9b', b'\0'):
                check(byte not in text, '`ocifs %s` %s carries %r:\n%r' % (' '.join(args), what, byte, text))
        check(b'esc\\033]0;owned\\a\\033[31mred\\233' in out,
              '`ocifs %s` does not show the escaped name:\n%s' % (' '.join(args), out.decode(errors='replace')))
        check(b'\\033' in err, 'the hard link warning does not show the escaped name:\n%s' % err.decode(errors='replace'))
        for line in out.splitlines():
            check(not line.endswith(b'abc') and b'smuggled' not in line, 'bad line %r' % line)


case_hostile_name_bytes.tools = ()


CASES = {
    'hostile_zstd_bomb': case_hostile_zstd_bomb,
    'hostile_entry_memory': case_hostile_entry_memory,
    'hostile_metadata_budget': case_hostile_metadata_budget,
    'hostile_config': case_hostile_config,
    'hostile_layers': case_hostile_layers,
    'hostile_name_bytes': case_hostile_name_bytes,
}
