// SeekIndex binary form. Version 2; all integers little-endian; no padding.
//
//   offset  size  field
//   0       4     magic "OCSX"
//   4       2     version = 2
//   6       1     encoding: 0 tar, 1 gzip, 2 zstd
//   7       1     flags: bit 0 = zstd_spilled (zstd only); other bits 0
//   8       8     compressed_size
//   16      8     decoded_size
//   24      4     P = number of gzip checkpoints (0 unless gzip)
//   28      4     F = number of zstd frames (0 unless zstd)
//   32      4     gzip state format (IsalInflater::kSnapshotFormat; 0 unless gzip). Another value
//                 means checkpoints from another ISA-L build: the index is refused and rebuilt.
//   36      ...   P checkpoints, sorted by strictly increasing decoded_offset, each:
//                   +0   8  compressed_offset      (<= compressed_size, < at member starts;
//                                              non-decreasing)
//                   +8   8  decoded_offset         (<= decoded_size; the first is 0; at most
//                                              kMaxGzipSpan after the previous one, and
//                                              decoded_size at most that after the last)
//                   +16  1  flags: bit 0 = member_start (the first point is one)
//                   +17  4  S = state length       (<= 128 KiB; 0 exactly at member starts)
//                   +21  S  inflate state snapshot, one zstd frame
//   ...     32*F  F frames, each four u64: compressed_offset, compressed_size, decoded_offset,
//                 decoded_size. Decoded ranges are contiguous from 0 and add up to decoded_size;
//                 compressed ranges are non-empty, ascending, disjoint and inside the blob.
//   end-4   4     CRC-32 (zlib) of every byte before it
//
// Size: ~21 bytes + ~19 KiB of state per gzip checkpoint (~3.7% of the decoded size at the
// default 512 KiB spans); 32 bytes per zstd frame.
#include "ocifs/compress/seek_index.hpp"

#include <zlib.h>

#include "isal_inflater.hpp"

#include <cstring>

namespace ocifs::compress {
namespace {

// The fixed parts of the format above (bump kVersion whenever the layout changes).
constexpr char kMagic[4] = {'O', 'C', 'S', 'X'};
constexpr std::uint16_t kVersion = 2;
constexpr std::size_t kHeaderSize = 36;
constexpr std::size_t kPointFixedSize = 21;
constexpr std::size_t kFrameSize = 32;
constexpr std::size_t kCrcSize = 4;
// A packed 87 KiB state is at most ~87 KiB (zstd stores incompressible data raw); anything
// bigger is damage.
constexpr std::uint32_t kMaxState = 128u << 10;
// Four times the decoder's widest span (kMaxSpan in gzip_decoder.cpp, 16 MiB).
constexpr std::uint64_t kMaxGzipSpan = 64u << 20;

void put(std::string& out, std::uint64_t value, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}
  std::size_t left() const { return bytes_.size() - pos_; }
  bool get(std::uint64_t& value, int bytes) {
    if (left() < static_cast<std::size_t>(bytes)) return false;
    value = 0;
    for (int i = 0; i < bytes; ++i)
      value |= std::uint64_t{static_cast<unsigned char>(bytes_[pos_ + i])} << (8 * i);
    pos_ += bytes;
    return true;
  }
  bool get(std::string& out, std::size_t n) {
    if (left() < n) return false;
    out.assign(bytes_.substr(pos_, n));
    pos_ += n;
    return true;
  }

 private:
  std::string_view bytes_;
  std::size_t pos_ = 0;
};

Error corrupt(std::string_view why) {
  return make_error(std::errc::invalid_argument, "cannot load seek index: {}", why);
}

}  // namespace

std::string SeekIndex::serialize() const {
  std::string out;
  std::size_t states = 0;
  for (const auto& p : gzip_points) states += p.state.size();
  out.reserve(kHeaderSize + gzip_points.size() * kPointFixedSize + states + zstd_frames.size() * kFrameSize +
              kCrcSize);
  out.append(kMagic, sizeof kMagic);
  put(out, kVersion, 2);
  put(out, static_cast<std::uint8_t>(encoding), 1);
  put(out, zstd_spilled ? 1 : 0, 1);
  put(out, compressed_size, 8);
  put(out, decoded_size, 8);
  put(out, gzip_points.size(), 4);
  put(out, zstd_frames.size(), 4);
  put(out, encoding == Encoding::gzip ? IsalInflater::kSnapshotFormat : 0, 4);
  for (const auto& p : gzip_points) {
    put(out, p.compressed_offset, 8);
    put(out, p.decoded_offset, 8);
    put(out, p.member_start ? 1 : 0, 1);
    put(out, p.state.size(), 4);
    out += p.state;
  }
  for (const auto& f : zstd_frames) {
    put(out, f.compressed_offset, 8);
    put(out, f.compressed_size, 8);
    put(out, f.decoded_offset, 8);
    put(out, f.decoded_size, 8);
  }
  uLong crc = crc32_z(0, reinterpret_cast<const Bytef*>(out.data()), out.size());
  put(out, crc, 4);
  return out;
}

Result<SeekIndex> SeekIndex::deserialize(std::string_view bytes) {
  if (bytes.size() < kHeaderSize + kCrcSize)
    return corrupt(fmt::format("{} bytes is too short", bytes.size()));
  std::string_view body = bytes.substr(0, bytes.size() - kCrcSize);
  std::uint64_t stored_crc = 0;
  Reader(bytes.substr(body.size())).get(stored_crc, 4);
  if (crc32_z(0, reinterpret_cast<const Bytef*>(body.data()), body.size()) != stored_crc) {
    return corrupt("checksum mismatch");
  }
  if (std::memcmp(body.data(), kMagic, sizeof kMagic) != 0) return corrupt("bad magic");
  Reader in(body.substr(sizeof kMagic));
  std::uint64_t version = 0, encoding = 0, flags = 0, points = 0, frames = 0, state_format = 0;
  SeekIndex index;
  in.get(version, 2);
  in.get(encoding, 1);
  in.get(flags, 1);
  in.get(index.compressed_size, 8);
  in.get(index.decoded_size, 8);
  in.get(points, 4);
  in.get(frames, 4);
  in.get(state_format, 4);
  if (version != kVersion) return corrupt(fmt::format("format version {}, expected {}", version, kVersion));
  if (encoding > static_cast<std::uint64_t>(Encoding::zstd))
    return corrupt(fmt::format("unknown encoding {}", encoding));
  index.encoding = static_cast<Encoding>(encoding);
  if (flags & ~std::uint64_t{1}) return corrupt("unknown flags");
  index.zstd_spilled = flags & 1;
  if (index.zstd_spilled && index.encoding != Encoding::zstd)
    return corrupt("spilled flag on a non-zstd index");
  if (points > 0 && index.encoding != Encoding::gzip) return corrupt("gzip checkpoints in a non-gzip index");
  if (state_format != (index.encoding == Encoding::gzip ? IsalInflater::kSnapshotFormat : 0))
    return corrupt("gzip checkpoints made by another ISA-L build");
  if (frames > 0 && index.encoding != Encoding::zstd) return corrupt("zstd frames in a non-zstd index");
  if (index.encoding == Encoding::tar && index.compressed_size != index.decoded_size) {
    return corrupt("tar index with different sizes");
  }
  // Counts are checked against the bytes present before anything is allocated for them.
  if (points > in.left() / kPointFixedSize || frames > in.left() / kFrameSize ||
      points * kPointFixedSize + frames * kFrameSize > in.left()) {
    return corrupt(
        fmt::format("{} checkpoints and {} frames do not fit in {} bytes", points, frames, in.left()));
  }

  index.gzip_points.reserve(points);
  for (std::uint64_t i = 0; i < points; ++i) {
    GzipCheckpoint p;
    std::uint64_t pflags = 0, state = 0;
    if (!in.get(p.compressed_offset, 8) || !in.get(p.decoded_offset, 8) || !in.get(pflags, 1) ||
        !in.get(state, 4)) {
      return corrupt(fmt::format("checkpoint {} is cut short", i));
    }
    p.member_start = pflags & 1;
    if ((pflags & ~std::uint64_t{1}) || state > kMaxState || p.member_start != (state == 0))
      return corrupt(fmt::format("checkpoint {} is invalid", i));
    if (!in.get(p.state, state)) return corrupt(fmt::format("checkpoint {} is cut short", i));
    // A state may hold the last bytes of the blob in its bit buffer: it can sit at the end.
    if (p.compressed_offset > index.compressed_size ||
        (p.member_start && p.compressed_offset == index.compressed_size) || p.decoded_offset > index.decoded_size) {
      return corrupt(fmt::format("checkpoint {} lies outside the stream", i));
    }
    if (i == 0 && (p.decoded_offset != 0 || !p.member_start))
      return corrupt("the first checkpoint is not at offset 0");
    if (i > 0) {
      const auto& prev = index.gzip_points.back();
      if (p.decoded_offset <= prev.decoded_offset || p.compressed_offset < prev.compressed_offset) {
        return corrupt(fmt::format("checkpoint {} is out of order", i));
      }
    }
    index.gzip_points.push_back(std::move(p));
  }
  if (index.encoding == Encoding::gzip && index.decoded_size > 0 && index.gzip_points.empty()) {
    return corrupt("gzip index without checkpoints");
  }
  // A read inflates a whole span into memory (GzipReader). The decoder leaves at most 16 MiB
  // between checkpoints (gzip_decoder.cpp), so a span past kMaxGzipSpan is damage, not a layer.
  for (std::size_t i = 0; i < index.gzip_points.size(); ++i) {
    const std::uint64_t end =
        i + 1 < index.gzip_points.size() ? index.gzip_points[i + 1].decoded_offset : index.decoded_size;
    if (end - index.gzip_points[i].decoded_offset > kMaxGzipSpan) {
      return corrupt(fmt::format("checkpoint {} is {} bytes from the next (limit {})", i,
                                 end - index.gzip_points[i].decoded_offset, kMaxGzipSpan));
    }
  }

  if (frames * kFrameSize != in.left()) return corrupt("the frame table size does not match");
  index.zstd_frames.reserve(frames);
  std::uint64_t decoded = 0;
  std::uint64_t compressed = 0;
  bool too_large = false;
  for (std::uint64_t i = 0; i < frames; ++i) {
    ZstdFrame f;
    in.get(f.compressed_offset, 8);
    in.get(f.compressed_size, 8);
    in.get(f.decoded_offset, 8);
    in.get(f.decoded_size, 8);
    if (f.decoded_offset != decoded || f.decoded_size > index.decoded_size - decoded ||
        f.compressed_offset < compressed || f.compressed_size == 0 ||
        f.compressed_offset > index.compressed_size ||
        f.compressed_size > index.compressed_size - f.compressed_offset) {
      return corrupt(fmt::format("zstd frame {} is inconsistent", i));
    }
    decoded += f.decoded_size;
    compressed = f.compressed_offset + f.compressed_size;
    too_large = too_large || f.decoded_size > kSpillFrameSize;
    index.zstd_frames.push_back(f);
  }
  if (index.encoding == Encoding::zstd) {
    if (decoded != index.decoded_size) return corrupt("the zstd frames do not add up to the decoded size");
    if (!index.zstd_spilled && (frames == 1 || too_large))
      return corrupt("a zstd layer that must be spilled is not");
  }
  return index;
}

}  // namespace ocifs::compress
