// SeekIndex::deserialize: the seek index embedded in every layer index (gzip checkpoints with
// packed inflate states, zstd frame tables; format in seek_index.cpp). The trailing CRC-32 is
// recomputed first so that mutations reach the checks behind it. An index that loads must
// serialize back to the same bytes, and a reader made from it over a blob of the size it names
// must answer reads with data or an error, never crash (the blob is zeros, or the input itself
// when it is short enough to be one).
// libfuzzer: -max_len=262144
#include <string>

#include "ocifs/compress/seek_index.hpp"
#include "ocifs/compress/seekable_reader.hpp"
#include "ocifs/compress/span_cache.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

namespace {

// A blob of `size` zero bytes that takes no memory.
class ZeroSource final : public io::BlobSource {
 public:
  explicit ZeroSource(std::uint64_t size) : size_(size) {}
  std::uint64_t size() const override { return size_; }
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) const override {
    if (offset >= size_) return std::size_t{0};
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size_ - offset));
    std::fill_n(buf.data(), n, std::byte{0});
    return n;
  }
  std::string describe() const override { return "zeros"; }

 private:
  std::uint64_t size_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  fuzz::fix_crc32_trailer(bytes, 0, bytes.size());
  auto index = compress::SeekIndex::deserialize(bytes);
  if (!index.ok()) return 0;
  check(index->serialize() == bytes, "a seek index that loads does not serialize to the same bytes");

  auto blob = std::make_shared<ZeroSource>(index->compressed_size);
  auto decoded = std::make_shared<ZeroSource>(index->decoded_size);
  auto spans = std::make_shared<compress::SpanCache>(4u << 20);
  auto reader = compress::make_seekable_reader(*index, blob, decoded, spans);
  if (reader.ok()) {
    std::string buf(4096, '\0');
    const std::uint64_t decoded_size = index->decoded_size;
    for (std::uint64_t offset :
         {std::uint64_t{0}, decoded_size / 2, decoded_size > 10 ? decoded_size - 10 : 0}) {
      auto n = (*reader)->read_at(offset, std::as_writable_bytes(std::span(buf)));
      if (!n.ok()) continue;
      // Data, never more than is left, and never an early end of file inside the decoded size.
      check(*n <= buf.size() && *n <= decoded_size - std::min(offset, decoded_size),
            "a read at {} of a {}-byte layer returned {} bytes", offset, decoded_size, *n);
      check(offset >= decoded_size || *n > 0, "a read at {} of a {}-byte layer returned nothing", offset,
            decoded_size);
    }
  }
  spans->stop();
  return 0;
}
