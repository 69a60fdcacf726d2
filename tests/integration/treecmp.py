#!/usr/bin/python3
"""Compare two directory trees exactly; print every difference, exit 1 if any.

Usage:  treecmp.py [--ignore FIELD]... [--ignore-path REL]... [--ignore-at REL:FIELD]... [-q] A B
Module: treecmp.compare(a, b, ignore=(), ignore_paths=(), ignore_at={rel: {fields}})
        -> list[str] (empty = equal)

Fields compared for every path (names are handled as bytes, so non-UTF-8 names work):
  type       file type (S_IFMT)
  mode       permission bits incl. setuid/setgid/sticky (S_IMODE)
  uid, gid
  size       regular files and symlinks only (a directory's st_size is filesystem-specific)
  mtime      st_mtime_ns, nanosecond precision, for every type including symlinks and the root
  nlink      non-directories only (a directory's link count is filesystem-specific)
  rdev       character and block devices (major/minor)
  target     symlink target (bytes)
  xattrs     see XATTR RULES below
  content    sha256 of regular files
  links      hard-link groups: the set of paths sharing an inode with a path in A must be the
             same set in B (and vice versa)
  missing    path present in one tree only

Established by experiment with umoci 0.4.7 on Debian 12 (ext4, kernel 6.x):
  * umoci unpack restores mtimes of files, directories AND symlinks (it uses lutimes), and of the
    rootfs root directory itself (from the layer's "./" entry), so mtime is compared everywhere.
  * umoci repack / Go's archive/tar writes USTAR/PAX headers with whole-second mtimes (a
    sub-second source mtime is rounded to the nearest second in the layer); hand-made PAX layers
    with fractional mtimes are restored by umoci unpack with full nanosecond precision.
  * umoci writes/restores xattrs as PAX SCHILY.xattr.*: user.*, trusted.* and
    security.capability survive a repack/unpack round trip.  Symlinks cannot carry user.*
    xattrs on Linux.  security.selinux (and any other security.* label) is host policy, never
    image content, so it is ignored.  system.* (POSIX ACLs) are not compared.  An xattr with
    an empty value does not survive umoci (Go drops empty PAX records).

XATTR RULES: only names starting with "user.", "trusted." or equal to "security.capability"
are compared; all others are ignored on both sides.
"""

import argparse
import hashlib
import os
import stat
import sys

ALL_FIELDS = ('type', 'mode', 'uid', 'gid', 'size', 'mtime', 'nlink', 'rdev', 'target',
              'xattrs', 'content', 'links', 'missing')

TYPE_NAMES = {
    stat.S_IFREG: 'file', stat.S_IFDIR: 'dir', stat.S_IFLNK: 'symlink', stat.S_IFCHR: 'chardev',
    stat.S_IFBLK: 'blockdev', stat.S_IFIFO: 'fifo', stat.S_IFSOCK: 'socket',
}


def xattr_wanted(name):
    return name.startswith('user.') or name.startswith('trusted.') or name == 'security.capability'


def read_xattrs(path):
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        return {'<listxattr error>': str(e).encode()}
    for n in names:
        if not xattr_wanted(n):
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError as e:
            out[n] = ('<getxattr error: %s>' % e).encode()
    return out


def sha256_file(path):
    h = hashlib.sha256()
    try:
        with open(path, 'rb') as f:
            while True:
                b = f.read(1 << 20)
                if not b:
                    break
                h.update(b)
    except OSError as e:
        return '<read error: %s>' % e
    return h.hexdigest()


def fmt_path(rel):
    return rel.decode('utf-8', 'backslashreplace')


def scan(root, ignore=()):
    """Return {relpath(bytes): info dict} for every entry under root (root itself is b'.')."""
    root = os.fsencode(root)
    entries = {}

    def info_of(full, st):
        t = stat.S_IFMT(st.st_mode)
        i = {
            'type': TYPE_NAMES.get(t, oct(t)),
            'mode': '%04o' % stat.S_IMODE(st.st_mode),
            'uid': st.st_uid,
            'gid': st.st_gid,
            'mtime': st.st_mtime_ns,
            '_ino': (st.st_dev, st.st_ino),
        }
        if t in (stat.S_IFREG, stat.S_IFLNK):
            i['size'] = st.st_size
        if t != stat.S_IFDIR:
            i['nlink'] = st.st_nlink
        if t in (stat.S_IFCHR, stat.S_IFBLK):
            i['rdev'] = '%d:%d' % (os.major(st.st_rdev), os.minor(st.st_rdev))
        if t == stat.S_IFLNK:
            try:
                i['target'] = os.readlink(full)
            except OSError as e:
                i['target'] = ('<readlink error: %s>' % e).encode()
        if 'xattrs' not in ignore:
            i['xattrs'] = read_xattrs(full)
        if t == stat.S_IFREG and 'content' not in ignore:
            i['content'] = sha256_file(full)
        return i

    def walk(full, rel):
        try:
            st = os.lstat(full)
        except OSError as e:
            entries[rel] = {'type': '<lstat error: %s>' % e}
            return
        entries[rel] = info_of(full, st)
        if stat.S_ISDIR(st.st_mode):
            try:
                names = sorted(os.listdir(full))
            except OSError as e:
                entries[rel]['listdir'] = '<listdir error: %s>' % e
                return
            for n in names:
                walk(os.path.join(full, n), n if rel == b'.' else rel + b'/' + n)

    walk(root, b'.')
    return entries


def link_groups(entries):
    by_ino = {}
    for p, i in entries.items():
        if i.get('type') not in ('dir', None) and '_ino' in i:
            by_ino.setdefault(i['_ino'], set()).add(p)
    return {p: frozenset(g) for g in by_ino.values() for p in g}


def compare(a, b, ignore=(), ignore_paths=(), ignore_at=None):
    """Compare trees a and b; return a list of human-readable difference lines.

    ignore: fields never compared; ignore_paths: paths (with subtrees) left out entirely;
    ignore_at: {relpath: {fields}} fields left out for one path only."""
    ignore = set(ignore)
    ignore_at = {os.fsencode(k).strip(b'/') or b'.': set(v) for k, v in (ignore_at or {}).items()}
    ignore_paths = {os.fsencode(p).strip(b'/') or b'.' for p in ignore_paths}
    ea = scan(a, ignore)
    eb = scan(b, ignore)

    def skipped(p):
        return any(p == ip or p.startswith(ip + b'/') for ip in ignore_paths)

    diffs = []
    for p in sorted(set(ea) | set(eb)):
        if skipped(p):
            continue
        if p not in eb:
            if 'missing' not in ignore:
                diffs.append('%s: missing: only in A (%s)' % (fmt_path(p), ea[p].get('type')))
            continue
        if p not in ea:
            if 'missing' not in ignore:
                diffs.append('%s: missing: only in B (%s)' % (fmt_path(p), eb[p].get('type')))
            continue
        ia, ib = ea[p], eb[p]
        for f in ('type', 'mode', 'uid', 'gid', 'size', 'mtime', 'nlink', 'rdev', 'target',
                  'xattrs', 'content', 'listdir'):
            if f in ignore or f in ignore_at.get(p, ()):
                continue
            va, vb = ia.get(f), ib.get(f)
            if va != vb:
                diffs.append('%s: %s: A=%r B=%r' % (fmt_path(p), f, va, vb))
    if 'links' not in ignore:
        ga, gb = link_groups(ea), link_groups(eb)
        seen = set()
        for p in sorted(set(ga) | set(gb)):
            if skipped(p) or p not in ea or p not in eb:
                continue
            sa, sb = ga.get(p, frozenset([p])), gb.get(p, frozenset([p]))
            sa = frozenset(x for x in sa if not skipped(x))
            sb = frozenset(x for x in sb if not skipped(x))
            if sa != sb and (sa, sb) not in seen:
                seen.add((sa, sb))
                diffs.append('%s: links: A=%s B=%s' % (
                    fmt_path(p), sorted(fmt_path(x) for x in sa), sorted(fmt_path(x) for x in sb)))
    return diffs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--ignore', action='append', default=[], choices=ALL_FIELDS,
                    help='field to leave out (repeatable)')
    ap.add_argument('--ignore-path', action='append', default=[],
                    help='relative path (and its subtree) to leave out (repeatable)')
    ap.add_argument('--ignore-at', action='append', default=[], metavar='PATH:FIELD',
                    help='leave FIELD out for PATH only (repeatable)')
    ap.add_argument('-q', '--quiet', action='store_true')
    ap.add_argument('a')
    ap.add_argument('b')
    args = ap.parse_args(argv)
    at = {}
    for spec in args.ignore_at:
        path, _, field = spec.rpartition(':')
        at.setdefault(path, set()).add(field)
    diffs = compare(args.a, args.b, args.ignore, args.ignore_path, at)
    if not args.quiet:
        for d in diffs:
            print(d)
    if diffs:
        print('treecmp: %d difference(s) between %s and %s' % (len(diffs), args.a, args.b),
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
