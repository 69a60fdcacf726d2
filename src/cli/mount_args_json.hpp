// MountArgs as JSON: how the supervisor gives each server process what `ocifs mount` was told,
// over the server channel (channel.hpp) rather than argv or the environment, which other users
// can read — the credentials, loaded once by `ocifs mount`, travel this way too.
#pragma once

#include <string>

#include "commands.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::cli {

std::string mount_args_to_json(const MountArgs& args);
Result<MountArgs> mount_args_from_json(const std::string& text);

}  // namespace ocifs::cli
