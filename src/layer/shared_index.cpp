// The shared index blob. All integers little-endian, no padding:
//
//   offset  size  field
//   0       8     magic "OCIFSSHI"
//   8       4     u32 format version (kSharedIndexVersion)
//   12      4     u32 R: ranges listed as read first (ReadFirst)
//   16      8     u64 H: size of the compressed head
//   24      8     u64 U: its decoded size (at most kMaxHeadBytes)
//   32      H     one zstd frame holding LayerIndex::serialize() of the layer, its seek index cut
//                 to the checkpoints kept, and each gzip state (but at member starts) replaced
//                 by a 44-byte reference: u64 offset into the states, u32 size, 32-byte sha256;
//                 then R read-first ranges of 28 bytes: u64 decoded offset, u64 length, u64
//                 compressed end (decoding the range reads no blob byte past it), u32 rank
//   32+H    …     the states: the packed inflate states (GzipCheckpoint::state) back to back,
//                 first those kept for the read-first ranges (in their order), then the others
//
// The head is [0, 32+H): its size and sha256 are the blob descriptor's annotations, so a reader
// fetches it with one range request and checks it before parsing a byte. The states a mount
// needs first follow it, so one request (or the head's own, a blob cache chunk) brings them.
#include "ocifs/layer/shared_index.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <vector>

#include "ocifs/compress/gzip_cursor.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::layer {

namespace {

constexpr std::string_view kMagic = "OCIFSSHI";
constexpr std::size_t kPrefixSize = 32;
constexpr std::size_t kStateRefSize = 44;
constexpr std::size_t kReadFirstSize = 28;
// A head holds a LayerIndex, which the limits bound (2 Mi entries of 53 bytes, 64 MiB of names,
// block digests): 512 MiB is far above any index they allow and keeps a forged size from
// allocating more.
constexpr std::uint64_t kMaxHeadBytes = 512u << 20;
// As SeekIndex's bound on a packed state.
constexpr std::uint32_t kMaxStateSize = 128u << 10;
// Heads of real layers (entries, names) compress ~4:1 at this level, at ~60 MB/s.
constexpr int kHeadCompressionLevel = 12;
// Checkpoints taken where read-first ranges start: packed harder than the scan's (level 1),
// there are few of them.
constexpr int kStateCompressionLevel = 9;
// A read-first range gets a checkpoint of its own unless one lies at most this far before it.
constexpr std::uint64_t kExactSlack = 16u << 10;
// Inside a read-first range, a checkpoint at most this often.
constexpr std::uint64_t kReadFirstInnerSpacing = 4u << 20;
// Past where decoding a range stopped taking input: ISA-L may ask for a few bytes more.
constexpr std::uint64_t kEndSlack = 1u << 10;

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

  std::optional<Location> location(std::size_t point) const override {
    if (point >= refs_.size() || refs_[point].size == 0) return std::nullopt;
    return Location{blob_, refs_[point].offset, refs_[point].size};
  }

 private:
  io::BlobSourcePtr blob_;
  std::vector<StateRef> refs_;
  mutable std::mutex mutex_;  // guards states_
  mutable std::vector<std::shared_ptr<const std::string>> states_;
};

}  // namespace

namespace {

// The checkpoints (indexes into the seek index's points) kept for the read-first ranges, in their
// order, and the ranges, with their compressed ends.
struct ReadFirstPlan {
  std::vector<std::size_t> points;
  std::vector<ReadFirst> ranges;
};
ReadFirstPlan plan_read_first(const compress::SeekIndex& seek, std::vector<ReadFirst> ranges);

CheckpointCosts costs_of(const compress::SeekIndex& seek) {
  CheckpointCosts costs;
  costs.decoded_size = seek.decoded_size;
  for (const auto& p : seek.gzip_points) {
    costs.offsets.push_back(p.decoded_offset);
    // A state without bytes (a shared index's reference was never kept here) still costs one.
    costs.state_sizes.push_back(p.member_start ? 0 : static_cast<std::uint32_t>(std::max<std::size_t>(1, p.state.size())));
  }
  return costs;
}

// `index` with a checkpoint where each of `ranges` starts (unless one is near enough before
// it), decoded from `blob`; `ranges` cut to the layer, each one's compressed end set to where
// decoding it stopped.
Result<LayerIndex> with_exact_read_first(const LayerIndex& index, const io::BlobSourcePtr& blob,
                                         std::vector<ReadFirst>& ranges);

// The shared blob with checkpoints every `spacing` decoded bytes plus those of `plan`; `index`
// keeps its own.
Result<SharedIndexBlob> build_spaced(const LayerIndex& index, std::uint64_t spacing, const ReadFirstPlan& plan);

}  // namespace

Result<SharedIndexBlob> build_shared_index(const LayerIndex& index, const SharedIndexOptions& options) {
  if (index.seek_index().zstd_spilled) {
    return make_error(std::errc::not_supported,
                      "cannot share the index of {}: its zstd frames are read from a decoded copy, which "
                      "another machine would have to make by reading the whole layer",
                      index.digest());
  }
  const auto budget = static_cast<std::uint64_t>(options.max_share * static_cast<double>(index.seek_index().compressed_size));
  std::optional<LayerIndex> exact;
  auto read_first = options.read_first;
  if (options.blob && !read_first.empty() && index.seek_index().encoding == compress::Encoding::gzip) {
    OCIFS_ASSIGN(exact, with_exact_read_first(index, options.blob, read_first));
  }
  const LayerIndex& source = exact ? *exact : index;
  const auto plan = plan_read_first(source.seek_index(), read_first);
  if (options.checkpoint_spacing != 0) {
    return build_spaced(source, std::clamp(options.checkpoint_spacing, kMinCheckpointSpacing, kMaxCheckpointSpacing),
                        plan);
  }
  for (std::uint64_t spacing = kMinCheckpointSpacing;; spacing *= 2) {
    OCIFS_ASSIGN(auto blob, build_spaced(source, spacing, plan));
    if (blob.bytes.size() <= budget || spacing >= kMaxCheckpointSpacing) return blob;
  }
}

namespace {

// The points reads of `range` start from: the last one at or before it, and inside it one at
// most every kReadFirstInnerSpacing (the range is fetched whole: what lies between two is
// decoded once into the span cache), but member starts (they need no state) and those `taken`
// already.
std::vector<std::size_t> points_for(const CheckpointCosts& costs, const ReadFirst& range,
                                    const std::vector<bool>& taken) {
  std::vector<std::size_t> out;
  const auto& offsets = costs.offsets;
  const std::uint64_t end = range.offset + range.length;
  auto after = std::upper_bound(offsets.begin(), offsets.end(), range.offset);
  if (after == offsets.begin()) return out;
  std::uint64_t last = 0;
  for (auto i = static_cast<std::size_t>(after - offsets.begin()) - 1;
       i < offsets.size() && (offsets[i] <= range.offset || offsets[i] < end); ++i) {
    const bool first = offsets[i] <= range.offset;
    if (!first && offsets[i] - last < kReadFirstInnerSpacing) continue;
    last = offsets[i];
    if (costs.state_sizes[i] != 0 && !taken[i]) out.push_back(i);
  }
  return out;
}

// The ranges that lie in a layer of `decoded_size` bytes, cut to it.
std::vector<ReadFirst> in_layer(std::uint64_t decoded_size, std::vector<ReadFirst> ranges) {
  std::vector<ReadFirst> out;
  for (auto& r : ranges) {
    if (r.length == 0 || r.offset >= decoded_size || out.size() == kMaxReadFirst) continue;
    r.length = std::min(r.length, decoded_size - r.offset);
    out.push_back(r);
  }
  return out;
}

ReadFirstPlan plan_read_first(const compress::SeekIndex& seek, std::vector<ReadFirst> ranges) {
  ReadFirstPlan plan;
  const auto& points = seek.gzip_points;
  if (points.empty()) return plan;
  ranges = in_layer(seek.decoded_size, std::move(ranges));
  std::stable_sort(ranges.begin(), ranges.end(), [](const ReadFirst& a, const ReadFirst& b) { return a.rank < b.rank; });
  const CheckpointCosts costs = costs_of(seek);
  std::vector<bool> taken(points.size());
  for (auto range : ranges) {
    for (auto i : points_for(costs, range, taken)) {
      taken[i] = true;
      plan.points.push_back(i);
    }
    // Decoding up to the range's end reads the blob no further than the first checkpoint at or
    // past it (and a little past that: ISA-L takes input in blocks).
    const std::uint64_t end = range.offset + range.length;
    auto next = std::lower_bound(points.begin(), points.end(), end,
                                 [](const compress::GzipCheckpoint& p, std::uint64_t off) { return p.decoded_offset < off; });
    if (range.compressed_end == 0) {
      range.compressed_end = next == points.end() ? seek.compressed_size
                                                  : std::min(seek.compressed_size, next->compressed_offset + (64u << 10));
    }
    plan.ranges.push_back(range);
  }
  return plan;
}

}  // namespace

CheckpointCosts checkpoint_costs(const LayerIndex& index) { return costs_of(index.seek_index()); }

std::vector<std::vector<ReadFirst>> select_read_first(const std::vector<const CheckpointCosts*>& layers,
                                                      const std::vector<std::vector<ReadFirst>>& ranges,
                                                      std::uint64_t budget) {
  struct Ranked {
    ReadFirst range;
    std::size_t layer;
  };
  std::vector<Ranked> all;
  std::vector<std::vector<bool>> taken(layers.size());
  for (std::size_t i = 0; i < layers.size() && i < ranges.size(); ++i) {
    if (!layers[i]) continue;
    taken[i].resize(layers[i]->offsets.size());
    for (const auto& r : in_layer(layers[i]->decoded_size, ranges[i])) all.push_back({r, i});
  }
  std::stable_sort(all.begin(), all.end(), [](const Ranked& a, const Ranked& b) { return a.range.rank < b.range.rank; });
  std::vector<std::vector<ReadFirst>> out(layers.size());
  std::uint64_t used = 0;
  for (const auto& [range, i] : all) {
    auto points = points_for(*layers[i], range, taken[i]);
    std::uint64_t more = 0;
    for (auto p : points) more += layers[i]->state_sizes[p];
    if (used + more > budget) break;  // what was read later is served by the spacing
    used += more;
    for (auto p : points) taken[i][p] = true;
    out[i].push_back(range);
  }
  return out;
}

namespace {

Result<LayerIndex> with_exact_read_first(const LayerIndex& index, const io::BlobSourcePtr& blob,
                                         std::vector<ReadFirst>& ranges) {
  auto seek = std::make_shared<compress::SeekIndex>(index.seek_index());
  compress::GzipCursor cursor(seek, blob);
  std::vector<compress::GzipCheckpoint> added;
  ranges = in_layer(seek->decoded_size, std::move(ranges));
  for (auto& range : ranges) {
    const auto& points = seek->gzip_points;
    auto before = std::prev(std::upper_bound(points.begin(), points.end(), range.offset,
                                             [](std::uint64_t off, const compress::GzipCheckpoint& p) {
                                               return off < p.decoded_offset;
                                             }));
    if (range.offset - before->decoded_offset > kExactSlack) {
      OCIFS_ASSIGN(auto point, cursor.checkpoint_at(range.offset, kStateCompressionLevel));
      // Kept where the compressed offsets still grow with the decoded ones (a seek index must):
      // a scan checkpoint a few bytes on may have read less input ahead than this one.
      auto after = std::next(before);
      if (point && point->compressed_offset >= before->compressed_offset &&
          (after == points.end() || point->compressed_offset <= after->compressed_offset)) {
        added.push_back(std::move(*point));
      }
    }
    // Decoding the range reads its blob no further than this (and a little past: a bit buffer).
    std::byte last;
    OCIFS_ASSIGN(std::size_t n, cursor.read_at(range.offset + range.length - 1, std::span(&last, 1)));
    if (n != 1) return make_error(std::errc::io_error, "cannot decode {} to offset {}", blob->describe(), range.offset + range.length);
    range.compressed_end = std::min(seek->compressed_size, cursor.input_position() + kEndSlack);
  }
  LayerIndex out = index;
  auto& points = out.seek_index().gzip_points;
  for (auto& point : added) points.push_back(std::move(point));
  std::stable_sort(points.begin(), points.end(),
                   [](const compress::GzipCheckpoint& a, const compress::GzipCheckpoint& b) {
                     return a.decoded_offset < b.decoded_offset;
                   });
  points.erase(std::unique(points.begin(), points.end(),
                           [](const compress::GzipCheckpoint& a, const compress::GzipCheckpoint& b) {
                             return a.decoded_offset == b.decoded_offset;
                           }),
               points.end());
  // Two new ones a few compressed bytes apart may not be in order either: the later one goes.
  std::vector<compress::GzipCheckpoint> ordered;
  for (auto& point : points) {
    if (!ordered.empty() && point.compressed_offset < ordered.back().compressed_offset) continue;
    ordered.push_back(std::move(point));
  }
  points = std::move(ordered);
  return out;
}

Result<SharedIndexBlob> build_spaced(const LayerIndex& original, std::uint64_t spacing, const ReadFirstPlan& plan) {
  LayerIndex index = original;
  auto& seek = index.seek_index();
  SharedIndexBlob out;
  out.spacing = spacing;
  out.read_first = plan.ranges.size();
  out.read_first_checkpoints = plan.points.size();
  auto& points = seek.gzip_points;
  std::vector<bool> keep(points.size());
  for (auto i : plan.points) keep[i] = true;
  std::uint64_t last_kept = 0;
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (i == 0 || points[i].member_start || points[i].decoded_offset - last_kept >= spacing) keep[i] = true;
    if (keep[i]) last_kept = points[i].decoded_offset;
  }
  // Each kept state's place among the states: the read-first ones first, in their order.
  std::string states;
  std::vector<std::string> refs(points.size());
  auto place = [&](std::size_t i) -> Result<void> {
    auto& point = points[i];
    if (point.state.empty()) {
      return make_error(std::errc::invalid_argument,
                        "cannot share the index of {}: checkpoint at decoded offset {} has no state", index.digest(),
                        point.decoded_offset);
    }
    std::string& ref = refs[i];
    put(ref, states.size(), 8);
    put(ref, point.state.size(), 4);
    util::Sha256 sum;
    sum.update(point.state);
    auto digest = sum.digest();
    ref.append(reinterpret_cast<const char*>(digest.data()), digest.size());
    states += point.state;
    return util::success();
  };
  for (auto i : plan.points) OCIFS_TRY(place(i));
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (keep[i] && !points[i].member_start && refs[i].empty()) OCIFS_TRY(place(i));
  }
  std::vector<compress::GzipCheckpoint> kept;
  for (std::size_t i = 0; i < points.size(); ++i) {
    if (!keep[i]) continue;
    if (!points[i].member_start) points[i].state = std::move(refs[i]);
    kept.push_back(std::move(points[i]));
  }
  seek.gzip_points = std::move(kept);
  out.checkpoints = seek.gzip_points.size();
  out.states_bytes = states.size();

  std::string payload = index.serialize();
  for (const auto& range : plan.ranges) {
    put(payload, range.offset, 8);
    put(payload, range.length, 8);
    put(payload, range.compressed_end, 8);
    put(payload, range.rank, 4);
  }
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
  put(out.bytes, plan.ranges.size(), 4);
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
                                     std::string_view layer_name, std::vector<ReadFirst>* read_first) {
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
  const std::uint64_t packed = get(head, 16, 8), unpacked = get(head, 24, 8), listed = get(head, 12, 4);
  if (packed != ref.head_size - kPrefixSize || unpacked > kMaxHeadBytes ||
      ZSTD_getFrameContentSize(head.data() + kPrefixSize, packed) != unpacked || listed > kMaxReadFirst ||
      listed * kReadFirstSize > unpacked) {
    return bad_index(describe, "its head's sizes do not add up");
  }
  std::string payload(static_cast<std::size_t>(unpacked), '\0');
  const std::size_t n = ZSTD_decompress(payload.data(), payload.size(), head.data() + kPrefixSize, packed);
  if (ZSTD_isError(n) || n != unpacked) return bad_index(describe, "its head does not decompress");
  head = std::string();
  const std::size_t index_bytes = payload.size() - static_cast<std::size_t>(listed * kReadFirstSize);
  std::vector<ReadFirst> ranges(static_cast<std::size_t>(listed));
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    const std::size_t at = index_bytes + i * kReadFirstSize;
    ranges[i] = {get(payload, at, 8), get(payload, at + 8, 8), static_cast<std::uint32_t>(get(payload, at + 24, 4)),
                 get(payload, at + 16, 8)};
  }
  payload.resize(index_bytes);

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
  const std::uint64_t decoded_size = index.seek_index().decoded_size;
  for (const auto& range : ranges) {
    if (range.length == 0 || range.offset > decoded_size || range.length > decoded_size - range.offset) {
      return refuse(fmt::format("a range it lists as read first ({} bytes at {}) is not in the layer", range.length,
                                range.offset));
    }
  }
  index.seek_index().remote_states = std::make_shared<FetchedStates>(ref.blob, std::move(refs));
  if (read_first) *read_first = std::move(ranges);
  return index;
}

}  // namespace ocifs::layer
