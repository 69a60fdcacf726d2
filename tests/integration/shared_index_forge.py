#!/usr/bin/python3
"""Take apart and forge ocifs shared index blobs (`ocifs index --push`), for fault tests: a head
whose blob block digests lie, a format version this ocifs does not read.

    info = parse(blob)                     # the prefix, the LayerIndex inside, its sections
    bad, head_digest, head_size = with_block_digest_flipped(blob, 0)
    desc = descriptor_for(layer_desc, bad, head_digest, head_size)   # for the artifact manifest

The blob (src/layer/shared_index.cpp; little-endian): a 32-byte prefix (magic "OCIFSSHI", u32
version, u32 R read-first ranges, u64 H compressed head size, u64 U its decoded size), H bytes
holding one zstd frame of a LayerIndex (then R read-first ranges of 28 bytes) (src/layer/layer_index.cpp: a 112-byte header of counts, the tables,
string pool, seek index, the layer's digest, the blob and decoded block digests, then a sha256
of everything before it), then the gzip checkpoint states.  The head is [0, 32+H): its sha256
and size are the annotations dev.ocifs.index.head.digest / .head.size.  A state's offset is
relative to the end of the head, so the states stay valid behind a head of another size.

Python has no zstd module here: the `zstd` command line tool does the (de)compression."""

import hashlib
import struct
import subprocess

MAGIC = b'OCIFSSHI'
PREFIX_SIZE = 32
INDEX_MAGIC = b'OCIFSIDX'
INDEX_HEADER_SIZE = 112
READ_FIRST_SIZE = 28
DIGEST_SIZE = 32
ENTRY_SIZE, EXTRA_SIZE, XATTR_SIZE, EXTENT_SIZE = 53, 32, 16, 16
KINDS = ('regular', 'directory', 'symlink', 'hardlink', 'char_device', 'block_device', 'fifo')
# the artifact's annotations (include/ocifs/layer/shared_index.hpp)
ANN_LAYER = 'dev.ocifs.layer.digest'
ANN_VERSION = 'dev.ocifs.index.version'
ANN_HEAD_DIGEST = 'dev.ocifs.index.head.digest'
ANN_HEAD_SIZE = 'dev.ocifs.index.head.size'
# the LayerIndex header's u64 fields, in order from offset 16
_COUNTS = ('E', 'W', 'X', 'S', 'P', 'K', 'D', 'block_size', 'blob_size', 'B', 'decoded_size', 'Z')


class ForgeError(ValueError):
    """The bytes are not a shared index this module understands."""


def _zstd(args, data, timeout=120):
    r = subprocess.run(['zstd', '-q', '-c'] + list(args), input=data, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    if r.returncode != 0:
        raise ForgeError('zstd %s exited %d: %s' % (' '.join(args), r.returncode,
                                                   r.stderr.decode(errors='replace')[-500:]))
    return r.stdout


def sha256_digest(data):
    return 'sha256:' + hashlib.sha256(data).hexdigest()


def parse(blob):
    """The parts of a shared index blob, as a dict:
    version, reserved (R), packed_size (H), unpacked_size (U), head_size (32+H), head (its bytes),
    index (the decoded LayerIndex), read_first (the R ranges' bytes after it), states (the bytes
    after the head); from the LayerIndex:
    index_version, the counts E W X S P K D block_size blob_size B decoded_size Z, the offsets
    in `index` of each section (entries_at, extras_at, xattrs_at, sparse_at, pool_at, seek_at,
    digest_at, blob_digests_at, decoded_digests_at, checksum_at), layer_digest (the D bytes),
    checksum_ok (the trailing sha256 matches).  Raises ForgeError when the sizes do not add up."""
    blob = bytes(blob)
    if len(blob) < PREFIX_SIZE or blob[:8] != MAGIC:
        raise ForgeError('no shared index magic')
    version, reserved, packed, unpacked = struct.unpack_from('<IIQQ', blob, 8)
    head_size = PREFIX_SIZE + packed
    if head_size > len(blob):
        raise ForgeError('head of %d bytes in a blob of %d' % (head_size, len(blob)))
    payload = _zstd(['-d'], blob[PREFIX_SIZE:head_size])
    if len(payload) != unpacked or READ_FIRST_SIZE * reserved > unpacked:
        raise ForgeError('head decodes to %d bytes, the prefix says %d' % (len(payload), unpacked))
    cut = len(payload) - READ_FIRST_SIZE * reserved
    index = payload[:cut]
    out = {'version': version, 'reserved': reserved, 'packed_size': packed,
           'unpacked_size': unpacked, 'head_size': head_size, 'head': blob[:head_size],
           'index': index, 'read_first': payload[cut:], 'states': blob[head_size:]}
    out.update(_parse_index(index))
    return out


def _parse_index(index):
    if len(index) < INDEX_HEADER_SIZE + DIGEST_SIZE or index[:8] != INDEX_MAGIC:
        raise ForgeError('no layer index magic')
    out = {'index_version': struct.unpack_from('<I', index, 8)[0]}
    out.update(zip(_COUNTS, struct.unpack_from('<12Q', index, 16)))
    at = INDEX_HEADER_SIZE
    for name, size in (('entries_at', out['E'] * ENTRY_SIZE),
                       ('extras_at', out['W'] * EXTRA_SIZE), ('xattrs_at', out['X'] * XATTR_SIZE),
                       ('sparse_at', out['S'] * EXTENT_SIZE), ('pool_at', out['P']),
                       ('seek_at', out['K']), ('digest_at', out['D']),
                       ('blob_digests_at', out['B'] * DIGEST_SIZE),
                       ('decoded_digests_at', out['Z'] * DIGEST_SIZE),
                       ('checksum_at', DIGEST_SIZE)):
        out[name] = at
        at += size
    if at != len(index):
        raise ForgeError('layer index sections add up to %d bytes, it has %d' % (at, len(index)))
    out['layer_digest'] = index[out['digest_at']:out['digest_at'] + out['D']].decode()
    out['checksum_ok'] = hashlib.sha256(index[:-DIGEST_SIZE]).digest() == index[-DIGEST_SIZE:]
    return out


def entries(info):
    """The entries of a parse() result: dicts path, kind, mode, size, data_offset (in the
    decoded tar), uid, gid, extra (None or the extras index)."""
    index, pool = info['index'], info['pool_at']
    out = []
    for i in range(info['E']):
        (data_offset, size, _, _, uid, gid, path_offset, extra, path_size, mode,
         kind) = struct.unpack_from('<QQqIIIIIHHB', index, info['entries_at'] + i * ENTRY_SIZE)
        out.append({'path': index[pool + path_offset:pool + path_offset + path_size].decode(
            errors='surrogateescape'), 'kind': KINDS[kind] if kind < len(KINDS) else kind,
            'mode': mode, 'size': size, 'data_offset': data_offset, 'uid': uid, 'gid': gid,
            'extra': None if extra == 0xffffffff else extra})
    return out


def layer_digest_of(blob):
    """The "sha256:<hex>" digest of the layer the index describes (its D bytes)."""
    return parse(blob)['layer_digest']


def seal(index):
    """index with its trailing sha256 recomputed."""
    index = bytes(index)
    return index[:-DIGEST_SIZE] + hashlib.sha256(index[:-DIGEST_SIZE]).digest()


def rebuild(blob, index, version=None, level=19):
    """A blob with head `index` (a LayerIndex's bytes, taken as they are: seal() them after an
    edit), compressed anew, the prefix's H and U and (when given) version set, the states of
    `blob` carried over.  Returns (new blob, "sha256:<hex>" of its head, head size)."""
    info = parse(blob)
    payload = bytes(index) + info['read_first']
    packed = _zstd(['-%d' % level, '--stream-size=%d' % len(payload)]
                   + (['--ultra'] if level > 19 else []), payload)
    head = (MAGIC + struct.pack('<IIQQ', info['version'] if version is None else version,
                                info['reserved'], len(packed), len(payload)) + packed)
    return head + info['states'], sha256_digest(head), len(head)


def with_block_digest_flipped(blob, block, bit=0):
    """The blob with bit `bit` of blob block digest number `block` flipped and the index sealed
    again (so only the comparison with the layer's bytes can tell): (new blob, head digest,
    head size)."""
    info = parse(blob)
    if not 0 <= block < info['B']:
        raise ForgeError('block %d: the index has %d blob block digests' % (block, info['B']))
    index = bytearray(info['index'])
    index[info['blob_digests_at'] + block * DIGEST_SIZE + bit // 8] ^= 1 << (bit % 8)
    return rebuild(blob, seal(index))


def with_version(blob, version):
    """The blob with the prefix's format version set to `version` (the head's zstd frame kept
    byte for byte): (new blob, head digest, head size)."""
    info = parse(blob)
    head = bytearray(info['head'])
    struct.pack_into('<I', head, 8, version)
    head = bytes(head)
    return head + info['states'], sha256_digest(head), len(head)


def descriptor_for(desc, blob, head_digest, head_size):
    """A copy of an artifact manifest's layer descriptor `desc` for a forged blob: its digest
    and size, and the head annotations (the others kept)."""
    out = dict(desc)
    out['digest'], out['size'] = sha256_digest(blob), len(blob)
    out['annotations'] = dict(desc.get('annotations') or {})
    out['annotations'].update({ANN_HEAD_DIGEST: head_digest, ANN_HEAD_SIZE: str(head_size)})
    return out
