#include "ocifs/registry/http_client.hpp"

#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <mutex>
#include <new>

#include "ocifs/registry/registry_url.hpp"
#include "ocifs/util/text.hpp"

namespace ocifs::registry {

namespace {


void global_init() {
  // curl_global_init is not thread-safe before libcurl 7.84 and must run once per process.
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::bad_alloc();
  });
}

// State of one perform() shared with libcurl's callbacks.
struct Transfer {
  const HttpRequest* request;
  HttpResponse* response;
};

size_t on_header(char* data, size_t size, size_t count, void* userp) {
  auto& t = *static_cast<Transfer*>(userp);
  size_t n = size * count;
  std::string_view line(data, n);
  if (line.starts_with("HTTP/")) {
    // A new answer (after a 1xx or a proxy's CONNECT reply): forget the previous one's headers.
    t.response->headers.clear();
    auto sp = line.find(' ');
    t.response->status =
        sp == std::string_view::npos ? 0 : std::atol(std::string(line.substr(sp + 1, 3)).c_str());
    return n;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return n;  // the blank line ending the header block
  t.response->headers.emplace_back(util::ascii_lower(util::trim(line.substr(0, colon))),
                                   std::string(util::trim(line.substr(colon + 1))));
  return n;
}

size_t on_write(char* data, size_t size, size_t count, void* userp) {
  auto& t = *static_cast<Transfer*>(userp);
  auto& r = *t.response;
  size_t n = size * count;
  r.body_seen += n;
  if (t.request->on_body && r.status >= 200 && r.status < 300) {
    if (!t.request->on_body(r, std::as_bytes(std::span(data, n)))) {
      r.aborted = true;
      return 0;
    }
    r.delivered += n;
    return n;
  }
  if (r.body.size() + n > t.request->max_body) {
    r.body.append(data, t.request->max_body - r.body.size());
    r.body_truncated = true;
    return 0;
  }
  r.body.append(data, n);
  return n;
}

int on_debug(CURL*, curl_infotype type, char* data, size_t size, void*) {
  if (type != CURLINFO_HEADER_OUT && type != CURLINFO_HEADER_IN && type != CURLINFO_TEXT) return 0;
  std::string_view text(data, size);
  const char* dir = type == CURLINFO_HEADER_OUT ? "> " : type == CURLINFO_HEADER_IN ? "< " : "* ";
  while (!text.empty()) {
    auto end = text.find('\n');
    auto line = util::trim(text.substr(0, end));
    if (!line.empty()) spdlog::trace("curl {}{}", dir, redact_header(line));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return 0;
}

// CURLOPT_XFERINFOFUNCTION: libcurl calls it about once a second even on a silent connection,
// which is what lets a stalled transfer be cancelled.
int on_progress(void* data, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  const auto& cancelled = *static_cast<const std::function<bool()>*>(data);
  return cancelled() ? 1 : 0;
}

}  // namespace

bool HttpResponse::retryable_transport() const {
  switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_HTTP2:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

bool HttpResponse::certificate_problem() const {
  switch (static_cast<CURLcode>(curl_code)) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
      return true;
    default:
      return false;
  }
}

std::string_view HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (k == name) return v;
  }
  return {};
}

std::vector<std::string_view> HttpResponse::header_values(std::string_view name) const {
  std::vector<std::string_view> out;
  for (const auto& [k, v] : headers) {
    if (k == name) out.emplace_back(v);
  }
  return out;
}

struct HttpClient::Impl {
  // Why 16: one handle per concurrently requesting thread is enough (4 FUSE threads, a few
  // indexing threads); more idle handles only hold more idle connections.
  static constexpr std::size_t kMaxIdle = 16;

  std::string user_agent;
  CURLSH* share = nullptr;
  std::array<std::mutex, CURL_LOCK_DATA_LAST> share_locks;
  std::mutex pool_mutex;
  std::vector<CURL*> idle;

  static void lock(CURL*, curl_lock_data data, curl_lock_access, void* userp) {
    static_cast<Impl*>(userp)->share_locks[data].lock();
  }
  static void unlock(CURL*, curl_lock_data data, void* userp) {
    static_cast<Impl*>(userp)->share_locks[data].unlock();
  }

  CURL* acquire() {
    {
      std::lock_guard lock(pool_mutex);
      if (!idle.empty()) {
        CURL* h = idle.back();
        idle.pop_back();
        return h;
      }
    }
    CURL* h = curl_easy_init();
    if (!h) throw std::bad_alloc();
    curl_easy_setopt(h, CURLOPT_SHARE, share);
    return h;
  }

  void release(CURL* h) {
    // Forget every option (they point into the finished call's stack: error buffer, callback
    // data, CA blob); live connections, the DNS and TLS session caches and the share are kept.
    curl_easy_reset(h);
    {
      std::lock_guard lock(pool_mutex);
      if (idle.size() < kMaxIdle) {
        idle.push_back(h);
        return;
      }
    }
    curl_easy_cleanup(h);
  }
};

HttpClient::HttpClient(std::string user_agent) : impl_(std::make_unique<Impl>()) {
  global_init();
  impl_->user_agent = std::move(user_agent);
  impl_->share = curl_share_init();
  if (!impl_->share) throw std::bad_alloc();
  curl_share_setopt(impl_->share, CURLSHOPT_LOCKFUNC, &Impl::lock);
  curl_share_setopt(impl_->share, CURLSHOPT_UNLOCKFUNC, &Impl::unlock);
  curl_share_setopt(impl_->share, CURLSHOPT_USERDATA, impl_.get());
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt(impl_->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
}

HttpClient::~HttpClient() {
  // Every easy handle must be gone before its share can be cleaned up (CURLSHE_IN_USE otherwise).
  for (CURL* h : impl_->idle) curl_easy_cleanup(h);
  impl_->idle.clear();
  curl_share_cleanup(impl_->share);
}

HttpResponse HttpClient::perform(const HttpRequest& request) {
  HttpResponse response;
  long remaining_ms = 0;
  if (request.deadline != kNoDeadline) {
    // Rounded up: libcurl's timer must not fire before the deadline the caller checks against.
    remaining_ms = static_cast<long>(
        std::chrono::ceil<std::chrono::milliseconds>(request.deadline - Clock::now()).count());
    if (remaining_ms <= 0) {
      response.curl_code = CURLE_OPERATION_TIMEDOUT;
      response.transport_error = "deadline passed before the request was sent";
      return response;
    }
  }

  CURL* h = impl_->acquire();
  struct Releaser {
    Impl* impl;
    CURL* h;
    curl_slist* headers = nullptr;
    ~Releaser() {
      if (headers) curl_slist_free_all(headers);
      impl->release(h);
    }
  } releaser{impl_.get(), h};

  Transfer transfer{&request, &response};
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for DNS timeouts
  curl_easy_setopt(h, CURLOPT_USERAGENT, impl_->user_agent.c_str());
  curl_easy_setopt(h, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 128L * 1024);
  long connect_ms = static_cast<long>(request.connect_timeout.count());
  if (remaining_ms > 0) {
    connect_ms = std::min(connect_ms, remaining_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, remaining_ms);
  }
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, std::max(connect_ms, 1L));
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, request.low_speed_limit);
  // libcurl counts whole seconds.
  auto stall_s = std::chrono::ceil<std::chrono::seconds>(request.stall_time).count();
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(std::max<std::int64_t>(stall_s, 1)));
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &transfer);
  if (request.cancelled) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &request.cancelled);
  }
  if (spdlog::should_log(spdlog::level::trace)) {
    curl_easy_setopt(h, CURLOPT_VERBOSE, 1L);
    curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, &on_debug);
  }

  if (request.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else if (request.method == "POST" || request.method == "PUT") {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    if (request.method == "PUT") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, "PUT");
  }
  for (const auto& line : request.headers)
    releaser.headers = curl_slist_append(releaser.headers, line.c_str());
  // No "Expect: 100-continue" round trip before a body.
  if (request.method == "POST" || request.method == "PUT") {
    releaser.headers = curl_slist_append(releaser.headers, "Expect:");
  }
  if (releaser.headers) curl_easy_setopt(h, CURLOPT_HTTPHEADER, releaser.headers);

  const TlsSettings* tls = request.tls;
  if (tls && !tls->verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (tls && !tls->ca_pem.empty()) {
    curl_blob blob{const_cast<char*>(tls->ca_pem.data()), tls->ca_pem.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (tls && !tls->client_cert.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, tls->client_cert.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEY, tls->client_key.c_str());
  }

  auto started = Clock::now();
  CURLcode rc = curl_easy_perform(h);
  if (rc != CURLE_OK) {
    response.curl_code = rc;
    response.transport_error = errbuf[0] ? std::string(util::trim(errbuf)) : std::string(curl_easy_strerror(rc));
    if (rc == CURLE_WRITE_ERROR && (response.aborted || response.body_truncated)) {
      response.transport_error = "transfer stopped by the reader";
    }
    if (rc == CURLE_ABORTED_BY_CALLBACK) {
      response.aborted = true;
      response.transport_error = "transfer cancelled";
    }
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    std::string range;
    for (const auto& line : request.headers) {
      if (line.starts_with("Range:")) range = " " + line;
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    if (rc == CURLE_OK || response.status != 0) {
      spdlog::debug("{} {}{} -> {} ({} bytes, {} ms){}", request.method, redact_url(request.url), range,
                    response.status, response.body_seen, ms,
                    rc == CURLE_OK ? "" : " " + response.transport_error);
    } else {
      spdlog::debug("{} {}{} -> {} ({} ms)", request.method, redact_url(request.url), range,
                    response.transport_error, ms);
    }
  }
  return response;
}

}  // namespace ocifs::registry
