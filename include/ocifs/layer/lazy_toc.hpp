// Lazy-pull tables of contents: the eStargz TOC (`stargz.index.json`) and the zstd:chunked
// manifest, parsed and validated into a list of entries whose regular files say, chunk by chunk,
// which compressed byte range of the layer blob holds their data. Functions only, on plain
// values: safe from any thread. Decompressing the TOC itself (a gzip member holding a tar entry,
// or a zstd skippable frame) is the caller's job; these functions take the JSON text.
//
// eStargz footer (stargz-snapshotter estargz/gzip.go), the last 51 bytes of the blob: an empty
// gzip member whose Extra field holds the TOC offset.
//
//   offset size  field
//   0      4     1f 8b 08 04              gzip magic, CM = deflate, FLG = FEXTRA (FTEXT tolerated)
//   4      6     MTIME, XFL, OS           ignored (the Go writer puts 0, 0, 0, 0, 0, ff)
//   10     2     XLEN = 26 (LE)
//   12     2     SI1 SI2 = 'S' 'G'
//   14     2     LEN = 22 (LE)
//   16     16    TOC offset as 16 hex digits ("%016x")
//   32     6     "STARGZ"
//   38     5     01 00 00 ff ff           final stored deflate block of length 0 (not checked)
//   43     8     CRC32 = 0, ISIZE = 0     (not checked)
//
// Like the reference readers, only the gzip header and the Extra field are checked: the empty
// deflate body and trailer carry nothing, and the TOC is verified against its digest anyway.
// Legacy stargz (google/crfs) footer, 47 bytes: the same without the SI1/SI2/LEN subfield
// header: XLEN = 22 at 10, hex offset at 12, "STARGZ" at 28, the empty block at 34, trailer at 39.
// A 46-byte footer whose subfield is "STARGZEXTERNALTOC" (TOC kept in a separate image) is
// recognised and refused.
//
// eStargz blob layout: gzip members; a regular file's data (or a 4 MiB chunk of it) starts a new
// member at TOCEntry.offset, and that member goes on with the tar headers of the entries that
// follow until the next file's data starts a member. With `innerOffset` (ctr-remote
// --estargz-min-chunk-size) several chunks share one member: the chunk's data starts
// `innerOffset` bytes into the member's decompressed stream. The TOC is one more member (a tar
// entry `stargz.index.json` and the tar trailer), then the footer. So a chunk's compressed range
// is [offset, next larger offset of any chunk in TOC order), the last one's up to the TOC offset.
//
// zstd:chunked (containers/storage pkg/chunked): one zstd frame per file or content-defined chunk
// (holes of >= 1 KiB of zeros are chunks of `chunkType: "zeros"`, still compressed into a frame),
// tar headers in frames between them. Then skippable frames (magic 50 2a 4d 18, LE32 length):
// the zstd-compressed manifest, the tar-split, and a footer frame whose payload is (LE64 each)
// manifest offset, compressed length, uncompressed length, type (1), tar-split offset,
// compressed length, uncompressed length, then the magic "GNUlInUx" (64 bytes, since 2023; 40
// bytes before, without the tar-split fields and with the magic "GnUlInUx"). Readers trust the
// layer annotation `io.github.containers.zstd-chunked.manifest-position` =
// "offset:length:uncompressedLength:1" instead; `offset` is where the compressed manifest starts,
// just after its 8-byte skippable-frame header, so data frames end at or before offset − 8.
// A chunk's range is [offset, next chunk's offset) inside a file, the file's `endOffset` for its
// last chunk. stargz-snapshotter writes a "zstd:chunked" of its own: the eStargz TOC (with
// `innerOffset`, without `endOffset`) in the skippable frame and a 40-byte footer, under the
// older annotation key `io.containers.zstd-chunked.manifest-position`; ranges are then derived
// as for eStargz. parse_zstd_chunked_manifest() accepts both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/io/blob_source.hpp"
#include "ocifs/layer/tar_entry.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::layer {

// Layer descriptor annotations.
inline constexpr std::string_view kEstargzTocDigestAnnotation = "containerd.io/snapshot/stargz/toc.digest";
inline constexpr std::string_view kEstargzUncompressedSizeAnnotation =
    "io.containers.estargz.uncompressed-size";
inline constexpr std::string_view kZstdChunkedPositionAnnotation =
    "io.github.containers.zstd-chunked.manifest-position";
inline constexpr std::string_view kZstdChunkedChecksumAnnotation =
    "io.github.containers.zstd-chunked.manifest-checksum";
// Written by stargz-snapshotter's zstd:chunked variant.
inline constexpr std::string_view kZstdChunkedPositionAnnotationOld =
    "io.containers.zstd-chunked.manifest-position";

inline constexpr std::size_t kEstargzFooterSize = 51;
inline constexpr std::size_t kLegacyStargzFooterSize = 47;

// Limits against hostile input (util/limits.hpp says why these numbers).
struct TocLimits {
  std::uint64_t max_json_size = limits::kMaxTocBytes;
  std::size_t max_entries = limits::kMaxTocEntries;
};

// One chunk of a regular file's data.
struct TocChunk {
  std::uint64_t file_offset = 0;  // where the chunk lands in the file
  std::uint64_t size = 0;         // uncompressed bytes, > 0
  // The compressed range of the blob to decompress: a gzip member (eStargz) or zstd frame(s),
  // [blob_offset, blob_end). Both 0 for a zeros chunk stored without a frame.
  std::uint64_t blob_offset = 0;
  std::uint64_t blob_end = 0;
  // Decompressed bytes to skip from blob_offset before the chunk's data (eStargz `innerOffset`:
  // chunks sharing one gzip member). 0 otherwise.
  std::uint64_t inner_offset = 0;
  // "sha256:<64 hex>" of the chunk's data (`chunkDigest`, or the file's `digest` for a file
  // stored as one chunk without a chunkDigest), or empty when the TOC gives none: such a chunk
  // cannot be verified on its own.
  std::string digest;
  bool zeros = false;  // zstd:chunked `chunkType: "zeros"`: the data is all zero bytes
};

// A tar entry as the TOC describes it. The TarEntry part follows tar_entry.hpp (path normalised,
// hard link target normalised like a path, symlink target as written, xattrs decoded, mode 07777
// bits, size only for regular files, dev numbers only for devices); data_offset, stored_size,
// sparse and header_offset are unused (0 / empty): `chunks` say where the data is.
struct TocFile : TarEntry {
  std::string digest;            // whole-file "sha256:<hex>" (`digest`), or empty
  std::vector<TocChunk> chunks;  // regular files of size > 0: in order, exactly covering [0, size)
  std::size_t toc_index = 0;     // index of the entry in the JSON `entries` array (for messages)
};

struct Toc {
  int version = 0;  // always 1 (the only version there is)
  // In TOC order, without stargz.index.json and the landmarks (at the root only: a
  // "sub/.prefetch.landmark" is an ordinary file). A path given twice is kept twice; as in a tar,
  // the later entry wins.
  std::vector<TocFile> entries;
  // `.prefetch.landmark`'s offset: the blob range [0, offset) holds the prioritized files.
  std::optional<std::uint64_t> prefetch_landmark_offset;
  bool no_prefetch_landmark = false;  // `.no.prefetch.landmark` present: prefetch nothing
  // Where the data area ends: the TOC offset (eStargz) or the manifest offset − 8 (zstd:chunked).
  std::uint64_t data_end = 0;
};

struct EstargzFooter {
  std::uint64_t toc_offset = 0;
  std::size_t size = 0;  // 51, or 47 for legacy stargz
  bool legacy = false;
};

// `tail`: the last bytes of the blob, at least 47 (51 to recognise both footers). Tries the
// 51-byte eStargz footer, then the 47-byte legacy one. A footer whose TOC offset is not inside
// the blob before the footer is an error.
Result<EstargzFooter> decode_estargz_footer(std::span<const std::byte> tail, std::uint64_t blob_size);
// Whether the blob ends with an eStargz or legacy stargz footer (reads its last 51 bytes).
bool has_stargz_footer(const io::BlobSource& blob);
// The entries a stargz layer carries for its readers, not for the tree: the TOC and the landmarks
// (root paths, normalised as tar_entry.hpp does).
bool is_stargz_metadata(std::string_view path);

// The same, returning the TOC offset only.
Result<std::uint64_t> parse_estargz_footer(std::span<const std::byte> tail, std::uint64_t blob_size);

// The value of the manifest-position annotation, "offset:length:uncompressedLength:1".
struct ZstdChunkedPosition {
  std::uint64_t offset = 0;  // of the compressed manifest (after its skippable-frame header)
  std::uint64_t length = 0;
  std::uint64_t uncompressed_length = 0;
};
// Checks the manifest lies inside the blob after room for its frame header, and both lengths
// against limits.max_json_size.
Result<ZstdChunkedPosition> parse_zstd_chunked_position(std::string_view annotation, std::uint64_t blob_size,
                                                        const TocLimits& limits = {});

// Parses and validates a TOC. `toc_offset`: where the TOC's gzip member starts (from the footer);
// every chunk lies before it. `layer_name` names the layer in errors ("layer sha256:ab12…").
// Errors (std::errc::io_error; file_too_large for the limits) name the layer, the entry index
// and its path: malformed JSON, wrong field types, version other than 1, unknown entry or chunk
// types, names with ".." components, paths over 4096 bytes, a `chunk` entry not following its
// `reg`, chunks not covering [0, size) exactly and in order, data chunks without an offset, at or
// past the data end, out of blob order or overlapping, sizes beyond what the compressed range
// can inflate to (2048:1 for gzip, 65536:1 for zstd: twice the formats' maxima of 1032:1 and
// 32768:1; zeros chunks exempt), hard links to a path no earlier entry has (or to a directory),
// digests other than "sha256:" + 64 lowercase hex, invalid base64 xattr values, bad modtimes,
// duplicate fields, and the limits above.
Result<Toc> parse_estargz_toc(std::string_view toc_json, std::uint64_t toc_offset, std::uint64_t blob_size,
                              std::string_view layer_name, const TocLimits& limits = {});

// Parses and validates a zstd:chunked manifest (the decompressed JSON). `manifest_offset`: the
// annotation's offset, where the compressed manifest starts; data frames end at or before
// manifest_offset − 8. Same checks as parse_estargz_toc(); an `endOffset` on a `reg` entry is
// the end of the file's last frame: after its offset, not past the next chunk's offset.
Result<Toc> parse_zstd_chunked_manifest(std::string_view json, std::uint64_t manifest_offset,
                                        std::uint64_t blob_size, std::string_view layer_name,
                                        const TocLimits& limits = {});

}  // namespace ocifs::layer
