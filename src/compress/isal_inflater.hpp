// IsalInflater: one ISA-L (igzip) inflate stream over gzip members, shared by the gzip scanner
// and the gzip readers, plus snapshots of its state that serve as checkpoints. Private to
// compress/. Not synchronised: one user at a time.
//
// Why ISA-L and snapshots instead of zlib and zran windows: on the bench image's 95 MB layer
// ISA-L inflates (CRC-32 included) in 0.36 s where zlib takes 0.84 s, and the scan of the
// largest layer is the whole critical path of a cold mount. ISA-L cannot stop at a deflate block
// boundary, so a checkpoint is a copy of its state between two calls instead: the current
// block's decoding tables, up to 64 KiB of history and pending output, and the bit buffer.
// Compressed with zstd that is ~19 KiB, against ~16 KiB for a deflated zran window. Between two
// isal_inflate() calls the state references no memory outside itself (history lives in
// tmp_out_buffer), so a copy resumes anywhere the same compressed offset is fed back in.
#pragma once

#include <isa-l.h>  // ISAL_VERSION
#include <isa-l/igzip_lib.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "ocifs/util/result.hpp"

namespace ocifs::compress {

class IsalInflater {
 public:
  // Identifies the snapshot layout: the state's size and the ISA-L version it was built with.
  // Checkpoints written by another build are refused (the layer is then indexed again).
  static constexpr std::uint32_t kSnapshotFormat =
      (static_cast<std::uint32_t>(ISAL_VERSION) << 8) ^ static_cast<std::uint32_t>(sizeof(inflate_state));

  IsalInflater() : state_(std::make_unique<inflate_state>()) { start_member(); }
  IsalInflater(const IsalInflater&) = delete;
  IsalInflater& operator=(const IsalInflater&) = delete;

  // Ready to parse a gzip member header at the next input byte (buffered input stays); the
  // CRC-32 and ISIZE trailer are checked at the member's end.
  void start_member() {
    std::uint8_t* next_in = state_->next_in;
    std::uint32_t avail_in = state_->avail_in;
    isal_inflate_init(state_.get());
    state_->crc_flag = ISAL_GZIP;
    state_->next_in = next_in;
    state_->avail_in = avail_in;
  }

  inflate_state& state() { return *state_; }
  const inflate_state& state() const { return *state_; }
  bool member_done() const { return state_->block_state == ISAL_BLOCK_FINISH; }
  // Inside deflate data (not a member header or trailer): a snapshot can be taken here.
  bool resumable() const {
    auto s = state_->block_state;
    return state_->wrapper_flag == 1 && (s == ISAL_BLOCK_NEW_HDR || s == ISAL_BLOCK_HDR ||
                                         s == ISAL_BLOCK_TYPE0 || s == ISAL_BLOCK_CODED);
  }

  // The state as bytes, with the parts ISA-L will never read zeroed (stale buffer space and
  // the tables outside a Huffman block) so that it compresses well. Only when resumable().
  std::string snapshot() const {
    std::string bytes(sizeof(inflate_state), '\0');
    inflate_state* copy = reinterpret_cast<inflate_state*>(bytes.data());
    std::memcpy(copy, state_.get(), sizeof(inflate_state));
    copy->next_in = nullptr;
    copy->avail_in = 0;
    copy->next_out = nullptr;
    copy->avail_out = 0;
    auto valid = static_cast<std::size_t>(copy->tmp_out_valid);
    std::memset(copy->tmp_out_buffer + valid, 0, sizeof(copy->tmp_out_buffer) - valid);
    auto in_size = static_cast<std::size_t>(copy->tmp_in_size);
    std::memset(copy->tmp_in_buffer + in_size, 0, sizeof(copy->tmp_in_buffer) - in_size);
    if (copy->block_state != ISAL_BLOCK_CODED) {
      std::memset(&copy->lit_huff_code, 0, sizeof(copy->lit_huff_code));
      std::memset(&copy->dist_huff_code, 0, sizeof(copy->dist_huff_code));
    }
    return bytes;
  }

  // Loads a snapshot. Its scalar fields are range-checked so that a damaged one cannot send
  // ISA-L outside its own buffers; the index that carries it is checksummed as a whole.
  Result<void> restore(std::string_view bytes) {
    if (bytes.size() != sizeof(inflate_state)) {
      return make_error(std::errc::invalid_argument, "checkpoint state has {} bytes, expected {}", bytes.size(),
                        sizeof(inflate_state));
    }
    inflate_state loaded;
    std::memcpy(&loaded, bytes.data(), sizeof loaded);
    auto s = loaded.block_state;
    bool sane = loaded.wrapper_flag == 1 && loaded.crc_flag == ISAL_GZIP && loaded.hist_bits <= 15 &&
                (s == ISAL_BLOCK_NEW_HDR || s == ISAL_BLOCK_HDR || s == ISAL_BLOCK_TYPE0 ||
                 s == ISAL_BLOCK_CODED) &&
                loaded.read_in_length >= 0 && loaded.read_in_length <= 64 && loaded.tmp_in_size >= 0 &&
                loaded.tmp_in_size <= ISAL_DEF_MAX_HDR_SIZE && loaded.tmp_out_valid >= 0 &&
                static_cast<std::size_t>(loaded.tmp_out_valid) <= sizeof(loaded.tmp_out_buffer) &&
                loaded.tmp_out_processed >= 0 && loaded.tmp_out_processed <= loaded.tmp_out_valid &&
                loaded.write_overflow_len == 0 && loaded.copy_overflow_length == 0 &&
                loaded.dict_length <= ISAL_DEF_HIST_SIZE &&
                (s != ISAL_BLOCK_TYPE0 || (loaded.type0_block_len >= 0 && loaded.type0_block_len <= 65535));
    if (!sane) return make_error(std::errc::invalid_argument, "checkpoint state is inconsistent");
    std::memcpy(state_.get(), &loaded, sizeof loaded);
    return util::success();
  }

  // What a failed isal_inflate() call means, for error messages.
  static std::string message(int ret) {
    switch (ret) {
      case ISAL_INVALID_BLOCK: return "invalid deflate block";
      case ISAL_INVALID_SYMBOL: return "invalid deflate symbol";
      case ISAL_INVALID_LOOKBACK: return "invalid deflate distance (too far back)";
      case ISAL_INVALID_WRAPPER: return "invalid gzip header";
      case ISAL_UNSUPPORTED_METHOD: return "unsupported gzip compression method";
      case ISAL_INCORRECT_CHECKSUM: return "CRC-32 or length mismatch in the gzip trailer";
      case ISAL_NEED_DICT: return "needs a preset dictionary";
      default: return "ISA-L inflate error " + std::to_string(ret);
    }
  }

 private:
  std::unique_ptr<inflate_state> state_;  // 87 KiB: on the heap
};

}  // namespace ocifs::compress
