// RegistryClient's pushes (blobs, manifests) and the referrers lookup (registry_client.hpp). Pushes
// go to the registry itself: mirrors are read-only. Uploads are monolithic (POST, then one PUT of
// the bytes): a shared index is a few MiB at most.
#include <spdlog/spdlog.h>

#include "client_impl.hpp"
#include "ocifs/oci/referrers.hpp"
#include "ocifs/oci/types.hpp"
#include "ocifs/registry/registry_url.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/util/sha256.hpp"
#include "ocifs/util/text.hpp"
#include "registry_response.hpp"

namespace ocifs::registry {

namespace {

// An upload's Location with the digest added to its query ("?digest=" or "&digest=").
std::string with_digest(std::string_view location, std::string_view digest) {
  return fmt::format("{}{}digest={}", location, location.find('?') == std::string_view::npos ? '?' : '&',
                     percent_encode(digest));
}

// Sends a PUT of `body` (typed `content_type`) to `put.path` or `put.url`; the answer when the
// registry says 201 Created, else the error, prefixed with `context`.
Result<HttpResponse> put_created(ClientShared& shared, EndpointSession& ep, Exchange put, std::string_view content_type,
                                 std::string_view body, RetryBudget& budget, const std::string& context) {
  put.method = "PUT";
  put.headers = {fmt::format("Content-Type: {}", content_type)};
  put.body = std::string(body);
  auto sent = ep.send(put, budget);
  if (!sent) return std::move(sent).error().with_context(context);
  if (!sent->transport_ok()) return shared.transport_error(*sent, budget).with_context(context);
  if (sent->status != 201) return ep.status_error(*sent, context, budget);
  return sent;
}

}  // namespace

void RegistryClient::request_push() {
  for (auto& ep : impl_->endpoints) ep->request_push();
}

Result<void> RegistryClient::push_blob(std::string_view digest_text, std::string_view bytes) {
  auto& d = *impl_;
  OCIFS_TRY(oci::Digest::parse(digest_text));
  const std::string digest(digest_text);
  if ("sha256:" + util::sha256_hex(bytes) != digest) {
    return make_error(std::errc::invalid_argument, "cannot push blob {}: the bytes do not match it", digest);
  }
  EndpointSession& ep = d.primary();
  const std::string context = fmt::format("cannot push blob {} to {}", digest, ep.endpoint().str());
  RetryBudget budget(Clock::now() + d.shared.options.request_deadline, d.shared.options.max_attempts,
                     &d.shared.retries);

  Exchange head;
  head.method = "HEAD";
  head.path = blob_path(ep.endpoint().repository, digest);
  auto has_sent = ep.send(head, budget);
  if (!has_sent) return std::move(has_sent).error().with_context(context);
  auto& has = *has_sent;
  if (has.status == 200) return util::success();  // already there

  Exchange start;
  start.method = "POST";
  start.path = fmt::format("/v2/{}/blobs/uploads/", ep.endpoint().repository);
  start.headers = {"Content-Type: application/octet-stream"};
  auto started_sent = ep.send(start, budget);
  if (!started_sent) return std::move(started_sent).error().with_context(context);
  auto& started = *started_sent;
  if (!started.transport_ok()) return d.shared.transport_error(started, budget).with_context(context);
  if (started.status != 202) return ep.status_error(started, context, budget);
  auto location = started.header("location");
  if (location.empty()) {
    return make_error(std::errc::protocol_error, "{}: the registry started an upload without a Location",
                      context);
  }
  OCIFS_ASSIGN(auto upload, resolve_location(ep.origin(), location));

  Exchange put;
  put.url = with_digest(upload, digest);
  OCIFS_TRY(put_created(d.shared, ep, std::move(put), "application/octet-stream", bytes, budget, context));
  return util::success();
}

Result<bool> RegistryClient::push_manifest(std::string_view reference, std::string_view media_type,
                                           std::string_view bytes) {
  auto& d = *impl_;
  EndpointSession& ep = d.primary();
  const std::string context = fmt::format("cannot push manifest {} to {}", reference, ep.endpoint().str());
  if (bytes.size() > kMaxManifestSize) {
    return make_error(std::errc::file_too_large, "{}: {} bytes, more than {}", context, bytes.size(),
                      kMaxManifestSize);
  }
  RetryBudget budget(Clock::now() + d.shared.options.request_deadline, d.shared.options.max_attempts,
                     &d.shared.retries);
  Exchange put;
  put.path = manifest_path(ep.endpoint().repository, reference);
  OCIFS_ASSIGN(auto done, put_created(d.shared, ep, std::move(put), media_type, bytes, budget, context));
  return !done.header("oci-subject").empty();
}

Result<std::optional<RegistryClient::Referrers>> RegistryClient::get_referrers(
    std::string_view digest_text, std::string_view artifact_type) {
  auto& d = *impl_;
  OCIFS_TRY(oci::Digest::parse(digest_text));
  const std::string digest(digest_text);
  const std::string tag = oci::referrers_tag(digest);
  auto deadline = Clock::now() + d.shared.options.request_deadline;
  bool failed_somewhere = false;  // an endpoint failed, rather than saying it lists none
  std::function<Result<std::optional<Referrers>>(EndpointSession&, bool&)> fn =
      [&](EndpointSession& ep, bool&) -> Result<std::optional<Referrers>> {
    const std::string context =
        fmt::format("cannot list the referrers of {} at {}", digest, ep.endpoint().str());
    RetryBudget budget(deadline, d.shared.options.max_attempts, &d.shared.retries);
    // An image index at `path`: the answer (any status), or a transport error.
    auto get_index = [&](std::string path) -> Result<HttpResponse> {
      Exchange x;
      x.path = std::move(path);
      x.headers = {fmt::format("Accept: {}", oci::media_type::kOciIndex)};
      x.max_body = kMaxManifestSize;
      auto sent = ep.send(x, budget);
      if (!sent) return std::move(sent).error().with_context(context);
      if (!sent->transport_ok()) return d.shared.transport_error(*sent, budget).with_context(context);
      return sent;
    };
    std::string api = fmt::format("/v2/{}/referrers/{}", ep.endpoint().repository, digest);
    if (!artifact_type.empty()) api += "?artifactType=" + percent_encode(artifact_type);
    OCIFS_ASSIGN(auto resp, get_index(std::move(api)));
    if (resp.status == 200 && !resp.body_truncated)
      return std::optional(Referrers{std::move(resp.body), false});
    if (resp.status != 404) {
      failed_somewhere = true;
      return ep.status_error(resp, context, budget);
    }
    // No referrers API here (distribution 2.8 answers its router's plain 404): the tag schema.
    OCIFS_ASSIGN(auto index, get_index(manifest_path(ep.endpoint().repository, tag)));
    if (index.status == 200 && !index.body_truncated)
      return std::optional(Referrers{std::move(index.body), true});
    if (index.status == 404) {
      // Not an error, but the next endpoint (the registry behind a mirror) may know more.
      return make_error(std::errc::no_such_file_or_directory, "{}: none listed", context);
    }
    failed_somewhere = true;
    return ep.status_error(index, context, budget);
  };
  auto found = d.over_endpoints(false, fn);
  if (!found && found.error().code == std::errc::no_such_file_or_directory && !failed_somewhere) {
    return std::optional<Referrers>();
  }
  if (!found) return std::move(found).error();
  return found;
}

}  // namespace ocifs::registry
