// StreamDecoder: the one sequential pass over a layer blob. It yields the decoded stream (for the
// tar walker), hashes the raw blob bytes as they are read (for digest verification, unless the
// caller does that itself: ScanOptions::hash_compressed) and records
// what later random access needs (gzip checkpoints, zstd frame table). One per scan; not
// synchronised.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "ocifs/compress/seek_index.hpp"
#include "ocifs/io/blob_source.hpp"

namespace ocifs::compress {

struct ScanOptions {
  // Distance between gzip checkpoints in decoded bytes. A cold random read inflates half a span
  // on average: at 1 MiB that measured 2.1 ms p50 with zlib (~250 MB/s); ISA-L inflates at
  // ~560 MB/s. The price is one inflate state per span, ~19 KiB packed: ~3.7% of the decoded
  // size on disk. At least 16 KiB.
  std::uint64_t gzip_span = 512u << 10;
  bool hash_decoded = false;  // also hash the decoded stream (docker-archive diff_id checks)
  // false: only walk (listing an archive's members); an uncompressed stream then seeks over
  // skipped data instead of reading it, and nothing is hashed.
  bool hash = true;
  // With `hash`: false still reads every raw byte but leaves hashing them to the caller, who
  // sees them all on the way in (the layer scanner hashes on its read-ahead thread, off the
  // decoding thread); compressed_sha256() is then empty. Ignored without `hash`.
  bool hash_compressed = true;
};

class StreamDecoder {
 public:
  virtual ~StreamDecoder() = default;

  // Reads decoded bytes; returns 0 only at the end of the stream. Corrupt or truncated input
  // is an error naming the blob and the compressed offset.
  virtual Result<std::size_t> read(std::span<std::byte> out) = 0;
  // Skips `count` decoded bytes (identity can seek; compressed streams decode and discard).
  // Fails if the stream ends first.
  virtual Result<void> skip(std::uint64_t count) = 0;
  // Decoded bytes consumed so far.
  virtual std::uint64_t position() const = 0;

  // Reads and discards the rest of the stream, so the whole blob has been hashed and indexed,
  // then returns the seek index. Trailing garbage after the last gzip member or zstd frame is
  // an error (a truncated or corrupt blob), except zero padding after gzip as tar writers add.
  virtual Result<SeekIndex> finish() = 0;

  // Hex sha256 of every raw blob byte read; valid after finish(); empty unless
  // ScanOptions::hash and hash_compressed.
  virtual std::string compressed_sha256() const = 0;
  // Hex sha256 of the decoded stream when ScanOptions::hash_decoded; valid after finish().
  virtual std::string decoded_sha256() const = 0;

  // Whether what was decoded so far already shows that random access will need the whole decoded
  // stream kept in the cache (zstd: a frame above kSpillFrameSize); a scan that cannot keep it
  // then stops at once instead of decoding on. (A stream of one small frame is only known to need
  // it at the end: SeekIndex::zstd_spilled.)
  virtual bool needs_decoded_copy() const { return false; }
};

Result<std::unique_ptr<StreamDecoder>> make_stream_decoder(Encoding encoding, io::BlobSourcePtr blob,
                                                           const ScanOptions& options = {});

}  // namespace ocifs::compress
