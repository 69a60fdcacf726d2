// The one ranged GET with resume, behind RegistryClient::stream_blob and read_blob_range: blob
// bytes [from, end) (end unset: to the blob's end) in order to `sink`, from one endpoint. A
// connection cut in the middle of the body, or a 206 shorter than asked, is resumed with Range
// from the byte reached. An attempt that delivered kMinProgress bytes (16 KiB) or more made
// progress: it is resumed at once and does not count; only attempts that deliver less use up the
// retry budget (max_attempts in a row), within `deadline` and within `idle_limit` of the last
// progress. A server that ignores Range (200) is read from the blob's start, the bytes before
// `from` skipped. Thread-safe as EndpointSession is; one call per transfer.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "endpoint_session.hpp"

namespace ocifs::registry {

struct RangedGet {
  std::string digest;
  std::uint64_t from = 0;
  std::optional<std::uint64_t> end;
  std::function<Result<void>(std::span<const std::byte>)> sink;  // an error stops, and is returned
  std::function<bool()> cancelled;                               // polled about once a second
  Deadline deadline = kNoDeadline;
  std::chrono::milliseconds idle_limit{120'000};
  std::string_view verb = "read";  // for messages: "read", "stream"
  bool whole_reads = false;        // a read of a known length: warn once about servers ignoring Range
};

// Moves `pos` (the next byte to deliver, get.from at first) on as bytes arrive from `ep`, and
// returns the offset reached: `end`, or the blob's end where that comes first. Sets `final` for
// errors another endpoint cannot fix (the sink failed, or the transfer was cancelled); another
// endpoint resumes at `pos`.
Result<std::uint64_t> ranged_get(ClientShared& shared, EndpointSession& ep, const RangedGet& get,
                                 std::uint64_t& pos, bool& final);

}  // namespace ocifs::registry
