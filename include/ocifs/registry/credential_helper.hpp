// The docker-credential-helpers protocol: `docker-credential-NAME get`, the server URL on stdin,
// {"ServerURL","Username","Secret"} on stdout. Functions only; safe from any thread (the helper is
// started with posix_spawnp, no shell, with close-on-exec pipes).
#pragma once

#include <chrono>
#include <optional>
#include <string_view>

#include "ocifs/registry/credentials.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::registry {

// Runs the helper found on PATH. nullopt when it answers "credentials not found" (or an empty
// username and secret). A username of "<token>" makes the secret an identity token. Errors name
// the helper and the server, never the output of a successful run; a helper that outlives
// `timeout` is killed.
Result<std::optional<Credentials>> run_credential_helper(std::string_view name, std::string_view server_url,
                                                         std::chrono::milliseconds timeout);

}  // namespace ocifs::registry
