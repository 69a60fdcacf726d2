#include "ocifs/registry/authenticator.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "ocifs/registry/registry_url.hpp"
#include "ocifs/util/base64.hpp"
#include "ocifs/util/rfc3339.hpp"

namespace ocifs::registry {

namespace {

const AuthChallenge* find_scheme(const std::vector<AuthChallenge>& challenges, std::string_view scheme) {
  for (const auto& c : challenges) {
    if (c.scheme == scheme) return &c;
  }
  return nullptr;
}

bool header_safe(std::string_view value) {
  return std::none_of(value.begin(), value.end(), [](unsigned char c) { return c < 0x20 || c == 0x7f; });
}

std::vector<std::string> split_scopes(std::string_view text) {
  std::vector<std::string> out;
  while (!text.empty()) {
    auto sp = text.find(' ');
    auto part = text.substr(0, sp);
    if (!part.empty()) out.emplace_back(part);
    if (sp == std::string_view::npos) break;
    text.remove_prefix(sp + 1);
  }
  return out;
}

}  // namespace

std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view s) {
  std::int64_t sec = 0;
  std::uint32_t nsec = 0;
  if (!util::parse_rfc3339(s, sec, nsec)) return std::nullopt;
  // system_clock counts nanoseconds in 64 bits (years 1678 to 2261): a time outside cannot be
  // converted (signed overflow), nor be a token's issue time.
  constexpr std::int64_t kLimit =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::duration::max()).count() - 1;
  if (sec > kLimit || sec < -kLimit) return std::nullopt;
  return std::chrono::system_clock::time_point(std::chrono::seconds(sec)) + std::chrono::nanoseconds(nsec);
}

Result<TokenAnswer> TokenAnswer::parse(std::string_view json_text) {
  auto doc = nlohmann::json::parse(json_text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return make_error(std::errc::protocol_error, "the token server's answer is not a JSON object");
  }
  TokenAnswer answer;
  for (const char* key : {"token", "access_token"}) {
    auto it = doc.find(key);
    if (it != doc.end() && it->is_string() && !it->get<std::string>().empty()) {
      answer.token = it->get<std::string>();
      break;
    }
  }
  if (answer.token.empty()) {
    return make_error(std::errc::protocol_error,
                      "the token server's answer has no \"token\" or \"access_token\"");
  }
  if (!header_safe(answer.token)) {
    return make_error(std::errc::protocol_error, "the token server's token contains control characters");
  }
  if (auto it = doc.find("expires_in"); it != doc.end() && it->is_number() && it->get<double>() > 0) {
    // At most a day (real ones: 60 s to an hour): 1e300 would not fit in the conversion.
    answer.expires_in = std::chrono::seconds(static_cast<std::int64_t>(std::min(it->get<double>(), 86400.0)));
  }
  if (auto it = doc.find("issued_at"); it != doc.end() && it->is_string()) {
    answer.issued_at = parse_rfc3339(it->get<std::string>());
  }
  return answer;
}

std::chrono::milliseconds TokenAnswer::usable_for(std::chrono::system_clock::time_point now) const {
  using namespace std::chrono;
  milliseconds lifetime = expires_in;
  // An issue time older than the lifetime says more about a skewed clock than about the token:
  // ignored, and never subtracted (a date centuries back would overflow).
  if (issued_at && *issued_at <= now && *issued_at > now - lifetime) {
    lifetime -= duration_cast<milliseconds>(now - *issued_at);
  }
  milliseconds margin = std::min<milliseconds>(duration_cast<milliseconds>(expires_in) / 4, seconds(10));
  return lifetime > margin ? lifetime - margin : milliseconds(0);
}

Authenticator::Authenticator(Context context, std::string host, std::string repository,
                             CredentialSource credentials)
    : ctx_(std::move(context)),
      host_(std::move(host)),
      repository_(std::move(repository)),
      credential_source_(std::move(credentials)),
      scopes_{fmt::format("repository:{}:pull", repository_)} {}

void Authenticator::request_push() {
  std::lock_guard lock(mutex_);
  const std::string pull = fmt::format("repository:{}:pull", repository_);
  std::erase(scopes_, pull);
  scopes_.insert(scopes_.begin(), fmt::format("repository:{}:pull,push", repository_));
}

void Authenticator::set_challenges(std::vector<AuthChallenge> challenges) {
  std::lock_guard lock(mutex_);
  challenges_ = std::move(challenges);
}

namespace {

std::string join_scopes(const std::vector<std::string>& scopes) {
  std::string key;
  for (const auto& s : scopes) {
    if (!key.empty()) key += ' ';
    key += s;
  }
  return key;
}

std::string basic_header(const Credentials& c) { return "Basic " + util::base64_encode(c.username + ":" + c.password); }

}  // namespace

std::string Authenticator::scope_key() const { return join_scopes(scopes_); }

std::optional<Result<std::string>> Authenticator::known_authorization_locked() {
  if (find_scheme(challenges_, "bearer")) {
    auto it = tokens_.find(scope_key());
    if (it != tokens_.end() && Clock::now() < it->second.refresh_at) return Result<std::string>("Bearer " + it->second.value);
    return std::nullopt;
  }
  if (find_scheme(challenges_, "basic")) {
    if (!credentials_loaded_) return std::nullopt;
    if (credentials_error_) return Result<std::string>(*credentials_error_);
    if (credentials_ && !credentials_->credentials.username.empty()) {
      return Result<std::string>(basic_header(credentials_->credentials));
    }
  }
  return Result<std::string>(std::string());
}

Result<std::string> Authenticator::authorization(Deadline deadline) {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (auto known = known_authorization_locked()) return std::move(*known);
    if (auto running = refresh_) {
      bool ended = true;
      if (deadline == kNoDeadline) {
        refreshed_.wait(lock, [&] { return running->done; });
      } else {
        ended = refreshed_.wait_until(lock, deadline, [&] { return running->done; });
      }
      if (!ended) {
        return make_error(std::errc::timed_out,
                          "cannot authenticate to {} for {}: no token within the deadline (another request is "
                          "fetching it)",
                          host_, repository_);
      }
      // A refresh cut short by its starter's deadline says nothing about ours: try again.
      if (running->error && running->error->code != std::errc::timed_out) return *running->error;
      continue;
    }
    // This thread refreshes; the others wait for it. However it ends (an exception too), they wake.
    auto running = std::make_shared<Refresh>();
    refresh_ = running;
    struct Announce {
      Authenticator& self;
      std::unique_lock<std::mutex>& lock;
      Refresh& running;
      ~Announce() {
        if (!lock.owns_lock()) lock.lock();
        if (!running.done) {
          running.done = true;
          running.error = make_error(std::errc::io_error, "cannot authenticate to {}: the refresh was abandoned",
                                     self.host_);
        }
        self.refresh_.reset();
        self.refreshed_.notify_all();
      }
    } announce{*this, lock, *running};
    std::optional<AuthChallenge> bearer;
    if (const auto* b = find_scheme(challenges_, "bearer")) bearer = *b;
    auto scopes = scopes_;
    lock.unlock();
    auto header = refresh(std::move(bearer), std::move(scopes), util::earliest(deadline, Clock::now() + ctx_.request_deadline));
    lock.lock();
    running->done = true;
    if (!header) running->error = header.error();
    return header;
  }
}

Result<std::string> Authenticator::refresh(std::optional<AuthChallenge> bearer, std::vector<std::string> scopes,
                                           Deadline deadline) {
  std::optional<FoundCredentials> creds;
  {
    std::unique_lock lock(mutex_);
    if (!credentials_loaded_) {
      // Only the refreshing thread gets here (refresh_ is set): the source runs once, unlocked.
      lock.unlock();
      auto found =
          credential_source_ ? credential_source_() : Result<std::optional<FoundCredentials>>(std::nullopt);
      lock.lock();
      credentials_loaded_ = true;
      if (found) {
        credentials_ = std::move(found).value();
        if (credentials_) spdlog::debug("{}: using credentials from {}", host_, credentials_->source);
      } else {
        credentials_error_ = std::move(found).error();
      }
    }
    if (credentials_error_) return *credentials_error_;
    creds = credentials_;
  }
  if (!bearer) {
    bool has_user = creds && !creds->credentials.username.empty();
    return has_user ? basic_header(creds->credentials) : std::string();
  }
  OCIFS_ASSIGN(auto token, fetch_token(*bearer, scopes, creds, deadline));
  return "Bearer " + token;
}

Result<std::string> Authenticator::fetch_token(const AuthChallenge& bearer, const std::vector<std::string>& scopes,
                                               const std::optional<FoundCredentials>& creds, Deadline deadline) {
  std::string realm = bearer.param("realm");
  auto fail = [&](std::errc code, std::string_view why) {
    if (deadline != kNoDeadline && Clock::now() >= deadline) code = std::errc::timed_out;
    return make_error(code, "cannot authenticate to {} for {}: {}", host_, repository_, why);
  };
  if (realm.empty())
    return fail(std::errc::protocol_error, "its Bearer challenge names no token server (realm)");
  const std::string scheme = url_scheme(realm);
  if (scheme != "https" && scheme != "http") {
    return fail(std::errc::protocol_error,
                fmt::format("its token server \"{}\" is not an http(s) URL", redact_url(realm)));
  }
  std::string service = bearer.param("service");
  const std::string scope = join_scopes(scopes);
  const bool has_user = creds && !creds->credentials.username.empty();
  if (has_user && creds->credentials.identity_token.empty() && scheme == "http" &&
      !is_loopback_host(url_authority(realm))) {
    // A password in a Basic header over plain HTTP to another host is a password given away.
    return fail(std::errc::permission_denied,
                fmt::format("its token server {} is plain http on another host: the credentials from {} are not "
                            "sent there (use an https realm)",
                            redact_url(realm), creds->source));
  }

  HttpRequest req;
  req.connect_timeout = ctx_.connect_timeout;
  req.deadline = deadline;
  req.max_body = 1 << 20;
  req.tls = ctx_.tls_for ? ctx_.tls_for(url_authority(realm)) : nullptr;
  if (creds && !creds->credentials.identity_token.empty()) {
    // OAuth2 refresh-token grant, as `docker login` with an identity token does.
    req.method = "POST";
    req.url = realm;
    req.body = fmt::format("grant_type=refresh_token&client_id=ocifs&refresh_token={}",
                                percent_encode(creds->credentials.identity_token));
    if (!service.empty()) req.body += "&service=" + percent_encode(service);
    req.body += "&scope=" + percent_encode(scope);
  } else {
    req.url = token_url(realm, service, scopes);
    if (has_user) req.headers.push_back("Authorization: " + basic_header(creds->credentials));
  }
  RetryBudget budget(deadline, ctx_.max_attempts, ctx_.retries);
  while (true) {
    auto answer = ctx_.http->perform(req);
    if (ctx_.requests) ctx_.requests->fetch_add(1, std::memory_order_relaxed);
    if (!answer.transport_ok()) {
      if (answer.retryable_transport() && budget.wait_before_retry()) continue;
      return fail(std::errc::io_error,
                  fmt::format("token server {}: {}", redact_url(realm), answer.transport_error));
    }
    if (answer.status == 429 || answer.status >= 500) {
      if (budget.wait_before_retry(
              parse_retry_after(answer.header("retry-after"), std::chrono::system_clock::now())))
        continue;
    }
    if (answer.status == 401 || answer.status == 403) {
      return fail(
          std::errc::permission_denied,
          fmt::format("the token server {} refused {} (HTTP {})", redact_url(realm),
                      creds ? "the credentials from " + creds->source : "anonymous access", answer.status));
    }
    if (answer.status != 200) {
      return fail(std::errc::io_error,
                  fmt::format("the token server {} answered HTTP {}", redact_url(realm), answer.status));
    }
    auto parsed = TokenAnswer::parse(answer.body);
    if (!parsed) return fail(std::errc::protocol_error, parsed.error().message);
    auto usable = parsed->usable_for(std::chrono::system_clock::now());
    {
      std::lock_guard lock(mutex_);
      tokens_[scope] = Token{parsed->token, Clock::now() + usable};
    }
    spdlog::debug("{}: token for {} from {}, good for {} ms", host_, scope, redact_url(realm), usable.count());
    return parsed->token;
  }
}

bool Authenticator::on_unauthorized(const HttpResponse& answer, std::string_view sent) {
  std::lock_guard lock(mutex_);
  auto fresh = AuthChallenge::parse_all(answer.header_values("www-authenticate"));
  if (!fresh.empty()) challenges_ = std::move(fresh);
  if (const auto* bearer = find_scheme(challenges_, "bearer")) {
    if (bearer->param("error") == "insufficient_scope") {
      bool widened = false;
      for (auto& scope : split_scopes(bearer->param("scope"))) {
        if (std::find(scopes_.begin(), scopes_.end(), scope) == scopes_.end()) {
          scopes_.push_back(std::move(scope));
          widened = true;
        }
      }
      if (widened) return true;
    }
    // Forget the token that failed (another thread may already have replaced it).
    auto it = tokens_.find(scope_key());
    if (it != tokens_.end() && sent == "Bearer " + it->second.value) tokens_.erase(it);
    return true;
  }
  if (find_scheme(challenges_, "basic")) {
    // Credentials not sent yet (the ping said anonymous) may help; rejected ones will not. Not
    // looked up yet: the retry's authorization() looks them up.
    if (!sent.empty()) return false;
    if (!credentials_loaded_) return true;
    return !credentials_error_ && credentials_ && !credentials_->credentials.username.empty();
  }
  return false;
}

std::string Authenticator::unauthorized_reason() {
  std::lock_guard lock(mutex_);
  if (!credentials_loaded_) return "authentication required";
  if (credentials_error_) return credentials_error_->message;
  if (!credentials_)
    return "authentication required and no credentials found (--creds, --authfile, auth.json, docker "
           "config.json)";
  return fmt::format("the credentials from {} were not accepted", credentials_->source);
}

}  // namespace ocifs::registry
