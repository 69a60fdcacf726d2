#!/usr/bin/python3
"""Lazy-pull layers (issue 4): eStargz and zstd:chunked images made by the real converter
(containerd + ctr-remote, lazy_fixtures.py) from the umoci fixture image, served by a real
docker-registry on 127.0.0.1 through the counting fault proxy.

Each mounted tree equals `umoci unpack` of the source image, the one name that is not UTF-8
included: the converter writes TOC names as JSON strings, so it becomes U+FFFD there, and ocifs
reads that entry's tar header back.  Blob bytes are counted at the proxy.

Run one case: OCIFS_BIN=build/ocifs /usr/bin/python3 lazy_suite.py estargz"""

import base64
import datetime
import errno
import gzip
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures  # noqa: E402
from common import Fail, check, log, main, require_installed  # noqa: E402
from lazy_fixtures import Containerd, convert_and_push, estargz_toc_offset, require_lazy_tools  # noqa: E402
from registry import FaultProxy, Registry, push_image, push_layout  # noqa: E402
from registry_suite import (REPO, _layer_path, mount, oc, err_text, read_file, refused,  # noqa: E402
                            status_of, umoci_image)
from suite import tree_equal  # noqa: E402

# The fixture's non-UTF-8 name, and what the TOC makes of it.
NON_UTF8 = os.path.join('names', os.fsdecode(fixtures.NON_UTF8))
REPLACED = os.path.join('names', fixtures.NON_UTF8.decode('utf-8', errors='replace'))


def lazy_image(work, reg, kind):
    """The umoci image pushed as REPO:v1 and converted to `kind` as REPO:lazy; returns
    (reference rootfs, the converted manifest, its blob bytes: layers and config)."""
    require_lazy_tools()
    layout, reference = umoci_image(work)
    push_image('oci:%s:%s' % (layout, fixtures.TAG), reg, REPO + ':v1')
    with Containerd(work('ctrd')) as ctrd:
        man = convert_and_push(ctrd, reg, REPO + ':v1', REPO + ':lazy', kind, level=1)
    return reference, man, sum(l['size'] for l in man['layers']) + man['config']['size']


def same_tree(reference, mnt, what):
    """= umoci unpack, the non-UTF-8 name included (the TOC spells it U+FFFD; ocifs reads that
    entry's tar header back)."""
    check(not os.path.exists(os.path.join(mnt, REPLACED)), '%s: %r shows as the TOC spells it' % (what, REPLACED))
    tree_equal(reference, mnt, what)


def lazy_mount_case(work, kind, fmt):
    with Registry() as reg, FaultProxy(reg) as px:
        reference, man, total = lazy_image(work, reg, kind)
        ref, mnt, cache = px.ref(REPO + ':lazy'), work('mnt'), work('cache')
        px.reset_counters()
        with mount(work, ref, mnt, cache):
            live = px.blob_bytes
            release = read_file(os.path.join(mnt, 'etc/os-release'))
            small = px.blob_bytes
            log('  cold mount: %d blob bytes; + etc/os-release: %d; image %d (%.2f%%)' % (
                live, small, total, 100.0 * small / total))
            check(release == read_file(os.path.join(reference, 'etc/os-release')), 'etc/os-release differs')
            check(small <= total * 0.02, 'a cold mount and one small read fetched %d of %d bytes' % (small, total))
            status = status_of(work, mnt)
            check(all(l['format'] == fmt and l['state'] == 'ready' for l in status['layers']),
                  'status: %s' % [(l['format'], l['state']) for l in status['layers']])
            big = read_file(os.path.join(mnt, 'data/large'))
            check(big == read_file(os.path.join(reference, 'data/large')), 'data/large differs')
            same_tree(reference, mnt, '%s (cold)' % kind)
        log('  cold mount + reading every file: %d blob bytes for %d' % (px.blob_bytes, total))
        check(px.blob_bytes <= total, 'reading every file fetched %d bytes for %d' % (px.blob_bytes, total))
        px.reset_counters()
        with mount(work, ref, mnt, cache):
            same_tree(reference, mnt, '%s (warm)' % kind)
        check(px.blob_bytes == 0, 'warm remount fetched %d blob bytes' % px.blob_bytes)


def case_estargz(work):
    """eStargz: the cold mount reads the footer and TOC only; a small read then fetches a tiny
    fraction of the image (<= 2%); status says estargz; every file = umoci unpack; reading all
    fetches no more than the image's bytes; a warm remount fetches nothing."""
    lazy_mount_case(work, 'estargz', 'estargz')


def case_zstdchunked(work):
    """zstd:chunked, as case_estargz."""
    lazy_mount_case(work, 'zstdchunked', 'zstd:chunked')


def case_first_run(work):
    """The files an image's first mount reads are kept (cache access/ record, by manifest
    digest); after the blob cache is emptied (`cache gc --cache-max 1K`), the next mount
    prefetches those files first: once its prefetch is done, reading them fetches nothing, and it
    fetched well under the image. The record is the first mount's: later mounts leave it."""
    with Registry() as reg, FaultProxy(reg) as px:
        reference, man, total = lazy_image(work, reg, 'estargz')
        ref, mnt, cache = px.ref(REPO + ':lazy'), work('mnt'), work('cache')
        first = ['bin/busybox', 'etc/os-release']
        with mount(work, ref, mnt, cache, extra=['--prefetch', 'none']):
            for p in first:
                read_file(os.path.join(mnt, p))
            digest = status_of(work, mnt)['manifest']
        record = os.path.join(cache, 'access', 'sha256', digest.split(':')[1])
        check(os.path.isfile(record), 'no access record at %s' % record)
        kept = open(record).read()
        log('  access record: %d files' % (len(kept.splitlines()) - 1))
        check(len(kept.splitlines()) - 1 == len(first), 'access record: %r' % kept)
        r = oc(work, 'cache', 'gc', '--cache-dir', cache, '--cache-max', '1K')
        check(r.returncode == 0, 'cache gc: %s' % err_text(r))

        px.reset_counters()
        with mount(work, ref, mnt, cache):
            check(wait_prefetch(work, mnt) == 'done', 'the prefetch did not finish')
            fetched = px.blob_bytes
            for p in first:
                check(read_file(os.path.join(mnt, p)) == read_file(os.path.join(reference, p)), '%s differs' % p)
            log('  second mount prefetched %d blob bytes (image %d); reading the recorded files then: %d more' % (
                fetched, total, px.blob_bytes - fetched))
            check(px.blob_bytes == fetched, 'reading the recorded files fetched %d more bytes' % (px.blob_bytes - fetched))
            check(0 < fetched < total / 2, 'the second mount prefetched %d of %d bytes' % (fetched, total))
            read_file(os.path.join(mnt, 'data/large'))
        check(open(record).read() == kept, 'a later mount rewrote the access record')


def case_stargz_legacy(work):
    """Legacy stargz (47-byte footers, no TOC digest in the manifest): with nothing to check a
    TOC against, the layers are scanned whole like any gzip layer; the tree = umoci unpack,
    the non-UTF-8 name included."""
    with Registry() as reg, FaultProxy(reg) as px:
        reference, man, total = lazy_image(work, reg, 'estargz-legacy')
        with mount(work, px.ref(REPO + ':lazy'), work('mnt'), work('cache')):
            tree_equal(reference, work('mnt'), 'legacy stargz')
            formats = [l['format'] for l in status_of(work, work('mnt'))['layers']]
            check(formats == ['gzip'] * len(man['layers']), 'legacy stargz layers shown as %s' % formats)


def estargz_toc(blob):
    """The TOC (dict) of an eStargz blob, and its offset."""
    off = estargz_toc_offset(blob[-51:])
    tar = gzip.GzipFile(fileobj=io.BytesIO(blob[off:-51])).read()
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        return json.load(tf.extractfile('stargz.index.json')), off


def case_lazy_bad(work):
    """Tampered eStargz bytes through the proxy: a byte flipped in a chunk of data/large gives
    EIO on that file (other files still read right) and nothing wrong is ever served; a byte
    flipped in the TOC, or in the footer's offset, refuses the mount naming the layer, and the
    same cache mounts fine once the fault is gone (nothing bad was kept); a manifest whose TOC
    digest annotation names another TOC refuses the mount, naming both digests."""
    with Registry() as reg, FaultProxy(reg) as px:
        reference, man, _ = lazy_image(work, reg, 'estargz')
        ref = px.ref(REPO + ':lazy')
        layer0 = man['layers'][0]['digest']
        _, _, blob = reg.client().blob(REPO, layer0)
        toc, toc_offset = estargz_toc(blob)
        chunk = [e for e in toc['entries'] if e['name'] == 'data/large' and 'offset' in e][0]
        path = _layer_path(reg, 0, REPO + ':lazy')

        with px.fault('corrupt_blob', path=path, count=None, blob_at=chunk['offset'] + 100) as f:
            with mount(work, ref, work('mnt'), work('cache-chunk')):
                try:
                    got = read_file(os.path.join(work('mnt'), 'data/large'))
                    check(False, 'data/large from a tampered chunk: %d bytes served' % len(got))
                except OSError as e:
                    check(e.errno == errno.EIO, 'data/large from a tampered chunk: %r, want EIO' % e)
                check(read_file(os.path.join(work('mnt'), 'etc/passwd')) ==
                      read_file(os.path.join(reference, 'etc/passwd')), 'etc/passwd wrong next to a bad chunk')
                r = oc(work, 'status', work('mnt'))
                log('  status after the bad chunk:\n' + '\n'.join('  | ' + l for l in r.stdout.decode().splitlines()))
            check(f.flips >= 1, 'the tampered chunk was never sent')

        wrong = dict(man)
        wrong['layers'] = [dict(l) for l in man['layers']]
        wrong['layers'][0]['annotations'] = dict(man['layers'][0]['annotations'])
        wrong['layers'][0]['annotations']['containerd.io/snapshot/stargz/toc.digest'] = 'sha256:' + 'ab' * 32
        reg.client().put_manifest(REPO, 'wrong-toc', json.dumps(wrong).encode(),
                                  'application/vnd.oci.image.manifest.v1+json')
        err, _ = refused(work, ['--cache-dir', work('cache-wrong'), px.ref(REPO + ':wrong-toc')], 'wrong TOC digest')
        check('ab' * 32 in err and layer0.split(':')[1][:12] in err,
              'a TOC digest mismatch: the message names neither the digest nor the layer: %s' % err)

        for what, at in (('TOC', toc_offset + 40), ('footer', len(blob) - 51 + 20)):
            with px.fault('corrupt_blob', path=path, count=None, blob_at=at):
                err, _ = refused(work, ['--cache-dir', work('cache-' + what), ref], 'tampered ' + what)
                check(layer0.split(':')[1][:12] in err, 'tampered %s: the message does not name the layer: %s' % (
                    what, err))
            with mount(work, ref, work('mnt'), work('cache-' + what)):
                same_tree(reference, work('mnt'), 'same cache after the tampered %s' % what)


def wait_prefetch(work, mnt, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        state = status_of(work, mnt)['prefetch']
        if state != 'running':
            return state
        time.sleep(0.1)
    raise Fail('the prefetch still runs after %d s' % timeout)


def case_lazy_prefetch(work):
    """--prefetch on an eStargz image whose files etc/os-release and bin/busybox are marked
    (ctr-remote --estargz-record-in, a .prefetch.landmark after them): landmark (the default)
    fetches little more than those ranges and then reading them fetches nothing; all fetches every
    layer once (no more than the image's bytes), then reading every file fetches nothing; none
    fetches nothing in the background. status says none/running/done."""
    require_lazy_tools()
    with Registry() as reg, FaultProxy(reg) as px:
        layout, reference = umoci_image(work)
        push_image('oci:%s:%s' % (layout, fixtures.TAG), reg, REPO + ':v1')
        with Containerd(work('ctrd')) as ctrd:
            man = convert_and_push(ctrd, reg, REPO + ':v1', REPO + ':lazy', 'estargz', level=1,
                                   prioritized=['etc/os-release', 'bin/busybox'])
        total = sum(l['size'] for l in man['layers']) + man['config']['size']
        ref = px.ref(REPO + ':lazy')
        busybox = os.path.getsize(os.path.join(reference, 'bin/busybox'))

        px.reset_counters()
        with mount(work, ref, work('mnt'), work('cache-landmark')):
            check(wait_prefetch(work, work('mnt')) == 'done', 'landmark prefetch did not finish')
            fetched = px.blob_bytes
            check(read_file(os.path.join(work('mnt'), 'bin/busybox')) ==
                  read_file(os.path.join(reference, 'bin/busybox')), 'bin/busybox differs')
            log('  landmark: %d blob bytes prefetched (busybox %d, image %d); reading busybox then: %d more' % (
                fetched, busybox, total, px.blob_bytes - fetched))
            check(px.blob_bytes == fetched, 'reading a prefetched file fetched %d bytes' % (px.blob_bytes - fetched))
            check(fetched < total / 2, 'the landmark prefetch fetched %d of %d bytes' % (fetched, total))

        px.reset_counters()
        with mount(work, ref, work('mnt'), work('cache-all'), extra=['--prefetch', 'all']):
            check(wait_prefetch(work, work('mnt')) == 'done', 'prefetch all did not finish')
            fetched = px.blob_bytes
            same_tree(reference, work('mnt'), 'after --prefetch all')
            log('  all: %d blob bytes prefetched of %d; reading every file then: %d more' % (
                fetched, total, px.blob_bytes - fetched))
            check(total - man['config']['size'] <= fetched <= total, 'prefetch all fetched %d of %d' % (fetched, total))
            check(px.blob_bytes == fetched, 'reading after prefetch all fetched %d bytes' % (px.blob_bytes - fetched))

        px.reset_counters()
        with mount(work, ref, work('mnt'), work('cache-none'), extra=['--prefetch', 'none']):
            live = px.blob_bytes
            time.sleep(1)
            check(status_of(work, work('mnt'))['prefetch'] == 'none', 'status with --prefetch none')
            check(px.blob_bytes == live, '--prefetch none fetched %d bytes in the background' % (px.blob_bytes - live))


# ------------------------------------------------------------------ zstd:chunked as containers/storage writes it

def _zstd(data):
    return subprocess.run(['zstd', '-q', '-3', '-c'], input=data, stdout=subprocess.PIPE, check=True).stdout


def _skippable(payload):
    return struct.pack('<II', 0x184D2A50, len(payload)) + payload


def _modtime(ti):
    return datetime.datetime.fromtimestamp(ti.mtime, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def storage_zstd_chunked(tar, chunk=1 << 20):
    """The layout containers/storage (podman, buildah) writes for zstd:chunked, built here from
    the uncompressed tar `tar` with the zstd CLI (no Debian 12 tool writes it): tar headers and
    padding in frames of their own, each file's data in frames of up to `chunk` bytes (all-zero
    ones of >= 1 KiB marked chunkType "zeros"), then the manifest (entries with offset,
    endOffset, digest, chunk fields) compressed in a skippable frame, and the 64-byte footer
    frame. Returns (blob, annotations)."""
    blob, entries, pos = b'', [], 0
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        members = tf.getmembers()
    for ti in members:
        if ti.offset_data > pos:                       # headers (and the padding before them)
            blob += _zstd(tar[pos:ti.offset_data])
            pos = ti.offset_data
        name = ti.name.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')
        kind = {tarfile.DIRTYPE: 'dir', tarfile.SYMTYPE: 'symlink', tarfile.LNKTYPE: 'hardlink',
                tarfile.CHRTYPE: 'char', tarfile.BLKTYPE: 'block', tarfile.FIFOTYPE: 'fifo'}.get(ti.type, 'reg')
        e = {'type': kind, 'name': name, 'mode': ti.mode, 'uid': ti.uid, 'gid': ti.gid, 'modtime': _modtime(ti)}
        if ti.linkname:
            e['linkName'] = ti.linkname.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace')
        if kind in ('char', 'block'):
            e['devMajor'], e['devMinor'] = ti.devmajor, ti.devminor
        xattrs = {k[len('SCHILY.xattr.'):]: base64.b64encode(v.encode('utf-8', 'surrogateescape')).decode()
                  for k, v in ti.pax_headers.items() if k.startswith('SCHILY.xattr.')}
        if xattrs:
            e['xattrs'] = xattrs
        if kind != 'reg' or ti.size == 0:
            entries.append(e)
            continue
        data = tar[ti.offset_data:ti.offset_data + ti.size]
        e['size'] = ti.size
        e['digest'] = 'sha256:' + hashlib.sha256(data).hexdigest()
        pieces = [(at, data[at:at + chunk]) for at in range(0, len(data), chunk)]
        first = len(entries)
        for at, piece in pieces:
            c = e if at == 0 else {'type': 'chunk', 'name': name}
            c['offset'] = len(blob)
            if len(pieces) > 1:
                c['chunkOffset'], c['chunkSize'] = at, len(piece)
                c['chunkDigest'] = 'sha256:' + hashlib.sha256(piece).hexdigest()
                if len(piece) >= 1024 and piece.count(0) == len(piece):
                    c['chunkType'] = 'zeros'
            blob += _zstd(piece)
            entries.append(c)
        entries[first]['endOffset'] = len(blob)
        pos = ti.offset_data + ti.size
    blob += _zstd(tar[pos:])                           # the last padding and the end blocks
    manifest = _zstd(json.dumps({'version': 1, 'entries': entries}).encode())
    offset = len(blob) + 8
    blob += _skippable(manifest)
    blob += _skippable(struct.pack('<QQQQQQQ', offset, len(manifest), len(json.dumps({'version': 1, 'entries': entries}).encode()), 1, 0, 0, 0) + b'GNUlInUx')
    plain = len(json.dumps({'version': 1, 'entries': entries}).encode())
    return blob, {
        'io.github.containers.zstd-chunked.manifest-position': '%d:%d:%d:1' % (offset, len(manifest), plain),
        'io.github.containers.zstd-chunked.manifest-checksum': 'sha256:' + hashlib.sha256(manifest).hexdigest(),
    }


def case_storage_zstdchunked(work):
    """zstd:chunked in the layout containers/storage writes (built here, see
    storage_zstd_chunked: header frames apart, endOffset, chunkType zeros, io.github.* keys),
    pushed byte for byte: the cold mount fetches a small part, the tree = umoci unpack, the 20 MiB
    data/sparse reads right from its zeros chunks, reading every file fetches at most the image's
    bytes, a warm remount fetches nothing."""
    require_installed('zstd')
    layout, reference = umoci_image(work)
    man_path = lambda: os.path.join(layout, 'blobs', 'sha256', json.load(open(os.path.join(layout, 'index.json')))['manifests'][0]['digest'].split(':')[1])  # noqa: E731
    man = json.load(open(man_path()))
    for i, l in enumerate(man['layers']):
        tar = gzip.decompress(open(os.path.join(layout, 'blobs', 'sha256', l['digest'].split(':')[1]), 'rb').read())
        blob, annotations = storage_zstd_chunked(tar)
        d = 'sha256:' + hashlib.sha256(blob).hexdigest()
        open(os.path.join(layout, 'blobs', 'sha256', d.split(':')[1]), 'wb').write(blob)
        l.update(digest=d, size=len(blob), mediaType='application/vnd.oci.image.layer.v1.tar+zstd', annotations=annotations)
    mb = json.dumps(man).encode()
    md = 'sha256:' + hashlib.sha256(mb).hexdigest()
    open(os.path.join(layout, 'blobs', 'sha256', md.split(':')[1]), 'wb').write(mb)
    idx = json.load(open(os.path.join(layout, 'index.json')))
    idx['manifests'][0].update(digest=md, size=len(mb))
    json.dump(idx, open(os.path.join(layout, 'index.json'), 'w'))
    total = sum(l['size'] for l in man['layers']) + man['config']['size']
    with Registry() as reg, FaultProxy(reg) as px:
        push_layout(layout, reg, REPO + ':storage')
        ref, mnt, cache = px.ref(REPO + ':storage'), work('mnt'), work('cache')
        px.reset_counters()
        with mount(work, ref, mnt, cache):
            live = px.blob_bytes
            formats = [l['format'] for l in status_of(work, mnt)['layers']]
            check(formats == ['zstd:chunked'] * len(man['layers']), 'layers shown as %s' % formats)
            sparse = read_file(os.path.join(mnt, 'data/sparse'))
            check(sparse == read_file(os.path.join(reference, 'data/sparse')), 'data/sparse differs')
            after_sparse = px.blob_bytes
            same_tree(reference, mnt, 'containers/storage zstd:chunked (cold)')
            log('  cold mount: %d blob bytes; + the 20 MiB data/sparse: %d; image %d' % (live, after_sparse, total))
            check(live <= total * 0.05, 'the cold mount fetched %d of %d bytes' % (live, total))
        check(px.blob_bytes <= total, 'reading every file fetched %d bytes for %d' % (px.blob_bytes, total))
        px.reset_counters()
        with mount(work, ref, mnt, cache):
            same_tree(reference, mnt, 'containers/storage zstd:chunked (warm)')
        check(px.blob_bytes == 0, 'warm remount fetched %d blob bytes' % px.blob_bytes)


CASES = {
    'estargz': case_estargz,
    'zstdchunked': case_zstdchunked,
    'bad': case_lazy_bad,
    'prefetch': case_lazy_prefetch,
    'stargz_legacy': case_stargz_legacy,
    'first_run': case_first_run,
    'storage_zstdchunked': case_storage_zstdchunked,
}
for _fn in CASES.values():
    _fn.tools = ('umoci', 'skopeo')

if __name__ == '__main__':
    sys.exit(main(CASES))
