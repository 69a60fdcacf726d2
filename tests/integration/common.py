#!/usr/bin/python3
"""Shared harness for the ocifs integration tests: skip rules, running ocifs with timeouts,
mounting/unmounting safely, leftover-daemon cleanup, temp dirs."""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
OCIFS = os.path.abspath(os.environ.get('OCIFS_BIN') or os.environ.get('OCIFS')
                        or os.path.join(REPO, 'build', 'ocifs'))
SKIP = 77
CMD_TIMEOUT = int(os.environ.get('OCIFS_TEST_CMD_TIMEOUT', '120'))
KEEP = bool(os.environ.get('OCIFS_TEST_KEEP'))


class Skip(Exception):
    pass


class Fail(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def require_installed(*tools):
    """Tools that scripts/test installs (scripts/lib/common.sh): one missing is a broken set-up,
    and fails the test (a Skip would let a test that never ran look like one that passed)."""
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        raise Fail('%s not installed: scripts/test installs what the tests need' % ', '.join(missing))


def require(tools=('umoci', 'skopeo')):
    """Skip (77) where no test can mount (no /dev/fuse, not root): scripts/test cannot fix that.
    Tools it installs are required (Fail when missing)."""
    if not os.path.exists('/dev/fuse'):
        raise Skip('/dev/fuse is missing')
    if os.geteuid() != 0:
        raise Skip('not root (umoci unpack needs root to preserve owners, devices)')
    require_installed(*(tuple(tools) + ('fusermount3',)))
    if not os.access(OCIFS, os.X_OK):
        raise Fail('ocifs binary not found at %s (set OCIFS_BIN)' % OCIFS)


def log(*a):
    print(*a, flush=True)


def run(cmd, timeout=CMD_TIMEOUT, check_rc=False, env=None, input=None):
    """Run cmd; a timeout is a test failure ('hang'), never an exception escaping unexplained."""
    cmd = [str(c) if not isinstance(c, bytes) else c for c in cmd]
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           env=env, input=input)
    except subprocess.TimeoutExpired as e:
        raise Fail('HANG: %s did not finish within %ds (stderr so far: %r)' % (
            ' '.join(map(str, cmd)), timeout, (e.stderr or b'')[-2000:]))
    if check_rc and r.returncode != 0:
        raise Fail('%s exited %d\nstdout: %s\nstderr: %s' % (
            ' '.join(map(str, cmd)), r.returncode, r.stdout.decode(errors='replace')[-3000:],
            r.stderr.decode(errors='replace')[-3000:]))
    return r


def ocifs(*args, **kw):
    return run([OCIFS] + list(args), **kw)


def unescape_mount_path(s):
    return s.replace('\\040', ' ').replace('\\011', '\t').replace('\\012', '\n').replace('\\134', '\\')


def mount_entry(mnt):
    """The /proc/self/mountinfo fields for mnt, or None."""
    mnt = os.path.realpath(mnt)
    with open('/proc/self/mountinfo') as f:
        for line in f:
            parts = line.split()
            if unescape_mount_path(parts[4]) == mnt:
                sep = parts.index('-')
                return {'mount_opts': parts[5], 'fstype': parts[sep + 1],
                        'source': unescape_mount_path(parts[sep + 2]),
                        'super_opts': parts[sep + 3] if len(parts) > sep + 3 else ''}
    return None


def mounts_at(mnt):
    """The file system types mounted at mnt, the covered one first (a writable root: fuse.ocifs,
    then overlay)."""
    mnt = os.path.realpath(mnt)
    out = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            parts = line.split()
            if unescape_mount_path(parts[4]) == mnt:
                out.append(parts[parts.index('-') + 1])
    return out


def is_mounted(mnt):
    return mount_entry(mnt) is not None


def daemon_pids(mnt):
    """Pids of ocifs processes (by exe path) whose command line names this mountpoint."""
    pids = []
    real = os.path.realpath(OCIFS)
    mntb = os.fsencode(os.path.realpath(mnt))
    mntb_raw = os.fsencode(mnt)
    for p in os.listdir('/proc'):
        if not p.isdigit() or int(p) == os.getpid():
            continue
        try:
            exe = os.readlink('/proc/%s/exe' % p)
            with open('/proc/%s/cmdline' % p, 'rb') as f:
                args = f.read().split(b'\0')
        except OSError:
            continue
        if exe.replace(' (deleted)', '') != real:
            continue
        if mntb in args or mntb_raw in args:
            pids.append(int(p))
    return pids


def supervisor_pids(mnt):
    """daemon_pids(mnt) but the servers (`ocifs: server MNT`): the `ocifs mount` supervisor."""
    out = []
    for p in daemon_pids(mnt):
        try:
            with open('/proc/%d/cmdline' % p, 'rb') as f:
                if not f.read().startswith(b'ocifs:'):
                    out.append(p)
        except OSError:
            continue
    return out


def unmount(mnt):
    """Unmount (fusermount3 -u, fallback umount -l), then kill leftover daemons by pid."""
    if is_mounted(mnt):
        try:
            subprocess.run(['fusermount3', '-u', mnt], timeout=30,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pass
    if is_mounted(mnt):
        subprocess.run(['umount', '-l', mnt], timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline and daemon_pids(mnt):
        time.sleep(0.1)
    leftover = daemon_pids(mnt)
    for pid in leftover:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    return leftover


class Mount:
    """with Mount(ref, mnt, cache) as m: ...  — `ocifs mount`, always unmounted afterwards."""

    def __init__(self, ref, mnt, cache_dir=None, extra=(), env=None, timeout=CMD_TIMEOUT,
                 argv=None):
        self.ref, self.mnt, self.cache_dir = ref, mnt, cache_dir
        self.extra, self.env, self.timeout, self.argv = list(extra), env, timeout, argv
        self.result = None

    def __enter__(self):
        os.makedirs(self.mnt, exist_ok=True)
        if self.argv is not None:
            argv = self.argv
        else:
            argv = [OCIFS, 'mount']
            if self.cache_dir:
                argv += ['--cache-dir', self.cache_dir]
            argv += self.extra + [self.ref, self.mnt]
        t0 = time.time()
        try:
            self.result = run(argv, timeout=self.timeout, env=self.env)
        except BaseException:
            unmount(self.mnt)
            raise
        r = self.result
        if r.returncode != 0:
            unmount(self.mnt)
            raise Fail('mount failed (exit %d): %s\nstderr: %s' % (
                r.returncode, ' '.join(map(str, argv)), r.stderr.decode(errors='replace')[-4000:]))
        if not is_mounted(self.mnt):
            unmount(self.mnt)
            raise Fail('mount returned 0 but %s is not a mountpoint' % self.mnt)
        log('  mounted %s in %.2fs' % (self.ref, time.time() - t0))
        return self

    def __exit__(self, *exc):
        left = unmount(self.mnt)
        if left:
            log('  WARNING: killed leftover ocifs daemon(s) %s for %s' % (left, self.mnt))
        return False


class Workdir:
    def __init__(self, name):
        base = os.environ.get('OCIFS_TEST_TMP') or None
        self.path = tempfile.mkdtemp(prefix='ocifs-it-%s-' % name, dir=base)

    def __call__(self, *parts):
        return os.path.join(self.path, *parts)

    def cleanup(self):
        # never delete through a live mount
        for dirpath, dirnames, _ in os.walk(self.path):
            for d in list(dirnames):
                p = os.path.join(dirpath, d)
                if os.path.ismount(p) or is_mounted(p):
                    unmount(p)
        if KEEP:
            log('keeping work dir', self.path)
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def main(cases, argv=None):
    """cases: {name: fn(work)}; run the one named in argv[1] (or all).  Exit 0/1/77."""
    argv = sys.argv if argv is None else argv
    names = argv[1:] or list(cases)
    failed, skipped = [], []
    for name in names:
        if name not in cases:
            print('unknown case %s; known: %s' % (name, ' '.join(cases)), file=sys.stderr)
            return 2
        work = None
        try:
            require(getattr(cases[name], 'tools', ('umoci', 'skopeo')))
            work = Workdir(name)
            log('== %s (work dir %s)' % (name, work.path))
            t0 = time.time()
            cases[name](work)
            log('PASS %s (%.1fs)' % (name, time.time() - t0))
        except Skip as e:
            log('SKIP %s: %s' % (name, e))
            skipped.append(name)
        except Exception as e:
            if isinstance(e, Fail):
                log('FAIL %s:\n%s' % (name, e))
            else:
                log('FAIL %s: unexpected %s' % (name, ''.join(traceback.format_exception(e))))
            failed.append(name)
        finally:
            if work:
                work.cleanup()
    if failed:
        log('failed: %s' % ' '.join(failed))
        return 1
    if skipped and len(skipped) == len(names):
        return SKIP
    return 0
