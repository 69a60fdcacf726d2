// A whole layer opened from its TOC (open_toc_layer, layer/toc_layer.hpp): footer or position,
// the TOC fetched and decoded, checked against the digest the manifest's annotations give, the
// names a TOC cannot spell read back from tar headers, the index and the chunk table built, and
// every file then read through the ChunkedReader. The target computes the annotations from the
// blob as a producer would (so the digest check passes for whatever TOC the blob holds): eStargz
// the sha256 of the TOC JSON found through the footer, zstd:chunked the sha256 of the compressed
// manifest at the position the input names.
//
// Input: u8 flags (bit 0: zstd:chunked, bit 1: the old position annotation key, bit 2: also a
// TOC digest for zstd:chunked), u32 manifest offset, u32 manifest length (zstd:chunked), then
// the blob.
// libfuzzer: -max_len=262144
#include <string>

#include "ocifs/compress/chunked_reader.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/layer/lazy_toc.hpp"
#include "ocifs/layer/tar_walker.hpp"
#include "ocifs/layer/toc_layer.hpp"
#include "ocifs/util/sha256.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

namespace {

const std::string kNoDigest = "sha256:" + std::string(64, '0');

std::string text_of(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

// The JSON of the tar member stargz.index.json in the decoded TOC member, as a producer wrote it.
std::string estargz_toc_json(std::string_view blob) {
  auto footer = layer::decode_estargz_footer(
      fuzz::as_bytes(blob.substr(blob.size() - std::min<std::size_t>(blob.size(), 51))), blob.size());
  if (!footer.ok()) return {};
  auto member = blob.substr(footer->toc_offset, blob.size() - footer->size - footer->toc_offset);
  auto tar = compress::decode_units(compress::ChunkCodec::gzip, fuzz::as_bytes(member), 1u << 20);
  if (!tar.ok()) return {};
  std::string tar_text = text_of(*tar);
  auto source = std::make_shared<fuzz::ViewSource>(tar_text);
  compress::ScanOptions options;
  options.hash = false;
  auto stream = compress::make_stream_decoder(compress::Encoding::tar, source, options);
  if (!stream.ok()) return {};
  layer::TarWalker walker(**stream, "toc");
  for (;;) {
    auto e = walker.next();
    if (!e.ok() || !*e) return {};
    if ((*e)->path == "stargz.index.json") return tar_text.substr((*e)->data_offset, (*e)->size);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const std::uint8_t flags = in.u8();
  const std::uint32_t manifest_offset = in.u32(), manifest_length = in.u32();
  const std::string_view blob = in.rest();
  if (blob.empty()) return 0;

  layer::LayerBlob layer{
      .blob = std::make_shared<fuzz::ViewSource>(blob), .digest = kNoDigest, .name = "layer fuzz"};
  layer::TocFormat format;
  if (!(flags & 1)) {
    format = layer::TocFormat::estargz;
    auto json = estargz_toc_json(blob);
    layer.annotations[std::string(layer::kEstargzTocDigestAnnotation)] =
        json.empty() ? kNoDigest : "sha256:" + util::sha256_hex(json);
  } else {
    format = layer::TocFormat::zstd_chunked;
    const std::uint64_t offset = manifest_offset % blob.size();
    const std::uint64_t length = manifest_length % (blob.size() - offset + 1);
    const auto compressed = blob.substr(offset, length);
    auto json = compress::decode_units(compress::ChunkCodec::zstd, fuzz::as_bytes(compressed), 1u << 20);
    const std::uint64_t uncompressed = json.ok() ? json->size() : manifest_length;
    auto key = (flags & 2) ? layer::kZstdChunkedPositionAnnotationOld : layer::kZstdChunkedPositionAnnotation;
    layer.annotations[std::string(key)] = fmt::format("{}:{}:{}:1", offset, length, uncompressed);
    layer.annotations[std::string(layer::kZstdChunkedChecksumAnnotation)] =
        "sha256:" + util::sha256_hex(compressed);
    if ((flags & 4) && json.ok()) {
      layer.annotations[std::string(layer::kEstargzTocDigestAnnotation)] =
          "sha256:" + util::sha256_hex(text_of(*json));
    }
  }
  check(layer::toc_format_of(layer) == format, "the annotations do not announce the format");

  auto spans = std::make_shared<compress::SpanCache>(4u << 20);
  {
    auto opened = layer::open_toc_layer(layer, format, spans);
    if (opened.ok()) {
      const auto& index = *opened->index;
      check(opened->reader->size() == index.seek_index().decoded_size, "reader size {} of {}",
            opened->reader->size(), index.seek_index().decoded_size);
      std::string buf(64u << 10, '\0');
      std::uint64_t budget = 8u << 20;  // bytes read in all: a TOC may declare huge holes
      for (const auto& e : index.entries()) {
        if (e.kind != layer::EntryKind::regular || e.size == 0) continue;
        check(e.data_offset <= opened->reader->size() && e.size <= opened->reader->size() - e.data_offset,
              "'{}' at {}+{} past the layer's {} bytes", index.path(e), e.data_offset, e.size,
              opened->reader->size());
        for (std::uint64_t at = 0; at < e.size && budget > 0;) {
          auto n = opened->reader->read_at(e.data_offset + at, std::as_writable_bytes(std::span(buf)));
          if (!n.ok()) break;
          check(*n > 0, "a read inside '{}' returns nothing", index.path(e));
          at += *n;
          budget -= std::min<std::uint64_t>(budget, *n);
        }
      }
    }
  }
  spans->stop();
  return 0;
}
