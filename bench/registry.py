#!/usr/bin/python3
"""bench/registry.py — from an image in a registry to `chroot MNT python3 -c 'print(1)'`:
ocifs mount against `skopeo copy` + `umoci unpack`, through a bandwidth-shaping proxy.

Usage: bench/registry.py [LAYOUT[:TAG]]     (default /work/benchdata/layout:bench)
Env:   OCIFS=PATH           the binary (default <repo>/build/ocifs)
       BENCH_WORK=DIR       scratch (default /tmp/ocifs-bench-registry; wiped)
       BENCH_RATES=LIST     proxy bandwidths in Mbit/s (default "100 400")
       BENCH_LATENCY_MS=N   added per request (default 5)
       BENCH_RUNS=N         runs per measurement (default 3); the median is reported
       BENCH_UNCOMPRESSED=1 push the image with uncompressed layers (skopeo dir: --dest-decompress,
                            pushed as they are): ocifs walks their tar headers by range and
                            goes live before the rest arrives; also reports the blob bytes
                            fetched when the mount went live and the time of `find MNT`

Everything runs on 127.0.0.1: Debian's docker-registry, the shaping proxy (FaultProxy from
tests/integration, a token bucket shared by all connections) and both clients. The image gets
one more layer with the host's python3 (binary, stdlib, libexpat), so that the measured command
really starts an interpreter. Cold = empty ocifs cache / empty skopeo destination; warm = the
second mount with the cache kept (ocifs), or a second unpack of the copied layout (skopeo has
every blob: a `skopeo copy` to it transfers nothing). Prints a markdown table on stdout. Needs
root (umoci keeps owners, FUSE, chroot). No timed assertions.
"""

import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

import fixtures  # noqa: E402
from benchutil import drop_caches, log, sh  # noqa: E402
import benchutil  # noqa: E402
import registry as R  # noqa: E402

OCIFS = os.environ.get('OCIFS', os.path.join(REPO, 'build', 'ocifs'))
WORK = os.environ.get('BENCH_WORK', '/tmp/ocifs-bench-registry')
RATES = [int(r) for r in os.environ.get('BENCH_RATES', '100 400').split()]
LATENCY = int(os.environ.get('BENCH_LATENCY_MS', '5'))
RUNS = int(os.environ.get('BENCH_RUNS', '3'))
UNCOMPRESSED = os.environ.get('BENCH_UNCOMPRESSED') == '1'
PYCMD = ['python3', '-c', 'print(1)']




def ocifs_run(px, ref, cache, mnt, keep_cache):
    """(command to python's output, command to mount live, blob bytes when live, `find` after live)"""
    if not keep_cache:
        shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(mnt, exist_ok=True)
    drop_caches()
    t0 = time.monotonic()
    sh([OCIFS, 'mount', '-q', '--cache-dir', cache, ref, mnt])
    t_mount = time.monotonic()
    live_bytes = px.blob_bytes
    find = None
    if UNCOMPRESSED:
        sh(['find', mnt])
        find = time.monotonic() - t_mount
    out = sh(['chroot', mnt] + PYCMD)
    t1 = time.monotonic()
    benchutil.umount(OCIFS, mnt)
    assert out.strip() == '1', out
    return t1 - t0, t_mount - t0, live_bytes, find


def skopeo_run(ref, dest, bundle, keep_layout):
    if not keep_layout:
        shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    drop_caches()
    t0 = time.monotonic()
    sh(['skopeo', '--insecure-policy', 'copy', '--src-tls-verify=false', '-q', 'docker://' + ref,
        'oci:%s:t' % dest])
    sh(['umoci', 'unpack', '--image', '%s:t' % dest, bundle])
    out = sh(['chroot', os.path.join(bundle, 'rootfs')] + PYCMD)
    t1 = time.monotonic()
    assert out.strip() == '1', out
    return t1 - t0, None, None, None


def measure(px, fn):
    """Medians of (total, mount, bytes when live, find), and the most blob bytes of a run."""
    runs, fetched = [], []
    for _ in range(RUNS):
        px.reset_counters()
        runs.append(fn())
        fetched.append(px.blob_bytes)
    med = [statistics.median(col) if None not in col else None for col in zip(*runs)]
    return med[0], med[1], max(fetched), med[2], med[3]


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else '/work/benchdata/layout:bench'
    layout, tag = (target.rsplit(':', 1) + ['bench'])[:2] if ':' in target else (target, 'bench')
    if os.geteuid() != 0:
        raise SystemExit('bench: needs root (umoci unpack, FUSE, chroot)')
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    image = os.path.join(WORK, 'image')
    log('copying %s:%s and adding a python3 layer' % (layout, tag))
    shutil.copytree(layout, image)
    benchutil.add_python_layer(image, tag, os.path.join(WORK, 'pystage'))
    if UNCOMPRESSED:
        log('converting to uncompressed layers')
        image = fixtures.uncompressed_layout('oci:%s:%s' % (image, tag), os.path.join(WORK, 'plain'), tag)
    cache, mnt = os.path.join(WORK, 'cache'), os.path.join(WORK, 'mnt')
    dest, bundle = os.path.join(WORK, 'skopeo'), os.path.join(WORK, 'bundle')
    rows = []
    with R.Registry(workdir=os.path.join(WORK, 'registry')) as reg, R.FaultProxy(reg) as px:
        log('pushing to %s' % reg.host)
        if UNCOMPRESSED:
            R.push_layout(image, reg, 'bench/app:v1', tag=tag)
        else:
            R.push_image('oci:%s:%s' % (image, tag), reg, 'bench/app:v1')
        ref = px.ref('bench/app:v1')
        for rate in RATES:
            px.shape(rate * 1_000_000, LATENCY)
            log('%d Mbit/s, %d ms: ocifs cold' % (rate, LATENCY))
            o_cold = measure(px, lambda: ocifs_run(px, ref, cache, mnt, False))
            log('%d Mbit/s: ocifs warm' % rate)
            o_warm = measure(px, lambda: ocifs_run(px, ref, cache, mnt, True))
            log('%d Mbit/s: skopeo copy + umoci unpack, cold' % rate)
            s_cold = measure(px, lambda: skopeo_run(ref, dest, bundle, False))
            log('%d Mbit/s: skopeo copy + umoci unpack, warm' % rate)
            s_warm = measure(px, lambda: skopeo_run(ref, dest, bundle, True))
            rows.append((rate, o_cold, o_warm, s_cold, s_warm))
    sizes = sorted((os.path.getsize(os.path.join(image, 'blobs', 'sha256', f))
                    for f in os.listdir(os.path.join(image, 'blobs', 'sha256'))), reverse=True)
    print('## ocifs registry benchmark — %s:%s plus a python3 layer%s\n' % (
        layout, tag, ', uncompressed layers' if UNCOMPRESSED else ''))
    print('- registry: Debian docker-registry on 127.0.0.1 behind a shaping proxy, %d ms added per '
          'request; medians of %d runs; caches dropped before each run' % (LATENCY, RUNS))
    print('- largest blobs: %s MB' % ', '.join('%.1f' % (s / 1e6) for s in sizes[:4]))
    print('- time = from the command to `chroot MNT python3 -c "print(1)"` printing 1\n')
    print('| bandwidth | ocifs cold (mount) | skopeo+umoci cold | ratio | ocifs warm (mount) | '
          'skopeo+umoci warm | ratio | blob MB fetched cold: ocifs / skopeo | warm: ocifs / skopeo |')
    print('|---|---|---|---|---|---|---|---|---|')
    for rate, oc, ow, sc, sw in rows:
        print('| %d Mbit/s | %.2f s (%.2f) | %.2f s | %.2f× | %.3f s (%.3f) | %.2f s | %.3f× | %.1f / %.1f | %.1f / %.1f |' % (
            rate, oc[0], oc[1], sc[0], oc[0] / sc[0], ow[0], ow[1], sw[0], ow[0] / sw[0],
            oc[2] / 1e6, sc[2] / 1e6, ow[2] / 1e6, sw[2] / 1e6))
    if UNCOMPRESSED:
        print('\n| bandwidth | ocifs cold: live after | blob MB when live | `find MNT` right after | '
              'of the image\'s %.1f MB |' % (sum(sizes) / 1e6))
        print('|---|---|---|---|---|')
        for rate, oc, ow, sc, sw in rows:
            print('| %d Mbit/s | %.2f s | %.1f | %.2f s | %.1f%% |' % (
                rate, oc[1], oc[3] / 1e6, oc[4], 100.0 * oc[3] / sum(sizes)))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == '__main__':
    main()
