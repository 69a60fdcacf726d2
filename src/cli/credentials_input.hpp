// Registry credentials given to ocifs itself, kept out of what other users can read.
// /proc/PID/cmdline is readable by every user, so a `--creds USER:PASS` value is overwritten in
// the process's own argv before anything else happens — before the mount daemon forks, so that
// neither process shows it. The other forms never show there: `--creds-file FILE` (also
// `-o creds_file=FILE`), `--creds -` (a line of standard input) and the environment variable
// OCIFS_CREDS (named after the option, as OCIFS_CACHE_DIR is after --cache-dir; prefixed with
// the tool's name, as podman's and buildah's variables are, so that no other program's secret is
// taken by mistake). /proc/PID/environ is readable by the same user only, but children (credential
// helpers, fusermount3) would inherit the variable: it is overwritten in place and removed too.
// Functions only; scrub_secrets runs once, first thing in main, while there is one thread.
#pragma once

#include <optional>
#include <string>

#include "commands.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::cli {

inline constexpr const char* kCredsEnv = "OCIFS_CREDS";

// Overwrites with 'x' in place, where the kernel shows them, the value of every `--creds VALUE`
// and `--creds=VALUE` in argv (but "-") and the value of OCIFS_CREDS in the environment, which is
// also unset. Call after argv has been copied for parsing. Returns OCIFS_CREDS's value, if set.
std::optional<std::string> scrub_secrets(int argc, char** argv);

// Fills common.creds ("USER:PASSWORD") from where the options say: --creds (given in argv;
// "-": the first line of standard input, read now, echo off on a terminal), else --creds-file,
// else OCIFS_CREDS (common.creds_env). Call before the mount daemon forks. Values read from
// standard input, a file or the environment must hold a ':' (else errc::bad_message); --creds
// together with a credentials file is errc::invalid_argument (a usage error).
Result<void> load_credentials(CommonOptions& common);

}  // namespace ocifs::cli
