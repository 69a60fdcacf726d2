#!/usr/bin/python3
"""Raw material for the fuzz seeds, made by the integration tests' own fixture builders
(tests/integration/fixtures.py, hostile.py): layer tars, image documents, docker-archive
manifests and zstd frames.  The seed_corpus program (tests/fuzz/seed_corpus.cpp) turns these into
each target's input format.  Nothing here is committed; scripts/fuzz runs it into build-asan/fuzz.

  /usr/bin/python3 tests/fuzz/make_seeds.py OUTDIR
"""

import gzip
import io
import json
import os
import shutil
import sys
import tarfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))

import fixtures  # noqa: E402
import hostile  # noqa: E402


def tars():
    """(name, tar bytes) of every layer shape the fixtures build, kept small (< 256 KiB)."""
    out = []
    for i, (data, _) in enumerate(fixtures.edge_layers()):
        out.append(('edge%d' % i, data))
    out.append(('hostile_names', fixtures.hostile_layer()))
    out.append(('name_bytes', hostile.name_bytes_layer()))

    t = fixtures.TarBuilder(tarfile.GNU_FORMAT)
    t.file('before', b'before\n')
    t.raw(fixtures.gnu_sparse_old('sparse_gnu', fixtures.GNU_SPARSE_CHUNKS, fixtures.GNU_SPARSE_SIZE))
    t.file('after', b'after\n')
    out.append(('gnu_sparse_old', t.getvalue()))

    t = fixtures.TarBuilder(tarfile.PAX_FORMAT)
    ti, payload = fixtures.pax_sparse_1_0('sparse_pax', [(0, b'head'), (5000, b'mid' * 100), (9000, b'end')], 9003)
    t.tf.addfile(ti, io.BytesIO(payload))
    out.append(('pax_sparse_1_0', t.getvalue()))

    # GNU format writes numbers that do not fit in octal as base-256.
    t = fixtures.TarBuilder(tarfile.GNU_FORMAT)
    t.file('bigid', b'large ids\n', uid=3000000, gid=4000000, mtime=-5)
    t.file('g' * 150, b'gnu long name\n')
    t.symlink('longlink', 'L' * 200)
    t.hardlink('hl', 'g' * 150)
    out.append(('gnu_base256', t.getvalue()))

    t = fixtures.TarBuilder()  # the first layer of fixtures.build_small_image
    t.dir('etc')
    t.file('etc/hello', b'hello\n')
    for i in range(3):
        t.file('f%d' % i, (b'file %d\n' % i) * 100)
    out.append(('small', t.getvalue()))

    # Hand-made headers of hostile.py: PAX records, a NUL in a name, a name ending in '/'.
    out.append(('pax_records', hostile.pax_header([(b'path', b'pax/path'), (b'mtime', b'-1.5'),
                                                  (b'SCHILY.xattr.user.a', b'v\0w'),
                                                  (b'LIBARCHIVE.xattr.user.b', b'dmFsdWU=')]) +
                hostile.ustar_header(b'short', 3) + b'abc' + b'\0' * 509 + hostile.tar_end()))
    out.append(('devices', hostile.ustar_header(b'chr', 0, b'3') + hostile.ustar_header(b'blk', 0, b'4') +
                hostile.ustar_header(b'fifo', 0, b'6') + hostile.ustar_header(b'dir/', 0, b'5') +
                hostile.ustar_header(b'v7dir/', 0, b'\0') + hostile.tar_end()))
    return out


def documents(work):
    """(name, JSON bytes): an OCI layout's index, manifest and config as OCIWriter writes them,
    a multi-platform index, and the Docker schema2 forms of the same."""
    out = []
    w = fixtures.OCIWriter(os.path.join(work, 'layout'))
    for data, comp in fixtures.edge_layers():
        w.add_layer(data, comp)
    w.write(fixtures.TAG, platform='linux/arm/v7')
    blobs = os.path.join(w.path, 'blobs', 'sha256')
    with open(os.path.join(w.path, 'index.json'), 'rb') as f:
        index = json.loads(f.read())
    manifest_digest = index['manifests'][0]['digest'].split(':')[1]
    with open(os.path.join(blobs, manifest_digest), 'rb') as f:
        manifest = json.loads(f.read())
    with open(os.path.join(blobs, manifest['config']['digest'].split(':')[1]), 'rb') as f:
        config = json.loads(f.read())
    with open(os.path.join(w.path, 'oci-layout'), 'rb') as f:
        out.append(('layout-oci', f.read()))
    out.append(('index-oci', json.dumps(index).encode()))
    out.append(('manifest-oci', json.dumps(manifest).encode()))
    out.append(('config-oci', json.dumps(config).encode()))

    multi = dict(index)
    multi['manifests'] = []
    for plat in ('linux/amd64', 'linux/arm64/v8', 'linux/arm/v6', 'windows/amd64'):
        parts = plat.split('/')
        d = dict(index['manifests'][0])
        d['platform'] = {'os': parts[0], 'architecture': parts[1]}
        if len(parts) > 2:
            d['platform']['variant'] = parts[2]
        multi['manifests'].append(d)
    out.append(('index-multi', json.dumps(multi).encode()))

    docker = dict(manifest)
    docker['mediaType'] = 'application/vnd.docker.distribution.manifest.v2+json'
    docker['config'] = dict(manifest['config'], mediaType='application/vnd.docker.container.image.v1+json')
    docker['layers'] = [dict(l, mediaType='application/vnd.docker.image.rootfs.diff.tar.gzip')
                        for l in manifest['layers']]
    out.append(('manifest-docker', json.dumps(docker).encode()))
    docker_list = dict(multi)
    docker_list['mediaType'] = 'application/vnd.docker.distribution.manifest.list.v2+json'
    out.append(('index-docker', json.dumps(docker_list).encode()))
    out.append(('manifest-schema1', json.dumps({'schemaVersion': 1, 'name': 'x', 'fsLayers': []}).encode()))
    return out, manifest, config


def docker_archive_manifests(manifest):
    """manifest.json of a `docker save` archive for the layout's image, as docker and skopeo
    write it (fixtures.gzip_docker_archive makes the real thing with skopeo)."""
    layers = ['%s/layer.tar' % l['digest'].split(':')[1] for l in manifest['layers']]
    config = manifest['config']['digest'].split(':')[1] + '.json'
    one = [{'Config': config, 'RepoTags': ['example.com/app:t'], 'Layers': layers}]
    two = one + [{'Config': config, 'RepoTags': None, 'Layers': layers[:1]}]
    return [('single', json.dumps(one).encode()), ('two', json.dumps(two).encode())]


def archives(work, all_tars):
    """(name, tar bytes): an oci-archive (the OCIWriter layout of the edge layers, tarred as
    skopeo does) and a docker-archive (docker save's layout: manifest.json, the config, one
    directory per layer) of the same layers."""
    w = fixtures.OCIWriter(os.path.join(work, 'archive-layout'))
    for data, comp in fixtures.edge_layers():
        w.add_layer(data, comp)
    w.write(fixtures.TAG, platform='linux/amd64')
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.PAX_FORMAT) as t:
        for name in sorted(os.listdir(w.path)):
            t.add(os.path.join(w.path, name), arcname=name)
    out = [('oci', buf.getvalue())]

    layers = [data for _, data in all_tars[:3]]
    config = {'architecture': 'amd64', 'os': 'linux', 'config': {'Cmd': ['/bin/sh']},
              'rootfs': {'type': 'layers', 'diff_ids': ['sha256:' + fixtures.sha256(l) for l in layers]}}
    config_bytes = json.dumps(config).encode()
    config_name = fixtures.sha256(config_bytes) + '.json'
    layer_names = ['%s/layer.tar' % fixtures.sha256(l) for l in layers]
    manifest = [{'Config': config_name, 'RepoTags': ['example.com/app:t'], 'Layers': layer_names}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.USTAR_FORMAT) as t:
        for name, data in [(config_name, config_bytes)] + list(zip(layer_names, layers)) + \
                [('manifest.json', json.dumps(manifest).encode())]:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mtime = fixtures.T0
            t.addfile(ti, io.BytesIO(data))
    out.append(('docker', buf.getvalue()))
    out.append(('docker_gzip', gzip.compress(buf.getvalue(), compresslevel=6, mtime=0)))
    return out


def zstd_frames(tar_bytes):
    """The tar as zstd frames of raw blocks (hostile.py's writer), one frame and several."""
    out = []
    for frame_bytes in (None, 4096):
        buf = io.BytesIO()
        w = hostile.ZstdFrameWriter(buf)
        for i in range(0, len(tar_bytes), frame_bytes or len(tar_bytes)):
            w.start()
            w.raw(tar_bytes[i:i + (frame_bytes or len(tar_bytes))])
            w.end()
        out.append(buf.getvalue())
    return out


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


def main():
    out = os.path.abspath(sys.argv[1])
    all_tars = tars()
    for name, data in all_tars:
        write(os.path.join(out, 'tar', name + '.tar'), data)
        write(os.path.join(out, 'gzip', name + '.tar.gz'), gzip.compress(data, compresslevel=6, mtime=0))
    for name, data in all_tars[:4]:
        for i, z in enumerate(zstd_frames(data)):
            write(os.path.join(out, 'zstd', '%s.%d.tar.zst' % (name, i)), z)
    work = os.path.join(out, 'work')
    docs, manifest, _ = documents(work)
    for name, data in archives(work, all_tars):
        write(os.path.join(out, 'archives', name + '.tar'), data)
    shutil.rmtree(work)
    for name, data in docs:
        write(os.path.join(out, 'documents', name + '.json'), data)
    for name, data in docker_archive_manifests(manifest):
        write(os.path.join(out, 'docker_archive', name + '.json'), data)


if __name__ == '__main__':
    main()
