// TreeBuilder: applies layer indexes bottom-up with the OCI layer rules (whiteouts, opaque
// directories, replacement, hard links, implicit parents) and freezes the result into a Tree.
// The only place that interprets whiteouts. One builder per image; not synchronised.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ocifs/image/tree.hpp"

namespace ocifs::image {

class TreeBuilder {
 public:
  TreeBuilder();
  ~TreeBuilder();
  TreeBuilder(TreeBuilder&&) noexcept;

  // Applies layer number `layer_no` (0 = bottom); `name` names it in warnings. Layers must be
  // applied in order.
  void apply_layer(std::uint16_t layer_no, const layer::LayerIndex& index, std::string_view name = {});
  Tree build() &&;

 private:
  struct Node;  // an inode while building
  using Children = std::map<std::string, std::uint32_t, std::less<>>;

  std::uint32_t new_node();
  std::uint32_t ensure_dir(std::string_view path, std::uint16_t layer_no);
  std::optional<std::uint32_t> find(std::string_view path) const;
  void unlink(std::uint32_t dir, Children::iterator child);
  void remove_all_children(std::uint32_t dir);
  void set_attributes(std::uint32_t node, std::uint16_t layer_no, const layer::LayerIndex& index,
                      const layer::IndexEntry& entry);
  void add_entry(std::uint16_t layer_no, const layer::LayerIndex& index, const layer::IndexEntry& entry,
                 std::string_view name);

  std::vector<Node> nodes_;
};

}  // namespace ocifs::image
