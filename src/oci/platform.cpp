// Platform parsing, normalisation and matching, after containerd's `platforms` package.
#include <sys/utsname.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <optional>

#include "ocifs/oci/types.hpp"
#include "ocifs/util/text.hpp"

namespace ocifs::oci {

namespace {

constexpr std::array<std::string_view, 18> kKnownOs = {
    "aix",   "android", "darwin", "dragonfly", "freebsd", "hurd",    "illumos", "ios",     "js",
    "linux", "nacl",    "netbsd", "openbsd",   "plan9",   "solaris", "wasip1",  "windows", "zos"};
constexpr std::array<std::string_view, 31> kKnownArch = {
    "386",     "amd64",  "amd64p32", "arm",      "armbe",   "arm64",  "arm64be", "loong64",
    "mips",    "mipsle", "mips64",   "mips64le", "ppc",     "ppc64",  "ppc64le", "riscv",
    "riscv64", "s390",   "s390x",    "sparc",    "sparc64", "wasm",   "x86_64",  "x86-64",
    "aarch64", "armhf",  "armel",    "i386",     "i686",    "armv7l", "armv6l"};

template <class List>
bool known(const List& list, std::string_view s) {
  return std::find(list.begin(), list.end(), s) != list.end();
}

bool valid_component(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.';
  });
}

// "v7" -> 7, "7" -> 7; nullopt for anything else ("v8.2", "").
// "v8" -> 8. Variants in use are single digits; a larger number (a manifest list may say
// anything) is no known variant, rather than a number whose differences overflow the scores.
std::optional<int> variant_number(std::string_view variant) {
  constexpr int kMaxVariant = 99;
  if (!variant.empty() && variant.front() == 'v') variant.remove_prefix(1);
  int n = 0;
  auto [ptr, ec] = std::from_chars(variant.data(), variant.data() + variant.size(), n);
  if (variant.empty() || ec != std::errc() || ptr != variant.data() + variant.size()) return std::nullopt;
  if (n < 0 || n > kMaxVariant) return std::nullopt;
  return n;
}

// Score of running `candidate_variant` of an arm (32-bit) image on a CPU that runs arm `wanted`
// natively: exact 100, each step down 10 less; v5 is the oldest variant images use.
int arm_score(int wanted, std::string_view candidate_variant, int base) {
  auto have = variant_number(candidate_variant);
  if (!have || *have > wanted || *have < 5) return 0;
  return std::max(1, base - 10 * (wanted - *have));  // runs, however far down
}

}  // namespace

Platform Platform::normalized() const {
  Platform p = *this;
  p.os = util::ascii_lower(os);
  if (p.os == "macos") p.os = "darwin";
  std::string arch = util::ascii_lower(architecture);
  std::string var = util::ascii_lower(variant);
  if (arch == "i386" || arch == "i686" || arch == "x86") {
    arch = "386";
    var.clear();
  } else if (arch == "x86_64" || arch == "x86-64" || arch == "amd64") {
    arch = "amd64";
    if (var == "v1") var.clear();
  } else if (arch == "aarch64" || arch == "arm64") {
    arch = "arm64";
    if (var == "8" || var == "v8" || var == "v8.0")
      var.clear();
    else if (var == "9" || var == "9.0" || var == "v9.0")
      var = "v9";
  } else if (arch == "armhf") {
    arch = "arm";
    var = "v7";
  } else if (arch == "armel") {
    arch = "arm";
    var = "v6";
  } else if (arch.size() == 6 && arch.starts_with("armv") && arch[5] == 'l' &&
             std::isdigit(static_cast<unsigned char>(arch[4]))) {
    var = std::string("v") + arch[4];  // uname's armv7l, armv6l
    arch = "arm";
  } else if (arch == "arm") {
    if (var.empty() || var == "7")
      var = "v7";
    else if (var == "5" || var == "6" || var == "8")
      var = "v" + var;
  }
  p.architecture = std::move(arch);
  p.variant = std::move(var);
  return p;
}

Result<Platform> Platform::parse(std::string_view text) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    auto slash = text.find('/', start);
    parts.push_back(
        text.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() > 3) {
    return make_error(std::errc::invalid_argument, "cannot parse platform \"{}\": expected OS/ARCH[/VARIANT]",
                      text);
  }
  for (auto part : parts) {
    if (!valid_component(part)) {
      return make_error(
          std::errc::invalid_argument,
          "cannot parse platform \"{}\": expected OS/ARCH[/VARIANT] of letters, digits, '_', '-', '.'", text);
    }
  }
  Platform p;
  if (parts.size() == 1) {
    auto one = util::ascii_lower(parts[0]);
    if (known(kKnownOs, one)) {
      p = host();
      p.os = one;
    } else if (known(kKnownArch, one)) {
      p.os = "linux";
      p.architecture = one;
    } else {
      return make_error(std::errc::invalid_argument,
                        "cannot parse platform \"{}\": unknown operating system or architecture", text);
    }
  } else {
    p.os = parts[0];
    p.architecture = parts[1];
    if (parts.size() == 3) p.variant = parts[2];
  }
  return p.normalized();
}

Platform Platform::host() {
  Platform p;
  p.os = "linux";
  struct utsname u {};
  if (::uname(&u) == 0) {
    p.architecture = u.machine;
  } else {
#if defined(__x86_64__)
    p.architecture = "amd64";
#elif defined(__aarch64__)
    p.architecture = "arm64";
#elif defined(__arm__)
    p.architecture = "arm";
#elif defined(__i386__)
    p.architecture = "386";
#else
    p.architecture = "unknown";
#endif
  }
  return p.normalized();
}

std::string Platform::str() const {
  std::string s = os + "/" + architecture;
  if (!variant.empty()) s += "/" + variant;
  return s;
}

int platform_match_score(const Platform& wanted_in, const Platform& candidate_in) {
  const Platform wanted = wanted_in.normalized();
  const Platform cand = candidate_in.normalized();
  if (wanted.os != cand.os || wanted.os.empty()) return 0;
  const auto& wa = wanted.architecture;
  const auto& ca = cand.architecture;
  if (wa == ca) {
    if (wanted.variant == cand.variant) return 100;
    if (wa == "arm") return arm_score(variant_number(wanted.variant).value_or(7), cand.variant, 100);
    if (wa == "amd64") {
      // amd64 micro-architecture levels v1..v4: a lower level runs on a higher one.
      int w = variant_number(wanted.variant).value_or(1);
      int c = variant_number(cand.variant).value_or(1);
      return c <= w ? std::max(1, 100 - 10 * (w - c)) : 0;
    }
    if (wa == "arm64") {
      // arm64 v9 runs v8 images; variants beyond the base are rarely published.
      int w = variant_number(wanted.variant).value_or(8);
      int c = variant_number(cand.variant).value_or(8);
      return c <= w && c >= 8 ? std::max(1, 100 - 10 * (w - c)) : 0;
    }
    return cand.variant.empty() ? 90 : 0;  // a variant-less image runs on any variant
  }
  if (wa == "arm64" && ca == "arm") return arm_score(8, cand.variant, 50);  // arm/v8 .. arm/v5
  if (wa == "amd64" && ca == "386") return 40;
  return 0;
}

}  // namespace ocifs::oci
