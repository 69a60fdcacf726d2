#include "commands.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <malloc.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <ctime>
#include <optional>
#include <thread>

#include "daemon.hpp"
#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/byte_size.hpp"
#include "ocifs/fuse/fuse_server.hpp"
#include "ocifs/image/image.hpp"
#include "ocifs/image/registry_source.hpp"
#include "ocifs/image/shared_index_push.hpp"
#include "ocifs/oci/referrers.hpp"
#include "ocifs/io/full_io.hpp"
#include "ocifs/oci/inspect_document.hpp"
#include "ocifs/util/duration.hpp"
#include "ocifs/util/text.hpp"
#include "credentials_input.hpp"
#include "channel.hpp"
#include "mount_args_json.hpp"
#include "mount_table.hpp"
#include "progress.hpp"
#include "supervisor.hpp"
#include "writable_root.hpp"

extern char** environ;

namespace ocifs::cli {

namespace {

constexpr int kExitFailure = 1;

int fail(const Error& error) {
  spdlog::error("{}", error.message);
  return kExitFailure;
}

// The cache directory and what resolving any reference needs from the options.
struct Resolution {
  cache::Cache cache;
  image::ResolveOptions options;
};

Result<std::unique_ptr<Resolution>> prepare(const CommonOptions& common) {
  auto root = common.cache_dir.empty() ? cache::Cache::default_root() : std::filesystem::path(common.cache_dir);
  OCIFS_ASSIGN(auto cache, cache::Cache::open(root));
  auto resolution = std::make_unique<Resolution>(Resolution{std::move(cache), {}});
  auto& options = resolution->options;
  if (!common.platform.empty()) {
    OCIFS_ASSIGN(options.platform, oci::Platform::parse(common.platform));
  }
  std::uint64_t max = cache::default_cache_max(root);
  if (!common.cache_max.empty()) {
    OCIFS_ASSIGN(max, cache::parse_byte_size(common.cache_max));
  }
  OCIFS_ASSIGN(options.blob_cache, cache::BlobCache::open(root, max));
  resolution->cache.set_blob_cache(options.blob_cache);  // decoded zstd layers share the budget
  options.cache = &resolution->cache;
  options.offline = common.offline;
  options.registry.creds = common.creds;
  options.registry.authfile = common.authfile;
  options.registry.tls_verify = common.tls_verify;
  options.registry.plain_http = common.plain_http;
  OCIFS_ASSIGN(options.shared_index, image::parse_shared_index_mode(common.shared_index));
  for (auto [text, value] : {std::pair{&common.read_timeout, &options.registry.read_deadline},
                             {&common.request_timeout, &options.registry.request_deadline},
                             {&common.stall_timeout, &options.registry.stall_timeout}}) {
    if (text->empty()) continue;
    OCIFS_ASSIGN(*value, util::parse_duration(*text));
  }
  return resolution;
}

// An open image and the blob cache under it. When it goes, the image's reads, streams and
// verifications are over: the blob cache, which evicts in the background while they run, is
// brought within its budget before the command exits.
class OpenedImage {
 public:
  OpenedImage(std::unique_ptr<image::Image> image, std::shared_ptr<cache::BlobCache> blobs)
      : image_(std::move(image)), blobs_(std::move(blobs)) {}
  OpenedImage(OpenedImage&&) = default;
  OpenedImage& operator=(OpenedImage&&) = delete;
  ~OpenedImage() {
    image_.reset();
    if (!blobs_) return;
    if (auto settled = blobs_->settle(); !settled) spdlog::warn("{}", settled.error().message);
  }

  image::Image& operator*() const { return *image_; }
  image::Image* operator->() const { return image_.get(); }

 private:
  std::unique_ptr<image::Image> image_;
  std::shared_ptr<cache::BlobCache> blobs_;
};

// `mount`: opening for a mount, with that prefetch mode. A live mount can show an uncompressed
// registry layer before it has all arrived (its tree from its tar headers, its bytes waiting for
// verification: image.hpp), prefetches, and keeps what its reads touched for the next cold mount.
// The other commands want everything verified up front and nothing in the background.
Result<OpenedImage> open_image(const CommonOptions& common, const std::string& ref_text,
                               std::optional<image::PrefetchMode> mount = std::nullopt) {
  // Indexing allocates and frees tables of tens of MB (entry tables growing, the tree builder's,
  // the tree's). glibc's adaptive mmap threshold would move such buffers onto the heap after the
  // first frees, where what is freed stays resident between what is not: 2 million entries then
  // peak 25-50 MB higher. Pinned, every buffer of 256 KiB or more is its own mapping, returned to
  // the kernel when freed.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  OCIFS_ASSIGN(auto ref, oci::ImageRef::parse(ref_text));
  OCIFS_ASSIGN(auto resolution, prepare(common));
  image::OpenOptions options;
  options.resolve = resolution->options;
  if (!common.span_cache.empty()) {
    OCIFS_ASSIGN(auto bytes, cache::parse_byte_size(common.span_cache));
    options.span_cache_bytes = static_cast<std::size_t>(bytes);
  }
  if (mount) {
    options.first_open = layer::FirstOpen::walk_uncompressed;
    options.prefetch = *mount;
    options.record_access = true;
  }
  Progress progress(common.quiet, common.progress);
  progress.attach(options);
  auto image = image::Image::open(ref, resolution->cache, options);
  progress.finish();
  if (!image) return std::move(image).error();
  return OpenedImage(std::move(image).value(), options.resolve.blob_cache);
}

std::string mode_string(std::uint32_t mode) {
  std::string s = S_ISDIR(mode) ? "d" : S_ISLNK(mode) ? "l" : S_ISCHR(mode) ? "c" : S_ISBLK(mode) ? "b"
                : S_ISFIFO(mode) ? "p" : S_ISSOCK(mode) ? "s" : "-";
  const char* rwx = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) s += (mode & (0400 >> i)) ? rwx[i] : '-';
  if (mode & S_ISUID) s[3] = (mode & S_IXUSR) ? 's' : 'S';
  if (mode & S_ISGID) s[6] = (mode & S_IXGRP) ? 's' : 'S';
  if (mode & S_ISVTX) s[9] = (mode & S_IXOTH) ? 't' : 'T';
  return s;
}

std::string long_line(const image::Tree& tree, std::uint32_t index, std::string_view name) {
  const auto& n = tree.inode(index);
  std::tm tm{};
  std::time_t t = static_cast<std::time_t>(n.mtime_sec);
  gmtime_r(&t, &tm);
  std::string size = (S_ISCHR(n.mode) || S_ISBLK(n.mode)) ? fmt::format("{},{}", n.dev_major, n.dev_minor)
                                                          : std::to_string(n.size);
  std::string line = fmt::format("{} {:>3} {:>5}/{:<5} {:>10} {:%Y-%m-%d %H:%M} {}", mode_string(n.mode),
                                 n.nlink, n.uid, n.gid, size, tm, util::escaped(name));
  if (n.is_symlink()) line += fmt::format(" -> {}", util::escaped(tree.str(n.link)));
  return line;
}

// Resolves a path inside the image, following symlinks (relative to their directory or the
// image root), at most 40 of them as the kernel does.
Result<std::uint32_t> follow(const image::Tree& tree, std::string path) {
  for (int hops = 0; hops < 40; ++hops) {
    auto index = tree.resolve(path);
    if (!index) {
      return make_error(std::errc::no_such_file_or_directory, "cannot find {}: no such file in the image",
                        util::shown(path));
    }
    const auto& n = tree.inode(*index);
    if (!n.is_symlink()) return *index;
    std::string target(tree.str(n.link));
    auto slash = path.rfind('/');
    path = target.starts_with('/') || slash == std::string::npos ? target : path.substr(0, slash) + "/" + target;
  }
  return make_error(std::errc::too_many_symbolic_link_levels, "cannot open {}: too many symbolic links",
                    util::shown(path));
}

struct ParsedMountOptions {
  fuse::MountOptions fuse;
  std::string error;
};

// -o options: ours, mount(8)/fstab noise to ignore, and the rest for libfuse.
ParsedMountOptions parse_mount_options(MountArgs& args) {
  ParsedMountOptions out;
  for (const auto& opt : args.fuse_options) {
    if (opt == "allow_other") out.fuse.allow_other = true;
    else if (opt == "dev") out.fuse.dev = true;
    else if (opt == "nodev") out.fuse.dev = false;
    else if (opt == "suid") out.fuse.suid = true;
    else if (opt == "nosuid") out.fuse.suid = false;
    else if (opt == "debug") args.common.debug = true;
    else if (opt.starts_with("cache_dir=")) args.common.cache_dir = opt.substr(10);
    else if (opt.starts_with("platform=")) args.common.platform = opt.substr(9);
    else if (opt.starts_with("cache_max=")) args.common.cache_max = opt.substr(10);
    else if (opt.starts_with("span_cache=")) args.common.span_cache = opt.substr(11);
    else if (opt.starts_with("authfile=")) args.common.authfile = opt.substr(9);
    else if (opt.starts_with("creds_file=")) args.common.creds_file = opt.substr(11);
    else if (opt.starts_with("prefetch=")) args.prefetch = opt.substr(9);
    else if (opt.starts_with("upper=")) args.upper = opt.substr(6);
    else if (opt == "writable") args.writable = true;
    else if (opt.starts_with("read_timeout=")) args.common.read_timeout = opt.substr(13);
    else if (opt.starts_with("request_timeout=")) args.common.request_timeout = opt.substr(16);
    else if (opt.starts_with("stall_timeout=")) args.common.stall_timeout = opt.substr(14);
    else if (opt == "offline") args.common.offline = true;
    else if (opt.starts_with("shared_index=")) args.common.shared_index = opt.substr(13);
    else if (opt == "plain_http") args.common.plain_http = true;
    else if (opt == "tls_verify=false") args.common.tls_verify = false;
    else if (opt == "rw") out.error = "ocifs mounts are read-only: drop the 'rw' option";
    else if (opt == "ro" || opt == "defaults" || opt == "auto" || opt == "noauto" || opt == "user" ||
             opt == "users" || opt == "nouser" || opt == "_netdev" || opt == "nofail" || opt == "default_permissions" ||
             opt.starts_with("x-") || opt.starts_with("comment="))
      continue;
    else out.fuse.extra.push_back(opt);
  }
  out.fuse.fsname = args.ref;
  out.fuse.debug = args.common.debug;
  if (!args.common.read_timeout.empty()) {
    auto timeout = util::parse_duration(args.common.read_timeout);
    if (!timeout) out.error = timeout.error().message;
    else out.fuse.read_timeout = *timeout;
  }
  return out;
}

}  // namespace

std::vector<std::string> split_options(const std::string& list) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= list.size()) {
    auto comma = list.find(',', start);
    auto item = list.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!item.empty()) out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

int run_mount(MountArgs args) {
  auto parsed = parse_mount_options(args);
  if (!parsed.error.empty()) {
    spdlog::error("cannot mount {}: {}", args.ref, parsed.error);
    return kExitFailure;
  }
  // Standard input and credential files are read now, while the terminal and the working
  // directory are still the caller's (the daemon leaves both).
  if (auto loaded = load_credentials(args.common); !loaded) {
    spdlog::error("cannot mount {}: {}", args.ref, loaded.error().message);
    return loaded.error().code == std::errc::invalid_argument ? 2 : kExitFailure;
  }
  auto prefetch = image::parse_prefetch_mode(args.prefetch);
  if (!prefetch) {
    spdlog::error("cannot mount {}: {}", args.ref, prefetch.error().message);
    return 2;  // a usage error, as CLI11 reports --prefetch with a bad value
  }
  struct stat st {};
  if (::stat(args.mountpoint.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    spdlog::error("cannot mount {} at {}: the mountpoint is not an existing directory", args.ref, args.mountpoint);
    return kExitFailure;
  }
  WritableRoot writable{.upper_dir = args.upper, .tmpfs = args.writable, .dev = parsed.fuse.dev,
                        .suid = parsed.fuse.suid};
  if (auto prepared = prepare_writable_root(writable, args.mountpoint); !prepared) {
    spdlog::error("cannot mount {} at {}: {}", args.ref, args.mountpoint, prepared.error().message);
    return kExitFailure;
  }
  // Absolute: servers started later run from the caller's directory, but /proc/mounts, the
  // writable root and the servers' command lines need the full path.
  char resolved[PATH_MAX];
  if (::realpath(args.mountpoint.c_str(), resolved)) args.mountpoint = resolved;
  parsed.fuse.fsname = args.ref;
  std::optional<Daemon> daemon;  // forked before any thread exists (daemon.hpp)
  if (!args.foreground) {
    auto detached = Daemon::detach();
    if (!detached) return fail(detached.error());
    daemon.emplace(std::move(detached).value());
  }
  // Credentials now live in args.common.creds: the servers get them over their channel.
  args.common.creds_file.clear();
  args.common.creds_env.reset();
  return supervise_mount(args, parsed.fuse, writable, std::move(daemon));
}

int run_server_process() {
  constexpr int kChannel = 3;  // set up by the supervisor (supervisor.cpp)
  auto hello = receive_message(kChannel);
  if (!hello || hello->text.empty()) return kExitFailure;  // not started by a supervisor
  auto j = nlohmann::json::parse(hello->text, nullptr, false);
  if (j.is_discarded()) return kExitFailure;
  auto args = mount_args_from_json(j.value("args", std::string()));
  if (!args) return fail(args.error());
  if (j.value("syslog", false)) Daemon::leave_terminal();  // no other thread yet; stdio is /dev/null anyway
  spdlog::set_level(args->common.debug ? spdlog::level::debug
                    : args->common.quiet ? spdlog::level::err
                                          : spdlog::level::warn);
  auto parsed = parse_mount_options(*args);
  if (!parsed.error.empty()) {
    spdlog::error("cannot mount {}: {}", args->ref, parsed.error);
    return kExitFailure;
  }
  parsed.fuse.fsname = args->ref;
  parsed.fuse.server_generation = j.value("generation", std::uint64_t{0});
  auto supervision = nlohmann::json::parse(j.value("supervision", std::string("{}")), nullptr, false);
  if (supervision.is_object()) {
    supervision["server_pid"] = ::getpid();
    parsed.fuse.supervision_json = supervision.dump();
  }
  auto prefetch = image::parse_prefetch_mode(args->prefetch);
  if (!prefetch) return fail(prefetch.error());
  auto image = open_image(args->common, args->ref, *prefetch);
  if (!image) return fail(image.error());
  malloc_trim(0);  // indexing's buffers are gone; the server need not keep them
  if (auto sent = send_message(kChannel, "opened"); !sent) return fail(sent.error());
  auto serve = receive_message(kChannel);
  if (!serve || !serve->text.starts_with("serve:") || serve->fd < 0) return kExitFailure;
  std::vector<std::byte> init(serve->text.size() - 6);
  std::memcpy(init.data(), serve->text.data() + 6, init.size());
  auto server = fuse::FuseServer::adopt(**image, serve->fd, init, parsed.fuse);
  if (!server) return fail(server.error());
  if (auto sent = send_message(kChannel, "serving"); !sent) return fail(sent.error());
  // The first server shares the caller's terminal until the mount is live; the supervisor then
  // says "detach" (not with -f), and it lets go of it as the supervisor did (daemon.hpp).
  std::thread([] {
    auto msg = receive_message(kChannel);
    if (msg && msg->text == "detach") Daemon::leave_terminal();
  }).detach();
  // Decoded spans (512 KiB-1 MiB each) come and go all the time. glibc's adaptive mmap threshold
  // would move them onto the heap after the first few frees, where freed spans stay resident:
  // pinning the threshold keeps each span its own mapping, returned to the kernel when evicted.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  // Pinning it also leaves the trim threshold at its 128 KiB default: the few hundred KiB of heap
  // every read allocates and frees (a cursor's inflate state, a checkpoint's unpacked state)
  // went back to the kernel after each read and were faulted in again by the next, 0.1 ms of a
  // random 4 KiB read's 0.45 (bench image, p50). 8 MiB of free heap kept is the price.
  mallopt(M_TRIM_THRESHOLD, 8 << 20);
  auto done = (*server)->run();
  if (!done) return fail(done.error());
  return 0;
}

int run_umount(const std::string& mountpoint) {
  // A writable root: the overlay comes off first (refused while a process uses it), then the
  // ocifs mount it covered.
  if (auto stack = mounts_at(mountpoint); stack && is_writable_root(*stack)) {
    if (::umount2(mountpoint.c_str(), 0) != 0) {
      spdlog::error("cannot unmount the writable root at {}: {}", mountpoint, std::strerror(errno));
      return kExitFailure;
    }
  }
  const char* argv[] = {"fusermount3", "-u", "--", mountpoint.c_str(), nullptr};
  pid_t pid;
  if (posix_spawnp(&pid, "fusermount3", nullptr, nullptr, const_cast<char**>(argv), environ) == 0) {
    int status = 0;
    io::retry_on_eintr([&] { return ::waitpid(pid, &status, 0); });
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
  }
  if (::umount2(mountpoint.c_str(), 0) == 0) return 0;
  spdlog::error("cannot unmount {}: {}", mountpoint, std::strerror(errno));
  return kExitFailure;
}

int run_ls(const CommonOptions& common, const std::string& ref, const std::string& path, bool long_format) {
  auto image = open_image(common, ref);
  if (!image) return fail(image.error());
  const auto& tree = (*image)->tree();
  auto index = follow(tree, path);
  if (!index) return fail(index.error());
  const auto& node = tree.inode(*index);
  // Names as GNU ls -b prints them (util::escaped): one line each, and nothing a terminal would
  // act on (escape sequences in a name from an image reached the terminal raw before).
  if (!node.is_dir()) {
    std::puts(long_format ? long_line(tree, *index, path).c_str() : util::escaped(path).c_str());
    return 0;
  }
  for (const auto& d : tree.children(node)) {
    auto name = tree.str(d.name);
    std::puts(long_format ? long_line(tree, d.inode, name).c_str() : util::escaped(name).c_str());
  }
  return 0;
}

int run_cat(const CommonOptions& common, const std::string& ref, const std::string& path) {
  auto image = open_image(common, ref);
  if (!image) return fail(image.error());
  const auto& tree = (*image)->tree();
  auto index = follow(tree, path);
  if (!index) return fail(index.error());
  if (!tree.inode(*index).is_regular()) {
    return fail(
        make_error(std::errc::invalid_argument, "cannot cat {}: not a regular file", util::shown(path)));
  }
  auto file = (*image)->content().open(*index);
  std::vector<std::byte> buf(1u << 20);
  for (std::uint64_t off = 0;;) {
    auto n = (*image)->content().read(*index, off, buf, file.get());
    if (!n) return fail(n.error().with_context(fmt::format("cannot cat {}", util::shown(path))));
    if (*n == 0) break;
    if (std::fwrite(buf.data(), 1, *n, stdout) != *n) {
      if (errno == EPIPE) return kExitFailure;  // the reader went away (`| head`): nothing to say
      return fail(util::errno_error(errno, "cannot write to stdout"));
    }
    off += *n;
  }
  return std::fflush(stdout) == 0 ? 0 : kExitFailure;
}

int run_index(CommonOptions common, const std::string& ref, const PushOptions& push) {
  layer::SharedIndexOptions share;
  if (!push.checkpoint_spacing.empty()) {
    auto spacing = cache::parse_byte_size(push.checkpoint_spacing);
    if (!spacing) return fail(spacing.error());
    if (*spacing < layer::kMinCheckpointSpacing || *spacing > layer::kMaxCheckpointSpacing) {
      spdlog::error("--checkpoint-spacing must be between 512K and 32M");
      return 2;
    }
    share.checkpoint_spacing = *spacing;
  }
  // What is pushed is what this machine verified: every layer indexed here, none from a shared index.
  if (push.push) common.shared_index = "off";
  auto image = open_image(common, ref);
  if (!image) return fail(image.error());
  for (const auto& layer : (*image)->layers()) {
    std::printf("%s %s %llu -> %llu bytes, %zu entries%s\n", layer.digest.c_str(),
                std::string(compress::to_string(layer.encoding)).c_str(),
                static_cast<unsigned long long>(layer.compressed_size),
                static_cast<unsigned long long>(layer.decoded_size), layer.entries,
                layer.from_cache ? " (cached)" : layer.index_source == "shared" ? " (shared index)" : "");
  }
  std::printf("%zu inodes in the merged tree\n", (*image)->tree().inode_count());
  if (!push.push) return 0;

  const auto& resolved = (*image)->resolved();
  auto parsed = oci::ImageRef::parse(ref);
  if (!parsed) return fail(parsed.error());
  if (parsed->transport != oci::Transport::registry) {
    spdlog::error("cannot push a shared index of {}: it is not in a registry", resolved.name);
    return kExitFailure;
  }
  auto resolution = prepare(common);
  if (!resolution) return fail(resolution.error());
  auto client = registry::RegistryClient::create(parsed->reference, (*resolution)->options.registry);
  if (!client) return fail(client.error());
  const auto start = std::chrono::steady_clock::now();
  // What this machine's first mount of the image read goes with it: other machines fetch that
  // first, and the index keeps checkpoints for it.
  std::vector<std::vector<layer::ReadFirst>> read_first;
  if (auto record = (*resolution)->cache.read_access_record(resolved.manifest_descriptor.digest); !record) {
    spdlog::warn("cannot read the access record of {}: {}", resolved.name, record.error().message);
  } else if (*record) {
    read_first = image::read_first_of((*image)->tree(), **record, resolved.layers.size());
  }
  auto pushed = image::push_shared_index(resolved, (*resolution)->cache, **client, share, read_first);
  if (!pushed) return fail(pushed.error());
  std::uint64_t total = 0, heads = 0, layers = 0;
  for (const auto& layer : pushed->layers) {
    if (!layer.skipped.empty()) {
      std::printf("%s not shared: %s\n", layer.layer_digest.c_str(), layer.skipped.c_str());
      continue;
    }
    std::printf("%s shared index %s: %llu bytes (head %llu), %zu checkpoints %llu KiB apart, %zu ranges read "
                "first (%zu checkpoints)\n",
                layer.layer_digest.c_str(), layer.blob_digest.c_str(), static_cast<unsigned long long>(layer.blob_size),
                static_cast<unsigned long long>(layer.head_size), layer.checkpoints,
                static_cast<unsigned long long>(layer.spacing >> 10), layer.read_first, layer.read_first_checkpoints);
    total += layer.blob_size;
    heads += layer.head_size;
    layers += 1;
  }
  std::uint64_t image_bytes = 0;
  for (const auto& layer : (*image)->layers()) image_bytes += layer.compressed_size;
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("pushed %s: %llu layer indexes, %llu bytes (%.2f%% of the layers' %llu), heads %llu bytes, in %.1f s%s\n",
              pushed->artifact_digest.c_str(), static_cast<unsigned long long>(layers),
              static_cast<unsigned long long>(total), image_bytes ? 100.0 * total / image_bytes : 0.0,
              static_cast<unsigned long long>(image_bytes), static_cast<unsigned long long>(heads), seconds,
              pushed->referrers_api ? "" : " (referrers tag schema updated)");
  return 0;
}

int run_inspect(const CommonOptions& common, const std::string& ref_text, bool json) {
  auto ref = oci::ImageRef::parse(ref_text);
  if (!ref) return fail(ref.error());
  auto resolution = prepare(common);
  if (!resolution) return fail(resolution.error());
  auto resolved = image::resolve_image(*ref, (*resolution)->options);
  if (!resolved) return fail(resolved.error());
  const auto& img = *resolved;
  auto referrers = image::list_referrers(*ref, (*resolution)->options, img.manifest_descriptor.digest);
  if (!referrers) {
    spdlog::warn("cannot list the referrers of {}: {}", img.name, referrers.error().message);
    referrers = std::vector<oci::Descriptor>{};
  }
  if (json) {
    std::puts(oci::inspect_document(img.name, img.manifest_descriptor, img.manifest_json, img.config_json,
                                    img.platform_choices, *referrers)
                  .c_str());
    return 0;
  }
  // Every string below but the digests (checked) comes from the image: escaped (util::escaped).
  auto e = [](std::string_view text) { return util::escaped(text); };
  auto joined = [&](const std::vector<std::string>& words) {
    std::string out;
    for (const auto& w : words) out += (out.empty() ? "" : " ") + e(w);
    return out;
  };
  fmt::print("Name:        {}\n", e(img.name));
  fmt::print("Digest:      {}\n", img.manifest_descriptor.digest);
  fmt::print("MediaType:   {}\n", e(img.manifest.media_type.empty() ? img.manifest_descriptor.media_type
                                                                    : img.manifest.media_type));
  fmt::print("Platform:    {}\n", e(img.config.platform.str()));
  if (!img.config.created.empty()) fmt::print("Created:     {}\n", e(img.config.created));
  if (!img.platform_choices.empty()) {
    fmt::print("Platforms:\n");
    for (const auto& d : img.platform_choices) {
      fmt::print("  {:<20} {}\n", d.platform ? e(d.platform->str()) : "?", d.digest);
    }
  }
  if (!img.config.entrypoint.empty()) fmt::print("Entrypoint:  {}\n", joined(img.config.entrypoint));
  if (!img.config.cmd.empty()) fmt::print("Cmd:         {}\n", joined(img.config.cmd));
  if (!img.config.working_dir.empty()) fmt::print("WorkingDir:  {}\n", e(img.config.working_dir));
  if (!img.config.user.empty()) fmt::print("User:        {}\n", e(img.config.user));
  for (const auto& env : img.config.env) fmt::print("Env:         {}\n", e(env));
  fmt::print("Layers:\n");
  for (const auto& layer : img.manifest.layers) {
    fmt::print("  {} {:>12} {}\n", layer.digest, layer.size, e(layer.media_type));
  }
  if (!referrers->empty()) fmt::print("Referrers:\n");
  for (const auto& r : *referrers) {
    auto created = r.annotations.find(std::string(oci::kAnnotationCreated));
    fmt::print("  {} {:>12} {}{}\n", r.digest, r.size, e(r.artifact_type.empty() ? "(no artifact type)" : r.artifact_type),
               created == r.annotations.end() ? "" : "  " + e(created->second));
  }
  return 0;
}

}  // namespace ocifs::cli
