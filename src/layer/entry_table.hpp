// Building a LayerIndex's entry table from a tar walk, within the limits its format has. Shared
// by the verified scan and the header walk, so both give the same table for the same tar.
#pragma once

#include <string_view>

#include "ocifs/layer/layer_index.hpp"
#include "ocifs/layer/tar_walker.hpp"

namespace ocifs::layer {

// Every entry `walker` yields, in order; a layer whose names or entry counts would overflow the
// index's u32 tables is refused.
Result<LayerIndex> index_entries(TarWalker& walker, std::string_view layer_name);

// The same entries in the same order but those whose path `skip` names; the seek index, block
// digests and digest are carried over.
LayerIndex without_entries(const LayerIndex& index, bool (*skip)(std::string_view path));

}  // namespace ocifs::layer
