#include "ocifs/registry/registry_client.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "ocifs/oci/types.hpp"
#include "ocifs/registry/authenticator.hpp"
#include "ocifs/registry/credentials.hpp"
#include "ocifs/registry/http_client.hpp"
#include "ocifs/registry/registries_conf.hpp"
#include "ocifs/registry/registry_url.hpp"
#include "ocifs/registry/retry_budget.hpp"
#include "ocifs/registry/tls_settings.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/deadline_mutex.hpp"
#include "ocifs/util/sha256.hpp"
#include "ocifs/util/text.hpp"

#ifndef OCIFS_VERSION
#define OCIFS_VERSION "unknown"
#endif

namespace ocifs::registry {

namespace {

namespace mt = oci::media_type;

constexpr int kMaxRedirects = 10;
// An attempt of a ranged GET that delivered at least this much made progress: it is resumed at
// once and is not a failure (a proxy that cuts every answer after 64 KiB still gets the blob
// through). Less is a failed attempt, so a server that closes after every few bytes is given up
// on after max_attempts rather than read a few bytes per connection.
constexpr std::uint64_t kMinProgress = 16 << 10;
// Bytes past the requested range a server may send before the transfer is cut.
constexpr std::uint64_t kMaxDiscard = 64 * 1024;

const std::string kManifestAccept = fmt::format("Accept: {}, {}, {}, {}", mt::kOciManifest, mt::kOciIndex,
                                                mt::kDockerManifest, mt::kDockerManifestList);

bool is_redirect(long s) { return s == 301 || s == 302 || s == 303 || s == 307 || s == 308; }
bool is_retryable_status(long s) { return s == 429 || s == 500 || s == 502 || s == 503 || s == 504; }
bool is_success(long s) { return s >= 200 && s < 300; }

// Printable, one line, bounded: registry messages end up in our error messages.
std::string sanitize(std::string_view text, std::size_t limit = 200) {
  std::string out;
  for (unsigned char c : text) {
    if (out.size() >= limit) {
      out += "…";
      break;
    }
    out += (c < 0x20 || c == 0x7f) ? ' ' : static_cast<char>(c);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// The registry's JSON error ({"errors":[{"code","message"}]}), or a short text body; "" otherwise.
std::string error_detail(const HttpResponse& r) {
  if (r.body.empty()) return {};
  auto doc = nlohmann::json::parse(r.body, nullptr, false);
  if (!doc.is_discarded() && doc.is_object()) {
    std::string out;
    if (auto errors = doc.find("errors"); errors != doc.end() && errors->is_array()) {
      int n = 0;
      for (const auto& e : *errors) {
        if (!e.is_object() || ++n > 3) continue;
        auto field = [&](const char* k) {
          auto it = e.find(k);
          return it != e.end() && it->is_string() ? sanitize(it->get<std::string>()) : std::string();
        };
        auto code = field("code"), message = field("message");
        if (code.empty() && message.empty()) continue;
        if (!out.empty()) out += "; ";
        out += code.empty() ? message : message.empty() ? code : code + ": " + message;
      }
    }
    for (const char* k : {"message", "error", "details"}) {
      if (!out.empty()) break;
      if (auto it = doc.find(k); it != doc.end() && it->is_string()) out = sanitize(it->get<std::string>());
    }
    return out;
  }
  if (util::ascii_lower(r.header("content-type")).starts_with("text/plain")) {
    auto line = std::string_view(r.body).substr(0, r.body.find('\n'));
    return sanitize(line);
  }
  return {};
}

std::errc errc_for_status(long s) {
  switch (s) {
    case 401:
    case 403:
      return std::errc::permission_denied;
    case 404:
      return std::errc::no_such_file_or_directory;
    default:
      return std::errc::io_error;
  }
}

struct ContentRange {
  std::uint64_t first = 0, last = 0;
  std::optional<std::uint64_t> total;
};

// "bytes 100-199/1000", "bytes 100-199/*"; for 416 "bytes */1000" gives only the total.
std::optional<ContentRange> parse_content_range(std::string_view v) {
  auto num = [](std::string_view s) -> std::optional<std::uint64_t> {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return n;
  };
  if (!util::ascii_lower(v.substr(0, 6)).starts_with("bytes ")) return std::nullopt;
  v.remove_prefix(6);
  auto slash = v.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  ContentRange cr;
  auto total = v.substr(slash + 1);
  if (total != "*") {
    cr.total = num(total);
    if (!cr.total) return std::nullopt;
  }
  auto range = v.substr(0, slash);
  if (range == "*") return cr;
  auto dash = range.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto first = num(range.substr(0, dash)), last = num(range.substr(dash + 1));
  if (!first || !last || *last < *first) return std::nullopt;
  cr.first = *first;
  cr.last = *last;
  return cr;
}

// The head of the answer to a GET with `Range: bytes=pos-…`. A 206 must start at pos (its
// total, if given, is kept); any other success is the whole blob, of which the first pos bytes
// are to be skipped. An error when the 206 starts elsewhere.
std::optional<Error> accept_range_head(const HttpResponse& head, std::uint64_t pos, std::string_view context,
                                       std::optional<std::uint64_t>& total, std::uint64_t& skip) {
  if (head.status != 206) {
    skip = pos;
    return std::nullopt;
  }
  auto cr = parse_content_range(head.header("content-range"));
  if (!cr || cr->first != pos) {
    return make_error(std::errc::io_error, "{}: the registry answered range \"{}\"", context,
                      sanitize(head.header("content-range"), 80));
  }
  total = cr->total;
  return std::nullopt;
}

bool valid_tag(std::string_view tag) {
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (tag.empty() || tag.size() > 128 || !word(tag[0])) return false;
  return std::all_of(tag.begin(), tag.end(), [&](char c) { return word(c) || c == '.' || c == '-'; });
}

bool is_accepted_manifest(std::string_view t) {
  return t == mt::kOciManifest || t == mt::kOciIndex || t == mt::kDockerManifest ||
         t == mt::kDockerManifestList;
}

bool is_schema1(std::string_view t) { return t == mt::kDockerSchema1 || t == mt::kDockerSchema1Signed; }

// One place to pull from, and what was learned about it.
struct EndpointState {
  Endpoint endpoint;
  std::string api_host;
  bool http_only = false;     // --plain-http
  bool http_allowed = false;  // --plain-http, insecure or loopback: HTTP when HTTPS fails
  TlsSettings tls;
  std::unique_ptr<Authenticator> auth;

  // Guards the ping state and is held across the ping (waiters give up at their deadline);
  // `ready` is also read without it (set once, after `base`).
  util::DeadlineMutex mutex;
  std::atomic<bool> ready{false};
  std::string base;  // "https://host" once the ping answered
  std::optional<Error> ping_error;
  Clock::time_point retry_ping_after{};

  std::mutex urls_mutex;                         // guards blob_urls
  std::map<std::string, std::string> blob_urls;  // digest → the URL the registry redirected to
  std::atomic<bool> warned_no_ranges{false};
};

struct Exchange {
  std::string method = "GET";
  std::string path;  // on the endpoint: "/v2/…"
  std::vector<std::string> headers;
  std::string blob_digest;  // set: use and maintain the resolved-URL cache, count blob bytes
  std::function<bool(const HttpResponse&, std::span<const std::byte>)> on_body;
  std::size_t max_body = 64 * 1024;
  std::function<bool()> cancelled;  // HttpRequest::cancelled
  // The transfer's own deadline where it is not the budget's: a stream's attempt may run as long
  // as data flows, while its retries are bounded by the time since the last progress.
  std::optional<Deadline> transfer_deadline;
};

}  // namespace

struct RegistryClient::Impl {
  oci::Reference ref;
  RegistryOptions options;
  HttpClient http{"ocifs/" OCIFS_VERSION};
  std::vector<std::unique_ptr<EndpointState>> endpoints;
  std::atomic<std::size_t> preferred{0};

  std::atomic<std::uint64_t> blob_bytes{0}, requests{0}, retries{0};

  std::mutex tls_mutex;  // guards other_tls
  std::map<std::string, std::unique_ptr<TlsSettings>> other_tls;

  // TLS settings for a host that is not an endpoint (a CDN, a token server): certs.d applies too.
  const TlsSettings* tls_for(std::string_view authority) {
    for (const auto& ep : endpoints) {
      if (ep->api_host == authority) return &ep->tls;
    }
    std::lock_guard lock(tls_mutex);
    auto& slot = other_tls[std::string(authority)];
    if (!slot) {
      auto loaded = TlsSettings::load(authority, {}, options.certs_dirs, options.tls_verify);
      if (!loaded) {
        spdlog::warn("{}; using the system CAs for {}", loaded.error().message, authority);
        slot = std::make_unique<TlsSettings>();
        slot->verify = options.tls_verify;
      } else {
        slot = std::make_unique<TlsSettings>(std::move(loaded).value());
      }
    }
    return slot.get();
  }

  std::optional<std::string> cached_url(EndpointState& ep, const std::string& digest) {
    std::lock_guard lock(ep.urls_mutex);
    auto it = ep.blob_urls.find(digest);
    if (it == ep.blob_urls.end()) return std::nullopt;
    return it->second;
  }
  void remember_url(EndpointState& ep, const std::string& digest, std::string url) {
    std::lock_guard lock(ep.urls_mutex);
    ep.blob_urls.insert_or_assign(digest, std::move(url));
  }
  void forget_url(EndpointState& ep, const std::string& digest) {
    std::lock_guard lock(ep.urls_mutex);
    ep.blob_urls.erase(digest);
  }

  HttpRequest base_request(const std::string& url, const RetryBudget& budget) {
    HttpRequest req;
    req.url = url;
    req.connect_timeout = options.connect_timeout;
    req.deadline = budget.deadline();
    req.stall_time = options.stall_timeout;
    return req;
  }

  static std::string attempts_note(const RetryBudget& budget) {
    return budget.failures() > 1 ? fmt::format(" (after {} attempts)", budget.failures()) : std::string();
  }

  Error transport_error(const HttpResponse& r, const RetryBudget& budget) {
    std::string why = r.transport_error;
    auto code = std::errc::io_error;
    if (budget.deadline() != kNoDeadline &&
        Clock::now() + std::chrono::milliseconds(20) >= budget.deadline()) {
      why = fmt::format("no complete answer within the deadline ({})", why);
      code = std::errc::timed_out;
    }
    return Error{code, why + attempts_note(budget)};
  }

  Error status_error(const HttpResponse& r, std::string_view context, EndpointState& ep,
                     const RetryBudget& budget) {
    std::string why = fmt::format("HTTP {}", r.status);
    if (auto detail = error_detail(r); !detail.empty()) why += fmt::format(" ({})", detail);
    if (r.status == 401) why += ": " + ep.auth->unauthorized_reason();
    if (r.status == 429) {
      why += ": rate limited by the registry";
      if (auto after = r.header("retry-after"); !after.empty()) {
        why += fmt::format("; it asks to retry after {}", sanitize(after, 40));
      }
    }
    if (is_redirect(r.status)) why += ": a redirect without a Location header";
    return Error{errc_for_status(r.status), fmt::format("{}: {}{}", context, why, attempts_note(budget))};
  }

  // GET /v2/ once per endpoint: decides https or http and keeps the challenge.
  Result<void> ensure_ready(EndpointState& ep, const RetryBudget& request) {
    if (ep.ready.load(std::memory_order_acquire)) return util::success();
    // One ping at a time; the others wait for its answer, each until its own deadline.
    std::unique_lock lock(ep.mutex, std::defer_lock);
    if (!util::lock_until(lock, request.deadline())) {
      return make_error(std::errc::timed_out, "cannot reach registry {}: no answer to the ping within the deadline",
                        ep.api_host);
    }
    if (ep.ready.load(std::memory_order_relaxed)) return util::success();
    // Bounded even for a request without a deadline of its own (a stream).
    RetryBudget budget(util::earliest(request.deadline(), Clock::now() + options.request_deadline),
                       options.max_attempts, &retries);
    if (ep.ping_error && Clock::now() < ep.retry_ping_after) return *ep.ping_error;
    std::vector<bool> schemes;  // plain_http?
    if (ep.http_only) {
      schemes = {true};
    } else if (ep.http_allowed) {
      schemes = {false, true};
    } else {
      schemes = {false};
    }
    auto fail = [&](Error e) -> Result<void> {
      // Why 5 s: threads arriving together do not all repeat a failed ping; a later read retries.
      ep.ping_error = e;
      ep.retry_ping_after = Clock::now() + std::chrono::seconds(5);
      return e;
    };
    while (true) {
      std::string why;
      std::optional<std::chrono::milliseconds> retry_after;
      bool retryable = false;
      for (bool plain : schemes) {
        std::string base = base_url(plain, ep.api_host);
        auto req = base_request(base + "/v2/", budget);
        req.tls = &ep.tls;
        auto r = http.perform(req);
        requests.fetch_add(1, std::memory_order_relaxed);
        if (r.transport_ok() && r.status == 404) {
          return fail(make_error(std::errc::protocol_error,
                                 "{} does not serve the registry API (GET {}/v2/ answered 404)", ep.api_host,
                                 base));
        }
        if (r.transport_ok() && !is_retryable_status(r.status)) {
          ep.base = base;
          ep.auth->set_challenges(r.status == 401
                                      ? AuthChallenge::parse_all(r.header_values("www-authenticate"))
                                      : std::vector<AuthChallenge>{});
          ep.ready.store(true, std::memory_order_release);
          ep.ping_error.reset();
          if (plain && !ep.http_only) spdlog::debug("{}: HTTPS failed, using plain HTTP", ep.api_host);
          return util::success();
        }
        if (!why.empty()) why += "; ";
        if (r.transport_ok()) {
          why += fmt::format("GET {}/v2/ answered HTTP {}", base, r.status);
          retryable = true;
          retry_after = parse_retry_after(r.header("retry-after"), std::chrono::system_clock::now());
        } else {
          why += fmt::format("{}: {}", base, r.transport_error);
          if (r.certificate_problem()) {
            auto dir = options.certs_dirs.substr(0, options.certs_dirs.find(':'));
            why += fmt::format(" (trust its CA with {}/{}/ca.crt, or --tls-verify=false)",
                               dir.empty() ? "/etc/containers/certs.d" : dir, ep.api_host);
          }
          retryable = retryable || r.retryable_transport();
        }
      }
      if (retryable && budget.wait_before_retry(retry_after)) continue;
      return fail(make_error(std::errc::io_error, "cannot reach registry {}: {}{}", ep.api_host, why,
                             attempts_note(budget)));
    }
  }

  // One request with authentication, redirects and retries. Returns the final answer (any
  // status the caller must judge) or an error for transport failures; an answer whose body was
  // partly delivered before the connection failed is returned as is (the caller resumes).
  Result<HttpResponse> send(EndpointState& ep, const Exchange& x, RetryBudget& budget) {
    OCIFS_TRY(ensure_ready(ep, budget));
    int auth_retries = 0;
    bool cached_url_retried = false;
    while (true) {
      std::optional<std::string> cached;
      if (!x.blob_digest.empty()) cached = cached_url(ep, x.blob_digest);
      std::string url = cached ? *cached : ep.base + x.path;
      std::string authz;
      if (!cached) {
        OCIFS_ASSIGN(authz, ep.auth->authorization(budget.deadline()));
      }

      HttpResponse resp;
      bool redirected = false, at_registry = false;
      for (int hop = 0;; ++hop) {
        auto req = base_request(url, budget);
        if (x.transfer_deadline) req.deadline = *x.transfer_deadline;
        req.method = x.method;
        req.headers = x.headers;
        req.on_body = x.on_body;
        req.max_body = x.max_body;
        req.cancelled = x.cancelled;
        at_registry = same_origin(url, ep.base);
        // Authorization goes to the registry's own origin only: never to a CDN or object store.
        if (at_registry && !authz.empty()) req.headers.push_back("Authorization: " + authz);
        req.tls = at_registry ? &ep.tls : tls_for(url_authority(url));
        resp = http.perform(req);
        requests.fetch_add(1, std::memory_order_relaxed);
        if (!resp.transport_ok() || !is_redirect(resp.status)) break;
        auto location = resp.header("location");
        if (location.empty()) break;
        if (hop == kMaxRedirects) {
          return make_error(std::errc::protocol_error, "more than {} redirects (last to {})", kMaxRedirects,
                            redact_url(url));
        }
        OCIFS_ASSIGN(url, resolve_location(url, location));
        redirected = true;
      }
      if (!x.blob_digest.empty() && is_success(resp.status)) {
        blob_bytes.fetch_add(resp.body_seen, std::memory_order_relaxed);
      }
      if (!resp.transport_ok()) {
        if (resp.aborted || resp.body_truncated || resp.delivered > 0) return resp;
        if (cached) forget_url(ep, x.blob_digest);
        if (resp.retryable_transport() && budget.wait_before_retry()) continue;
        return transport_error(resp, budget);
      }
      if (resp.status == 401 && at_registry) {
        // Expired or revoked token (also in the middle of a series of range reads), or a scope
        // the token lacks: fetch a new one and try again, twice at most.
        if (auth_retries < 2 && ep.auth->on_unauthorized(resp, authz)) {
          ++auth_retries;
          continue;
        }
        return resp;
      }
      if (cached && !cached_url_retried &&
          (resp.status == 400 || resp.status == 401 || resp.status == 403 || resp.status == 404 ||
           resp.status == 410)) {
        // The signed URL expired (or was revoked): ask the registry for a fresh one.
        forget_url(ep, x.blob_digest);
        cached_url_retried = true;
        continue;
      }
      if (is_retryable_status(resp.status)) {
        if (budget.wait_before_retry(
                parse_retry_after(resp.header("retry-after"), std::chrono::system_clock::now())))
          continue;
        return resp;
      }
      // Only URLs on another origin are kept: they are the signed CDN URLs that save a round trip
      // to the registry (and are used without Authorization).
      if (redirected && !at_registry && !x.blob_digest.empty() && is_success(resp.status)) {
        remember_url(ep, x.blob_digest, url);
      }
      return resp;
    }
  }

  // One ranged GET with resume, behind stream_blob and read_blob_range: blob bytes [from, end)
  // (end unset: to the blob's end) in order to `sink`. A connection cut in the middle of the
  // body, or a 206 shorter than asked, is resumed with Range from the byte reached. An attempt
  // that delivered kMinProgress bytes or more made progress: it is resumed at once and does not
  // count; only attempts that deliver less use up the retry budget (max_attempts in a row),
  // within `deadline` and within `idle_limit` of the last progress. A server that ignores Range
  // (200) is read from the blob's start, the bytes before `from` skipped. Returns the offset
  // reached: `end`, or the blob's end where that comes first.
  struct RangedGet {
    std::string digest;
    std::uint64_t from = 0;
    std::optional<std::uint64_t> end;
    std::function<Result<void>(std::span<const std::byte>)> sink;  // an error stops, and is returned
    std::function<bool()> cancelled;                                 // polled about once a second
    Deadline deadline = kNoDeadline;
    std::chrono::milliseconds idle_limit{120'000};
    std::string_view verb = "read";  // for messages: "read", "stream"
    bool whole_reads = false;        // a read of a known length: warn once about servers ignoring Range
  };

  Result<std::uint64_t> ranged_get(const RangedGet& get) {
    std::uint64_t pos = get.from;
    std::function<Result<std::uint64_t>(EndpointState&, bool&)> fn = [&](EndpointState& ep,
                                                                         bool& final) -> Result<std::uint64_t> {
      auto fresh_budget = [&] {
        return RetryBudget(util::earliest(get.deadline, Clock::now() + get.idle_limit), options.max_attempts, &retries);
      };
      RetryBudget budget = fresh_budget();
      while (!get.end || pos < *get.end) {
        std::string context = get.end ? fmt::format("cannot {} blob {} at offset {} ({} bytes) of {}", get.verb,
                                                    get.digest, pos, *get.end - pos, ep.endpoint.str())
                                      : fmt::format("cannot {} blob {} from offset {} of {}", get.verb, get.digest,
                                                    pos, ep.endpoint.str());
        const std::uint64_t start = pos;
        bool checked = false;
        std::uint64_t skip = 0, discarded = 0;
        std::optional<std::uint64_t> total;
        std::optional<Error> sink_error, range_error;
        Exchange x;
        x.path = blob_path(ep.endpoint.repository, get.digest);
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
            if (head.status != 206 && get.whole_reads && !ep.warned_no_ranges.exchange(true)) {
              spdlog::warn("{} ignores Range requests (HTTP {}): reads of {} fetch the blob from its start",
                           ep.api_host, head.status, ep.endpoint.str());
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
        auto sent = send(ep, x, budget);
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
            retries.fetch_add(1, std::memory_order_relaxed);  // a repeat, if not a failure
            continue;
          }
          if (resp.retryable_transport() && budget.wait_before_retry()) continue;
          return transport_error(resp, budget).with_context(context);
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
          if (skip > 0) return make_error(std::errc::io_error, "{}: the blob ends at offset {}", context, pos - skip);
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
        return status_error(resp, context, ep, budget);
      }
      return pos;
    };
    return over_endpoints(true, fn);
  }

  // Runs `fn` on the endpoints that may serve the request: the one that answered last first, then
  // the others in configured order (mirrors, then the primary). `fn` sets `final` for errors that
  // another endpoint cannot fix (the caller's sink failed).
  template <class T>
  Result<T> over_endpoints(bool by_digest, const std::function<Result<T>(EndpointState&, bool& final)>& fn) {
    std::vector<std::size_t> order;
    std::size_t first = preferred.load(std::memory_order_relaxed);
    if (first < endpoints.size() && endpoints[first]->endpoint.serves(by_digest)) order.push_back(first);
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
      if (i != first && endpoints[i]->endpoint.serves(by_digest)) order.push_back(i);
    }
    std::optional<Error> primary_error, last_error;
    std::vector<std::string> failed;
    for (std::size_t i : order) {
      bool final = false;
      auto r = fn(*endpoints[i], final);
      if (r) {
        preferred.store(i, std::memory_order_relaxed);
        return r;
      }
      if (final) return r;
      const auto& ep = endpoints[i]->endpoint;
      if (order.size() > 1)
        spdlog::info("{}: {}", ep.mirror ? "mirror failed" : "registry failed", r.error().message);
      failed.push_back(ep.str());
      if (!ep.mirror) primary_error = r.error();
      last_error = std::move(r).error();
    }
    Error e = primary_error ? *primary_error : *last_error;
    if (failed.size() > 1) e.message += fmt::format(" (tried {})", fmt::join(failed, ", "));
    return e;
  }
};

RegistryClient::RegistryClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RegistryClient::~RegistryClient() = default;

Result<std::shared_ptr<RegistryClient>> RegistryClient::create(const oci::Reference& ref,
                                                               RegistryOptions options) {
  if (ref.registry.empty() || ref.repository.empty()) {
    return make_error(std::errc::invalid_argument,
                      "cannot use registry reference \"{}\": no registry or repository", ref.str());
  }
  auto impl = std::make_unique<Impl>();
  impl->ref = ref;
  impl->options = std::move(options);
  const auto& opt = impl->options;

  OCIFS_ASSIGN(auto conf,
               RegistriesConf::load(RegistriesConfFiles::locate_from_process(opt.registries_conf)));
  OCIFS_ASSIGN(auto endpoints, conf.endpoints(ref));

  auto lookup = std::make_shared<CredentialLookup>(
      opt.creds, auth_file_paths(CredentialEnvironment::from_process(opt.authfile)));
  Impl* raw = impl.get();
  for (auto& e : endpoints) {
    auto st = std::make_unique<EndpointState>();
    st->api_host = e.api_host();
    st->http_only = opt.plain_http;
    st->http_allowed = opt.plain_http || e.insecure || is_loopback_host(st->api_host);
    OCIFS_ASSIGN(st->tls,
                 TlsSettings::load(st->api_host, e.registry, opt.certs_dirs, opt.tls_verify && !e.insecure));
    if (!st->tls.files.empty())
      spdlog::debug("{}: TLS files {}", st->api_host, fmt::join(st->tls.files, ", "));
    Authenticator::Context ctx;
    ctx.http = &raw->http;
    ctx.tls_for = [raw](std::string_view authority) { return raw->tls_for(authority); };
    ctx.connect_timeout = opt.connect_timeout;
    ctx.request_deadline = opt.request_deadline;
    ctx.max_attempts = opt.max_attempts;
    ctx.requests = &raw->requests;
    ctx.retries = &raw->retries;
    st->auth = std::make_unique<Authenticator>(std::move(ctx),
                                               fmt::format("{}/{}", st->api_host, e.repository), e.repository,
                                               [lookup, registry = e.registry, repository = e.repository] {
                                                 return lookup->find(registry, repository);
                                               });
    st->endpoint = std::move(e);
    impl->endpoints.push_back(std::move(st));
  }
  return std::shared_ptr<RegistryClient>(new RegistryClient(std::move(impl)));
}

Result<FetchedManifest> RegistryClient::get_manifest(std::string_view tag_or_digest) {
  auto& d = *impl_;
  bool by_digest = tag_or_digest.find(':') != std::string_view::npos;
  if (by_digest) {
    auto parsed = oci::Digest::parse(tag_or_digest);
    if (!parsed) return parsed.error().with_context(fmt::format("cannot fetch manifest of {}", describe()));
  } else if (!valid_tag(tag_or_digest)) {
    return make_error(std::errc::invalid_argument, "cannot fetch manifest \"{}\" of {}: not a valid tag",
                      sanitize(tag_or_digest), describe());
  }
  std::string reference(tag_or_digest);
  auto deadline = Clock::now() + d.options.request_deadline;
  std::function<Result<FetchedManifest>(EndpointState&, bool&)> fn =
      [&](EndpointState& ep, bool& final) -> Result<FetchedManifest> {
    std::string context = fmt::format("cannot fetch manifest {} of {}", reference, ep.endpoint.str());
    RetryBudget budget(deadline, d.options.max_attempts, &d.retries);
    Exchange x;
    x.path = manifest_path(ep.endpoint.repository, reference);
    x.headers = {kManifestAccept};
    x.max_body = kMaxManifestSize;
    auto sent = d.send(ep, x, budget);
    if (!sent) return std::move(sent).error().with_context(context);
    auto& resp = *sent;
    if (resp.body_truncated && is_success(resp.status)) {
      return make_error(std::errc::file_too_large, "{}: larger than the limit of {} bytes", context,
                        kMaxManifestSize);
    }
    if (!resp.transport_ok()) return d.transport_error(resp, budget).with_context(context);
    if (resp.status != 200) return d.status_error(resp, context, ep, budget);

    std::string content_type = util::ascii_lower(resp.header("content-type"));
    content_type = content_type.substr(0, content_type.find(';'));
    while (!content_type.empty() && content_type.back() == ' ') content_type.pop_back();
    std::string media_type;
    auto schema1 = [&](std::string_view type) {
      final = true;
      return make_error(std::errc::not_supported,
                        "{}: it is a Docker schema 1 manifest ({}), an obsolete format ocifs does not read; "
                        "push the image again with a current docker, podman, buildah or skopeo",
                        context, type);
    };
    if (is_schema1(content_type)) return schema1(content_type);
    if (is_accepted_manifest(content_type)) {
      media_type = content_type;
    } else {
      // Some registries answer application/json or octet-stream: the document says what it is.
      auto doc = nlohmann::json::parse(resp.body, nullptr, false);
      if (doc.is_discarded() || !doc.is_object()) {
        return make_error(std::errc::protocol_error, "{}: the answer ({}) is not a JSON manifest", context,
                          content_type.empty() ? "no Content-Type" : sanitize(content_type));
      }
      auto mt_it = doc.find("mediaType");
      std::string declared = mt_it != doc.end() && mt_it->is_string() ? mt_it->get<std::string>() : "";
      auto sv = doc.find("schemaVersion");
      if (is_schema1(declared) || (sv != doc.end() && sv->is_number() && sv->get<double>() == 1)) {
        return schema1(declared.empty() ? std::string(mt::kDockerSchema1) : declared);
      }
      if (is_accepted_manifest(declared)) {
        media_type = declared;
      } else if (declared.empty() && doc.contains("manifests")) {
        media_type = mt::kOciIndex;
      } else if (declared.empty() && doc.contains("config") && doc.contains("layers")) {
        media_type = mt::kOciManifest;
      } else {
        return make_error(std::errc::not_supported, "{}: unsupported manifest type \"{}\"", context,
                          sanitize(declared.empty() ? content_type : declared));
      }
    }
    std::string digest = "sha256:" + util::sha256_hex(resp.body);
    if (by_digest && digest != reference) {
      return make_error(std::errc::io_error, "{}: the registry sent a manifest whose digest is {}", context,
                        digest);
    }
    if (auto header = resp.header("docker-content-digest"); !header.empty() && header != digest) {
      spdlog::debug("{}: Docker-Content-Digest {} differs from the digest of the bytes {}", context,
                    sanitize(header, 80), digest);
    }
    return FetchedManifest{std::move(media_type), std::move(digest), std::move(resp.body)};
  };
  return d.over_endpoints(by_digest, fn);
}

Result<std::string> RegistryClient::get_blob(std::string_view digest_text, std::uint64_t max_size) {
  auto& d = *impl_;
  auto parsed = oci::Digest::parse(digest_text);
  if (!parsed) return parsed.error().with_context(fmt::format("cannot fetch blob of {}", describe()));
  std::string digest(digest_text);
  auto deadline = Clock::now() + d.options.request_deadline;
  std::function<Result<std::string>(EndpointState&, bool&)> fn = [&](EndpointState& ep,
                                                                     bool&) -> Result<std::string> {
    std::string context = fmt::format("cannot fetch blob {} of {}", digest, ep.endpoint.str());
    RetryBudget budget(deadline, d.options.max_attempts, &d.retries);
    while (true) {
      std::string data;
      bool too_large = false;
      Exchange x;
      x.path = blob_path(ep.endpoint.repository, digest);
      x.blob_digest = digest;
      x.on_body = [&](const HttpResponse& head, std::span<const std::byte> chunk) {
        if (data.empty()) {
          auto length = head.header("content-length");
          if (!length.empty() && std::strtoull(std::string(length).c_str(), nullptr, 10) > max_size) {
            too_large = true;
            return false;
          }
        }
        if (data.size() + chunk.size() > max_size) {
          too_large = true;
          return false;
        }
        data.append(reinterpret_cast<const char*>(chunk.data()), chunk.size());
        return true;
      };
      auto sent = d.send(ep, x, budget);
      if (!sent) return std::move(sent).error().with_context(context);
      auto& resp = *sent;
      if (too_large) {
        return make_error(std::errc::file_too_large, "{}: larger than the limit of {} bytes", context,
                          max_size);
      }
      if (!resp.transport_ok()) {
        // Cut short: a small blob is simply fetched again.
        if (resp.retryable_transport() && budget.wait_before_retry()) continue;
        return d.transport_error(resp, budget).with_context(context);
      }
      if (resp.status != 200) return d.status_error(resp, context, ep, budget);
      auto got = "sha256:" + util::sha256_hex(data);
      if (got != digest) {
        return make_error(std::errc::io_error, "{}: the registry sent {} bytes whose digest is {}", context,
                          data.size(), got);
      }
      return data;
    }
  };
  auto r = d.over_endpoints(true, fn);
  if (!r) return std::move(r).error();
  return r;
}

Result<void> RegistryClient::stream_blob(
    std::string_view digest_text, std::uint64_t from,
    const std::function<Result<void>(std::span<const std::byte>)>& sink,
    const std::function<bool()>& cancelled, std::optional<std::uint64_t> end) {
  auto parsed = oci::Digest::parse(digest_text);
  if (!parsed) return parsed.error().with_context(fmt::format("cannot stream blob of {}", describe()));
  if (end && *end <= from) return util::success();
  Impl::RangedGet get;
  get.digest = std::string(digest_text);
  get.from = from;
  get.end = end;
  get.sink = sink;
  get.cancelled = cancelled;
  get.verb = "stream";
  // No overall deadline (a layer may be large and the link slow), but no wait without one: an
  // attempt ends after stall_timeout without data, and the stream fails after request_deadline
  // without progress.
  get.idle_limit = impl_->options.request_deadline;
  auto r = impl_->ranged_get(get);
  if (!r) return std::move(r).error();
  return util::success();
}

Result<std::size_t> RegistryClient::read_blob_range(std::string_view digest_text, std::uint64_t offset,
                                                    std::span<std::byte> buf) {
  auto parsed = oci::Digest::parse(digest_text);
  if (!parsed) {
    return Error{std::errc::io_error,
                 parsed.error().with_context(fmt::format("cannot read blob of {}", describe())).message};
  }
  if (buf.empty()) return std::size_t{0};
  std::size_t got = 0;
  Impl::RangedGet get;
  get.digest = std::string(digest_text);
  get.from = offset;
  get.end = offset + buf.size();
  get.sink = [&](std::span<const std::byte> chunk) -> Result<void> {
    std::memcpy(buf.data() + got, chunk.data(), chunk.size());
    got += chunk.size();
    return util::success();
  };
  get.verb = "read";
  get.whole_reads = true;
  // A read's deadline: its own, and the thread's (the FUSE request it serves), whichever is first.
  get.deadline = util::earliest(Clock::now() + impl_->options.read_deadline, util::current_deadline());
  get.idle_limit = impl_->options.read_deadline;
  auto r = impl_->ranged_get(get);
  if (!r) {
    auto code = r.error().code == std::errc::timed_out ? std::errc::timed_out : std::errc::io_error;
    return Error{code, std::move(r).error().message};
  }
  return got;
}

TransferStats RegistryClient::stats() const {
  return TransferStats{impl_->blob_bytes.load(), impl_->requests.load(), impl_->retries.load()};
}

std::string RegistryClient::describe() const { return impl_->endpoints.back()->endpoint.str(); }

}  // namespace ocifs::registry
