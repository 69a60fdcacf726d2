// The parts of a RegistryClient below its operations: what all its endpoints share (ClientShared:
// the HTTP client, the options, the counters, the TLS settings of hosts that are not endpoints)
// and one endpoint (EndpointSession: a registry or mirror, its first ping, its authentication,
// the blob URLs it redirected to), through which every request goes: send() adds authorization,
// follows redirects and retries.
//
// Thread-safe, shared by every thread using the client. Locks: the ping's DeadlineMutex, held
// across the ping (waiters give up at their deadline), then the Authenticator's (set_challenges);
// the URL cache's and the TLS map's mutexes are taken alone. No lock is held while a request runs,
// but for the ping's.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ocifs/registry/authenticator.hpp"
#include "ocifs/registry/http_client.hpp"
#include "ocifs/registry/registries_conf.hpp"
#include "ocifs/registry/registry_client.hpp"
#include "ocifs/registry/retry_budget.hpp"
#include "ocifs/registry/tls_settings.hpp"
#include "ocifs/util/deadline_mutex.hpp"

#ifndef OCIFS_VERSION
#define OCIFS_VERSION "unknown"
#endif

namespace ocifs::registry {

// What the endpoints of one client share.
struct ClientShared {
  explicit ClientShared(RegistryOptions opts) : options(std::move(opts)) {}

  RegistryOptions options;
  HttpClient http{"ocifs/" OCIFS_VERSION};
  std::atomic<std::uint64_t> blob_bytes{0}, requests{0}, retries{0};

  // The endpoints' own settings, by host: set up once, before any request.
  std::vector<std::pair<std::string, const TlsSettings*>> endpoint_tls;

  // TLS settings for a host (an endpoint's own, or certs.d's for a CDN or a token server).
  const TlsSettings* tls_for(std::string_view authority);
  // A request to `url` with the client's timeouts, within `budget`'s deadline.
  HttpRequest request(const std::string& url, const RetryBudget& budget) const;
  // The error of an answer that never came whole, timed_out when the budget's deadline passed.
  Error transport_error(const HttpResponse& r, const RetryBudget& budget) const;

 private:
  std::mutex tls_mutex_;  // guards other_tls_
  std::map<std::string, std::unique_ptr<TlsSettings>> other_tls_;
};

// " (after N attempts)" when there was more than one, for messages.
std::string attempts_note(const RetryBudget& budget);

// One request on an endpoint, as send() takes it.
struct Exchange {
  std::string method = "GET";
  std::string path;  // on the endpoint: "/v2/…"
  // Instead of `path`: a URL the endpoint gave (an upload's Location). Authorization goes with
  // it only when it is on the endpoint's own origin, as with redirects.
  std::string url;
  std::string body;  // POST, PUT
  std::vector<std::string> headers;
  std::string blob_digest;  // set: use and maintain the resolved-URL cache, count blob bytes
  std::function<bool(const HttpResponse&, std::span<const std::byte>)> on_body;
  // Bodies kept in memory (error documents, token answers): registries answer a few hundred bytes.
  std::size_t max_body = 64 * 1024;
  std::function<bool()> cancelled;  // HttpRequest::cancelled
  // The transfer's own deadline where it is not the budget's: a stream's attempt may run as long
  // as data flows, while its retries are bounded by the time since the last progress.
  std::optional<Deadline> transfer_deadline;
};

// One place to pull from, and what was learned about it.
class EndpointSession {
 public:
  EndpointSession(ClientShared& shared, Endpoint endpoint, TlsSettings tls,
                  std::unique_ptr<Authenticator> auth);

  const Endpoint& endpoint() const { return endpoint_; }
  const std::string& api_host() const { return api_host_; }
  const TlsSettings& tls() const { return tls_; }
  // "https://host" (or http) once a request has been sent: what relative Locations resolve against.
  const std::string& origin() const { return base_; }

  // One request with authentication, redirects and retries. Returns the final answer (any
  // status the caller must judge) or an error for transport failures; an answer whose body was
  // partly delivered before the connection failed is returned as is (the caller resumes).
  Result<HttpResponse> send(const Exchange& x, RetryBudget& budget);
  // The error for an answer of status `r.status`, with what the registry said about it.
  Error status_error(const HttpResponse& r, std::string_view context, const RetryBudget& budget);
  // Tokens for pushing from now on (RegistryClient::request_push).
  void request_push() { auth_->request_push(); }
  // True the first time only: a warning about servers that ignore Range is given once.
  bool first_range_warning() { return !warned_no_ranges_.exchange(true); }

 private:
  // GET /v2/ once per endpoint: decides https or http and keeps the challenge.
  Result<void> ensure_ready(const RetryBudget& request);
  std::optional<std::string> cached_url(const std::string& digest);
  void remember_url(const std::string& digest, std::string url);
  void forget_url(const std::string& digest);

  ClientShared& shared_;
  Endpoint endpoint_;
  std::string api_host_;
  bool http_only_ = false;     // --plain-http
  bool http_allowed_ = false;  // --plain-http, insecure or loopback: HTTP when HTTPS fails
  TlsSettings tls_;
  std::unique_ptr<Authenticator> auth_;

  // Guards the ping state and is held across the ping (waiters give up at their deadline);
  // `ready_` is also read without it (set once, after `base_`).
  util::DeadlineMutex ping_mutex_;
  std::atomic<bool> ready_{false};
  std::string base_;  // "https://host" once the ping answered
  std::optional<Error> ping_error_;
  Clock::time_point retry_ping_after_{};

  std::mutex urls_mutex_;                         // guards blob_urls_
  std::map<std::string, std::string> blob_urls_;  // digest → the URL the registry redirected to
  std::atomic<bool> warned_no_ranges_{false};
};

}  // namespace ocifs::registry
