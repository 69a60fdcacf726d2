#!/usr/bin/python3
"""bench/vm.py — booting a QEMU guest from an ocifs mount versus from the same image extracted.

Usage: bench/vm.py
Env:   OCIFS=PATH          the binary (default <repo>/build/ocifs)
       OCIFS_TEST_DATA=DIR where the Debian image and VM kit live (default <repo>/build/test-data;
                           built on first use by tests/integration/debian_image.py)
       BENCH_WORK=DIR      scratch (default /tmp/ocifs-bench-vm; wiped)
       BENCH_RUNS=N        boots per measurement (default 3); the median is reported
       BENCH_ACCEL=A       tcg or kvm (default: kvm where /dev/kvm boots the kit's kernel, else tcg)

For each transport and cache mode (9p cache=loose and cache=mmap at msize 512000, 9p loose at
msize 131072, virtio-fs) and each root — the ocifs mount (-o dev,suid), and `umoci unpack` of
the same image on the host's disk, exported the same way — it measures:
  boot:   wall time of `ocifs-vm boot` running `python3 -c pass` (QEMU start, kernel, initramfs,
          9p/virtio-fs mount, overlay, python3 from the root, power-off);
  read:   sequential read of the image's 64 MiB /opt/big inside the guest (MB/s, the guest's
          own clock; a fresh guest page cache each boot, the host's warm);
and the ocifs daemon's peak RSS while the guests boot. Prints a markdown table on stdout,
with ocifs/extracted ratios. Needs root. No timed assertions: figures only.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, 'tests', 'integration'))
sys.path.insert(0, HERE)

import debian_image  # noqa: E402
from benchutil import log, sh, umount  # noqa: E402

OCIFS = os.environ.get('OCIFS') or os.path.join(REPO, 'build', 'ocifs')
WORK = os.environ.get('BENCH_WORK') or '/tmp/ocifs-bench-vm'
RUNS = int(os.environ.get('BENCH_RUNS') or 3)
ACCEL = os.environ.get('BENCH_ACCEL') or ''  # default: what debian_image.vm_accel() finds

CONFIGS = [('9p', 'loose', 512000), ('9p', 'mmap', 512000), ('9p', 'loose', 131072), ('virtiofs', '-', 0)]
READ = ('import time\nt = time.monotonic()\nn = 0\nf = open("/opt/big", "rb", buffering=0)\n'
        'while True:\n    b = f.read(1 << 20)\n    if not b: break\n    n += len(b)\n'
        'print("read %d %.6f" % (n, time.monotonic() - t))\n')


def daemon_pid(mnt):
    for p in os.listdir('/proc'):
        if not p.isdigit():
            continue
        try:
            args = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\0')
            if os.path.samefile('/proc/%s/exe' % p, OCIFS) and os.fsencode(mnt) in args:
                return int(p)
        except OSError:
            continue
    return None


class RssSampler:
    """Peak VmRSS of a process, sampled every 20 ms while active."""

    def __init__(self, pid):
        self.pid, self.peak, self.stop = pid, 0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            try:
                m = re.search(r'VmRSS:\s+(\d+) kB', open('/proc/%d/status' % self.pid).read())
                self.peak = max(self.peak, int(m.group(1)) * 1024)
            except (OSError, AttributeError):
                pass
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def boot(kit, root, ref, transport, cache, msize, command):
    argv = [debian_image.OCIFS_VM, 'boot', '--kit', kit, '--accel', ACCEL, '--transport', transport,
            '--mount', root, '--ocifs', OCIFS, '--timeout', '600']
    if transport == '9p':
        argv += ['--cache', cache, '--msize', str(msize)]
    t0 = time.monotonic()
    r = subprocess.run(argv + [ref, '--'] + command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    elapsed = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit('bench: boot failed (%d): %s' % (r.returncode, r.stderr.decode()[-2000:]))
    return elapsed, r.stdout.decode()


def measure(kit, root, ref, config):
    transport, cache, msize = config
    boots, rates = [], []
    for _ in range(RUNS):
        boots.append(boot(kit, root, ref, transport, cache, msize, ['python3', '-c', 'pass'])[0])
        _, out = boot(kit, root, ref, transport, cache, msize, ['python3', '-c', READ])
        m = re.search(r'read (\d+) ([\d.]+)', out)
        rates.append(int(m.group(1)) / float(m.group(2)) / 1e6)
    return statistics.median(boots), statistics.median(rates)


def main():
    if os.geteuid() != 0:
        raise SystemExit('bench: needs root')
    layout, tag, reference = debian_image.build()
    kit = debian_image.vm_kit()
    global ACCEL
    ACCEL = ACCEL or debian_image.vm_accel()
    ref = 'oci:%s:%s' % (layout, tag)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    mnt = os.path.join(WORK, 'mnt')
    os.makedirs(mnt)
    sh([OCIFS, 'mount', '--cache-dir', os.path.join(WORK, 'cache'), '-o', 'dev,suid', ref, mnt])
    rows = []
    peak = 0
    try:
        pid = daemon_pid(mnt)
        with RssSampler(pid) as rss:
            # the first boot from a fresh mount: what a cold cache costs (host page cache warm)
            cold, _ = boot(kit, mnt, ref, '9p', 'loose', 512000, ['python3', '-c', 'pass'])
            log('first boot from a fresh mount over 9p: %.2f s' % cold)
            for config in CONFIGS:
                o = measure(kit, mnt, ref, config)
                e = measure(kit, reference, ref, config)
                log('%s: ocifs boot %.2f s read %.0f MB/s; extracted boot %.2f s read %.0f MB/s' % (
                    config, o[0], o[1], e[0], e[1]))
                rows.append((config, o, e))
        peak = rss.peak
    finally:
        umount(OCIFS, mnt)
    print('Guest: %s, %s. Runs per figure: %d (median). First boot from a fresh mount (9p loose): %.2f s. '
          'ocifs daemon peak RSS during all boots: %.0f MiB.\n' % (
              ACCEL.upper(), open(os.path.join(kit, 'kernel-version')).read().strip(), RUNS, cold, peak / 2**20))
    print('| transport | cache | msize | boot ocifs | boot extracted | ratio | read ocifs MB/s '
          '| read extracted MB/s | time ratio |')
    print('|---|---|---|---|---|---|---|---|---|')
    for (transport, cache, msize), o, e in rows:
        print('| %s | %s | %s | %.2f s | %.2f s | %.2f | %.0f | %.0f | %.2f |' % (
            transport, cache, msize or '-', o[0], e[0], o[0] / e[0], o[1], e[1], e[1] / o[1]))


if __name__ == '__main__':
    main()
