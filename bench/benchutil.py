"""What the bench scripts share: progress lines, commands that must succeed, page cache drops,
unmounts that wait until the mount is gone. Stdlib only."""

import subprocess
import sys
import time


def log(*a):
    print('bench:', *a, file=sys.stderr, flush=True)


def sh(cmd, **kw):
    """Runs cmd; its stdout as text, or exits the script with its stderr."""
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    if r.returncode != 0:
        raise SystemExit('bench: %s failed (%d): %s' % (' '.join(cmd), r.returncode, r.stderr.decode()[-2000:]))
    return r.stdout.decode()


def drop_caches():
    subprocess.run(['sync'])
    with open('/proc/sys/vm/drop_caches', 'w') as f:
        f.write('3\n')


def umount(ocifs, mnt):
    """`ocifs umount MNT`, then waits (5 s at most) until /proc/self/mounts no longer lists it."""
    subprocess.run([ocifs, 'umount', mnt], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        with open('/proc/self/mounts') as f:
            if (' %s fuse' % mnt) not in f.read():
                return
        time.sleep(0.05)
