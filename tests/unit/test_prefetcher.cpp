// Prefetching after a mount is live: the plan (prefetch_plan: the first mount's files, eStargz
// landmarks, whole registry layers, capped at half the blob cache) and the Prefetcher that
// fetches it in pieces, yields to waiting reads, goes on past a failed range and stops with its
// owner. The blobs are fakes that record every prefetch; held with test::Gate, not timed.
#include <catch2/catch.hpp>

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "ocifs/image/content_reader.hpp"
#include "ocifs/image/prefetcher.hpp"
#include "ocifs/image/tree_builder.hpp"
#include "ocifs/layer/layer_scanner.hpp"
#include "sample_data.hpp"

using namespace ocifs;
using image::Prefetcher;
using test::Gate;

namespace {

constexpr std::uint64_t kMiB = 1u << 20;

// Every prefetch of every FakeBlob, in order, as "NAME:OFFSET+LENGTH".
struct CallLog {
  void add(std::string call) {
    std::lock_guard lock(mu);
    calls.push_back(std::move(call));
  }
  std::vector<std::string> get() {
    std::lock_guard lock(mu);
    return calls;
  }
  std::mutex mu;
  std::vector<std::string> calls;
};

// A blob as a registry layer is (not stable: prefetch() fetches), or a local one (stable).
class FakeBlob final : public io::BlobSource {
 public:
  FakeBlob(std::string name, std::uint64_t size, CallLog* log = nullptr, bool stable = false)
      : name_(std::move(name)), size_(size), log_(log), stable_(stable) {}
  std::uint64_t size() const override { return size_; }
  std::string describe() const override { return name_; }
  Result<std::size_t> read_at(std::uint64_t, std::span<std::byte> buf) const override { return buf.size(); }
  bool stable() const override { return stable_; }
  Result<void> prefetch(std::uint64_t offset, std::uint64_t length) const override {
    if (log_) log_->add(fmt::format("{}:{}+{}", name_, offset, length));
    if (on_prefetch) on_prefetch(offset);
    if (offset >= fail_from) return make_error(std::errc::io_error, "cannot fetch {} at {}: injected", name_, offset);
    return util::success();
  }
  bool fetching() const override {
    ++fetching_polls;
    return busy;
  }

  std::function<void(std::uint64_t offset)> on_prefetch;  // runs in every prefetch (may block)
  std::uint64_t fail_from = UINT64_MAX;                    // prefetches from here on fail
  std::atomic<bool> busy{false};                           // a read is waiting on this blob's link
  mutable std::atomic<int> fetching_polls{0};

 private:
  std::string name_;
  std::uint64_t size_;
  CallLog* log_;
  bool stable_;
};

// Until the prefetcher is done; false after a minute.
bool wait_done(const Prefetcher& p) {
  for (int i = 0; i < 6000 && !p.done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return p.done();
}

std::string piece(const std::string& name, std::uint64_t offset, std::uint64_t length) {
  return fmt::format("{}:{}+{}", name, offset, length);
}

}  // namespace

TEST_CASE("parse_prefetch_mode: none, landmark, all; anything else is refused naming it") {
  CHECK(*image::parse_prefetch_mode("none") == image::PrefetchMode::none);
  CHECK(*image::parse_prefetch_mode("landmark") == image::PrefetchMode::landmark);
  CHECK(*image::parse_prefetch_mode("all") == image::PrefetchMode::all);
  auto bad = image::parse_prefetch_mode("everything");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().code == std::errc::invalid_argument);
  CHECK_THAT(bad.error().message, Catch::Contains("'everything'"));
}

TEST_CASE("Prefetcher: the ranges in order, each in pieces of at most kPiece") {
  CallLog log;
  auto a = std::make_shared<FakeBlob>("a", 64 * kMiB, &log);
  auto b = std::make_shared<FakeBlob>("b", 1000, &log);
  Prefetcher p({{a, 8 * kMiB, 40 * kMiB}, {b, 100, 10}, {a, 0, 0}, {b, 0, Prefetcher::kPiece}});
  REQUIRE(wait_done(p));
  const auto k = Prefetcher::kPiece;
  CHECK(log.get() == std::vector<std::string>{piece("a", 8 * kMiB, k), piece("a", 8 * kMiB + k, k),
                                              piece("a", 8 * kMiB + 2 * k, 40 * kMiB - 2 * k), piece("b", 100, 10),
                                              piece("b", 0, k)});
  CHECK(p.failed_ranges() == 0);
}

TEST_CASE("Prefetcher: a failed piece ends its range; the ranges after it are still fetched") {
  CallLog log;
  auto a = std::make_shared<FakeBlob>("a", 64 * kMiB, &log);
  auto b = std::make_shared<FakeBlob>("b", 1000, &log);
  a->fail_from = Prefetcher::kPiece;  // the second piece of a fails
  Prefetcher p({{a, 0, 48 * kMiB}, {b, 0, 1000}});
  REQUIRE(wait_done(p));
  const auto k = Prefetcher::kPiece;
  CHECK(log.get() == std::vector<std::string>{piece("a", 0, k), piece("a", k, k), piece("b", 0, 1000)});
  CHECK(p.failed_ranges() == 1);
}

TEST_CASE("Prefetcher: no piece of a blob while a read waits on its link; it goes on once none does") {
  CallLog log;
  auto a = std::make_shared<FakeBlob>("a", 1000, &log);
  a->busy = true;
  Prefetcher p({{a, 0, 1000}});
  // It has looked at the blob (and seen a read waiting) a few times, and fetched nothing.
  for (int i = 0; i < 6000 && a->fetching_polls < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK(a->fetching_polls >= 3);
  CHECK(log.get().empty());
  CHECK_FALSE(p.done());
  a->busy = false;
  REQUIRE(wait_done(p));
  CHECK(log.get() == std::vector<std::string>{piece("a", 0, 1000)});
}

TEST_CASE("Prefetcher: its destructor ends the plan: the piece in flight completes, no other starts") {
  CallLog log;
  auto a = std::make_shared<FakeBlob>("a", 1u << 30, &log);
  Gate in_flight, finish;
  a->on_prefetch = [&](std::uint64_t) {
    a->busy = true;  // from now on a read "waits": no further piece could start by itself
    in_flight.open();
    finish.wait();
  };
  auto p = std::make_unique<Prefetcher>(std::vector<Prefetcher::Range>{{a, 0, 1u << 30}});  // 64 pieces
  REQUIRE(in_flight.wait());
  std::atomic<bool> destroyed{false};
  std::thread destroying([&] {
    p.reset();
    destroyed = true;
  });
  finish.open();
  destroying.join();
  CHECK(destroyed);
  CHECK(log.get() == std::vector<std::string>{piece("a", 0, Prefetcher::kPiece)});
}

TEST_CASE("Prefetcher: an empty plan is done at once") {
  Prefetcher p({});
  REQUIRE(wait_done(p));
  CHECK(p.failed_ranges() == 0);
}

namespace {

// A layer reader whose blob_ranges maps decoded offsets 1:1 onto its blob (what a plain tar is).
class OneToOneLayer final : public compress::SeekableReader {
 public:
  explicit OneToOneLayer(io::BlobSourcePtr blob) : blob_(std::move(blob)) {}
  std::uint64_t size() const override { return blob_->size(); }
  Result<std::size_t> read_at(std::uint64_t, std::span<std::byte> buf) const override { return buf.size(); }
  std::unique_ptr<compress::ReadCursor> open_cursor() const override { return nullptr; }
  void blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<compress::BlobRange>& out) const override {
    out.push_back({blob_, offset, length});
  }

 private:
  io::BlobSourcePtr blob_;
};

// Three layers: 0 from a registry (10 MiB), 1 local (stable, 5 MiB), 2 from a registry (3 MiB).
// Files: a (1000 bytes at 0 of layer 0), b (300 bytes at 5000 of layer 0), c (700 bytes at 64
// of layer 1), sparse s (stored: 10 + 20 bytes at 9000 of layer 0), and a directory, an empty file.
struct PlanFixture {
  std::vector<layer::LayerBlob> blobs;
  image::Tree tree;
  std::unique_ptr<image::ContentReader> content;

  PlanFixture() {
    const std::pair<const char*, std::pair<std::uint64_t, bool>> layers[] = {
        {"L0", {10 * kMiB, false}}, {"L1", {5 * kMiB, true}}, {"L2", {3 * kMiB, false}}};
    std::vector<compress::SeekableReaderPtr> readers;
    std::vector<std::string> names;
    for (const auto& [name, spec] : layers) {
      layer::LayerBlob blob;
      blob.blob = std::make_shared<FakeBlob>(name, spec.first, nullptr, spec.second);
      blob.name = name;
      readers.push_back(std::make_shared<OneToOneLayer>(blob.blob));
      names.push_back(name);
      blobs.push_back(std::move(blob));
    }
    auto file = [](std::string path, std::uint64_t size, std::uint64_t at, std::vector<layer::SparseExtent> sparse = {}) {
      layer::TarEntry e;
      e.path = std::move(path);
      e.kind = layer::EntryKind::regular;
      e.mode = 0644;
      e.size = size;
      e.data_offset = at;
      e.sparse = std::move(sparse);
      return e;
    };
    layer::LayerIndex l0, l1, l2;
    l0.add(file("a", 1000, 0));
    l0.add(file("b", 300, 5000));
    l0.add(file("s", 100000, 9000, {{0, 10}, {50000, 20}}));
    l0.add(file("empty", 0, 0));
    layer::TarEntry dir;
    dir.path = "dir";
    dir.kind = layer::EntryKind::directory;
    dir.mode = 0755;
    l0.add(dir);
    l1.add(file("c", 700, 64));
    image::TreeBuilder builder;
    REQUIRE(builder.apply_layer(0, l0, "L0"));
    REQUIRE(builder.apply_layer(1, l1, "L1"));
    REQUIRE(builder.apply_layer(2, l2, "L2"));
    tree = std::move(builder).build();
    content = std::make_unique<image::ContentReader>(tree, std::move(readers), std::move(names));
  }

  std::uint32_t inode(std::string_view path) const {
    auto i = tree.resolve(path);
    REQUIRE(i);
    return *i;
  }

  std::vector<std::string> plan(const std::vector<std::uint32_t>& record,
                                const std::vector<std::optional<std::uint64_t>>& landmarks, image::PrefetchMode mode,
                                std::uint64_t budget = 0) const {
    std::vector<std::string> out;
    for (const auto& r : image::prefetch_plan(tree, *content, record, {}, blobs, landmarks, mode, budget)) {
      out.push_back(piece(r.blob->describe(), r.offset, r.length));
    }
    return out;
  }
};

using Plan = std::vector<std::string>;
const std::vector<std::optional<std::uint64_t>> kNoLandmarks(3);

}  // namespace

TEST_CASE_METHOD(PlanFixture, "prefetch plan: the first mount's files first, in the order they were read") {
  // b, then a, then c (a local layer's file is planned too: its blob decides what a fetch costs),
  // the sparse file by its stored bytes; an inode number past the tree (an access record of
  // another build of the image) and files without data add nothing.
  const auto count = static_cast<std::uint32_t>(tree.inode_count());
  CHECK(plan({inode("b"), inode("a"), count, count + 5, inode("dir"), inode("empty"), inode("c"), inode("s")},
             kNoLandmarks, image::PrefetchMode::landmark) == Plan{"L0:5000+300", "L0:0+1000", "L1:64+700", "L0:9000+30"});
  CHECK(plan({}, kNoLandmarks, image::PrefetchMode::landmark).empty());
}

TEST_CASE_METHOD(PlanFixture, "prefetch plan: then the landmarks of registry layers, then (all) registry layers whole") {
  const std::vector<std::optional<std::uint64_t>> landmarks{4096, 8192, std::nullopt};
  // Layer 1 is local (stable): neither its landmark nor the layer itself is fetched.
  CHECK(plan({inode("a")}, landmarks, image::PrefetchMode::landmark) == Plan{"L0:0+1000", "L0:0+4096"});
  CHECK(plan({inode("a")}, landmarks, image::PrefetchMode::all) ==
        Plan{"L0:0+1000", "L0:0+4096", piece("L0", 0, 10 * kMiB), piece("L2", 0, 3 * kMiB)});
  CHECK(plan({}, kNoLandmarks, image::PrefetchMode::all) == Plan{piece("L0", 0, 10 * kMiB), piece("L2", 0, 3 * kMiB)});
}

TEST_CASE_METHOD(PlanFixture, "prefetch plan: at most half the blob cache budget, cut where it runs out") {
  const std::vector<std::uint32_t> record{inode("a"), inode("b")};  // 1000 + 300 bytes
  const std::vector<std::optional<std::uint64_t>> landmarks{4096, std::nullopt, std::nullopt};
  const auto mode = image::PrefetchMode::all;
  // No budget (0): no cap.
  CHECK(plan(record, landmarks, mode, 0).size() == 5);
  // Half of 2 * 1500: a, b, and 200 bytes of the landmark.
  CHECK(plan(record, landmarks, mode, 3000) == Plan{"L0:0+1000", "L0:5000+300", "L0:0+200"});
  // An odd budget rounds down: 1500.
  CHECK(plan(record, landmarks, mode, 3001) == Plan{"L0:0+1000", "L0:5000+300", "L0:0+200"});
  // Exactly at a range's end: that range whole, nothing after it (no empty range).
  CHECK(plan(record, landmarks, mode, 2600) == Plan{"L0:0+1000", "L0:5000+300"});
  CHECK(plan(record, landmarks, mode, 2000) == Plan{"L0:0+1000"});
  // Less than the first range: the first range, cut.
  CHECK(plan(record, landmarks, mode, 100) == Plan{"L0:0+50"});
  CHECK(plan(record, landmarks, mode, 1).empty());
  // Room for everything: unchanged.
  CHECK(plan(record, landmarks, mode, 1u << 30).size() == 5);
}

TEST_CASE_METHOD(PlanFixture, "prefetch plan: without a record, what shared indexes list as read first, by rank") {
  std::vector<std::vector<layer::ReadFirst>> read_first(3);
  read_first[0] = {{100, 50, 2}, {5000, 300, 0, 5100}};  // the second known to need only 100 blob bytes
  read_first[2] = {{0, 10, 1}};
  auto plan_of = [&](const std::vector<std::uint32_t>& record) {
    std::vector<std::string> out;
    for (const auto& r : image::prefetch_plan(tree, *content, record, read_first, blobs, kNoLandmarks,
                                              image::PrefetchMode::landmark, 0)) {
      out.push_back(piece(r.blob->describe(), r.offset, r.length));
    }
    return out;
  };
  CHECK(plan_of({}) == Plan{"L0:5000+100", "L2:0+10", "L0:100+50"});
  // This machine's own record wins: the ranges another machine read are not fetched.
  CHECK(plan_of({inode("c")}) == Plan{"L1:64+700"});
  // Ranges that touch are fetched as one.
  read_first[0] = {{0, 100, 0}, {100, 100, 1}, {150, 10, 2}, {400, 10, 3}};
  read_first[2].clear();
  CHECK(plan_of({}) == Plan{"L0:0+200", "L0:400+10"});
}
