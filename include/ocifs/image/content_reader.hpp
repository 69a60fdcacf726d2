// ContentReader: file bytes of a Tree's regular files, read from the decoded layer streams
// (sparse holes read as zeros). The stateless read path is thread-safe; an OpenFile holds one
// live decoder cursor per open file and locks it, so concurrent reads of one handle serialise
// while different handles run in parallel. It also notes which files were read, in the order of
// their first read (what a later cold mount of the image prefetches first), and counts the reads
// that failed, per layer.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/util/deadline_mutex.hpp"
#include "ocifs/image/tree.hpp"

namespace ocifs::image {

class ContentReader {
 public:
  class OpenFile {
   public:
    explicit OpenFile(std::uint32_t inode) : inode_(inode) {}
    std::uint32_t inode() const { return inode_; }

   private:
    friend class ContentReader;
    std::uint32_t inode_;
    // Held across the cursor's reads (I/O); a read of the same handle waits for it at most until
    // its own deadline.
    util::DeadlineMutex mutex_;
    std::unique_ptr<compress::ReadCursor> cursor_;  // created on first read
  };

  ContentReader(const Tree& tree, std::vector<compress::SeekableReaderPtr> layers, std::vector<std::string> layer_names);

  std::unique_ptr<OpenFile> open(std::uint32_t inode) const { return std::make_unique<OpenFile>(inode); }

  // Reads up to buf.size() bytes of the file at `offset`; short only at the end of the file.
  // `file` (optional) lends its cursor so sequential reads keep one decoder going.
  Result<std::size_t> read(std::uint32_t inode, std::uint64_t offset, std::span<std::byte> buf,
                           OpenFile* file = nullptr) const;

  // The files read so far (inode indexes), each once, in the order of their first read.
  std::vector<std::uint32_t> read_order() const;

  // How reads of one layer's files have failed so far (for `ocifs status`).
  struct Failures {
    std::uint64_t errors = 0;    // reads that failed, timeouts included
    std::uint64_t timeouts = 0;  // of those, reads whose deadline passed (std::errc::timed_out)
    std::string last_error;      // the message of the latest, "" if none
  };
  Failures failures(std::size_t layer) const;
  // Appends the blob ranges holding the file's data (compress::SeekableReader::blob_ranges).
  void blob_ranges(std::uint32_t inode, std::vector<compress::BlobRange>& out) const;
  // The same for decoded bytes [offset, offset + length) of layer `layer`.
  void layer_blob_ranges(std::size_t layer, std::uint64_t offset, std::uint64_t length,
                         std::vector<compress::BlobRange>& out) const {
    layers_.at(layer)->blob_ranges(offset, length, out);
  }
  std::size_t layer_count() const { return layers_.size(); }

 private:
  // A regular file's bytes [offset, offset + buf.size()), within its size: its sparse extents,
  // each read from the layer stream, holes as zeros.
  Result<std::size_t> read_extents(const Inode& node, std::uint64_t offset, std::span<std::byte> buf,
                                   OpenFile* file) const;
  Result<std::size_t> read_stream(const Inode& node, std::uint64_t offset, std::span<std::byte> buf,
                                  OpenFile* file) const;

  void note_read(std::uint32_t inode) const;
  void note_failure(std::uint16_t layer, const Error& error) const;

  const Tree& tree_;
  std::vector<compress::SeekableReaderPtr> layers_;
  std::vector<std::string> layer_names_;
  // Files read, as a bitmap (one atomic test per read) and in order.
  std::unique_ptr<std::atomic<std::uint64_t>[]> read_;
  mutable std::mutex order_mu_;
  mutable std::vector<std::uint32_t> order_;  // under order_mu_
  mutable std::mutex failures_mu_;
  mutable std::vector<Failures> failures_;  // per layer, under failures_mu_
};

}  // namespace ocifs::image
