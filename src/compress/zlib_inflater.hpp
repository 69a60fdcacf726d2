// ZlibInflater: RAII owner of one zlib inflate stream (z_stream + inflateInit2/inflateEnd), shared
// by the gzip scanner and the gzip readers. Private to compress/. Not synchronised: one user at a
// time, like the z_stream it wraps.
#pragma once

#include <zlib.h>

#include <cstddef>
#include <string>

#include "ocifs/util/result.hpp"

namespace ocifs::compress {

class ZlibInflater {
 public:
  // 31 = gzip wrapper with a 32 KiB window (header parsed, CRC-32 and ISIZE checked);
  // -15 = raw deflate, used to resume mid-member from a checkpoint.
  static constexpr int kGzipBits = 15 + 16;
  static constexpr int kRawBits = -15;

  ZlibInflater() = default;
  ~ZlibInflater() {
    if (live_) inflateEnd(&strm_);
  }
  ZlibInflater(const ZlibInflater&) = delete;
  ZlibInflater& operator=(const ZlibInflater&) = delete;

  // (Re)starts the stream in the given mode; reuses the allocated state and window when live.
  // Leaves next_in/avail_in alone: buffered input stays where it is.
  Result<void> reset(int window_bits) {
    int ret = live_ ? inflateReset2(&strm_, window_bits) : inflateInit2(&strm_, window_bits);
    if (ret != Z_OK) {
      return make_error(ret == Z_MEM_ERROR ? std::errc::not_enough_memory : std::errc::io_error,
                        "cannot start inflate: zlib error {}", ret);
    }
    live_ = true;
    return util::success();
  }

  z_stream& stream() { return strm_; }
  bool live() const { return live_; }

  // zlib's message for a failed inflate call, or the bare return code.
  std::string message(int ret) const {
    if (strm_.msg != nullptr) return strm_.msg;
    return ret == Z_BUF_ERROR ? std::string("unexpected end of data") : "zlib error " + std::to_string(ret);
  }

 private:
  z_stream strm_{};
  bool live_ = false;
};

}  // namespace ocifs::compress
