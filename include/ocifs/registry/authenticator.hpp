// Authorization for one endpoint (registry host + repository): the challenge kept from the ping
// (or a later 401), Bearer tokens from the token server cached per scope set, Basic credentials.
//
// Thread-safe: mutex_ guards all state and is never held across I/O. Looking up credentials
// (which may run a credential helper) and fetching a token run as one refresh at a time, with
// the mutex released: threads that need the same token meanwhile wait for that refresh (single
// flight), each at most until its own deadline. A refresh is bounded by the deadline of the
// request that started it and by Context::request_deadline, whichever comes first; one that
// ended only because its starter's deadline passed is started again by the next waiter.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/registry/auth_challenge.hpp"
#include "ocifs/registry/credentials.hpp"
#include "ocifs/registry/http_client.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::registry {

// A token server's answer (distribution token spec / OAuth2).
struct TokenAnswer {
  std::string token;                    // "token", else "access_token"
  std::chrono::seconds expires_in{60};  // default 60 s when absent
  std::optional<std::chrono::system_clock::time_point> issued_at;

  static Result<TokenAnswer> parse(std::string_view json_text);
  // How long the token is good for from `now` (system clock): expires_in counted from issued_at
  // when that is plausible (not in the future, not older than expires_in: clocks disagree), else
  // from now; minus a safety margin of a quarter of the lifetime, at most 10 s.
  std::chrono::milliseconds usable_for(std::chrono::system_clock::time_point now) const;
};

// RFC 3339 date-time ("2024-05-01T12:00:00Z", "...T12:00:00.123+02:00").
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text);

class Authenticator {
 public:
  using CredentialSource = std::function<Result<std::optional<FoundCredentials>>()>;

  struct Context {
    HttpClient* http = nullptr;
    // TLS settings for a host[:port] (the token server's); nullptr: system defaults.
    std::function<const TlsSettings*(std::string_view authority)> tls_for;
    std::chrono::milliseconds connect_timeout{10'000};
    std::chrono::milliseconds request_deadline{120'000};  // the longest a refresh may take
    int max_attempts = 5;
    std::atomic<std::uint64_t>* requests = nullptr;
    std::atomic<std::uint64_t>* retries = nullptr;
  };

  // `host` names the registry in messages; `repository` gives the pull scope; `credentials` is
  // asked once, on first need (it may run a credential helper).
  Authenticator(Context context, std::string host, std::string repository, CredentialSource credentials);

  // Challenges from the ping's 401. An empty list (the ping answered 200) means anonymous.
  void set_challenges(std::vector<AuthChallenge> challenges);

  // The Authorization header value for the next request ("Bearer …", "Basic …"), "" for none.
  // May look up credentials and fetch a token, or wait for another thread doing so; bounded by
  // `deadline` (std::errc::timed_out when it passes).
  Result<std::string> authorization(Deadline deadline);

  // A request sent with Authorization `sent` ("" for none) was answered 401. Adopts the answer's
  // challenge (keeping the old one when it has none, as gcr.io does), forgets the token that
  // failed and widens the scope on error="insufficient_scope". False when a retry cannot help.
  bool on_unauthorized(const HttpResponse& answer, std::string_view sent);

  // Tokens from now on are asked for pull and push on the repository (ocifs index --push).
  void request_push();

  // Why a request stayed unauthorized, for the final error: which credentials were used.
  std::string unauthorized_reason();

 private:
  struct Token {
    std::string value;
    Clock::time_point refresh_at;
  };

  // A refresh in progress (credentials, then a token), announced to the threads that wait for it.
  struct Refresh {
    bool done = false;
    std::optional<Error> error;
  };

  // The header from what is known now, or nullopt when a refresh is needed. Under mutex_.
  std::optional<Result<std::string>> known_authorization_locked();
  // Looks up the credentials (once) and, under a Bearer challenge, fetches a token for
  // `scopes`: the header to send. Runs without mutex_ (taking it only to store what it learns).
  Result<std::string> refresh(std::optional<AuthChallenge> bearer, std::vector<std::string> scopes, Deadline deadline);
  Result<std::string> fetch_token(const AuthChallenge& bearer, const std::vector<std::string>& scopes,
                                  const std::optional<FoundCredentials>& creds, Deadline deadline);
  std::string scope_key() const;

  Context ctx_;
  std::string host_;
  std::string repository_;
  CredentialSource credential_source_;

  std::mutex mutex_;
  std::vector<AuthChallenge> challenges_;
  std::vector<std::string> scopes_;
  std::map<std::string, Token> tokens_;  // by scope_key()
  bool credentials_loaded_ = false;
  std::optional<FoundCredentials> credentials_;
  std::optional<Error> credentials_error_;
  std::shared_ptr<Refresh> refresh_;  // the refresh running now, if any
  std::condition_variable refreshed_;  // refresh_ ended
};

}  // namespace ocifs::registry
