#include "mount_args_json.hpp"

#include <nlohmann/json.hpp>

namespace ocifs::cli {

// Every field the server needs; a field missing on the way in is an error (the supervisor and
// server are the same binary, so a mismatch means a broken exec). Not sent: progress (servers
// have no terminal), creds_file and creds_env (read once by `ocifs mount` into `creds`).
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(CommonOptions, cache_dir, cache_max, span_cache, platform, quiet, debug,
                                   creds, authfile, tls_verify, plain_http, offline, read_timeout,
                                   request_timeout, stall_timeout, shared_index)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(MountArgs, common, ref, mountpoint, fuse_options, foreground, prefetch,
                                   upper, writable)

std::string mount_args_to_json(const MountArgs& args) { return nlohmann::json(args).dump(); }

Result<MountArgs> mount_args_from_json(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error(std::errc::protocol_error, "the supervisor sent a mount description that is not JSON");
  }
  try {
    return j.get<MountArgs>();
  } catch (const nlohmann::json::exception& e) {
    return make_error(std::errc::protocol_error, "the supervisor's mount description is incomplete: {}", e.what());
  }
}

}  // namespace ocifs::cli
