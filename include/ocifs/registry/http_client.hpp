// HttpClient: one HTTP exchange at a time per calling thread over libcurl, without following
// redirects (RegistryClient follows them itself, to keep Authorization on the registry's host).
//
// Thread-safe: any number of threads may call perform() at once. Each call takes an easy handle
// from a pool (reused handles keep their keep-alive and HTTP/2 connections) and gives it back
// afterwards; the handles share DNS answers and TLS sessions through one CURLSH whose lock
// callbacks take one mutex per kind of shared data (pool mutex and share mutexes never nest).
// Connections themselves are not shared between handles: libcurl does not support sharing its
// connection cache between concurrent threads (CURLSHOPT_SHARE(3)).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ocifs/registry/retry_budget.hpp"
#include "ocifs/registry/tls_settings.hpp"

namespace ocifs::registry {

struct HttpResponse {
  long status = 0;  // 0 when no HTTP answer arrived
  // Header lines of the final answer, names lowercase, values trimmed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;             // the body when not given to on_body (errors, small documents)
  std::uint64_t delivered = 0;  // bytes given to on_body
  int curl_code = 0;            // CURLcode; 0: the exchange completed
  std::string transport_error;  // libcurl's message when curl_code != 0 (names host and port, no secret)
  bool aborted = false;         // on_body asked to stop
  bool body_truncated = false;  // the kept body passed max_body (the transfer was stopped)
  std::uint64_t body_seen = 0;  // body bytes received for the final answer (kept, delivered or skipped)

  bool transport_ok() const { return curl_code == 0; }
  // Connection-level failures worth another attempt (refused, reset, timed out, stalled, cut
  // short, HTTP/2 stream errors); not certificate problems or bad URLs.
  bool retryable_transport() const;
  // The server's certificate was not trusted (or ours was refused).
  bool certificate_problem() const;
  // The first value of a header (name lowercase), "" when absent.
  std::string_view header(std::string_view name) const;
  std::vector<std::string_view> header_values(std::string_view name) const;
};

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, POST or PUT
  std::string url;
  std::vector<std::string> headers;  // "Name: value"
  // POST and PUT: sent as is, typed by a Content-Type header (a POST without one is sent as
  // application/x-www-form-urlencoded).
  std::string body;
  const TlsSettings* tls = nullptr;  // nullptr: verify against the system CAs
  std::chrono::milliseconds connect_timeout{10'000};
  Deadline deadline = kNoDeadline;  // the whole exchange, connection included
  // A transfer slower than low_speed_limit bytes per second for stall_time is a stall: it ends
  // with a timeout. Why 30 s: a registry or CDN that sends nothing for that long on an open
  // transfer is stuck; reconnecting and resuming with Range is faster than waiting for TCP to
  // notice. Why 1 KiB/s: slower than any real link, faster than a server trickling bytes to
  // keep a connection (and whoever waits on it) busy for ever.
  long low_speed_limit = 1024;
  std::chrono::milliseconds stall_time{30'000};
  // Receives the body of a 2xx answer chunk by chunk; returning false stops the transfer.
  std::function<bool(const HttpResponse& head, std::span<const std::byte> chunk)> on_body;
  // Bodies not given to on_body are kept in HttpResponse::body up to this size.
  std::size_t max_body = 64 * 1024;
  // Polled about once a second, also while nothing arrives; true stops the transfer (aborted).
  std::function<bool()> cancelled;
};

class HttpClient {
 public:
  explicit HttpClient(std::string user_agent);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One exchange; never throws for network trouble (it is in the response).
  HttpResponse perform(const HttpRequest& request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocifs::registry
