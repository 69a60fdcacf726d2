#include "ocifs/cache/cache.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <random>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/cache/decoded_copies.hpp"
#include "ocifs/io/file_source.hpp"
#include "ocifs/io/full_io.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::cache {

namespace fs = std::filesystem;

PendingFile::~PendingFile() {
  if (!committed_ && !temp_.empty()) ::unlink(temp_.c_str());
}

Result<void> PendingFile::write(std::string_view data) {
  if (auto t = io::write_full(fd_.get(), data); !t.ok()) {
    return util::errno_error(t.error, fmt::format("cannot write {}", temp_.string()));
  }
  return util::success();
}

Result<void> PendingFile::commit() {
  if (::fsync(fd_.get()) != 0) return util::errno_error(errno, fmt::format("cannot write {}", temp_.string()));
  fd_.reset();
  if (::rename(temp_.c_str(), final_.c_str()) != 0) {
    return util::errno_error(errno, fmt::format("cannot move {} into place", final_.string()));
  }
  committed_ = true;
  return util::success();
}

fs::path Cache::default_root() {
  if (const char* dir = std::getenv("OCIFS_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return fs::path(xdg) / "ocifs";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "ocifs";
  return fs::path("/var/cache/ocifs");
}

Result<Cache> Cache::open(fs::path root) {
  std::error_code ec;
  for (const char* sub : {"index/sha256", "decoded/sha256", "documents/sha256", "access/sha256", "refs", "tmp"}) {
    fs::create_directories(root / sub, ec);
    if (ec) return util::errno_error(ec.value(), fmt::format("cannot create cache directory {}", (root / sub).string()));
  }
  return Cache(std::move(root));
}

Result<fs::path> Cache::digest_path(std::string_view digest) const {
  if (!util::is_sha256_digest(digest)) return make_error(std::errc::invalid_argument, "cannot use '{}' as a cache key: not a sha256 digest", digest);
  return fs::path("sha256") / std::string(digest.substr(digest.find(':') + 1));
}

Result<std::optional<std::string>> Cache::read_index(std::string_view digest) const {
  OCIFS_ASSIGN(auto rel, digest_path(digest));
  auto path = root_ / "index" / rel;
  path += ".idx";
  auto bytes = io::read_file(path, std::uint64_t{4} << 30);
  if (!bytes) {
    if (bytes.error().code == std::errc::no_such_file_or_directory) return std::optional<std::string>();
    return std::move(bytes).error();
  }
  return std::optional<std::string>(std::move(bytes).value());
}

Result<void> Cache::write_index(std::string_view digest, std::string_view bytes) const {
  OCIFS_ASSIGN(auto rel, digest_path(digest));
  auto path = root_ / "index" / rel;
  path += ".idx";
  return io::write_file_atomic(path, bytes);
}

Result<std::optional<std::shared_ptr<io::FileSource>>> Cache::open_index(std::string_view digest) const {
  using Opened = std::optional<std::shared_ptr<io::FileSource>>;
  OCIFS_ASSIGN(auto rel, digest_path(digest));
  auto path = root_ / "index" / rel;
  path += ".idx";
  auto file = io::FileSource::open(path);
  if (!file) {
    if (file.error().code == std::errc::no_such_file_or_directory) return Opened();
    return std::move(file).error();
  }
  return Opened(std::move(file).value());
}

Result<PendingFile> Cache::create_index(std::string_view digest) const {
  OCIFS_ASSIGN(auto rel, digest_path(digest));
  auto path = root_ / "index" / rel;
  path += ".idx";
  return create_pending("index", std::move(path));
}

bool Cache::has_index(std::string_view digest) const {
  auto rel = digest_path(digest);
  if (!rel) return false;
  auto path = root_ / "index" / *rel;
  path += ".idx";
  return ::access(path.c_str(), F_OK) == 0;
}

void Cache::remove_index(std::string_view digest) const {
  if (auto rel = digest_path(digest)) {
    auto path = root_ / "index" / *rel;
    path += ".idx";
    ::unlink(path.c_str());
  }
}

Result<std::optional<std::string>> Cache::read_document(std::string_view digest) const {
  OCIFS_ASSIGN(auto rel, digest_path(digest));
  auto path = root_ / "documents" / rel;
  auto bytes = io::read_file(path, std::uint64_t{64} << 20);
  if (!bytes) {
    if (bytes.error().code == std::errc::no_such_file_or_directory) return std::optional<std::string>();
    return std::move(bytes).error();
  }
  if ("sha256:" + util::sha256_hex(*bytes) != digest) {
    ::unlink(path.c_str());
    return std::optional<std::string>();
  }
  return std::optional<std::string>(std::move(bytes).value());
}

Result<void> Cache::write_document(std::string_view digest, std::string_view bytes) const {
  OCIFS_ASSIGN(auto rel, digest_path(digest));
  return io::write_file_atomic(root_ / "documents" / rel, bytes);
}

namespace {
constexpr std::string_view kAccessMagic = "ocifs-access 1\n";
}  // namespace

Result<std::optional<std::vector<std::uint32_t>>> Cache::read_access_record(std::string_view digest) const {
  using Record = std::optional<std::vector<std::uint32_t>>;
  OCIFS_ASSIGN(auto rel, digest_path(digest));
  auto bytes = io::read_file(root_ / "access" / rel, kAccessMagic.size() + 11 * kMaxAccessRecord);
  if (!bytes) {
    if (bytes.error().code == std::errc::no_such_file_or_directory) return Record();
    return std::move(bytes).error();
  }
  std::string_view text = *bytes;
  if (!text.starts_with(kAccessMagic)) return Record();
  text.remove_prefix(kAccessMagic.size());
  std::vector<std::uint32_t> inodes;
  while (!text.empty()) {
    auto eol = text.find('\n');
    if (eol == std::string_view::npos) return Record();  // cut short
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + eol, v);
    if (ec != std::errc() || end != text.data() + eol) return Record();
    inodes.push_back(v);
    text.remove_prefix(eol + 1);
  }
  return Record(std::move(inodes));
}

Result<void> Cache::write_access_record(std::string_view digest, const std::vector<std::uint32_t>& inodes) const {
  OCIFS_ASSIGN(auto rel, digest_path(digest));
  std::string text(kAccessMagic);
  for (std::size_t i = 0; i < std::min(inodes.size(), kMaxAccessRecord); ++i) text += fmt::format("{}\n", inodes[i]);
  return io::write_file_atomic(root_ / "access" / rel, text);
}

Result<fs::path> Cache::ref_path(std::string_view host, std::string_view repository, std::string_view tag) const {
  // Hosts, repository components and tags are [A-Za-z0-9._:-] plus '[' ']' for IPv6; anything
  // else, and '.' or '..' as a component, cannot be a path here.
  auto safe = [](std::string_view part) {
    return !part.empty() && part != "." && part != ".." &&
           part.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-[]") ==
               std::string_view::npos;
  };
  fs::path path = root_ / "refs";
  bool ok = safe(host) && safe(tag);
  path /= std::string(host);
  for (std::size_t start = 0; ok;) {
    auto slash = repository.find('/', start);
    auto part = repository.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    ok = safe(part);
    path /= std::string(part);
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (!ok) {
    return make_error(std::errc::invalid_argument, "cannot use {}/{}:{} as a cache key", host, repository, tag);
  }
  return path / std::string(tag);
}

Result<std::optional<std::string>> Cache::read_ref(std::string_view host, std::string_view repository,
                                                   std::string_view tag) const {
  OCIFS_ASSIGN(auto path, ref_path(host, repository, tag));
  auto bytes = io::read_file(path, 1024);
  if (!bytes) {
    // Missing, or too long to be a digest (damaged: as if never resolved, like the check below).
    const auto code = bytes.error().code;
    if (code == std::errc::no_such_file_or_directory || code == std::errc::file_too_large) {
      return std::optional<std::string>();
    }
    return std::move(bytes).error();
  }
  if (!digest_path(*bytes)) return std::optional<std::string>();  // damaged: as if never resolved
  return std::optional<std::string>(std::move(bytes).value());
}

Result<void> Cache::write_ref(std::string_view host, std::string_view repository, std::string_view tag,
                              std::string_view digest) const {
  OCIFS_ASSIGN(auto path, ref_path(host, repository, tag));
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec) return util::errno_error(ec.value(), fmt::format("cannot create {}", path.parent_path().string()));
  return io::write_file_atomic(path, digest);
}

fs::path Cache::decoded_path(std::string_view digest) const {
  auto rel = digest_path(digest);
  return rel ? root_ / "decoded" / *rel : fs::path();
}

Result<PendingFile> Cache::create_pending(std::string_view prefix, fs::path final_path) const {
  std::random_device rd;
  auto temp = root_ / "tmp" / fmt::format("{}.{}.{:x}", prefix, ::getpid(), rd());
  io::Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return util::errno_error(errno, fmt::format("cannot create {}", temp.string()));
  return PendingFile(std::move(fd), std::move(temp), std::move(final_path));
}

Result<ScratchFile> Cache::create_scratch(std::uint64_t limit) const {
  auto dir = root_ / "tmp";
  io::Fd fd(::open(dir.c_str(), O_RDWR | O_TMPFILE | O_CLOEXEC, 0600));
  if (!fd.valid() && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
    // A file system without O_TMPFILE (before Linux 3.11, some FUSE and network ones): a name
    // that lives only until the unlink below.
    std::random_device rd;
    auto temp = dir / fmt::format("scratch.{}.{:x}", ::getpid(), rd());
    fd = io::Fd(::open(temp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (fd.valid()) ::unlink(temp.c_str());
  }
  if (!fd.valid())
    return util::errno_error(errno, fmt::format("cannot create a scratch file in {}", dir.string()));
  return ScratchFile(std::move(fd), limit, dir.string());
}

Result<PendingFile> Cache::create_decoded(std::string_view digest) const {
  OCIFS_ASSIGN(auto rel, digest_path(digest));
  return create_pending("decoded", root_ / "decoded" / rel);
}

std::uint64_t Cache::decoded_copy_limit() const {
  return DecodedCopies::share_of(blobs_ ? blobs_->max_bytes() : 0);
}

Result<void> Cache::commit_decoded(PendingFile& file, std::string_view digest, std::uint64_t bytes) const {
  const std::uint64_t share = decoded_copy_limit();
  DecodedCopies copies(root_);
  // Room among the copies first (the new one is not in place yet), then the file; the blob
  // cache then counts it with its chunks.
  copies.trim(share - std::min(share, bytes), digest);
  OCIFS_TRY(file.commit());
  if (blobs_) {
    if (auto trimmed = blobs_->enforce_budget(); !trimmed) return trimmed;
  }
  return util::success();
}

void Cache::touch_decoded(std::string_view digest) const { DecodedCopies(root_).touch(digest); }

}  // namespace ocifs::cache
