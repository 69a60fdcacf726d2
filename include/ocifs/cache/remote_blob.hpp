// RemoteBlob: where CachedBlobSource fetches the bytes of one blob it does not have — a
// registry (RegistryRemoteBlob), or an in-memory fake in the tests.
// Implementations must be thread-safe: range reads come from several FUSE threads at once,
// concurrently with one stream.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>

#include "ocifs/util/result.hpp"

namespace ocifs::cache {

class RemoteBlob {
 public:
  using Sink = std::function<Result<void>(std::span<const std::byte>)>;

  virtual ~RemoteBlob() = default;
  // Exactly buf.size() bytes at `offset` (fewer only at the end of the blob), within a deadline.
  virtual Result<std::size_t> read_range(std::uint64_t offset, std::span<std::byte> buf) = 0;
  // Bytes [from, to) in order to `sink`, in pieces of any size; a sink error stops the stream
  // and is returned. Asks for no more than that: bytes the sink does not want are bandwidth
  // wasted. Should call the sink at least every few seconds while data flows, and poll
  // `cancelled` about once a second even when nothing flows (true: stop and fail).
  virtual Result<void> stream(std::uint64_t from, std::uint64_t to, const Sink& sink,
                              const std::function<bool()>& cancelled) = 0;
  // For messages: "ghcr.io/org/app@sha256:…".
  virtual std::string describe() const = 0;
};

}  // namespace ocifs::cache
