// RegistryClient: the distribution API for one repository — manifests, small blobs, streamed
// blobs and range reads — with authentication, credentials, mirrors (registries.conf), TLS
// settings (certs.d), redirects (Authorization never leaves the registry's host), retries with
// backoff and deadlines.
//
// Thread-safe: one instance per registry host + repository, shared by all FUSE and indexing
// threads. Each endpoint's ping runs once under that endpoint's DeadlineMutex (other threads wait
// for it, each until its own deadline); the resolved blob URLs have their own mutex; the
// Authenticator locks itself and never across a token fetch (see authenticator.hpp); TLS
// settings of other hosts (CDNs, token servers) sit behind one more. Lock order where they
// nest: endpoint ping mutex, then the Authenticator's, then the TLS settings mutex; the URL
// mutex is never held with another. No lock is held while a blob request runs. TransferStats
// are atomics.
//
// Blob bytes come through one ranged GET with resume (stream_blob, read_blob_range): a cut
// connection resumes with Range from the byte reached, and an attempt that delivered data is
// progress, not a failure; only attempts that deliver (almost) nothing use up max_attempts.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ocifs/oci/image_ref.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::registry {

struct RegistryOptions {
  std::string creds;            // --creds USER:PASS (wins over files)
  std::string authfile;         // --authfile, else $REGISTRY_AUTH_FILE, then the usual files
  bool tls_verify = true;       // --tls-verify=false
  bool plain_http = false;      // --plain-http; loopback hosts (localhost, 127/8, ::1) fall back to http
  std::string registries_conf;  // override path; default lookup per containers-registries.conf(5)
  std::string certs_dirs = "/etc/containers/certs.d:/etc/docker/certs.d";
  std::chrono::milliseconds connect_timeout{10'000};
  // Deadline of a range read (what a FUSE read waits for), retries included (--read-timeout);
  // the thread's own deadline (util/deadline.hpp) shortens it.
  std::chrono::milliseconds read_deadline{30'000};
  // Deadline of the other bounded operations (ping, token, manifest, get_blob), retries included,
  // and the longest a stream goes without progress (--request-timeout).
  std::chrono::milliseconds request_deadline{120'000};
  // An open transfer that moves less than 1 KiB/s for this long is a stall: it is cut and resumed
  // (--stall-timeout).
  std::chrono::milliseconds stall_timeout{30'000};
  int max_attempts = 5;  // attempts in a row without progress; backoff on connection errors, 5xx, 429
};

struct FetchedManifest {
  std::string media_type;  // one of the four accepted types
  std::string digest;      // "sha256:…" of `bytes`
  std::string bytes;
};

struct TransferStats {
  std::uint64_t blob_bytes = 0;  // blob bytes received (get_blob, stream_blob, read_blob_range)
  std::uint64_t requests = 0;    // HTTP requests sent, token requests included
  std::uint64_t retries = 0;     // attempts repeated after a failure
};

class RegistryClient {
 public:
  // Largest manifest accepted (containers/image uses the same 4 MiB limit).
  static constexpr std::uint64_t kMaxManifestSize = 4 << 20;

  // Reads registries.conf (blocked registries fail here) and works out the endpoints; no
  // network traffic yet. `ref` must be a registry reference.
  static Result<std::shared_ptr<RegistryClient>> create(const oci::Reference& ref, RegistryOptions options);
  ~RegistryClient();
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  // GET a manifest by tag or digest, accepting OCI manifest and index and Docker schema2
  // manifest and manifest list. By digest the bytes must hash to it. Schema 1 is refused.
  Result<FetchedManifest> get_manifest(std::string_view tag_or_digest);
  // GET a small blob (a config) whole, verified against its digest; refuses more than max_size.
  Result<std::string> get_blob(std::string_view digest, std::uint64_t max_size);
  // Streams blob bytes [from, end) in order to `sink` (`end` unset: to the end of the blob); a
  // dropped connection resumes with Range from the byte reached. No overall deadline (a large
  // layer on a slow link takes what it takes), but it fails after request_deadline without
  // progress. Does NOT verify (the caller hashes). A sink error stops and is returned.
  // `cancelled` is polled about once a second, also while a stalled connection sends nothing,
  // and between attempts: true ends the stream with operation_canceled.
  Result<void> stream_blob(std::string_view digest, std::uint64_t from,
                           const std::function<Result<void>(std::span<const std::byte>)>& sink,
                           const std::function<bool()>& cancelled = {},
                           std::optional<std::uint64_t> end = std::nullopt);
  // Exactly buf.size() bytes at `offset` (fewer only at the end of the blob), within
  // read_deadline and the thread's deadline; errors are std::errc::io_error (timed_out when a
  // deadline passed) naming the digest and offset.
  Result<std::size_t> read_blob_range(std::string_view digest, std::uint64_t offset,
                                      std::span<std::byte> buf);

  // Pushing (ocifs index --push), always to the registry itself, never to a mirror.
  // From now on tokens are asked for pull and push on the repository.
  void request_push();
  // Uploads a blob, unless the repository has it already (HEAD first): POST an upload, PUT the
  // bytes with their digest.
  Result<void> push_blob(std::string_view digest, std::string_view bytes);
  // PUTs a manifest or index under a tag or its digest; `digest` is that of `bytes`. True when
  // the registry answered with an OCI-Subject header: it keeps referrers itself, so the
  // referrers tag schema needs no update.
  Result<bool> push_manifest(std::string_view tag_or_digest, std::string_view media_type, std::string_view bytes);

  // The referrers of manifest `digest` as an image index: from the referrers API (asked for
  // `artifact_type` only, when not empty; the caller filters too, since a registry may ignore
  // the filter), else, where the registry has no such API, from the referrers tag schema;
  // nullopt when neither lists any. Mirrors are asked first, as for tags.
  struct Referrers {
    std::string index_json;
    bool from_tag_schema = false;
  };
  Result<std::optional<Referrers>> get_referrers(std::string_view digest, std::string_view artifact_type);

  TransferStats stats() const;
  // "ghcr.io/owner/app" (the primary endpoint), for messages.
  std::string describe() const;

 private:
  struct Impl;
  explicit RegistryClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocifs::registry
