#!/usr/bin/python3
"""bench/shared_index.py — plain gzip images mounted lazily through a shared index
(`ocifs index --push`): what the index costs and what it saves.

Usage: bench/shared_index.py [LAYOUT[:TAG]]     (default /work/benchdata/layout:bench)
Env:   OCIFS=PATH              the binary (default <repo>/build/ocifs)
       BENCH_WORK=DIR          scratch (default /tmp/ocifs-bench-shared; wiped)
       BENCH_RATES=LIST        proxy bandwidths in Mbit/s (default "100 400")
       BENCH_LATENCY_MS=N      added per request (default 5)
       BENCH_RUNS=N            runs per timed measurement (default 3); medians
       BENCH_SPACINGS=LIST     checkpoint spacings to compare (default "auto 512K 1M 2M 4M 8M")

The image (plus a layer with the host's python3, as bench/registry.py adds) is pushed to a Debian
docker-registry on 127.0.0.1 behind the shaping proxy (FaultProxy from tests/integration).
Table 1, per spacing, unshaped: `ocifs index --push` time (the layers already indexed by the
first push), the shared index's size and its heads as a share of the image's compressed bytes,
then on an empty cache the blob bytes fetched by the mount, by `chroot MNT python3 -c
'print(1)'`, and by reading every file afterwards. The last row ("auto + record") is the default
spacing pushed after the pusher mounted the image and ran python3 once: the index then lists what
that read as read first (with checkpoints for it), and the cold mount (default --prefetch)
fetches it at once. Table 2, per bandwidth: time from the command to python's output for a cold
ocifs mount with the shared index (with and without the pusher's record), without it, and for
`skopeo copy` + `umoci unpack`. Bytes are the proxy's blob bytes (layers and index blobs). Needs
root. No timed assertions.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))

from benchutil import drop_caches, log, sh  # noqa: E402
import benchutil  # noqa: E402
import registry as R  # noqa: E402

OCIFS = os.environ.get('OCIFS', os.path.join(REPO, 'build', 'ocifs'))
WORK = os.environ.get('BENCH_WORK', '/tmp/ocifs-bench-shared')
RATES = [int(r) for r in os.environ.get('BENCH_RATES', '100 400').split()]
LATENCY = int(os.environ.get('BENCH_LATENCY_MS', '5'))
RUNS = int(os.environ.get('BENCH_RUNS', '3'))
SPACINGS = os.environ.get('BENCH_SPACINGS', 'auto 512K 1M 2M 4M 8M').split()
PYCMD = ['python3', '-c', 'print(1)']
REF = 'bench/app:v1'


def push_index(ref, spacing, record=False):
    """`ocifs index --push` with the pusher's cache, with or without the access record its first
    mount left there; (seconds, bytes pushed, head bytes)."""
    cache = os.path.join(WORK, 'cache-pusher')
    args = [OCIFS, 'index', '--push', '-q', '--cache-dir', cache]
    if spacing != 'auto':
        args += ['--checkpoint-spacing', spacing]
    access, aside = os.path.join(cache, 'access'), os.path.join(WORK, 'access-aside')
    if not record and os.path.exists(access):
        os.rename(access, aside)
    t0 = time.monotonic()
    out = sh(args + [ref])
    seconds = time.monotonic() - t0
    if os.path.exists(aside):
        shutil.rmtree(access, ignore_errors=True)  # what the push's cache made meanwhile: empty
        os.rename(aside, access)
    last = out.strip().splitlines()[-1]  # "pushed DIGEST: N layer indexes, B bytes (…), heads H bytes, …"
    words = last.replace(',', '').split()
    return seconds, int(words[words.index('bytes') - 1]), int(words[words.index('heads') + 1])


def record_run(ref):
    """The pusher's first mount: runs python3 once, and leaves its access record in the cache."""
    mnt = os.path.join(WORK, 'mnt-pusher')
    os.makedirs(mnt, exist_ok=True)
    sh([OCIFS, 'mount', '-q', '--cache-dir', os.path.join(WORK, 'cache-pusher'), ref, mnt])
    sh(['chroot', mnt] + PYCMD)
    benchutil.umount(OCIFS, mnt)


def cold_mount(px, ref, extra=(), read_all=False, prefetch='none'):
    """Empty cache: (seconds to python's output, bytes when live, bytes after python, bytes after
    reading every file or None, seconds until the mount was live)."""
    cache, mnt = os.path.join(WORK, 'cache'), os.path.join(WORK, 'mnt')
    shutil.rmtree(cache, ignore_errors=True)
    os.makedirs(mnt, exist_ok=True)
    drop_caches()
    px.reset_counters()
    t0 = time.monotonic()
    sh([OCIFS, 'mount', '-q', '--prefetch', prefetch, '--cache-dir', cache, *extra, ref, mnt])
    t_live = time.monotonic() - t0
    live = px.blob_bytes
    out = sh(['chroot', mnt] + PYCMD)
    seconds = time.monotonic() - t0
    python = px.blob_bytes
    everything = None
    if read_all:
        subprocess.run(['find', mnt, '-type', 'f', '-exec', 'cat', '{}', '+'], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        everything = px.blob_bytes
    benchutil.umount(OCIFS, mnt)
    assert out.strip() == '1', out
    return seconds, live, python, everything, t_live


def skopeo_umoci(ref):
    dest, bundle = os.path.join(WORK, 'skopeo'), os.path.join(WORK, 'bundle')
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(bundle, ignore_errors=True)
    drop_caches()
    t0 = time.monotonic()
    sh(['skopeo', '--insecure-policy', 'copy', '--src-tls-verify=false', '-q', 'docker://' + ref, 'oci:%s:t' % dest])
    sh(['umoci', 'unpack', '--image', '%s:t' % dest, bundle])
    out = sh(['chroot', os.path.join(bundle, 'rootfs')] + PYCMD)
    seconds = time.monotonic() - t0
    assert out.strip() == '1', out
    return seconds


def median(fn):
    return statistics.median(fn() for _ in range(RUNS))


def medians(fn):
    """Per position, the median over RUNS calls of fn (which returns a tuple)."""
    runs = [fn() for _ in range(RUNS)]
    return [statistics.median(col) for col in zip(*runs)]


def main():
    target = sys.argv[1] if len(sys.argv) > 1 else '/work/benchdata/layout:bench'
    layout, tag = target.rsplit(':', 1) if ':' in target else (target, 'bench')
    if os.geteuid() != 0:
        raise SystemExit('bench: needs root (umoci unpack, FUSE, chroot)')
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    image = os.path.join(WORK, 'image')
    log('copying %s:%s and adding a python3 layer' % (layout, tag))
    shutil.copytree(layout, image)
    benchutil.add_python_layer(image, tag, os.path.join(WORK, 'pystage'))
    with R.Registry(workdir=os.path.join(WORK, 'registry')) as reg, R.FaultProxy(reg) as px:
        log('pushing to %s' % reg.host)
        R.push_image('oci:%s:%s' % (image, tag), reg, REF)
        total = sum(l['size'] for l in reg.client().layers(*REF.split(':')))
        ref = px.ref(REF)
        log('indexing once (the first push scans every layer)')
        t0 = time.monotonic()
        push_index(ref, 'auto')
        first_push = time.monotonic() - t0
        spacing_rows = []
        for spacing in SPACINGS:
            log('spacing %s: push, cold mount + python3 + every file' % spacing)
            seconds, size, heads = push_index(ref, spacing)
            _, live, python, everything, _ = cold_mount(px, ref, read_all=True)
            spacing_rows.append((spacing, seconds, size, heads, live, python, everything))
        log('the pusher mounts the image and runs python3 once; auto spacing + record')
        record_run(ref)
        seconds, size, heads = push_index(ref, 'auto', record=True)
        _, live, python, everything, _ = cold_mount(px, ref, read_all=True, prefetch='landmark')
        spacing_rows.append(('auto + record', seconds, size, heads, live, python, everything))
        rate_rows = []
        for rate in RATES:
            px.shape(rate * 1_000_000, LATENCY)
            push_index(ref, 'auto', record=True)
            log('%d Mbit/s: cold mount with the shared index and the record' % rate)
            recorded = medians(lambda: (lambda r: (r[0], r[4]))(cold_mount(px, ref, prefetch='landmark')))
            push_index(ref, 'auto')
            log('%d Mbit/s: cold mount with the shared index, no record' % rate)
            shared = medians(lambda: (lambda r: (r[0], r[4]))(cold_mount(px, ref, prefetch='landmark')))
            log('%d Mbit/s: cold mount without it' % rate)
            plain = medians(lambda: (lambda r: (r[0], r[4]))(cold_mount(px, ref, extra=['--shared-index', 'off'],
                                                                          prefetch='landmark')))
            log('%d Mbit/s: skopeo copy + umoci unpack' % rate)
            skopeo = median(lambda: skopeo_umoci(ref))
            rate_rows.append((rate, recorded, shared, plain, skopeo))
    mb = lambda n: n / 1e6  # noqa: E731
    pct = lambda n: 100.0 * n / total  # noqa: E731
    print('## ocifs shared index — %s:%s plus a python3 layer: %.1f MB of layers\n' % (layout, tag, mb(total)))
    print('- first `ocifs index --push` (scans every layer, then pushes): %.1f s' % first_push)
    print('- bytes are the blob bytes the proxy served; mounts on an empty cache, `--prefetch none`\n')
    print('| spacing | push | index MB (% of image) | heads MB | mount live | + `chroot python3` | '
          '+ every file (× image) |')
    print('|---|---|---|---|---|---|---|')
    for spacing, seconds, size, heads, live, python, everything in spacing_rows:
        print('| %s | %.2f s | %.2f (%.2f%%) | %.2f | %.2f MB | %.2f MB (%.2f%%) | %.1f MB (%.3f×) |' % (
            spacing, seconds, mb(size), pct(size), mb(heads), mb(live), mb(python), pct(python), mb(everything),
            everything / total))
    print('\n| bandwidth | ocifs cold, shared index + record (live after) | shared index, no record | '
          '--shared-index=off | skopeo copy + umoci unpack | record / skopeo | no record / skopeo | off / skopeo |')
    print('|---|---|---|---|---|---|---|---|')
    for rate, recorded, shared, plain, skopeo in rate_rows:
        print('| %d Mbit/s, %d ms | %.2f s (%.2f) | %.2f s (%.2f) | %.2f s (%.2f) | %.2f s | %.3f× | %.3f× | %.2f× |' % (
            rate, LATENCY, recorded[0], recorded[1], shared[0], shared[1], plain[0], plain[1], skopeo,
            recorded[0] / skopeo, shared[0] / skopeo, plain[0] / skopeo))
    print('\n(medians of %d runs)' % RUNS)
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == '__main__':
    main()
