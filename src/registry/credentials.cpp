#include "ocifs/registry/credentials.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ocifs/util/base64.hpp"
#include "ocifs/registry/credential_helper.hpp"
#include "ocifs/registry/registry_url.hpp"

namespace ocifs::registry {

namespace {

using nlohmann::json;

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

bool is_docker_hub(std::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

// Reads a whole file; nullopt when it does not exist.
Result<std::optional<std::string>> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    if (err == ENOENT || err == ENOTDIR) return std::optional<std::string>();
    return util::errno_error(err == 0 ? EIO : err, fmt::format("cannot read credentials from {}", path));
  }
  std::ostringstream s;
  s << in.rdbuf();
  return std::optional<std::string>(s.str());
}

std::string string_field(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<std::optional<FoundCredentials>> from_helper(std::string_view helper, std::string_view registry,
                                                    const std::string& path,
                                                    std::chrono::milliseconds timeout) {
  OCIFS_ASSIGN(auto creds, run_credential_helper(helper, credential_server_url(registry), timeout));
  if (!creds) return std::optional<FoundCredentials>();
  return std::optional<FoundCredentials>(
      FoundCredentials{std::move(*creds), fmt::format("docker-credential-{} via {}", helper, path)});
}

}  // namespace

CredentialEnvironment CredentialEnvironment::from_process(std::string authfile) {
  CredentialEnvironment env;
  env.authfile = std::move(authfile);
  env.registry_auth_file = env_or_empty("REGISTRY_AUTH_FILE");
  env.xdg_runtime_dir = env_or_empty("XDG_RUNTIME_DIR");
  env.xdg_config_home = env_or_empty("XDG_CONFIG_HOME");
  env.docker_config = env_or_empty("DOCKER_CONFIG");
  env.home = env_or_empty("HOME");
  env.uid = ::getuid();
  if (env.home.empty()) {
    passwd pw{}, *found = nullptr;
    char buf[4096];
    if (getpwuid_r(env.uid, &pw, buf, sizeof buf, &found) == 0 && found && found->pw_dir)
      env.home = found->pw_dir;
  }
  return env;
}

std::vector<std::string> auth_file_paths(const CredentialEnvironment& env) {
  std::vector<std::string> paths;
  if (!env.authfile.empty()) {
    paths.push_back(env.authfile);
  } else if (!env.registry_auth_file.empty()) {
    paths.push_back(env.registry_auth_file);
  }
  if (!env.xdg_runtime_dir.empty()) {
    paths.push_back(env.xdg_runtime_dir + "/containers/auth.json");
  } else {
    paths.push_back(fmt::format("/run/containers/{}/auth.json", env.uid));
  }
  if (!env.xdg_config_home.empty()) {
    paths.push_back(env.xdg_config_home + "/containers/auth.json");
  } else if (!env.home.empty()) {
    paths.push_back(env.home + "/.config/containers/auth.json");
  }
  if (!env.docker_config.empty()) {
    paths.push_back(env.docker_config + "/config.json");
  } else if (!env.home.empty()) {
    paths.push_back(env.home + "/.docker/config.json");
  }
  return paths;
}

std::string normalize_auth_key(std::string_view key) {
  // A URL ("https://index.docker.io/v1/", as `docker login` writes keys) stands for its host.
  const std::string scheme = url_scheme(key);
  const std::string authority = scheme == "https" || scheme == "http" ? url_authority(key) : std::string();
  std::string_view k = authority.empty() ? key : authority;
  while (k.ends_with('/')) k.remove_suffix(1);
  auto slash = k.find('/');
  auto host = k.substr(0, slash);
  std::string rest = slash == std::string_view::npos ? std::string() : std::string(k.substr(slash));
  if (is_docker_hub(host)) return "docker.io" + rest;
  return std::string(k);
}

std::string credential_server_url(std::string_view registry) {
  if (is_docker_hub(registry)) return "https://index.docker.io/v1/";
  return std::string(registry);
}

CredentialLookup::CredentialLookup(std::string creds, std::vector<std::string> auth_files,
                                   std::chrono::milliseconds helper_timeout)
    : creds_(std::move(creds)), auth_files_(std::move(auth_files)), helper_timeout_(helper_timeout) {}

Result<std::optional<FoundCredentials>> CredentialLookup::find(std::string_view registry,
                                                               std::string_view repository) const {
  if (!creds_.empty()) {
    auto colon = creds_.find(':');
    Credentials c;
    c.username = creds_.substr(0, colon);
    if (colon != std::string::npos) c.password = creds_.substr(colon + 1);
    return std::optional<FoundCredentials>(FoundCredentials{std::move(c), "--creds"});
  }
  for (const auto& path : auth_files_) {
    OCIFS_ASSIGN(auto found, find_in_file(path, registry, repository, helper_timeout_));
    if (found) return found;
  }
  return std::optional<FoundCredentials>();
}

Result<std::optional<FoundCredentials>> CredentialLookup::find_in_file(
    const std::string& path, std::string_view registry, std::string_view repository,
    std::chrono::milliseconds helper_timeout) {
  OCIFS_ASSIGN(auto text, read_file(path));
  if (!text || text->find_first_not_of(" \t\r\n") == std::string::npos)
    return std::optional<FoundCredentials>();
  auto doc = json::parse(*text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    return make_error(std::errc::invalid_argument, "cannot read credentials from {}: not a JSON object",
                      path);
  }
  std::string wanted = normalize_auth_key(registry);

  if (auto helpers = doc.find("credHelpers"); helpers != doc.end() && helpers->is_object()) {
    for (const auto& [key, value] : helpers->items()) {
      if (normalize_auth_key(key) == wanted && value.is_string()) {
        return from_helper(value.get<std::string>(), wanted, path, helper_timeout);
      }
    }
  }

  if (auto auths = doc.find("auths"); auths != doc.end() && auths->is_object()) {
    std::map<std::string, const json*> entries;
    for (const auto& [key, value] : auths->items()) {
      // The first spelling of a key wins when two normalise alike (e.g. "docker.io" and
      // "https://index.docker.io/v1/"); both are usually the same login anyway.
      if (value.is_object()) entries.emplace(normalize_auth_key(key), &value);
    }
    // Most specific first: registry/a/b, registry/a, registry.
    std::vector<std::string> candidates;
    std::string name = repository.empty() ? wanted : fmt::format("{}/{}", wanted, repository);
    while (true) {
      candidates.push_back(name);
      if (name.size() <= wanted.size()) break;
      name = name.substr(0, name.rfind('/'));
    }
    for (const auto& candidate : candidates) {
      auto it = entries.find(candidate);
      if (it == entries.end()) continue;
      const json& entry = *it->second;
      Credentials c;
      if (auto auth = string_field(entry, "auth"); !auth.empty()) {
        auto decoded = util::base64_decode(auth);
        auto colon = decoded ? decoded->find(':') : std::string::npos;
        if (colon == std::string::npos) {
          return make_error(
              std::errc::invalid_argument,
              "cannot read credentials for {} from {}: its \"auth\" is not base64 of USER:PASSWORD",
              candidate, path);
        }
        c.username = decoded->substr(0, colon);
        c.password = decoded->substr(colon + 1);
      } else {
        // Old files may carry the fields directly.
        c.username = string_field(entry, "username");
        c.password = string_field(entry, "password");
      }
      c.identity_token = string_field(entry, "identitytoken");
      if (!c.empty()) return std::optional<FoundCredentials>(FoundCredentials{std::move(c), path});
      // An empty entry ({}), as `docker login` writes next to a credsStore: ask the store.
      break;
    }
  }

  if (auto store = string_field(doc, "credsStore"); !store.empty()) {
    return from_helper(store, wanted, path, helper_timeout);
  }
  return std::optional<FoundCredentials>();
}

}  // namespace ocifs::registry
