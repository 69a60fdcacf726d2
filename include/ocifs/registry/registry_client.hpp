// RegistryClient: the distribution API for one repository — manifests, small blobs, streamed
// blobs and range reads — with authentication, credentials, mirrors (registries.conf), TLS
// settings (certs.d), redirects (Authorization never leaves the registry's host), retries with
// backoff and deadlines.
//
// Thread-safe: one instance per registry host + repository, shared by all FUSE and indexing
// threads. Each endpoint's ping runs once under that endpoint's mutex (other threads wait for
// it); the resolved blob URLs have their own mutex; the Authenticator locks itself (see
// authenticator.hpp); TLS settings of other hosts (CDNs, token servers) sit behind one more.
// Lock order where they nest: endpoint ping mutex, then the Authenticator's, then the TLS
// settings mutex; the URL mutex is never held with another. No lock is held while a blob
// request runs (a token fetch holds the Authenticator's). TransferStats are atomics.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
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
  std::chrono::milliseconds read_deadline{30'000};  // whole-request deadline for a range read
  // Deadline of the other bounded operations (ping, token, manifest, get_blob), retries included.
  std::chrono::milliseconds request_deadline{120'000};
  int max_attempts = 5;  // retries with backoff on connection errors, 5xx, 429 (Retry-After)
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
  // dropped connection resumes with Range from the byte reached. Does NOT verify (the caller
  // hashes). A sink error stops and is returned. `cancelled` is polled about once a second, also
  // while a stalled connection sends nothing, and between attempts: true ends the stream with
  // operation_canceled.
  Result<void> stream_blob(std::string_view digest, std::uint64_t from,
                           const std::function<Result<void>(std::span<const std::byte>)>& sink,
                           const std::function<bool()>& cancelled = {},
                           std::optional<std::uint64_t> end = std::nullopt);
  // Exactly buf.size() bytes at `offset` (fewer only at the end of the blob), within
  // read_deadline; errors are std::errc::io_error naming the digest and offset.
  Result<std::size_t> read_blob_range(std::string_view digest, std::uint64_t offset,
                                      std::span<std::byte> buf);

  TransferStats stats() const;
  // "ghcr.io/owner/app" (the primary endpoint), for messages.
  std::string describe() const;

 private:
  struct Impl;
  explicit RegistryClient(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocifs::registry
