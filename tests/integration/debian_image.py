#!/usr/bin/python3
"""A real Debian image for the chroot, writable-root and VM tests (vm_suite.py, bench/vm.py).

Built once per test-data directory ($OCIFS_TEST_DATA, which meson sets to BUILD/test-data) and
shared by every case, under a lock so that parallel cases wait for one build:
  debootstrap --variant=minbase bookworm, with python3-minimal   (layer 1, as debootstrap left it)
  + /usr/local/bin/id-suid (a setuid-root copy of id), /opt/big (64 MiB, half random, half
    text), a file owned by 1234:5678, an image config with Entrypoint, Cmd, Env, WorkingDir
                                                                     (layer 2)
The reference tree is `umoci unpack` of the same image. The Debian mirror is the one apt uses
here (the only network CI has), or $OCIFS_TEST_MIRROR.

Also the VM kit (examples/vm/ocifs-vm prepare): vmlinux and initrd.img for the newest kernel
installed with 9p modules.
"""

import fcntl
import glob
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OCIFS_VM = os.path.join(REPO, 'examples', 'vm', 'ocifs-vm')
TAG = 'deb'
BIG_SIZE = 64 * 1024 * 1024
ENTRYPOINT_OUTPUT = 'entrypoint ran in /srv with GREETING=hello from the image'


def data_dir():
    d = os.environ.get('OCIFS_TEST_DATA') or os.path.join(REPO, 'build', 'test-data')
    os.makedirs(d, exist_ok=True)
    return d


def _run(cmd, timeout=1800, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, **kw)
    if r.returncode != 0:
        raise RuntimeError('%s failed (%d):\n%s\n%s' % (
            ' '.join(map(str, cmd)), r.returncode, r.stdout.decode(errors='replace')[-3000:],
            r.stderr.decode(errors='replace')[-3000:]))
    return r


def apt_mirror():
    if os.environ.get('OCIFS_TEST_MIRROR'):
        return os.environ['OCIFS_TEST_MIRROR']
    texts = []
    for p in ['/etc/apt/sources.list'] + sorted(glob.glob('/etc/apt/sources.list.d/*')):
        try:
            texts.append(open(p).read())
        except OSError:
            pass
    for text in texts:
        for m in re.finditer(r'(?m)^(?:URIs:|deb)\s+(?:\[[^\]]*\]\s+)?(\S+)', text):
            uri = m.group(1)
            if 'security' not in uri and uri.startswith('http'):
                return uri
    return 'http://deb.debian.org/debian'


def _apt_proxy_env():
    """The environment with apt's HTTP proxy, if apt has one: debootstrap fetches with wget,
    which reads http_proxy but not apt's configuration."""
    env = dict(os.environ)
    r = subprocess.run(['apt-config', 'shell', 'PROXY', 'Acquire::http::Proxy'], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    m = re.match(r"PROXY='([^']*)'", r.stdout.decode().strip())
    if m and m.group(1) and 'http_proxy' not in env:
        env['http_proxy'] = m.group(1)
    return env


class _Lock:
    def __init__(self, path):
        self.f = open(path, 'w')

    def __enter__(self):
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.f, fcntl.LOCK_UN)
        self.f.close()


def _layer2(r):
    shutil.copy2(os.path.join(r, 'usr/bin/id'), os.path.join(r, 'usr/local/bin/id-suid'))
    os.chmod(os.path.join(r, 'usr/local/bin/id-suid'), 0o4755)
    os.makedirs(os.path.join(r, 'opt'), exist_ok=True)
    rnd = random.Random(64)
    half = BIG_SIZE // 2
    text = b''.join(b'%08d lorem ipsum dolor sit amet %d\n' % (i, rnd.randrange(1 << 30))
                    for i in range(half // 40 + 1))[:half]
    with open(os.path.join(r, 'opt/big'), 'wb') as f:
        f.write(rnd.randbytes(half))
        f.write(text)
    with open(os.path.join(r, 'opt/owned'), 'wb') as f:
        f.write(b'owned by 1234:5678\n')
    os.chown(os.path.join(r, 'opt/owned'), 1234, 5678)
    os.chmod(os.path.join(r, 'opt/owned'), 0o640)
    os.makedirs(os.path.join(r, 'srv'), exist_ok=True)
    # minbase has no init: one for `ocifs-vm boot --init`, which prints and powers off with the
    # static busybox ocifs-vm's initramfs leaves in /run
    with open(os.path.join(r, 'sbin/init'), 'w') as f:
        f.write('#!/bin/sh\necho "image init running as pid $$"\n'
                'exec /run/ocifs-vm/busybox poweroff -f\n')
    os.chmod(os.path.join(r, 'sbin/init'), 0o755)
    # device nodes where a booted guest's devtmpfs does not cover them
    os.mknod(os.path.join(r, 'opt/devnull'), 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(os.path.join(r, 'opt/loop0'), 0o660 | 0o060000, os.makedev(7, 0))


def build():
    """(layout, tag, reference rootfs): built on first use, then reused."""
    d = data_dir()
    layout, ref = os.path.join(d, 'debian-layout'), os.path.join(d, 'debian-ref')
    done = os.path.join(d, 'debian-v2.done')  # v2: /sbin/init
    with _Lock(os.path.join(d, 'debian.lock')):
        if os.path.exists(done):
            return layout, TAG, os.path.join(ref, 'rootfs')
        rootfs = os.path.join(d, 'debian-rootfs')
        if not os.path.exists(os.path.join(rootfs, 'usr/bin/python3')):
            shutil.rmtree(rootfs, ignore_errors=True)
            _run(['debootstrap', '--variant=minbase', '--include=python3-minimal', 'bookworm', rootfs,
                  apt_mirror()], env=_apt_proxy_env())
        for p in (layout, ref):
            shutil.rmtree(p, ignore_errors=True)
        work = os.path.join(d, 'debian-bundle')
        shutil.rmtree(work, ignore_errors=True)
        _run(['umoci', 'init', '--layout', layout])
        _run(['umoci', 'new', '--image', '%s:%s' % (layout, TAG)])
        _run(['umoci', 'unpack', '--image', '%s:%s' % (layout, TAG), work])
        _run(['cp', '-a', rootfs + '/.', os.path.join(work, 'rootfs') + '/'])
        _run(['umoci', 'repack', '--image', '%s:%s' % (layout, TAG), work])
        shutil.rmtree(work)
        _run(['umoci', 'unpack', '--image', '%s:%s' % (layout, TAG), work])
        _layer2(os.path.join(work, 'rootfs'))
        _run(['umoci', 'repack', '--image', '%s:%s' % (layout, TAG), work])
        shutil.rmtree(work)
        script = 'cd "$PWD" && echo "entrypoint ran in $PWD with GREETING=$GREETING $1"'
        _run(['umoci', 'config', '--image', '%s:%s' % (layout, TAG),
              '--config.entrypoint', '/bin/sh', '--config.entrypoint', '-c',
              '--config.entrypoint', script, '--config.entrypoint', 'sh',
              '--config.cmd', 'from the image',
              '--config.env', 'GREETING=hello', '--config.workingdir', '/srv'])
        _run(['umoci', 'gc', '--layout', layout])
        _run(['umoci', 'unpack', '--image', '%s:%s' % (layout, TAG), ref])
        open(done, 'w').close()
        return layout, TAG, os.path.join(ref, 'rootfs')


def vm_kit():
    """The directory ocifs-vm prepare built: vmlinux, initrd.img."""
    kit = os.path.join(data_dir(), 'vm-kit')
    stamp = os.path.join(kit, 'built-from')
    sources = b''.join(open(os.path.join(REPO, 'examples', 'vm', n), 'rb').read() for n in ('init', 'ocifs-vm'))
    digest = hashlib.sha256(sources).hexdigest()
    with _Lock(os.path.join(data_dir(), 'vm-kit.lock')):
        if not os.path.exists(stamp) or open(stamp).read() != digest:
            _run([OCIFS_VM, 'prepare', kit])
            with open(stamp, 'w') as f:
                f.write(digest)
    return kit


def vm_accel():
    """kvm where /dev/kvm boots the kit's stock kernel (tried once per test-data dir: some hosts'
    nested /dev/kvm does not), else tcg."""
    kit = vm_kit()
    path = os.path.join(kit, 'accel')
    with _Lock(os.path.join(data_dir(), 'vm-kit.lock')):
        if not os.path.exists(path):
            accel = _run([OCIFS_VM, 'accel', '--kit', kit], timeout=60).stdout.decode().strip()
            with open(path, 'w') as f:
                f.write(accel)
        return open(path).read().strip()


if __name__ == '__main__':
    print(build())
    print(vm_kit(), vm_accel())
    sys.exit(0)
