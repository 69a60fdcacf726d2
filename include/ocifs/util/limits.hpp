// The resource policy for hostile images: every number that comes from an image (entries,
// sizes, offsets, chunk sizes, nesting, name lengths) meets this table before it allocates, sums
// or casts. docs/architecture.md ("Limits") carries the same table with what happens when a limit
// is passed; change both together. Constants only: thread-safe.
//
// It lives in util/, the module every other one may include, because the numbers are checked in
// oci/ (documents), layer/ (tar, TOC, index), image/ (the tree) and cache/ (the decoded copies).
//
// The rule for choosing a number: far above what a real image carries (a real image never meets a
// limit), and low enough that the worst image within all of them still fits the daemon's memory
// target of 512 MiB and never fills the disk past --cache-max. Where another implementation has a
// limit for the same thing it is named.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ocifs::limits {

// ---- names ----------------------------------------------------------------------------------

// Linux PATH_MAX: a longer path or link target cannot be looked up or read back through the
// kernel. An entry with one is skipped with a warning (the rest of its layer is fine).
inline constexpr std::size_t kMaxPathBytes = 4096;
// Linux NAME_MAX: the VFS refuses a longer component (ENAMETOOLONG) before ocifs is asked, so
// such an entry could never be opened; it is skipped with a warning.
inline constexpr std::size_t kMaxNameBytes = 255;

// ---- entries and metadata -------------------------------------------------------------------

// Entries of one image, all layers together (files, directories, links, whiteouts), and the
// inodes of its merged tree (implicit parent directories included). The memory a mount needs
// grows with them: 189 bytes per entry at its peak plus its path (in the index) and its name (in
// the tree), measured on 1 and 2 million empty files (docs/architecture.md). The worst image
// within this and kMaxMetadataBytesPerImage (2 Mi entries, 64 MiB of paths) peaks at 500 MiB,
// within the 512 MiB target. Large real images hold a few hundred thousand files (a full TeX
// Live installation is about 200k). A layer is held to it alone too (its index's u32 tables).
inline constexpr std::uint64_t kMaxEntriesPerImage = std::uint64_t{2} << 20;
// Bytes of paths, link targets and xattr names and values kept for one image (the layer
// indexes' string pools); the tree keeps the names again. With real paths of 30-100 bytes, an
// image meets this (at around a million files) before kMaxEntriesPerImage.
inline constexpr std::uint64_t kMaxMetadataBytesPerImage = std::uint64_t{64} << 20;
// xattrs and sparse extents of one image together (16 bytes each in the index): ext4 keeps an
// inode's xattrs in one 4 KiB block, so real files carry a handful; a sparse VM disk a few
// thousand extents.
inline constexpr std::uint64_t kMaxRecordsPerImage = std::uint64_t{2} << 20;
// Sparse extents of one file: 1 Mi extents is 16 MiB of map (GNU tar writes a few thousand for
// a database or a VM disk).
inline constexpr std::uint64_t kMaxSparseExtentsPerFile = std::uint64_t{1} << 20;
// Linux XATTR_NAME_MAX and XATTR_SIZE_MAX: anything larger cannot be set or served.
inline constexpr std::size_t kMaxXattrNameBytes = 255;
inline constexpr std::size_t kMaxXattrValueBytes = 65536;
// One PAX or GNU long-name payload, and all the extension headers of one entry: real ones are a
// few hundred bytes (a path, a few xattrs).
inline constexpr std::uint64_t kMaxTarExtensionBytes = std::uint64_t{1} << 20;
inline constexpr std::uint64_t kMaxTarExtensionsPerEntry = 2 * kMaxTarExtensionBytes;

// ---- layers and sizes -----------------------------------------------------------------------

// Layers of one image: Linux overlayfs stacks at most 500 lower layers (OVL_MAX_STACK), so no
// image that Docker, containerd or podman can run has more; Docker's builder stops at 125.
inline constexpr std::size_t kMaxLayers = 500;
// The decoded (tar) size of one layer, and so every data offset and stored size in it. A real
// layer holding model weights is a few hundred GiB; 1 TiB also bounds the CPU time a
// decompression bomb can cost (~15 minutes of zstd at 1.2 GB/s, one core).
inline constexpr std::uint64_t kMaxDecodedLayerBytes = std::uint64_t{1} << 40;
// A file's logical size (sparse files: holes included) must be a valid off_t (< 2^63); the
// stored bytes of it are bounded by kMaxDecodedLayerBytes.
inline constexpr std::uint64_t kMaxFileBytes = (std::uint64_t{1} << 63) - 1;
// Of --cache-max, the share decoded copies of single-frame zstd layers may take together (each
// one at most that much): the rest stays for registry blobs, which share the same budget. A
// layer whose one frame decodes to more is refused (recompress it in frames), never spilled.
inline constexpr std::uint64_t kDecodedCopyShareDivisor = 2;

// ---- lazily pulled layers (eStargz, zstd:chunked) --------------------------------------------

// TOC JSON, and TOC entries (files and chunks). A TOC is held whole while its layer opens: the
// compressed and decoded text, and ~550 bytes an entry while it is parsed (measured: 256 Ki
// entries of 93 bytes peak at 175 MB with their text). containers/storage reads manifests up to
// 150 MiB; a layer past either limit here is not refused but scanned whole instead, within the
// limits of a scan, so only laziness is lost. 256 Ki entries is a layer of 256k files, or of
// 1 TiB in eStargz's 4 MiB chunks.
inline constexpr std::uint64_t kMaxTocBytes = std::uint64_t{48} << 20;
inline constexpr std::uint64_t kMaxTocEntries = std::uint64_t{256} << 10;
// One chunk with data, as decoded in memory on a read: eStargz writes 4 MiB chunks, the
// zstd:chunked rolling checksum ~64 KiB ones. A larger chunk (a zstd:chunked file whose bytes
// never hit a chunk boundary) makes the layer be scanned whole instead. Zeros chunks are never
// allocated: their size is only bounded by kMaxFileBytes.
inline constexpr std::uint64_t kMaxChunkBytes = std::uint64_t{64} << 20;
// Names a TOC cannot spell (non-UTF-8) are read back from the tar headers between two files'
// data: compressed bytes fetched for one such stretch, and for a whole layer. The headers of a
// stretch are a few KiB (a 4 MiB stretch holds thousands of them); past either limit the names
// keep the TOC's spelling (U+FFFD), with a warning.
inline constexpr std::uint64_t kMaxNameRecoveryRangeBytes = std::uint64_t{4} << 20;
inline constexpr std::uint64_t kMaxNameRecoveryBytesPerLayer = std::uint64_t{64} << 20;

// ---- JSON documents -------------------------------------------------------------------------

// Manifests and indexes: the distribution registry refuses to store manifests above 4 MiB, and
// containers/image reads none larger; 16 MiB leaves room for OCI layouts written by other tools.
inline constexpr std::uint64_t kMaxManifestBytes = std::uint64_t{16} << 20;
// Image configs: containers/image reads at most 4 MiB; ocifs parses only the fields it uses
// (platform, command, environment, diff_ids), so memory follows those, not the document.
inline constexpr std::uint64_t kMaxConfigBytes = std::uint64_t{16} << 20;
// Nesting of arrays and objects in any JSON document: image documents nest 5 deep; Go's
// encoding/json stops at 10000. The DOM's serializer recurses once per level.
inline constexpr std::size_t kMaxJsonDepth = 100;
// Values (strings, numbers, arrays, objects) kept from one image document: a DOM value costs
// ~100 bytes, a document of small values ~30 times its size. A manifest of 500 layers has ~4000,
// a config with a long history a few thousand.
inline constexpr std::size_t kMaxJsonValues = std::size_t{1} << 18;

}  // namespace ocifs::limits
