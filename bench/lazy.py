#!/usr/bin/python3
"""bench/lazy.py — lazy-pull images (issue 4): the bench image plus a python3 layer, pushed as
plain gzip and converted by ctr-remote to eStargz (and zstd:chunked), served by Debian's
docker-registry on 127.0.0.1 behind the shaping proxy. For each variant:

  - cold `ocifs mount` + `cat /etc/os-release`          (time, blob bytes)
  - cold `ocifs mount` + `chroot MNT python3 -c 'print(1)'`
  - cold `ocifs mount` + reading every file            (time, blob bytes)
  - random 4 KiB reads in a cold mount (randread.py; each a read no earlier read has fetched)
and, for the same images, `skopeo copy` + `umoci unpack` + `cat etc/os-release`.

Usage: bench/lazy.py [LAYOUT[:TAG]]      (default /work/benchdata/layout:bench)
Env:   OCIFS, BENCH_WORK (default /tmp/ocifs-bench-lazy; wiped), BENCH_RATE (Mbit/s, default
       100), BENCH_LATENCY_MS (default 5), BENCH_RUNS (default 3; medians),
       BENCH_KINDS (default "estargz zstdchunked"), BENCH_READS (random reads, default 200)
Needs root, containerd and ctr-remote (stargz-snapshotter). Prints markdown; no assertions.
"""

import importlib.util
import os
import random
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

import benchutil  # noqa: E402
import registry as R  # noqa: E402
from lazy_fixtures import Containerd, convert_and_push  # noqa: E402

_spec = importlib.util.spec_from_file_location('bench_registry', os.path.join(HERE, 'registry.py'))
B = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(B)

OCIFS = B.OCIFS
WORK = os.environ.get('BENCH_WORK', '/tmp/ocifs-bench-lazy')
RATE = int(os.environ.get('BENCH_RATE', '100'))
LATENCY = int(os.environ.get('BENCH_LATENCY_MS', '5'))
RUNS = int(os.environ.get('BENCH_RUNS', '3'))
KINDS = os.environ.get('BENCH_KINDS', 'estargz zstdchunked').split()
READS = int(os.environ.get('BENCH_READS', '200'))
log = B.log


def ocifs_cold(px, ref, then):
    """Cold mount, then `then(mnt)`; (seconds, blob bytes)."""
    cache, mnt = os.path.join(WORK, 'cache'), os.path.join(WORK, 'mnt')
    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(mnt, exist_ok=True)
    B.drop_caches()
    px.reset_counters()
    t0 = time.monotonic()
    B.sh([OCIFS, 'mount', '-q', '--prefetch', 'none', '--cache-dir', cache, ref, mnt])
    try:
        then(mnt)
        return time.monotonic() - t0, px.blob_bytes
    finally:
        benchutil.umount(OCIFS, mnt)


def skopeo_cold(px, ref):
    dest, bundle = os.path.join(WORK, 'skopeo'), os.path.join(WORK, 'bundle')
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    B.drop_caches()
    px.reset_counters()
    t0 = time.monotonic()
    B.sh(['skopeo', '--insecure-policy', 'copy', '--src-tls-verify=false', '-q', 'docker://' + ref, 'oci:%s:t' % dest])
    B.sh(['umoci', 'unpack', '--image', '%s:t' % dest, bundle])
    with open(os.path.join(bundle, 'rootfs/etc/os-release'), 'rb') as f:
        f.read()
    return time.monotonic() - t0, px.blob_bytes


def cat_release(mnt):
    with open(os.path.join(mnt, 'etc/os-release'), 'rb') as f:
        f.read()


def python_runs(mnt):
    out = B.sh(['chroot', mnt] + B.PYCMD)
    assert out.strip() == '1', out


def read_all(mnt):
    for dirpath, _, names in os.walk(mnt):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, 'rb') as f:
                    while f.read(1 << 20):
                        pass


def file_list(root):
    out = []
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            if os.path.isfile(p) and not os.path.islink(p) and os.path.getsize(p) >= 4096:
                out.append((os.path.relpath(p, root), os.path.getsize(p)))
    return sorted(out)


def random_reads(files):
    def run(mnt):
        rng = random.Random(1)
        lat = []
        for _ in range(READS):
            rel, size = rng.choice(files)
            off = rng.randrange(0, size // 4096) * 4096
            t = time.perf_counter()
            fd = os.open(os.path.join(mnt, rel), os.O_RDONLY)
            os.pread(fd, 4096, off)
            os.close(fd)
            lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        run.result = (lat[len(lat) // 2], lat[len(lat) * 9 // 10], lat[-1])
    return run


def median_of(fn):
    runs = [fn() for _ in range(RUNS)]
    return statistics.median(r[0] for r in runs), max(r[1] for r in runs)


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else '/work/benchdata/layout:bench'
    layout, tag = target.rsplit(':', 1) if ':' in target else (target, 'bench')
    if os.geteuid() != 0:
        raise SystemExit('bench: needs root')
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    image = os.path.join(WORK, 'image')
    log('copying %s:%s and adding a python3 layer' % (layout, tag))
    shutil.copytree(layout, image)
    benchutil.add_python_layer(image, tag, os.path.join(WORK, 'pystage'))
    rows, sizes = [], {}
    with R.Registry(workdir=os.path.join(WORK, 'registry')) as reg, R.FaultProxy(reg) as px:
        R.push_image('oci:%s:%s' % (image, tag), reg, 'bench/app:gzip')
        variants = [('gzip', 'bench/app:gzip')]
        with Containerd(os.path.join(WORK, 'ctrd')) as ctrd:
            for kind in KINDS:
                log('converting to %s' % kind)
                t0 = time.monotonic()
                man = convert_and_push(ctrd, reg, 'bench/app:gzip', 'bench/app:' + kind, kind)
                log('  %.1f s' % (time.monotonic() - t0))
                variants.append((kind, 'bench/app:' + kind))
        for name, repo_tag in variants:
            repo, _, t = repo_tag.rpartition(':')
            _, man, _ = reg.client().manifest(repo, t)
            sizes[name] = sum(l['size'] for l in man['layers']) + man['config']['size']
        px.shape(RATE * 1_000_000, LATENCY)
        files = None
        for name, repo_tag in variants:
            ref = px.ref(repo_tag)
            log('%s: cold mount + cat /etc/os-release' % name)
            release = median_of(lambda: ocifs_cold(px, ref, cat_release))
            log('%s: cold mount + chroot python3' % name)
            python = median_of(lambda: ocifs_cold(px, ref, python_runs))
            log('%s: cold mount + read every file' % name)
            everything = ocifs_cold(px, ref, read_all)
            if files is None:
                mnt = os.path.join(WORK, 'mnt-list')
                os.makedirs(mnt, exist_ok=True)
                B.sh([OCIFS, 'mount', '-q', '--cache-dir', os.path.join(WORK, 'cache'), ref, mnt])
                files = file_list(mnt)
                benchutil.umount(OCIFS, mnt)
            log('%s: random 4 KiB reads, cold' % name)
            rr = random_reads(files)
            ocifs_cold(px, ref, rr)
            skopeo = None
            if name != 'zstdchunked':  # umoci 0.4.7 cannot unpack zstd layers
                log('%s: skopeo copy + umoci unpack + cat' % name)
                skopeo = median_of(lambda: skopeo_cold(px, ref))
            rows.append((name, release, python, everything, rr.result, skopeo))
            log('%s: %r' % (name, rows[-1][1:]))
    print('## ocifs lazy-pull benchmark — %s:%s plus a python3 layer\n' % (layout, tag))
    print('- %d Mbit/s, %d ms added per request, caches dropped before each run, medians of %d; '
          'ocifs with --prefetch none' % (RATE, LATENCY, RUNS))
    print('- image bytes (layers + config): %s\n' % ', '.join('%s %.1f MB' % (k, v / 1e6) for k, v in sizes.items()))
    print('| variant | mount + cat os-release | bytes (% of image) | vs skopeo+umoci+cat | mount + python3 | '
          'read every file | bytes (× image) | random 4 KiB p50 / p90 / max | skopeo+umoci+cat |')
    print('|---|---|---|---|---|---|---|---|---|')
    for name, release, python, everything, rr, skopeo in rows:
        size = sizes[name]
        ratio = '%.3f×' % (release[0] / skopeo[0]) if skopeo else 'n/a'
        baseline = '%.2f s' % skopeo[0] if skopeo else 'n/a (umoci cannot unpack zstd)'
        print('| %s | %.2f s | %.2f MB (%.2f%%) | %s | %.2f s | %.2f s | %.1f MB (%.3f×) | %.1f / %.1f / %.1f ms | %s |' % (
            name, release[0], release[1] / 1e6, 100.0 * release[1] / size, ratio, python[0],
            everything[0], everything[1] / 1e6, everything[1] / size, rr[0], rr[1], rr[2], baseline))
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == '__main__':
    main()
