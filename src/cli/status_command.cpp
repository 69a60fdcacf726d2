#include "status_command.hpp"

#include <spdlog/spdlog.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>

#include "ocifs/cache/byte_size.hpp"
#include "mount_table.hpp"
#include "ocifs/fuse/fuse_server.hpp"

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
  std::printf("%-5s %-19s %-12s %-9s %-8s %10s %10s %10s %8s %8s %9s %8s %8s\n", "LAYER", "DIGEST", "FORMAT",
              "STATE", "SOURCE", "SIZE", "CACHED", "FETCHED", "READS", "HITS", "FETCH-ERR", "READ-ERR", "TIMEOUTS");
  for (const auto& layer : status["layers"]) {
    std::string digest = layer["digest"].get<std::string>().substr(0, 19);
    std::printf("%-5llu %-19s %-12s %-9s %-8s %10s %10s %10s %8s %8s %9s %8s %8s\n",
                static_cast<unsigned long long>(layer["index"].get<std::uint64_t>()), digest.c_str(),
                layer["format"].get<std::string>().c_str(), layer["state"].get<std::string>().c_str(),
                layer["source"].get<std::string>().c_str(), bytes(layer, "size").c_str(),
                bytes(layer, "cached").c_str(), bytes(layer, "fetched").c_str(), count(layer, "reads").c_str(),
                count(layer, "cache_hits").c_str(), count(layer, "fetch_errors").c_str(),
                count(layer, "read_errors").c_str(), count(layer, "read_timeouts").c_str());
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

int run_status(const std::string& mountpoint, bool json) {
  // A writable root answers for its upper directory: the ocifs mount beneath it has the status.
  bool writable = false;
  if (auto stack = mounts_at(mountpoint); stack && is_writable_root(*stack)) {
    if (auto uncovered = uncover_in_private_namespace(mountpoint); !uncovered) {
      spdlog::error("cannot show the status of {}: {}", mountpoint, uncovered.error().message);
      return kExitFailure;
    }
    writable = true;
  }
  auto text = read_status(mountpoint);
  if (!text) {
    spdlog::error("{}", text.error().message);
    return kExitFailure;
  }
  auto status = nlohmann::json::parse(*text, nullptr, false);
  if (status.is_discarded() || !status.contains("layers")) {
    spdlog::error("cannot show the status of {}: the mount answered something else", mountpoint);
    return kExitFailure;
  }
  status["writable"] = writable;
  if (json) {
    std::printf("%s\n", status.dump(2).c_str());
  } else {
    print_text(status);
  }
  return 0;
}

}  // namespace ocifs::cli
