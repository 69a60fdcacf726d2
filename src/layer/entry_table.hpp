// Building a LayerIndex's entry table from a tar walk or a TOC, within util/limits.hpp. Shared by
// the verified scan, the header walk and the TOC reader, so all give the same table for the same
// tar and meet the same limits.
#pragma once

#include <string_view>

#include "ocifs/layer/layer_index.hpp"
#include "ocifs/layer/metadata_budget.hpp"
#include "ocifs/layer/tar_walker.hpp"

namespace ocifs::layer {

// Admits entries one at a time against the limits, and the image's budget when there is one.
// One per layer being indexed; not synchronised (the budget is).
class EntryAdmission {
 public:
  EntryAdmission(std::string_view layer_name, MetadataBudget* budget)
      : layer_name_(layer_name), budget_(budget) {}
  // An error naming the layer, the entry and the limit when adding `entry` would pass one.
  Result<void> admit(const TarEntry& entry);

 private:
  std::string_view layer_name_;
  MetadataBudget* budget_;
  MetadataUse layer_;  // what this layer holds so far
};

// Every entry `walker` yields, in order, admitted against the limits and `budget` (may be null).
Result<LayerIndex> index_entries(TarWalker& walker, std::string_view layer_name, MetadataBudget* budget);

// The same entries in the same order but those whose path `skip` names; the seek index, block
// digests and digest are carried over.
LayerIndex without_entries(const LayerIndex& index, bool (*skip)(std::string_view path));

}  // namespace ocifs::layer
