#include "ranged_get.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "ocifs/registry/registry_url.hpp"
#include "registry_response.hpp"

namespace ocifs::registry {

namespace {

// An attempt of a ranged GET that delivered at least this much made progress: it is resumed at
// once and is not a failure (a proxy that cuts every answer after 64 KiB still gets the blob
// through). Less is a failed attempt, so a server that closes after every few bytes is given up
// on after max_attempts rather than read a few bytes per connection.
constexpr std::uint64_t kMinProgress = 16 << 10;
// Bytes past the requested range a server may send and still have them read (and dropped), so
// that its connection can be reused: 64 KiB take 5 ms at 100 Mbit/s, less than the handshake of
// a new TLS connection; a server sending more (a whole blob for a range) is cut off.
constexpr std::uint64_t kMaxDiscard = 64 * 1024;

}  // namespace

Result<std::uint64_t> ranged_get(ClientShared& shared, EndpointSession& ep, const RangedGet& get,
                                 std::uint64_t& pos, bool& final) {
  auto fresh_budget = [&] {
    return RetryBudget(util::earliest(get.deadline, Clock::now() + get.idle_limit),
                       shared.options.max_attempts, &shared.retries);
  };
  RetryBudget budget = fresh_budget();
  while (!get.end || pos < *get.end) {
    std::string context = get.end ? fmt::format("cannot {} blob {} at offset {} ({} bytes) of {}", get.verb,
                                                get.digest, pos, *get.end - pos, ep.endpoint().str())
                                  : fmt::format("cannot {} blob {} from offset {} of {}", get.verb,
                                                get.digest, pos, ep.endpoint().str());
    const std::uint64_t start = pos;
    bool checked = false;
    std::uint64_t skip = 0, discarded = 0;
    std::optional<std::uint64_t> total;
    std::optional<Error> sink_error, range_error;
    Exchange x;
    x.path = blob_path(ep.endpoint().repository, get.digest);
    x.blob_digest = get.digest;
    if (get.end) {
      x.headers.push_back(fmt::format("Range: bytes={}-{}", pos, *get.end - 1));
    } else if (pos > 0) {
      x.headers.push_back(fmt::format("Range: bytes={}-", pos));
    }
    x.on_body = [&](const HttpResponse& head, std::span<const std::byte> chunk) {
      if (!checked) {
        checked = true;
        range_error = accept_range_head(head, pos, context, total, skip);
        if (range_error) return false;
        if (head.status != 206 && get.whole_reads && ep.first_range_warning()) {
          spdlog::warn("{} ignores Range requests (HTTP {}): reads of {} fetch the blob from its start",
                       ep.api_host(), head.status, ep.endpoint().str());
        }
      }
      if (skip > 0) {
        auto n = std::min<std::uint64_t>(skip, chunk.size());
        chunk = chunk.subspan(n);
        skip -= n;
        if (chunk.empty()) return true;
      }
      if (get.end && pos == *get.end) {
        // A range answer a little longer than asked is read to its end, so that the
        // connection stays reusable; a whole blob, or much more, is cut.
        discarded += chunk.size();
        return head.status == 206 && discarded <= kMaxDiscard;
      }
      if (get.end && chunk.size() > *get.end - pos) {
        discarded += chunk.size() - (*get.end - pos);
        chunk = chunk.first(static_cast<std::size_t>(*get.end - pos));
      }
      if (auto r = get.sink(chunk); !r) {
        sink_error = std::move(r).error();
        return false;
      }
      pos += chunk.size();
      if (get.end && pos == *get.end) return head.status == 206 && discarded <= kMaxDiscard;
      return true;
    };
    x.cancelled = get.cancelled;
    x.transfer_deadline = get.deadline;
    if (get.cancelled && get.cancelled()) {
      final = true;
      return make_error(std::errc::operation_canceled, "{}: cancelled", context);
    }
    auto sent = ep.send(x, budget);
    if (sink_error) {
      final = true;
      return *sink_error;
    }
    if (get.end && pos == *get.end) break;  // all of it, however the answer ended
    if (!sent) return std::move(sent).error().with_context(context);
    if (get.cancelled && get.cancelled()) {
      final = true;
      return make_error(std::errc::operation_canceled, "{}: cancelled", context);
    }
    auto& resp = *sent;
    if (range_error) return *range_error;
    const bool progressed = pos - start >= kMinProgress;
    if (progressed) budget = fresh_budget();
    if (!resp.transport_ok()) {
      if (progressed && resp.retryable_transport()) {
        spdlog::debug("{}: {}; resuming at offset {}", context, resp.transport_error, pos);
        shared.retries.fetch_add(1, std::memory_order_relaxed);  // a repeat, if not a failure
        continue;
      }
      if (resp.retryable_transport() && budget.wait_before_retry()) continue;
      return shared.transport_error(resp, budget).with_context(context);
    }
    if (resp.status == 206) {
      if (total && pos >= *total) break;  // the blob ends inside the range
      if (auto want = get.end ? get.end : total; want && pos < *want) {
        if (pos == start) return make_error(std::errc::io_error, "{}: an empty partial answer", context);
        if (!progressed && !budget.wait_before_retry()) {
          return make_error(std::errc::io_error, "{}: partial answers of {} bytes{}", context, pos - start,
                            attempts_note(budget));
        }
        continue;  // the server sent less than asked for: ask for the rest
      }
      break;
    }
    if (resp.status == 200) {
      if (skip > 0)
        return make_error(std::errc::io_error, "{}: the blob ends at offset {}", context, pos - skip);
      break;  // the whole blob, and it ended before `end`
    }
    if (resp.status == 416) {
      auto cr = parse_content_range(resp.header("content-range"));
      if (cr && cr->total && *cr->total > pos) {
        return make_error(std::errc::io_error, "{}: HTTP 416 for a range inside the blob ({} bytes)", context,
                          *cr->total);
      }
      break;  // at or past the end
    }
    return ep.status_error(resp, context, budget);
  }
  return pos;
}

}  // namespace ocifs::registry
