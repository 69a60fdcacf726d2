#!/usr/bin/python3
"""Shared layer indexes (issue 13): `ocifs index --push` stores the layer indexes one machine
built in the image's repository, as an OCI 1.1 artifact that refers to the image; a mount on a
machine with an empty cache finds it (referrers API, or the referrers tag schema on
distribution 2.8) and reads the image lazily, by range.  A real docker-registry on 127.0.0.1
behind the counting proxy (faultproxy.py); trees compared with `umoci unpack`.

Run one case: OCIFS_BIN=build/ocifs /usr/bin/python3 shared_index_suite.py push_mount"""

import errno
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fixtures  # noqa: E402
import shared_index_forge as forge  # noqa: E402
from faultproxy import REFERRERS  # noqa: E402
from common import check, log, main  # noqa: E402
from registry import (BLOBS, MANIFESTS, OCI_INDEX, OCI_MANIFEST, FaultProxy, Registry,  # noqa: E402
                      digest_of, push_image, skopeo)
from registry_suite import (FAST, REPO, compressed_size, err_text, mount, oc, read_file,  # noqa: E402
                            status_of, umoci_image)
from suite import tree_equal  # noqa: E402

TAG = fixtures.TAG
ARTIFACT_TYPE = 'application/vnd.ocifs.shared-index.v1'
BLOB_TYPE = 'application/vnd.ocifs.shared-index.layer.v1'


# ------------------------------------------------------------------ helpers

def image_digest(reg, repo_tag):
    repo, _, tag = repo_tag.rpartition(':')
    _, _, raw = reg.client().manifest(repo, tag)
    return digest_of(raw)


def referrers_tag_index(reg, repo, digest):
    """The referrers tag schema's index for `digest` (parsed), or None when there is none."""
    status, _, body = reg.client().get('/v2/%s/manifests/%s' % (repo, digest.replace(':', '-')),
                                       {'Accept': OCI_INDEX}, scope='repository:%s:pull' % repo)
    if status == 404:
        return None
    check(status == 200, 'referrers tag: HTTP %d %r' % (status, body[:300]))
    return json.loads(body)


def push_index(work, ref, cache, extra=()):
    """`ocifs index --push`; returns its stdout."""
    r = oc(work, 'index', '--push', '--cache-dir', cache, *extra, ref, timeout=600)
    check(r.returncode == 0, 'index --push: exit %d: %s' % (r.returncode, err_text(r)[-3000:]))
    out = r.stdout.decode()
    log('  ' + out.strip().splitlines()[-1])
    return out


def artifact_of(reg, repo, digest):
    """The shared index artifact the tag schema lists for image manifest `digest`: (descriptor, manifest)."""
    index = referrers_tag_index(reg, repo, digest)
    check(index is not None, 'no referrers tag for %s after index --push' % digest)
    ours = [d for d in index['manifests'] if d.get('artifactType') == ARTIFACT_TYPE]
    check(len(ours) == 1, 'referrers tag lists %d shared indexes: %r' % (len(ours), index))
    _, man, raw = reg.client().manifest(repo, ours[0]['digest'], accept=OCI_MANIFEST)
    check(digest_of(raw) == ours[0]['digest'], 'artifact manifest digest')
    return ours[0], man


def layer_sources(work, mnt):
    return [l.get('index_source') for l in status_of(work, mnt)['layers']]


def publish(reg, repo, digest, man):
    """Pushes artifact manifest `man` (a dict) and makes the referrers tag of image manifest
    `digest` list it alone, as a forger with push rights could."""
    raw = json.dumps(man).encode()
    client = reg.client()
    art = client.put_manifest(repo, digest_of(raw), raw, OCI_MANIFEST)
    index = {'schemaVersion': 2, 'mediaType': OCI_INDEX,
             'manifests': [{'mediaType': OCI_MANIFEST, 'digest': art, 'size': len(raw), 'artifactType': ARTIFACT_TYPE}]}
    client.put_manifest(repo, digest.replace(':', '-'), json.dumps(index).encode(), OCI_INDEX)


def read_fails(path):
    """True when reading the file fails with EIO (never with other bytes)."""
    try:
        with open(path, 'rb') as f:
            f.read()
    except OSError as e:
        check(e.errno == errno.EIO, 'reading %s: %s, want EIO' % (path, e))
        return True
    return False


def wait_state(work, mnt, layer_index, states, timeout=120):
    deadline = time.time() + timeout
    while True:
        layer = status_of(work, mnt)['layers'][layer_index]
        if layer['state'] in states or time.time() > deadline:
            return layer
        time.sleep(0.2)


# ------------------------------------------------------------------ cases

def case_push_mount(work):
    """Push with ocifs to distribution 2.8 (no referrers API: the tag schema), then mount with an
    empty cache: every layer opens from the shared index (status says so), the tree equals
    `umoci unpack`, and the mount fetches the index heads, not the layers.  `skopeo copy` to
    another repository leaves the copy a plain image (no artifact, no referrers tag) that mounts
    the normal way; `skopeo inspect --raw` reads the referrers tag's index."""
    layout, reference = umoci_image(work)
    with Registry() as reg, FaultProxy(reg) as px:
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':v1')
        total = compressed_size(reg, REPO + ':v1')
        digest = image_digest(reg, REPO + ':v1')
        check(referrers_tag_index(reg, REPO, digest) is None, 'a referrers tag before any push')
        out = push_index(work, px.ref(REPO + ':v1'), work('cache-pusher'))
        check('referrers tag schema updated' in out, 'index --push output: %r' % out)
        desc, man = artifact_of(reg, REPO, digest)
        check(man.get('artifactType') == ARTIFACT_TYPE and man['subject']['digest'] == digest,
              'artifact manifest: %r' % man)
        check(man['config']['mediaType'] == 'application/vnd.oci.empty.v1+json', 'config: %r' % man['config'])
        layers = reg.client().layers(REPO, 'v1')
        shared = {b['annotations']['dev.ocifs.layer.digest']: b for b in man['layers']}
        check(set(shared) == {l['digest'] for l in layers} and all(b['mediaType'] == BLOB_TYPE for b in man['layers']),
              'the artifact covers %r, the image has %r' % (sorted(shared), [l['digest'] for l in layers]))
        index_bytes = sum(b['size'] for b in man['layers'])
        heads = sum(int(b['annotations']['dev.ocifs.index.head.size']) for b in man['layers'])
        log('  shared index: %d bytes (%.2f%% of the image\'s %d), heads %d bytes' % (
            index_bytes, 100.0 * index_bytes / total, total, heads))
        check(index_bytes <= total * 0.02, 'the shared index is %d bytes for an image of %d' % (index_bytes, total))

        # Pushing again supersedes: the tag still lists one shared index.
        push_index(work, px.ref(REPO + ':v1'), work('cache-pusher'))
        artifact_of(reg, REPO, digest)

        # A fresh machine: the tree from the shared index, bytes by range.
        px.reset_counters()
        mnt, cache = work('mnt'), work('cache-fresh')
        with mount(work, px.ref(REPO + ':v1'), mnt, cache, extra=['--prefetch', 'none']):
            live = px.blob_bytes
            sources = layer_sources(work, mnt)
            check(sources == ['shared'] * len(layers), 'index sources: %r' % sources)
            release = read_file(os.path.join(mnt, 'etc/os-release'))
            check(release == read_file(os.path.join(reference, 'etc/os-release')), 'etc/os-release differs')
            small = px.blob_bytes
            log('  cold mount: %d blob bytes, + etc/os-release: %d (image %d)' % (live, small, total))
            check(live <= index_bytes + 4096, 'the mount fetched %d blob bytes; the index is %d' % (live, index_bytes))
            check(small < total / 4, 'a mount and one small read fetched %d of %d bytes' % (small, total))
            tree_equal(reference, mnt, 'shared index mount')
        log('  + reading every file: %d blob bytes (image %d)' % (px.blob_bytes, total))
        check(px.blob_bytes <= total * 1.1 + index_bytes,
              'reading every file fetched %d bytes for an image of %d' % (px.blob_bytes, total))

        # --shared-index=off: the same image scanned the normal way.
        with mount(work, px.ref(REPO + ':v1'), mnt, work('cache-off'), extra=['--shared-index', 'off']):
            sources = layer_sources(work, mnt)
            check(set(sources) <= {'scan', 'walk'}, 'with --shared-index=off: %r' % sources)
            tree_equal(reference, mnt, '--shared-index=off')

        # inspect lists the referrers with their artifact types.
        r = oc(work, 'inspect', '--cache-dir', work('cache-inspect'), px.ref(REPO + ':v1'), check_rc=True)
        check(b'Referrers:' in r.stdout and ARTIFACT_TYPE.encode() in r.stdout, 'inspect: %r' % r.stdout[-800:])
        r = oc(work, 'inspect', '--json', '--cache-dir', work('cache-inspect'), px.ref(REPO + ':v1'), check_rc=True)
        refs = json.loads(r.stdout)['referrers']
        check([x['artifactType'] for x in refs] == [ARTIFACT_TYPE], 'inspect --json referrers: %r' % refs)

        # skopeo: the referrers tag's index reads raw (not as an image: its one entry is an
        # artifact), and a copy of the image is a plain image.
        r = skopeo('inspect', '--raw', '--tls-verify=false', 'docker://%s/%s:%s' % (
            reg.host, REPO, digest.replace(':', '-')))
        check(json.loads(r.stdout)['manifests'][0]['artifactType'] == ARTIFACT_TYPE, 'skopeo inspect --raw')
        skopeo('copy', '-q', '--src-tls-verify=false', '--dest-tls-verify=false',
               'docker://%s/%s:v1' % (reg.host, REPO), 'docker://%s/copied/app:v1' % reg.host)
        check(referrers_tag_index(reg, 'copied/app', digest) is None, 'skopeo copy carried the referrers tag')
        with mount(work, px.ref('copied/app:v1'), mnt, work('cache-copy')):
            sources = layer_sources(work, mnt)
            check('shared' not in sources, 'the copy found a shared index: %r' % sources)
            tree_equal(reference, mnt, 'skopeo copy of the image')


def case_chroot_python(work):
    """The Debian image (python3-minimal): pushed, indexed and shared; a mount with an empty
    cache runs `chroot MNT python3 -c 'print(1)'` fetching a small part of the image; the tree
    equals `umoci unpack`.  Then the pusher runs python3 in its own mount and pushes again: the
    index lists what that read first, and a fresh mount has fetched all of it (the default
    --prefetch) before python3 runs, which then asks the registry for nothing."""
    import debian_image
    layout, tag, reference = debian_image.build()
    with Registry() as reg, FaultProxy(reg) as px:
        push_image('oci:%s:%s' % (layout, tag), reg, REPO + ':deb')
        total = compressed_size(reg, REPO + ':deb')
        out = push_index(work, px.ref(REPO + ':deb'), work('cache-pusher'))
        check('pushed' in out, out)
        px.reset_counters()
        mnt = work('mnt')
        with mount(work, px.ref(REPO + ':deb'), mnt, work('cache-fresh'), extra=['--prefetch', 'none']):
            live = px.blob_bytes
            r = subprocess.run(['chroot', mnt, '/usr/bin/python3', '-c', 'print(1)'], capture_output=True,
                               timeout=300)
            check(r.returncode == 0 and r.stdout == b'1\n', 'chroot python3: %d %r %r' % (
                r.returncode, r.stdout, r.stderr[-500:]))
            python = px.blob_bytes
            log('  cold mount: %d blob bytes; + chroot python3: %d of %d (%.1f%%)' % (
                live, python, total, 100.0 * python / total))
            check(python <= total * 0.25, 'chroot python3 fetched %d of %d bytes' % (python, total))
            check(set(layer_sources(work, mnt)) == {'shared'}, 'sources: %r' % layer_sources(work, mnt))
            tree_equal(reference, mnt, 'Debian image from its shared index')

        # The pusher ran python3 in its own mount first: the index lists what that read as read
        # first, and a fresh machine fetches it once live, before python asks.
        with mount(work, px.ref(REPO + ':deb'), work('mnt-pusher'), work('cache-pusher')):
            r = subprocess.run(['chroot', work('mnt-pusher'), '/usr/bin/python3', '-c', 'print(1)'],
                               capture_output=True, timeout=300)
            check(r.returncode == 0, 'chroot python3 on the pusher: %r' % r.stderr[-500:])
        out = push_index(work, px.ref(REPO + ':deb'), work('cache-pusher'))
        listed = sum(int(line.split(' ranges read first')[0].rsplit(' ', 1)[1])
                     for line in out.splitlines() if ' ranges read first' in line)
        check(listed >= 5, 'index --push listed %d ranges as read first: %r' % (listed, out))
        px.reset_counters()
        with mount(work, px.ref(REPO + ':deb'), mnt, work('cache-record')):
            deadline = time.time() + 120
            while status_of(work, mnt).get('prefetch') != 'done' and time.time() < deadline:
                time.sleep(0.1)
            check(status_of(work, mnt).get('prefetch') == 'done', 'the prefetch of what was read first never ended')
            prefetched, requests = px.blob_bytes, len(px.records)
            r = subprocess.run(['chroot', mnt, '/usr/bin/python3', '-c', 'print(1)'], capture_output=True,
                               timeout=300)
            check(r.returncode == 0 and r.stdout == b'1\n', 'chroot python3 after the prefetch: %r' % r.stderr[-500:])
            log('  with the pusher\'s record: %d blob bytes prefetched, then python3 fetched %d more in %d requests' % (
                prefetched, px.blob_bytes - prefetched, len(px.records) - requests))
            # Everything python reads was fetched before it ran: it asks the registry for nothing.
            check(len(px.records) == requests, 'python3 still made %d requests after the prefetch: %r' % (
                len(px.records) - requests,
                [(r['path'].rsplit('/', 1)[-1][:19], r['range'], r['bytes']) for r in px.records[requests:]]))
            check(prefetched <= total * 0.25, 'the prefetch fetched %d of %d bytes' % (prefetched, total))
            tree_equal(reference, mnt, 'Debian image from its shared index, read first prefetched')


def case_mirror(work):
    """With a registries.conf mirror, the lookups and the bytes go to the mirror: the primary
    serves 0 blob bytes (here the mirror is a second proxy in front of the same registry, as a
    pull-through cache would be)."""
    layout, reference = umoci_image(work)
    with Registry() as reg, FaultProxy(reg) as primary, FaultProxy(reg) as mirror:
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':v1')
        push_index(work, primary.ref(REPO + ':v1'), work('cache-pusher'))
        conf = work('home/registries.conf')
        os.makedirs(os.path.dirname(conf), exist_ok=True)
        with open(conf, 'w') as f:
            f.write('[[registry]]\nlocation = "%s"\ninsecure = true\n'
                    '[[registry.mirror]]\nlocation = "%s"\ninsecure = true\n' % (primary.host, mirror.host))
        primary.reset_counters()
        mirror.reset_counters()
        mnt = work('mnt')
        with mount(work, primary.ref(REPO + ':v1'), mnt, work('cache-fresh'), extra=['--prefetch', 'none']):
            check(set(layer_sources(work, mnt)) == {'shared'}, 'sources: %r' % layer_sources(work, mnt))
            tree_equal(reference, mnt, 'through the mirror')
        log('  primary: %d requests, %d blob bytes; mirror: %d requests, %d blob bytes' % (
            primary.request_count, primary.blob_bytes, mirror.request_count, mirror.blob_bytes))
        check(primary.blob_bytes == 0 and primary.count(path=BLOBS) == 0,
              'the primary served %d blob bytes' % primary.blob_bytes)
        check(mirror.count(path=r'/referrers/|/manifests/sha256-') > 0, 'the mirror was not asked for referrers')


def case_push_rejected(work):
    """A registry that refuses the artifact manifest: `index --push` fails naming what and
    where, and no referrers tag is left behind; mounts then index the image the normal way."""
    layout, reference = umoci_image(work)
    with Registry() as reg, FaultProxy(reg) as px:
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':v1')
        digest = image_digest(reg, REPO + ':v1')
        with px.fault('status', code=403, path=MANIFESTS, methods=('PUT',)):
            r = oc(work, 'index', '--push', '--cache-dir', work('cache'), *FAST, px.ref(REPO + ':v1'), timeout=300)
        err = err_text(r)
        log('  refused push: exit %d: %s' % (r.returncode, r.stderr.decode(errors='replace').strip()[-300:]))
        check(0 < r.returncode < 128, 'index --push against a refusing registry: exit %d' % r.returncode)
        check('cannot push manifest' in err and '403' in err, 'message: %r' % err[-1000:])
        check(referrers_tag_index(reg, REPO, digest) is None, 'a referrers tag was left after a refused push')
        mnt = work('mnt')
        with mount(work, px.ref(REPO + ':v1'), mnt, work('cache-2')):
            check('shared' not in layer_sources(work, mnt), 'a shared index after a refused push')
            tree_equal(reference, mnt, 'after a refused push')


def case_bad_index_blob(work):
    """A shared index blob whose bytes are damaged on the way (every answer for it corrupted):
    its head fails its digest, a warning says so, the layer is indexed the normal way and the
    tree is right."""
    layout, reference = umoci_image(work)
    with Registry() as reg, FaultProxy(reg) as px:
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':v1')
        push_index(work, px.ref(REPO + ':v1'), work('cache-pusher'))
        _, man = artifact_of(reg, REPO, image_digest(reg, REPO + ':v1'))
        biggest = max(man['layers'], key=lambda b: b['size'])
        mnt = work('mnt')
        path = r'^/v2/.+/blobs/%s$' % biggest['digest']
        with px.fault('corrupt_blob', path=path, blob_at=40):
            with mount(work, px.ref(REPO + ':v1'), mnt, work('cache-fresh')) as m:
                err = m.result.stderr.decode(errors='replace')
                sources = layer_sources(work, mnt)
                tree_equal(reference, mnt, 'with a corrupt shared index blob')
        layer = biggest['annotations']['dev.ocifs.layer.digest']
        layers = [l['digest'] for l in reg.client().layers(REPO, 'v1')]
        check(sources[layers.index(layer)] in ('scan', 'walk'), 'sources with a corrupt index blob: %r' % sources)
        check(sources.count('shared') == len(layers) - 1, 'the other layers: %r' % sources)
        check("head's digest" in err, 'no warning about the corrupt index: %r' % err[-2000:])


def case_referrers_api(work):
    """A registry with the referrers API (the proxy emulates distribution spec 1.1): the push
    sees OCI-Subject and writes no referrers tag; mounts find the index through the API. With
    --shared-index=verify every layer is streamed, checked and reported ready."""
    layout, reference = umoci_image(work)
    with Registry() as reg, FaultProxy(reg, referrers_api=True) as px:
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':v1')
        digest = image_digest(reg, REPO + ':v1')
        out = push_index(work, px.ref(REPO + ':v1'), work('cache-pusher'))
        check('referrers tag schema' not in out, 'pushed to a registry with the API, but: %r' % out)
        check(referrers_tag_index(reg, REPO, digest) is None, 'a referrers tag on a registry with the API')
        check(len(px.referrers('team/app', digest)) == 1, 'referrers: %r' % px.referrers('team/app', digest))
        px.reset_counters()
        mnt = work('mnt')
        with mount(work, px.ref(REPO + ':v1'), mnt, work('cache-fresh'), extra=['--prefetch', 'none']):
            check(set(layer_sources(work, mnt)) == {'shared'}, 'sources: %r' % layer_sources(work, mnt))
            tree_equal(reference, mnt, 'shared index found through the referrers API')
        check(px.count('GET', REFERRERS, 200) >= 1, 'no referrers API request')
        check(px.count('GET', r'/manifests/sha256-') == 0, 'the tag schema was asked although the API answered')
        with mount(work, px.ref(REPO + ':v1'), mnt, work('cache-verify'), extra=['--shared-index', 'verify']):
            for i in range(len(reg.client().layers(REPO, 'v1'))):
                layer = wait_state(work, mnt, i, ('ready', 'failed'))
                check(layer['state'] == 'ready' and layer['index_source'] == 'shared', 'verify: %r' % layer)
            tree_equal(reference, mnt, '--shared-index=verify')


def case_forged(work):
    """Indexes that lie, pushed by someone with push rights: a wrong block digest (the reads of
    that block get EIO, never other bytes; with verify the layer is failed), an index of another
    layer and an unknown format version (both ignored with a warning, the layers indexed the
    normal way)."""
    layout, reference = umoci_image(work)
    with Registry() as reg, FaultProxy(reg) as px:
        push_image('oci:%s:%s' % (layout, TAG), reg, REPO + ':v1')
        digest = image_digest(reg, REPO + ':v1')
        push_index(work, px.ref(REPO + ':v1'), work('cache-pusher'))
        _, man = artifact_of(reg, REPO, digest)
        layers = [l['digest'] for l in reg.client().layers(REPO, 'v1')]
        big = max(range(len(man['layers'])), key=lambda i: man['layers'][i]['size'])
        desc = man['layers'][big]
        big_layer = layers.index(desc['annotations'][forge.ANN_LAYER])
        _, _, blob = reg.client().blob(REPO, desc['digest'])
        client = reg.client()

        # 1. A block digest flipped in the middle of the layer holding data/large.
        info = forge.parse(blob)
        forged, head_digest, head_size = forge.with_block_digest_flipped(blob, info['B'] // 2)
        client.put_blob(REPO, forged)
        lie = json.loads(json.dumps(man))
        lie['layers'][big] = forge.descriptor_for(desc, forged, head_digest, head_size)
        publish(reg, REPO, digest, lie)
        mnt = work('mnt')
        with mount(work, px.ref(REPO + ':v1'), mnt, work('cache-1'), extra=['--prefetch', 'none']):
            check(set(layer_sources(work, mnt)) == {'shared'}, 'sources: %r' % layer_sources(work, mnt))
            check(read_fails(os.path.join(mnt, 'data/large')), 'data/large read despite a wrong block digest')
            check(read_file(os.path.join(mnt, 'etc/os-release')) == read_file(os.path.join(reference, 'etc/os-release')),
                  'etc/os-release differs')
            layer = status_of(work, mnt)['layers'][big_layer]
            check(layer['verify_errors'] > 0 and layer['state'] == 'failed', 'status after a bad block: %r' % layer)
        with mount(work, px.ref(REPO + ':v1'), mnt, work('cache-2'), extra=['--shared-index', 'verify']):
            layer = wait_state(work, mnt, big_layer, ('failed',))
            check(layer['state'] == 'failed' and 'does not describe' in layer.get('error', ''),
                  'verify of a forged index: %r' % layer)
            check(read_fails(os.path.join(mnt, 'data/large')), 'data/large read from a failed layer')
            others = [l for i, l in enumerate(status_of(work, mnt)['layers']) if i != big_layer]
            check(all(l['state'] in ('ready', 'verifying') for l in others), 'the other layers: %r' % others)

        # 2. One layer's index under another layer's name, and 3. an unknown format version.
        small = next(i for i in range(len(man['layers'])) if i != big)
        lie = json.loads(json.dumps(man))
        for a, b in ((small, big), (big, small)):  # a's layer digest on b's blob (and head)
            lie['layers'][a] = json.loads(json.dumps(man['layers'][b]))
            lie['layers'][a]['annotations'][forge.ANN_LAYER] = man['layers'][a]['annotations'][forge.ANN_LAYER]
        forged, head_digest, head_size = forge.with_version(blob, 99)
        client.put_blob(REPO, forged)
        third = next(i for i in range(len(man['layers'])) if i not in (big, small))
        lie['layers'][third] = forge.descriptor_for(man['layers'][third], forged, head_digest, head_size)
        publish(reg, REPO, digest, lie)
        with mount(work, px.ref(REPO + ':v1'), mnt, work('cache-3')) as m:
            err = m.result.stderr.decode(errors='replace')
            sources = layer_sources(work, mnt)
            tree_equal(reference, mnt, 'with lying shared indexes')
        log('  sources with swapped and unknown indexes: %r' % sources)
        check('describes' in err and 'format version 99' in err, 'warnings: %r' % err[-3000:])
        check(sources.count('shared') == len(layers) - 3, 'sources: %r' % sources)


CASES = {
    'push_mount': case_push_mount,
    'chroot_python': case_chroot_python,
    'mirror': case_mirror,
    'push_rejected': case_push_rejected,
    'bad_index_blob': case_bad_index_blob,
    'referrers_api': case_referrers_api,
    'forged': case_forged,
}

if __name__ == '__main__':
    sys.exit(main(CASES))
