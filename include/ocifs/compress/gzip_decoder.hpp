// GzipDecoder: the StreamDecoder of a gzip layer (one or more members). Inflates with ISA-L and
// records a GzipCheckpoint every ScanOptions::gzip_span decoded bytes (a snapshot of the inflate
// state; member starts need none and are preferred when due). Hashes every raw blob byte (unless
// ScanOptions::hash_compressed is off), and the decoded stream on request. Checkpoint states are
// compressed on a worker thread. One per scan; not synchronised (the worker is internal).
#pragma once

#include <memory>
#include <vector>

#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::compress {

class IsalInflater;
class StatePacker;

class GzipDecoder final : public StreamDecoder {
 public:
  GzipDecoder(io::BlobSourcePtr blob, const ScanOptions& options);
  ~GzipDecoder() override;

  Result<std::size_t> read(std::span<std::byte> out) override;
  Result<void> skip(std::uint64_t count) override;
  std::uint64_t position() const override { return decoded_ - pending_size_; }
  Result<SeekIndex> finish() override;
  std::string compressed_sha256() const override { return compressed_digest_; }
  std::string decoded_sha256() const override { return decoded_digest_; }

 private:
  enum class State { member_start, in_member, done };

  // Inflates up to out.size() bytes; returns 0 only at the end of the stream.
  Result<std::size_t> inflate_some(std::span<std::byte> out);
  // Makes at least `count` bytes available at next_in unless the blob ends first: what is left
  // moves to the front of in_, and the blob is read on into the rest of it.
  Result<void> ensure_input(std::size_t count);
  // Handles the bytes after a member: another member, zero padding to the end, or the end.
  Result<void> start_member();
  void record_point(bool member_start);
  std::uint64_t consumed() const;  // compressed offset of the next byte ISA-L has not taken
  Error decode_error(std::string_view reason) const;

  io::BlobSourcePtr blob_;
  std::uint64_t span_;
  bool hash_raw_;
  bool hash_decoded_;
  std::unique_ptr<IsalInflater> inflater_;
  std::unique_ptr<StatePacker> packer_;
  State state_ = State::member_start;
  std::uint64_t members_ = 0;
  std::vector<std::byte> in_;
  std::uint64_t in_offset_ = 0;  // compressed offset of in_[0]
  std::size_t in_size_ = 0;      // valid bytes in in_
  bool eof_ = false;             // the blob has no more bytes
  std::vector<std::byte> out_;   // decoded bytes not yet handed out, for small reads and skip
  std::size_t pending_offset_ = 0;
  std::size_t pending_size_ = 0;
  std::uint64_t decoded_ = 0;  // decoded bytes produced by inflate
  std::vector<GzipCheckpoint> points_;
  util::Sha256 raw_hasher_;
  util::Sha256 decoded_hasher_;
  std::string compressed_digest_;
  std::string decoded_digest_;
  bool finished_ = false;
};

}  // namespace ocifs::compress
