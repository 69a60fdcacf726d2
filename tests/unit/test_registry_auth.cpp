// registry/: WWW-Authenticate parsing, Retry-After and backoff, token answers, URL
// building and redaction. Pure functions; no network.
#include <catch2/catch.hpp>

#include <atomic>

#include "ocifs/registry/auth_challenge.hpp"
#include "ocifs/registry/authenticator.hpp"
#include "ocifs/registry/http_client.hpp"
#include "ocifs/registry/registry_url.hpp"
#include "ocifs/registry/retry_budget.hpp"

using namespace ocifs;
using namespace ocifs::registry;
using namespace std::chrono_literals;

TEST_CASE("AuthChallenge::parse handles the forms registries send") {
  struct Param {
    std::string name, value;
  };
  struct Expected {
    std::string scheme;
    std::vector<Param> params;
    std::string token68;
  };
  struct Case {
    std::string header;
    std::vector<Expected> challenges;
  };
  const Case cases[] = {
      {R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io")",
       {{"bearer", {{"realm", "https://auth.docker.io/token"}, {"service", "registry.docker.io"}}, ""}}},
      // A quoted value with commas (several actions in one scope).
      {R"(Bearer realm="https://r/token",service="s",scope="repository:a/b:pull,push")",
       {{"bearer",
         {{"realm", "https://r/token"}, {"service", "s"}, {"scope", "repository:a/b:pull,push"}},
         ""}}},
      // Spaces around separators and '=', odd casing of scheme and names.
      {R"(bEaReR   Realm = "https://r/t" ,  SERVICE="x y")",
       {{"bearer", {{"realm", "https://r/t"}, {"service", "x y"}}, ""}}},
      // Several challenges in one header.
      {R"(Basic realm="Registry Realm", Bearer realm="https://r/t",service="svc")",
       {{"basic", {{"realm", "Registry Realm"}}, ""},
        {"bearer", {{"realm", "https://r/t"}, {"service", "svc"}}, ""}}},
      {R"(Bearer realm="a,b", Basic realm="c")",
       {{"bearer", {{"realm", "a,b"}}, ""}, {"basic", {{"realm", "c"}}, ""}}},
      // Backslash escapes inside quotes.
      {R"(Bearer realm="say \"hi\", \\ ok",error="insufficient_scope")",
       {{"bearer", {{"realm", R"(say "hi", \ ok)"}, {"error", "insufficient_scope"}}, ""}}},
      // Unquoted values, including an unquoted URL.
      {"Bearer realm=https://r/token,service=reg",
       {{"bearer", {{"realm", "https://r/token"}, {"service", "reg"}}, ""}}},
      // A scheme without parameters, then another challenge.
      {"Negotiate, Basic realm=x", {{"negotiate", {}, ""}, {"basic", {{"realm", "x"}}, ""}}},
      // token68.
      {"Basic dXNlcjpwYXNz==, Bearer realm=\"r\"",
       {{"basic", {}, "dXNlcjpwYXNz=="}, {"bearer", {{"realm", "r"}}, ""}}},
      // Empty quoted value, trailing commas, an unterminated quote.
      {R"(Bearer realm="", service="s",,)", {{"bearer", {{"realm", ""}, {"service", "s"}}, ""}}},
      {R"(Bearer realm="https://r/t)", {{"bearer", {{"realm", "https://r/t"}}, ""}}},
      {"", {}},
      {" , ,", {}},
  };
  for (const auto& c : cases) {
    INFO(c.header);
    auto got = AuthChallenge::parse(c.header);
    REQUIRE(got.size() == c.challenges.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
      CHECK(got[i].scheme == c.challenges[i].scheme);
      CHECK(got[i].token68 == c.challenges[i].token68);
      CHECK(got[i].params.size() == c.challenges[i].params.size());
      for (const auto& p : c.challenges[i].params) CHECK(got[i].param(p.name) == p.value);
    }
  }
}

TEST_CASE("AuthChallenge::parse_all joins several header lines") {
  auto got = AuthChallenge::parse_all({"Basic realm=\"a\"", "Bearer realm=\"b\",service=\"c\""});
  REQUIRE(got.size() == 2);
  CHECK(got[0].scheme == "basic");
  CHECK(got[1].param("service") == "c");
  CHECK(got[1].param("missing").empty());
}

TEST_CASE("parse_retry_after reads seconds and HTTP dates") {
  auto now = std::chrono::system_clock::from_time_t(784111777);  // Sun, 06 Nov 1994 08:49:37 GMT
  CHECK(parse_retry_after("120", now) == std::chrono::milliseconds(120'000));
  CHECK(parse_retry_after(" 0 ", now) == std::chrono::milliseconds(0));
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now) == std::chrono::milliseconds(10'000));
  CHECK(parse_retry_after("Sunday, 06-Nov-94 08:50:37 GMT", now) == std::chrono::milliseconds(60'000));
  CHECK(parse_retry_after("Sun Nov  6 08:49:38 1994", now) == std::chrono::milliseconds(1'000));
  // A date in the past means now.
  CHECK(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now) == std::chrono::milliseconds(0));
  // Huge values clamp instead of overflowing.
  auto huge = parse_retry_after("99999999999999999999", now);
  REQUIRE(huge);
  CHECK(*huge > std::chrono::hours(24));
  // So do dates past what system_clock holds (2262; found by tests/fuzz, UBSan: signed overflow).
  auto far = parse_retry_after("Wed, 21 Oct 4030 07:28:00 GMT", now);
  REQUIRE(far);
  CHECK(*far > std::chrono::hours(24));
  CHECK_FALSE(parse_retry_after("", now));
  CHECK_FALSE(parse_retry_after("soon", now));
  CHECK_FALSE(parse_retry_after("-5", now));
  CHECK_FALSE(parse_retry_after("1.5", now));
}

TEST_CASE("backoff_delay doubles from 250 ms up to 8 s with jitter in [50 %, 100 %]") {
  CHECK(backoff_delay(1, 1.0) == 250ms);
  CHECK(backoff_delay(1, 0.0) == 125ms);
  CHECK(backoff_delay(2, 1.0) == 500ms);
  CHECK(backoff_delay(3, 1.0) == 1000ms);
  CHECK(backoff_delay(6, 1.0) == 8000ms);
  CHECK(backoff_delay(50, 1.0) == 8000ms);
  CHECK(backoff_delay(50, 0.0) == 4000ms);
  CHECK(backoff_delay(2, 7.0) == 500ms);  // clamped jitter
}

TEST_CASE("RetryBudget counts attempts, honours the deadline and caps Retry-After") {
  std::atomic<std::uint64_t> retries{0};
  {
    RetryBudget budget(kNoDeadline, 3, &retries);
    CHECK(budget.wait_before_retry(0ms));
    CHECK(budget.wait_before_retry(0ms));
    CHECK_FALSE(budget.wait_before_retry(0ms));  // 3 attempts made
    CHECK(retries.load() == 2);
  }
  {
    RetryBudget budget(kNoDeadline, 5);
    CHECK_FALSE(budget.wait_before_retry(std::chrono::milliseconds(RetryBudget::kMaxRetryAfter) + 1ms));
  }
  {
    // A wait that would pass the deadline is refused at once, without sleeping: the deadline is
    // 30 s away (so however loaded the machine, it has not passed when the call returns unless
    // the call slept), the wait asked for is 50 s (within kMaxRetryAfter, so refused for the
    // deadline alone).
    std::atomic<std::uint64_t> counted{0};
    RetryBudget budget(Clock::now() + 30s, 5, &counted);
    CHECK_FALSE(budget.wait_before_retry(50s));
    CHECK_FALSE(budget.expired());
    CHECK(counted == 0);
    CHECK(budget.failures() == 1);
  }
  {
    RetryBudget budget(kNoDeadline, 2);
    CHECK(budget.wait_before_retry(0ms));
    budget.forgive();
    CHECK(budget.wait_before_retry(0ms));
  }
}

TEST_CASE("TokenAnswer parses token servers' answers") {
  auto a = TokenAnswer::parse(R"({"token":"abc","expires_in":300,"issued_at":"2024-05-01T12:00:00Z"})");
  REQUIRE(a.ok());
  CHECK(a->token == "abc");
  CHECK(a->expires_in == 300s);
  REQUIRE(a->issued_at);
  auto b = TokenAnswer::parse(R"({"access_token":"xyz"})");
  REQUIRE(b.ok());
  CHECK(b->token == "xyz");
  CHECK(b->expires_in == 60s);  // the spec's default
  CHECK_FALSE(b->issued_at);
  auto both = TokenAnswer::parse(R"({"token":"t1","access_token":"t2"})");
  REQUIRE(both.ok());
  CHECK(both->token == "t1");
  CHECK_FALSE(TokenAnswer::parse(R"({"expires_in":60})").ok());
  CHECK_FALSE(TokenAnswer::parse("not json").ok());
  CHECK_FALSE(TokenAnswer::parse(R"({"token":"a\r\nX-Evil: 1"})").ok());
  // An issue time system_clock cannot hold is ignored (found by tests/fuzz: signed overflow).
  CHECK_FALSE(parse_rfc3339("2976-05-01T12:00:00Z"));
  auto far = TokenAnswer::parse(R"({"token":"t","issued_at":"2976-05-01T12:00:00Z"})");
  REQUIRE(far.ok());
  CHECK_FALSE(far->issued_at);
  // A lifetime past any conversion is held to a day (1e300 seconds was undefined behaviour).
  auto forever = TokenAnswer::parse(R"({"token":"t","expires_in":1e300})");
  REQUIRE(forever.ok());
  CHECK(forever->expires_in == 24h);
}

TEST_CASE("TokenAnswer::usable_for counts from issued_at when plausible, with a margin") {
  auto issued = *parse_rfc3339("2024-05-01T12:00:00Z");
  TokenAnswer t{"x", 300s, issued};
  // 100 s after issue: 200 s left, minus min(300/4, 10) s.
  CHECK(t.usable_for(issued + 100s) == 190s);
  // issued_at in the future (clock skew): counted from now.
  CHECK(t.usable_for(issued - 50s) == 290s);
  // issued_at older than the lifetime (skew the other way): counted from now.
  CHECK(t.usable_for(issued + 1000s) == 290s);
  // ... however old: a token server's clock in 1700 is not subtracted (that overflowed).
  TokenAnswer ancient{"x", 300s, parse_rfc3339("1700-01-01T00:00:00Z")};
  REQUIRE(ancient.issued_at);
  CHECK(ancient.usable_for(issued) == 290s);
  TokenAnswer short_lived{"x", 2s, std::nullopt};
  CHECK(short_lived.usable_for(issued) == 1500ms);
}

TEST_CASE("parse_rfc3339") {
  auto base = parse_rfc3339("2024-05-01T12:00:00Z");
  REQUIRE(base);
  CHECK(std::chrono::system_clock::to_time_t(*base) == 1714564800);
  CHECK(parse_rfc3339("2024-05-01T14:00:00+02:00") == base);
  CHECK(parse_rfc3339("2024-05-01T11:30:00-00:30") == base);
  auto frac = parse_rfc3339("2024-05-01T12:00:00.5Z");
  REQUIRE(frac);
  CHECK(*frac - *base == std::chrono::milliseconds(500));
  CHECK_FALSE(parse_rfc3339("2024-05-01 12:00"));
  CHECK_FALSE(parse_rfc3339("2024-05-01T12:00:00"));
  CHECK_FALSE(parse_rfc3339("2024-13-01T12:00:00Z"));
  CHECK_FALSE(parse_rfc3339("2024-05-01T12:00:00Zjunk"));
  // Offsets are hours and minutes of a real zone: "+99:99" moved a time past system_clock's range.
  CHECK_FALSE(parse_rfc3339("2024-05-01T12:00:00+99:99"));
  CHECK_FALSE(parse_rfc3339("2262-04-11T23:00:00-23:59"));
  CHECK_FALSE(parse_rfc3339("1677-09-21T00:00:00+23:59"));
  CHECK(parse_rfc3339("1970-01-01T00:00:00+01:00") == std::chrono::system_clock::from_time_t(-3600));
}

TEST_CASE("registry URLs") {
  CHECK(base_url(false, "ghcr.io") == "https://ghcr.io");
  CHECK(base_url(true, "[::1]:5000") == "http://[::1]:5000");
  CHECK(manifest_path("library/debian", "bookworm") == "/v2/library/debian/manifests/bookworm");
  CHECK(blob_path("a/b", "sha256:00") == "/v2/a/b/blobs/sha256:00");
  CHECK(percent_encode("repository:a/b:pull,push x~") == "repository%3Aa%2Fb%3Apull%2Cpush%20x~");
  CHECK(token_url("https://auth.docker.io/token", "registry.docker.io", {"repository:library/debian:pull"}) ==
        "https://auth.docker.io/token?service=registry.docker.io&scope=repository%3Alibrary%2Fdebian%3Apull");
  CHECK(token_url("https://r/t?x=1", "", {"a", "b"}) == "https://r/t?x=1&scope=a&scope=b");
  CHECK(token_url("https://r/t", "s", {}) == "https://r/t?service=s");
}

TEST_CASE("resolve_location and origins") {
  auto r = [](std::string_view base, std::string_view loc) {
    auto x = resolve_location(base, loc);
    return x.ok() ? *x : "ERROR";
  };
  CHECK(r("https://reg/v2/a/blobs/sha256:1", "https://cdn.example.com/x?sig=1") ==
        "https://cdn.example.com/x?sig=1");
  CHECK(r("https://reg:5000/v2/a/blobs/d", "/storage/d?x=y") == "https://reg:5000/storage/d?x=y");
  CHECK(r("https://reg/v2/a/blobs/d", "other") == "https://reg/v2/a/blobs/other");
  CHECK(r("https://reg/v2/a/blobs/d", "//cdn/p") == "https://cdn/p");
  CHECK(r("https://reg/v2/a/blobs/d", "ftp://x/y") == "ERROR");

  CHECK(url_origin("https://Reg.Example.com/v2/") == "https://reg.example.com:443");
  CHECK(url_origin("http://127.0.0.1:5000/x?y") == "http://127.0.0.1:5000");
  CHECK(url_origin("http://[::1]/x") == "http://[::1]:80");
  CHECK(url_origin("https://user:pw@host/x") == "https://host:443");
  CHECK(same_origin("https://reg/v2/x", "https://reg:443/other"));
  CHECK_FALSE(same_origin("https://reg/v2/x", "http://reg/v2/x"));
  CHECK_FALSE(same_origin("http://127.0.0.1:5000/x", "http://127.0.0.1:5001/x"));
  CHECK_FALSE(same_origin("https://reg/", "https://reg.evil/"));
  CHECK(url_authority("https://cdn.example.com:8443/a?b") == "cdn.example.com:8443");
}

TEST_CASE("is_loopback_host") {
  for (auto h : {"localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.1.2.3:80", "[::1]",
                 "[::1]:5000", "LOCALHOST"}) {
    INFO(h);
    CHECK(is_loopback_host(h));
  }
  for (auto h : {"ghcr.io", "127.0.0.1.evil.com", "128.0.0.1", "[::2]:5000", "localhost.example",
                 "127.0.0.1234", "10.0.0.1:5000"}) {
    INFO(h);
    CHECK_FALSE(is_loopback_host(h));
  }
}

TEST_CASE("redaction keeps secrets out of logs") {
  CHECK(redact_url("https://cdn.example.com/blobs/x?X-Amz-Signature=abc&sig=1") ==
        "https://cdn.example.com/blobs/x?<redacted>");
  CHECK(redact_url("https://user:secret@host/path") == "https://host/path");
  CHECK(redact_url("https://host/path") == "https://host/path");
  CHECK(redact_url("https://host/p#frag") == "https://host/p?<redacted>");
  CHECK(redact_url("/relative?token=1") == "/relative?<redacted>");
  CHECK(redact_header("Authorization: Bearer eyJhbGciOi") == "Authorization: <redacted>");
  CHECK(redact_header("authorization:Basic dXNlcjpwYXNz\r\n") == "authorization: <redacted>\r\n");
  CHECK(redact_header("Proxy-Authorization: Basic x") == "Proxy-Authorization: <redacted>");
  CHECK(redact_header("Cookie: session=1") == "Cookie: <redacted>");
  CHECK(redact_header("Set-Cookie: a=b") == "Set-Cookie: <redacted>");
  CHECK(redact_header("Accept: application/json") == "Accept: application/json");
  CHECK(redact_header("GET /v2/ HTTP/1.1") == "GET /v2/ HTTP/1.1");
  CHECK(redact_header("GET /cdn/blob?X-Amz-Signature=abc HTTP/1.1\r\n") ==
        "GET /cdn/blob?<redacted> HTTP/1.1\r\n");
  CHECK(redact_header("location: https://cdn/x?sig=secret") == "location: https://cdn/x?<redacted>");
  CHECK(redact_header("HTTP/1.1 307 Temporary Redirect") == "HTTP/1.1 307 Temporary Redirect");
  // Upper-case word, space, no HTTP version: not a request line (it threw out_of_range; tests/fuzz).
  CHECK(redact_header("GET /v2/x") == "GET /v2/x");
}

TEST_CASE("Authenticator: credentials never go to a plain-http token server on another host") {
  HttpClient http("ocifs-test");
  std::atomic<std::uint64_t> requests{0};
  Authenticator::Context ctx;
  ctx.http = &http;
  ctx.requests = &requests;
  int lookups = 0;
  Authenticator auth(ctx, "registry.example.com", "team/app", [&]() -> Result<std::optional<FoundCredentials>> {
    ++lookups;
    return std::optional<FoundCredentials>(FoundCredentials{{"alice", "s3cret", ""}, "--creds"});
  });
  auth.set_challenges(AuthChallenge::parse_all(
      {R"(Bearer realm="http://auth.example.com/token",service="registry.example.com")"}));
  auto header = auth.authorization(Clock::now() + 5s);
  REQUIRE_FALSE(header);
  CHECK(header.error().code == std::errc::permission_denied);
  CHECK_THAT(header.error().message, Catch::Contains("plain http") && Catch::Contains("--creds") &&
                                         !Catch::Contains("s3cret"));
  CHECK(requests == 0);  // nothing was sent
  CHECK(lookups == 1);
}
