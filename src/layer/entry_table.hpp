// Building a LayerIndex's entry table from a tar walk, within the limits its format has. Shared
// by the verified scan and the header walk, so both give the same table for the same tar.
#pragma once

#include <string_view>

#include "ocifs/layer/layer_index.hpp"
#include "ocifs/layer/tar_walker.hpp"

namespace ocifs::layer {

// Every entry `walker` yields, in order, but those `skip` says to leave out; a layer whose names
// or entry counts would overflow the index's u32 tables is refused.
Result<LayerIndex> index_entries(TarWalker& walker, std::string_view layer_name,
                                 bool (*skip)(std::string_view path) = nullptr);

}  // namespace ocifs::layer
