#!/usr/bin/python3
"""bench/cold_trace.py — where the time and the bytes of one cold `chroot MNT python3` go, with
the image read through a shared index: every request the registry saw (when, what range, how
many bytes) and every file python opened.

Usage: bench/cold_trace.py [LAYOUT[:TAG]]     (default /work/benchdata/layout:bench)
Env:   OCIFS=PATH            the binary (default <repo>/build/ocifs)
       BENCH_WORK=DIR        scratch (default /tmp/ocifs-bench-trace; wiped)
       BENCH_RATE=N          proxy bandwidth in Mbit/s (default 100; 0: unshaped)
       BENCH_LATENCY_MS=N    added per request (default 5)
       BENCH_SPACING=SIZE    checkpoint spacing for the push (default: ocifs's choice)
       BENCH_MOUNT_ARGS=...  more `ocifs mount` arguments
       BENCH_RECORD=1        before pushing, the pusher mounts the image and runs python3 once,
                             so that the index lists what that read as read first
       BENCH_PREFETCH=MODE   --prefetch of the traced mount (default none)

Prints the timeline (seconds from the mount command) of the proxy's requests and, from strace,
of the files python opened, then totals per layer blob. Needs root and strace. No assertions.
"""

import collections
import os
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

from benchutil import drop_caches, log, sh  # noqa: E402
import benchutil  # noqa: E402
import registry as R  # noqa: E402

OCIFS = os.environ.get('OCIFS', os.path.join(REPO, 'build', 'ocifs'))
WORK = os.environ.get('BENCH_WORK', '/tmp/ocifs-bench-trace')
RATE = int(os.environ.get('BENCH_RATE', '100'))
LATENCY = int(os.environ.get('BENCH_LATENCY_MS', '5'))
SPACING = os.environ.get('BENCH_SPACING', '')
MOUNT_ARGS = os.environ.get('BENCH_MOUNT_ARGS', '').split()
RECORD = os.environ.get('BENCH_RECORD', '') == '1'
PREFETCH = os.environ.get('BENCH_PREFETCH', 'none')
REF = 'bench/app:v1'


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else '/work/benchdata/layout:bench'
    layout, tag = target.rsplit(':', 1) if ':' in target else (target, 'bench')
    if os.geteuid() != 0:
        raise SystemExit('bench: needs root (FUSE, chroot)')
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    image = os.path.join(WORK, 'image')
    shutil.copytree(layout, image)
    benchutil.add_python_layer(image, tag, os.path.join(WORK, 'pystage'))
    with R.Registry(workdir=os.path.join(WORK, 'registry')) as reg, R.FaultProxy(reg) as px:
        R.push_image('oci:%s:%s' % (image, tag), reg, REF)
        layers = reg.client().layers(*REF.split(':'))
        ref = px.ref(REF)
        pusher_cache = os.path.join(WORK, 'cache-pusher')
        push = [OCIFS, 'index', '--push', '-q', '--cache-dir', pusher_cache]
        if SPACING:
            push += ['--checkpoint-spacing', SPACING]
        log(sh(push + [ref]).strip().splitlines()[-1])
        if RECORD:
            mnt = os.path.join(WORK, 'mnt-pusher')
            os.makedirs(mnt)
            sh([OCIFS, 'mount', '-q', '--cache-dir', pusher_cache, ref, mnt])
            sh(['chroot', mnt, 'python3', '-c', 'print(1)'])
            benchutil.umount(OCIFS, mnt)
            log(sh(push + [ref]).strip())
        if RATE:
            px.shape(RATE * 1_000_000, LATENCY)
        cache, mnt = os.path.join(WORK, 'cache'), os.path.join(WORK, 'mnt')
        os.makedirs(mnt)
        drop_caches()
        px.reset_counters()
        t0 = time.time()
        sh([OCIFS, 'mount', '-q', '--prefetch', PREFETCH, '--cache-dir', cache, *MOUNT_ARGS, ref, mnt])
        t_live = time.time() - t0
        strace_out = os.path.join(WORK, 'strace')
        sh(['strace', '-f', '-ttt', '-e', 'trace=execve,openat', '-o', strace_out,
            'chroot', mnt, 'python3', '-c', 'print(1)'])
        t_done = time.time() - t0
        benchutil.umount(OCIFS, mnt)
        records = list(px.records) + list(px.cdn_records)
    events = []
    for r in records:
        what = r['path'].split('?')[0]
        for l in layers:
            what = what.replace(l['digest'], 'L%d' % layers.index(l))
        events.append((r['time'] - t0, 'GET' if r['method'] == 'GET' else r['method'],
                       '%s %s %s -> %s, %d B' % (r['method'], what, r['range'] or '', r['status'], r['bytes'])))
    opened = re.compile(r'^\d+\s+(\d+\.\d+) (?:openat\(AT_FDCWD, "([^"]+)"[^=]*= (-?\d+)|execve\("([^"]+)")')
    with open(strace_out) as f:
        for line in f:
            m = opened.match(line)
            if m and (m.group(4) or (m.group(3) and int(m.group(3)) >= 0)):
                events.append((float(m.group(1)) - t0, 'open', m.group(2) or 'exec ' + m.group(4)))
    events.sort()
    for t, kind, text in events:
        print('%8.3f  %-4s %s' % (t, kind, text))
    per_blob = collections.Counter()
    per_blob_requests = collections.Counter()
    for r in records:
        for i, l in enumerate(layers):
            if l['digest'] in r['path'] and r['method'] == 'GET':
                per_blob[i] += r['bytes']
                per_blob_requests[i] += 1
    print('\nlive after %.3f s, python done after %.3f s; %d requests, %d blob bytes' % (
        t_live, t_done, len(records), sum(r['bytes'] for r in records if '/blobs/' in r['path'])))
    for i, l in enumerate(layers):
        print('L%d %s: %d of %d bytes in %d requests' % (i, l['digest'][:19], per_blob[i], l['size'],
                                                       per_blob_requests[i]))


if __name__ == '__main__':
    main()
