#include "ocifs/compress/stream_decoder.hpp"

#include "ocifs/compress/gzip_decoder.hpp"
#include "ocifs/compress/identity_decoder.hpp"
#include "ocifs/compress/zstd_decoder.hpp"

namespace ocifs::compress {

Result<std::unique_ptr<StreamDecoder>> make_stream_decoder(Encoding encoding, io::BlobSourcePtr blob,
                                                           const ScanOptions& options) {
  if (!blob) return make_error(std::errc::invalid_argument, "cannot decode a blob: no blob given");
  switch (encoding) {
    case Encoding::tar:
      return std::unique_ptr<StreamDecoder>(std::make_unique<IdentityDecoder>(std::move(blob), options));
    case Encoding::gzip:
      return std::unique_ptr<StreamDecoder>(std::make_unique<GzipDecoder>(std::move(blob), options));
    case Encoding::zstd:
      return std::unique_ptr<StreamDecoder>(std::make_unique<ZstdDecoder>(std::move(blob), options));
  }
  return make_error(std::errc::invalid_argument, "cannot decode {}: unknown encoding {}", blob->describe(),
                    static_cast<int>(encoding));
}

}  // namespace ocifs::compress
