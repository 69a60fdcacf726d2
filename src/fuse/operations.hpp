// The low-level op table. Each handler decodes the request, asks the core, replies.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <unordered_map>

#include "ocifs/fuse/fuse_server.hpp"
#include "ocifs/image/content_reader.hpp"
#include "ocifs/util/work_pool.hpp"

namespace ocifs::image {
class Image;
}

namespace ocifs::fuse {

// The session's userdata: the image, the read pool, and what init() negotiated.
struct SessionState {
  SessionState(const image::Image& served, const MountOptions& options);

  const image::Image& image;
  // A read may wait (a fetch, a verification), and lookups, getattr, readdir and readlink must
  // answer from the tree meanwhile: at most max_inline_reads reads (half the request threads)
  // are served on request threads at once; the others run on this pool.
  util::WorkPool reads;
  std::atomic<unsigned> inline_reads{0};
  const unsigned max_inline_reads;
  // From a read's arrival to its answer; then EIO (std::errc::timed_out inside).
  const std::chrono::milliseconds read_timeout;
  // Per-open-file state is only worth a FUSE_OPEN round trip when a layer is read frame by frame
  // (zstd): gzip spans are shared by all readers, tar needs none.
  const bool open_handles_wanted;
  // The kernel supports opens without a message ("ENOSYS means success"): files then open with
  // keep_cache and directories with cache_dir and keep_cache, as we would answer anyway, and
  // reading a small file costs one request instead of three.
  bool zero_message_open = false;
  bool zero_message_opendir = false;

  // Open files by file handle, (server generation << 40) | a counter. The kernel keeps handles
  // across a server's death: one from an earlier server is unknown here and gets fresh state
  // on its first read (the state is only a decoding position), and goes at its release.
  using OpenFilePtr = std::shared_ptr<image::ContentReader::OpenFile>;
  std::uint64_t open_file(std::uint32_t index);
  OpenFilePtr file_for(std::uint64_t handle, std::uint32_t index);
  void release_file(std::uint64_t handle);

  const std::string supervision_json;  // MountOptions::supervision_json

 private:
  std::mutex handles_mutex_;
  std::unordered_map<std::uint64_t, OpenFilePtr> handles_;
  std::uint64_t next_handle_;
};

const fuse_lowlevel_ops& operations();

}  // namespace ocifs::fuse
