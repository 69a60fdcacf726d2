// Lazy-pull TOCs, where they are in the blob: eStargz footers and the zstd:chunked position
// annotation (formats in lazy_toc.hpp), and the entry points that hand the TOC JSON to its parser
// (toc_json.cpp: the JSON; toc_builder.cpp: the checks).
#include "ocifs/layer/lazy_toc.hpp"

#include <algorithm>
#include <array>
#include <charconv>

#include "ocifs/util/text.hpp"
#include "toc_entry.hpp"
#include "toc_json.hpp"

namespace ocifs::layer {

namespace {

// A zstd skippable frame header: magic (4) + LE32 length (4).
constexpr std::uint64_t kSkippableHeader = 8;

std::uint8_t byte_at(std::span<const std::byte> b, std::size_t i) { return static_cast<std::uint8_t>(b[i]); }

std::string_view text_at(std::span<const std::byte> b, std::size_t offset, std::size_t size) {
  return std::string_view(reinterpret_cast<const char*>(b.data()) + offset, size);
}

// The gzip header up to XLEN: magic, deflate, FLG with FEXTRA and no FNAME/FCOMMENT/FHCRC or
// reserved bits (they would move the Extra field), then XLEN.
std::optional<std::string> check_gzip_header(std::span<const std::byte> f, std::uint16_t xlen) {
  if (byte_at(f, 0) != 0x1f || byte_at(f, 1) != 0x8b || byte_at(f, 2) != 8) return "no gzip header";
  std::uint8_t flags = byte_at(f, 3);
  if ((flags & 0x04) == 0 || (flags & 0xfe & ~0x04) != 0) {
    return fmt::format("gzip flags 0x{:02x} are not FEXTRA alone", flags);
  }
  std::uint16_t got = static_cast<std::uint16_t>(byte_at(f, 10) | (byte_at(f, 11) << 8));
  if (got != xlen) return fmt::format("gzip Extra field of {} bytes, not {}", got, xlen);
  return std::nullopt;
}

// "%016x" then "STARGZ" at `at`.
std::optional<std::string> read_offset(std::span<const std::byte> f, std::size_t at, std::uint64_t& out) {
  if (text_at(f, at + 16, 6) != "STARGZ") return "no STARGZ magic";
  out = 0;
  for (std::size_t i = 0; i < 16; ++i) {
    char c = static_cast<char>(byte_at(f, at + i));
    int v = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (v < 0) {
      // Shown escaped: the bytes are the blob's, not text.
      return fmt::format("TOC offset {:?} is not 16 hex digits", text_at(f, at, 16));
    }
    out = out << 4 | static_cast<std::uint64_t>(v);
  }
  return std::nullopt;
}

std::optional<std::string> parse_footer_51(std::span<const std::byte> f, std::uint64_t& offset) {
  if (auto e = check_gzip_header(f, 26)) return e;
  if (byte_at(f, 12) != 'S' || byte_at(f, 13) != 'G') return "Extra subfield is not 'SG'";
  if (byte_at(f, 14) != 22 || byte_at(f, 15) != 0) return "'SG' subfield is not 22 bytes";
  return read_offset(f, 16, offset);
}

std::optional<std::string> parse_footer_47(std::span<const std::byte> f, std::uint64_t& offset) {
  if (auto e = check_gzip_header(f, 22)) return e;
  return read_offset(f, 12, offset);
}

bool is_external_toc_footer(std::span<const std::byte> f) {
  constexpr std::string_view kMagic = "STARGZEXTERNALTOC";
  return !check_gzip_header(f, 21) && text_at(f, 16, kMagic.size()) == kMagic;
}

}  // namespace

Result<EstargzFooter> decode_estargz_footer(std::span<const std::byte> tail, std::uint64_t blob_size) {
  auto bad = [&](std::string_view reason) {
    return make_error(std::errc::io_error, "cannot read the eStargz footer of a {}-byte blob: {}", blob_size,
                      reason);
  };
  if (tail.size() > blob_size) {
    return make_error(std::errc::invalid_argument,
                      "cannot read the eStargz footer: {} bytes of tail but the blob has {}", tail.size(),
                      blob_size);
  }
  if (tail.size() < kLegacyStargzFooterSize) {
    return bad(fmt::format("{} bytes are too few for a footer", tail.size()));
  }
  EstargzFooter footer;
  std::optional<std::string> why51;
  if (tail.size() >= kEstargzFooterSize) {
    why51 = parse_footer_51(tail.last(kEstargzFooterSize), footer.toc_offset);
    if (!why51) footer.size = kEstargzFooterSize;
  }
  if (footer.size == 0) {
    auto why47 = parse_footer_47(tail.last(kLegacyStargzFooterSize), footer.toc_offset);
    if (why47) {
      if (is_external_toc_footer(tail.last(46)))
        return bad("its TOC is kept in a separate image (not supported)");
      return bad(why51 ? fmt::format("{} (legacy 47-byte footer: {})", *why51, *why47) : *why47);
    }
    footer.size = kLegacyStargzFooterSize;
    footer.legacy = true;
  }
  if (footer.toc_offset >= blob_size - footer.size) {
    return bad(fmt::format("TOC offset {} is not before the {}-byte footer at {}", footer.toc_offset,
                           footer.size, blob_size - footer.size));
  }
  return footer;
}

bool has_stargz_footer(const io::BlobSource& blob) {
  const std::uint64_t size = blob.size();
  if (size < kLegacyStargzFooterSize) return false;
  std::array<std::byte, kEstargzFooterSize> tail{};
  const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(size, tail.size()));
  if (!blob.read_exact(size - n, std::span(tail).first(n))) return false;
  return decode_estargz_footer(std::span(tail).first(n), size).ok();
}

bool is_stargz_metadata(std::string_view path) {
  return path == toc::kTocName || path == toc::kPrefetchLandmark || path == toc::kNoPrefetchLandmark;
}

Result<std::uint64_t> parse_estargz_footer(std::span<const std::byte> tail, std::uint64_t blob_size) {
  OCIFS_ASSIGN(EstargzFooter footer, decode_estargz_footer(tail, blob_size));
  return footer.toc_offset;
}

Result<ZstdChunkedPosition> parse_zstd_chunked_position(std::string_view annotation, std::uint64_t blob_size,
                                                        const TocLimits& limits) {
  auto bad = [&](std::string_view reason) {
    return make_error(std::errc::io_error, "cannot parse the zstd:chunked manifest position '{}': {}",
                      util::shown(annotation), reason);
  };
  std::array<std::uint64_t, 4> v{};
  std::string_view rest = annotation;
  for (std::size_t i = 0; i < v.size(); ++i) {
    std::size_t colon = rest.find(':');
    if ((i + 1 < v.size()) == (colon == std::string_view::npos))
      return bad("not four numbers separated by ':'");
    std::string_view part = rest.substr(0, colon);
    if (part.empty() || !std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; }))
      return bad("not four numbers separated by ':'");
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), v[i]);
    if (ec != std::errc() || ptr != part.data() + part.size()) return bad("a number is out of range");
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
  }
  ZstdChunkedPosition pos{v[0], v[1], v[2]};
  if (v[3] != 1) return bad(fmt::format("manifest type {} (only 1 is known)", v[3]));
  if (pos.offset < kSkippableHeader) return bad("the offset leaves no room for the skippable frame header");
  if (pos.length == 0 || pos.offset > blob_size || pos.length > blob_size - pos.offset) {
    return bad(fmt::format("the manifest is not inside the {}-byte blob", blob_size));
  }
  if (pos.length > limits.max_json_size || pos.uncompressed_length > limits.max_json_size) {
    return make_error(
        std::errc::file_too_large,
        "cannot parse the zstd:chunked manifest position '{}': the manifest is larger than {} bytes",
        util::shown(annotation), limits.max_json_size);
  }
  return pos;
}

Result<Toc> parse_estargz_toc(std::string_view toc_json, std::uint64_t toc_offset, std::uint64_t blob_size,
                              std::string_view layer_name, const TocLimits& limits) {
  if (toc_offset >= blob_size) {
    return make_error(std::errc::io_error,
                      "cannot parse eStargz TOC of {}: TOC offset {} is past the {}-byte blob", layer_name,
                      toc_offset, blob_size);
  }
  return toc::parse_toc(toc::Format::estargz, toc_json, toc_offset, layer_name, limits);
}

Result<Toc> parse_zstd_chunked_manifest(std::string_view json, std::uint64_t manifest_offset,
                                        std::uint64_t blob_size, std::string_view layer_name,
                                        const TocLimits& limits) {
  if (manifest_offset < kSkippableHeader || manifest_offset > blob_size) {
    return make_error(
        std::errc::io_error,
        "cannot parse zstd:chunked manifest of {}: manifest offset {} is not inside the {}-byte blob "
        "after its frame header",
        layer_name, manifest_offset, blob_size);
  }
  return toc::parse_toc(toc::Format::zstd_chunked, json, manifest_offset - kSkippableHeader, layer_name,
                        limits);
}

}  // namespace ocifs::layer
