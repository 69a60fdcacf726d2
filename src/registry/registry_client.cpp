// RegistryClient's operations (registry_client.hpp): manifests, small blobs, streams and range
// reads, each tried on the endpoints in turn (over_endpoints). Below them: one endpoint and what
// the endpoints share (endpoint_session.hpp), the ranged GET with resume (ranged_get.hpp), what a
// registry's answers mean (registry_response.hpp).
#include "ocifs/registry/registry_client.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <cctype>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>

#include "client_impl.hpp"
#include "endpoint_session.hpp"
#include "ocifs/oci/types.hpp"
#include "ocifs/registry/credentials.hpp"
#include "ocifs/registry/registries_conf.hpp"
#include "ocifs/registry/registry_url.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/sha256.hpp"
#include "ocifs/util/text.hpp"
#include "ranged_get.hpp"
#include "registry_response.hpp"

namespace ocifs::registry {

namespace {

namespace mt = oci::media_type;

const std::string kManifestAccept = fmt::format("Accept: {}, {}, {}, {}", mt::kOciManifest, mt::kOciIndex,
                                                mt::kDockerManifest, mt::kDockerManifestList);

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

}  // namespace

RegistryClient::RegistryClient(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RegistryClient::~RegistryClient() = default;

Result<std::shared_ptr<RegistryClient>> RegistryClient::create(const oci::Reference& ref,
                                                               RegistryOptions options) {
  if (ref.registry.empty() || ref.repository.empty()) {
    return make_error(std::errc::invalid_argument,
                      "cannot use registry reference \"{}\": no registry or repository", ref.str());
  }
  auto impl = std::make_unique<Impl>(ref, std::move(options));
  const auto& opt = impl->shared.options;

  OCIFS_ASSIGN(auto conf,
               RegistriesConf::load(RegistriesConfFiles::locate_from_process(opt.registries_conf)));
  OCIFS_ASSIGN(auto endpoints, conf.endpoints(ref));

  auto lookup = std::make_shared<CredentialLookup>(
      opt.creds, auth_file_paths(CredentialEnvironment::from_process(opt.authfile)));
  ClientShared* shared = &impl->shared;
  for (auto& e : endpoints) {
    const std::string api_host = e.api_host();
    OCIFS_ASSIGN(auto tls,
                 TlsSettings::load(api_host, e.registry, opt.certs_dirs, opt.tls_verify && !e.insecure));
    if (!tls.files.empty()) spdlog::debug("{}: TLS files {}", api_host, fmt::join(tls.files, ", "));
    Authenticator::Context ctx;
    ctx.http = &shared->http;
    ctx.tls_for = [shared](std::string_view authority) { return shared->tls_for(authority); };
    ctx.connect_timeout = opt.connect_timeout;
    ctx.request_deadline = opt.request_deadline;
    ctx.max_attempts = opt.max_attempts;
    ctx.requests = &shared->requests;
    ctx.retries = &shared->retries;
    auto auth = std::make_unique<Authenticator>(std::move(ctx), fmt::format("{}/{}", api_host, e.repository),
                                                e.repository,
                                                [lookup, registry = e.registry, repository = e.repository] {
                                                  return lookup->find(registry, repository);
                                                });
    auto session = std::make_unique<EndpointSession>(*shared, std::move(e), std::move(tls), std::move(auth));
    shared->endpoint_tls.emplace_back(session->api_host(), &session->tls());
    impl->endpoints.push_back(std::move(session));
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
  auto deadline = Clock::now() + d.shared.options.request_deadline;
  std::function<Result<FetchedManifest>(EndpointSession&, bool&)> fn =
      [&](EndpointSession& ep, bool& final) -> Result<FetchedManifest> {
    std::string context = fmt::format("cannot fetch manifest {} of {}", reference, ep.endpoint().str());
    RetryBudget budget(deadline, d.shared.options.max_attempts, &d.shared.retries);
    Exchange x;
    x.path = manifest_path(ep.endpoint().repository, reference);
    x.headers = {kManifestAccept};
    x.max_body = kMaxManifestSize;
    auto sent = ep.send(x, budget);
    if (!sent) return std::move(sent).error().with_context(context);
    auto& resp = *sent;
    if (resp.body_truncated && is_success(resp.status)) {
      return make_error(std::errc::file_too_large, "{}: larger than the limit of {} bytes", context,
                        kMaxManifestSize);
    }
    if (!resp.transport_ok()) return d.shared.transport_error(resp, budget).with_context(context);
    if (resp.status != 200) return ep.status_error(resp, context, budget);

    const std::string header = util::ascii_lower(resp.header("content-type"));
    const std::string content_type(util::trim(std::string_view(header).substr(0, header.find(';'))));
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
  auto deadline = Clock::now() + d.shared.options.request_deadline;
  std::function<Result<std::string>(EndpointSession&, bool&)> fn = [&](EndpointSession& ep,
                                                                       bool&) -> Result<std::string> {
    std::string context = fmt::format("cannot fetch blob {} of {}", digest, ep.endpoint().str());
    RetryBudget budget(deadline, d.shared.options.max_attempts, &d.shared.retries);
    while (true) {
      std::string data;
      bool too_large = false;
      Exchange x;
      x.path = blob_path(ep.endpoint().repository, digest);
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
      auto sent = ep.send(x, budget);
      if (!sent) return std::move(sent).error().with_context(context);
      auto& resp = *sent;
      if (too_large) {
        return make_error(std::errc::file_too_large, "{}: larger than the limit of {} bytes", context,
                          max_size);
      }
      if (!resp.transport_ok()) {
        // Cut short: a small blob is simply fetched again.
        if (resp.retryable_transport() && budget.wait_before_retry()) continue;
        return d.shared.transport_error(resp, budget).with_context(context);
      }
      if (resp.status != 200) return ep.status_error(resp, context, budget);
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

Result<void> RegistryClient::stream_blob(std::string_view digest_text, std::uint64_t from,
                                         const std::function<Result<void>(std::span<const std::byte>)>& sink,
                                         const std::function<bool()>& cancelled,
                                         std::optional<std::uint64_t> end) {
  auto parsed = oci::Digest::parse(digest_text);
  if (!parsed) return parsed.error().with_context(fmt::format("cannot stream blob of {}", describe()));
  if (end && *end <= from) return util::success();
  RangedGet get;
  get.digest = std::string(digest_text);
  get.from = from;
  get.end = end;
  get.sink = sink;
  get.cancelled = cancelled;
  get.verb = "stream";
  // No overall deadline (a layer may be large and the link slow), but no wait without one: an
  // attempt ends after stall_timeout without data, and the stream fails after request_deadline
  // without progress.
  get.idle_limit = impl_->shared.options.request_deadline;
  auto r = impl_->ranged(get);
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
  RangedGet get;
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
  get.deadline = util::earliest(Clock::now() + impl_->shared.options.read_deadline, util::current_deadline());
  get.idle_limit = impl_->shared.options.read_deadline;
  auto r = impl_->ranged(get);
  if (!r) {
    auto code = r.error().code == std::errc::timed_out ? std::errc::timed_out : std::errc::io_error;
    return Error{code, std::move(r).error().message};
  }
  return got;
}

TransferStats RegistryClient::stats() const {
  const auto& s = impl_->shared;
  return TransferStats{s.blob_bytes.load(), s.requests.load(), s.retries.load()};
}

std::string RegistryClient::describe() const { return impl_->endpoints.back()->endpoint().str(); }

}  // namespace ocifs::registry
