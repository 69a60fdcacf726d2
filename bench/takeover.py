#!/usr/bin/python3
"""bench/takeover.py — what the supervisor costs, and how fast a mount recovers from a dead server.

Usage: bench/takeover.py OLD_OCIFS NEW_OCIFS [LAYOUT[:TAG]]   (default /work/benchdata/layout:bench)
Env:   BENCH_WORK=DIR   scratch (default /tmp/ocifs-bench-takeover; wiped)
       BENCH_RUNS=N     rounds (default 10); medians are reported
       BENCH_KILLS=N    server kills for the recovery figure (default 20)

Both binaries (OLD: a build without the supervisor; NEW: with it) mount the image at once, warm
index cache; rounds alternate between them, the page cache dropped before each run:
  find:  `find MNT -printf '%s %m %p\\n'` (lookups and getattr);
  read:  every regular file read whole (sequential throughput, MB/s);
and for NEW: kill -9 of the server, then the time until a request the kernel must send (a
lookup of a path not in the dentry cache) is answered, BENCH_KILLS times.
Prints a markdown table on stdout. Needs root (drop_caches). No timed assertions.
"""

import os
import random
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'tests', 'integration'))

from benchutil import drop_caches, log, sh, umount  # noqa: E402
from takeover_suite import regular_files  # noqa: E402

WORK = os.environ.get('BENCH_WORK') or '/tmp/ocifs-bench-takeover'
RUNS = int(os.environ.get('BENCH_RUNS') or 10)
KILLS = int(os.environ.get('BENCH_KILLS') or 20)


def files_of(mnt):
    return [os.path.join(mnt, f) for f in regular_files(mnt)]


def timed_find(mnt):
    drop_caches()
    t0 = time.monotonic()
    subprocess.run(['find', mnt, '-printf', '%s %m %p\n'], stdout=subprocess.DEVNULL, check=True)
    return time.monotonic() - t0


def timed_read(mnt, files):
    drop_caches()
    total = 0
    t0 = time.monotonic()
    for p in files:
        with open(p, 'rb', buffering=0) as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                total += len(b)
    return total / (time.monotonic() - t0) / 1e6


def server_pid(mnt):
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                args = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\0')
            except OSError:
                continue
            if args[:3] == [b'ocifs:', b'server', os.fsencode(mnt)]:
                return int(p)
    return None


def recovery(mnt, files):
    """Kill -9 of the server, then a lookup the kernel must send; seconds until it is answered."""
    rnd = random.Random(7)
    out = []
    for _ in range(KILLS):
        drop_caches()
        os.kill(server_pid(mnt), 9)
        t0 = time.monotonic()
        os.stat(rnd.choice(files))
        out.append(time.monotonic() - t0)
        time.sleep(1.2)  # as in the tests' storm: servers live a moment
    return out


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    binaries = {'old': sys.argv[1], 'new': sys.argv[2]}
    target = sys.argv[3] if len(sys.argv) > 3 else '/work/benchdata/layout:bench'
    layout, _, tag = target.partition(':')
    ref = 'oci:%s:%s' % (layout, tag or 'bench')
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    cache = os.path.join(WORK, 'cache')
    sh([binaries['new'], 'index', '--cache-dir', cache, ref])  # both start warm
    mnts = {}
    for name, binary in binaries.items():
        mnts[name] = os.path.join(WORK, 'mnt-' + name)
        os.makedirs(mnts[name])
        sh([binary, 'mount', '--cache-dir', cache, ref, mnts[name]])
    finds = {n: [] for n in binaries}
    reads = {n: [] for n in binaries}
    try:
        files = {n: files_of(m) for n, m in mnts.items()}
        # Interleaved, the order swapped each round: drift on a shared machine hits both alike.
        for i in range(RUNS):
            for name in (('old', 'new') if i % 2 == 0 else ('new', 'old')):
                finds[name].append(timed_find(mnts[name]))
                reads[name].append(timed_read(mnts[name], files[name]))
            log('round %d: find old %.3f new %.3f s; read old %.0f new %.0f MB/s' % (
                i + 1, finds['old'][-1], finds['new'][-1], reads['old'][-1], reads['new'][-1]))
        rec = sorted(recovery(mnts['new'], files['new']))
    finally:
        for name, binary in binaries.items():
            umount(binary, mnts[name])
    print('Image %s; %d interleaved rounds (medians), page cache dropped before each run.\n' % (ref, RUNS))
    print('| binary | find | read MB/s |')
    print('|---|---|---|')
    for name in binaries:
        print('| %s | %.3f s | %.0f |' % (name, statistics.median(finds[name]), statistics.median(reads[name])))
    print('\nKill -9 of the server to the first answered lookup, %d kills: median %.3f s, p90 %.3f s, '
          'max %.3f s.' % (len(rec), rec[len(rec) // 2], rec[int(len(rec) * 0.9)], rec[-1]))


if __name__ == '__main__':
    main()
