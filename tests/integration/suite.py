#!/usr/bin/python3
"""ocifs integration tests.  Usage: /usr/bin/python3 suite.py [CASE...]   (no CASE: run all)

Each case is registered as its own meson test (tests/integration/meson.build).  Exit codes:
0 pass, 1 fail (also when a tool scripts/test installs is missing), 77 skip (no /dev/fuse, not root).
Env: OCIFS_BIN (binary), OCIFS_TEST_KEEP=1 (keep work dirs), OCIFS_TEST_TMP (work dir parent).
"""

import errno
import gzip
import hashlib
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import sys
import tarfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures  # noqa: E402
import hostile  # noqa: E402
import treecmp  # noqa: E402
from common import (OCIFS, Fail, Mount, check, require_installed, is_mounted, log, main, mount_entry,  # noqa: E402
                    ocifs, run, unmount, daemon_pids)

TAG = fixtures.TAG


# ------------------------------------------------------------------ helpers

def tree_equal(reference, mnt, what, **kw):
    diffs = treecmp.compare(reference, mnt, **kw)
    if diffs:
        shown = '\n'.join('    ' + d for d in diffs[:200])
        more = '' if len(diffs) <= 200 else '\n    ... %d more' % (len(diffs) - 200)
        raise Fail('%s: %d difference(s) between umoci unpack (A) and ocifs mount (B):\n%s%s' % (
            what, len(diffs), shown, more))
    log('  tree identical to reference: %s' % what)


def umoci_image(work):
    layout = fixtures.build_umoci_image(work.path)
    ref_rootfs = fixtures.umoci_unpack(layout, TAG, work('ref'))
    return layout, ref_rootfs


def mount_and_compare(work, ref, reference, name, warm=True, **kw):
    cache = work('cache-' + name)
    mnt = work('mnt-' + name)
    with Mount(ref, mnt, cache):
        tree_equal(reference, mnt, '%s (cold cache)' % name, **kw)
    check(os.path.isdir(cache) and any(os.scandir(cache)),
          '%s: cache dir %s is empty after a mount' % (name, cache))
    if warm:
        with Mount(ref, mnt, cache):
            tree_equal(reference, mnt, '%s (warm cache)' % name, **kw)


def layer_digests(layout, tag=TAG):
    idx = json.load(open(os.path.join(layout, 'index.json')))
    for m in idx['manifests']:
        if m.get('annotations', {}).get('org.opencontainers.image.ref.name') == tag:
            man = json.load(open(blob_path(layout, m['digest'])))
            return [l['digest'] for l in man['layers']]
    raise Fail('tag %s not in %s' % (tag, layout))


def blob_path(layout, digest):
    return os.path.join(layout, 'blobs', 'sha256', digest.split(':', 1)[1])


# ------------------------------------------------------------------ tree comparison cases

def case_oci_dir(work):
    """umoci multi-layer image via oci:DIR:TAG, cold then warm cache, then OCIFS_CACHE_DIR."""
    layout, reference = umoci_image(work)
    mount_and_compare(work, 'oci:%s:%s' % (layout, TAG), reference, 'oci-dir')
    # the cache directory from the environment (and no --cache-dir)
    cache = work('envcache')
    env = dict(os.environ, OCIFS_CACHE_DIR=cache)
    with Mount('oci:%s:%s' % (layout, TAG), work('mnt-env'), None, env=env):
        tree_equal(reference, work('mnt-env'), 'oci-dir (OCIFS_CACHE_DIR)')
    check(os.path.isdir(cache) and any(os.scandir(cache)),
          'OCIFS_CACHE_DIR=%s was not used (empty or missing after the mount)' % cache)


def case_umoci_insert_layers(work):
    """Raw umoci 0.4.7 output: `umoci insert` layers end without padding/end-of-archive blocks."""
    layout = fixtures.build_umoci_image(work.path, terminate=False)
    reference = fixtures.umoci_unpack(layout, TAG, work('ref'))
    mount_and_compare(work, 'oci:%s:%s' % (layout, TAG), reference, 'umoci-raw', warm=False)


def _variant(kind):
    def fn(work):
        layout, reference = umoci_image(work)
        if kind == 'gzip-docker-archive':
            ref = fixtures.gzip_docker_archive(layout, work.path)
        else:
            ref = fixtures.skopeo_convert(layout, work.path)[kind]
        log('  ref: %s' % ref)
        mount_and_compare(work, ref, reference, kind)
    fn.__doc__ = 'umoci image converted to %s, compared with the unpack of the gzip original' % kind
    return fn


def zstd_frames_image(work, seekable):
    """The umoci image with every layer recompressed as zstd frames of 1 MiB of tar each; with
    `seekable`, each layer ends with the seek table of the zstd library's seekable format
    (contrib/seekable_format: a skippable frame, magic 0x184D2A5E, holding per frame the
    compressed and decompressed size, then the frame count, a descriptor byte and the magic
    0x8F92EAB1). Returns (layout, reference, frames)."""
    require_installed('zstd')
    layout, reference = umoci_image(work)
    frames = 0
    for i, digest in enumerate(layer_digests(layout)):
        tar = gzip.decompress(open(blob_path(layout, digest), 'rb').read())
        chunks = [tar[at:at + (1 << 20)] for at in range(0, len(tar), 1 << 20)]
        compressed = [subprocess.run(['zstd', '-q', '-3', '-c'], input=c, stdout=subprocess.PIPE,
                                     check=True).stdout for c in chunks]
        data = b''.join(compressed)
        if seekable:
            table = b''.join(struct.pack('<II', len(z), len(c)) for z, c in zip(compressed, chunks))
            table += struct.pack('<IBI', len(chunks), 0, 0x8F92EAB1)
            data += struct.pack('<II', 0x184D2A5E, len(table)) + table
        frames += len(chunks)
        _replace_layer_blob(layout, i, data)

        def media(man, i=i):
            man['layers'][i]['mediaType'] = 'application/vnd.oci.image.layer.v1.tar+zstd'
        _rewrite_manifest(layout, media)
    log('  %d zstd frames in %d layers%s' % (frames, len(layer_digests(layout)), ', seekable' if seekable else ''))
    check(frames > len(layer_digests(layout)), 'some layer has several frames')
    return layout, reference


def case_zstd_frames(work):
    """Multi-frame zstd layers (1 MiB frames, as chunked producers write them): read frame by
    frame, with real FUSE opens carrying a cursor per open file; compared with the unpack."""
    layout, reference = zstd_frames_image(work, seekable=False)
    mount_and_compare(work, 'oci:%s:%s' % (layout, TAG), reference, 'zstd-frames')


def case_zstd_seekable(work):
    """zstd layers in the seekable format (1 MiB frames and the seek table in a trailing
    skippable frame): read frame by frame; compared with the unpack."""
    layout, reference = zstd_frames_image(work, seekable=True)
    mount_and_compare(work, 'oci:%s:%s' % (layout, TAG), reference, 'zstd-seekable')


def case_docker_archive_forms(work):
    """docker-archive:FILE:NAME:TAG and docker-archive:FILE (single image) refer to the same."""
    layout, reference = umoci_image(work)
    ref = fixtures.skopeo_convert(layout, work.path)['docker-archive']
    for r in (ref, ref + ':img:t'):
        with Mount(r, work('mnt'), work('cache')):
            tree_equal(reference, work('mnt'), r)


EDGE_IMPLICIT = ['implicit', 'implicit/deep', 'uncompressed', 'p' * 120]


def case_edge(work):
    """Hand-made PAX/GNU/uncompressed layers with order-sensitive whiteouts, compared with umoci."""
    layout, ref = fixtures.build_edge_image(work.path)
    reference = fixtures.umoci_unpack(layout, TAG, work('ref'))
    # umoci gives implicit parent dirs the unpack time as mtime (ocifs: its own choice) and
    # cleans 'a/../escape_in_middle' to 'escape_in_middle' where ocifs must skip the entry.
    ignore_at = {p: {'mtime'} for p in EDGE_IMPLICIT + ['.']}
    mount_and_compare(work, ref, reference, 'edge', ignore_paths=['escape_in_middle'],
                      ignore_at=ignore_at)
    mnt = work('mnt')
    with Mount(ref, mnt, work('cache2')):
        j = lambda p: os.path.join(mnt, p)  # noqa: E731
        check(not os.path.lexists(j('escape_in_middle')) and not os.path.lexists(j('a')),
              "entry 'a/../escape_in_middle' (a '..' component) must be skipped")
        for d in EDGE_IMPLICIT:
            st = os.lstat(j(d))
            check(stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and
                  st.st_uid == 0 and st.st_gid == 0,
                  'implicit dir %s: want 0755 root:root dir, got mode %o uid %d gid %d' % (
                      d, st.st_mode, st.st_uid, st.st_gid))
        names = os.listdir(mnt)
        check(not any(n.startswith('.wh.') for n in names), 'whiteout files visible: %s' % names)
        check(sorted(os.listdir(j('opqdir'))) == ['new'], 'opqdir: %s' % os.listdir(j('opqdir')))
        check(open(j('dup'), 'rb').read() == b'layer2 dup second (wins)\n', 'duplicate: later must win')
        check(open(j('samelayer'), 'rb').read() == b'upper samelayer survives\n',
              'a whiteout must not hide an entry of its own layer')
        check(os.lstat(j('lowerlink')).st_ino == os.lstat(j('hl_target')).st_ino,
              'hard link into a lower layer must share the inode')
        check(os.lstat(j('subsec')).st_mtime_ns == 1234567890123456789, 'PAX sub-second mtime')


def case_gnu_sparse(work):
    """Old-GNU sparse member (umoci cannot unpack it): explicit expectations."""
    layout, ref = fixtures.build_gnu_sparse_image(work.path)
    mnt = work('mnt')
    with Mount(ref, mnt, work('cache')):
        data = open(os.path.join(mnt, 'sparse_gnu'), 'rb').read()
        want = fixtures.gnu_sparse_expected()
        check(len(data) == len(want), 'sparse_gnu size %d, want %d' % (len(data), len(want)))
        check(data == want, 'sparse_gnu content differs from the expected holes+data')
        check(open(os.path.join(mnt, 'after'), 'rb').read() == b'after\n',
              'entry after the sparse member')


# ------------------------------------------------------------------ CLI: ls / cat / inspect

def case_progress(work):
    """Indexing progress: per-layer lines and a total on a terminal (script(1)), nothing on a
    pipe, a line per finished layer with --progress on a pipe, nothing with -q."""
    require_installed('script')  # util-linux
    layout, _ = umoci_image(work)
    ref = 'oci:%s:%s' % (layout, TAG)
    layers = len(layer_digests(layout))

    def index(*extra, tty=False):
        cache = work('cache-%d' % random.randrange(1 << 30))
        argv = [OCIFS, 'index', '--cache-dir', cache] + list(extra) + [ref]
        if tty:  # script gives ocifs a terminal; what it wrote comes back on script's stdout
            r = run(['script', '-qec', ' '.join(argv), '/dev/null'])
            return r.returncode, r.stdout.decode(errors='replace')
        r = run(argv)
        return r.returncode, r.stderr.decode(errors='replace')

    rc, out = index(tty=True)
    check(rc == 0, 'index on a terminal: exit %d: %s' % (rc, out[-500:]))
    check('indexing %d/%d layers' % (layers, layers) in out or 'indexing' in out,
          'no progress on a terminal: %r' % out[-500:])
    for i in range(1, layers + 1):
        check('layer %d (sha256:' % i in out, 'no line for layer %d on a terminal: %r' % (i, out[-800:]))
    check('\x1b[' in out, 'the terminal display is not repainted in place: %r' % out[-300:])
    rc, out = index()
    check(rc == 0 and out == '', 'progress on a pipe without --progress: %r' % out[-300:])
    rc, out = index('--progress')
    check(rc == 0, 'index --progress: exit %d' % rc)
    done = [l for l in out.splitlines() if l.strip().startswith('layer ') and l.rstrip().endswith('done')]
    check(len(done) == layers, '--progress on a pipe: %d "done" lines for %d layers: %r' % (len(done), layers, out))
    check('\x1b[' not in out and 'indexing %d/%d layers' % (layers, layers) in out,
          '--progress on a pipe: no plain total line, or escape codes: %r' % out)
    rc, out = index('-q', tty=True)
    check(rc == 0 and 'indexing' not in out, 'progress despite -q: %r' % out[-300:])


def case_status(work):
    """`ocifs status MNT [--json]` on a live local mount: one entry per layer with its digest,
    format and size, state ready, source local; the text form has a line per layer; the status
    name is not listed among the root's xattrs (tree_equal checks them all) and is answered on
    the root only; a directory that is not an ocifs mount is refused with exit 1."""
    layout, reference = umoci_image(work)
    ref = 'oci:%s:%s' % (layout, TAG)
    digests = layer_digests(layout)
    mnt = work('mnt')
    with Mount(ref, mnt, work('cache')):
        r = run([OCIFS, 'status', '--json', mnt])
        check(r.returncode == 0, 'status --json: exit %d: %s' % (r.returncode, r.stderr.decode()[-500:]))
        status = json.loads(r.stdout)
        check(status['image'] == ref, 'status names %r, not %r' % (status['image'], ref))
        got = [l['digest'] for l in status['layers']]
        check(got == digests, 'status layers %s, want %s' % (got, digests))
        for l in status['layers']:
            size = os.path.getsize(blob_path(layout, l['digest']))
            check(l['format'] == 'gzip' and l['state'] == 'ready' and l['source'] == 'local' and l['size'] == size,
                  'status of layer %d: %r (blob of %d bytes)' % (l['index'], l, size))
            check('fetched' not in l, 'a local layer reports fetched bytes: %r' % l)
        r = run([OCIFS, 'status', mnt])
        text = r.stdout.decode()
        check(r.returncode == 0 and text.splitlines()[1].split()[:3] == ['LAYER', 'DIGEST', 'FORMAT'],
              'status text: exit %d: %r' % (r.returncode, text[:500]))
        for i, d in enumerate(digests, 1):
            check(any(l.split()[:2] == [str(i), d[:19]] for l in text.splitlines()),
                  'status text has no line for layer %d: %r' % (i, text))
        check('ocifs.status' not in os.listxattr(mnt), 'the status name is listed: %r' % os.listxattr(mnt))
        try:
            os.getxattr(os.path.join(mnt, 'etc'), 'ocifs.status')
            raise Fail('the status is answered below the root')
        except OSError as e:
            check(e.errno == errno.ENODATA, 'getxattr of the status name on etc: %r' % e)
        tree_equal(reference, mnt, 'with status asked')
    r = run([OCIFS, 'status', work.path])
    check(r.returncode == 1 and b'not the root of an ocifs mount' in r.stderr,
          'status of a plain directory: exit %d %r' % (r.returncode, r.stderr[-300:]))


def case_cli(work):
    """ocifs ls / cat / inspect on the umoci image."""
    layout, reference = umoci_image(work)
    ref = 'oci:%s:%s' % (layout, TAG)
    cache = work('cache')
    r = ocifs('cat', '--cache-dir', cache, ref, 'etc/os-release', check_rc=True)
    want = open(os.path.join(reference, 'etc/os-release'), 'rb').read()
    check(r.stdout == want, 'cat etc/os-release: %r, want %r' % (r.stdout, want))
    r = ocifs('cat', '--cache-dir', cache, ref, '/etc/os-release', check_rc=True)
    check(r.stdout == want, 'cat /etc/os-release (leading slash): %r' % r.stdout)
    for p in ('data/large', 'data/text', 'data/sparse', 'bin/busybox', 'f2d/inner', 'd2f'):
        r = ocifs('cat', '--cache-dir', cache, ref, p, check_rc=True)
        want = open(os.path.join(reference, p), 'rb').read()
        check(r.stdout == want, 'cat %s: %d bytes, sha256 %s; want %d bytes, sha256 %s' % (
            p, len(r.stdout), hashlib.sha256(r.stdout).hexdigest()[:16], len(want),
            hashlib.sha256(want).hexdigest()[:16]))
    r = ocifs('cat', ref, 'hl/orig', env=dict(os.environ, OCIFS_CACHE_DIR=cache), check_rc=True)
    check(r.stdout == b'hard linked content\n', 'cat of a hard link: %r' % r.stdout)
    for bad in ('no/such/file', 'gone', 'wdir/z', 'opq/a1', 'a/b/c/file2'):
        r = ocifs('cat', '--cache-dir', cache, ref, bad)
        check(r.returncode != 0 and 0 < r.returncode < 128 and r.stderr.strip(),
              'cat of missing/whited-out %s: exit %d stdout %r stderr %r' % (
                  bad, r.returncode, r.stdout[:100], r.stderr[:300]))
    r = ocifs('cat', '--cache-dir', cache, ref, 'etc')
    check(r.returncode != 0 and r.returncode < 128, 'cat of a directory: exit %d' % r.returncode)

    r = ocifs('ls', '--cache-dir', cache, ref, check_rc=True)
    out = r.stdout
    for n in os.listdir(reference):
        check(os.fsencode(n) in out, "ls /: %r missing from output:\n%s" % (n, out.decode(errors='replace')))
    check(b'.wh.' not in out, 'ls shows whiteouts:\n%s' % out.decode(errors='replace'))
    r = ocifs('ls', '--cache-dir', cache, ref, 'etc', check_rc=True)
    for n in (b'os-release', b'passwd', b'hostname'):
        check(n in r.stdout, 'ls etc: %r missing:\n%s' % (n, r.stdout.decode(errors='replace')))
    r = ocifs('ls', '--cache-dir', cache, ref, '/opq', check_rc=True)
    check(b'only_new' in r.stdout and b'a1' not in r.stdout and b'a2' not in r.stdout,
          'ls /opq after the opaque insert:\n%s' % r.stdout.decode(errors='replace'))
    r = ocifs('ls', '--cache-dir', cache, ref, 'no/such/dir')
    check(r.returncode != 0 and r.returncode < 128 and r.stderr.strip(),
          'ls of a missing path: exit %d stderr %r' % (r.returncode, r.stderr[:300]))

    digests = layer_digests(layout)
    r = ocifs('inspect', ref, check_rc=True)
    for d in digests:
        check(d.split(':')[1][:12].encode() in r.stdout,
              'inspect does not name layer %s:\n%s' % (d, r.stdout.decode(errors='replace')))
    r = ocifs('inspect', '--json', ref, check_rc=True)
    try:
        j = json.loads(r.stdout)
    except ValueError as e:
        raise Fail('inspect --json is not JSON (%s):\n%s' % (e, r.stdout[:2000]))
    flat = json.dumps(j)
    for d in digests:
        check(d in flat, 'inspect --json lacks layer digest %s' % d)


# ------------------------------------------------------------------ running things from the mount

def case_chroot(work):
    """chroot into the mounted image and run busybox from it."""
    layout, reference = umoci_image(work)
    mnt = work('mnt')
    with Mount('oci:%s:%s' % (layout, TAG), mnt, work('cache')):
        r = run(['chroot', mnt, '/bin/sh', '-c', 'echo hi; cat /etc/os-release'], timeout=60)
        want = b'hi\n' + open(os.path.join(reference, 'etc/os-release'), 'rb').read()
        check(r.returncode == 0 and r.stdout == want, 'chroot sh: exit %d stdout %r stderr %r' % (
            r.returncode, r.stdout, r.stderr))
        r = run(['chroot', mnt, '/bin/sha256sum', '/data/large', '/data/text', '/bin/busybox'],
                timeout=120)
        for p in ('data/large', 'data/text', 'bin/busybox'):
            h = hashlib.sha256(open(os.path.join(reference, p), 'rb').read()).hexdigest()
            check(h.encode() in r.stdout, 'sha256sum in chroot for %s: %r' % (p, r.stdout))
        r = run(['chroot', mnt, '/bin/ls', '/special', '/opq'], timeout=60)
        check(r.returncode == 0 and b'fifo' in r.stdout and b'only_new' in r.stdout,
              'ls in chroot: %r %r' % (r.stdout, r.stderr))


def case_concurrent(work):
    """16 threads reading random ranges of many files at once, bytes compared with the unpack."""
    layout, reference = umoci_image(work)
    files = []
    for dirpath, _, names in os.walk(reference):
        for n in names:
            p = os.path.join(dirpath, n)
            if stat.S_ISREG(os.lstat(p).st_mode):
                files.append(os.path.relpath(p, reference))
    big = ['data/large', 'data/text', 'data/sparse', 'bin/busybox']
    data = {f: open(os.path.join(reference, f), 'rb').read() for f in files}
    mnt = work('mnt')
    errors = []
    lock = threading.Lock()
    counts = [0]

    def worker(seed):
        rnd = random.Random(seed)
        try:
            fds = {}
            for i in range(250):
                f = rnd.choice(big) if rnd.random() < 0.7 else rnd.choice(files)
                want = data[f]
                if f not in fds:
                    fds[f] = os.open(os.path.join(mnt, f), os.O_RDONLY)
                if not want:
                    off, ln = 0, 10
                else:
                    off = rnd.randrange(0, len(want) + 1)
                    ln = rnd.choice([1, 100, 4096, 65536, 200000, 1 << 20])
                got = os.pread(fds[f], ln, off)
                if got != want[off:off + ln]:
                    with lock:
                        errors.append('thread %d: %s [%d:+%d] got %d bytes (sha %s) want %d (sha %s)' % (
                            seed, f, off, ln, len(got), hashlib.sha256(got).hexdigest()[:12],
                            len(want[off:off + ln]), hashlib.sha256(want[off:off + ln]).hexdigest()[:12]))
                with lock:
                    counts[0] += 1
            for fd in fds.values():
                os.close(fd)
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append('thread %d: %r' % (seed, e))

    with Mount('oci:%s:%s' % (layout, TAG), mnt, work('cache')):
        threads = [threading.Thread(target=worker, args=(s,)) for s in range(16)]
        t0 = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        hung = [t for t in threads if t.is_alive()]
        check(not hung, 'HANG: %d reader threads still running after 300s' % len(hung))
        log('  %d concurrent reads in %.1fs' % (counts[0], time.time() - t0))
        check(not errors, '%d bad reads:\n  %s' % (len(errors), '\n  '.join(errors[:50])))
        import mmap
        for f in ('data/large', 'data/text', 'data/sparse'):
            with open(os.path.join(mnt, f), 'rb') as fh:
                mm = mmap.mmap(fh.fileno(), 0, prot=mmap.PROT_READ)
                try:
                    check(hashlib.sha256(mm).digest() == hashlib.sha256(data[f]).digest(),
                          'mmap of %s differs' % f)
                finally:
                    mm.close()
        st = os.statvfs(mnt)
        log('  statvfs: bsize %d blocks %d files %d namemax %d' % (
            st.f_bsize, st.f_blocks, st.f_files, st.f_namemax))


# ------------------------------------------------------------------ mount forms and options

def case_fuse3_form(work):
    """`ocifs REF MNT -o OPTS` (mount.fuse3 form), and `mount -t fuse.ocifs` with ocifs in PATH."""
    layout, reference = umoci_image(work)
    ref = 'oci:%s:%s' % (layout, TAG)
    mnt = work('mnt')
    env = dict(os.environ, OCIFS_CACHE_DIR=work('cache'))
    for opts in ('ro', 'ro,allow_other', 'ro,defaults,nofail,_netdev,x-systemd.automount,allow_other'):
        with Mount(ref, mnt, argv=[OCIFS, ref, mnt, '-o', opts], env=env):
            tree_equal(reference, mnt, 'fuse3 form -o %s' % opts)
    helper = shutil.which('mount.fuse3') or shutil.which('mount.fuse3', path='/usr/sbin:/sbin')
    check(helper, 'mount.fuse3 is missing (package fuse3, which scripts/test installs)')
    bindir = work('bin')
    os.makedirs(bindir)
    os.symlink(OCIFS, os.path.join(bindir, 'ocifs'))
    env['PATH'] = bindir + ':' + os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')
    # mount.fuse3 runs `/bin/sh -c 'ocifs REF MNT -o OPTS'` through PATH (adding dev,suid as
    # root).  This is what `mount -t fuse.ocifs` and fstab end up executing.
    with Mount(ref, mnt, argv=[helper, ref, mnt, '-t', 'ocifs', '-o', 'ro,allow_other'], env=env):
        e = mount_entry(mnt)
        check(e['fstype'] == 'fuse.ocifs', 'mount.fuse3 -t ocifs: fstype %s, want fuse.ocifs' % e['fstype'])
        tree_equal(reference, mnt, 'mount.fuse3 -t ocifs')
    # mount(8) resets PATH for helpers to the default root PATH, so `mount -t fuse.ocifs` can only
    # be tested when this very binary is installed there (e.g. after `meson install`).
    installed = shutil.which('ocifs', path='/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin')
    if not installed or not os.path.samefile(installed, OCIFS):
        log('  `mount -t fuse.ocifs` part skipped: %s is not the ocifs in the default root PATH (%s)'
            % (OCIFS, installed))
        return
    with Mount(ref, mnt, argv=['mount', '-t', 'fuse.ocifs', ref, mnt, '-o', 'ro,allow_other'], env=env):
        e = mount_entry(mnt)
        check(e['fstype'] == 'fuse.ocifs', 'mount -t fuse.ocifs: fstype %s' % e['fstype'])
        tree_equal(reference, mnt, 'mount -t fuse.ocifs')


def case_readonly(work):
    """Writes fail with EROFS; default options ro,nosuid,nodev(,default_permissions) in /proc/mounts."""
    layout, reference = umoci_image(work)
    mnt = work('mnt')
    with Mount('oci:%s:%s' % (layout, TAG), mnt, work('cache')):
        j = lambda p: os.path.join(mnt, p)  # noqa: E731
        attempts = [
            ('create', lambda: os.open(j('newfile'), os.O_WRONLY | os.O_CREAT, 0o644)),
            ('open O_WRONLY', lambda: os.open(j('etc/passwd'), os.O_WRONLY)),
            ('open O_RDWR|O_TRUNC', lambda: os.open(j('etc/passwd'), os.O_RDWR | os.O_TRUNC)),
            ('mkdir', lambda: os.mkdir(j('newdir'))),
            ('rmdir', lambda: os.rmdir(j('data/emptydir'))),
            ('unlink', lambda: os.unlink(j('etc/passwd'))),
            ('rename', lambda: os.rename(j('etc/passwd'), j('etc/passwd2'))),
            ('symlink', lambda: os.symlink('x', j('newlink'))),
            ('link', lambda: os.link(j('etc/passwd'), j('newhard'))),
            ('chmod', lambda: os.chmod(j('etc/passwd'), 0o777)),
            ('chown', lambda: os.chown(j('etc/passwd'), 1, 1)),
            ('utime', lambda: os.utime(j('etc/passwd'), (1, 1))),
            ('truncate', lambda: os.truncate(j('etc/passwd'), 0)),
            ('mknod', lambda: os.mkfifo(j('newfifo'))),
            ('setxattr', lambda: os.setxattr(j('etc/passwd'), 'user.x', b'1')),
            ('removexattr', lambda: os.removexattr(j('xattr/user'), 'user.plain')),
        ]
        bad = []
        for name, fn in attempts:
            try:
                r = fn()
                if isinstance(r, int):
                    os.close(r)
                bad.append('%s succeeded' % name)
            except OSError as e:
                if e.errno != errno.EROFS:
                    bad.append('%s: errno %s (%s), want EROFS' % (name, errno.errorcode.get(e.errno), e))
        require_installed('touch', 'setfattr')  # coreutils, attr
        for cmd in (['touch', j('etc/passwd')], ['setfattr', '-n', 'user.y', '-v', '1', j('etc/passwd')]):
            r = run(cmd, timeout=30)
            if r.returncode == 0 or b'Read-only file system' not in r.stderr:
                bad.append('%s: exit %d %r' % (' '.join(cmd), r.returncode, r.stderr))
        check(not bad, 'write attempts:\n  ' + '\n  '.join(bad))
        tree_equal(reference, mnt, 'after write attempts')
        e = mount_entry(mnt)
        with open('/proc/mounts') as f:
            line = [l for l in f if l.split()[1] == os.path.realpath(mnt)]
        check(line, '%s not in /proc/mounts' % mnt)
        opts = line[-1].split()[3].split(',')
        for o in ('ro', 'nosuid', 'nodev', 'default_permissions'):
            check(o in opts, 'mount option %s missing from /proc/mounts: %s' % (o, line[-1].strip()))
        check(e['fstype'].startswith('fuse'), 'fstype %s' % e['fstype'])


# ------------------------------------------------------------------ bad input

def _refused(work, ref, digest, what, timeout=120):
    mnt = work('mnt')
    os.makedirs(mnt, exist_ok=True)
    try:
        r = run([OCIFS, 'mount', '--cache-dir', work('cache'), ref, mnt], timeout=timeout)
    finally:
        mounted = is_mounted(mnt)
        unmount(mnt)
    err = r.stderr.decode(errors='replace')
    check(r.returncode != 0, '%s: mount succeeded, must be refused (stderr %r)' % (what, err))
    check(0 < r.returncode < 128, '%s: exit code %d looks like a crash (stderr %r)' % (
        what, r.returncode, err[-2000:]))
    check(not mounted, '%s: exit %d but the mountpoint is mounted' % (what, r.returncode))
    short = digest.split(':', 1)[-1][:12]
    check(short in err, '%s: stderr does not name the layer %s:\n%s' % (what, digest, err[-2000:]))
    log('  refused (exit %d): %s' % (r.returncode, err.strip().splitlines()[-1] if err.strip() else ''))
    # the same refusal from the other commands, none hanging or crashing
    for args in (['ls', '--cache-dir', work('cache'), ref], ['cat', '--cache-dir', work('cache'), ref, 'etc/hello']):
        r = ocifs(*args, timeout=timeout)
        check(0 < r.returncode < 128, '%s: `ocifs %s` exit %d (want refusal without crash): %r' % (
            what, args[0], r.returncode, r.stderr[-1000:]))


def _rewrite_manifest(layout, fn):
    """fn(manifest) mutates; blobs/index are rewritten so that the manifest itself is valid."""
    idx_path = os.path.join(layout, 'index.json')
    idx = json.load(open(idx_path))
    m = idx['manifests'][0]
    man = json.load(open(blob_path(layout, m['digest'])))
    fn(man)
    mb = json.dumps(man).encode()
    d = 'sha256:' + hashlib.sha256(mb).hexdigest()
    open(blob_path(layout, d), 'wb').write(mb)
    m['digest'], m['size'] = d, len(mb)
    json.dump(idx, open(idx_path, 'w'))


def _replace_layer_blob(layout, index, data):
    """Put data in as layer `index` with a correct descriptor; returns the new digest."""
    d = 'sha256:' + hashlib.sha256(data).hexdigest()
    open(blob_path(layout, d), 'wb').write(data)

    def fn(man):
        man['layers'][index]['digest'] = d
        man['layers'][index]['size'] = len(data)
    _rewrite_manifest(layout, fn)
    return d


def _small(work, big=True):
    w = fixtures.build_small_image(work.path, big=big)
    ref = w.write(TAG)
    # sanity: the unmodified image mounts
    with Mount(ref, work('mnt'), work('cache-ok')):
        check(open(os.path.join(work('mnt'), 'etc/hello'), 'rb').read() == b'hello\n', 'small image')
    return w.path, ref, layer_digests(w.path)


def case_bad_corrupt_gzip(work):
    """Bytes flipped in the middle of a gzip layer, nothing fixed: the digest no longer matches."""
    layout, ref, layers = _small(work)
    p = blob_path(layout, layers[0])
    with open(p, 'r+b') as f:
        size = os.fstat(f.fileno()).st_size
        f.seek(size // 2)
        b = f.read(16)
        f.seek(size // 2)
        f.write(bytes(x ^ 0xff for x in b))
    _refused(work, ref, layers[0], 'corrupt gzip blob')


def case_bad_digest_mismatch(work):
    """A valid gzip layer whose bytes are not what its digest says."""
    layout, ref, layers = _small(work)
    t = fixtures.TarBuilder()
    t.file('etc/hello', b'substituted\n')
    open(blob_path(layout, layers[1]), 'wb').write(gzip.compress(t.getvalue()))
    _refused(work, ref, layers[1], 'digest mismatch')


def case_bad_digest_same_size(work):
    """Same size, same decompressed bytes, different digest: gzip header MTIME field changed.
    Only a digest check can notice; the content itself would decode fine."""
    layout, ref, layers = _small(work)
    p = blob_path(layout, layers[1])
    data = bytearray(open(p, 'rb').read())
    data[4:8] = b'\x01\x02\x03\x04'
    open(p, 'wb').write(bytes(data))
    check(gzip.decompress(bytes(data)) and len(data) == os.path.getsize(p), 'fixture')
    _refused(work, ref, layers[1], 'digest mismatch with the right size and valid content')


def case_bad_missing_blob(work):
    layout, ref, layers = _small(work)
    os.unlink(blob_path(layout, layers[1]))
    _refused(work, ref, layers[1], 'missing blob')


def case_bad_media_type(work):
    layout, ref, layers = _small(work)

    def fn(man):
        man['layers'][1]['mediaType'] = 'application/vnd.example.unknown.layer+rot13'
    _rewrite_manifest(layout, fn)
    _refused(work, ref, layers[1], 'unknown media type')


def case_bad_truncated_gzip(work):
    """Gzip layer cut in half, descriptor digest/size fixed to match: a truncated stream."""
    layout, ref, layers = _small(work)
    data = open(blob_path(layout, layers[0]), 'rb').read()
    d = _replace_layer_blob(layout, 0, data[:len(data) // 2])
    _refused(work, ref, d, 'truncated gzip layer')


def case_bad_corrupt_deflate(work):
    """Deflate data corrupted, digest recomputed (so only decoding can notice)."""
    layout, ref, layers = _small(work)
    data = bytearray(open(blob_path(layout, layers[0]), 'rb').read())
    mid = len(data) // 2
    for i in range(mid, mid + 64):
        data[i] ^= 0x5a
    d = _replace_layer_blob(layout, 0, bytes(data))
    _refused(work, ref, d, 'corrupt deflate stream with a matching digest')


def case_bad_truncated_tar(work):
    """Valid gzip of a tar that ends in the middle of a file's data."""
    layout, ref, layers = _small(work)
    t = fixtures.TarBuilder()
    t.file('etc/hello', b'hello\n')
    t.file('big', b'x' * 100000)
    tar = t.getvalue()
    d = _replace_layer_blob(layout, 0, gzip.compress(tar[:512 * 3 + 50000]))
    _refused(work, ref, d, 'truncated tar in a valid gzip')


def case_bad_truncated_plain_tar(work):
    """Uncompressed layer that ends in the middle of a file's data."""
    layout, ref, layers = _small(work)
    t = fixtures.TarBuilder()
    t.file('etc/hello', b'hello\n')
    t.file('big', b'x' * 100000)
    tar = t.getvalue()[:512 * 3 + 50000]
    d = _replace_layer_blob(layout, 0, tar)

    def fn(man):
        man['layers'][0]['mediaType'] = 'application/vnd.oci.image.layer.v1.tar'
    _rewrite_manifest(layout, fn)
    _refused(work, ref, d, 'truncated uncompressed tar')


def case_bad_huge_size(work):
    """Tar headers declaring sizes far beyond the data (PAX size and base-256 size field)."""
    for kind in ('pax', 'base256'):
        layout, ref, layers = _small(work) if kind == 'pax' else (layout, ref, layers)
        ti = tarfile.TarInfo('etc/hello')
        ti.size = 6
        tar = ti.tobuf(tarfile.USTAR_FORMAT) + b'hello\n' + b'\0' * 506
        h = bytearray(512)
        h[0:4] = b'huge'
        h[100:108] = b'0000644\0'
        h[108:116] = b'0000000\0'
        h[116:124] = b'0000000\0'
        h[136:148] = b'00000000000\0'
        h[156:157] = b'0'
        h[257:263] = b'ustar\0'
        h[263:265] = b'00'
        if kind == 'base256':
            h[124:136] = b'\x80' + (1 << 62).to_bytes(11, 'big')
        else:
            h[124:136] = b'00000000000\0'
        h[148:156] = b' ' * 8
        h[148:156] = ('%06o' % sum(h)).encode() + b'\0 '
        if kind == 'pax':
            rec = b'size=9223372036854775000\n'
            rec = ('%d ' % (len(rec) + 3)).encode() + rec if len(rec) + 3 < 100 else rec
            ln = len(rec)
            ph = bytearray(h)
            ph[0:100] = b'PaxHeaders/huge'.ljust(100, b'\0')
            ph[124:136] = ('%011o' % ln).encode() + b'\0'
            ph[156:157] = b'x'
            ph[148:156] = b' ' * 8
            ph[148:156] = ('%06o' % sum(ph)).encode() + b'\0 '
            ext = bytes(ph) + rec + b'\0' * (-ln % 512)
        else:
            ext = b''
        newtar = tar + ext + bytes(h) + b'some data' + b'\0' * (512 - 9) + b'\0' * 1024
        d = _replace_layer_blob(layout, 1, gzip.compress(newtar))
        log('  huge size via %s' % kind)
        _refused(work, ref, d, 'huge declared size (%s)' % kind)


def case_hostile_names(work):
    """'..' escapes, absolute names, 5000-byte names, non-UTF-8: mounts; escapes absent."""
    layout, ref = fixtures.build_hostile_image(work.path)
    mnt = work('root', 'mnt')       # a parent we can check for escapes
    parent = work('root')
    os.makedirs(mnt)
    with Mount(ref, mnt, work('cache')):
        names = os.listdir(mnt)
        log('  root entries: %s' % [n[:40] for n in names])
        check('ok' in names, "'ok' missing: %s" % names)
        check(open(os.path.join(mnt, 'ok'), 'rb').read() == b'fine\n', 'ok content')
        for n in names:
            check(not n.startswith('evil'), "escaped entry %r visible in the root" % n)
            check(n not in ('.', '..'), 'bogus %r entry in readdir' % n)
        check(sorted(os.listdir(parent)) == ['mnt'], 'something appeared next to the mountpoint: %s'
              % os.listdir(parent))
        check(os.readlink(os.path.join(mnt, 'abs_symlink')) == '/etc/shadow', 'absolute symlink target')
        check(os.readlink(os.path.join(mnt, 'up_symlink')) == '../../../../etc/shadow', 'up symlink')
        check(not os.path.lexists(os.path.join(mnt, 'hl_out')) or
              open(os.path.join(mnt, 'hl_out'), 'rb').read() == b'',
              'hard link to ../outside must not reach outside')
        # walk everything with dir fds (paths may exceed PATH_MAX); no error may escape but ENAMETOOLONG
        count = 0

        def walk(fd, depth):
            nonlocal count
            for n in os.listdir(fd):
                count += 1
                check(n != '..' and not n.startswith('evil'), 'bad name %r at depth %d' % (n, depth))
                st = os.stat(n, dir_fd=fd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    sub = os.open(n, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                    try:
                        walk(sub, depth + 1)
                    finally:
                        os.close(sub)
                elif stat.S_ISREG(st.st_mode):
                    f = os.open(n, os.O_RDONLY, dir_fd=fd)
                    os.read(f, 1 << 16)
                    os.close(f)
        root = os.open(mnt, os.O_RDONLY | os.O_DIRECTORY)
        try:
            walk(root, 0)
        finally:
            os.close(root)
        log('  walked %d entries' % count)
        check(os.path.isdir(mnt) and is_mounted(mnt), 'mount died during the walk')
    for p in ('/evil', '/evil2', '/evil3', '/evil4', os.path.join(work.path, 'evil')):
        check(not os.path.exists(p), '%s exists after mounting the hostile image' % p)


def case_eio(work):
    """Layer data corrupted underneath a live mount: reads give EIO or correct bytes, never wrong ones."""
    results = []
    for comp in ('gzip', 'none'):
        w = fixtures.OCIWriter(work('img-' + comp))
        t = fixtures.TarBuilder()
        t.file('small', b'small\n')
        big = fixtures.large_bytes()
        t.file('big', big)
        w.add_layer(t.getvalue(), comp)
        ref = w.write(TAG)
        layer = w.layers[0][0]['digest']
        mnt = work('mnt-' + comp)
        with Mount(ref, mnt, work('cache-' + comp)):
            check(open(os.path.join(mnt, 'small'), 'rb').read() == b'small\n', 'small')
            p = blob_path(w.path, layer)
            fixtures.damage_blob(p)
            try:
                got = open(os.path.join(mnt, 'big'), 'rb').read()
            except OSError as e:
                check(e.errno == errno.EIO, '%s: read error %r, want EIO' % (comp, e))
                results.append('%s: EIO' % comp)
                continue
            if got != big:
                first = next((i for i in range(min(len(got), len(big))) if got[i] != big[i]),
                             min(len(got), len(big)))
                results.append('%s: WRONG BYTES served from a corrupt layer, want EIO (%d bytes '
                               'read, %d expected, first difference at offset %d)' % (
                                   comp, len(got), len(big), first))
            else:
                results.append('%s: correct bytes (data came from a verified cache)' % comp)
    log('  ' + '; '.join(results))
    bad = [r for r in results if 'WRONG' in r]
    check(not bad, '\n'.join(bad))


def _tiny_image(work, name='T', content=b'tiny\n'):
    w = fixtures.OCIWriter(work(name))
    t = fixtures.TarBuilder()
    t.dir('etc')
    t.file('etc/hello', content)
    w.add_layer(t.getvalue())
    return w, w.write(TAG)


def case_lifecycle(work):
    """ocifs umount; -f foreground; -o cache_dir=; refusals for bad mountpoints and refs."""
    w, ref = _tiny_image(work)
    mnt = work('mnt')
    os.makedirs(mnt)
    cache = work('cache')
    try:
        r = ocifs('mount', '--cache-dir', cache, ref, mnt, check_rc=True)
        check(is_mounted(mnt), 'not mounted after ocifs mount')
        r = ocifs('umount', mnt, timeout=60)
        check(r.returncode == 0, 'ocifs umount: exit %d %r' % (r.returncode, r.stderr))
        check(not is_mounted(mnt), 'still mounted after ocifs umount')
        deadline = time.time() + 10
        while daemon_pids(mnt) and time.time() < deadline:
            time.sleep(0.1)
        check(not daemon_pids(mnt), 'daemon %s still running 10s after ocifs umount' % daemon_pids(mnt))
        # foreground: stays attached, exits 0 after umount
        p = subprocess.Popen([OCIFS, 'mount', '-f', '--cache-dir', cache, ref, mnt],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.time() + 60
            while not is_mounted(mnt) and time.time() < deadline and p.poll() is None:
                time.sleep(0.05)
            check(is_mounted(mnt), '-f: never mounted (exit %s, stderr %r)' % (
                p.poll(), p.stderr.read() if p.poll() is not None else ''))
            check(p.poll() is None, '-f: process exited while mounted')
            check(open(os.path.join(mnt, 'etc/hello'), 'rb').read() == b'tiny\n', '-f: content')
            r = ocifs('umount', mnt, timeout=60)
            check(r.returncode == 0, 'ocifs umount of -f mount: exit %d %r' % (r.returncode, r.stderr))
            try:
                rc = p.wait(30)
            except subprocess.TimeoutExpired:
                raise Fail('HANG: `ocifs mount -f` still running 30s after umount')
            check(rc == 0, '-f: exit %d after umount, stderr %r' % (rc, p.stderr.read()[-2000:]))
        finally:
            if p.poll() is None:
                unmount(mnt)
                p.kill()
                p.wait()
        # -o cache_dir=DIR (fstab form of --cache-dir)
        c2 = work('cache-o')
        with Mount(ref, mnt, argv=[OCIFS, ref, mnt, '-o', 'ro,cache_dir=' + c2]):
            check(open(os.path.join(mnt, 'etc/hello'), 'rb').read() == b'tiny\n', '-o cache_dir')
        check(os.path.isdir(c2) and any(os.scandir(c2)), '-o cache_dir=%s not used' % c2)
    finally:
        unmount(mnt)
    # refusals: each exit != 0, < 128, message on stderr, no hang, nothing mounted
    notdir = work('afile')
    open(notdir, 'w').close()
    cases = [
        ('missing mountpoint', [ref, work('nonexistent')]),
        ('mountpoint is a file', [ref, notdir]),
        ('missing layout', ['oci:' + work('nolayout') + ':t', mnt]),
        ('missing tag', ['oci:%s:nosuchtag' % w.path, mnt]),
        ('missing archive', ['oci-archive:' + work('no.tar'), mnt]),
        ('not an archive', ['docker-archive:' + notdir, mnt]),
        ('unknown transport', ['bogus:' + w.path, mnt]),
        ('bad platform', ['--platform', 'linux/s390x', ref, mnt]),
    ]
    bad = []
    for what, args in cases:
        r = ocifs('mount', '--cache-dir', cache, *args, timeout=60)
        m = is_mounted(mnt)
        unmount(mnt)
        if r.returncode == 0 or not (0 < r.returncode < 128) or not r.stderr.strip() or m:
            bad.append('%s: exit %d mounted=%s stderr=%r' % (what, r.returncode, m, r.stderr[-500:]))
        else:
            log('  refused %s: %s' % (what, r.stderr.decode(errors='replace').strip().splitlines()[-1][:200]))
    check(not bad, 'bad refusals:\n  ' + '\n  '.join(bad))


def case_platform(work):
    """An OCI index with several platforms: default = host, --platform picks, unknown refused."""
    root = work('P')
    images = {}
    for plat in ('linux/amd64', 'linux/arm64/v8', 'linux/arm/v7'):
        sub = fixtures.OCIWriter(root)
        t = fixtures.TarBuilder()
        t.file('platform', plat.encode() + b'\n')
        sub.add_layer(t.getvalue())
        sub.write('tmp', platform=plat)
        idx = json.load(open(os.path.join(root, 'index.json')))
        images[plat] = idx['manifests'][0]
    os_, arch = 'linux', {'x86_64': 'amd64', 'aarch64': 'arm64'}.get(os.uname().machine, 'amd64')
    mlist = []
    for plat, desc in images.items():
        parts = plat.split('/')
        d = dict(desc)
        d.pop('annotations', None)
        d['platform'] = {'os': parts[0], 'architecture': parts[1]}
        if len(parts) > 2:
            d['platform']['variant'] = parts[2]
        mlist.append(d)
    ib = json.dumps({'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.index.v1+json',
                     'manifests': mlist}).encode()
    w = fixtures.OCIWriter(root)
    dig = w.blob(ib)
    json.dump({'schemaVersion': 2, 'manifests': [{
        'mediaType': 'application/vnd.oci.image.index.v1+json', 'digest': dig, 'size': len(ib),
        'annotations': {'org.opencontainers.image.ref.name': TAG}}]},
        open(os.path.join(root, 'index.json'), 'w'))
    ref = 'oci:%s:%s' % (root, TAG)
    mnt = work('mnt')
    for plat, want in ((None, 'linux/' + {'amd64': 'amd64', 'arm64': 'arm64/v8'}[arch]),
                       ('linux/arm64', 'linux/arm64/v8'), ('linux/arm64/v8', 'linux/arm64/v8'),
                       ('linux/arm/v7', 'linux/arm/v7'), ('linux/amd64', 'linux/amd64')):
        extra = ['--platform', plat] if plat else []
        with Mount(ref, mnt, work('cache'), extra=extra):
            got = open(os.path.join(mnt, 'platform'), 'rb').read().decode().strip()
            check(got == want, '--platform %s: got image %s, want %s' % (plat, got, want))
    r = ocifs('cat', '--cache-dir', work('cache'), '--platform', 'linux/arm/v7', ref, 'platform')
    # cat may not take --platform; only check it does not crash
    check(r.returncode < 128, 'cat --platform crashed: %d' % r.returncode)
    r = ocifs('mount', '--cache-dir', work('cache'), '--platform', 'windows/amd64', ref, mnt, timeout=60)
    unmount(mnt)
    check(r.returncode != 0 and r.returncode < 128 and r.stderr.strip(),
          'unknown platform: exit %d %r' % (r.returncode, r.stderr))
    log('  refused windows/amd64: %s' % r.stderr.decode(errors='replace').strip()[:200])


def case_bigdir(work):
    """Directories with many entries (readdir paging, cache_readdir), split over two layers."""
    w = fixtures.OCIWriter(work('B'))
    t = fixtures.TarBuilder()
    t.dir('big')
    for i in range(6000):
        t.file('big/%05d-%s' % (i, 'n' * (i % 200)), b'%d\n' % i)
    for i in range(300):
        t.dir('wide/%03d' % i)
    w.add_layer(t.getvalue())
    t = fixtures.TarBuilder()
    for i in range(0, 6000, 7):
        t.file('big/.wh.%05d-%s' % (i, 'n' * (i % 200)), b'', mode=0)
    for i in range(2000):
        t.file('big/upper-%04d' % i, b'u%d\n' % i)
    w.add_layer(t.getvalue())
    ref = w.write(TAG)
    reference = fixtures.umoci_unpack(w.path, TAG, work('ref'))
    mount_and_compare(work, ref, reference, 'bigdir', ignore_at={'wide': {'mtime'}, '.': {'mtime'}})
    with Mount(ref, work('mnt'), work('cache')):
        for _ in range(3):   # repeated listings (cached readdir) stay identical
            got = sorted(os.listdir(work('mnt', 'big')))
            check(got == sorted(os.listdir(os.path.join(reference, 'big'))), 'listing of big/ differs')


def case_cache_damage(work):
    """Damaged cache files (bit flips, truncation, emptied) must be detected and rebuilt."""
    layout, reference = umoci_image(work)
    refs = {'gzip': 'oci:%s:%s' % (layout, TAG), 'zstd': fixtures.skopeo_convert(layout, work.path)['zstd']}
    failures = []
    for kind, ref in refs.items():
        try:
            _cache_damage(work, kind, ref, reference)
        except Fail as e:
            failures.append('%s image: %s' % (kind, e))
    check(not failures, '\n'.join(failures))


def _cache_damage(work, kind, ref, reference):
    cache = work('cache-' + kind)
    mnt = work('mnt-' + kind)
    with Mount(ref, mnt, cache):
        for f in ('data/large', 'data/text', 'bin/busybox'):   # fill data caches too
            open(os.path.join(mnt, f), 'rb').read()
    for mode in ('flip', 'truncate', 'empty'):
        files = []
        for dirpath, _, names in os.walk(cache):
            files += [os.path.join(dirpath, n) for n in names]
        check(files, 'cache is empty')
        for p in files:
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            size = os.path.getsize(p)
            if mode == 'flip' and size:
                with open(p, 'r+b') as f:
                    for off in sorted({0, size // 3, size // 2, size - 1}):
                        f.seek(off)
                        b = f.read(1)
                        f.seek(off)
                        f.write(bytes([b[0] ^ 0x40]))
            elif mode == 'truncate':
                os.truncate(p, size // 2)
            elif mode == 'empty':
                os.truncate(p, 0)
        log('  %s: damaged %d cache files (%s)' % (kind, len(files), mode))
        with Mount(ref, mnt, cache):
            tree_equal(reference, mnt, '%s after cache damage (%s)' % (kind, mode))


def _flip_all(root):
    n = 0
    for dirpath, _, names in os.walk(root):
        for nm in names:
            p = os.path.join(dirpath, nm)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            size = os.path.getsize(p)
            with open(p, 'r+b') as f:
                for off in range(0, size, max(4096, size // 64)):
                    f.seek(off)
                    b = f.read(1)
                    f.seek(off)
                    f.write(bytes([b[0] ^ 0x40]))
            n += 1
    return n


def case_cache_damage_live(work):
    """Cache files damaged while mounted (gzip and zstd images): reads give EIO or right bytes."""
    layout, reference = umoci_image(work)
    refs = {'gzip': 'oci:%s:%s' % (layout, TAG), 'zstd': fixtures.skopeo_convert(layout, work.path)['zstd']}
    files = ['data/large', 'data/text', 'data/sparse', 'bin/busybox', 'etc/os-release']
    bad = []
    for kind, ref in refs.items():
        cache = work('cache-' + kind)
        mnt = work('mnt-' + kind)
        with Mount(ref, mnt, cache):
            n = _flip_all(cache)
            log('  %s: damaged %d cache files under a live mount' % (kind, n))
            for f in files:
                want = open(os.path.join(reference, f), 'rb').read()
                try:
                    got = open(os.path.join(mnt, f), 'rb').read()
                except OSError as e:
                    if e.errno != errno.EIO:
                        bad.append('%s %s: %r, want EIO or the right bytes' % (kind, f, e))
                    else:
                        log('  %s %s: EIO' % (kind, f))
                    continue
                if got != want:
                    bad.append('%s %s: WRONG BYTES after cache damage (%d bytes, want %d)' % (
                        kind, f, len(got), len(want)))
    check(not bad, '\n'.join(bad))


def case_shared_cache(work):
    """Two images sharing layers, mounted at the same moment with one cache dir."""
    layout, reference = umoci_image(work)
    refs = fixtures.skopeo_convert(layout, work.path)
    pair = ['oci:%s:%s' % (layout, TAG), refs['oci-archive'], refs['docker-archive']]
    cache = work('cache')
    mnts = [work('mnt%d' % i) for i in range(len(pair))]
    for m in mnts:
        os.makedirs(m)
    procs = [subprocess.Popen([OCIFS, 'mount', '--cache-dir', cache, r, m],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for r, m in zip(pair, mnts)]
    try:
        for p, r in zip(procs, pair):
            try:
                out, err = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                raise Fail('HANG: concurrent mount of %s' % r)
            check(p.returncode == 0, 'concurrent mount of %s: exit %d %r' % (r, p.returncode, err[-2000:]))
        for m, r in zip(mnts, pair):
            tree_equal(reference, m, 'concurrently mounted %s' % r)
    finally:
        for m in mnts:
            unmount(m)


CASES = {
    'oci_dir': case_oci_dir,
    'umoci_insert_layers': case_umoci_insert_layers,
    'oci_archive': _variant('oci-archive'),
    'docker_archive': _variant('docker-archive'),
    'docker_archive_forms': case_docker_archive_forms,
    'gzip_docker_archive': _variant('gzip-docker-archive'),
    'zstd': _variant('zstd'),
    'zstd_frames': case_zstd_frames,
    'zstd_seekable': case_zstd_seekable,
    'uncompressed': _variant('uncompressed'),
    'edge': case_edge,
    'gnu_sparse': case_gnu_sparse,
    'cli': case_cli,
    'progress': case_progress,
    'status': case_status,
    'chroot': case_chroot,
    'concurrent': case_concurrent,
    'fuse3_form': case_fuse3_form,
    'readonly': case_readonly,
    'bad_corrupt_gzip': case_bad_corrupt_gzip,
    'bad_digest_mismatch': case_bad_digest_mismatch,
    'bad_digest_same_size': case_bad_digest_same_size,
    'bad_missing_blob': case_bad_missing_blob,
    'bad_media_type': case_bad_media_type,
    'bad_truncated_gzip': case_bad_truncated_gzip,
    'bad_corrupt_deflate': case_bad_corrupt_deflate,
    'bad_truncated_tar': case_bad_truncated_tar,
    'bad_truncated_plain_tar': case_bad_truncated_plain_tar,
    'bad_huge_size': case_bad_huge_size,
    'hostile_names': case_hostile_names,
    'eio': case_eio,
    'lifecycle': case_lifecycle,
    'platform': case_platform,
    'bigdir': case_bigdir,
    'cache_damage': case_cache_damage,
    'cache_damage_live': case_cache_damage_live,
    'shared_cache': case_shared_cache,
}
CASES.update(hostile.CASES)  # resource limits (hostile.py)

if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--list':
        print('\n'.join(CASES))
        sys.exit(0)
    sys.exit(main(CASES))
