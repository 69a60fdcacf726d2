#!/usr/bin/python3
"""Self-test of treecmp (no ocifs needed): two unpacks of the umoci fixture image are equal,
and a modified copy shows every kind of difference.  Exit 0 / 1 / 77 (not root); umoci and
setcap, which scripts/test installs, are required."""

import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures  # noqa: E402
import treecmp  # noqa: E402


def main():
    if os.geteuid() != 0:
        print('SKIP: needs root (umoci unpack keeps owners and devices)')
        return 77
    missing = [t for t in ('umoci', 'setcap') if not shutil.which(t)]
    if missing:
        print('FAIL: %s not installed (scripts/test installs umoci and libcap2-bin)' % ', '.join(missing))
        return 1
    work = tempfile.mkdtemp(prefix='ocifs-treecmp-')
    try:
        layout = fixtures.build_umoci_image(work)
        a = fixtures.umoci_unpack(layout, fixtures.TAG, os.path.join(work, 'a'))
        b = fixtures.umoci_unpack(layout, fixtures.TAG, os.path.join(work, 'b'))
        d = treecmp.compare(a, b)
        if d:
            print('two unpacks differ:\n' + '\n'.join(d))
            return 1
        j = lambda p: os.path.join(b, p)  # noqa: E731
        ns = lambda p, t: os.utime(j(p), ns=(t, t), follow_symlinks=False)  # noqa: E731
        # (path, field) pairs that must be reported after the mutations below
        os.chmod(j('etc/passwd'), 0o4777)
        os.chown(j('etc/hostname'), 5, -1)
        os.chown(j('modes/owned'), -1, 9)
        with open(j('data/empty'), 'wb') as f:
            f.write(b'x')
        ns('data/empty', os.lstat(os.path.join(a, 'data/empty')).st_mtime_ns)
        ns('etc/os-release', 1)
        os.unlink(j('sym/rel'))
        os.symlink('../etc/passwd', j('sym/rel'))          # same length, other target
        ns('sym/rel', os.lstat(os.path.join(a, 'sym/rel')).st_mtime_ns)
        ns('sym/dangling', 5)
        os.unlink(j('special/null'))
        os.mknod(j('special/null'), 0o666 | 0o020000, os.makedev(1, 5))
        ns('special/null', os.lstat(os.path.join(a, 'special/null')).st_mtime_ns)
        os.setxattr(j('xattr/user'), 'user.plain', b'changed')
        os.removexattr(j('xattr/cap'), 'security.capability')
        os.unlink(j('special/fifo'))
        open(j('special/fifo'), 'w').close()
        with open(j('a/b/top'), 'r+b') as f:               # same size, other bytes
            f.write(b'X')
        ns('a/b/top', os.lstat(os.path.join(a, 'a/b/top')).st_mtime_ns)
        os.unlink(j('keep/link2'))
        shutil.copy2(j('hl/orig'), j('keep/link2'))
        os.mkdir(j('extra'))
        diffs = treecmp.compare(a, b)
        text = '\n'.join(diffs)
        want = [('etc/passwd', 'mode'), ('etc/hostname', 'uid'), ('modes/owned', 'gid'),
                ('data/empty', 'size'), ('data/empty', 'content'), ('etc/os-release', 'mtime'),
                ('sym/rel', 'target'), ('sym/dangling', 'mtime'), ('special/null', 'rdev'),
                ('xattr/user', 'xattrs'), ('xattr/cap', 'xattrs'), ('special/fifo', 'type'),
                ('a/b/top', 'content'), ('keep/link2', 'links'), ('hl/orig', 'nlink'),
                ('extra', 'missing')]
        missing = [w for w in want if '%s: %s:' % w not in text]
        if missing:
            print('treecmp missed: %s\nit reported:\n%s' % (missing, text))
            return 1
        ign = treecmp.compare(a, b, ignore=treecmp.ALL_FIELDS)
        if ign:
            print('ignoring every field still reports:\n' + '\n'.join(ign))
            return 1
        r = subprocess.run([sys.executable, treecmp.__file__, a, b], stdout=subprocess.PIPE)
        if r.returncode != 1 or not r.stdout:
            print('CLI: exit %d' % r.returncode)
            return 1
        print('treecmp self-test passed (%d differences detected)' % len(diffs))
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
