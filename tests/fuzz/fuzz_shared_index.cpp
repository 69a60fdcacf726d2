// load_shared_index: a layer's shared index as a registry serves it (layer/shared_index.cpp),
// whoever pushed it. The input is the head's decoded payload and the states:
//   u64 P, u8 R, then P bytes of LayerIndex (its checksums recomputed), R read-first ranges of
//   28 bytes, then the states region.
// The target compresses the payload, writes the prefix and takes the head's digest itself, so
// that mutations reach the parsing behind the digest check: the head is trusted once its digest
// matches the artifact's annotation, so these checks are what stands between a forged index and
// the tree. Every checkpoint state it then asks for is served checked, or refused with EIO.
// libfuzzer: -max_len=1048576
#include <zstd.h>

#include <string>

#include "ocifs/layer/shared_index.hpp"
#include "ocifs/util/path.hpp"
#include "ocifs/util/sha256.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

namespace {

std::string le(std::uint64_t v, int bytes) {
  std::string out;
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint64_t payload_size = in.number(8);
  const std::size_t listed = static_cast<std::size_t>(in.number(1));
  std::string payload(in.bytes(static_cast<std::size_t>(std::min<std::uint64_t>(payload_size, size))));
  fuzz::fix_layer_index_checksums(payload);
  const std::string ranges(in.bytes(listed * 28));
  const std::string states(in.rest());
  payload += ranges;

  std::string head(ZSTD_compressBound(payload.size()), '\0');
  const std::size_t packed = ZSTD_compress(head.data(), head.size(), payload.data(), payload.size(), 1);
  if (ZSTD_isError(packed)) return 0;
  head.resize(packed);
  std::string blob = std::string("OCIFSSHI") + le(layer::kSharedIndexVersion, 4) + le(ranges.size() / 28, 4) + le(head.size(), 8) +
                     le(payload.size(), 8) + head;
  const std::uint64_t head_size = blob.size();
  const std::string head_digest = "sha256:" + util::sha256_hex(blob);
  blob += states;

  auto source = std::make_shared<io::MemorySource>(blob, "shared index");
  std::vector<layer::ReadFirst> read_first;
  auto index = layer::load_shared_index({source, head_digest, head_size}, nullptr, "layer", &read_first);
  if (!index.ok()) return 0;
  check(read_first.size() * 28 == ranges.size(), "{} read-first ranges of {} listed", read_first.size(),
        ranges.size() / 28);
  for (const auto& r : read_first) {
    check(r.length > 0 && r.offset <= index->seek_index().decoded_size &&
              r.length <= index->seek_index().decoded_size - r.offset,
          "a read-first range outside the layer: {} bytes at {}", r.length, r.offset);
  }
  for (const auto& e : index->entries()) {
    auto normal = util::normalise_path(index->path(e));
    check(normal.ok() && *normal == index->path(e), "a path not in normal form: '{}'", index->path(e));
  }
  const auto& seek = index->seek_index();
  for (std::size_t k = 0; k < seek.gzip_points.size(); ++k) {
    const auto& point = seek.gzip_points[k];
    check(point.state.empty(), "checkpoint {} kept its state reference", k);
    if (point.member_start) continue;
    check(seek.remote_states != nullptr, "checkpoint {} has no state and no way to fetch it", k);
    auto state = seek.remote_states->state(k);
    if (state.ok()) {
      check(!(*state)->empty(), "checkpoint {}: an empty state", k);
    } else {
      check(state.error().code == std::errc::io_error, "checkpoint {}: {}", k, state.error().message);
    }
  }
  return 0;
}
