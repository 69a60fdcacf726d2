// TreeBuilder: applies layer indexes bottom-up with the OCI layer rules (whiteouts, opaque
// directories, replacement, hard links, implicit parents) and freezes the result into a Tree.
// The only place that interprets whiteouts. One builder per image; not synchronised.
//
// The indexes applied must outlive the builder (until build() returns): a node refers to its
// entry and a directory entry to its name in the index's string pool, nothing is copied. That
// keeps building at 56 bytes an entry (a 16-byte Node, a 24-byte Link, a hash slot at most half
// full) next to the indexes (56 bytes an entry and the path) and the Tree being frozen (76 and
// the name): 2 million empty files peak at 428 MB, 189 bytes an entry plus the names. The
// builder of version 3 copied every attribute and name into a node and a std::map: 465 bytes an
// entry (3 million empty files peaked at 1.4 GB).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "ocifs/image/tree.hpp"
#include "ocifs/util/result.hpp"

namespace ocifs::image {

class TreeBuilder {
 public:
  TreeBuilder();
  ~TreeBuilder();
  TreeBuilder(TreeBuilder&&) noexcept;

  // Applies layer number `layer_no` (0 = bottom); `name` names it in warnings and errors. Layers
  // must be applied in order, each once. An image whose tree would need more inodes than
  // limits::kMaxEntriesPerImage (implicit parent directories included) is refused.
  Result<void> apply_layer(std::uint16_t layer_no, const layer::LayerIndex& index,
                           std::string_view name = {});
  Tree build() &&;

 private:
  static constexpr std::uint32_t kNone = UINT32_MAX;
  struct Node;  // an inode while building
  struct Link;  // a directory entry while building

  // The name of a link, in its layer's string pool.
  std::string_view name_of(const Link& link) const;
  Result<std::uint32_t> new_node(std::uint16_t layer, std::uint32_t entry, bool dir);
  // Adds a link `name` (a view into the string pool of layer `layer`) in `dir` to `node`.
  void add_link(std::uint32_t dir, std::string_view name, std::uint16_t layer, std::uint32_t node);
  std::optional<std::uint32_t> find_link(std::uint32_t dir, std::string_view name) const;
  std::optional<std::uint32_t> find(std::string_view path) const;
  Result<std::uint32_t> ensure_dir(std::string_view path, std::uint16_t layer_no);
  // Drops one directory entry. The node goes with its last name; a directory takes its subtree
  // with it, which releases the names its descendants held (hard-link siblings elsewhere keep
  // the inode alive).
  void unlink(std::uint32_t link);
  void remove_all_children(std::uint32_t dir);
  // Takes a link out of its directory and the hash table; its node loses a name, nothing more.
  void detach(std::uint32_t link);
  Result<void> add_entry(std::uint16_t layer_no, const layer::LayerIndex& index, std::uint32_t entry_no,
                         std::string_view layer_name);
  // The hash table of live links by (directory, name): open addressing over link numbers.
  std::size_t slot_of(std::uint32_t dir, std::string_view name) const;
  void grow_table();

  std::vector<const layer::LayerIndex*> layers_;  // by layer number
  std::vector<Node> nodes_;                       // node 0 is the root
  std::vector<Link> links_;
  std::vector<std::uint32_t> table_;  // link numbers, kNone (empty) or kTombstone
  std::size_t table_used_ = 0;        // live and tombstone slots
  std::string_view layer_name_;       // of the layer being applied, for errors
};

}  // namespace ocifs::image
