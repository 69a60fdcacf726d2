// The subcommands: each takes parsed options, does its job, returns the process exit code.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace ocifs::cli {

struct CommonOptions {
  std::string cache_dir;  // empty: Cache::default_root()
  std::string cache_max;  // --cache-max SIZE; empty: cache::default_cache_max()
  std::string span_cache;  // --span-cache SIZE; empty: SpanCache::kDefaultBudget
  std::string platform;   // "os/arch[/variant]" or empty
  bool quiet = false;
  bool progress = false;  // --progress: also when stderr is not a terminal
  bool debug = false;
  // Registries
  std::string creds;       // --creds USER:PASS, or "-": a line of standard input (credentials_input.hpp)
  std::string creds_file;  // --creds-file FILE, -o creds_file=FILE
  std::optional<std::string> creds_env;  // OCIFS_CREDS, taken out of the environment at start-up
  std::string authfile;                  // --authfile FILE
  bool tls_verify = true;
  bool plain_http = false;
  bool offline = false;
  // Deadlines (util::parse_duration; empty: the defaults of RegistryOptions)
  std::string read_timeout;     // a read: registry range reads, and FUSE reads from arrival to answer
  std::string request_timeout;  // ping, token, manifest, config; a stream without progress
  std::string stall_timeout;    // an open transfer moving under 1 KiB/s this long is cut and resumed
  std::string shared_index = "use";  // --shared-index use|verify|off (image::SharedIndexMode)
};

// `index --push`: share the layer indexes through the registry.
struct PushOptions {
  bool push = false;
  std::string checkpoint_spacing;  // SIZE; empty: layer::SharedIndexOptions' default
};

struct MountArgs {
  CommonOptions common;
  std::string ref;
  std::string mountpoint;
  std::vector<std::string> fuse_options;  // -o values, comma lists already split
  bool foreground = false;
  std::string prefetch = "landmark";  // --prefetch none|landmark|all
  std::string upper;                  // --upper DIR, -o upper=DIR: a writable root kept in DIR
  bool writable = false;              // --writable, -o writable: a writable root on a tmpfs
};

int run_mount(MountArgs args);
// A supervised mount's server (supervisor.hpp): the process exec'd as `ocifs: server MNT`, its
// channel on descriptor 3; opens the image, then serves the connection it is handed.
int run_server_process();
int run_umount(const std::string& mountpoint);
int run_ls(const CommonOptions& common, const std::string& ref, const std::string& path, bool long_format);
int run_cat(const CommonOptions& common, const std::string& ref, const std::string& path);
int run_inspect(const CommonOptions& common, const std::string& ref, bool json);
int run_index(CommonOptions common, const std::string& ref, const PushOptions& push = {});

// Splits "a,b=c,d" into options (no escaping: image references carry no commas).
std::vector<std::string> split_options(const std::string& list);

}  // namespace ocifs::cli
