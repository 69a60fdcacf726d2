#include "ocifs/fuse/fuse_server.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>

#include "new_session.hpp"
#include "operations.hpp"

namespace ocifs::fuse {

struct FuseServer::Impl {
  Impl(const image::Image& image, const MountOptions& options) : state(image, options) {}
  SessionState state;
  fuse_session* session = nullptr;
  unsigned threads = 4;
  ~Impl() {
    state.reads.stop();  // reads still queued are answered EIO while the session can still reply
    if (session) fuse_session_destroy(session);  // closes its descriptor; the mount stays
  }
};

namespace {

// fsname is one -o value: commas would split it into options.
std::string option_safe(std::string text) {
  for (char& c : text) {
    if (c == ',' || c == '\\') c = '_';
  }
  return text;
}

}  // namespace

std::string mount_option_string(const MountOptions& options) {
  std::string opts = "ro,default_permissions,subtype=ocifs";
  // libfuse starts from MS_NOSUID|MS_NODEV and clears them only when told: say both ways.
  opts += options.dev ? ",dev" : ",nodev";
  opts += options.suid ? ",suid" : ",nosuid";
  if (options.allow_other) opts += ",allow_other";
  if (!options.fsname.empty()) opts += ",fsname=" + option_safe(options.fsname);
  for (const auto& extra : options.extra) opts += "," + extra;
  return opts;
}

FuseServer::FuseServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FuseServer::~FuseServer() = default;

Result<std::unique_ptr<FuseServer>> FuseServer::adopt(const image::Image& image, int device_fd,
                                                      const std::vector<std::byte>& init_request,
                                                      const MountOptions& options) {
  auto impl = std::make_unique<Impl>(image, options);
  impl->threads = std::max(1u, options.threads);
  impl->session = new_session(options, operations(), &impl->state);
  if (!impl->session) {
    ::close(device_fd);
    return make_error(std::errc::invalid_argument, "libfuse refused the options '{}'", mount_option_string(options));
  }
  // libfuse (3.3+) serves a device someone else mounted when given it as /dev/fd/N.
  std::string device = "/dev/fd/" + std::to_string(device_fd);
  if (fuse_session_mount(impl->session, device.c_str()) != 0) {
    ::close(device_fd);
    return make_error(std::errc::io_error, "libfuse cannot serve {}", device);
  }
  fuse_buf init{};
  init.size = init_request.size();
  init.mem = const_cast<std::byte*>(init_request.data());
  fuse_session_process_buf(impl->session, &init);
  return std::unique_ptr<FuseServer>(new FuseServer(std::move(impl)));
}

Result<void> FuseServer::run() {
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, 0);
  fuse_loop_cfg_set_max_threads(config, impl_->threads);
  fuse_loop_cfg_set_idle_threads(config, impl_->threads);
  int rc = fuse_session_loop_mt(impl_->session, config);
  fuse_loop_cfg_destroy(config);
  // ENODEV: unmounted, the normal end.
  if (rc != 0 && rc != -ENODEV) return make_error(std::errc::io_error, "FUSE session ended with error {}", rc);
  return util::success();
}

}  // namespace ocifs::fuse
