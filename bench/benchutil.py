"""What the bench scripts share: progress lines, commands that must succeed, page cache drops,
unmounts that wait until the mount is gone, the python3 layer the registry benches add to the
image. Stdlib only."""

import os
import shutil
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


def add_python_layer(layout, tag, staging):
    """umoci insert of the host's python3: the binary, its stdlib and libexpat, at their paths."""
    pieces = [('/usr/bin/python3.11', '/usr/bin/python3.11'),
              ('/usr/lib/python3.11', '/usr/lib/python3.11')]
    for lib in ('/lib/x86_64-linux-gnu/libexpat.so.1', '/usr/lib/x86_64-linux-gnu/libexpat.so.1'):
        if os.path.exists(lib):
            pieces.append((os.path.realpath(lib), '/usr/lib/x86_64-linux-gnu/libexpat.so.1'))
            break
    os.makedirs(os.path.join(staging, 'usr', 'bin'))
    for src, dest in pieces:
        target = staging + dest
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(src):
            shutil.copytree(src, target, symlinks=True,
                            ignore=shutil.ignore_patterns('__pycache__', 'test', 'tests', 'idlelib'))
        else:
            shutil.copy2(src, target)
    os.symlink('python3.11', os.path.join(staging, 'usr', 'bin', 'python3'))
    sh(['umoci', 'insert', '--image', '%s:%s' % (layout, tag), staging, '/'])
