// The TOC JSON shared by eStargz and zstd:chunked, parsed with nlohmann/json's SAX interface into
// a TocBuilder one entry at a time (format in toc_json.cpp). A function on plain values:
// thread-safe.
#pragma once

#include <cstdint>
#include <string_view>

#include "ocifs/layer/lazy_toc.hpp"
#include "ocifs/util/result.hpp"
#include "toc_entry.hpp"

namespace ocifs::layer::toc {

// The Toc of `text`, whose data ends at `data_end` in the blob; `layer` names it in messages.
Result<Toc> parse_toc(Format format, std::string_view text, std::uint64_t data_end, std::string_view layer,
                      const TocLimits& limits);

}  // namespace ocifs::layer::toc
