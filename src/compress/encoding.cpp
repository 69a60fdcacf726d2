#include "ocifs/compress/encoding.hpp"

#include <array>

namespace ocifs::compress {

Result<Encoding> detect_encoding(const io::BlobSource& source) {
  std::array<std::byte, 4> magic{};
  OCIFS_ASSIGN(std::size_t n, source.read_at(0, magic));
  auto at = [&](std::size_t i) { return std::to_integer<unsigned>(magic[i]); };
  if (n >= 3 && at(0) == 0x1f && at(1) == 0x8b && at(2) == 0x08) return Encoding::gzip;
  if (n >= 4 && at(0) == 0x28 && at(1) == 0xb5 && at(2) == 0x2f && at(3) == 0xfd) return Encoding::zstd;
  return Encoding::tar;
}

std::string_view to_string(Encoding encoding) {
  switch (encoding) {
    case Encoding::tar:
      return "tar";
    case Encoding::gzip:
      return "gzip";
    case Encoding::zstd:
      return "zstd";
  }
  return "unknown";
}

}  // namespace ocifs::compress
