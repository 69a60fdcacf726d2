#include "ocifs/registry/registries_conf.hpp"

#include <dirent.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "ocifs/registry/registry_url.hpp"

namespace ocifs::registry {

namespace {

bool is_docker_hub(std::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

bool file_exists(const std::string& path) {
  std::ifstream in(path);
  return static_cast<bool>(in);
}

Error conf_error(std::string_view source, std::string_view what) {
  return make_error(std::errc::invalid_argument, "cannot read registries configuration {}: {}", source, what);
}

Result<bool> get_bool(const toml::table& t, std::string_view key, std::string_view source,
                      std::string_view where) {
  auto node = t.get(key);
  if (!node) return false;
  if (auto b = node->value<bool>()) return *b;
  return conf_error(source, fmt::format("{}.{} must be true or false", where, key));
}

Result<std::string> get_string(const toml::table& t, std::string_view key, std::string_view source,
                               std::string_view where) {
  auto node = t.get(key);
  if (!node) return std::string();
  if (auto s = node->value<std::string>()) return *s;
  return conf_error(source, fmt::format("{}.{} must be a string", where, key));
}

// A location is "host[:port][/path]" without a scheme.
Result<void> check_location(std::string_view location, std::string_view source, std::string_view where) {
  if (location.find("://") != std::string_view::npos) {
    return conf_error(source, fmt::format("{} \"{}\" must not contain a scheme (write host[:port][/path])",
                                          where, location));
  }
  if (!is_host_location(location)) {
    return conf_error(source, fmt::format("{} \"{}\" is not a registry location", where, location));
  }
  return util::success();
}

Result<MirrorUse> parse_mirror_use(std::string_view text, std::string_view source) {
  if (text.empty() || text == "all") return MirrorUse::all;
  if (text == "digest-only") return MirrorUse::digest_only;
  if (text == "tag-only") return MirrorUse::tag_only;
  return conf_error(source, fmt::format("pull-from-mirror \"{}\" is not all, digest-only or tag-only", text));
}

Result<RegistryConf> parse_registry(const toml::table& t, std::string_view source, std::size_t index) {
  std::string where = fmt::format("[[registry]] #{}", index + 1);
  RegistryConf r;
  r.source = std::string(source);
  OCIFS_ASSIGN(r.prefix, get_string(t, "prefix", source, where));
  OCIFS_ASSIGN(r.location, get_string(t, "location", source, where));
  OCIFS_ASSIGN(r.insecure, get_bool(t, "insecure", source, where));
  OCIFS_ASSIGN(r.blocked, get_bool(t, "blocked", source, where));
  OCIFS_ASSIGN(r.mirror_by_digest_only, get_bool(t, "mirror-by-digest-only", source, where));
  if (r.prefix.empty() && r.location.empty())
    return conf_error(source, where + " needs a prefix or a location");
  bool wildcard = r.prefix.starts_with("*.");
  if (wildcard) {
    if (r.prefix.find_first_of("/:@") != std::string::npos) {
      return conf_error(source,
                        fmt::format("{}: wildcard prefix \"{}\" may name a host only", where, r.prefix));
    }
    r.location.clear();
  } else {
    if (r.prefix.empty()) r.prefix = r.location;
    if (r.location.empty()) r.location = r.prefix;
    OCIFS_TRY(check_location(r.location, source, where + " location"));
  }
  if (auto mirrors = t.get("mirror")) {
    auto* array = mirrors->as_array();
    if (!array) return conf_error(source, where + ".mirror must be an array of tables ([[registry.mirror]])");
    for (std::size_t i = 0; i < array->size(); ++i) {
      auto* mt = array->get(i)->as_table();
      if (!mt) return conf_error(source, where + ".mirror must be an array of tables ([[registry.mirror]])");
      std::string mwhere = fmt::format("{} mirror #{}", where, i + 1);
      MirrorConf m;
      OCIFS_ASSIGN(m.location, get_string(*mt, "location", source, mwhere));
      if (m.location.empty()) return conf_error(source, mwhere + " needs a location");
      OCIFS_TRY(check_location(m.location, source, mwhere + " location"));
      OCIFS_ASSIGN(m.insecure, get_bool(*mt, "insecure", source, mwhere));
      OCIFS_ASSIGN(auto use, get_string(*mt, "pull-from-mirror", source, mwhere));
      OCIFS_ASSIGN(m.use, parse_mirror_use(use, source));
      r.mirrors.push_back(std::move(m));
    }
  }
  return r;
}

// The v1 format: [registries.insecure] / [registries.block] with `registries = [...]`.
Result<void> parse_v1(const toml::table& registries, std::string_view source,
                      std::vector<RegistryConf>& out) {
  auto list = [&](std::string_view table, bool insecure, bool blocked) -> Result<void> {
    auto* t = registries.get_as<toml::table>(table);
    if (!t) return util::success();
    auto* names = t->get_as<toml::array>("registries");
    if (!names) return util::success();
    for (const auto& node : *names) {
      auto name = node.value<std::string>();
      if (!name) return conf_error(source, fmt::format("registries.{}.registries must hold strings", table));
      auto it =
          std::find_if(out.begin(), out.end(), [&](const RegistryConf& r) { return r.prefix == *name; });
      if (it == out.end()) {
        RegistryConf r;
        r.prefix = r.location = *name;
        r.source = std::string(source);
        if (r.prefix.starts_with("*.")) r.location.clear();
        out.push_back(std::move(r));
        it = std::prev(out.end());
      }
      it->insecure |= insecure;
      it->blocked |= blocked;
    }
    return util::success();
  };
  OCIFS_TRY(list("insecure", true, false));
  OCIFS_TRY(list("block", false, true));
  return util::success();
}

bool prefix_matches(const RegistryConf& r, std::string_view name) {
  if (r.prefix.starts_with("*.")) {
    auto host = name.substr(0, name.find('/'));
    std::string_view suffix = std::string_view(r.prefix).substr(1);  // ".example.com"
    return host.size() > suffix.size() && host.ends_with(suffix);
  }
  if (!name.starts_with(r.prefix)) return false;
  if (name.size() == r.prefix.size()) return true;
  char next = name[r.prefix.size()];
  return next == '/' || next == ':' || next == '@';
}

std::string getenv_string(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

}  // namespace

std::string Endpoint::api_host() const { return is_docker_hub(registry) ? "registry-1.docker.io" : registry; }

bool Endpoint::serves(bool by_digest) const {
  switch (use) {
    case MirrorUse::all:
      return true;
    case MirrorUse::digest_only:
      return by_digest;
    case MirrorUse::tag_only:
      return !by_digest;
  }
  return true;
}

RegistriesConfFiles RegistriesConfFiles::locate(const std::string& override_path, const std::string& env_path,
                                                const std::string& home) {
  RegistriesConfFiles files;
  std::string chosen = !override_path.empty() ? override_path : env_path;
  if (!chosen.empty()) {
    files.file = chosen;
    files.dropin_dirs = {chosen + ".d"};
    return files;
  }
  std::string user_file = home.empty() ? std::string() : home + "/.config/containers/registries.conf";
  if (!user_file.empty() && file_exists(user_file)) {
    files.file = user_file;
    files.dropin_dirs = {user_file + ".d"};
    return files;
  }
  files.file = "/etc/containers/registries.conf";
  files.dropin_dirs = {"/etc/containers/registries.conf.d"};
  if (!user_file.empty()) files.dropin_dirs.push_back(user_file + ".d");
  return files;
}

RegistriesConfFiles RegistriesConfFiles::locate_from_process(const std::string& override_path) {
  return locate(override_path, getenv_string("CONTAINERS_REGISTRIES_CONF"), getenv_string("HOME"));
}

Result<RegistriesConf> RegistriesConf::parse(std::string_view text, std::string_view source) {
  toml::table doc;
  try {
    doc = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    return conf_error(source, fmt::format("line {}: {}", e.source().begin.line, e.description()));
  }
  RegistriesConf conf;
  if (auto node = doc.get("registry")) {
    auto* array = node->as_array();
    if (!array) return conf_error(source, "registry must be an array of tables ([[registry]])");
    for (std::size_t i = 0; i < array->size(); ++i) {
      auto* t = array->get(i)->as_table();
      if (!t) return conf_error(source, "registry must be an array of tables ([[registry]])");
      OCIFS_ASSIGN(auto r, parse_registry(*t, source, i));
      conf.registries_.push_back(std::move(r));
    }
  }
  if (auto* v1 = doc.get_as<toml::table>("registries")) OCIFS_TRY(parse_v1(*v1, source, conf.registries_));
  return conf;
}

void RegistriesConf::merge(RegistriesConf later) {
  for (auto& r : later.registries_) {
    auto it = std::find_if(registries_.begin(), registries_.end(),
                           [&](const RegistryConf& mine) { return mine.prefix == r.prefix; });
    if (it != registries_.end()) {
      *it = std::move(r);
    } else {
      registries_.push_back(std::move(r));
    }
  }
}

Result<RegistriesConf> RegistriesConf::load(const RegistriesConfFiles& files) {
  auto read = [](const std::string& path) -> Result<std::optional<std::string>> {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      int err = errno;
      if (err == ENOENT || err == ENOTDIR) return std::optional<std::string>();
      return util::errno_error(err == 0 ? EIO : err,
                               fmt::format("cannot read registries configuration {}", path));
    }
    std::ostringstream s;
    s << in.rdbuf();
    return std::optional<std::string>(s.str());
  };
  RegistriesConf conf;
  if (!files.file.empty()) {
    OCIFS_ASSIGN(auto text, read(files.file));
    if (text) {
      OCIFS_ASSIGN(conf, parse(*text, files.file));
    }
  }
  for (const auto& dir : files.dropin_dirs) {
    std::vector<std::string> names;
    if (DIR* d = ::opendir(dir.c_str())) {
      while (auto* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name.size() > 5 && name.ends_with(".conf")) names.push_back(name);
      }
      ::closedir(d);
    }
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      auto path = dir + "/" + name;
      OCIFS_ASSIGN(auto text, read(path));
      if (!text) continue;
      OCIFS_ASSIGN(auto dropin, parse(*text, path));
      conf.merge(std::move(dropin));
    }
  }
  return conf;
}

const RegistryConf* RegistriesConf::find(std::string_view name) const {
  const RegistryConf* best = nullptr;
  for (const auto& r : registries_) {
    if (prefix_matches(r, name) && (!best || r.prefix.size() > best->prefix.size())) best = &r;
  }
  return best;
}

Result<std::vector<Endpoint>> RegistriesConf::endpoints(const oci::Reference& ref) const {
  std::string name = ref.registry + "/" + ref.repository;
  const RegistryConf* conf = find(ref.str());
  if (!conf) return std::vector<Endpoint>{Endpoint{ref.registry, ref.repository}};
  if (conf->blocked) {
    return make_error(std::errc::permission_denied, "cannot pull {}: registry \"{}\" is blocked in {}",
                      ref.str(), conf->prefix, conf->source);
  }
  bool wildcard = conf->prefix.starts_with("*.");
  std::size_t matched = wildcard ? ref.registry.size() : std::min(conf->prefix.size(), name.size());
  std::string rest = name.substr(matched);  // "" or "/more/path"
  auto rewrite = [&](const std::string& location, std::string_view what) -> Result<Endpoint> {
    std::string target = location + rest;
    while (target.ends_with('/')) target.pop_back();
    auto slash = target.find('/');
    if (slash == std::string::npos || slash + 1 == target.size()) {
      return make_error(std::errc::invalid_argument,
                        "cannot pull {}: {} \"{}\" (from {}) leaves no repository name for it", ref.str(),
                        what, location, conf->source);
    }
    Endpoint e{target.substr(0, slash), target.substr(slash + 1)};
    if (is_docker_hub(e.registry)) {
      e.registry = "docker.io";
      if (e.repository.find('/') == std::string::npos) e.repository = "library/" + e.repository;
    }
    return e;
  };
  std::vector<Endpoint> out;
  for (const auto& m : conf->mirrors) {
    OCIFS_ASSIGN(auto e, rewrite(m.location, "mirror"));
    e.insecure = m.insecure;
    e.mirror = true;
    e.use = conf->mirror_by_digest_only ? MirrorUse::digest_only : m.use;
    out.push_back(std::move(e));
  }
  Endpoint primary{ref.registry, ref.repository};
  if (!wildcard) {
    OCIFS_ASSIGN(primary, rewrite(conf->location, "location"));
  }
  primary.insecure = conf->insecure;
  out.push_back(std::move(primary));
  return out;
}

}  // namespace ocifs::registry
