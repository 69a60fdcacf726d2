#include "ocifs/compress/gzip_reader.hpp"

#include "ocifs/compress/gzip_cursor.hpp"

namespace ocifs::compress {

Result<SeekableReaderPtr> GzipReader::create(const SeekIndex& index, io::BlobSourcePtr blob) {
  if (index.encoding != Encoding::gzip) {
    return make_error(std::errc::invalid_argument, "cannot read {} as gzip: the index is for {}",
                      blob->describe(), to_string(index.encoding));
  }
  if (index.decoded_size > 0 && (index.gzip_points.empty() || index.gzip_points.front().decoded_offset != 0 ||
                                 !index.gzip_points.front().member_start)) {
    return make_error(std::errc::invalid_argument,
                      "cannot read {}: its gzip index has no checkpoint at offset 0", blob->describe());
  }
  if (blob->size() != index.compressed_size) {
    return make_error(std::errc::invalid_argument, "cannot read {}: the blob has {} bytes, its index says {}",
                      blob->describe(), blob->size(), index.compressed_size);
  }
  return SeekableReaderPtr(std::make_shared<GzipReader>(std::make_shared<SeekIndex>(index), std::move(blob)));
}

Result<std::size_t> GzipReader::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  GzipCursor cursor(index_, blob_);
  return cursor.read_at(offset, buf);
}

std::unique_ptr<ReadCursor> GzipReader::open_cursor() const {
  return std::make_unique<GzipCursor>(index_, blob_);
}

}  // namespace ocifs::compress
