#!/usr/bin/python3
"""ocifs integration tests: images as other tools write them (issue 9 §6).  Usage:
    OCIFS_BIN=build/ocifs /usr/bin/python3 tests/integration/interop_suite.py [CASE...]

Each case is one meson test (interop_CASE in meson.build).  Exit codes: 0 pass, 1 fail, 77 skip.
References are `umoci unpack` where umoci reads the input, else GNU tar's extraction (umoci
0.4.7 refuses Solaris 'X' headers: "unknown typeflag '\\x58'").

  symlink_mode      symlinks whose tar headers say 0755, 0700, 0000: lrwxrwxrwx, as umoci shows
  solaris_x         PAX records in Solaris 'X' headers (long name, sub-second mtime, xattr,
                    size), compared with GNU tar's extraction
  docker_archive_config_renamed
                    a skopeo docker-archive whose config was edited under its old name: mounted
                    (with a warning), as skopeo and umoci read it
  zstd_archives     docker-archive and oci-archive compressed by the zstd CLI (.tar.zst): mounted
                    and equal to umoci unpack; over --cache-max refused with a message; nothing
                    left in the cache's tmp/; a truncated one refused with a zstd message
  status_verify_failed
                    a local blob changed under a live mount: reads get EIO and `ocifs status`
                    shows that layer failed with the message, the others ready
  messages          a layer called gzip that is xz; "manifests": null; a truncated
                    docker-archive; an untagged layout with unnamed entries
"""

import errno
import io
import json
import lzma
import os
import subprocess
import sys
import tarfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures  # noqa: E402
from common import (OCIFS, Fail, Mount, check, is_mounted, log, main, ocifs, require_installed, run,  # noqa: E402
                    unmount)
from suite import blob_path, mount_and_compare, tree_equal  # noqa: E402

TAG = fixtures.TAG
EPOCH = 1577836800


# ------------------------------------------------------------------ helpers

def small_layout(work, name='W'):
    """A two-layer gzip image umoci can unpack: dirs, files (one of 2 MiB), a symlink, a hard
    link, and a file replaced by the upper layer."""
    w = fixtures.OCIWriter(work(name))
    t = fixtures.TarBuilder()
    t.dir('etc')
    t.file('etc/hello', b'hello\n')
    t.file('etc/big', os.urandom(2 << 20))
    t.symlink('etc/link', 'hello')
    t.hardlink('etc/hard', 'etc/hello')
    t.file('replaced', b'lower\n')
    w.add_layer(t.getvalue())
    t = fixtures.TarBuilder()
    t.file('replaced', b'upper\n', mode=0o600)
    t.file('second', b'second layer\n' * 1000)
    w.add_layer(t.getvalue())
    return w.path, w.write(TAG)


def unpacked(work, layout, name='ref'):
    return fixtures.umoci_unpack(layout, TAG, work(name))


def refused(work, ref, what, extra=()):
    """`ocifs mount` must fail cleanly: exit 1..127, nothing mounted; returns stderr."""
    mnt = work('mnt-refused')
    os.makedirs(mnt, exist_ok=True)
    try:
        r = run([OCIFS, 'mount', '--cache-dir', work('cache-refused')] + list(extra) + [ref, mnt])
    finally:
        mounted = is_mounted(mnt)
        unmount(mnt)
    err = r.stderr.decode(errors='replace')
    check(0 < r.returncode < 128, '%s: exit %d, want a refusal without a crash: %s' % (what, r.returncode, err))
    check(not mounted, '%s: exit %d but mounted' % (what, r.returncode))
    log('  refused %s: %s' % (what, err.strip().splitlines()[-1] if err.strip() else ''))
    return err


def solaris(tar_bytes):
    """The same tar with every PAX 'x' header retyped as a Solaris 'X' header (same records)."""
    b = bytearray(tar_bytes)
    off, retyped = 0, 0
    while off + 512 <= len(b) and any(b[off:off + 512]):
        size = int(bytes(b[off + 124:off + 136]).split(b'\0')[0].strip() or b'0', 8)
        if b[off + 156] == ord('x'):
            b[off + 156] = ord('X')
            b[off + 148:off + 156] = b' ' * 8
            b[off + 148:off + 156] = b'%06o\0 ' % sum(b[off:off + 512])
            retyped += 1
        off += 512 + (size + 511) // 512 * 512
    assert retyped > 0, 'no PAX header to retype'
    return bytes(b)


# ------------------------------------------------------------------ cases

def case_symlink_mode(work):
    """Symlinks whose tar headers carry 0755, 0700 or 0000 are lrwxrwxrwx, as umoci unpack and
    Linux show every symlink; cold and warm cache; `ocifs ls -l` says so too."""
    w = fixtures.OCIWriter(work('L'))
    t = fixtures.TarBuilder()
    t.file('target', b'target\n')
    for name, mode in (('l755', 0o755), ('l700', 0o700), ('l000', 0o000), ('l777', 0o777)):
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.linkname, ti.mtime = tarfile.SYMTYPE, mode, 'target', EPOCH
        t.tf.addfile(ti)
    w.add_layer(t.getvalue())
    ref = w.write(TAG)
    reference = unpacked(work, w.path)
    for name in ('l755', 'l700', 'l000'):
        check(os.lstat(os.path.join(reference, name)).st_mode & 0o7777 == 0o777,
              'umoci unpack no longer shows %s as 0777: the reference changed' % name)
    mount_and_compare(work, ref, reference, 'symlink-mode')
    r = ocifs('ls', '-l', '--cache-dir', work('cache-ls'), ref, check_rc=True)
    lines = [l for l in r.stdout.decode().splitlines() if ' -> ' in l]
    check(len(lines) == 4 and all(l.startswith('lrwxrwxrwx ') for l in lines),
          'ocifs ls -l shows symlinks as:\n%s' % '\n'.join(lines))


def case_solaris_x(work):
    """PAX records in Solaris 'X' headers are applied (GNU tar and Python's tarfile do; umoci
    cannot read them): long name, sub-second mtime, xattr, and a size record that differs from
    the ustar size field; the tree equals GNU tar's extraction, cold and warm, and the mount
    warns about no unknown entry type."""
    t = fixtures.TarBuilder()
    long_dir = 'long-' + 'd' * 90
    t.dir(long_dir)
    t.file(long_dir + '/' + 'n' * 120, b'a long name, only in the X header\n')
    t.file('subsec', b'sub-second mtime\n', pax={'mtime': '1234567890.123456789'})
    t.file('xattr', b'xattr\n', pax={'SCHILY.xattr.user.origin': 'solaris'})
    body = b'12345678901234567890'
    ti = tarfile.TarInfo('sized')
    ti.size, ti.mtime = len(body), EPOCH
    ti.pax_headers = {'size': str(len(body)), 'comment': 'x'}
    t.tf.addfile(ti, io.BytesIO(body))
    t.file('after', b'the entry after them\n')
    layer = solaris(t.getvalue())
    # the ustar size of 'sized' is 0 where only the X header's size record is right
    i = layer.index(b'sized\0')
    assert i % 512 == 0, 'the name found is not a header name field'
    layer = bytearray(layer)
    layer[i + 124:i + 136] = b'%011o\0' % 0
    layer[i + 148:i + 156] = b' ' * 8
    layer[i + 148:i + 156] = b'%06o\0 ' % sum(layer[i:i + 512])
    layer = bytes(layer)
    w = fixtures.OCIWriter(work('X'))
    w.add_layer(layer)
    ref = w.write(TAG)
    reference = work('ref')
    os.makedirs(reference)
    r = subprocess.run(['tar', '--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', '-', '-C',
                        reference], input=layer, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    check(r.returncode == 0, 'GNU tar cannot extract the X layer: %r' % r.stderr)
    check(os.path.exists(os.path.join(reference, long_dir, 'n' * 120)) and
          open(os.path.join(reference, 'sized'), 'rb').read() == body,
          'GNU tar did not apply the X headers: the reference is wrong')
    mnt = work('mnt')
    with Mount(ref, mnt, work('cache')) as m:
        err = m.result.stderr.decode(errors='replace')
        check('unknown tar entry type' not in err, 'the mount skipped X headers:\n%s' % err)
    # GNU tar gives the root (no './' entry in the layer) the extraction time
    mount_and_compare(work, ref, reference, 'solaris-x', ignore_at={'.': {'mtime'}})


def case_docker_archive_config_renamed(work):
    """A skopeo docker-archive whose config was edited after saving, under its old <hex>.json
    name: skopeo reads it; ocifs mounts it too (config taken by its content's digest), warns,
    and shows the layers of the original image."""
    layout, _ = small_layout(work)
    reference = unpacked(work, layout)
    plain = work('plain.tar')
    run(['skopeo', 'copy', '-q', 'oci:%s:%s' % (layout, TAG), 'docker-archive:%s:img:t' % plain],
        check_rc=True)
    edited = work('edited.tar')
    with tarfile.open(plain) as tin, tarfile.open(edited, 'w', format=tarfile.PAX_FORMAT) as tout:
        config_name = json.load(tin.extractfile('manifest.json'))[0]['Config']
        for m in tin:
            data = tin.extractfile(m).read() if m.isfile() else None
            if m.name == config_name:
                config = json.loads(data)
                config.setdefault('config', {})['Labels'] = {'edited': 'after docker save'}
                data = json.dumps(config).encode()
                m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if data is not None else None)
    r = run(['skopeo', 'inspect', '--config', 'docker-archive:' + edited])
    check(r.returncode == 0 and b'after docker save' in r.stdout,
          'skopeo does not read the edited archive (the premise): %r' % r.stderr[-500:])
    ref = 'docker-archive:' + edited
    mnt = work('mnt')
    with Mount(ref, mnt, work('cache')) as m:
        err = m.result.stderr.decode(errors='replace')
        check('is not named after its content' in err and config_name in err,
              'no warning naming the config %s:\n%s' % (config_name, err))
        tree_equal(reference, mnt, 'docker-archive with an edited config')
    r = ocifs('inspect', '--json', '--cache-dir', work('cache'), ref, check_rc=True)
    check(b'after docker save' in r.stdout, 'inspect does not show the edited config')


def case_zstd_archives(work):
    """docker-archive and oci-archive compressed with the zstd CLI (one frame), as skopeo reads
    them: mounted cold and warm and equal to umoci unpack, the decompressed copy not listed in
    the cache's tmp/ while mounted; `ocifs ls` of a tiny one (hundreds of bytes); over
    --cache-max refused naming the budget; a truncated one refused with a zstd message."""
    require_installed('zstd')
    layout, _ = small_layout(work)
    reference = unpacked(work, layout)
    src = 'oci:%s:%s' % (layout, TAG)
    da, oa = work('docker.tar'), work('oci.tar')
    run(['skopeo', 'copy', '-q', src, 'docker-archive:%s:img:t' % da], check_rc=True)
    run(['skopeo', 'copy', '-q', src, 'oci-archive:%s:%s' % (oa, TAG)], check_rc=True)
    refs = {}
    for kind, path, suffix in (('docker-archive', da, ''), ('oci-archive', oa, ':' + TAG)):
        run(['zstd', '-q', '-f', path, '-o', path + '.zst'], check_rc=True)
        r = run(['skopeo', 'inspect', '%s:%s.zst%s' % (kind, path, suffix)])
        check(r.returncode == 0, 'skopeo cannot read %s.zst (the premise): %r' % (path, r.stderr[-300:]))
        refs[kind] = '%s:%s.zst%s' % (kind, path, suffix)
    for kind, ref in refs.items():
        cache = work('cache-' + kind)
        mount_and_compare(work, ref, reference, kind + '.zst')
        with Mount(ref, work('mnt-live'), cache):
            left = os.listdir(os.path.join(cache, 'tmp'))
            check(left == [], '%s: the cache tmp/ lists %s while mounted' % (kind, left))
        check(os.listdir(os.path.join(cache, 'tmp')) == [], '%s: files left in tmp/' % kind)
    # the tiny image of the issue (an archive of a few hundred bytes)
    w = fixtures.OCIWriter(work('T'))
    t = fixtures.TarBuilder()
    t.file('tiny', b'tiny\n')
    w.add_layer(t.getvalue())
    tiny = work('tiny.tar')
    run(['skopeo', 'copy', '-q', w.write(TAG), 'docker-archive:%s:tiny:t' % tiny], check_rc=True)
    run(['zstd', '-q', '-19', '-f', tiny, '-o', tiny + '.zst'], check_rc=True)
    log('  tiny archive: %d bytes' % os.path.getsize(tiny + '.zst'))
    r = ocifs('ls', '--cache-dir', work('cache-tiny'), 'docker-archive:%s.zst' % tiny)
    check(r.returncode == 0 and r.stdout == b'tiny\n', 'ls of the tiny .tar.zst: exit %d %r %r' % (
        r.returncode, r.stdout, r.stderr))
    # over the budget: the message names it and what to do
    err = refused(work, refs['docker-archive'], 'over --cache-max', extra=['--cache-max', '64K'])
    check('--cache-max' in err and 'zstd -d' in err and da in err, 'over the budget: %r' % err)
    check('too large to read in place' not in err, 'the old message: %r' % err)
    # truncated: a zstd error naming the file
    data = open(da + '.zst', 'rb').read()
    cut = work('cut.tar.zst')
    open(cut, 'wb').write(data[:len(data) // 2])
    err = refused(work, 'docker-archive:' + cut, 'truncated .tar.zst')
    check(cut in err and 'zstd' in err and 'too large to read in place' not in err, 'truncated: %r' % err)


def case_status_verify_failed(work):
    """A local layer blob changed under a live mount (gzip and uncompressed): the first read of
    the changed bytes gets EIO, and `ocifs status` shows that layer failed with the message
    naming the blob and byte range and a verify_errors count; the other layer stays ready; the
    text form shows 'failed' and the message."""
    for comp in ('gzip', 'none'):
        w = fixtures.OCIWriter(work('img-' + comp))
        t = fixtures.TarBuilder()
        t.file('small', b'small\n')
        t.file('big', fixtures.large_bytes())
        w.add_layer(t.getvalue(), comp)
        t = fixtures.TarBuilder()
        t.file('upper', b'upper layer\n')
        w.add_layer(t.getvalue(), comp)
        ref = w.write(TAG)
        bad, good = (d['digest'] for d, _ in w.layers)
        mnt = work('mnt-' + comp)
        with Mount(ref, mnt, work('cache-' + comp)):
            check(open(os.path.join(mnt, 'small'), 'rb').read() == b'small\n', 'small')
            status = json.loads(ocifs('status', '--json', mnt, check_rc=True).stdout)
            check([l['state'] for l in status['layers']] == ['ready', 'ready'], '%s: before: %r' % (comp, status))
            path = blob_path(w.path, bad)
            fixtures.damage_blob(path)
            try:
                open(os.path.join(mnt, 'big'), 'rb').read()
                raise Fail('%s: reading a file of the changed blob succeeded, want EIO' % comp)
            except OSError as e:
                check(e.errno == errno.EIO, '%s: read error %r, want EIO' % (comp, e))
            status = json.loads(ocifs('status', '--json', mnt, check_rc=True).stdout)
            first, second = status['layers']
            check(first['digest'] == bad and first['state'] == 'failed', '%s: layer 1 after EIO: %r' % (comp, first))
            check(first.get('verify_errors', 0) >= 1, '%s: no verify_errors: %r' % (comp, first))
            check(path in first.get('error', '') and 'do not match' in first['error'],
                  '%s: the error does not name the blob %s: %r' % (comp, path, first.get('error')))
            check(second['digest'] == good and second['state'] == 'ready' and second.get('verify_errors') == 0,
                  '%s: layer 2: %r' % (comp, second))
            text = ocifs('status', mnt, check_rc=True).stdout.decode()
            row = [l.split() for l in text.splitlines() if l.split()[:2] == ['1', bad[:19]]]
            check(row and row[0][3] == 'failed', '%s: text status row of layer 1: %r' % (comp, text))
            check('layer 1: ' in text and path in text, '%s: text status without the message: %r' % (comp, text))
            log('  %s: %s' % (comp, first['error']))


def case_messages(work):
    """Messages: a layer whose media type says gzip but which is xz says so (not only 'bad tar
    header'); index.json "manifests": null says null, not missing; a truncated docker-archive says
    'cannot read FILE' once; an untagged layout lists only the names that can be mounted and
    counts the unnamed entries."""
    t = fixtures.TarBuilder()
    t.file('a', b'a\n' * 1000)
    tar = t.getvalue()
    # a layer called gzip that is xz
    w = fixtures.OCIWriter(work('XZ'))
    data = lzma.compress(tar)
    w.layers.append(({'mediaType': 'application/vnd.oci.image.layer.v1.tar+gzip', 'digest': w.blob(data),
                      'size': len(data)}, 'sha256:' + fixtures.sha256(tar)))
    ref = w.write(TAG)
    err = refused(work, ref, 'xz layer called gzip')
    check('says gzip' in err and '(xz)' in err and w.layers[0][0]['digest'][7:19] in err,
          'the message does not say the gzip layer is not gzip: %r' % err)
    # "manifests": null
    w = fixtures.OCIWriter(work('N'))
    w.add_layer(tar)
    w.write(TAG)
    with open(os.path.join(w.path, 'index.json'), 'w') as f:
        json.dump({'schemaVersion': 2, 'manifests': None}, f)
    err = refused(work, 'oci:%s:%s' % (w.path, TAG), 'null manifests')
    check('"manifests" is null' in err and 'missing' not in err, 'null manifests: %r' % err)
    # a truncated docker-archive
    layout, _ = small_layout(work)
    da = work('docker.tar')
    run(['skopeo', 'copy', '-q', 'oci:%s:%s' % (layout, TAG), 'docker-archive:%s:img:t' % da], check_rc=True)
    data = open(da, 'rb').read()
    cut = work('cut.tar')
    with tarfile.open(da) as tf:
        first = next(m for m in tf if m.isfile() and m.size > 4096)
    open(cut, 'wb').write(data[:first.offset_data + 1000])
    err = refused(work, 'docker-archive:' + cut, 'truncated docker-archive')
    line = err.strip().splitlines()[-1]
    check(line.count('cannot read %s' % cut) == 1 and 'bytes short' in line,
          'truncated archive: want "cannot read %s" once: %r' % (cut, line))
    # an untagged layout with named and unnamed entries
    idx_path = os.path.join(layout, 'index.json')
    idx = json.load(open(idx_path))
    named = idx['manifests'][0]
    unnamed = dict(named)
    unnamed.pop('annotations', None)
    other = dict(named, annotations={'org.opencontainers.image.ref.name': 'other'})
    idx['manifests'] = [named, unnamed, other]
    json.dump(idx, open(idx_path, 'w'))
    err = refused(work, 'oci:' + layout, 'untagged layout')
    check('name one of: other, %s (as oci:%s:NAME)' % (TAG, layout) in err and '(unnamed)' not in err and
          '1 image has no org.opencontainers.image.ref.name annotation' in err, 'untagged layout: %r' % err)
    with Mount('oci:%s:other' % layout, work('mnt'), work('cache')):
        check(open(work('mnt', 'second'), 'rb').read() == b'second layer\n' * 1000, 'a listed name mounts')


CASES = {
    'symlink_mode': case_symlink_mode,
    'solaris_x': case_solaris_x,
    'docker_archive_config_renamed': case_docker_archive_config_renamed,
    'zstd_archives': case_zstd_archives,
    'status_verify_failed': case_status_verify_failed,
    'messages': case_messages,
}

if __name__ == '__main__':
    if len(sys.argv) > 1 and sys.argv[1] == '--list':
        print('\n'.join(CASES))
        sys.exit(0)
    sys.exit(main(CASES))
