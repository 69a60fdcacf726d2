#include "status_command.hpp"

#include <spdlog/spdlog.h>
#include <sys/xattr.h>

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ocifs/cache/byte_size.hpp"
#include "mount_table.hpp"
#include "ocifs/fuse/status_xattr.hpp"

namespace ocifs::cli {

namespace {

constexpr int kExitFailure = 1;

// The status document, read with getxattr: asked for its size first, then read with room to
// spare (the numbers may grow in between; ERANGE means ask again).
Result<std::string> read_status(const std::string& mountpoint) {
  const std::string name(fuse::kStatusXattr);
  for (int attempt = 0; attempt < 5; ++attempt) {
    ssize_t size = ::getxattr(mountpoint.c_str(), name.c_str(), nullptr, 0);
    if (size < 0) break;
    std::string buf(static_cast<std::size_t>(size) + 4096, '\0');
    ssize_t got = ::getxattr(mountpoint.c_str(), name.c_str(), buf.data(), buf.size());
    if (got >= 0) {
      buf.resize(static_cast<std::size_t>(got));
      return buf;
    }
    if (errno != ERANGE) break;
  }
  const int err = errno;
  if (err == ENODATA || err == ENOTSUP || err == EOPNOTSUPP) {
    return make_error(std::errc::invalid_argument, "cannot show the status of {}: it is not the root of an ocifs mount",
                      mountpoint);
  }
  return make_error(std::errc::io_error, "cannot show the status of {}: {}", mountpoint, std::strerror(err));
}

std::string bytes(const nlohmann::json& layer, const char* key) {
  return layer.contains(key) ? cache::format_byte_size(layer[key].get<std::uint64_t>()) : "-";
}

std::string count(const nlohmann::json& layer, const char* key) {
  return layer.contains(key) ? std::to_string(layer[key].get<std::uint64_t>()) : "-";
}

void print_text(const nlohmann::json& status) {
  std::printf("%s (%s), prefetch %s%s\n", status["image"].get<std::string>().c_str(),
              status["manifest"].get<std::string>().c_str(), status.value("prefetch", "none").c_str(),
              status.value("writable", false) ? ", writable root (overlayfs)" : "");
  std::printf("%-5s %-19s %-12s %-9s %-8s %-6s %10s %10s %10s %8s %8s %9s %8s %8s\n", "LAYER", "DIGEST", "FORMAT",
              "STATE", "SOURCE", "INDEX", "SIZE", "CACHED", "FETCHED", "READS", "HITS", "FETCH-ERR", "READ-ERR",
              "TIMEOUTS");
  for (const auto& layer : status["layers"]) {
    std::string digest = layer["digest"].get<std::string>().substr(0, 19);
    // Where the layer's index came from: cache, scan, walk, toc, shared (the registry's).
    const std::string index_source = layer.value("index_source", std::string("-"));
    std::printf("%-5llu %-19s %-12s %-9s %-8s %-6s %10s %10s %10s %8s %8s %9s %8s %8s\n",
                static_cast<unsigned long long>(layer["index"].get<std::uint64_t>()), digest.c_str(),
                layer["format"].get<std::string>().c_str(), layer["state"].get<std::string>().c_str(),
                layer["source"].get<std::string>().c_str(), index_source.c_str(), bytes(layer, "size").c_str(),
                bytes(layer, "cached").c_str(), bytes(layer, "fetched").c_str(), count(layer, "reads").c_str(),
                count(layer, "cache_hits").c_str(), count(layer, "fetch_errors").c_str(),
                count(layer, "read_errors").c_str(), count(layer, "read_timeouts").c_str());
  }
  if (const auto& sup = status.contains("supervision") ? status["supervision"] : nlohmann::json(); sup.is_object()) {
    if (sup.value("failing", false)) {
      std::printf("FAILING: no server could be started; every request is answered EIO (ocifs remount retries)\n");
    }
    std::printf("server pid %d (generation %llu), supervisor pid %d, restarts %d%s%s\n", sup.value("server_pid", 0),
                static_cast<unsigned long long>(sup.value("server_generation", std::uint64_t{0})),
                sup.value("supervisor_pid", 0), sup.value("restarts", 0),
                sup.value("last_restart_reason", std::string()).empty() ? "" : ", last: ",
                sup.value("last_restart_reason", std::string()).c_str());
  }
  for (const auto& layer : status["layers"]) {
    const auto index = static_cast<unsigned long long>(layer["index"].get<std::uint64_t>());
    if (layer.contains("error")) std::printf("layer %llu: %s\n", index, layer["error"].get<std::string>().c_str());
    if (layer.contains("last_read_error")) {
      std::printf("layer %llu: last failed read: %s\n", index, layer["last_read_error"].get<std::string>().c_str());
    }
  }
}

}  // namespace

namespace {

// The status document of a live mount (beneath its overlay for a writable root).
Result<nlohmann::json> live_status(const std::string& mountpoint) {
  bool writable = false;
  if (auto stack = mounts_at(mountpoint); stack && is_writable_root(*stack)) {
    if (auto uncovered = uncover_in_private_namespace(mountpoint); !uncovered) {
      return make_error(std::errc::operation_not_permitted, "cannot show the status of {}: {}", mountpoint,
                        uncovered.error().message);
    }
    writable = true;
  }
  OCIFS_ASSIGN(auto text, read_status(mountpoint));
  auto status = nlohmann::json::parse(text, nullptr, false);
  if (status.is_discarded() || !status.contains("layers")) {
    return make_error(std::errc::protocol_error, "cannot show the status of {}: the mount answered something else",
                      mountpoint);
  }
  status["writable"] = writable;
  return status;
}

}  // namespace

int run_status(const std::string& mountpoint, bool json) {
  auto status = live_status(mountpoint);
  if (!status) {
    spdlog::error("{}", status.error().message);
    return kExitFailure;
  }
  if (json) {
    std::printf("%s\n", status->dump(2).c_str());
  } else {
    print_text(*status);
  }
  return 0;
}

int run_remount(const std::string& mountpoint, std::chrono::seconds timeout) {
  auto status = live_status(mountpoint);
  if (!status) {
    spdlog::error("cannot remount {}: {}", mountpoint, status.error().message);
    return kExitFailure;
  }
  const auto& supervision = (*status)["supervision"];
  if (!supervision.is_object() || !supervision.contains("supervisor_pid")) {
    spdlog::error("cannot remount {}: its daemon has no supervisor (mounted by an older ocifs)", mountpoint);
    return kExitFailure;
  }
  auto before = supervision.value("server_generation", std::uint64_t{0});
  auto supervisor = supervision["supervisor_pid"].get<pid_t>();
  if (::kill(supervisor, SIGHUP) != 0) {
    spdlog::error("cannot remount {}: cannot signal its supervisor {}: {}", mountpoint, supervisor, std::strerror(errno));
    return kExitFailure;
  }
  // Done when a newer server answers the status.
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto now = live_status(mountpoint);
    if (!now) continue;
    const auto& s = (*now)["supervision"];
    if (s.is_object() && s.value("server_generation", std::uint64_t{0}) > before) {
      std::printf("%s: server %d (generation %llu) serves\n", mountpoint.c_str(), s.value("server_pid", 0),
                  static_cast<unsigned long long>(s.value("server_generation", std::uint64_t{0})));
      return 0;
    }
  }
  spdlog::error("cannot remount {}: no new server served within {} s (see the system log)", mountpoint,
                timeout.count());
  return kExitFailure;
}

}  // namespace ocifs::cli
