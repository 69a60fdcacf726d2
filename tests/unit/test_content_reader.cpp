// ContentReader: file bytes from a layer's decoded stream, sparse files read as their extents with
// holes as zeros. The layer is an in-memory SeekableReader that records what it is asked for, so
// the tests see both the bytes and which stream ranges a read touched (none for a hole).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "ocifs/image/content_reader.hpp"
#include "ocifs/image/tree_builder.hpp"
#include "sample_data.hpp"

using namespace ocifs;
using layer::EntryKind;
using layer::SparseExtent;

namespace {

// A layer's decoded stream in memory. Each read returns at most `max_read` bytes (short reads
// exercise the reader's loop); reads are recorded as (stream offset, length asked).
class MemoryLayer final : public compress::SeekableReader {
 public:
  explicit MemoryLayer(std::string data) : data_(std::move(data)) {}

  std::uint64_t size() const override { return data_.size(); }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    {
      std::lock_guard lock(mu_);
      reads_.emplace_back(offset, buf.size());
    }
    if (fail) return make_error(std::errc::io_error, "cannot read test layer at offset {}: injected", offset);
    if (offset >= data_.size()) return std::size_t{0};
    std::size_t n = std::min({buf.size(), static_cast<std::size_t>(data_.size() - offset), max_read});
    std::memcpy(buf.data(), data_.data() + offset, n);
    return n;
  }
  std::unique_ptr<compress::ReadCursor> open_cursor() const override {
    struct Cursor final : compress::ReadCursor {
      const MemoryLayer& layer;
      explicit Cursor(const MemoryLayer& l) : layer(l) {}
      Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) override {
        ++layer.cursor_reads;
        return layer.read_at(offset, buf);
      }
    };
    return std::make_unique<Cursor>(*this);
  }
  void blob_ranges(std::uint64_t offset, std::uint64_t length, std::vector<compress::BlobRange>& out) const override {
    out.push_back({blob, offset, length});
  }

  std::vector<std::pair<std::uint64_t, std::size_t>> reads() const {
    std::lock_guard lock(mu_);
    return reads_;
  }
  void clear_reads() {
    std::lock_guard lock(mu_);
    reads_.clear();
  }

  std::size_t max_read = SIZE_MAX;
  bool fail = false;
  mutable int cursor_reads = 0;
  io::BlobSourcePtr blob = std::make_shared<io::MemorySource>("", "layer.blob");

 private:
  std::string data_;
  mutable std::mutex mu_;
  mutable std::vector<std::pair<std::uint64_t, std::size_t>> reads_;
};

layer::TarEntry regular(std::string path, std::uint64_t size, std::uint64_t data_offset,
                        std::vector<SparseExtent> sparse = {}) {
  layer::TarEntry e;
  e.path = std::move(path);
  e.kind = EntryKind::regular;
  e.mode = 0644;
  e.size = size;
  e.data_offset = data_offset;
  e.sparse = std::move(sparse);
  for (const auto& x : e.sparse) e.stored_size += x.length;
  if (e.sparse.empty()) e.stored_size = size;
  return e;
}

// The layer stream, a tree over it and a ContentReader, with each file's logical content.
//   sparse        20000 bytes: data [0,100), hole, data [4096,8192), hole, data [12000,20000)
//                 (the file ends inside an extent); its 12196 stored bytes at stream offset 1000
//   tail_hole     10000 bytes: data [100,150), then a hole to the end; stored at 20000
//   all_hole      5000 bytes, no data: one zero-length extent at the size (as GNU tar ends a map)
//   plain         3000 bytes, not sparse; stored at 30000
//   empty         0 bytes
//   dir           a directory
struct SparseImage {
  static constexpr std::uint64_t kSparseAt = 1000, kTailAt = 20000, kPlainAt = 30000;
  const std::vector<SparseExtent> sparse_map{{0, 100}, {4096, 4096}, {12000, 8000}};

  std::string stream = test::random_bytes(40000, 7);
  std::shared_ptr<MemoryLayer> layer = std::make_shared<MemoryLayer>(stream);
  image::Tree tree;
  std::unique_ptr<image::ContentReader> reader;

  SparseImage() {
    layer::LayerIndex index;
    index.add(regular("sparse", 20000, kSparseAt, sparse_map));
    index.add(regular("tail_hole", 10000, kTailAt, {{100, 50}}));
    index.add(regular("all_hole", 5000, 39000, {{5000, 0}}));
    index.add(regular("plain", 3000, kPlainAt));
    index.add(regular("empty", 0, 0));
    layer::TarEntry dir;
    dir.path = "dir";
    dir.kind = EntryKind::directory;
    dir.mode = 0755;
    index.add(dir);
    image::TreeBuilder builder;
    REQUIRE(builder.apply_layer(0, index, "layer 0"));
    tree = std::move(builder).build();
    reader = std::make_unique<image::ContentReader>(tree, std::vector<compress::SeekableReaderPtr>{layer},
                                                    std::vector<std::string>{"layer 0"});
  }

  std::uint32_t inode(std::string_view path) const {
    auto i = tree.resolve(path);
    REQUIRE(i);
    return *i;
  }

  // The file's bytes as a reader must see them: zeros, and the stored bytes at their extents.
  std::string expected(std::string_view path) const {
    const auto& n = tree.inode(inode(path));
    auto extents = tree.sparse(n);
    if (extents.empty()) return stream.substr(n.data_offset, n.size);
    std::string out(n.size, '\0');
    std::uint64_t stored = 0;
    for (const auto& x : extents) {
      out.replace(x.offset, x.length, stream.substr(n.data_offset + stored, x.length));
      stored += x.length;
    }
    return out;
  }

  Result<std::size_t> read_into(std::string_view path, std::uint64_t offset, std::string& out,
                                image::ContentReader::OpenFile* file = nullptr) const {
    return reader->read(inode(path), offset, std::as_writable_bytes(std::span(out)), file);
  }
  // The bytes read, or the test fails with the read's message.
  std::string read(std::string_view path, std::uint64_t offset, std::size_t length,
                   image::ContentReader::OpenFile* file = nullptr) const {
    std::string out(length, '?');
    auto n = read_into(path, offset, out, file);
    INFO(path << " at " << offset << " +" << length << ": " << (n ? std::string() : n.error().message));
    REQUIRE(n);
    out.resize(*n);
    return out;
  }
};

}  // namespace

TEST_CASE_METHOD(SparseImage, "sparse: a whole read is the extents' bytes with zeros in the holes") {
  auto want = expected("sparse");
  REQUIRE(want.size() == 20000);
  CHECK(want.substr(100, 3996) == std::string(3996, '\0'));  // the first hole
  CHECK(read("sparse", 0, 20000) == want);
  CHECK(read("sparse", 0, 50000) == want);  // short only at the end
  CHECK(read("tail_hole", 0, 10000) == expected("tail_hole"));
  CHECK(read("plain", 0, 3000) == stream.substr(kPlainAt, 3000));
}

TEST_CASE_METHOD(SparseImage, "sparse: every window across hole/data boundaries reads right") {
  const auto want = expected("sparse");
  // Around every boundary (extent starts and ends, both file ends), windows of many lengths.
  std::vector<std::uint64_t> edges{0, 100, 4096, 8192, 12000, 20000};
  for (auto short_reads : {SIZE_MAX, std::size_t{7}}) {
    layer->max_read = short_reads;  // the layer answers in pieces of 7 bytes: the loop goes on
    for (auto edge : edges) {
      for (std::int64_t delta : {-4097, -100, -1, 0, 1, 99}) {
        if (static_cast<std::int64_t>(edge) + delta < 0) continue;
        std::uint64_t offset = edge + delta;
        for (std::size_t length : {1, 2, 99, 100, 101, 3996, 4097, 8000, 20001}) {
          INFO("offset " << offset << " length " << length << " pieces " << short_reads);
          CHECK(read("sparse", offset, length) == test::expected_at(want, offset, length));
          layer->clear_reads();
        }
      }
    }
  }
}

TEST_CASE_METHOD(SparseImage, "sparse: a read across a boundary asks the layer for the data part only") {
  layer->clear_reads();
  // [4000, 4200): 96 bytes of hole, then the first 104 bytes of extent 1 (stored after extent 0's 100).
  CHECK(read("sparse", 4000, 200) == expected("sparse").substr(4000, 200));
  using Reads = std::vector<std::pair<std::uint64_t, std::size_t>>;
  CHECK(layer->reads() == Reads{{kSparseAt + 100, 104}});
  layer->clear_reads();
  // [8100, 12100): the end of extent 1, the hole, the start of extent 2.
  CHECK(read("sparse", 8100, 4000) == expected("sparse").substr(8100, 4000));
  CHECK(layer->reads() == Reads{{kSparseAt + 100 + 4004, 92}, {kSparseAt + 4196, 100}});
}

TEST_CASE_METHOD(SparseImage, "sparse: reads entirely in holes are zeros and never touch the layer") {
  layer->fail = true;  // any layer read would fail the read
  CHECK(read("sparse", 100, 3996) == std::string(3996, '\0'));
  CHECK(read("sparse", 9000, 10) == std::string(10, '\0'));
  CHECK(read("sparse", 8192, 3808) == std::string(3808, '\0'));  // exactly the second hole
  CHECK(read("tail_hole", 150, 20000) == std::string(9850, '\0'));  // the hole up to the end
  CHECK(layer->reads().empty());
  // A read that reaches data does fail, and is counted against the layer.
  std::string out(10, '\0');
  auto failed = read_into("sparse", 95, out);
  REQUIRE_FALSE(failed);
  CHECK_THAT(failed.error().message, Catch::Contains("injected"));
  CHECK(reader->failures(0).errors == 1);
}

TEST_CASE_METHOD(SparseImage, "sparse: at and past EOF, and the extent at the end") {
  CHECK(read("sparse", 20000, 100).empty());
  CHECK(read("sparse", 1u << 30, 100).empty());
  CHECK(read("sparse", 19990, 100) == expected("sparse").substr(19990));  // short: 10 bytes
  // The last byte is the last stored byte of the last extent.
  CHECK(read("sparse", 19999, 1) == stream.substr(kSparseAt + 12196 - 1, 1));
  CHECK(read("tail_hole", 9999, 5) == std::string(1, '\0'));
  CHECK(read("plain", 3000, 10).empty());
  CHECK(read("empty", 0, 10).empty());
}

TEST_CASE_METHOD(SparseImage, "sparse: a file with a size and no stored data reads as zeros") {
  layer->fail = true;
  CHECK(tree.inode(inode("all_hole")).size == 5000);
  CHECK(read("all_hole", 0, 8000) == std::string(5000, '\0'));
  CHECK(read("all_hole", 4999, 10) == std::string(1, '\0'));
  CHECK(layer->reads().empty());
}

TEST_CASE_METHOD(SparseImage, "sparse: an open file's cursor reads the same bytes") {
  auto file = reader->open(inode("sparse"));
  const auto want = expected("sparse");
  std::string got;
  for (std::uint64_t at = 0; at < want.size(); at += 1500) got += read("sparse", at, 1500, file.get());
  CHECK(got == want);
  CHECK(layer->cursor_reads > 0);
}

TEST_CASE_METHOD(SparseImage, "a layer stream that ends early or fails is an error naming the layer") {
  layer->max_read = SIZE_MAX;
  auto short_layer = std::make_shared<MemoryLayer>(stream.substr(0, kSparseAt + 150));  // extent 1 missing
  image::ContentReader cut(tree, {short_layer}, {"layer 0 (cut)"});
  std::string out(200, '\0');
  auto n = cut.read(inode("sparse"), 4000, std::as_writable_bytes(std::span(out)));
  REQUIRE_FALSE(n);
  CHECK(n.error().code == std::errc::io_error);
  CHECK_THAT(n.error().message, Catch::Contains("layer 0 (cut)") && Catch::Contains("ends early"));
  CHECK(cut.failures(0).errors == 1);
  CHECK(cut.failures(0).last_error == n.error().message);

  auto dir = reader->read(inode("dir"), 0, std::as_writable_bytes(std::span(out)));
  REQUIRE_FALSE(dir);
  CHECK(dir.error().code == std::errc::is_a_directory);
}

TEST_CASE_METHOD(SparseImage, "read_order: files in the order of their first read, each once") {
  read("plain", 0, 10);
  read("sparse", 100, 10);  // a hole: still a read of the file
  read("plain", 5, 10);
  read("sparse", 50000, 10);  // past EOF: nothing read, not noted again
  read("tail_hole", 20000, 1);  // past EOF of a file not read yet: not noted
  CHECK(reader->read_order() == std::vector<std::uint32_t>{inode("plain"), inode("sparse")});
}

TEST_CASE_METHOD(SparseImage, "blob_ranges: a sparse file's stored bytes, a plain file's size, nothing else") {
  std::vector<compress::BlobRange> ranges;
  reader->blob_ranges(inode("sparse"), ranges);
  reader->blob_ranges(inode("plain"), ranges);
  reader->blob_ranges(inode("empty"), ranges);
  reader->blob_ranges(inode("dir"), ranges);
  REQUIRE(ranges.size() == 2);
  CHECK(ranges[0].offset == kSparseAt);
  CHECK(ranges[0].length == 12196);
  CHECK(ranges[1].offset == kPlainAt);
  CHECK(ranges[1].length == 3000);
}
