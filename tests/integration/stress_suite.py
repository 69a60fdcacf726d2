#!/usr/bin/python3
"""The daemon's concurrency under load: many threads reading random ranges of many files of a
gzip, a zstd and an eStargz image at once, with the span cache and the blob cache kept small so
that spans and chunks are evicted and rebuilt under the readers' feet. Every byte is compared
with `umoci unpack`. `scripts/test --sanitize=thread` runs this case with a TSan build of ocifs
(the daemons are that binary), which is what it is for; it runs in the plain suite as well.

Usage: /usr/bin/python3 stress_suite.py [CASE...]
Environment: OCIFS_STRESS_READS (reads per thread, default 300).
"""

import hashlib
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures  # noqa: E402
from common import Mount, check, log, main  # noqa: E402
from takeover_suite import regular_files  # noqa: E402

THREADS = 24
READS = int(os.environ.get('OCIFS_STRESS_READS', '300'))
# Small enough that the working set never fits: the 8 MiB data/large alone spans 16 windows of
# 512 KiB, and the registry mounts' blobs are several times the blob budget.
SPAN_CACHE = '1M'
BLOB_CACHE = '2M'
# This case is about races and bytes, not deadlines (the fault cases test those): under TSan a
# read of a thrashing budget on a loaded 2-core machine may take longer than the default 30 s,
# and must not fail as a timeout. A read that never ends still fails the storm (900 s join).
READ_TIMEOUT = '10m'


class SubWork:
    """A work directory inside another (the fixtures build their image under work.path)."""

    def __init__(self, work, name):
        self.path = work(name)
        os.makedirs(self.path, exist_ok=True)

    def __call__(self, *parts):
        return os.path.join(self.path, *parts)


def storm(mounts, reference):
    """THREADS threads, each READS preads of random ranges of random files of random mounts,
    on file descriptors kept open across reads (so one open file sees many threads). Returns
    (reads done, list of errors)."""
    files = regular_files(reference)
    big = sorted(files, key=lambda f: -os.path.getsize(os.path.join(reference, f)))[:6]
    data = {f: open(os.path.join(reference, f), 'rb').read() for f in files}
    fds = {(m, f): os.open(os.path.join(m, f), os.O_RDONLY) for m in mounts for f in files}
    errors, lock, done = [], threading.Lock(), [0]

    def worker(seed):
        rnd = random.Random(seed)
        try:
            for _ in range(READS):
                m = rnd.choice(mounts)
                f = rnd.choice(big) if rnd.random() < 0.6 else rnd.choice(files)
                want = data[f]
                off = rnd.randrange(0, len(want) + 1) if want else 0
                ln = rnd.choice([1, 511, 4096, 65536, 300000, 1 << 20])
                got = os.pread(fds[(m, f)], ln, off)
                if got != want[off:off + ln]:
                    with lock:
                        errors.append('%s/%s [%d:+%d]: got %d bytes (sha %s), want %d (sha %s)' % (
                            m, f, off, ln, len(got), hashlib.sha256(got).hexdigest()[:12],
                            len(want[off:off + ln]), hashlib.sha256(want[off:off + ln]).hexdigest()[:12]))
                with lock:
                    done[0] += 1
        except OSError as e:
            with lock:
                errors.append('thread %d: %r' % (seed, e))

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(THREADS)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(900)
        hung = [t for t in threads if t.is_alive()]
        check(not hung, 'HANG: %d reader threads still running after 900 s' % len(hung))
    finally:
        for fd in fds.values():
            os.close(fd)
    return done[0], errors


def case_stress_reads(work):
    """24 threads over three mounts of one image (gzip and eStargz layers from the test registry
    under a 2 MiB blob budget, zstd frames from an OCI layout), span cache 1 MiB: every byte
    equal to umoci unpack, no read error, no hang; each layer's status shows 0 read errors."""
    from lazy_suite import REPO, lazy_image
    from registry import FaultProxy, Registry
    from registry_suite import mount as registry_mount
    from registry_suite import status_of
    from suite import zstd_frames_image
    with Registry() as reg, FaultProxy(reg) as px:
        reference, _, _ = lazy_image(work, reg, 'estargz')  # also pushes the gzip image as REPO:v1
        zstd_layout, _ = zstd_frames_image(SubWork(work, 'zstd'), seekable=False)
        small = ['--span-cache', SPAN_CACHE, '--read-timeout', READ_TIMEOUT]
        mounts = [work('mnt-gzip'), work('mnt-zstd'), work('mnt-estargz')]
        with registry_mount(work, px.ref(REPO + ':v1'), mounts[0], work('cache-gzip'),
                            extra=small + ['--cache-max', BLOB_CACHE, '--prefetch', 'none']), \
                Mount('oci:%s:%s' % (zstd_layout, fixtures.TAG), mounts[1], work('cache-zstd'),
                      extra=small), \
                registry_mount(work, px.ref(REPO + ':lazy'), mounts[2], work('cache-estargz'),
                               extra=small + ['--cache-max', BLOB_CACHE, '--prefetch', 'none']):
            t0 = time.time()
            reads, errors = storm(mounts, reference)
            log('  %d reads by %d threads over %d mounts in %.1f s; %d blob bytes fetched' % (
                reads, THREADS, len(mounts), time.time() - t0, px.blob_bytes))
            failing = []
            for mnt in mounts:
                failing += ['%s %s: %s read errors, %s timeouts, last: %s' % (
                    os.path.basename(mnt), l['digest'][:19], l.get('read_errors'), l.get('read_timeouts'),
                    l.get('last_read_error')) for l in status_of(work, mnt)['layers']
                    if l.get('read_errors') or l.get('read_timeouts')]
            check(not errors and not failing, '%d bad reads:\n  %s\nlayers with read errors:\n  %s' % (
                len(errors), '\n  '.join(errors[:40]), '\n  '.join(failing)))
            check(reads == THREADS * READS, '%d reads done, want %d' % (reads, THREADS * READS))


case_stress_reads.tools = ('umoci', 'skopeo')

CASES = {
    'stress_reads': case_stress_reads,
}

if __name__ == '__main__':
    sys.exit(main(CASES))
