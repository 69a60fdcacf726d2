// ocifs: argv parsing and dispatch to the subcommands.
#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "cache_commands.hpp"
#include "commands.hpp"
#include "daemon.hpp"
#include "credentials_input.hpp"
#include "status_command.hpp"

namespace {

using ocifs::cli::CommonOptions;

void add_common(CLI::App& app, CommonOptions& common) {
  app.add_option("--cache-dir", common.cache_dir, "Cache directory (default $OCIFS_CACHE_DIR or $XDG_CACHE_HOME/ocifs)");
  app.add_option("--platform", common.platform, "Platform to choose from a manifest list: OS/ARCH[/VARIANT]");
  app.add_option("--cache-max", common.cache_max,
                 "Budget for cached registry blobs, e.g. 10G (default: a quarter of the file system, at most 10 GiB)");
  app.add_option("--span-cache", common.span_cache,
                 "Memory for decompressed spans of gzip and zstd layers, e.g. 64M (default 24M)");
  auto* creds =
      app.add_option("--creds", common.creds,
                     "Registry credentials USER:PASS, or - to read that line from standard input (else "
                     "--creds-file, $OCIFS_CREDS, --authfile, auth.json, docker config)");
  auto* creds_file = app.add_option("--creds-file", common.creds_file,
                                    "File whose first line is the registry credentials USER:PASS");
  creds->excludes(creds_file);
  app.add_option("--authfile", common.authfile, "containers auth.json to read credentials from (else $REGISTRY_AUTH_FILE)");
  app.add_option("--tls-verify", common.tls_verify, "Verify registry TLS certificates (default true; --tls-verify=false)");
  app.add_flag("--plain-http", common.plain_http, "Talk HTTP, not HTTPS, to the registry");
  app.add_flag("--offline", common.offline, "Use the cache only; never contact a registry");
  app.add_flag("-q,--quiet", common.quiet, "No progress output");
  app.add_flag("--progress", common.progress, "Progress output also when stderr is not a terminal");
  app.add_flag("-d,--debug", common.debug, "Debug log (and libfuse request log when mounting)");
  app.add_option("--read-timeout", common.read_timeout,
                 "Deadline of a read, then EIO: 30 (seconds), 500ms, 2m (default 30s)");
  app.add_option("--request-timeout", common.request_timeout,
                 "Deadline of a registry ping, token, manifest or config, and of a stream without progress "
                 "(default 2m)");
  app.add_option("--stall-timeout", common.stall_timeout,
                 "A registry transfer moving under 1 KiB/s this long is cut and resumed (default 30s)");
  app.add_option("--shared-index", common.shared_index,
                 "A layer index shared through the registry (ocifs index --push): use it, verify it against "
                 "the layer in the background, or ignore it (default use)")
      ->check(CLI::IsMember({"use", "verify", "off"}));
}

bool is_subcommand(CLI::App& app, const std::string& arg) {
  if (arg == "help") return true;
  auto all = app.get_subcommands([](CLI::App*) { return true; });
  return std::any_of(all.begin(), all.end(), [&](CLI::App* sub) { return sub->check_name(arg); });
}

// mount.fuse3 and fstab call "ocifs SOURCE MOUNTPOINT [-n] -o OPTS": rewrite it as "mount".
void normalise_argv(CLI::App& app, std::vector<std::string>& args) {
  if (args.size() >= 3 && !args[1].starts_with('-') && !is_subcommand(app, args[1])) {
    args.insert(args.begin() + 1, "mount");
  }
}

}  // namespace

int main(int argc, char** argv) {
  // A supervised mount's server, started by its supervisor (cli/supervisor.hpp).
  if (argc >= 2 && std::string_view(argv[0]) == "ocifs:" && std::string_view(argv[1]) == "server") {
    std::signal(SIGPIPE, SIG_IGN);
    ocifs::cli::Daemon::log_to_redirectable_stderr();
    return ocifs::cli::run_server_process();
  }
  // Parsed from a copy: the credentials in argv and the environment are overwritten at once,
  // before the mount daemon forks, so that /proc/PID/cmdline and environ never show them.
  std::vector<std::string> args(argv, argv + argc);
  auto creds_env = ocifs::cli::scrub_secrets(argc, argv);
  // libcurl runs with CURLOPT_NOSIGNAL, so a registry closing a connection would otherwise kill
  // the process with SIGPIPE; writes to a closed stdout get EPIPE instead (see run_cat).
  std::signal(SIGPIPE, SIG_IGN);
  auto console = spdlog::stderr_color_mt("ocifs");
  console->set_pattern("ocifs: %^%l%$: %v");
  spdlog::set_default_logger(console);
  spdlog::set_level(spdlog::level::warn);

  CLI::App app{"ocifs: mount OCI and Docker container images lazily, read-only, without extracting them"};
  app.set_version_flag("--version", std::string("ocifs ") + OCIFS_VERSION);
  app.require_subcommand(1);

  CommonOptions common;
  ocifs::cli::MountArgs mount;
  std::vector<std::string> raw_options;
  bool dash_n = false;
  auto* mount_cmd = app.add_subcommand("mount", "Mount REF at MOUNTPOINT; returns once the mount is live");
  add_common(*mount_cmd, mount.common);
  mount_cmd->add_option("REF", mount.ref, "[REGISTRY/]NAME[:TAG|@DIGEST], oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG]")->required();
  mount_cmd->add_option("MOUNTPOINT", mount.mountpoint, "An existing directory")->required();
  mount_cmd->add_option("-o", raw_options, "Mount options: allow_other, dev, suid, cache_dir=DIR, cache_max=SIZE, span_cache=SIZE, platform=P, authfile=FILE, creds_file=FILE, upper=DIR, writable, offline, plain_http, tls_verify=false, read_timeout=T, request_timeout=T, stall_timeout=T, and libfuse options")
      ->allow_extra_args(false);
  mount_cmd->add_flag("-f,--foreground", mount.foreground, "Stay in the foreground");
  mount_cmd->add_option("--prefetch", mount.prefetch,
                        "Fetch in the background once live: none, landmark (what an eStargz image marks as needed "
                        "first; the default) or all")
      ->check(CLI::IsMember({"none", "landmark", "all"}));
  mount_cmd->add_option("--upper", mount.upper,
                        "A writable root: overlayfs over the image, changes kept in DIR/upper (needs root)");
  mount_cmd->add_flag("--writable", mount.writable,
                      "A writable root whose changes live in memory and vanish at unmount (needs root)");
  mount_cmd->add_flag("-n", dash_n, "Ignored (mount(8) compatibility: do not write /etc/mtab)");

  std::string umount_point;
  auto* umount_cmd = app.add_subcommand("umount", "Unmount an ocifs mount");
  umount_cmd->alias("unmount");
  umount_cmd->add_option("MOUNTPOINT", umount_point)->required();

  std::string ref, path;
  bool long_format = false, json = false;
  auto* ls_cmd = app.add_subcommand("ls", "List a directory of an image without mounting it");
  add_common(*ls_cmd, common);
  ls_cmd->add_option("REF", ref)->required();
  ls_cmd->add_option("PATH", path, "Directory or file inside the image (default /)");
  ls_cmd->add_flag("-l,--long", long_format, "Mode, owner, size, mtime and link target");

  auto* cat_cmd = app.add_subcommand("cat", "Write a file of an image to stdout without mounting it");
  add_common(*cat_cmd, common);
  cat_cmd->add_option("REF", ref)->required();
  cat_cmd->add_option("PATH", path)->required();

  auto* inspect_cmd = app.add_subcommand("inspect", "Show manifest, config, platforms and layers of an image");
  add_common(*inspect_cmd, common);
  inspect_cmd->add_option("REF", ref)->required();
  inspect_cmd->add_flag("--json", json, "Machine-readable output");

  auto* index_cmd = app.add_subcommand("index", "Resolve and index an image without mounting (warms the cache)");
  add_common(*index_cmd, common);
  index_cmd->add_option("REF", ref)->required();
  ocifs::cli::PushOptions push;
  index_cmd->add_flag("--push", push.push,
                      "Push the layer indexes to the image's repository as an OCI artifact referring to the image, "
                      "for other machines to mount it lazily (needs push rights)");
  index_cmd->add_option("--checkpoint-spacing", push.checkpoint_spacing,
                        "With --push: decoded bytes between the gzip checkpoints shared, 512K to 32M (default 4M)");

  std::string status_point;
  auto* status_cmd = app.add_subcommand("status", "Show what a live mount has fetched and served, per layer");
  status_cmd->add_option("MOUNTPOINT", status_point)->required();
  status_cmd->add_flag("--json", json, "Machine-readable output");

  std::string remount_point;
  auto* remount_cmd = app.add_subcommand(
      "remount", "Replace a mount's server with one from the ocifs binary now installed, without a failed request");
  remount_cmd->add_option("MOUNTPOINT", remount_point)->required();

  auto cache_cmd = ocifs::cli::add_cache_command(app);

  normalise_argv(app, args);
  std::vector<const char*> cargs;
  for (auto& a : args) cargs.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(cargs.size()), cargs.data());
  } catch (const CLI::ParseError& e) {
    // CLI11 prints the message (or the help); its exit codes differ per error kind, and the man
    // page promises 2 for every usage error.
    return app.exit(e) == 0 ? 0 : 2;
  }

  common.creds_env = mount.common.creds_env = creds_env;
  auto level_for = [](const CommonOptions& c) {
    return c.debug ? spdlog::level::debug : c.quiet ? spdlog::level::err : spdlog::level::warn;
  };
  try {
    if (*mount_cmd) {
      spdlog::set_level(level_for(mount.common));
      for (const auto& list : raw_options) {
        for (auto& opt : ocifs::cli::split_options(list)) mount.fuse_options.push_back(opt);
      }
      return ocifs::cli::run_mount(std::move(mount));
    }
    if (*umount_cmd) return ocifs::cli::run_umount(umount_point);
    if (*status_cmd) return ocifs::cli::run_status(status_point, json);
    if (*remount_cmd) return ocifs::cli::run_remount(remount_point, std::chrono::seconds(120));
    spdlog::set_level(level_for(common));
    if (*ls_cmd || *cat_cmd || *inspect_cmd || *index_cmd) {
      if (auto loaded = ocifs::cli::load_credentials(common); !loaded) {
        spdlog::error("{}", loaded.error().message);
        return loaded.error().code == std::errc::invalid_argument ? 2 : 1;
      }
    }
    if (*ls_cmd) return ocifs::cli::run_ls(common, ref, path, long_format);
    if (*cat_cmd) return ocifs::cli::run_cat(common, ref, path);
    if (*inspect_cmd) return ocifs::cli::run_inspect(common, ref, json);
    if (*index_cmd) return ocifs::cli::run_index(common, ref, push);
    if (*cache_cmd->cache) return ocifs::cli::run_cache(*cache_cmd);
  } catch (const std::exception& e) {
    spdlog::critical("internal error: {}", e.what());
    return 70;  // EX_SOFTWARE
  }
  return 2;
}
