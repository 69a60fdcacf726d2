// Reference parsing as docker/distribution's `reference.ParseNormalizedNamed` does it, and the
// local transports of containers-transports(5).
#include "ocifs/oci/image_ref.hpp"

#include <algorithm>
#include <cctype>

#include "ocifs/util/sha256.hpp"

namespace ocifs::oci {

namespace {

constexpr std::string_view kDefaultDomain = "docker.io";
constexpr std::string_view kLegacyDefaultDomain = "index.docker.io";
constexpr std::size_t kNameTotalLengthMax = 255;  // docker/distribution's reference.NameTotalLengthMax

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool is_word(char c) { return is_alnum(c) || c == '_'; }
bool is_hex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }

Error invalid(std::string_view text, std::string_view reason) {
  return make_error(std::errc::invalid_argument, "cannot parse reference \"{}\": {}", text, reason);
}

// path-component = [a-z0-9]+ ((\.|_|__|-+) [a-z0-9]+)*
bool valid_path_component(std::string_view s) {
  std::size_t i = 0;
  auto alnum_run = [&] {
    std::size_t start = i;
    while (i < s.size() && is_lower_alnum(s[i])) ++i;
    return i > start;
  };
  if (!alnum_run()) return false;
  while (i < s.size()) {
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      ++i;
      if (i < s.size() && s[i] == '_') ++i;
    } else if (s[i] == '-') {
      while (i < s.size() && s[i] == '-') ++i;
    } else {
      return false;
    }
    if (!alnum_run()) return false;
  }
  return true;
}

// domain-name-component = [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool valid_domain_component(std::string_view s) {
  if (s.empty() || !is_alnum(s.front()) || !is_alnum(s.back())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '-'; });
}

// domain = (domain-name | "[" ipv6 "]") (":" [0-9]+)?
bool valid_domain(std::string_view s) {
  std::string_view host = s;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    auto close = s.find(']');
    if (close == std::string_view::npos || close == 1) return false;
    auto ip = s.substr(1, close - 1);
    if (!std::all_of(ip.begin(), ip.end(), [](char c) { return is_hex(c) || c == ':'; })) return false;
    auto rest = s.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
      if (port.empty()) return false;
    }
    host = {};
  } else if (auto colon = s.find(':'); colon != std::string_view::npos) {
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (port.empty()) return false;
  }
  if (!std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  if (s.front() == '[') return true;
  std::size_t start = 0;
  while (true) {
    auto dot = host.find('.', start);
    if (!valid_domain_component(host.substr(start, dot == std::string_view::npos ? dot : dot - start)))
      return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

// tag = [\w][\w.-]{0,127}
bool valid_tag(std::string_view s) {
  if (s.empty() || s.size() > 128 || !is_word(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_word(c) || c == '.' || c == '-'; });
}

// digest = algorithm ":" encoded, checked as go-digest does for the algorithms it knows.
Result<void> validate_digest(std::string_view text, std::string_view digest) {
  auto colon = digest.find(':');
  if (colon == std::string_view::npos || colon == 0) return invalid(text, "invalid digest format");
  auto alg = digest.substr(0, colon);
  auto hex = digest.substr(colon + 1);
  std::size_t want = 0;
  if (alg == "sha256")
    want = 64;
  else if (alg == "sha384")
    want = 96;
  else if (alg == "sha512")
    want = 128;
  else
    return invalid(text, fmt::format("unsupported digest algorithm \"{}\"", alg));
  if (hex.size() != want || !util::is_lower_hex(hex)) {
    return invalid(text, fmt::format("invalid {} digest \"{}\"", alg, digest));
  }
  return util::success();
}

}  // namespace

Result<Reference> Reference::parse(std::string_view text) {
  if (text.empty()) return invalid(text, "repository name must have at least one component");
  if (util::is_sha256_hex(text))
    return invalid(text, "cannot specify 64-byte hexadecimal strings as a repository name");

  Reference ref;
  std::string_view rest = text;
  if (auto at = rest.find('@'); at != std::string_view::npos) {
    ref.digest = std::string(rest.substr(at + 1));
    rest = rest.substr(0, at);
    OCIFS_TRY(validate_digest(text, ref.digest));
  }
  // splitDockerDomain: the first component is a host only if it looks like one.
  std::string_view domain;
  auto slash = rest.find('/');
  auto first = rest.substr(0, slash);
  bool first_is_host = slash != std::string_view::npos &&
                       (first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
                        std::any_of(first.begin(), first.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
  if (first_is_host) {
    domain = first;
    rest = rest.substr(slash + 1);
  } else {
    domain = kDefaultDomain;
  }
  std::string_view path = rest;
  if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    auto last_slash = rest.rfind('/');
    if (last_slash == std::string_view::npos || colon > last_slash) {
      path = rest.substr(0, colon);
      ref.tag = std::string(rest.substr(colon + 1));
      if (!valid_tag(ref.tag)) return invalid(text, fmt::format("invalid tag \"{}\"", ref.tag));
    }
  }
  if (domain == kLegacyDefaultDomain) domain = kDefaultDomain;
  ref.registry = std::string(domain);
  ref.repository = std::string(path);
  if (ref.registry == kDefaultDomain && ref.repository.find('/') == std::string::npos) {
    ref.repository = "library/" + ref.repository;
  }
  if (ref.repository.empty() || path.empty())
    return invalid(text, "repository name must have at least one component");
  if (std::any_of(ref.repository.begin(), ref.repository.end(),
                  [](char c) { return c >= 'A' && c <= 'Z'; })) {
    return invalid(text, fmt::format("repository name \"{}\" must be lowercase", ref.repository));
  }
  if (!valid_domain(ref.registry))
    return invalid(text, fmt::format("invalid registry host \"{}\"", ref.registry));
  std::size_t start = 0;
  while (true) {
    auto s = ref.repository.find('/', start);
    auto component = std::string_view(ref.repository).substr(start, s == std::string::npos ? s : s - start);
    if (!valid_path_component(component)) {
      return invalid(text, fmt::format("invalid repository name component \"{}\"", component));
    }
    if (s == std::string::npos) break;
    start = s + 1;
  }
  if (ref.registry.size() + 1 + ref.repository.size() > kNameTotalLengthMax) {
    return invalid(text,
                   fmt::format("repository name must not be more than {} characters", kNameTotalLengthMax));
  }
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

std::string Reference::str() const {
  std::string s = registry + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::string Reference::api_host() const {
  return registry == kDefaultDomain ? std::string("registry-1.docker.io") : registry;
}

namespace {

struct TransportPrefix {
  std::string_view prefix;
  Transport transport;
};
constexpr TransportPrefix kLocal[] = {
    {"oci:", Transport::oci_layout},
    {"oci-archive:", Transport::oci_archive},
    {"docker-archive:", Transport::docker_archive},
};
// containers-image transports ocifs does not read: named so that the error says which.
constexpr std::string_view kUnsupported[] = {"dir:", "docker-daemon:", "containers-storage:", "ostree:", "sif:"};

// Whether a registry reference, written plainly, would be read as another transport: a registry
// host named like one ("oci:5000/app", found by tests/fuzz with "dir:1/o").
bool reads_as_other_transport(std::string_view text) {
  auto starts = [&](std::string_view prefix) { return text.starts_with(prefix); };
  return std::any_of(std::begin(kLocal), std::end(kLocal), [&](const auto& p) { return starts(p.prefix); }) ||
         std::any_of(std::begin(kUnsupported), std::end(kUnsupported), starts);
}

}  // namespace

Result<ImageRef> ImageRef::parse(std::string_view text) {
  ImageRef ref;
  for (const auto& [prefix, transport] : kLocal) {
    if (!text.starts_with(prefix)) continue;
    ref.transport = transport;
    auto rest = text.substr(prefix.size());
    auto colon = rest.find(':');
    ref.path = std::string(rest.substr(0, colon));
    if (colon != std::string_view::npos) ref.tag = std::string(rest.substr(colon + 1));
    if (ref.path.empty()) {
      return make_error(std::errc::invalid_argument,
                        "cannot parse image \"{}\": the {} transport needs a path", text,
                        prefix.substr(0, prefix.size() - 1));
    }
    if (colon != std::string_view::npos && ref.tag.empty()) {
      return make_error(std::errc::invalid_argument, "cannot parse image \"{}\": empty image name after ':'",
                        text);
    }
    if (transport == Transport::docker_archive && !ref.tag.empty()) {
      auto named = Reference::parse(ref.tag);
      if (!named) return named.error().with_context(fmt::format("cannot parse image \"{}\"", text));
      if (!named->digest.empty()) {
        return make_error(
            std::errc::invalid_argument,
            "cannot parse image \"{}\": a docker-archive image is named NAME:TAG, not by digest", text);
      }
    }
    return ref;
  }
  std::string_view name = text;
  if (name.starts_with("docker://")) {
    name.remove_prefix(9);
  } else {
    for (std::string_view other : kUnsupported) {
      if (name.starts_with(other)) {
        return make_error(
            std::errc::not_supported,
            "cannot parse image \"{}\": the {} transport is not supported (use docker://, oci:, "
            "oci-archive: or docker-archive:)",
            text, other.substr(0, other.size() - 1));
      }
    }
  }
  OCIFS_ASSIGN(ref.reference, Reference::parse(name));
  return ref;
}

std::string ImageRef::str() const {
  std::string_view prefix;
  switch (transport) {
    case Transport::registry: {
      std::string plain = reference.str();
      return reads_as_other_transport(plain) ? "docker://" + plain : plain;
    }
    case Transport::oci_layout:
      prefix = "oci:";
      break;
    case Transport::oci_archive:
      prefix = "oci-archive:";
      break;
    case Transport::docker_archive:
      prefix = "docker-archive:";
      break;
  }
  std::string s = std::string(prefix) + path;
  if (!tag.empty()) s += ":" + tag;
  return s;
}

}  // namespace ocifs::oci
