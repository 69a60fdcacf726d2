// registries.conf (containers-registries.conf(5), v2 and v1 tables) and what it decides: the
// entry matching a name, and the endpoints (mirrors, then the primary) a reference is pulled
// from. The input is the TOML text; a few references are looked up in what parses.
// libfuzzer: -max_len=16384
#include <string>

#include "ocifs/registry/registries_conf.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto conf = registry::RegistriesConf::parse(text, "registries.conf");
  if (!conf.ok()) return 0;
  auto merged = *conf;
  merged.merge(*conf);  // a drop-in repeating the file replaces its entries
  check(merged.registries().size() == conf->registries().size(), "merging a file with itself adds entries");
  for (const char* name : {"docker.io/library/debian:bookworm",
                           "example.com/team/app@sha256:"
                           "0000000000000000000000000000000000000000000000000000000000000000",
                           "localhost:5000/a", "[::1]:5000/b/c:t", "sub.example.com/x"}) {
    auto ref = oci::Reference::parse(name);
    check(ref.ok(), "reference {}", name);
    (void)conf->find(ref->str());
    auto endpoints = conf->endpoints(*ref);
    if (!endpoints.ok()) continue;
    check(!endpoints->empty(), "no endpoint for {}", name);
    for (const auto& e : *endpoints) {
      check(!e.registry.empty() && !e.repository.empty(), "endpoint '{}' of {}", e.str(), name);
      (void)e.api_host();
    }
  }
  return 0;
}
