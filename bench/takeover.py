#!/usr/bin/python3
"""bench/takeover.py — what the supervisor costs, and how fast a mount recovers from a dead server.

Usage: bench/takeover.py OLD_OCIFS NEW_OCIFS [LAYOUT[:TAG]]   (default /work/benchdata/layout:bench)
Env:   BENCH_WORK=DIR   scratch (default /tmp/ocifs-bench-takeover; wiped)
       BENCH_RUNS=N     runs per measurement (default 5); the median is reported
       BENCH_KILLS=N    server kills for the recovery figure (default 20)

For each binary (OLD: a build without the supervisor; NEW: with it), on a mount with a warm
index cache and the page cache dropped before each run:
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

from benchutil import drop_caches, log, sh, umount  # noqa: E402

WORK = os.environ.get('BENCH_WORK') or '/tmp/ocifs-bench-takeover'
RUNS = int(os.environ.get('BENCH_RUNS') or 5)
KILLS = int(os.environ.get('BENCH_KILLS') or 20)


def files_of(mnt):
    out = []
    for dirpath, _, names in os.walk(mnt):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                out.append(p)
    return out


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


def measure(binary, ref, name):
    mnt = os.path.join(WORK, 'mnt-' + name)
    os.makedirs(mnt, exist_ok=True)
    cache = os.path.join(WORK, 'cache')
    sh([binary, 'mount', '--cache-dir', cache, ref, mnt])
    try:
        files = files_of(mnt)
        finds = [timed_find(mnt) for _ in range(RUNS)]
        reads = [timed_read(mnt, files) for _ in range(RUNS)]
        recoveries = []
        if server_pid(mnt):
            rnd = random.Random(7)
            for _ in range(KILLS):
                drop_caches()
                os.kill(server_pid(mnt), 9)
                t0 = time.monotonic()
                os.stat(rnd.choice(files))
                recoveries.append(time.monotonic() - t0)
                time.sleep(1.2)  # as in the tests' storm: servers live a moment
    finally:
        umount(binary, mnt)
    return statistics.median(finds), statistics.median(reads), recoveries


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    old, new = sys.argv[1], sys.argv[2]
    target = sys.argv[3] if len(sys.argv) > 3 else '/work/benchdata/layout:bench'
    layout, _, tag = target.partition(':')
    ref = 'oci:%s:%s' % (layout, tag or 'bench')
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    sh([new, 'index', '--cache-dir', os.path.join(WORK, 'cache'), ref])  # both runs start warm
    rows = {}
    for name, binary in (('old', old), ('new', new), ('old-again', old), ('new-again', new)):
        rows[name] = measure(binary, ref, name)
        log('%s: find %.3f s, read %.0f MB/s' % (name, rows[name][0], rows[name][1]))
    print('Image %s, %d runs per figure (median), page cache dropped before each.\n' % (ref, RUNS))
    print('| binary | find | read MB/s |')
    print('|---|---|---|')
    for name, (f, r, _) in rows.items():
        print('| %s | %.3f s | %.0f |' % (name, f, r))
    rec = rows['new'][2] + rows['new-again'][2]
    if rec:
        rec.sort()
        print('\nKill -9 of the server to the first answered lookup, %d kills: median %.3f s, p90 %.3f s, '
              'max %.3f s.' % (len(rec), rec[len(rec) // 2], rec[int(len(rec) * 0.9)], rec[-1]))


if __name__ == '__main__':
    main()
