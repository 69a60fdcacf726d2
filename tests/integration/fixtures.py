#!/usr/bin/python3
"""Offline fixture builders for the ocifs integration tests (all built at test time in a temp dir).

  build_umoci_image(work)      multi-layer image made with umoci (layout work/L, tag t); returns
                               the layout path.  Covers whiteouts, opaque dirs, file<->dir
                               replacement, hard links (also to a lower layer), symlinks, FIFO,
                               devices, setuid/setgid/sticky, xattrs (user.*, trusted.*,
                               security.capability), sparse file, long/non-UTF-8 names, empty
                               files, a large random file and a large compressible file, busybox.
  skopeo_convert(layout, work) docker-archive, oci-archive, zstd and uncompressed variants.
  OCIWriter                    minimal OCI layout writer (python tarfile + gzip) for layers that
                               umoci cannot produce; see edge_layers()/hostile_layers().
  umoci_unpack(layout, tag, dest) -> rootfs path (the reference tree).

Run as a script to build everything into a directory for manual inspection:
  /usr/bin/python3 fixtures.py OUTDIR
"""

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
TAG = 't'

LARGE_SIZE = 9 * 1024 * 1024 + 12345        # random: ~9 gzip checkpoints at 1 MiB spacing
TEXT_SIZE = 24 * 1024 * 1024 + 777          # compressible: many checkpoints, small blob
NON_UTF8 = b'caf\xe9-\xff\xfe.bin'          # latin-1 e-acute plus invalid UTF-8 bytes


def run(cmd, timeout=300, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout, **kw)
    if r.returncode != 0:
        raise RuntimeError('%s failed (%d):\n%s\n%s' % (
            ' '.join(map(str, cmd)), r.returncode, r.stdout.decode(errors='replace'),
            r.stderr.decode(errors='replace')))
    return r


def umoci_unpack(layout, tag, dest):
    run(['umoci', 'unpack', '--image', '%s:%s' % (layout, tag), dest])
    return os.path.join(dest, 'rootfs')


def large_bytes():
    return random.Random(1234).randbytes(LARGE_SIZE)


def text_bytes():
    rnd = random.Random(99)
    words = [b'alpha', b'bravo', b'charlie', b'delta', b'echo', b'foxtrot', b'golf', b'hotel',
             b'india', b'juliet', b'kilo', b'lima', b'mike', b'november', b'oscar', b'papa']
    out = bytearray()
    line = 0
    while len(out) < TEXT_SIZE:
        out += b'%08d ' % line + b' '.join(rnd.choice(words) for _ in range(12)) + b'\n'
        line += 1
    return bytes(out[:TEXT_SIZE])


def _write(path, data, mode=None, mtime=None):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    if mode is not None:
        os.chmod(path, mode)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))


def _layer(layout, work, n, mutate):
    """Unpack the current image into a fresh bundle, mutate its rootfs, repack as a new layer."""
    bundle = os.path.join(work, 'bundle%d' % n)
    rootfs = umoci_unpack(layout, TAG, bundle)
    mutate(rootfs)
    run(['umoci', 'repack', '--image', '%s:%s' % (layout, TAG), bundle])
    shutil.rmtree(bundle)


def _layer1(r):
    j = os.path.join
    # a small runnable userland for the chroot test
    os.makedirs(j(r, 'bin'))
    shutil.copy2('/bin/busybox', j(r, 'bin/busybox'))
    for app in ('sh', 'cat', 'echo', 'ls', 'sha256sum', 'stat', 'true'):
        os.symlink('busybox', j(r, 'bin', app))
    _write(j(r, 'etc/os-release'), b'NAME="ocifs-test"\nID=ocifs\nVERSION_ID=1\n')
    _write(j(r, 'etc/passwd'), b'root:x:0:0:root:/root:/bin/sh\n')
    _write(j(r, 'etc/hostname'), b'fixture\n', mtime=1500000000 * 10**9)
    # tree to merge / whiteout / opaque later
    for d in ('a/b/c', 'opq/sub', 'wdir/inner', 'd2f/x', 'keep'):
        os.makedirs(j(r, d))
    for f in ('a/b/c/file1', 'a/b/c/file2', 'a/b/top', 'opq/a1', 'opq/a2', 'opq/sub/x',
              'wdir/inner/y', 'wdir/z', 'd2f/x/deep', 'keep/k1'):
        _write(j(r, f), ('content of %s\n' % f).encode())
    _write(j(r, 'f2d'), b'i am a file for now\n')
    _write(j(r, 'gone'), b'deleted in layer 2\n')
    # hard links inside the layer
    _write(j(r, 'hl/orig'), b'hard linked content\n', mode=0o640)
    os.link(j(r, 'hl/orig'), j(r, 'hl/link1'))
    os.link(j(r, 'hl/orig'), j(r, 'keep/link2'))
    # symlinks
    os.makedirs(j(r, 'sym'))
    os.symlink('../etc/os-release', j(r, 'sym/rel'))
    os.symlink('/etc/passwd', j(r, 'sym/abs'))
    os.symlink('does/not/exist', j(r, 'sym/dangling'))
    os.symlink('/a', j(r, 'sym/dirlink'))
    os.symlink('x' * 150 + '/' + 'y' * 120, j(r, 'sym/longtarget'))
    os.utime(j(r, 'sym/rel'), ns=(1111111111 * 10**9,) * 2, follow_symlinks=False)
    # special files
    os.makedirs(j(r, 'special'))
    os.mkfifo(j(r, 'special/fifo'), 0o600)
    os.mknod(j(r, 'special/null'), 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(j(r, 'special/loop0'), 0o660 | 0o060000, os.makedev(7, 0))
    os.mknod(j(r, 'special/bigdev'), 0o600 | 0o020000, os.makedev(259, 70000))
    # modes and owners
    os.makedirs(j(r, 'modes'))
    _write(j(r, 'modes/suid'), b'#!/bin/sh\n', mode=0o4755)
    _write(j(r, 'modes/sgid'), b'#!/bin/sh\n', mode=0o2711)
    _write(j(r, 'modes/none'), b'secret\n', mode=0o000)
    _write(j(r, 'modes/owned'), b'owned\n', mode=0o640)
    os.chown(j(r, 'modes/owned'), 1234, 5678)
    os.makedirs(j(r, 'modes/sticky'))
    os.chmod(j(r, 'modes/sticky'), 0o1777)
    os.makedirs(j(r, 'modes/sgiddir'))
    os.chown(j(r, 'modes/sgiddir'), 42, 43)
    os.chmod(j(r, 'modes/sgiddir'), 0o2770)
    os.chown(j(r, 'sym/abs'), 7, 8, follow_symlinks=False)
    # xattrs (chown clears security.capability, so owners are set before)
    os.makedirs(j(r, 'xattr/dir'))
    _write(j(r, 'xattr/user'), b'x\n')
    os.setxattr(j(r, 'xattr/user'), 'user.plain', b'value')
    os.setxattr(j(r, 'xattr/user'), 'user.binary', b'\x00\x01\xff\x00end')
    os.setxattr(j(r, 'xattr/user'), 'user.empty', b'')
    os.setxattr(j(r, 'xattr/dir'), 'user.dirattr', b'on a directory')
    _write(j(r, 'xattr/cap'), b'#!/bin/sh\n', mode=0o755)
    run(['setcap', 'cap_net_raw,cap_net_admin+ep', j(r, 'xattr/cap')])
    _write(j(r, 'xattr/trusted'), b't\n')
    os.setxattr(j(r, 'xattr/trusted'), 'trusted.overlay.thing', b'tv')
    # data files
    os.makedirs(j(r, 'data'))
    _write(j(r, 'data/large'), large_bytes())
    _write(j(r, 'data/text'), text_bytes())
    with open(j(r, 'data/sparse'), 'wb') as f:
        f.truncate(20 * 1024 * 1024)
        f.seek(10 * 1024 * 1024)
        f.write(b'middle of a hole')
        f.seek(20 * 1024 * 1024 - 5)
        f.write(b'tail!')
    _write(j(r, 'data/empty'), b'')
    os.makedirs(j(r, 'data/emptydir'))
    _write(j(r, 'data/subsec'), b'sub-second mtime (rounded by umoci)\n',
           mtime=1600000000 * 10**9 + 123456789)
    # names
    os.makedirs(j(r, 'names'))
    _write(j(r, 'names', 'n' * 150), b'150-byte name\n')
    _write(j(r, 'names', 'L' * 255), b'255-byte name\n')
    deep = j(r, 'names/deep')
    for i in range(6):                       # a path of > 1500 bytes
        deep = j(deep, ('%d' % i) * 250)
    _write(j(deep, 'leaf'), b'deep leaf\n')
    _write(os.path.join(os.fsencode(r), b'names', NON_UTF8), b'non-utf8 name\n')
    _write(j(r, 'names/sp ace & ünïcødé ✓'), b'unicode\n')
    os.utime(j(r, 'a'), ns=(1234567890 * 10**9,) * 2)


def _layer2(r):
    j = os.path.join
    os.unlink(j(r, 'gone'))                                  # -> .wh.gone
    os.unlink(j(r, 'a/b/c/file1'))                           # -> a/b/c/.wh.file1
    shutil.rmtree(j(r, 'wdir'))                              # -> .wh.wdir
    os.unlink(j(r, 'f2d'))                                   # file -> directory
    _write(j(r, 'f2d/inner'), b'now a directory\n')
    shutil.rmtree(j(r, 'd2f'))                               # directory -> file
    _write(j(r, 'd2f'), b'now a file\n')
    os.link(j(r, 'hl/orig'), j(r, 'hl/link_from_layer2'))    # hard link to a lower-layer file
    _write(j(r, 'etc/os-release'), b'NAME="ocifs-test"\nID=ocifs\nVERSION_ID=2\n')
    os.chmod(j(r, 'keep/k1'), 0o600)                         # metadata-only change
    _write(j(r, 'keep/k_new'), b'added into a lower dir\n')  # merge into lower dir
    os.unlink(j(r, 'sym/dirlink'))                           # symlink -> directory
    os.makedirs(j(r, 'sym/dirlink'))
    _write(j(r, 'sym/dirlink/f'), b'in dir that was a symlink\n')
    os.setxattr(j(r, 'keep'), 'user.added', b'layer2')       # upper dir metadata wins


def _layer5(r):
    j = os.path.join
    _write(j(r, 'wdir'), b'wdir is back as a file\n')        # re-create a whited-out name
    _write(j(r, 'a/b/c/file1'), b'file1 resurrected\n')
    os.makedirs(j(r, 'gone/again'))                          # and one as a directory
    os.unlink(j(r, 'hl/link1'))                              # drop one link of a group
    _write(j(r, 'data/late'), b'late file\n', mode=0o444)


def build_umoci_image(work, terminate=True):
    """terminate=True: pass the result through terminate_layers() (see there)."""
    layout = os.path.join(work, 'L')
    run(['umoci', 'init', '--layout', layout])
    run(['umoci', 'new', '--image', '%s:%s' % (layout, TAG)])
    _layer(layout, work, 1, _layer1)
    _layer(layout, work, 2, _layer2)
    # layer 3: opaque directory replace (umoci insert --opaque)
    src = os.path.join(work, 'opqsrc')
    _write(os.path.join(src, 'only_new'), b'the only child after the opaque insert\n')
    os.makedirs(os.path.join(src, 'sub'))
    _write(os.path.join(src, 'sub/y'), b'new sub/y\n')
    run(['umoci', 'insert', '--image', '%s:%s' % (layout, TAG), '--opaque', src, '/opq'])
    # layer 4: explicit whiteout of a directory subtree (umoci insert --whiteout)
    run(['umoci', 'insert', '--image', '%s:%s' % (layout, TAG), '--whiteout', '/a/b/c'])
    _layer(layout, work, 5, _layer5)
    if terminate:
        terminate_layers(layout)
    return layout


def build_wide_image(work, files=24, file_size=1 << 20, dir_entries=3000):
    """One gzip layer: data/f00.. (`files` files of `file_size` random bytes, so each sits in
    spans of its own) and wide/ (`dir_entries` small files), for concurrent reads of distinct
    files while a large directory is listed."""
    layout = os.path.join(work, 'W')
    run(['umoci', 'init', '--layout', layout])
    run(['umoci', 'new', '--image', '%s:%s' % (layout, TAG)])

    def mutate(r):
        rnd = random.Random(4321)
        for i in range(files):
            _write(os.path.join(r, 'data/f%02d' % i), rnd.randbytes(file_size))
        for i in range(dir_entries):
            _write(os.path.join(r, 'wide/entry%05d' % i), b'%d\n' % i)
    _layer(layout, work, 1, mutate)
    terminate_layers(layout)
    return layout


def damage_blob(path):
    """Flips 8 bytes every 100 kB through the middle half of a blob file, in place (a blob
    changed under a mount that verified it)."""
    with open(path, 'r+b') as f:
        size = os.fstat(f.fileno()).st_size
        for off in range(size // 4, size * 3 // 4, 100000):
            f.seek(off)
            b = f.read(8)
            f.seek(off)
            f.write(bytes(x ^ 0xa5 for x in b))


def terminate_layers(layout, tag=TAG):
    """Rewrite layers whose tar lacks the final padding / end-of-archive blocks.

    umoci 0.4.7 `insert` writes layers that stop right after the last file's data (no padding to
    512, no two zero blocks).  Go's archive/tar and GNU tar accept that; ocifs may not.  The main
    fixture image is passed through this so that one tolerance issue does not hide everything
    else; the raw umoci output is covered by its own test.  Returns the number of layers fixed."""
    idx_path = os.path.join(layout, 'index.json')
    idx = json.load(open(idx_path))
    mdesc = [m for m in idx['manifests']
             if m.get('annotations', {}).get('org.opencontainers.image.ref.name') == tag][0]
    bp = lambda d: os.path.join(layout, 'blobs', 'sha256', d.split(':', 1)[1])  # noqa: E731
    man = json.load(open(bp(mdesc['digest'])))
    cfg = json.load(open(bp(man['config']['digest'])))
    fixed = 0
    for i, l in enumerate(man['layers']):
        raw = open(bp(l['digest']), 'rb').read()
        gz = raw[:2] == b'\x1f\x8b'
        tar = gzip.decompress(raw) if gz else raw
        if len(tar) % 512 == 0 and tar.endswith(b'\0' * 1024):
            continue
        tar += b'\0' * (-len(tar) % 512) + b'\0' * 1024
        data = gzip.compress(tar, compresslevel=6, mtime=0) if gz else tar
        d = 'sha256:' + sha256(data)
        open(bp(d), 'wb').write(data)
        l['digest'], l['size'] = d, len(data)
        cfg['rootfs']['diff_ids'][i] = 'sha256:' + sha256(tar)
        fixed += 1
    if fixed:
        cb = json.dumps(cfg).encode()
        man['config']['digest'], man['config']['size'] = 'sha256:' + sha256(cb), len(cb)
        open(bp(man['config']['digest']), 'wb').write(cb)
        mb = json.dumps(man).encode()
        mdesc['digest'], mdesc['size'] = 'sha256:' + sha256(mb), len(mb)
        open(bp(mdesc['digest']), 'wb').write(mb)
        json.dump(idx, open(idx_path, 'w'))
    return fixed


def skopeo_convert(layout, work):
    """Return {name: REF} for the converted variants of layout:t."""
    src = 'oci:%s:%s' % (layout, TAG)
    refs = {}
    da = os.path.join(work, 'docker.tar')
    run(['skopeo', 'copy', '-q', src, 'docker-archive:%s:img:t' % da])
    refs['docker-archive'] = 'docker-archive:%s' % da
    oa = os.path.join(work, 'oci-archive.tar')
    run(['skopeo', 'copy', '-q', src, 'oci-archive:%s:%s' % (oa, TAG)])
    refs['oci-archive'] = 'oci-archive:%s:%s' % (oa, TAG)
    z = os.path.join(work, 'Z')
    run(['skopeo', 'copy', '-q', '--dest-compress', '--dest-compress-format', 'zstd', src,
         'oci:%s:%s' % (z, TAG)])
    refs['zstd'] = 'oci:%s:%s' % (z, TAG)
    refs['uncompressed'] = 'oci:%s:%s' % (uncompressed_layout(src, os.path.join(work, 'U')), TAG)
    return refs


def uncompressed_layout(src, u, tag=TAG):
    """An OCI layout at u holding src (a skopeo reference) with uncompressed layers, tagged tag.

    skopeo 1.9 recompresses whatever goes to oci:, even with --dest-oci-accept-uncompressed-
    layers; the dir: transport honours --dest-decompress, so go through it and re-wrap the
    result as an OCI layout (same blob names, manifest stored as a blob, index.json added).
    Push it with registry.push_layout (skopeo would compress it again)."""
    d = u + '.dir'
    run(['skopeo', 'copy', '-q', '--dest-decompress', src, 'dir:%s' % d])
    os.makedirs(os.path.join(u, 'blobs', 'sha256'))
    for n in os.listdir(d):
        if len(n) == 64:
            shutil.copyfile(os.path.join(d, n), os.path.join(u, 'blobs', 'sha256', n))
    mb = open(os.path.join(d, 'manifest.json'), 'rb').read()
    man = json.loads(mb)
    assert all(l['mediaType'].endswith('.tar') for l in man['layers']), man
    md = sha256(mb)
    open(os.path.join(u, 'blobs', 'sha256', md), 'wb').write(mb)
    with open(os.path.join(u, 'oci-layout'), 'w') as f:
        json.dump({'imageLayoutVersion': '1.0.0'}, f)
    with open(os.path.join(u, 'index.json'), 'w') as f:
        json.dump({'schemaVersion': 2, 'manifests': [{
            'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': 'sha256:' + md,
            'size': len(mb), 'annotations': {'org.opencontainers.image.ref.name': tag}}]}, f)
    shutil.rmtree(d)
    return u


def gzip_docker_archive(layout, work):
    """docker-archive whose layer tarballs are gzip-compressed (docker save of compressed blobs).

    skopeo always writes uncompressed layers into docker-archive, so the archive is rewritten
    here: every layer file is replaced by its gzip form, manifest.json updated (the config's
    diff_ids still name the uncompressed tars, as in real `docker save` output of old daemons)."""
    plain = os.path.join(work, 'docker-plain.tar')
    run(['skopeo', 'copy', '-q', 'oci:%s:%s' % (layout, TAG), 'docker-archive:%s:img:t' % plain])
    out = os.path.join(work, 'docker-gz.tar')
    with tarfile.open(plain) as tin:
        members = {m.name: tin.extractfile(m).read() for m in tin if m.isfile()}
    manifest = json.loads(members['manifest.json'])
    newmembers = dict(members)
    for i, lname in enumerate(manifest[0]['Layers']):
        data = gzip.compress(members[lname], compresslevel=6, mtime=0)
        newname = lname + '.gz' if not lname.endswith('.gz') else lname
        del newmembers[lname]
        newmembers[newname] = data
        manifest[0]['Layers'][i] = newname
    newmembers['manifest.json'] = json.dumps(manifest).encode()
    with tarfile.open(out, 'w', format=tarfile.PAX_FORMAT) as tout:
        for name, data in sorted(newmembers.items()):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = 0
            tout.addfile(ti, io.BytesIO(data))
    return 'docker-archive:%s' % out


# ---------------------------------------------------------------- hand-made OCI layouts

def sha256(b):
    return hashlib.sha256(b).hexdigest()


class OCIWriter:
    """Write an OCI image layout from in-memory tar layers.

    add_layer(tar_bytes, compress='gzip'|'none', media_type=None) then write(tag)."""

    def __init__(self, path):
        self.path = path
        self.layers = []      # (descriptor, diff_id)
        os.makedirs(os.path.join(path, 'blobs', 'sha256'), exist_ok=True)
        with open(os.path.join(path, 'oci-layout'), 'w') as f:
            json.dump({'imageLayoutVersion': '1.0.0'}, f)

    def blob(self, data):
        d = sha256(data)
        with open(os.path.join(self.path, 'blobs', 'sha256', d), 'wb') as f:
            f.write(data)
        return 'sha256:' + d

    def add_layer(self, tar_bytes, compress='gzip', media_type=None):
        if compress == 'gzip':
            data = gzip.compress(tar_bytes, compresslevel=6, mtime=0)
            mt = 'application/vnd.oci.image.layer.v1.tar+gzip'
        else:
            data = tar_bytes
            mt = 'application/vnd.oci.image.layer.v1.tar'
        desc = {'mediaType': media_type or mt, 'digest': self.blob(data), 'size': len(data)}
        self.layers.append((desc, 'sha256:' + sha256(tar_bytes)))
        return desc

    def write(self, tag=TAG, platform='linux/amd64'):
        parts = platform.split('/')
        config = {
            'created': '2020-01-01T00:00:00Z', 'architecture': parts[1], 'os': parts[0],
            'config': {'Env': ['PATH=/bin'], 'Cmd': ['/bin/sh']},
            'rootfs': {'type': 'layers', 'diff_ids': [d for _, d in self.layers]},
            'history': [{'created_by': 'fixtures.py layer %d' % i} for i in range(len(self.layers))],
        }
        if len(parts) > 2:
            config['variant'] = parts[2]
        cb = json.dumps(config).encode()
        manifest = {
            'schemaVersion': 2, 'mediaType': 'application/vnd.oci.image.manifest.v1+json',
            'config': {'mediaType': 'application/vnd.oci.image.config.v1+json',
                       'digest': self.blob(cb), 'size': len(cb)},
            'layers': [d for d, _ in self.layers],
        }
        mb = json.dumps(manifest).encode()
        index = {'schemaVersion': 2, 'manifests': [{
            'mediaType': 'application/vnd.oci.image.manifest.v1+json', 'digest': self.blob(mb),
            'size': len(mb), 'annotations': {'org.opencontainers.image.ref.name': tag}}]}
        with open(os.path.join(self.path, 'index.json'), 'w') as f:
            json.dump(index, f)
        return 'oci:%s:%s' % (self.path, tag)


class TarBuilder:
    """Build a tar in memory entry by entry (tarfile), with raw-block escape hatches."""

    def __init__(self, fmt=tarfile.PAX_FORMAT):
        self.buf = io.BytesIO()
        self.tf = tarfile.open(fileobj=self.buf, mode='w', format=fmt, encoding='utf-8',
                               errors='surrogateescape')

    def _ti(self, name, typ, mode, mtime, uid, gid, pax):
        ti = tarfile.TarInfo(name)
        ti.type = typ
        ti.mode = mode
        ti.mtime = mtime
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ''
        if pax:
            ti.pax_headers = dict(pax)
        return ti

    def file(self, name, data=b'', mode=0o644, mtime=1577836800, uid=0, gid=0, pax=None):
        ti = self._ti(name, tarfile.REGTYPE, mode, mtime, uid, gid, pax)
        ti.size = len(data)
        self.tf.addfile(ti, io.BytesIO(data))

    def dir(self, name, mode=0o755, mtime=1577836800, uid=0, gid=0, pax=None):
        self.tf.addfile(self._ti(name, tarfile.DIRTYPE, mode, mtime, uid, gid, pax))

    def symlink(self, name, target, mtime=1577836800, pax=None):
        ti = self._ti(name, tarfile.SYMTYPE, 0o777, mtime, 0, 0, pax)
        ti.linkname = target
        self.tf.addfile(ti)

    def hardlink(self, name, target, mode=0o644, mtime=1577836800, pax=None):
        ti = self._ti(name, tarfile.LNKTYPE, mode, mtime, 0, 0, pax)
        ti.linkname = target
        self.tf.addfile(ti)

    def raw(self, block_bytes):
        """Append raw, already 512-aligned bytes (hand-made headers)."""
        self.tf.fileobj.write(block_bytes)
        self.tf.offset += len(block_bytes)

    def getvalue(self):
        self.tf.close()
        return self.buf.getvalue()


def pax_sparse_1_0(name, chunks, realsize, mode=0o644, mtime=1577836800):
    """A GNU sparse 1.0 (PAX) member: chunks = [(offset, bytes)], holes everywhere else."""
    smap = '%d\n' % len(chunks) + ''.join('%d\n%d\n' % (o, len(d)) for o, d in chunks)
    smap = smap.encode()
    smap += b'\0' * (-len(smap) % 512)
    payload = smap + b''.join(d for _, d in chunks)
    ti = tarfile.TarInfo('GNUSparseFile.0/' + os.path.basename(name))
    ti.size = len(payload)
    ti.mode = mode
    ti.mtime = mtime
    ti.pax_headers = {'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.name': name,
                      'GNU.sparse.realsize': str(realsize)}
    return ti, payload


def _octal(n, width):
    return ('%0*o' % (width - 1, n)).encode() + b'\0'


def gnu_sparse_old(name, chunks, realsize, mode=0o644, mtime=1577836800):
    """An old-GNU type 'S' sparse member (<= 4 map entries in the header), as bytes."""
    assert len(chunks) <= 4
    data = b''.join(d for _, d in chunks)
    h = bytearray(512)
    h[0:len(name)] = name.encode()
    h[100:108] = _octal(mode, 8)
    h[108:116] = _octal(0, 8)
    h[116:124] = _octal(0, 8)
    h[124:136] = _octal(len(data), 12)
    h[136:148] = _octal(mtime, 12)
    h[156:157] = b'S'
    h[257:265] = b'ustar  \0'
    for i, (o, d) in enumerate(chunks):       # sparse map at 386, 4 x (12+12)
        base = 386 + i * 24
        h[base:base + 12] = _octal(o, 12)
        h[base + 12:base + 24] = _octal(len(d), 12)
    h[482:483] = b'\0'                          # isextended = 0
    h[483:495] = _octal(realsize, 12)
    h[148:156] = b' ' * 8
    h[148:156] = ('%06o' % sum(h)).encode() + b'\0 '
    return bytes(h) + data + b'\0' * (-len(data) % 512)


T0 = 1577836800  # 2020-01-01


def edge_layers():
    """Layers for the edge-case image.  Returns list of (tar_bytes, compress)."""
    layers = []
    # ---- layer 1: PAX, the lower state
    t = TarBuilder(tarfile.PAX_FORMAT)
    t.dir('./', mode=0o755, mtime=T0)
    t.dir('opqdir', mtime=T0)
    t.file('opqdir/a', b'lower a\n')
    t.file('opqdir/b', b'lower b\n')
    t.dir('opqdir/sub')
    t.file('opqdir/sub/c', b'lower c\n')
    t.dir('wh')
    t.file('wh/x', b'lower x, to be whited out by a hard-link whiteout\n')
    t.file('wh/y', b'lower y stays\n')
    t.file('samelayer', b'lower samelayer\n')
    t.file('hl_target', b'target in layer 1\n', mode=0o600, uid=5, gid=6)
    t.file('dup', b'layer1 dup\n')
    t.file('./dotslash', b'./ prefixed\n')
    t.dir('/abs')
    t.file('/abs/file', b'absolute name\n')
    t.file('implicit/deep/file', b'parents missing in the tar\n')
    t.file('subsec', b'pax sub-second mtime\n',
           pax={'mtime': '1234567890.123456789'})
    t.dir('subsecdir', pax={'mtime': '1300000000.5'})
    t.symlink('subseclink', 'subsec', pax={'mtime': '1400000000.987654321'})
    t.file('xattrs', b'binary xattrs\n', pax={
        'SCHILY.xattr.user.bin': '\x00\x01\x02\xff'.encode('latin-1').decode('utf-8', 'surrogateescape'),
        'SCHILY.xattr.user.txt': 'hello',
        'SCHILY.xattr.security.capability':
            b'\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00'
            .decode('utf-8', 'surrogateescape')})
    t.file('p' * 120 + '/' + 'q' * 200, b'pax long path\n')
    t.file('bigid', b'large uid/gid\n', uid=3000000, gid=4000000)
    t.file('a/../escape_in_middle', b'entry with a .. component: skipped\n')
    ti, payload = pax_sparse_1_0('sparse_pax', [(0, b'head'), (3 * 1024 * 1024, b'B' * 5000),
                                               (8 * 1024 * 1024 - 3, b'end')], 8 * 1024 * 1024)
    t.tf.addfile(ti, io.BytesIO(payload))
    layers.append((t.getvalue(), 'gzip'))

    # ---- layer 2: GNU format, order-sensitive whiteouts
    t = TarBuilder(tarfile.GNU_FORMAT)
    t.dir('opqdir', mode=0o750, mtime=T0 + 10)
    t.file('opqdir/new', b'upper new, written BEFORE the opaque marker\n')
    t.file('opqdir/.wh..wh..opq', b'', mode=0)          # opaque AFTER a same-layer entry
    t.hardlink('wh/.wh.x', 'hl_target', mode=0)         # a whiteout that is a hard link
    t.file('.wh.samelayer', b'', mode=0)                # whiteout BEFORE the entry it must not hide
    t.file('samelayer', b'upper samelayer survives\n')
    t.hardlink('lowerlink', 'hl_target', mode=0o600)    # hard link into a lower layer
    t.file('dup', b'layer2 dup first\n')
    t.file('dup', b'layer2 dup second (wins)\n')         # duplicate: later wins
    t.file('g' * 180, b'gnu long name\n')
    t.symlink('gnulonglink', 'T' * 300)
    t.file('.wh..wh.plnk', b'', mode=0)                 # AUFS metadata: ignored, never shown
    layers.append((t.getvalue(), 'gzip'))

    # ---- layer 3: uncompressed tar
    t = TarBuilder(tarfile.USTAR_FORMAT)
    t.file('uncompressed/file', b'from an uncompressed layer\n' * 1000)
    t.file('implicit/deep/file2', b'merges into implicit dirs\n')
    layers.append((t.getvalue(), 'none'))
    return layers


GNU_SPARSE_CHUNKS = [(0, b'A' * 100), (2 * 1024 * 1024, b'Z' * 700)]
GNU_SPARSE_SIZE = 4 * 1024 * 1024


def build_gnu_sparse_image(work):
    """Old-GNU 'S' sparse member: umoci 0.4.7 refuses it ("unknown typeflag 'S'"), so the test
    asserts the expected bytes explicitly instead of comparing with an unpack."""
    w = OCIWriter(os.path.join(work, 'G'))
    t = TarBuilder(tarfile.GNU_FORMAT)
    t.file('before', b'before\n')
    t.raw(gnu_sparse_old('sparse_gnu', GNU_SPARSE_CHUNKS, GNU_SPARSE_SIZE))
    t.file('after', b'after\n')
    w.add_layer(t.getvalue())
    return w.path, w.write(TAG)


def gnu_sparse_expected():
    b = bytearray(GNU_SPARSE_SIZE)
    for o, d in GNU_SPARSE_CHUNKS:
        b[o:o + len(d)] = d
    return bytes(b)


def build_edge_image(work):
    w = OCIWriter(os.path.join(work, 'E'))
    for data, comp in edge_layers():
        w.add_layer(data, comp)
    return w.path, w.write(TAG)


def hostile_layer():
    """One layer with names that try to escape the root."""
    t = TarBuilder(tarfile.PAX_FORMAT)
    t.file('ok', b'fine\n')
    t.file('../evil', b'escaped!\n')
    t.file('../../evil2', b'escaped!\n')
    t.file('/../evil3', b'escaped!\n')
    t.file('sub/../../evil4', b'escaped!\n')
    t.file('sub/..', b'dotdot as last component\n')
    t.dir('..')
    t.file('.', b'a regular file named "."\n')
    t.symlink('abs_symlink', '/etc/shadow')
    t.symlink('up_symlink', '../../../../etc/shadow')
    t.hardlink('hl_out', '../outside')
    t.hardlink('hl_missing', 'no/such/target')
    t.file('x' * 5000, b'5000-byte single component\n')
    t.file('/'.join(['d' * 200] * 25) + '/f', b'5000-byte path\n')
    t.file(os.fsdecode(b'bad-\xff\xfe-utf8'), b'non-utf8\n')
    return t.getvalue()


def build_hostile_image(work):
    w = OCIWriter(os.path.join(work, 'H'))
    w.add_layer(hostile_layer(), 'gzip')
    return w.path, w.write(TAG)


def build_small_image(work, name='S', nfiles=3, big=False):
    """A small valid 2-layer gzip image for the bad-input tests."""
    w = OCIWriter(os.path.join(work, name))
    t = TarBuilder()
    t.dir('etc')
    t.file('etc/hello', b'hello\n')
    for i in range(nfiles):
        t.file('f%d' % i, (b'file %d\n' % i) * 100)
    if big:
        t.file('big', large_bytes())
    w.add_layer(t.getvalue())
    t = TarBuilder()
    t.file('second', b'second layer\n' * 5000)
    w.add_layer(t.getvalue())
    return w


if __name__ == '__main__':
    out = os.path.abspath(sys.argv[1])
    os.makedirs(out, exist_ok=True)
    layout = build_umoci_image(out)
    print('umoci image:', layout)
    print('conversions:', skopeo_convert(layout, out))
    print('gzip docker-archive:', gzip_docker_archive(layout, out))
    print('edge image:', build_edge_image(out))
    print('hostile image:', build_hostile_image(out))
