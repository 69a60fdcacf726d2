// auth.json (containers-auth.json(5)) and Docker's config.json as the credential lookup reads
// them: auths by most specific key, base64 "auth", identity tokens, credHelpers and credsStore.
// PATH is emptied first, so a helper a file names is looked for and not found (no program runs).
// The input is the file; a few registry/repository pairs are looked up in it, and the key
// normalisation is run on the input as a key.
// libfuzzer: -max_len=16384
#include <cstdlib>
#include <string>

#include "ocifs/registry/credentials.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  ::setenv("PATH", "/nonexistent-ocifs-fuzz", 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  (void)registry::normalize_auth_key(text);
  (void)registry::credential_server_url(text);

  const auto path = fuzz::scratch_dir() / "auth.json";
  fuzz::write_file(path, text);
  const std::pair<const char*, const char*> lookups[] = {{"docker.io", "library/debian"},
                                                         {"ghcr.io", "owner/app"},
                                                         {"localhost:5000", "a/b/c"},
                                                         {"quay.io", ""}};
  for (auto [reg, repo] : lookups) {
    auto found =
        registry::CredentialLookup::find_in_file(path.string(), reg, repo, std::chrono::milliseconds(200));
    if (found.ok() && *found) {
      check(!(*found)->credentials.empty(), "empty credentials found for {}/{}", reg, repo);
      check(!(*found)->source.empty(), "credentials for {}/{} without a source", reg, repo);
    }
  }
  return 0;
}
