#include "ocifs/layer/toc_layer.hpp"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>

#include "entry_table.hpp"
#include "ocifs/compress/chunked_reader.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/layer/lazy_toc.hpp"
#include "ocifs/layer/tar_walker.hpp"
#include "ocifs/util/sha256.hpp"

namespace ocifs::layer {

namespace {

constexpr std::string_view kEstargzTocName = "stargz.index.json";
// The JSON parser's own limit (TocLimits::max_json_size); a compressed TOC above it is refused
// before anything is inflated.
constexpr std::uint64_t kMaxToc = TocLimits{}.max_json_size;

const std::string* annotation(const LayerBlob& layer, std::initializer_list<std::string_view> keys) {
  for (auto key : keys) {
    if (auto it = layer.annotations.find(std::string(key)); it != layer.annotations.end()) return &it->second;
  }
  return nullptr;
}

Result<std::string> read_range(const io::BlobSource& blob, std::uint64_t offset, std::uint64_t length) {
  std::string out(length, '\0');
  OCIFS_TRY(blob.read_exact(offset, std::as_writable_bytes(std::span(out))));
  return out;
}

// A whole gzip member (the TOC's), inflated; at most `limit` bytes.
Result<std::string> gunzip(std::string_view in, std::uint64_t limit, std::string_view what) {
  z_stream z{};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return make_error(std::errc::not_enough_memory, "inflateInit2 failed");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());
  std::string out;
  int rc = Z_OK;
  while (rc == Z_OK) {
    if (out.size() >= limit) break;
    const std::size_t have = out.size();
    out.resize(std::min<std::uint64_t>(limit, have + (1u << 20)));
    z.next_out = reinterpret_cast<Bytef*>(out.data() + have);
    z.avail_out = static_cast<uInt>(out.size() - have);
    rc = inflate(&z, Z_NO_FLUSH);
    out.resize(out.size() - z.avail_out);
  }
  inflateEnd(&z);
  if (rc != Z_STREAM_END) {
    return make_error(std::errc::io_error, "cannot read {}: {}", what,
                      out.size() >= limit ? "it inflates to more than the limit" : "corrupt or truncated gzip");
  }
  return out;
}

Result<std::string> unzstd(std::string_view in, std::uint64_t size, std::string_view what) {
  std::string out(size, '\0');
  std::size_t n = ZSTD_decompress(out.data(), out.size(), in.data(), in.size());
  if (ZSTD_isError(n) || n != size) {
    return make_error(std::errc::io_error, "cannot read {}: {}", what,
                      ZSTD_isError(n) ? ZSTD_getErrorName(n) : "it is not as long as its annotation says");
  }
  return out;
}

// The bytes of the tar member `name` in `tar` (the TOC member holds one entry and the trailer).
Result<std::string> tar_member(const std::string& tar, std::string_view name, std::string_view what) {
  auto source = std::make_shared<io::MemorySource>(tar, std::string(what));
  compress::ScanOptions options;
  options.hash = false;
  OCIFS_ASSIGN(auto stream, compress::make_stream_decoder(compress::Encoding::tar, source, options));
  TarWalker walker(*stream, std::string(what));
  for (;;) {
    OCIFS_ASSIGN(auto entry, walker.next());
    if (!entry) break;
    if (entry->path == name && entry->kind == EntryKind::regular) return tar.substr(entry->data_offset, entry->size);
  }
  return make_error(std::errc::io_error, "cannot read {}: it holds no {}", what, name);
}

std::string sha256_of(std::string_view data) { return "sha256:" + util::sha256_hex(data); }

Result<Toc> read_estargz_toc(const LayerBlob& layer) {
  const std::string* digest = annotation(layer, {kEstargzTocDigestAnnotation});
  const std::uint64_t size = layer.blob->size();
  const std::uint64_t tail_size = std::min<std::uint64_t>(size, kEstargzFooterSize);
  OCIFS_ASSIGN(std::string tail, read_range(*layer.blob, size - tail_size, tail_size));
  OCIFS_ASSIGN(EstargzFooter footer, decode_estargz_footer(std::as_bytes(std::span(tail)), size));
  const std::uint64_t toc_end = size - footer.size;
  if (toc_end - footer.toc_offset > kMaxToc) {
    return make_error(std::errc::file_too_large, "cannot open {}: its TOC is {} bytes", layer.name,
                      toc_end - footer.toc_offset);
  }
  const std::string what = fmt::format("the TOC of {}", layer.name);
  OCIFS_ASSIGN(std::string member, read_range(*layer.blob, footer.toc_offset, toc_end - footer.toc_offset));
  OCIFS_ASSIGN(std::string tar, gunzip(member, kMaxToc + (64u << 10), what));
  OCIFS_ASSIGN(std::string json, tar_member(tar, kEstargzTocName, what));
  if (auto got = sha256_of(json); got != *digest) {
    return make_error(std::errc::io_error, "cannot open {}: its TOC has digest {}, the manifest says {}", layer.name,
                      got, *digest);
  }
  return parse_estargz_toc(json, footer.toc_offset, size, layer.name);
}

Result<Toc> read_zstd_chunked_toc(const LayerBlob& layer) {
  const std::string* where = annotation(layer, {kZstdChunkedPositionAnnotation, kZstdChunkedPositionAnnotationOld});
  const std::string* checksum = annotation(
      layer, {kZstdChunkedChecksumAnnotation, "io.containers.zstd-chunked.manifest-checksum"});
  const std::string* toc_digest = annotation(layer, {kEstargzTocDigestAnnotation});
  if (!checksum && !toc_digest) {
    return make_error(std::errc::not_supported, "cannot open {} by its TOC: the manifest gives no digest for it",
                      layer.name);
  }
  const std::uint64_t size = layer.blob->size();
  OCIFS_ASSIGN(auto position, parse_zstd_chunked_position(*where, size));
  const std::string what = fmt::format("the TOC of {}", layer.name);
  OCIFS_ASSIGN(std::string compressed, read_range(*layer.blob, position.offset, position.length));
  if (checksum && sha256_of(compressed) != *checksum) {
    return make_error(std::errc::io_error, "cannot open {}: its TOC has digest {}, the manifest says {}", layer.name,
                      sha256_of(compressed), *checksum);
  }
  OCIFS_ASSIGN(std::string json, unzstd(compressed, position.uncompressed_length, what));
  if (toc_digest && sha256_of(json) != *toc_digest) {
    return make_error(std::errc::io_error, "cannot open {}: its TOC has digest {}, the manifest says {}", layer.name,
                      sha256_of(json), *toc_digest);
  }
  return parse_zstd_chunked_manifest(json, position.offset, size, layer.name);
}

Result<std::array<std::uint8_t, 32>> digest_bytes(std::string_view digest, const LayerBlob& layer,
                                                   const TocFile& file) {
  std::array<std::uint8_t, 32> out{};
  if (digest.size() != 71 || !digest.starts_with("sha256:")) {
    return make_error(std::errc::not_supported,
                      "cannot open {} by its TOC: a chunk of '{}' has no digest, so it could not be checked",
                      layer.name, file.path);
  }
  for (std::size_t i = 0; i < 32; ++i) {
    auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
    out[i] = static_cast<std::uint8_t>(nibble(digest[7 + 2 * i]) << 4 | nibble(digest[8 + 2 * i]));
  }
  return out;
}

}  // namespace

std::string_view to_string(TocFormat format) {
  switch (format) {
    case TocFormat::estargz: return "estargz";
    case TocFormat::zstd_chunked: return "zstd:chunked";
    case TocFormat::none: break;
  }
  return "none";
}

TocFormat toc_format_of(const LayerBlob& layer) {
  if (annotation(layer, {kZstdChunkedPositionAnnotation, kZstdChunkedPositionAnnotationOld})) {
    return TocFormat::zstd_chunked;
  }
  if (annotation(layer, {kEstargzTocDigestAnnotation})) return TocFormat::estargz;
  return TocFormat::none;
}

Result<OpenLayer> open_toc_layer(const LayerBlob& layer, TocFormat format,
                                 const std::shared_ptr<compress::SpanCache>& spans) {
  auto read = format == TocFormat::estargz ? read_estargz_toc(layer) : read_zstd_chunked_toc(layer);
  if (!read) {
    // Footer and TOC bytes that did not check out must not be read from the cache again.
    if (read.error().code != std::errc::not_supported) layer.blob->discard(0, layer.blob->size());
    // The parser's and the blob's messages name offsets and entries; say which layer too.
    const auto& message = read.error().message;
    if (message.find(layer.name) != std::string::npos) return std::move(read).error();
    return read.error().with_context(fmt::format("cannot open {} by its TOC", layer.name));
  }
  Toc toc = std::move(read).value();
  // Files' data laid end to end: the offsets the index and the reader share.
  LayerIndex index;
  std::vector<compress::Chunk> chunks;
  std::uint64_t end = 0;
  for (TocFile& file : toc.entries) {
    file.data_offset = end;
    file.stored_size = file.kind == EntryKind::regular ? file.size : 0;
    for (const TocChunk& c : file.chunks) {
      compress::Chunk chunk;
      chunk.offset = end + c.file_offset;
      chunk.size = c.size;
      chunk.blob_offset = c.blob_offset;
      chunk.blob_end = c.blob_end;
      chunk.inner_offset = c.inner_offset;
      chunk.zeros = c.zeros;
      if (!c.zeros) {
        OCIFS_ASSIGN(chunk.digest, digest_bytes(c.digest, layer, file));
      }
      chunks.push_back(chunk);
    }
    end += file.stored_size;
    index.add(file);
  }
  auto& seek = index.seek_index();
  seek.encoding = format == TocFormat::estargz ? compress::Encoding::gzip : compress::Encoding::zstd;
  seek.compressed_size = layer.blob->size();
  seek.decoded_size = end;
  index.set_digest(layer.digest);
  auto reader = std::make_shared<compress::ChunkedReader>(
      std::move(chunks), end,
      format == TocFormat::estargz ? compress::ChunkCodec::gzip : compress::ChunkCodec::zstd, layer.blob, spans,
      layer.name);
  OpenLayer opened{std::make_shared<const LayerIndex>(std::move(index)), std::move(reader), false};
  opened.toc_format = std::string(to_string(format));
  opened.landmark_end = toc.prefetch_landmark_offset;
  return opened;
}

}  // namespace ocifs::layer
