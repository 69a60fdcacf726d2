// ScanSource: the read-ahead pipeline under a layer scan. A background thread reads the blob
// front to back in large chunks into a small ring and hashes every byte there — the whole-blob
// sha256 and the per-block digests — while the decoder's sequential read_at calls are served from
// the ring. So the decoding thread neither waits for pread nor hashes: on a 95 MB gzip layer the
// two sha256 passes are ~25% and the kernel copy ~7% of a single-threaded scan's CPU.
//
// The decoders read sequentially. A read ahead of the served position discards the ring up to it
// (those bytes are still hashed); a read behind it is served straight from the blob but spoils the
// scan: finish() refuses it, since the digest would not be over the bytes the decoder saw.
// Reports the running total of raw bytes served to `progress` every 4 MiB (~250 calls per GiB,
// off the hot path of a terminal progress line).
//
// Thread-safety: read_at and finish from one thread at a time (the scan's); the reader thread is
// internal and shares only the ring's counters, under mutex_.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "ocifs/io/block_digests.hpp"
#include "ocifs/layer/layer_scanner.hpp"

namespace ocifs::layer {

class ScanSource final : public io::BlobSource {
 public:
  struct Options {
    // 1 MiB chunks: one pread per ~7 ms of inflate. A ring of 16 (16 MiB, one mmap): the reader
    // needs ~1.7 ms per chunk (pread + two sha256), so while inflate is slow it gets ahead, for
    // runs of already-compressed files that decode faster than it reads and hashes. In the bench
    // image's 95 MB layer 25 such chunks made the decoder wait ~45 ms with 6 slots, 25-40 ms
    // with 16 (the reader shares the second core with the other layer's scan).
    std::size_t chunk = 1u << 20;
    std::size_t slots = 16;
  };
  struct Digests {
    std::string sha256;  // hex, of the whole blob
    io::BlockDigests blocks;
  };

  ScanSource(io::BlobSourcePtr inner, ProgressFn progress, Options options);
  ScanSource(io::BlobSourcePtr inner, ProgressFn progress = {})
      : ScanSource(std::move(inner), std::move(progress), Options{}) {}
  ~ScanSource() override;
  ScanSource(const ScanSource&) = delete;
  ScanSource& operator=(const ScanSource&) = delete;

  std::uint64_t size() const override { return size_; }
  std::string describe() const override { return inner_->describe(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override;

  // Lets the reader thread hash the rest of the blob and returns the digests; fails if reading
  // the blob failed or a read went behind the served position. No read_at afterwards.
  Result<Digests> finish();
  void report_final() const;
  // Reads served straight from the blob because they went backwards.
  std::uint64_t direct_reads() const { return direct_reads_; }

 private:
  void run();  // the reader thread

  io::BlobSourcePtr inner_;
  ProgressFn progress_;
  std::uint64_t size_;
  std::size_t chunk_;
  std::size_t slots_;
  // One allocation (mmap'ed, so returned to the system when the scan ends), no larger than the
  // blob, its pages touched only as the reader fills them. Chunk k lives in slot k % slots_.
  std::unique_ptr<std::byte[]> ring_;
  std::byte* slot(std::uint64_t k) const { return ring_.get() + (k % slots_) * chunk_; }

  mutable std::mutex mutex_;
  mutable std::condition_variable filled_;  // the consumer: a chunk is ready, or the reader ended
  mutable std::condition_variable freed_;   // the reader: a slot is free, or stop/drain
  std::uint64_t produced_ = 0;              // chunks read and hashed (guarded)
  mutable std::uint64_t released_ = 0;      // chunks the consumer is done with (guarded)
  bool stop_ = false;                       // destroying: the reader quits (guarded)
  bool drain_ = false;                      // finishing: the reader no longer waits (guarded)
  bool reader_done_ = false;                // (guarded)
  std::optional<Error> read_error_;         // why the reader stopped at chunk produced_ (guarded)
  Digests digests_;                         // the reader's result, once reader_done_

  // Consumer side (the scan thread).
  mutable std::uint64_t position_ = 0;  // next sequential offset
  mutable std::uint64_t direct_reads_ = 0;
  mutable std::uint64_t served_ = 0;
  mutable std::uint64_t reported_ = 0;
  bool finished_ = false;
  std::thread reader_;  // last: starts once everything above is set up
};

}  // namespace ocifs::layer
