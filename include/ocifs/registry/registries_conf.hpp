// registries.conf (containers-registries.conf(5), v2 and the old v1 tables): where a reference is
// pulled from: mirrors in order, then the primary location; insecure and blocked registries.
// Plain values; not synchronised (read-only after loading, safe to share).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "ocifs/oci/image_ref.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::registry {

enum class MirrorUse { all, digest_only, tag_only };

struct MirrorConf {
  std::string location;  // "mirror.example.com[:port][/namespace]"
  bool insecure = false;
  MirrorUse use = MirrorUse::all;  // pull-from-mirror
};

struct RegistryConf {
  std::string prefix;    // "example.com/team", "*.example.com"; the location when not given
  std::string location;  // "" for wildcard prefixes (the reference's own registry is used)
  bool insecure = false;
  bool blocked = false;
  bool mirror_by_digest_only = false;
  std::vector<MirrorConf> mirrors;
  std::string source;  // the file it came from, for messages
};

// A place to pull one repository from.
struct Endpoint {
  std::string registry;    // as in references: "docker.io", "mirror.local:5000", "[::1]:5000"
  std::string repository;  // the repository there (a mirror's namespace prepended)
  bool insecure = false;   // plain HTTP allowed and TLS not verified
  bool mirror = false;
  MirrorUse use = MirrorUse::all;

  // The host spoken to: registry-1.docker.io for docker.io.
  std::string api_host() const;
  std::string str() const { return registry + "/" + repository; }  // "ghcr.io/owner/app"
  // Whether this endpoint may serve a manifest pulled by digest or by tag.
  bool serves(bool by_digest) const;
};

// Which files make up the configuration.
struct RegistriesConfFiles {
  std::string file;                      // read when it exists
  std::vector<std::string> dropin_dirs;  // *.conf in each, in lexical order, applied after `file`

  // `override_path` (--registries-conf) or $CONTAINERS_REGISTRIES_CONF: that file, drop-ins from
  // FILE.d; else ~/.config/containers/registries.conf when it exists (drop-ins from
  // ~/.config/containers/registries.conf.d); else /etc/containers/registries.conf with drop-ins
  // from /etc/containers/registries.conf.d then ~/.config/containers/registries.conf.d.
  static RegistriesConfFiles locate(const std::string& override_path, const std::string& env_path,
                                    const std::string& home);
  static RegistriesConfFiles locate_from_process(const std::string& override_path);
};

class RegistriesConf {
 public:
  // Parses one TOML document; `source` names it in errors.
  static Result<RegistriesConf> parse(std::string_view toml, std::string_view source);
  // Reads the files (a missing file or drop-in directory is no error; a malformed one is).
  static Result<RegistriesConf> load(const RegistriesConfFiles& files);

  // Applies a later file (a drop-in): its [[registry]] entries replace those with the same
  // prefix and add the others.
  void merge(RegistriesConf later);

  // The entry whose prefix matches `name` ("registry/repository[:tag][@digest]") most
  // specifically, or nullptr. A prefix matches the whole name or a part of it that ends before
  // '/', ':' or '@'; "*.example.com" matches hosts in example.com's subdomains.
  const RegistryConf* find(std::string_view name) const;

  // Where to pull `ref` from: the mirrors in order, then the primary location. An error when the
  // matching entry is blocked.
  Result<std::vector<Endpoint>> endpoints(const oci::Reference& ref) const;

  const std::vector<RegistryConf>& registries() const { return registries_; }

 private:
  std::vector<RegistryConf> registries_;
};

}  // namespace ocifs::registry
