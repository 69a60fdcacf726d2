#!/usr/bin/python3
"""Roots for chroots and VMs: -o dev,suid, writable roots (--upper, --writable), and QEMU guests
booted from an ocifs mount over 9p and virtio-fs (examples/vm/ocifs-vm), all on a real Debian
image built with debootstrap (debian_image.py) and compared with `umoci unpack` of it.

Usage: /usr/bin/python3 vm_suite.py [CASE...]   (meson: one test per case; VM cases named vm_*)
"""

import base64
import os
import shutil
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import debian_image  # noqa: E402
import treecmp  # noqa: E402
from common import (OCIFS, Fail, Mount, check, is_mounted, log, main, mount_entry, mounts_at, run,  # noqa: E402
                    daemon_pids, supervisor_pids)
from common import unmount as force_unmount  # noqa: E402

VM_TOOLS = ('qemu-system-x86_64', 'cpio', 'busybox', 'debootstrap', 'umoci')


def require_vm_tools():
    missing = [t for t in VM_TOOLS if not shutil.which(t)]
    if not os.path.exists('/usr/share/qemu/qboot.rom') or not os.path.exists('/usr/lib/qemu/virtiofsd'):
        missing.append('qemu-system-x86 (qboot.rom, virtiofsd)')
    # scripts/test installs all of these: missing means a broken set-up, not a skip
    check(not missing, 'missing %s: run scripts/test, which installs them' % ', '.join(missing))


def tree_equal(reference, mnt, what, **kw):
    diffs = treecmp.compare(reference, mnt, **kw)
    check(not diffs, '%s: %d difference(s) between umoci unpack (A) and the mount (B):\n    %s' % (
        what, len(diffs), '\n    '.join(diffs[:100])))
    log('  tree identical to reference: %s' % what)


def image():
    layout, tag, reference = debian_image.build()
    return 'oci:%s:%s' % (layout, tag), reference


def chroot(mnt, *cmd, userspec=None, timeout=120):
    argv = ['chroot'] + (['--userspec=' + userspec] if userspec else []) + [mnt] + list(cmd)
    return run(argv, timeout=timeout)


def ocifs_umount(mnt):
    r = run([OCIFS, 'umount', mnt], timeout=60)
    check(r.returncode == 0, 'ocifs umount %s: exit %d: %s' % (mnt, r.returncode, r.stderr.decode()[-500:]))
    check(not mounts_at(mnt), 'after ocifs umount, still mounted at %s: %s' % (mnt, mounts_at(mnt)))
    for _ in range(100):
        if not daemon_pids(mnt):
            break
        time.sleep(0.1)
    check(not daemon_pids(mnt), 'ocifs daemon still running after umount of %s' % mnt)


class Writable:
    """with Writable(argv, mnt): a writable root mounted by argv, taken down with `ocifs umount`."""

    def __init__(self, argv, mnt, env=None):
        self.argv, self.mnt, self.env = argv, mnt, env

    def __enter__(self):
        os.makedirs(self.mnt, exist_ok=True)
        r = run(self.argv, timeout=300, env=self.env)
        if r.returncode != 0:
            self._cleanup()
            raise Fail('%s: exit %d: %s' % (' '.join(self.argv), r.returncode, r.stderr.decode()[-2000:]))
        got = mounts_at(self.mnt)
        if got != ['fuse.ocifs', 'overlay']:
            self._cleanup()
            raise Fail('writable root at %s: mounts %s, want fuse.ocifs then overlay' % (self.mnt, got))
        return self

    def _cleanup(self):
        while mounts_at(self.mnt) and mounts_at(self.mnt)[-1] == 'overlay':
            subprocess.run(['umount', '-l', self.mnt])
        force_unmount(self.mnt)

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            ocifs_umount(self.mnt)
        else:
            self._cleanup()
        return False


# ------------------------------------------------------------------ -o dev,suid

def case_chroot_dev_suid(work):
    """Without options the mount is nodev,nosuid; with -o dev,suid,allow_other a chroot writes to
    the image's /dev/null and a setuid-root program run as nobody gets euid 0."""
    ref, reference = image()
    mnt = work('mnt')
    cache = work('cache')
    with Mount(ref, mnt, cache, extra=['-o', 'allow_other']):
        opts = mount_entry(mnt)['mount_opts'].split(',')
        check('nosuid' in opts and 'nodev' in opts, 'default mount options %s lack nosuid,nodev' % opts)
        r = chroot(mnt, '/bin/sh', '-c', 'echo x > /dev/null')
        check(r.returncode != 0, 'nodev mount: writing /dev/null in the chroot succeeded')
        r = chroot(mnt, '/usr/local/bin/id-suid', userspec='65534:65534')
        check(r.returncode == 0 and b'euid=0' not in r.stdout,
              'nosuid mount: id-suid as nobody: exit %d %r %r' % (r.returncode, r.stdout, r.stderr))
    with Mount(ref, mnt, cache, extra=['-o', 'dev,suid,allow_other']):
        opts = mount_entry(mnt)['mount_opts'].split(',')
        check('nosuid' not in opts and 'nodev' not in opts, '-o dev,suid: mount options %s' % opts)
        r = chroot(mnt, '/bin/sh', '-c', 'echo x > /dev/null && echo written')
        check(r.returncode == 0 and r.stdout == b'written\n',
              '-o dev: writing /dev/null in the chroot: exit %d %r %r' % (r.returncode, r.stdout, r.stderr))
        r = chroot(mnt, '/usr/local/bin/id-suid', userspec='65534:65534')
        check(r.returncode == 0 and b'uid=65534' in r.stdout and b'euid=0(root)' in r.stdout,
              '-o suid: id-suid as nobody: exit %d %r %r' % (r.returncode, r.stdout, r.stderr))
        log('  as nobody: %s' % r.stdout.decode().strip())


# ------------------------------------------------------------------ writable roots

CHANGES = r'''
set -e
echo created > /etc/created
echo overwritten > /etc/debian_version
rm /etc/issue
python3 -c "import os; os.rename('/usr/share/doc', '/usr/share/doc-renamed')"
mkdir -p /var/lib/apt-like && echo 1 > /var/lib/apt-like/state
'''

AFTER_CHANGES = ('cat /etc/created /etc/debian_version; test ! -e /etc/issue && echo issue-gone; '
                 'test ! -e /usr/share/doc && ls /usr/share/doc-renamed | head -n 1; cat /var/lib/apt-like/state')


def _expected_after(reference):
    first = sorted(os.listdir(os.path.join(reference, 'usr/share/doc')))[0]
    return ('created\noverwritten\nissue-gone\n%s\n1\n' % first).encode()


def case_writable_upper(work):
    """--upper DIR: apt-style writes land in DIR/upper (a whiteout for a deleted file, a renamed
    image directory), chroot python3 and dpkg-query work, untouched files come from the image,
    umount takes both mounts down, the image stays as it was, and a remount with the same DIR
    (also as -o upper=DIR) shows the changes again."""
    ref, reference = image()
    mnt, state, cache = work('mnt'), work('state'), work('cache')
    want_after = _expected_after(reference)
    dpkg_want = chroot(reference, 'dpkg-query', '-W').stdout
    check(dpkg_want.count(b'\n') > 50, 'dpkg-query in the reference: %r' % dpkg_want[:200])
    with Writable([OCIFS, 'mount', '--cache-dir', cache, '--upper', state, ref, mnt], mnt):
        r = chroot(mnt, '/bin/sh', '-c', CHANGES)
        check(r.returncode == 0, 'writes in the chroot: exit %d %r' % (r.returncode, r.stderr))
        r = chroot(mnt, '/bin/sh', '-c', AFTER_CHANGES)
        check(r.stdout == want_after, 'after the writes: %r, want %r' % (r.stdout, want_after))
        r = chroot(mnt, 'python3', '-c', 'import sys, os; print(sys.version_info[0], os.getuid())')
        check(r.returncode == 0 and r.stdout == b'3 0\n', 'chroot python3: %r %r' % (r.stdout, r.stderr))
        r = chroot(mnt, 'dpkg-query', '-W')
        check(r.stdout == dpkg_want, 'dpkg-query -W differs from the reference chroot')
        # untouched: read through the overlay, equal to the image, and never copied up
        check(treecmp.sha256_file(os.path.join(mnt, 'opt/big')) == treecmp.sha256_file(os.path.join(reference, 'opt/big')),
              '/opt/big read through the writable root differs from the reference')
        check(not os.path.exists(os.path.join(state, 'upper/opt/big')), '/opt/big was copied up by a read')
        r = run([OCIFS, 'status', '--json', mnt])
        check(r.returncode == 0 and b'"writable": true' in r.stdout,
              'ocifs status of a writable root: exit %d %r %r' % (r.returncode, r.stdout[-300:], r.stderr))
    up = os.path.join(state, 'upper')
    check(open(os.path.join(up, 'etc/created')).read() == 'created\n', 'DIR/upper/etc/created missing')
    st = os.lstat(os.path.join(up, 'etc/issue'))
    check(stat.S_ISCHR(st.st_mode) and st.st_rdev == 0, 'no whiteout (char 0/0) for /etc/issue in DIR/upper')
    check(os.path.isdir(os.path.join(up, 'usr/share/doc-renamed')), 'renamed directory not in DIR/upper')
    check(os.path.isdir(os.path.join(state, 'work')), 'DIR/work (overlayfs work dir) missing')
    # the image itself is untouched
    with Mount(ref, work('plain'), cache):
        tree_equal(reference, work('plain'), 'the image after writes through --upper')
    # remount with the same DIR, in both forms
    for argv in ([OCIFS, 'mount', '--cache-dir', cache, '--upper', state, ref, mnt],
                 [OCIFS, ref, mnt, '-o', 'ro,cache_dir=%s,upper=%s' % (cache, state)]):
        with Writable(argv, mnt):
            r = chroot(mnt, '/bin/sh', '-c', AFTER_CHANGES)
            check(r.stdout == want_after, 'after a remount (%s): %r, want %r' % (argv[1], r.stdout, want_after))


def case_writable_tmpfs(work):
    """--writable (and -o writable, also through mount.fuse3): writes work and vanish at unmount;
    nothing is left behind (no mount, no staging directory, no daemon)."""
    ref, reference = image()
    mnt, cache = work('mnt'), work('cache')
    staged_before = set(os.listdir('/run')) if os.path.isdir('/run') else set()
    # mount.fuse3 (what `mount -t fuse.ocifs` and fstab run) finds ocifs in PATH
    helper = shutil.which('mount.fuse3', path='/usr/sbin:/sbin:/usr/bin:/bin')
    check(helper, 'mount.fuse3 is missing (package fuse3)')
    bindir = work('bin')
    os.makedirs(bindir)
    os.symlink(OCIFS, os.path.join(bindir, 'ocifs'))
    env = dict(os.environ, PATH=bindir + ':' + os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin'))
    for argv in ([OCIFS, 'mount', '--cache-dir', cache, '--writable', ref, mnt],
                 [OCIFS, ref, mnt, '-o', 'ro,cache_dir=%s,writable' % cache],
                 [helper, ref, mnt, '-t', 'ocifs', '-o', 'ro,nodev,nosuid,cache_dir=%s,writable' % cache]):
        with Writable(argv, mnt, env=env):
            r = chroot(mnt, '/bin/sh', '-c', 'test ! -e /etc/created && ' + CHANGES)
            check(r.returncode == 0, '%s: writes: exit %d %r' % (argv[1], r.returncode, r.stderr))
            r = chroot(mnt, '/bin/sh', '-c', AFTER_CHANGES)
            check(r.stdout == _expected_after(reference), '%s: after the writes: %r' % (argv[1], r.stdout))
        with open('/proc/self/mountinfo') as f:
            check('ocifs-upper' not in f.read(), 'the --writable tmpfs is still mounted')
        staged = {n for n in (set(os.listdir('/run')) - staged_before) if n.startswith('ocifs-writable')}
        check(not staged, 'staging directories left in /run: %s' % staged)
    with Mount(ref, mnt, cache):
        tree_equal(reference, mnt, 'the image after --writable')


def case_writable_signal(work):
    """SIGTERM to the supervisor of a writable root takes both mounts down (the overlay first,
    then the ocifs mount beneath it) and its server: nothing dead stays."""
    ref, _ = image()
    mnt = work('mnt')
    os.makedirs(mnt)
    r = run([OCIFS, 'mount', '--cache-dir', work('cache'), '--writable', ref, mnt], timeout=120)
    check(r.returncode == 0 and mounts_at(mnt) == ['fuse.ocifs', 'overlay'],
          'mount --writable: exit %d, mounts %s %r' % (r.returncode, mounts_at(mnt), r.stderr))
    # the supervisor: the `ocifs mount` process (its server is `ocifs: server MNT`)
    pids = supervisor_pids(mnt)
    check(len(pids) == 1, 'supervisor pids %s' % pids)
    os.kill(pids[0], 15)
    for _ in range(100):
        if not mounts_at(mnt) and not daemon_pids(mnt):
            break
        time.sleep(0.1)
    left = mounts_at(mnt)
    while mounts_at(mnt):
        subprocess.run(['umount', '-l', mnt])
    check(not left, 'after SIGTERM to the daemon, still mounted at %s: %s' % (mnt, left))


def case_writable_refused(work):
    """Clear refusals: --upper inside the mountpoint, --upper with --writable, an upper overlayfs
    cannot use; nothing mounted, no daemon left."""
    ref, _ = image()
    mnt = work('mnt')
    os.makedirs(mnt)
    for extra, want in ((['--upper', os.path.join(mnt, 'up')], b'inside the mountpoint'),
                        (['--upper', work('up'), '--writable'], b'exclude each other')):
        r = run([OCIFS, 'mount', '--cache-dir', work('cache')] + extra + [ref, mnt], timeout=120)
        check(r.returncode != 0 and want in r.stderr, '%s: exit %d %r' % (extra, r.returncode, r.stderr))
        check(not is_mounted(mnt), '%s: something is mounted at %s' % (extra, mnt))
    # an upper directory overlayfs cannot use (on another overlay): the kernel refuses when the
    # FUSE mount is already up; it is taken down again and its daemon ends
    other = work('other')
    with Writable([OCIFS, 'mount', '--cache-dir', work('cache'), '--writable', ref, other], other):
        os.makedirs(os.path.join(other, 'tmp/up'))
        r = run([OCIFS, 'mount', '--cache-dir', work('cache'), '--upper', os.path.join(other, 'tmp/up'), ref, mnt],
                timeout=120)
        check(r.returncode == 1 and b'cannot mount the writable overlay' in r.stderr,
              'upper on overlayfs: exit %d %r' % (r.returncode, r.stderr))
        check(not is_mounted(mnt) and not daemon_pids(mnt), 'upper on overlayfs: left a mount or a daemon')


# ------------------------------------------------------------------ VMs

GUEST_SCRIPT = r'''
python3 -c 'import sys; print("python", sys.version_info[0])'
dpkg-query -W | sha256sum
sha256sum /opt/big
stat -c '%n %u %g %a %F %t %T' /usr/local/bin/id-suid /opt/owned /usr/bin/su /opt/devnull /opt/loop0
setpriv --reuid=65534 --regid=65534 --clear-groups /usr/local/bin/id-suid
echo guest > /etc/guest-write && rm /etc/issue && cat /etc/guest-write && test ! -e /etc/issue && echo issue-gone
echo x > /opt/devnull && echo devnull-ok
exit 3
'''


def _stat_line(reference, path):
    st = os.lstat(os.path.join(reference, path.lstrip('/')))
    kind = {stat.S_IFREG: 'regular file', stat.S_IFCHR: 'character special file',
            stat.S_IFBLK: 'block special file'}[stat.S_IFMT(st.st_mode)]
    major, minor = (os.major(st.st_rdev), os.minor(st.st_rdev)) if kind != 'regular file' else (0, 0)
    return '%s %d %d %o %s %x %x' % (path, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), kind, major, minor)


def boot(kit, mnt, ref, transport, command=None, timeout=300):
    argv = [debian_image.OCIFS_VM, 'boot', '--kit', kit, '--accel', debian_image.vm_accel(), '--transport', transport,
            '--mount', mnt, '--timeout', str(timeout - 30), '--ocifs', OCIFS, ref]
    if command:
        argv += ['--'] + command
    t0 = time.time()
    r = run(argv, timeout=timeout)
    log('  booted (%s) over %s, ran %s: exit %d in %.1fs' % (debian_image.vm_accel(), transport,
                                                          'a command' if command else 'the entrypoint',
                                                          r.returncode, time.time() - t0))
    return r


def _vm_case(work, transport):
    require_vm_tools()
    ref, reference = image()
    kit = debian_image.vm_kit()
    mnt, cache = work('mnt'), work('cache')
    with Mount(ref, mnt, cache, extra=['-o', 'dev,suid']):
        r = boot(kit, mnt, ref, transport, ['/bin/sh', '-c', GUEST_SCRIPT])
        check(r.returncode == 3, 'guest command exit %d, want 3; stderr %r' % (r.returncode, r.stderr[-2000:]))
        out = r.stdout.decode(errors='replace').splitlines()
        host = chroot(mnt, '/bin/sh', '-c',
                      'python3 -c \'import sys; print("python", sys.version_info[0])\'; dpkg-query -W | sha256sum')
        want = host.stdout.decode().splitlines()
        want.append('%s  /opt/big' % treecmp.sha256_file(os.path.join(reference, 'opt/big')))
        want += [_stat_line(reference, p) for p in
                 ('/usr/local/bin/id-suid', '/opt/owned', '/usr/bin/su', '/opt/devnull', '/opt/loop0')]
        want += ['uid=65534(nobody) gid=65534(nogroup) euid=0(root) groups=65534(nogroup)',
                 'guest', 'issue-gone', 'devnull-ok']
        check(out == want, 'guest over %s said:\n  %s\nwant (chroot on the same mount, umoci unpack):\n  %s' % (
            transport, '\n  '.join(out), '\n  '.join(want)))
        # the guest's writes went to its tmpfs overlay, never to the image
        check(not os.path.exists(os.path.join(mnt, 'etc/guest-write')) and
              os.path.exists(os.path.join(mnt, 'etc/issue')), 'a guest write reached the mount')
        tree_equal(reference, mnt, 'the mount after the guest ran')


def case_vm_9p(work):
    """A QEMU guest (TCG) boots with the ocifs mount as its root over 9p: python3, dpkg-query and
    the sha256 of a 64 MiB file as in a chroot / umoci unpack; owners, setuid bits and device
    nodes as the image has them; the guest's writes stay in its overlay; its exit status is ours."""
    _vm_case(work, '9p')


def case_vm_virtiofs(work):
    """The same over virtio-fs (QEMU's virtiofsd serving the mount)."""
    _vm_case(work, 'virtiofs')


def case_vm_entrypoint(work):
    """Without a command the guest runs the image's Entrypoint + Cmd with its Env and WorkingDir;
    ocifs-vm mounts the image itself when not given a mount, and unmounts it afterwards."""
    require_vm_tools()
    ref, _ = image()
    kit = debian_image.vm_kit()
    env = dict(os.environ, XDG_CACHE_HOME=work('xdg'), OCIFS_CACHE_DIR=work('cache'))
    argv = [debian_image.OCIFS_VM, 'boot', '--kit', kit, '--accel', debian_image.vm_accel(), '--timeout', '270',
            '--ocifs', OCIFS, ref]
    r = run(argv, timeout=300, env=env)
    check(r.returncode == 0 and r.stdout.decode() == debian_image.ENTRYPOINT_OUTPUT + '\n',
          'entrypoint: exit %d stdout %r stderr %r' % (r.returncode, r.stdout, r.stderr[-2000:]))
    # its mount lives in a /tmp/ocifs-vm.* directory of its own (other tests may be mounting)
    left = [l for l in open('/proc/self/mountinfo') if ' /tmp/ocifs-vm.' in l]
    check(not left, 'ocifs-vm left a mount behind: %s' % left)


def case_vm_cmdline(work):
    """A command on the kernel command line (ocifs.cmd=BASE64: quotes of any depth survive) runs
    with the image's /bin/sh instead of the one in the initramfs."""
    require_vm_tools()
    ref, _ = image()
    kit = debian_image.vm_kit()
    mnt = work('mnt')
    script = 'printf \'%s|\' "a b" \'c "d"\' "e \'f\'"; echo; readlink /proc/$$/exe; exit 4'
    with Mount(ref, mnt, work('cache'), extra=['-o', 'dev,suid']):
        argv = [debian_image.OCIFS_VM, 'boot', '--kit', kit, '--accel', debian_image.vm_accel(),
                '--timeout', '270', '--mount', mnt, '--ocifs', OCIFS,
                '--append', 'ocifs.cmd=' + base64.b64encode(script.encode()).decode(), ref]
        r = run(argv, timeout=300)
        want = 'a b|c "d"|e \'f\'|\n/usr/bin/dash\n'
        check(r.returncode == 4 and r.stdout.decode() == want,
              'ocifs.cmd: exit %d stdout %r (want %r) stderr %r' % (r.returncode, r.stdout, want, r.stderr[-2000:]))


def case_vm_init(work):
    """--init: the guest switch_roots into the image's own /sbin/init (as PID 1), whose console
    output reaches us."""
    require_vm_tools()
    ref, _ = image()
    kit = debian_image.vm_kit()
    mnt = work('mnt')
    with Mount(ref, mnt, work('cache'), extra=['-o', 'dev,suid']):
        argv = [debian_image.OCIFS_VM, 'boot', '--kit', kit, '--accel', debian_image.vm_accel(), '--init', '--timeout', '270',
                '--mount', mnt, '--ocifs', OCIFS, ref]
        r = run(argv, timeout=300)
        check(r.returncode == 0 and b'image init running as pid 1' in r.stdout,
              '--init: exit %d stdout %r stderr %r' % (r.returncode, r.stdout[-2000:], r.stderr[-2000:]))


CASES = {
    'chroot_dev_suid': case_chroot_dev_suid,
    'writable_upper': case_writable_upper,
    'writable_tmpfs': case_writable_tmpfs,
    'writable_refused': case_writable_refused,
    'writable_signal': case_writable_signal,
    'vm_9p': case_vm_9p,
    'vm_virtiofs': case_vm_virtiofs,
    'vm_entrypoint': case_vm_entrypoint,
    'vm_init': case_vm_init,
    'vm_cmdline': case_vm_cmdline,
}
for fn in CASES.values():
    fn.tools = ('umoci', 'debootstrap')

if __name__ == '__main__':
    sys.exit(main(CASES))
