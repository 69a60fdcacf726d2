// TLS trust and client certificates for one registry host, from certs.d directories
// (/etc/containers/certs.d/HOST[:PORT]/, /etc/docker/certs.d/...): *.crt are extra CAs added to the
// system ones, a *.cert with the *.key of the same name is the client certificate.
// Plain values; not synchronised (read-only after loading, safe to share).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ocifs/util/result.hpp"

namespace ocifs::registry {

struct TlsSettings {
  bool verify = true;
  // PEM of the system CA bundle followed by the extra CAs; empty: libcurl's defaults.
  std::string ca_pem;
  std::string client_cert;  // PEM file paths; empty when none
  std::string client_key;
  std::vector<std::string> files;  // the certs.d files used, for debug logs

  // `host` as in references ("myreg:5000"); `certs_dirs` is a ':'-separated list, each searched
  // for a directory named after the host (and after `alias`, when given, e.g. docker.io for
  // registry-1.docker.io). Missing directories are fine; an unreadable CA file is an error.
  static Result<TlsSettings> load(std::string_view host, std::string_view alias, std::string_view certs_dirs,
                                  bool verify);
};

}  // namespace ocifs::registry
