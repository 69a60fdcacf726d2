#include "ocifs/fuse/fuse_server.hpp"

#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <sys/mount.h>
#include <unistd.h>

#include <csignal>

#include "operations.hpp"

namespace ocifs::fuse {

struct FuseServer::Impl {
  Impl(const image::Image& image, const MountOptions& options) : state(image, options) {}
  SessionState state;
  fuse_session* session = nullptr;
  std::string mountpoint;
  unsigned threads = 4;
  bool mounted = false;
  ~Impl() {
    state.reads.stop();  // reads still queued are answered EIO while the session can still reply
    if (!session) return;
    if (mounted) fuse_session_unmount(session);
    fuse_remove_signal_handlers(session);
    fuse_session_destroy(session);
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

std::string mount_options(const MountOptions& options) {
  std::string opts = "ro,default_permissions,subtype=ocifs";
  // libfuse starts from MS_NOSUID|MS_NODEV and clears them only when told: say both ways.
  opts += options.dev ? ",dev" : ",nodev";
  opts += options.suid ? ",suid" : ",nosuid";
  if (options.allow_other) opts += ",allow_other";
  if (!options.fsname.empty()) opts += ",fsname=" + option_safe(options.fsname);
  for (const auto& extra : options.extra) opts += "," + extra;
  return opts;
}

}  // namespace

FuseServer::FuseServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FuseServer::~FuseServer() = default;

Result<std::unique_ptr<FuseServer>> FuseServer::mount(const image::Image& image, const std::string& mountpoint,
                                                      const MountOptions& options) {
  std::vector<std::string> args = {"ocifs", "-o", mount_options(options)};
  if (options.debug) args.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());

  auto impl = std::make_unique<Impl>(image, options);
  impl->threads = std::max(1u, options.threads);
  const auto& ops = operations();
  impl->session = fuse_session_new(&fargs, &ops, sizeof ops, &impl->state);
  fuse_opt_free_args(&fargs);
  if (!impl->session) {
    return make_error(std::errc::invalid_argument, "cannot mount {}: libfuse refused the options '{}'", mountpoint,
                      mount_options(options));
  }
  if (fuse_set_signal_handlers(impl->session) != 0) {
    return make_error(std::errc::io_error, "cannot mount {}: cannot install signal handlers", mountpoint);
  }
  if (fuse_session_mount(impl->session, mountpoint.c_str()) != 0) {
    return make_error(std::errc::io_error, "cannot mount {}: the kernel refused the FUSE mount (see above)", mountpoint);
  }
  impl->mounted = true;
  impl->mountpoint = mountpoint;
  return std::unique_ptr<FuseServer>(new FuseServer(std::move(impl)));
}

Result<void> FuseServer::run() {
  fuse_loop_config* config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_clone_fd(config, 0);
  fuse_loop_cfg_set_max_threads(config, impl_->threads);
  fuse_loop_cfg_set_idle_threads(config, impl_->threads);
  int rc = fuse_session_loop_mt(impl_->session, config);
  fuse_loop_cfg_destroy(config);
  if (rc != 0 && rc != SIGINT && rc != SIGTERM && rc != SIGHUP) {
    return make_error(std::errc::io_error, "FUSE session ended with error {}", rc);
  }
  return util::success();
}

void FuseServer::stop() {
  fuse_session_exit(impl_->session);
  // Not fuse_session_unmount: it resets the session's fd under the threads reading it.
  ::umount2(impl_->mountpoint.c_str(), MNT_DETACH);
}

void FuseServer::disconnect() {
  // The kernel aborts a connection when its last /dev/fuse descriptor closes. No libfuse thread
  // reads it any more; /dev/null takes the number, so the session's own close later is harmless.
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;
  ::dup3(null, fuse_session_fd(impl_->session), O_CLOEXEC);
  ::close(null);
}

}  // namespace ocifs::fuse
