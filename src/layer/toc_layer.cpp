#include "ocifs/layer/toc_layer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "entry_table.hpp"
#include "ocifs/compress/chunked_reader.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/layer/lazy_toc.hpp"
#include "ocifs/layer/tar_walker.hpp"
#include "ocifs/util/limits.hpp"
#include "ocifs/util/sha256.hpp"
#include "ocifs/util/text.hpp"

namespace ocifs::layer {

namespace {

constexpr std::string_view kEstargzTocName = "stargz.index.json";
constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD in UTF-8
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

// The decoded gzip members / zstd frames of `in` as text, at most `limit` bytes; more is an error.
Result<std::string> decode(TocFormat format, std::string_view in, std::uint64_t limit, std::string_view what) {
  const auto codec = format == TocFormat::estargz ? compress::ChunkCodec::gzip : compress::ChunkCodec::zstd;
  auto decoded = compress::decode_units(codec, std::as_bytes(std::span(in)), limit + 1);
  if (!decoded) return decoded.error().with_context(fmt::format("cannot read {}", what));
  if (decoded->size() > limit) {
    return make_error(std::errc::file_too_large, "cannot read {}: it decodes to more than {} bytes", what, limit);
  }
  return std::string(reinterpret_cast<const char*>(decoded->data()), decoded->size());
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

bool lossy(const TocFile& e) {
  return e.path.find(kReplacement) != std::string::npos || e.link_target.find(kReplacement) != std::string::npos;
}

// Entries whose name or link target a TOC could not spell (not UTF-8) get theirs back from their
// tar headers. Those sit after the previous file's data, in the member (or frames) that ends
// where the next data starts: that range is fetched and decoded, its headers walked, and each
// matched in order with the TOC's entries. A header is taken only if the TOC spells it the same
// (as_toc_spells): the TOC is verified, these bytes are not, so only the bytes the TOC could not
// spell come from them. Anything that does not line up keeps the TOC's name, with a warning.
//
// One pass: entries are taken in stretches, each from just after an entry with data (its origin)
// to the next such entry; a stretch holding a lossy name is fetched once, whatever the number of
// lossy names in it. Chunk offsets never go back in TOC order (the parser checks), so the search
// for where a stretch's range ends only moves forward. Fetches are bounded per stretch and per
// layer (util/limits.hpp).
Result<void> recover_names(const LayerBlob& layer, TocFormat format, Toc& toc) {
  auto& entries = toc.entries;
  const std::size_t n = entries.size();
  auto has_last_data = [&](const TocFile& e) { return !e.chunks.empty() && !e.chunks.back().zeros; };
  std::uint64_t fetched = 0;
  std::size_t unresolved = 0, warned = 0;
  auto keep_toc_name = [&](std::size_t i, std::string_view why) {
    ++unresolved;
    if (warned++ < 10) {
      spdlog::warn(
          "cannot read back the name of '{}' (TOC entry {}) in {}: {}; it keeps the name its TOC gives",
          util::shown(entries[i].path), entries[i].toc_index, layer.name, why);
    }
  };
  std::size_t end_at = 0;  // the forward-only search for the end of a stretch's range
  for (std::size_t first = 0; first < n;) {
    // The stretch: its origin is entry first - 1 (the root of the layer for the first stretch);
    // it holds entries up to and including the next one with data.
    std::uint64_t start = 0, skip = 0;
    if (first > 0) {
      const TocChunk& last = entries[first - 1].chunks.back();
      start = last.blob_offset;
      skip = (last.inner_offset + last.size + 511) / 512 * 512;  // tar pads data to 512
    }
    std::size_t last = first;
    while (last + 1 < n && !has_last_data(entries[last])) ++last;
    const std::size_t next_first = last + 1;
    bool any_lossy = false;
    for (std::size_t i = first; i <= last && !any_lossy; ++i) any_lossy = lossy(entries[i]);
    if (!any_lossy) {
      first = next_first;
      continue;
    }
    std::uint64_t end = toc.data_end;
    end_at = std::max(end_at, first);
    for (; end_at < n; ++end_at) {
      auto data = std::find_if(entries[end_at].chunks.begin(), entries[end_at].chunks.end(),
                               [&](const TocChunk& c) { return !c.zeros && c.blob_offset > start; });
      if (data != entries[end_at].chunks.end()) {
        end = data->blob_offset;
        break;
      }
    }
    const std::string what = fmt::format("the tar headers of {} at blob bytes {}-{}", layer.name, start, end);
    std::string_view refused;
    if (end <= start || end - start > limits::kMaxNameRecoveryRangeBytes) {
      refused = "the range of its tar headers is too long";
    } else if (end - start > limits::kMaxNameRecoveryBytesPerLayer - fetched) {
      refused = "the layer's names have fetched as much as they may";
    }
    if (refused.empty()) {
      fetched += end - start;
      OCIFS_ASSIGN(std::string raw, read_range(*layer.blob, start, end - start));
      const auto codec =
          format == TocFormat::estargz ? compress::ChunkCodec::gzip : compress::ChunkCodec::zstd;
      // Decoded only as far as the headers can reach: a bomb in the range costs no more.
      auto decoded = compress::decode_units(codec, std::as_bytes(std::span(raw)),
                                            skip + 4 * limits::kMaxNameRecoveryRangeBytes);
      if (decoded && skip <= decoded->size()) {
        std::string headers(reinterpret_cast<const char*>(decoded->data()) + skip, decoded->size() - skip);
        auto source = std::make_shared<io::MemorySource>(std::move(headers), what);
        compress::ScanOptions options;
        options.hash = false;
        OCIFS_ASSIGN(auto stream, compress::make_stream_decoder(compress::Encoding::tar, source, options));
        TarWalker walker(*stream, what);
        std::size_t j = first;
        // The range ends inside the next file's data: the walk stops with an error there, after its
        // header, which is all that is wanted.
        for (auto next = walker.next(); next && *next && j < n; next = walker.next()) {
          const TarEntry& header = **next;
          if (is_stargz_metadata(header.path)) continue;
          TocFile& e = entries[j++];
          if (lossy(e) && as_toc_spells(header.path) == e.path &&
              as_toc_spells(header.link_target) == e.link_target) {
            e.path = header.path;
            e.link_target = header.link_target;
          }
        }
      } else {
        refused = "its tar headers could not be decoded";
      }
    }
    for (std::size_t i = first; i <= last; ++i) {
      if (lossy(entries[i]))
        keep_toc_name(i, refused.empty() ? std::string_view("no tar header matches it") : refused);
    }
    first = next_first;
  }
  if (warned > 10) {
    spdlog::warn(
        "{}: {} names in all keep the spelling their TOC gives (U+FFFD for bytes that are not UTF-8)",
        layer.name, unresolved);
  }
  return util::success();
}

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
  OCIFS_ASSIGN(std::string tar, decode(TocFormat::estargz, member, kMaxToc + (64u << 10), what));
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
  OCIFS_ASSIGN(std::string json, decode(TocFormat::zstd_chunked, compressed, position.uncompressed_length, what));
  if (json.size() != position.uncompressed_length) {
    return make_error(std::errc::io_error, "cannot read {}: it is not as long as its annotation says", what);
  }
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

std::string as_toc_spells(std::string_view raw) {
  std::string out;
  for (std::size_t i = 0; i < raw.size();) {
    const auto b = static_cast<unsigned char>(raw[i]);
    std::size_t n = b < 0x80 ? 1 : (b & 0xe0) == 0xc0 ? 2 : (b & 0xf0) == 0xe0 ? 3 : (b & 0xf8) == 0xf0 ? 4 : 0;
    bool valid = n > 0 && i + n <= raw.size();
    std::uint32_t cp = n == 1 ? b : n == 2 ? b & 0x1fu : n == 3 ? b & 0x0fu : b & 0x07u;
    for (std::size_t k = 1; valid && k < n; ++k) {
      const auto c = static_cast<unsigned char>(raw[i + k]);
      valid = (c & 0xc0) == 0x80;
      cp = cp << 6 | (c & 0x3fu);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid too.
    valid = valid && !(n == 2 && cp < 0x80) && !(n == 3 && cp < 0x800) && !(n == 4 && cp < 0x10000) &&
            !(cp >= 0xd800 && cp <= 0xdfff) && cp <= 0x10ffff;
    if (valid) {
      out.append(raw.substr(i, n));
      i += n;
    } else {
      out.append(kReplacement);
      ++i;
    }
  }
  return out;
}

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
  if (!read && read.error().code == std::errc::file_too_large) {
    // A TOC past its limits (util/limits.hpp: size, entries) does not make a broken layer: the
    // layer is scanned whole instead, within the limits of a scan.
    return Error{std::errc::not_supported, read.error().message};
  }
  if (!read) {
    // Footer and TOC bytes that did not check out must not be read from the cache again.
    if (read.error().code != std::errc::not_supported) layer.blob->discard(0, layer.blob->size());
    // The parser's and the blob's messages name offsets and entries; say which layer too.
    const auto& message = read.error().message;
    if (message.find(layer.name) != std::string::npos) return std::move(read).error();
    return read.error().with_context(fmt::format("cannot open {} by its TOC", layer.name));
  }
  Toc toc = std::move(read).value();
  OCIFS_TRY(recover_names(layer, format, toc));
  // Files' data laid end to end: the offsets the index and the reader share.
  LayerIndex index;
  EntryAdmission admission(layer.name, layer.budget.get());
  std::vector<compress::Chunk> chunks;
  std::uint64_t end = 0;
  for (TocFile& file : toc.entries) {
    file.data_offset = end;
    file.stored_size = file.kind == EntryKind::regular ? file.size : 0;
    // Each size is below 2^63 (the parser's bound), their sum is not: the same bound as a tar.
    if (file.stored_size > limits::kMaxDecodedLayerBytes - end) {
      return make_error(
          std::errc::file_too_large,
          "cannot open {} by its TOC: its files up to '{}' (entry {}) hold more than {} bytes, the "
          "limit for a layer",
          layer.name, util::shown(file.path), file.toc_index, limits::kMaxDecodedLayerBytes);
    }
    OCIFS_TRY(admission.admit(file));
    for (const TocChunk& c : file.chunks) {
      // A data chunk is decoded whole in memory on a read (a zeros chunk never is): a larger one
      // makes the layer be scanned instead, as for a chunk without a digest.
      if (!c.zeros && (c.size > limits::kMaxChunkBytes || c.inner_offset > limits::kMaxChunkBytes)) {
        return make_error(
            std::errc::not_supported,
            "cannot open {} by its TOC: the chunk at offset {} of '{}' (entry {}) has {} bytes after "
            "{} (limit {} each)",
            layer.name, c.file_offset, util::shown(file.path), file.toc_index, c.size, c.inner_offset,
            limits::kMaxChunkBytes);
      }
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
  opened.index_source = "toc";
  opened.landmark_end = toc.prefetch_landmark_offset;
  return opened;
}

}  // namespace ocifs::layer
