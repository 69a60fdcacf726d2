// Where a lazily pulled layer's TOC is: the eStargz footer (51 bytes, or 47 for legacy stargz)
// and the zstd:chunked manifest-position annotation. Whatever they say must lie inside the blob.
//
// Input: u8 which (bit 0: annotation), u40 bytes of blob before the tail (so a footer can point
// far), then the blob's last bytes (or the annotation text).
// libfuzzer: -max_len=4096
#include <string>

#include "ocifs/layer/lazy_toc.hpp"
#include "support.hpp"

using namespace ocifs;
using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Input in(data, size);
  const bool annotation = in.u8() & 1;
  const std::uint64_t before = in.number(5);
  const std::string_view rest = in.rest();
  const std::uint64_t blob_size = before + rest.size();
  if (!annotation) {
    auto footer = layer::decode_estargz_footer(fuzz::as_bytes(rest), blob_size);
    if (!footer.ok()) return 0;
    check(footer->size == (footer->legacy ? layer::kLegacyStargzFooterSize : layer::kEstargzFooterSize),
          "footer of {} bytes", footer->size);
    check(footer->size <= blob_size && footer->toc_offset < blob_size - footer->size,
          "TOC offset {} of a {}-byte blob with a {}-byte footer", footer->toc_offset, blob_size,
          footer->size);
    auto offset = layer::parse_estargz_footer(fuzz::as_bytes(rest), blob_size);
    check(offset.ok() && *offset == footer->toc_offset, "parse_estargz_footer disagrees");
    return 0;
  }
  auto position = layer::parse_zstd_chunked_position(rest, blob_size);
  if (!position.ok()) return 0;
  check(position->offset >= 8 && position->offset <= blob_size &&
            position->length <= blob_size - position->offset,
        "manifest at {}+{} of a {}-byte blob", position->offset, position->length, blob_size);
  check(position->length <= layer::TocLimits{}.max_json_size &&
            position->uncompressed_length <= layer::TocLimits{}.max_json_size,
        "manifest of {} / {} bytes", position->length, position->uncompressed_length);
  return 0;
}
