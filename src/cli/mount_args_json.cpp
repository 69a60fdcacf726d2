#include "mount_args_json.hpp"

#include <nlohmann/json.hpp>

namespace ocifs::cli {

std::string mount_args_to_json(const MountArgs& a) {
  const auto& c = a.common;
  nlohmann::json common = {
      {"cache_dir", c.cache_dir},         {"cache_max", c.cache_max},     {"platform", c.platform},
      {"quiet", c.quiet},                 {"debug", c.debug},             {"creds", c.creds},
      {"authfile", c.authfile},           {"tls_verify", c.tls_verify},   {"plain_http", c.plain_http},
      {"offline", c.offline},             {"read_timeout", c.read_timeout},
      {"request_timeout", c.request_timeout}, {"stall_timeout", c.stall_timeout}};
  nlohmann::json out = {{"common", common},       {"ref", a.ref},           {"mountpoint", a.mountpoint},
                        {"options", a.fuse_options}, {"prefetch", a.prefetch}, {"upper", a.upper},
                        {"writable", a.writable}};
  return out.dump();
}

Result<MountArgs> mount_args_from_json(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return make_error(std::errc::protocol_error, "the supervisor sent a mount description that is not JSON");
  }
  try {
    MountArgs a;
    const auto& c = j.at("common");
    a.common.cache_dir = c.at("cache_dir");
    a.common.cache_max = c.at("cache_max");
    a.common.platform = c.at("platform");
    a.common.quiet = c.at("quiet");
    a.common.debug = c.at("debug");
    a.common.creds = c.at("creds");
    a.common.authfile = c.at("authfile");
    a.common.tls_verify = c.at("tls_verify");
    a.common.plain_http = c.at("plain_http");
    a.common.offline = c.at("offline");
    a.common.read_timeout = c.at("read_timeout");
    a.common.request_timeout = c.at("request_timeout");
    a.common.stall_timeout = c.at("stall_timeout");
    a.ref = j.at("ref");
    a.mountpoint = j.at("mountpoint");
    a.fuse_options = j.at("options").get<std::vector<std::string>>();
    a.prefetch = j.at("prefetch");
    a.upper = j.at("upper");
    a.writable = j.at("writable");
    return a;
  } catch (const nlohmann::json::exception& e) {
    return make_error(std::errc::protocol_error, "the supervisor's mount description is incomplete: {}", e.what());
  }
}

}  // namespace ocifs::cli
