#include "endpoint_session.hpp"

#include <spdlog/spdlog.h>

#include "ocifs/registry/auth_challenge.hpp"
#include "ocifs/registry/registry_url.hpp"
#include "registry_response.hpp"

namespace ocifs::registry {

namespace {

// Redirects followed for one request: a registry sends one (to its storage or a CDN), curl's
// default limit is 50; 10 ends a loop soon and leaves room for chains of mirrors.
constexpr int kMaxRedirects = 10;
// A failed ping is answered from memory this long: threads arriving together do not all repeat
// it, and a later read retries.
constexpr auto kPingRetryAfter = std::chrono::seconds(5);
// A deadline this close counts as passed: the transfer ended because of it.
constexpr auto kDeadlineSlack = std::chrono::milliseconds(20);

}  // namespace

const TlsSettings* ClientShared::tls_for(std::string_view authority) {
  for (const auto& [host, tls] : endpoint_tls) {
    if (host == authority) return tls;
  }
  std::lock_guard lock(tls_mutex_);
  auto& slot = other_tls_[std::string(authority)];
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

HttpRequest ClientShared::request(const std::string& url, const RetryBudget& budget) const {
  HttpRequest req;
  req.url = url;
  req.connect_timeout = options.connect_timeout;
  req.deadline = budget.deadline();
  req.stall_time = options.stall_timeout;
  return req;
}

std::string attempts_note(const RetryBudget& budget) {
  return budget.failures() > 1 ? fmt::format(" (after {} attempts)", budget.failures()) : std::string();
}

Error ClientShared::transport_error(const HttpResponse& r, const RetryBudget& budget) const {
  std::string why = r.transport_error;
  auto code = std::errc::io_error;
  if (budget.deadline() != kNoDeadline && Clock::now() + kDeadlineSlack >= budget.deadline()) {
    why = fmt::format("no complete answer within the deadline ({})", why);
    code = std::errc::timed_out;
  }
  return Error{code, why + attempts_note(budget)};
}

EndpointSession::EndpointSession(ClientShared& shared, Endpoint endpoint, TlsSettings tls,
                                 std::unique_ptr<Authenticator> auth)
    : shared_(shared),
      endpoint_(std::move(endpoint)),
      api_host_(endpoint_.api_host()),
      http_only_(shared.options.plain_http),
      http_allowed_(shared.options.plain_http || endpoint_.insecure || is_loopback_host(api_host_)),
      tls_(std::move(tls)),
      auth_(std::move(auth)) {}

Error EndpointSession::status_error(const HttpResponse& r, std::string_view context,
                                    const RetryBudget& budget) {
  std::string why = fmt::format("HTTP {}", r.status);
  if (auto detail = error_detail(r); !detail.empty()) why += fmt::format(" ({})", detail);
  if (r.status == 401) why += ": " + auth_->unauthorized_reason();
  if (r.status == 429) {
    why += ": rate limited by the registry";
    if (auto after = r.header("retry-after"); !after.empty()) {
      why += fmt::format("; it asks to retry after {}", sanitize(after, 40));
    }
  }
  if (is_redirect(r.status)) why += ": a redirect without a Location header";
  return Error{errc_for_status(r.status), fmt::format("{}: {}{}", context, why, attempts_note(budget))};
}

std::optional<std::string> EndpointSession::cached_url(const std::string& digest) {
  std::lock_guard lock(urls_mutex_);
  auto it = blob_urls_.find(digest);
  if (it == blob_urls_.end()) return std::nullopt;
  return it->second;
}

void EndpointSession::remember_url(const std::string& digest, std::string url) {
  std::lock_guard lock(urls_mutex_);
  blob_urls_.insert_or_assign(digest, std::move(url));
}

void EndpointSession::forget_url(const std::string& digest) {
  std::lock_guard lock(urls_mutex_);
  blob_urls_.erase(digest);
}

Result<void> EndpointSession::ensure_ready(const RetryBudget& request) {
  if (ready_.load(std::memory_order_acquire)) return util::success();
  // One ping at a time; the others wait for its answer, each until its own deadline.
  std::unique_lock lock(ping_mutex_, std::defer_lock);
  if (!util::lock_until(lock, request.deadline())) {
    return make_error(std::errc::timed_out,
                      "cannot reach registry {}: no answer to the ping within the deadline", api_host_);
  }
  if (ready_.load(std::memory_order_relaxed)) return util::success();
  // Bounded even for a request without a deadline of its own (a stream).
  RetryBudget budget(util::earliest(request.deadline(), Clock::now() + shared_.options.request_deadline),
                     shared_.options.max_attempts, &shared_.retries);
  if (ping_error_ && Clock::now() < retry_ping_after_) return *ping_error_;
  std::vector<bool> schemes;  // plain_http?
  if (http_only_) {
    schemes = {true};
  } else if (http_allowed_) {
    schemes = {false, true};
  } else {
    schemes = {false};
  }
  auto fail = [&](Error e) -> Result<void> {
    ping_error_ = e;
    retry_ping_after_ = Clock::now() + kPingRetryAfter;
    return e;
  };
  while (true) {
    std::string why;
    std::optional<std::chrono::milliseconds> retry_after;
    bool retryable = false;
    for (bool plain : schemes) {
      std::string base = base_url(plain, api_host_);
      auto req = shared_.request(base + "/v2/", budget);
      req.tls = &tls_;
      auto r = shared_.http.perform(req);
      shared_.requests.fetch_add(1, std::memory_order_relaxed);
      if (r.transport_ok() && r.status == 404) {
        return fail(make_error(std::errc::protocol_error,
                               "{} does not serve the registry API (GET {}/v2/ answered 404)", api_host_,
                               base));
      }
      if (r.transport_ok() && !is_retryable_status(r.status)) {
        base_ = base;
        auth_->set_challenges(r.status == 401 ? AuthChallenge::parse_all(r.header_values("www-authenticate"))
                                              : std::vector<AuthChallenge>{});
        ready_.store(true, std::memory_order_release);
        ping_error_.reset();
        if (plain && !http_only_) spdlog::debug("{}: HTTPS failed, using plain HTTP", api_host_);
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
          auto dir = shared_.options.certs_dirs.substr(0, shared_.options.certs_dirs.find(':'));
          why += fmt::format(" (trust its CA with {}/{}/ca.crt, or --tls-verify=false)",
                             dir.empty() ? "/etc/containers/certs.d" : dir, api_host_);
        }
        retryable = retryable || r.retryable_transport();
      }
    }
    if (retryable && budget.wait_before_retry(retry_after)) continue;
    return fail(make_error(std::errc::io_error, "cannot reach registry {}: {}{}", api_host_, why,
                           attempts_note(budget)));
  }
}

Result<HttpResponse> EndpointSession::send(const Exchange& x, RetryBudget& budget) {
  OCIFS_TRY(ensure_ready(budget));
  int auth_retries = 0;
  bool cached_url_retried = false;
  while (true) {
    std::optional<std::string> cached;
    if (!x.blob_digest.empty()) cached = cached_url(x.blob_digest);
    std::string url = cached ? *cached : !x.url.empty() ? x.url : base_ + x.path;
    std::string authz;
    if (!cached) {
      OCIFS_ASSIGN(authz, auth_->authorization(budget.deadline()));
    }

    HttpResponse resp;
    bool redirected = false, at_registry = false;
    for (int hop = 0;; ++hop) {
      auto req = shared_.request(url, budget);
      if (x.transfer_deadline) req.deadline = *x.transfer_deadline;
      req.method = x.method;
      req.body = x.body;
      req.headers = x.headers;
      req.on_body = x.on_body;
      req.max_body = x.max_body;
      req.cancelled = x.cancelled;
      at_registry = same_origin(url, base_);
      // Authorization goes to the registry's own origin only: never to a CDN or object store.
      if (at_registry && !authz.empty()) req.headers.push_back("Authorization: " + authz);
      req.tls = at_registry ? &tls_ : shared_.tls_for(url_authority(url));
      resp = shared_.http.perform(req);
      shared_.requests.fetch_add(1, std::memory_order_relaxed);
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
      shared_.blob_bytes.fetch_add(resp.body_seen, std::memory_order_relaxed);
    }
    if (!resp.transport_ok()) {
      if (resp.aborted || resp.body_truncated || resp.delivered > 0) return resp;
      if (cached) forget_url(x.blob_digest);
      if (resp.retryable_transport() && budget.wait_before_retry()) continue;
      return shared_.transport_error(resp, budget);
    }
    if (resp.status == 401 && at_registry) {
      // Expired or revoked token (also in the middle of a series of range reads), or a scope
      // the token lacks: fetch a new one and try again, twice at most.
      if (auth_retries < 2 && auth_->on_unauthorized(resp, authz)) {
        ++auth_retries;
        continue;
      }
      return resp;
    }
    if (cached && !cached_url_retried &&
        (resp.status == 400 || resp.status == 401 || resp.status == 403 || resp.status == 404 ||
         resp.status == 410)) {
      // The signed URL expired (or was revoked): ask the registry for a fresh one.
      forget_url(x.blob_digest);
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
      remember_url(x.blob_digest, url);
    }
    return resp;
  }
}

}  // namespace ocifs::registry
