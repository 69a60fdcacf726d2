// The header walk (layer/header_walk.hpp), the walked first open of an uncompressed registry
// layer (open_layer with FirstOpen::walk_uncompressed, OpenLayer::verify) and the sources it is
// built on (io/gated_source.hpp).
#include <archive.h>
#include <archive_entry.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "ocifs/cache/cache.hpp"
#include "ocifs/io/blob_source.hpp"
#include "ocifs/io/gated_source.hpp"
#include "ocifs/util/deadline.hpp"
#include "ocifs/layer/header_walk.hpp"
#include "ocifs/layer/layer_index.hpp"
#include "ocifs/layer/layer_scanner.hpp"
#include "ocifs/util/sha256.hpp"
#include "sample_data.hpp"
#include "temp_dir.hpp"

using namespace ocifs;
using namespace std::chrono_literals;
using ocifs::test::random_bytes;
using ocifs::test::TempDir;

namespace {

constexpr const char* kLayerName = "layer 1 (test)";
constexpr std::uint64_t MiB = 1u << 20;

la_ssize_t append_cb(struct archive*, void* data, const void* buf, size_t n) {
  static_cast<std::string*>(data)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

struct Member {
  std::string path;
  layer::EntryKind kind = layer::EntryKind::regular;
  std::string content;  // regular files
  std::string link;     // symlink / hardlink target
  std::vector<std::pair<std::string, std::string>> xattrs;
};

// filter: 0 none, 1 gzip. pax_restricted, as the layer scanner tests write.
std::string make_tar(const std::vector<Member>& members, int filter = 0) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  if (filter == 1) {
    REQUIRE(archive_write_add_filter_gzip(a) == ARCHIVE_OK);
    archive_write_set_bytes_in_last_block(a, 1);
  }
  REQUIRE(archive_write_open(a, &out, nullptr, append_cb, nullptr) == ARCHIVE_OK);
  for (const auto& m : members) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, m.path.c_str());
    archive_entry_set_mtime(e, 1700000000, 0);
    switch (m.kind) {
      case layer::EntryKind::directory:
        archive_entry_set_filetype(e, AE_IFDIR);
        archive_entry_set_perm(e, 0755);
        break;
      case layer::EntryKind::symlink:
        archive_entry_set_filetype(e, AE_IFLNK);
        archive_entry_set_perm(e, 0777);
        archive_entry_set_symlink(e, m.link.c_str());
        break;
      case layer::EntryKind::hardlink:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_hardlink(e, m.link.c_str());
        archive_entry_set_size(e, 0);
        break;
      default:
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, 0644);
        archive_entry_set_size(e, static_cast<la_int64_t>(m.content.size()));
        break;
    }
    for (const auto& [name, value] : m.xattrs) {
      archive_entry_xattr_add_entry(e, name.c_str(), value.data(), value.size());
    }
    REQUIRE(archive_write_header(a, e) == ARCHIVE_OK);
    if (!m.content.empty()) {
      REQUIRE(archive_write_data(a, m.content.data(), m.content.size()) ==
              static_cast<la_ssize_t>(m.content.size()));
    }
    archive_entry_free(e);
  }
  REQUIRE(archive_write_close(a) == ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

const std::string kBigPath = "data/big.bin";

// Small files, a 20 MiB file of random bytes, more small files, a symlink, a hardlink, dirs and
// xattrs.
std::vector<Member> sample_members() {
  return {
      {"etc", layer::EntryKind::directory, {}, {}, {}},
      {"etc/hostname", layer::EntryKind::regular, "box\n", {}, {}},
      {"etc/passwd", layer::EntryKind::regular, ocifs::test::make_data(3000, 1), {}, {}},
      {"usr/bin/tool",
       layer::EntryKind::regular,
       random_bytes(7000, 2),
       {},
       {{"user.note", std::string("hello\0world", 11)}, {"security.capability", std::string("\1\0\0\2 \0\0\0", 8)}}},
      {kBigPath, layer::EntryKind::regular, random_bytes(20 * MiB, 3), {}, {}},
      {"etc/after1", layer::EntryKind::regular, ocifs::test::make_data(700, 4), {}, {}},
      {"etc/after2", layer::EntryKind::regular, random_bytes(100000, 5), {}, {}},
      {"lib/link", layer::EntryKind::symlink, {}, "../etc/hostname", {}},
      {"etc/hard", layer::EntryKind::hardlink, {}, "etc/passwd", {}},
      {"var/empty", layer::EntryKind::directory, {}, {}, {}},
  };
}

std::string digest_of(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

struct Range {
  std::uint64_t offset, length;
};

// A blob over memory that records every read and discard; unstable by default (a registry
// blob). Its bytes can be swapped for others of the same size (the registry served other bytes)
// and a hook can run on each read.
class CountingSource final : public io::BlobSource {
 public:
  explicit CountingSource(std::string data, bool stable = false, std::string name = "layer.blob")
      : data_(std::move(data)), stable_(stable), name_(std::move(name)) {}

  std::uint64_t size() const override {
    std::lock_guard lock(mu_);
    return data_.size();
  }
  std::string describe() const override { return name_; }
  bool stable() const override { return stable_; }

  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    std::function<void(std::uint64_t)> hook;
    std::size_t n = 0;
    {
      std::lock_guard lock(mu_);
      if (offset < data_.size()) {
        n = data_.copy(reinterpret_cast<char*>(buf.data()), buf.size(), offset);
      }
      reads_.push_back({offset, n});
      hook = on_read_;
    }
    if (hook) hook(offset);
    return n;
  }

  bool discard(std::uint64_t offset, std::uint64_t length) const override {
    std::lock_guard lock(mu_);
    discards_.push_back({offset, length});
    return true;
  }

  void replace(std::string data) {
    std::lock_guard lock(mu_);
    REQUIRE(data.size() == data_.size());
    data_ = std::move(data);
  }
  void on_read(std::function<void(std::uint64_t)> hook) {
    std::lock_guard lock(mu_);
    on_read_ = std::move(hook);
  }
  std::vector<Range> reads() const {
    std::lock_guard lock(mu_);
    return reads_;
  }
  void clear_reads() {
    std::lock_guard lock(mu_);
    reads_.clear();
  }
  std::vector<Range> discards() const {
    std::lock_guard lock(mu_);
    return discards_;
  }

 private:
  mutable std::mutex mu_;
  std::string data_;
  bool stable_;
  std::string name_;
  mutable std::vector<Range> reads_;
  mutable std::vector<Range> discards_;
  std::function<void(std::uint64_t)> on_read_;
};

std::uint64_t bytes_read(const std::vector<Range>& reads) {
  std::uint64_t total = 0;
  for (const auto& r : reads) total += r.length;
  return total;
}

layer::LayerBlob layer_of(io::BlobSourcePtr blob, std::string digest) {
  return layer::LayerBlob{std::move(blob), std::move(digest), false, kLayerName, {}};
}

const layer::IndexEntry* find(const layer::LayerIndex& index, std::string_view path) {
  for (const auto& e : index.entries()) {
    if (index.path(e) == path) return &e;
  }
  return nullptr;
}

Result<std::string> read_range(const compress::SeekableReader& reader, std::uint64_t offset, std::size_t length) {
  std::string out(length, '\0');
  OCIFS_ASSIGN(std::size_t n, reader.read_at(offset, std::as_writable_bytes(std::span(out))));
  out.resize(n);
  return out;
}

std::string read_ok(const compress::SeekableReader& reader, std::uint64_t offset, std::size_t length) {
  auto got = read_range(reader, offset, length);
  INFO((got ? std::string() : got.error().message));
  REQUIRE(got);
  return *got;
}

// A read through `reader` on a thread of its own.
std::future<Result<std::string>> read_async(const layer::OpenLayer& open, std::uint64_t offset, std::size_t length) {
  auto reader = open.reader;
  return std::async(std::launch::async, [reader, offset, length] { return read_range(*reader, offset, length); });
}

// Calls verify with a stopped token when a test ends before calling it, so that no read waits
// for ever (a std::async future joins its thread).
struct VerifyGuard {
  const layer::OpenLayer& open;
  bool done = false;
  Result<void> run(std::stop_token stop) {
    done = true;
    return open.verify(std::move(stop));
  }
  ~VerifyGuard() {
    if (!done && open.verify) {
      std::stop_source stopped;
      stopped.request_stop();
      (void)open.verify(stopped.get_token());
    }
  }
};

}  // namespace

// A cache in a temporary directory, and the sample layer behind an unstable CountingSource.
struct SampleLayer {
  SampleLayer() { REQUIRE(cache); }

  TempDir dir;
  Result<cache::Cache> cache = cache::Cache::open(dir.path);
  const std::vector<Member> members = sample_members();
  const std::string tar = make_tar(members);
  const std::string digest = digest_of(tar);
  std::shared_ptr<CountingSource> source = std::make_shared<CountingSource>(tar);
};

TEST_CASE_METHOD(SampleLayer, "walk_tar_headers: the index of a scan from the headers alone") {
  REQUIRE(tar.size() > 20 * MiB);

  std::vector<std::uint64_t> progress;
  auto walked = layer::walk_tar_headers(layer_of(source, digest),
                                        [&](std::uint64_t n) { progress.push_back(n); });
  if (!walked) FAIL(walked.error().message);

  auto scanned = layer::scan_layer(
      layer_of(std::make_shared<io::MemorySource>(tar, "layer.blob"), digest), *cache);
  if (!scanned) FAIL(scanned.error().message);

  // The same entry tables as the verified scan.
  REQUIRE(walked->size() == members.size());
  CHECK(walked->size() == scanned->size());
  CHECK(walked->entries_digest() == scanned->entries_digest());
  for (std::size_t i = 0; i < members.size(); ++i) {
    const auto& e = walked->entries()[i];
    CHECK(walked->path(e) == members[i].path);
    CHECK(e.kind == members[i].kind);
    if (members[i].kind == layer::EntryKind::regular) {
      CHECK(e.size == members[i].content.size());
      // Data offsets point at the file's bytes.
      CHECK(tar.substr(e.data_offset, std::min<std::size_t>(e.size, 64)) == members[i].content.substr(0, 64));
    }
    if (!members[i].link.empty()) CHECK(walked->link_target(e) == members[i].link);
  }
  const auto* tool = find(*walked, "usr/bin/tool");
  REQUIRE(tool);
  bool saw_note = false;
  for (const auto& x : walked->xattrs(*tool)) {
    if (walked->xattr_name(x) == "user.note") {
      saw_note = true;
      CHECK(walked->xattr_value(x) == std::string_view("hello\0world", 11));
    }
  }
  CHECK(saw_note);

  // A plain-tar seek index over the whole blob, the layer's digest, no block digests.
  CHECK(walked->seek_index().encoding == compress::Encoding::tar);
  CHECK(walked->seek_index().compressed_size == tar.size());
  CHECK(walked->seek_index().decoded_size == tar.size());
  CHECK(walked->digest() == digest);
  CHECK(walked->blob_blocks().digests.empty());
  // The scan's index has them, and entries_digest ignores them.
  CHECK_FALSE(scanned->blob_blocks().digests.empty());

  // Only windows around the headers were read, never the 20 MiB file's interior.
  const auto* big = find(*walked, kBigPath);
  REQUIRE(big);
  REQUIRE(big->size == 20 * MiB);
  const std::uint64_t interior_start = big->data_offset + 2 * MiB;
  const std::uint64_t interior_end = big->data_offset + big->size - 2 * MiB;
  const auto reads = source->reads();
  REQUIRE_FALSE(reads.empty());
  CHECK(reads.front().offset == 0);
  CHECK(bytes_read(reads) < tar.size() / 4);
  std::uint64_t last_end = 0;
  for (const auto& r : reads) {
    INFO("read [" << r.offset << ", " << r.offset + r.length << ")");
    CHECK((r.offset + r.length <= interior_start || r.offset >= interior_end));
    // Windows: at most kMaxWindow (plus alignment), ending on kWindowAlign or the blob's end,
    // read once each, in order.
    CHECK(r.length > 0);
    CHECK(r.length <= layer::kMaxWindow + layer::kWindowAlign);
    CHECK(((r.offset + r.length) % layer::kWindowAlign == 0 || r.offset + r.length == tar.size()));
    CHECK(r.offset >= last_end);
    last_end = r.offset + r.length;
  }
  // The walk had to read the headers after the big file.
  const auto* after2 = find(*walked, "etc/after2");
  REQUIRE(after2);
  CHECK(last_end > after2->data_offset);

  // Progress: the walk's position, never going back, never past the blob.
  REQUIRE_FALSE(progress.empty());
  for (std::size_t i = 1; i < progress.size(); ++i) CHECK(progress[i] >= progress[i - 1]);
  CHECK(progress.back() <= tar.size());
  CHECK(progress.back() == last_end);
}

TEST_CASE("walk_tar_headers: a run of headers is read in growing windows") {
  // 24000 empty files: 12 MiB of headers (and nothing else) read on contiguously.
  std::vector<Member> members;
  for (int i = 0; i < 24000; ++i) members.push_back({fmt::format("d/f{:05}", i), layer::EntryKind::regular, {}, {}, {}});
  const std::string tar = make_tar(members);
  REQUIRE(tar.size() > 11 * MiB);
  auto source = std::make_shared<CountingSource>(tar);
  auto walked = layer::walk_tar_headers(layer_of(source, digest_of(tar)));
  if (!walked) FAIL(walked.error().message);
  CHECK(walked->size() == members.size());

  const auto reads = source->reads();
  // Every byte read once, in windows that double up to kMaxWindow.
  CHECK(bytes_read(reads) == tar.size());
  REQUIRE(reads.size() >= 3);
  for (std::size_t i = 1; i + 1 < reads.size(); ++i) {
    INFO("read " << i);
    CHECK(reads[i].offset == reads[i - 1].offset + reads[i - 1].length);
    CHECK(reads[i].length == std::min(2 * reads[i - 1].length, layer::kMaxWindow));
  }
  CHECK(reads.front().length >= layer::kMinWindow);
  CHECK(reads.size() <= 4);  // 12 MiB in 1 + 2 + 4 + 8 MiB (or 2 + 4 + 8) at most
}

// A small file whose data runs past the end of a window is not a skip: the window still grows.
TEST_CASE("walk_tar_headers: small files with data are read in growing windows") {
  std::vector<Member> members;
  for (int i = 0; i < 3000; ++i) {
    members.push_back({fmt::format("d/f{:05}", i), layer::EntryKind::regular, std::string(4000, 'x'), {}, {}});
  }
  const std::string tar = make_tar(members);
  REQUIRE(tar.size() > 12 * MiB);
  auto source = std::make_shared<CountingSource>(tar);
  auto walked = layer::walk_tar_headers(layer_of(source, digest_of(tar)));
  if (!walked) FAIL(walked.error().message);
  const auto reads = source->reads();
  std::string lengths;
  for (const auto& r : reads) lengths += std::to_string(r.length / 1024) + " KiB, ";
  INFO("window lengths: " << lengths);
  CHECK(reads.size() <= 5);  // 13.5 MiB: 2 + 4 + 8 MiB
}

TEST_CASE("walk_tar_headers: a truncated tar is an error naming the layer") {
  const auto members = sample_members();
  const std::string tar = make_tar(members);
  auto full = layer::walk_tar_headers(layer_of(std::make_shared<io::MemorySource>(tar, "m"), digest_of(tar)));
  REQUIRE(full);
  const auto* big = find(*full, kBigPath);
  const auto* after1 = find(*full, "etc/after1");
  REQUIRE(big);
  REQUIRE(after1);
  REQUIRE(after1->data_offset >= big->data_offset + big->size + 512);

  std::uint64_t cut = 0;
  std::string what;
  SECTION("inside the big file's data") {
    cut = big->data_offset + 5 * MiB;
    what = kBigPath;
  }
  SECTION("inside a header after the big file") {
    cut = after1->data_offset - 300;  // the ustar header of etc/after1
    what = "header";
  }
  SECTION("inside a header in the first window") {
    const auto* passwd = find(*full, "etc/passwd");
    REQUIRE(passwd);
    cut = passwd->data_offset - 100;
    what = "header";
  }
  const std::string truncated = tar.substr(0, cut);
  auto source = std::make_shared<CountingSource>(truncated);
  auto walked = layer::walk_tar_headers(layer_of(source, digest_of(truncated)));
  REQUIRE_FALSE(walked);
  CHECK(walked.error().code == std::errc::io_error);
  CHECK_THAT(walked.error().message, Catch::Contains(kLayerName) && Catch::Contains(what));
  for (const auto& r : source->reads()) CHECK(r.offset + r.length <= truncated.size());

  // open_layer's walk path reports it too (and the walk was not replaced by a scan).
  TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  auto opened = layer::open_layer(layer_of(source, digest_of(truncated)), *cache, {}, nullptr,
                                  layer::FirstOpen::walk_uncompressed);
  REQUIRE_FALSE(opened);
  CHECK_THAT(opened.error().message, Catch::Contains(kLayerName));
  CHECK_FALSE(cache->has_index(digest_of(truncated)));
}

TEST_CASE_METHOD(SampleLayer, "open_layer walk_uncompressed: reads wait for verify") {
  auto blob = layer_of(source, digest);

  std::uint64_t last_progress = 0;
  auto opened = layer::open_layer(blob, *cache, [&](std::uint64_t n) { last_progress = n; }, nullptr,
                                  layer::FirstOpen::walk_uncompressed);
  if (!opened) FAIL(opened.error().message);
  CHECK_FALSE(opened->from_cache);
  REQUIRE(opened->verify);
  VerifyGuard guard{*opened};
  CHECK(last_progress > 0);
  CHECK(opened->index->blob_blocks().digests.empty());  // walked, not scanned
  REQUIRE(opened->index->size() == members.size());
  CHECK(bytes_read(source->reads()) < tar.size() / 4);  // the walk, not a scan
  CHECK_FALSE(cache->has_index(digest));                // nothing stored before verify

  const auto* passwd = find(*opened->index, "etc/passwd");
  const auto* big = find(*opened->index, kBigPath);
  REQUIRE(passwd);
  REQUIRE(big);

  const auto reads_before = source->reads().size();
  auto pending = read_async(*opened, passwd->data_offset, passwd->size);
  CHECK(pending.wait_for(200ms) == std::future_status::timeout);
  CHECK(source->reads().size() == reads_before);  // the waiting read did not touch the blob

  auto verified = guard.run(std::stop_token{});
  if (!verified) FAIL(verified.error().message);
  CHECK(pending.wait_for(10s) == std::future_status::ready);
  auto got = pending.get();
  REQUIRE(got);
  CHECK(*got == members[2].content);

  // The whole blob was read by the verification.
  CHECK(bytes_read(source->reads()) >= tar.size());
  CHECK(source->discards().empty());
  CHECK(cache->has_index(digest));

  // Reads now go through at once, checked against the verified block digests.
  CHECK(read_ok(*opened->reader, big->data_offset + 10 * MiB + 7, 100000) ==
        members[4].content.substr(10 * MiB + 7, 100000));
  CHECK(read_ok(*opened->reader, 0, 512) == tar.substr(0, 512));
  CHECK(read_ok(*opened->reader, tar.size() - 10, 100) == tar.substr(tar.size() - 10));

  // The stored index is the verified one: the next open loads it, with nothing to verify.
  source->clear_reads();
  auto second = layer::open_layer(blob, *cache, {}, nullptr, layer::FirstOpen::walk_uncompressed);
  if (!second) FAIL(second.error().message);
  CHECK(second->from_cache);
  CHECK_FALSE(second->verify);
  CHECK(second->index->entries_digest() == opened->index->entries_digest());
  CHECK_FALSE(second->index->blob_blocks().digests.empty());
  CHECK(source->reads().empty());
  CHECK(read_ok(*second->reader, passwd->data_offset, passwd->size) == members[2].content);
}

TEST_CASE_METHOD(SampleLayer, "open_layer walk_uncompressed: a wrong digest fails verify and the reads") {
  const std::string wrong = digest_of("something else");

  auto opened = layer::open_layer(layer_of(source, wrong), *cache, {}, nullptr, layer::FirstOpen::walk_uncompressed);
  if (!opened) FAIL(opened.error().message);  // the walk checks no digest
  REQUIRE(opened->verify);
  VerifyGuard guard{*opened};
  const auto* hostname = find(*opened->index, "etc/hostname");
  REQUIRE(hostname);

  auto pending = read_async(*opened, hostname->data_offset, hostname->size);
  CHECK(pending.wait_for(200ms) == std::future_status::timeout);

  auto verified = guard.run(std::stop_token{});
  REQUIRE_FALSE(verified);
  CHECK(verified.error().code == std::errc::io_error);
  CHECK(verified.error().message ==
        "cannot verify layer 1 (test): digest " + digest_of(tar) + " does not match " + wrong);

  // The waiting read and every later one get that error.
  CHECK(pending.wait_for(10s) == std::future_status::ready);
  auto got = pending.get();
  REQUIRE_FALSE(got);
  CHECK(got.error().message == verified.error().message);
  auto later = read_range(*opened->reader, 0, 100);
  REQUIRE_FALSE(later);
  CHECK(later.error().message == verified.error().message);

  // The bad bytes are dropped from the blob cache, nothing is stored.
  const auto discards = source->discards();
  REQUIRE(discards.size() == 1);
  CHECK(discards[0].offset == 0);
  CHECK(discards[0].length == tar.size());
  CHECK_FALSE(cache->has_index(wrong));
}

TEST_CASE("open_layer walk_uncompressed: verify fails when the scan finds other entries") {
  TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  // Two tars of the same size that differ in one name.
  auto members_a = sample_members();
  auto members_b = members_a;
  members_b[1].path = "etc/hostnamf";
  const std::string tar_a = make_tar(members_a);
  const std::string tar_b = make_tar(members_b);
  REQUIRE(tar_a.size() == tar_b.size());
  REQUIRE(tar_a != tar_b);
  const std::string digest = digest_of(tar_b);

  // The walk sees tar A; the verification (and the digest) tar B.
  auto source = std::make_shared<CountingSource>(tar_a);
  auto opened = layer::open_layer(layer_of(source, digest), *cache, {}, nullptr, layer::FirstOpen::walk_uncompressed);
  if (!opened) FAIL(opened.error().message);
  REQUIRE(opened->verify);
  VerifyGuard guard{*opened};
  CHECK(find(*opened->index, "etc/hostname"));
  CHECK_FALSE(find(*opened->index, "etc/hostnamf"));
  source->replace(tar_b);

  auto verified = guard.run(std::stop_token{});
  REQUIRE_FALSE(verified);
  CHECK(verified.error().code == std::errc::io_error);
  CHECK_THAT(verified.error().message,
             Catch::Contains(kLayerName) && Catch::Contains("does not hold the entries its tar headers showed"));

  auto read = read_range(*opened->reader, 0, 100);
  REQUIRE_FALSE(read);
  CHECK(read.error().message == verified.error().message);

  // The blob itself matched its digest: nothing discarded; the verified (B) index is stored, so
  // the next mount shows the layer as it is.
  CHECK(source->discards().empty());
  CHECK(cache->has_index(digest));
  auto again = layer::open_layer(layer_of(source, digest), *cache, {}, nullptr, layer::FirstOpen::walk_uncompressed);
  REQUIRE(again);
  CHECK(again->from_cache);
  CHECK(find(*again->index, "etc/hostnamf"));
  CHECK_FALSE(find(*again->index, "etc/hostname"));
}

TEST_CASE_METHOD(SampleLayer, "open_layer walk_uncompressed: a stopped verify") {
  auto opened = layer::open_layer(layer_of(source, digest), *cache, {}, nullptr, layer::FirstOpen::walk_uncompressed);
  if (!opened) FAIL(opened.error().message);
  REQUIRE(opened->verify);
  VerifyGuard guard{*opened};
  const auto* passwd = find(*opened->index, "etc/passwd");
  REQUIRE(passwd);

  std::stop_source stop;
  std::uint64_t min_read = 0;  // by the verification before it stopped
  SECTION("stopped before it starts") {
    stop.request_stop();
    source->clear_reads();
  }
  SECTION("stopped half-way through the blob") {
    source->clear_reads();
    source->on_read([&stop](std::uint64_t offset) {
      if (offset >= 4 * MiB) stop.request_stop();
    });
    min_read = 4 * MiB;
  }
  auto pending = read_async(*opened, passwd->data_offset, passwd->size);
  CHECK(pending.wait_for(100ms) == std::future_status::timeout);

  auto verified = guard.run(stop.get_token());
  REQUIRE_FALSE(verified);
  CHECK(verified.error().code == std::errc::operation_canceled);
  CHECK(bytes_read(source->reads()) < tar.size());  // it did not read on to the end
  CHECK(bytes_read(source->reads()) >= min_read);
  if (min_read == 0) CHECK(source->reads().empty());

  CHECK(pending.wait_for(10s) == std::future_status::ready);
  auto got = pending.get();
  REQUIRE_FALSE(got);
  CHECK(got.error().code == std::errc::operation_canceled);
  auto later = read_range(*opened->reader, passwd->data_offset, passwd->size);
  REQUIRE_FALSE(later);
  CHECK(later.error().code == std::errc::operation_canceled);

  // The cached bytes were not found bad: nothing discarded, nothing stored.
  CHECK(source->discards().empty());
  CHECK_FALSE(cache->has_index(digest));
}

TEST_CASE("open_layer walk_uncompressed: other layers are scanned") {
  TempDir dir;
  auto cache = cache::Cache::open(dir.path);
  REQUIRE(cache);
  std::vector<Member> members = {{"a", layer::EntryKind::regular, random_bytes(3 * MiB, 7), {}, {}},
                                 {"b/c", layer::EntryKind::regular, "see\n", {}, {}}};

  auto check_scanned = [&](const layer::LayerBlob& blob, const CountingSource* counting) {
    auto opened = layer::open_layer(blob, *cache, {}, nullptr, layer::FirstOpen::walk_uncompressed);
    if (!opened) FAIL(opened.error().message);
    CHECK_FALSE(opened->from_cache);
    CHECK_FALSE(opened->verify);
    CHECK_FALSE(opened->index->blob_blocks().digests.empty());  // a verified scan's index
    CHECK(cache->has_index(blob.digest));
    if (counting) CHECK(bytes_read(counting->reads()) >= blob.blob->size());
    REQUIRE(opened->index->size() == members.size());
    for (std::size_t i = 0; i < members.size(); ++i) {
      const auto& e = opened->index->entries()[i];
      CHECK(opened->index->path(e) == members[i].path);
      CHECK(read_ok(*opened->reader, e.data_offset, e.size) == members[i].content);
    }
  };

  SECTION("gzip, unstable") {
    const std::string gz = make_tar(members, 1);
    auto source = std::make_shared<CountingSource>(gz);
    auto blob = layer_of(source, digest_of(gz));
    check_scanned(blob, source.get());
  }
  SECTION("plain tar, stable") {
    const std::string tar = make_tar(members);
    auto source = std::make_shared<CountingSource>(tar, /*stable=*/true);
    check_scanned(layer_of(source, digest_of(tar)), source.get());
  }
  SECTION("plain tar, stable MemorySource") {
    const std::string tar = make_tar(members);
    check_scanned(layer_of(std::make_shared<io::MemorySource>(tar, "layer.blob"), digest_of(tar)), nullptr);
  }
  SECTION("plain tar, unstable, FirstOpen::scan") {
    const std::string tar = make_tar(members);
    auto source = std::make_shared<CountingSource>(tar);
    auto blob = layer_of(source, digest_of(tar));
    auto opened = layer::open_layer(blob, *cache, {}, nullptr, layer::FirstOpen::scan);
    REQUIRE(opened);
    CHECK_FALSE(opened->verify);
    CHECK(cache->has_index(blob.digest));
  }
}

TEST_CASE("GatedSource: reads wait for open or fail") {
  const std::string data = random_bytes(5000, 9);
  const std::string other = random_bytes(5000, 10);
  io::GatedSource gate(data.size(), "gated.blob");
  CHECK(gate.size() == data.size());
  CHECK(gate.describe() == "gated.blob");
  CHECK_FALSE(gate.stable());
  CHECK_FALSE(gate.is_open());
  CHECK_FALSE(gate.discard(0, 10));  // nothing to drop yet

  auto read = [&gate](std::uint64_t offset, std::size_t length) {
    return std::async(std::launch::async, [&gate, offset, length]() -> Result<std::string> {
      std::string out(length, '\0');
      OCIFS_ASSIGN(std::size_t n, gate.read_at(offset, std::as_writable_bytes(std::span(out))));
      out.resize(n);
      return out;
    });
  };

  SECTION("open wakes the waiting reads; later open and fail are ignored") {
    auto first = read(100, 1000);
    auto second = read(4900, 1000);
    CHECK(first.wait_for(200ms) == std::future_status::timeout);
    auto inner = std::make_shared<CountingSource>(data, true, "inner.blob");
    gate.open(inner);
    CHECK(gate.is_open());
    REQUIRE(first.wait_for(10s) == std::future_status::ready);
    auto a = first.get();
    auto b = second.get();
    REQUIRE(a);
    REQUIRE(b);
    CHECK(*a == data.substr(100, 1000));
    CHECK(*b == data.substr(4900));  // short at the end

    gate.open(std::make_shared<io::MemorySource>(other, "other"));
    gate.fail(make_error(std::errc::io_error, "too late"));
    CHECK(gate.is_open());
    CHECK(read(0, 50).get().value() == data.substr(0, 50));
    CHECK(gate.discard(10, 20));
    REQUIRE(inner->discards().size() == 1);
    CHECK(inner->discards()[0].offset == 10);
    CHECK(inner->discards()[0].length == 20);
  }
  SECTION("fail wakes the waiting reads with the error; later open and fail are ignored") {
    auto waiting = read(0, 10);
    CHECK(waiting.wait_for(200ms) == std::future_status::timeout);
    gate.fail(make_error(std::errc::io_error, "cannot verify gated.blob: boom"));
    CHECK_FALSE(gate.is_open());
    REQUIRE(waiting.wait_for(10s) == std::future_status::ready);
    auto got = waiting.get();
    REQUIRE_FALSE(got);
    CHECK(got.error().code == std::errc::io_error);
    CHECK(got.error().message == "cannot verify gated.blob: boom");

    gate.open(std::make_shared<io::MemorySource>(data, "late"));
    gate.fail(make_error(std::errc::operation_canceled, "other"));
    CHECK_FALSE(gate.is_open());
    auto later = read(0, 10).get();
    REQUIRE_FALSE(later);
    CHECK(later.error().message == "cannot verify gated.blob: boom");
    CHECK_FALSE(gate.discard(0, 10));
  }
}

TEST_CASE_METHOD(SampleLayer, "open_layer walk_uncompressed: an exception in verify fails the layer, not the process") {
  auto opened =
      layer::open_layer(layer_of(source, digest_of(tar)), *cache, {}, nullptr, layer::FirstOpen::walk_uncompressed);
  if (!opened) FAIL(opened.error().message);
  REQUIRE(opened->verify);
  VerifyGuard guard{*opened};
  source->on_read([](std::uint64_t) { throw std::runtime_error("a bug under the verification"); });
  auto verified = guard.run(std::stop_token{});  // on this thread: an escape would end the test binary
  REQUIRE_FALSE(verified);
  CHECK_THAT(verified.error().message, Catch::Contains("a bug under the verification"));
  source->on_read({});
  auto later = read_range(*opened->reader, 0, 100);  // the gate failed with it: no wait, no bytes
  REQUIRE_FALSE(later);
  CHECK(later.error().message == verified.error().message);
  CHECK_FALSE(cache->has_index(digest_of(tar)));
}

TEST_CASE("GatedSource: a read waits at most until its thread's deadline") {
  const std::string data = random_bytes(5000, 12);
  io::GatedSource gate(data.size(), "gated.blob");
  std::string out(100, '\0');
  const auto deadline = util::Clock::now() + 300ms;
  Result<std::size_t> n = std::size_t{0};
  {
    util::DeadlineScope scope(deadline);
    n = gate.read_at(0, std::as_writable_bytes(std::span(out)));
  }
  REQUIRE_FALSE(n);
  CHECK(n.error().code == std::errc::timed_out);
  CHECK_THAT(n.error().message, Catch::Contains("gated.blob") && Catch::Contains("verified"));
  CHECK(util::Clock::now() >= deadline);  // it waited for its deadline, not less
  // Once open, the same read with a deadline goes through.
  gate.open(std::make_shared<io::MemorySource>(data, "inner"));
  util::DeadlineScope scope(util::Clock::now() + 30s);  // far away: an open gate does not wait
  n = gate.read_at(0, std::as_writable_bytes(std::span(out)));
  REQUIRE(n);
  CHECK(out == data.substr(0, 100));
}

TEST_CASE("StoppableSource: reads fail once a stop is requested") {
  const std::string data = random_bytes(3000, 11);
  auto inner = std::make_shared<CountingSource>(data, false, "inner.blob");
  std::stop_source stop;
  io::StoppableSource source(inner, stop.get_token());
  CHECK(source.size() == data.size());
  CHECK(source.describe() == "inner.blob");
  CHECK_FALSE(source.stable());
  CHECK(io::StoppableSource(std::make_shared<io::MemorySource>(data, "m"), stop.get_token()).stable());

  std::string buf(100, '\0');
  auto n = source.read_at(50, std::as_writable_bytes(std::span(buf)));
  REQUIRE(n);
  CHECK(*n == 100);
  CHECK(buf == data.substr(50, 100));

  stop.request_stop();
  auto stopped = source.read_at(50, std::as_writable_bytes(std::span(buf)));
  REQUIRE_FALSE(stopped);
  CHECK(stopped.error().code == std::errc::operation_canceled);
  CHECK_THAT(stopped.error().message, Catch::Contains("inner.blob"));
  CHECK(inner->reads().size() == 1);  // the stopped read never reached the blob

  CHECK(source.discard(0, 3000));  // still forwarded
  REQUIRE(inner->discards().size() == 1);
  CHECK(inner->discards()[0].length == 3000);
}
