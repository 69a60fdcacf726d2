// Registry credentials: --creds, then auth.json / Docker config.json files (containers-auth.json(5),
// docker config), with credential helpers. Values and const lookups; safe to share between
// threads (a lookup reads files and may run a helper each time: callers cache the result).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocifs/util/result.hpp"

namespace ocifs::registry {

struct Credentials {
  std::string username;
  std::string password;
  // Docker's "identitytoken": an OAuth2 refresh token for the token server, used instead of a
  // password (docker login with an identity provider; helpers answer Username "<token>").
  std::string identity_token;

  bool empty() const { return username.empty() && password.empty() && identity_token.empty(); }
};

struct FoundCredentials {
  Credentials credentials;
  std::string source;  // "--creds", a file path, "docker-credential-NAME via FILE"; never a secret
};

// The environment the lookup depends on, captured once (tests build it by hand).
struct CredentialEnvironment {
  std::string authfile;            // --authfile; wins over REGISTRY_AUTH_FILE
  std::string registry_auth_file;  // $REGISTRY_AUTH_FILE
  std::string xdg_runtime_dir;     // $XDG_RUNTIME_DIR
  std::string xdg_config_home;     // $XDG_CONFIG_HOME
  std::string docker_config;       // $DOCKER_CONFIG
  std::string home;                // $HOME, else the passwd entry
  unsigned uid = 0;

  static CredentialEnvironment from_process(std::string authfile);
};

// The files consulted, in order (first match wins; missing files are skipped):
//   --authfile or $REGISTRY_AUTH_FILE,
//   $XDG_RUNTIME_DIR/containers/auth.json (unset: /run/containers/UID/auth.json, as podman),
//   $XDG_CONFIG_HOME/containers/auth.json (unset: ~/.config/containers/auth.json),
//   $DOCKER_CONFIG/config.json (unset: ~/.docker/config.json).
std::vector<std::string> auth_file_paths(const CredentialEnvironment& env);

// An `auths` / `credHelpers` key as a registry[/namespace] name: a scheme makes the key a URL
// whose path is dropped ("https://index.docker.io/v1/" → "docker.io", "http://h:5000/v2/" →
// "h:5000"); Docker Hub's aliases (index.docker.io, registry-1.docker.io) become "docker.io";
// a key without scheme keeps its namespace path ("quay.io/team").
std::string normalize_auth_key(std::string_view key);

// The server URL a credential helper is asked about: "https://index.docker.io/v1/" for Docker
// Hub (what `docker login` stores), the registry host otherwise.
std::string credential_server_url(std::string_view registry);

class CredentialLookup {
 public:
  // `creds`: --creds "USER[:PASSWORD]" ("" = none).
  CredentialLookup(std::string creds, std::vector<std::string> auth_files,
                   std::chrono::milliseconds helper_timeout = std::chrono::seconds(30));

  // Credentials for a repository on `registry` (as in references: "docker.io", "ghcr.io",
  // "localhost:5000"): --creds, else the first file with a match. In a file: credHelpers[registry]
  // runs that helper; else the most specific `auths` entry (registry/repository, its parents,
  // registry) with `auth` (base64 USER:PASS) and/or `identitytoken`; else `credsStore` runs that
  // helper. nullopt: anonymous. An unreadable or malformed file, or a failing helper, is an error.
  Result<std::optional<FoundCredentials>> find(std::string_view registry, std::string_view repository) const;

  // One file only; nullopt when it does not exist or has no match.
  static Result<std::optional<FoundCredentials>> find_in_file(const std::string& path,
                                                              std::string_view registry,
                                                              std::string_view repository,
                                                              std::chrono::milliseconds helper_timeout);

 private:
  std::string creds_;
  std::vector<std::string> auth_files_;
  std::chrono::milliseconds helper_timeout_;
};

}  // namespace ocifs::registry
