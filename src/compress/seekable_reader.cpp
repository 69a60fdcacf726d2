#include "ocifs/compress/seekable_reader.hpp"

#include "ocifs/compress/direct_reader.hpp"
#include "ocifs/compress/gzip_reader.hpp"
#include "ocifs/compress/zstd_reader.hpp"

namespace ocifs::compress {

Result<SeekableReaderPtr> make_seekable_reader(const SeekIndex& index, io::BlobSourcePtr blob,
                                               io::BlobSourcePtr decoded, std::shared_ptr<SpanCache> spans) {
  if (!blob) return make_error(std::errc::invalid_argument, "cannot open a layer reader: no blob given");
  switch (index.encoding) {
    case Encoding::tar:
      if (blob->size() < index.decoded_size) {
        return make_error(std::errc::invalid_argument, "cannot read {}: it has {} bytes, its index says {}",
                          blob->describe(), blob->size(), index.decoded_size);
      }
      return SeekableReaderPtr(std::make_shared<DirectReader>(std::move(blob), index.decoded_size));
    case Encoding::gzip:
      return GzipReader::create(index, std::move(blob), std::move(spans));
    case Encoding::zstd:
      if (!index.zstd_spilled) return ZstdReader::create(index, std::move(blob));
      if (!decoded) {
        return make_error(std::errc::invalid_argument,
                          "cannot read {}: its decoded copy is needed and was not given", blob->describe());
      }
      if (decoded->size() != index.decoded_size) {
        return make_error(std::errc::invalid_argument,
                          "cannot read {}: its decoded copy {} has {} bytes, the index says {}",
                          blob->describe(), decoded->describe(), decoded->size(), index.decoded_size);
      }
      return SeekableReaderPtr(std::make_shared<DirectReader>(std::move(decoded), index.decoded_size));
  }
  return make_error(std::errc::invalid_argument, "cannot read {}: unknown encoding {}", blob->describe(),
                    static_cast<int>(index.encoding));
}

}  // namespace ocifs::compress
