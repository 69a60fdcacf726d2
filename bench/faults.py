#!/usr/bin/python3
"""bench/faults.py — what registry faults cost a mount of the bench image.

Usage: bench/faults.py [LAYOUT[:TAG]]     (default /work/benchdata/layout:bench)
Env:   OCIFS=PATH          the binary (default <repo>/build/ocifs)
       BENCH_WORK=DIR      scratch (default /tmp/ocifs-bench-faults; wiped)
       BENCH_RUNS=N        runs per measurement (default 3); the median is reported
       BENCH_CUT=BYTES     where the proxy closes every blob answer (default 65536)
       BENCH_READERS=N     concurrent reads stalled while `ls -lR` runs (default 32)

Measures, on 127.0.0.1 (Debian's docker-registry behind tests/integration's FaultProxy):
  1. a cold mount and a read of every file, clean and with every blob answer closed after
     BENCH_CUT bytes (each cut resumed with Range from the byte reached), the tree compared with
     `umoci unpack` each time;
  2. with every blob GET stalled and BENCH_READERS reads of distinct files waiting (index-only
     cache, --read-timeout 5s): the time of `ls -lR /usr` and of `stat` of every path, and when
     the reads get EIO.
Prints a markdown table on stdout. Needs root (umoci keeps owners, FUSE). No timed assertions.
"""

import os
import shutil
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

import fixtures  # noqa: E402
from benchutil import log, sh  # noqa: E402
import benchutil  # noqa: E402
import registry as R  # noqa: E402
import treecmp  # noqa: E402

OCIFS = os.environ.get('OCIFS', os.path.join(REPO, 'build', 'ocifs'))
WORK = os.environ.get('BENCH_WORK', '/tmp/ocifs-bench-faults')
RUNS = int(os.environ.get('BENCH_RUNS', '3'))
CUT = int(os.environ.get('BENCH_CUT', '65536'))
READERS = int(os.environ.get('BENCH_READERS', '32'))
READ_TIMEOUT = 5





def cold_mount_and_compare(ref, reference, cache, mnt):
    """Seconds to a live mount, then to the tree compared (every byte read)."""
    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(mnt, exist_ok=True)
    t0 = time.monotonic()
    sh([OCIFS, 'mount', '-q', '--cache-dir', cache, ref, mnt])
    t_live = time.monotonic()
    try:
        diffs = treecmp.compare(reference, mnt)
    finally:
        benchutil.umount(OCIFS, mnt)
    if diffs:
        raise SystemExit('bench: the mounted tree differs from umoci unpack: %s' % diffs[:5])
    return t_live - t0, time.monotonic() - t0


def stalled_metadata(px, ref, idx_cache, mnt):
    """With every blob GET stalled and READERS reads waiting: (ls -lR s, stat-all s, EIO after s)."""
    cache = idx_cache + '.run'
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(idx_cache, cache)
    sh([OCIFS, 'mount', '-q', '--read-timeout', '%ds' % READ_TIMEOUT, '--cache-dir', cache, ref, mnt])
    try:
        files = []
        for d, _, names in os.walk(os.path.join(mnt, 'usr')):
            for n in names:
                p = os.path.join(d, n)
                if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) > 65536:
                    files.append(p)
        files = files[:READERS]
        f = px.add_fault('stall', count=None, seconds=3600)
        done = []

        def reader(p):
            t = time.monotonic()
            try:
                with open(p, 'rb') as fh:
                    fh.read(4096)
                done.append(('data', time.monotonic() - t))
            except OSError as e:
                done.append((e.strerror, time.monotonic() - t))
        threads = [threading.Thread(target=reader, args=(p,), daemon=True) for p in files]
        for t in threads:
            t.start()
        time.sleep(1)
        t0 = time.monotonic()
        sh(['ls', '-lR', os.path.join(mnt, 'usr')])
        t_ls = time.monotonic() - t0
        t0 = time.monotonic()
        for d, dirs, names in os.walk(mnt):
            for n in dirs + names:
                os.lstat(os.path.join(d, n))
        t_stat = time.monotonic() - t0
        for t in threads:
            t.join(120)
        px.remove_fault(f)
        eio = [s for what, s in done if what != 'data']
        return t_ls, t_stat, max(eio) if eio else None, len(eio), len(files)
    finally:
        benchutil.umount(OCIFS, mnt)


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else '/work/benchdata/layout:bench'
    layout, tag = (target.rsplit(':', 1) + ['bench'])[:2] if ':' in target else (target, 'bench')
    if os.geteuid() != 0:
        raise SystemExit('bench: needs root (umoci unpack, FUSE)')
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    log('umoci unpack of %s:%s (the reference)' % (layout, tag))
    reference = fixtures.umoci_unpack(layout, tag, os.path.join(WORK, 'ref'))
    cache, mnt = os.path.join(WORK, 'cache'), os.path.join(WORK, 'mnt')
    os.makedirs(mnt)
    rows = []
    with R.Registry(workdir=os.path.join(WORK, 'registry')) as reg, R.FaultProxy(reg) as px:
        R.push_image('oci:%s:%s' % (layout, tag), reg, 'bench/app:v1')
        ref = px.ref('bench/app:v1')
        size = sum(l['size'] for l in reg.client().layers('bench/app', 'v1'))
        for name, fault in (('clean', None), ('every answer cut after %d KiB' % (CUT // 1024), CUT)):
            times, cuts = [], []
            for _ in range(RUNS):
                px.reset_counters()
                f = px.add_fault('drop_mid_body', count=None, after=fault) if fault else None
                times.append(cold_mount_and_compare(ref, reference, cache, mnt))
                cuts.append(f.hits if f else 0)
                if f:
                    px.remove_fault(f)
            log('%s: %s' % (name, times))
            rows.append((name, statistics.median(t[0] for t in times), statistics.median(t[1] for t in times),
                         max(cuts)))
        log('index-only cache for the stall measurement')
        sh([OCIFS, 'index', '-q', '--cache-dir', cache, ref])
        idx = os.path.join(WORK, 'idx')
        shutil.copytree(cache, idx, ignore=lambda d, names: ['blobs', 'access'] if d == cache else [])
        stalls = [stalled_metadata(px, ref, idx, mnt) for _ in range(RUNS)]
    print('## ocifs under registry faults — %s:%s (%.1f MB of layers)\n' % (layout, tag, size / 1e6))
    print('Debian docker-registry on 127.0.0.1 behind FaultProxy, no shaping; medians of %d runs.\n' % RUNS)
    print('| proxy | cold mount live | mount + every file read and compared | answers cut |')
    print('|---|---|---|---|')
    for name, live, total, cuts in rows:
        print('| %s | %.2f s | %.2f s | %d |' % (name, live, total, cuts))
    print('\nEvery blob GET stalled, index-only cache, `--read-timeout %ds`, %d reads of distinct '
          'files waiting:\n' % (READ_TIMEOUT, stalls[0][4]))
    print('| `ls -lR /usr` | `lstat` of every path | reads: EIO after (max) | reads with EIO |')
    print('|---|---|---|---|')
    med = lambda i: statistics.median(s[i] for s in stalls)  # noqa: E731
    print('| %.3f s | %.3f s | %.2f s | %d of %d |' % (med(0), med(1), med(2), stalls[0][3], stalls[0][4]))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == '__main__':
    main()
