// The shared index blob. All integers little-endian, no padding:
//
//   offset  size  field
//   0       8     magic "OCIFSSHI"
//   8       4     u32 format version (kSharedIndexVersion)
//   12      4     u32 reserved, 0
//   16      8     u64 H: size of the compressed head
//   24      8     u64 U: its decoded size (at most kMaxHeadBytes)
//   32      H     one zstd frame holding LayerIndex::serialize() of the layer, its seek index cut
//                 to the checkpoints kept, and each gzip state (but at member starts) replaced
//                 by a 44-byte reference: u64 offset into the states, u32 size, 32-byte sha256
//   32+H    …     the states: the packed inflate states (GzipCheckpoint::state) back to back
//
// The head is [0, 32+H): its size and sha256 are the blob descriptor's annotations, so a reader
// fetches it with one range request and checks it before parsing a byte.
#include "ocifs/layer/shared_index.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "ocifs/util/sha256.hpp"

namespace ocifs::layer {

namespace {

constexpr std::string_view kMagic = "OCIFSSHI";
constexpr std::size_t kPrefixSize = 32;
constexpr std::size_t kStateRefSize = 44;
// A head holds a LayerIndex, which the limits bound (2 Mi entries of 53 bytes, 64 MiB of names,
// block digests): 512 MiB is far above any index they allow and keeps a forged size from
// allocating more.
constexpr std::uint64_t kMaxHeadBytes = 512u << 20;
// As SeekIndex's bound on a packed state.
constexpr std::uint32_t kMaxStateSize = 128u << 10;
// Heads of real layers (entries, names) compress ~4:1 at this level, at ~60 MB/s.
constexpr int kHeadCompressionLevel = 12;

void put(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

std::uint64_t get(std::string_view in, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= std::uint64_t{static_cast<unsigned char>(in[at + i])} << (8 * i);
  return v;
}

Error bad_index(std::string_view describe, std::string_view why) {
  return make_error(std::errc::invalid_argument, "cannot use the shared index {}: {}", describe, why);
}

// Where a checkpoint's state is in the blob.
struct StateRef {
  std::uint64_t offset = 0;
  std::uint32_t size = 0;
  std::array<std::uint8_t, 32> sha256{};
};

// The states of a shared index, fetched by range the first time a checkpoint is used, checked,
// and kept (a few dozen KiB per 4 MiB of layer).
class FetchedStates final : public compress::CheckpointStates {
 public:
  FetchedStates(io::BlobSourcePtr blob, std::vector<StateRef> refs)
      : blob_(std::move(blob)), refs_(std::move(refs)), states_(refs_.size()) {}

  Result<std::shared_ptr<const std::string>> state(std::size_t point) const override {
    if (point >= refs_.size() || refs_[point].size == 0) {
      return make_error(std::errc::io_error, "{}: checkpoint {} has no state", blob_->describe(), point);
    }
    {
      std::lock_guard lock(mutex_);
      if (states_[point]) return states_[point];
    }
    // Fetched unlocked: two readers of one new span may both fetch it, which is rare and harmless.
    const StateRef& ref = refs_[point];
    auto bytes = std::make_shared<std::string>(ref.size, '\0');
    if (auto read = blob_->read_exact(ref.offset, std::as_writable_bytes(std::span(*bytes))); !read) {
      return Error{std::errc::io_error, fmt::format("cannot fetch checkpoint {} of the shared index {}: {}",
                                                    point, blob_->describe(), read.error().message)};
    }
    util::Sha256 sum;
    sum.update(*bytes);
    if (sum.digest() != ref.sha256) {
      return make_error(
          std::errc::io_error,
          "checkpoint {} of the shared index {} (offset {}, {} bytes) does not match the digest its "
          "head records",
          point, blob_->describe(), ref.offset, ref.size);
    }
    std::lock_guard lock(mutex_);
    states_[point] = std::move(bytes);
    return states_[point];
  }

 private:
  io::BlobSourcePtr blob_;
  std::vector<StateRef> refs_;
  mutable std::mutex mutex_;  // guards states_
  mutable std::vector<std::shared_ptr<const std::string>> states_;
};

}  // namespace

namespace {

// The shared blob with checkpoints every `spacing` decoded bytes; `index` keeps its own.
Result<SharedIndexBlob> build_spaced(const LayerIndex& index, std::uint64_t spacing);

}  // namespace

Result<SharedIndexBlob> build_shared_index(const LayerIndex& index, const SharedIndexOptions& options) {
  if (index.seek_index().zstd_spilled) {
    return make_error(std::errc::not_supported,
                      "cannot share the index of {}: its zstd frames are read from a decoded copy, which "
                      "another machine would have to make by reading the whole layer",
                      index.digest());
  }
  if (options.checkpoint_spacing != 0) {
    return build_spaced(index, std::clamp(options.checkpoint_spacing, kMinCheckpointSpacing, kMaxCheckpointSpacing));
  }
  const auto budget = static_cast<std::uint64_t>(options.max_share * static_cast<double>(index.seek_index().compressed_size));
  for (std::uint64_t spacing = kMinCheckpointSpacing;; spacing *= 2) {
    OCIFS_ASSIGN(auto blob, build_spaced(index, spacing));
    if (blob.bytes.size() <= budget || spacing >= kMaxCheckpointSpacing) return blob;
  }
}

namespace {

Result<SharedIndexBlob> build_spaced(const LayerIndex& original, std::uint64_t spacing) {
  LayerIndex index = original;
  auto& seek = index.seek_index();
  SharedIndexBlob out;
  out.spacing = spacing;
  std::string states;
  std::vector<compress::GzipCheckpoint> kept;
  for (auto& point : seek.gzip_points) {
    if (!kept.empty() && !point.member_start && point.decoded_offset - kept.back().decoded_offset < spacing) {
      continue;
    }
    if (!point.member_start) {
      if (point.state.empty()) {
        return make_error(std::errc::invalid_argument,
                          "cannot share the index of {}: checkpoint at decoded offset {} has no state",
                          index.digest(), point.decoded_offset);
      }
      std::string ref;
      put(ref, states.size(), 8);
      put(ref, point.state.size(), 4);
      util::Sha256 sum;
      sum.update(point.state);
      auto digest = sum.digest();
      ref.append(reinterpret_cast<const char*>(digest.data()), digest.size());
      states += point.state;
      point.state = std::move(ref);
    }
    kept.push_back(std::move(point));
  }
  seek.gzip_points = std::move(kept);
  out.checkpoints = seek.gzip_points.size();
  out.states_bytes = states.size();

  const std::string payload = index.serialize();
  std::string head(ZSTD_compressBound(payload.size()), '\0');
  const std::size_t packed =
      ZSTD_compress(head.data(), head.size(), payload.data(), payload.size(), kHeadCompressionLevel);
  if (ZSTD_isError(packed)) {
    return make_error(std::errc::io_error, "cannot compress the shared index of {}: {}", index.digest(),
                      ZSTD_getErrorName(packed));
  }
  head.resize(packed);
  out.bytes.reserve(kPrefixSize + head.size() + states.size());
  out.bytes += kMagic;
  put(out.bytes, kSharedIndexVersion, 4);
  put(out.bytes, 0, 4);
  put(out.bytes, head.size(), 8);
  put(out.bytes, payload.size(), 8);
  out.bytes += head;
  out.head_size = out.bytes.size();
  out.head_digest = "sha256:" + util::sha256_hex(out.bytes);
  out.bytes += states;
  return out;
}

}  // namespace

Result<LayerIndex> load_shared_index(const SharedIndexRef& ref, MetadataBudget* budget,
                                     std::string_view layer_name) {
  const std::string describe = ref.blob->describe();
  const std::uint64_t blob_size = ref.blob->size();
  if (ref.head_size < kPrefixSize || ref.head_size > kPrefixSize + kMaxHeadBytes ||
      ref.head_size > blob_size) {
    return bad_index(describe, fmt::format("its head size {} is impossible for a blob of {} bytes",
                                           ref.head_size, blob_size));
  }
  std::string head(static_cast<std::size_t>(ref.head_size), '\0');
  if (auto read = ref.blob->read_exact(0, std::as_writable_bytes(std::span(head))); !read) {
    return read.error().with_context(fmt::format("cannot fetch the head of the shared index {}", describe));
  }
  if (auto got = "sha256:" + util::sha256_hex(head); got != ref.head_digest) {
    return bad_index(describe,
                     fmt::format("its head's digest is {}, its manifest says {}", got, ref.head_digest));
  }
  if (std::string_view(head).substr(0, kMagic.size()) != kMagic)
    return bad_index(describe, "no shared index magic");
  if (auto version = get(head, 8, 4); version != kSharedIndexVersion) {
    return bad_index(describe,
                     fmt::format("format version {} (this ocifs reads {})", version, kSharedIndexVersion));
  }
  const std::uint64_t packed = get(head, 16, 8), unpacked = get(head, 24, 8);
  if (packed != ref.head_size - kPrefixSize || unpacked > kMaxHeadBytes ||
      ZSTD_getFrameContentSize(head.data() + kPrefixSize, packed) != unpacked) {
    return bad_index(describe, "its head's sizes do not add up");
  }
  std::string payload(static_cast<std::size_t>(unpacked), '\0');
  const std::size_t n = ZSTD_decompress(payload.data(), payload.size(), head.data() + kPrefixSize, packed);
  if (ZSTD_isError(n) || n != unpacked) return bad_index(describe, "its head does not decompress");
  head = std::string();

  OCIFS_ASSIGN(LayerIndex index,
               LayerIndex::load(io::MemorySource(std::move(payload), describe), budget, layer_name));
  auto refuse = [&](std::string_view why) {
    if (budget) budget->release(index.use());
    return bad_index(describe, why);
  };
  auto& points = index.seek_index().gzip_points;
  const std::uint64_t states_size = blob_size - ref.head_size;
  std::vector<StateRef> refs(points.size());
  for (std::size_t i = 0; i < points.size(); ++i) {
    auto& point = points[i];
    if (point.member_start) continue;
    if (point.state.size() != kStateRefSize)
      return refuse(fmt::format("checkpoint {} has no state reference", i));
    StateRef& r = refs[i];
    const std::uint64_t offset = get(point.state, 0, 8);
    r.size = static_cast<std::uint32_t>(get(point.state, 8, 4));
    std::memcpy(r.sha256.data(), point.state.data() + 12, r.sha256.size());
    if (r.size == 0 || r.size > kMaxStateSize || offset > states_size || r.size > states_size - offset) {
      return refuse(fmt::format("checkpoint {}'s state lies outside the blob", i));
    }
    r.offset = ref.head_size + offset;
    point.state = std::string();
  }
  index.seek_index().remote_states = std::make_shared<FetchedStates>(ref.blob, std::move(refs));
  return index;
}

}  // namespace ocifs::layer
