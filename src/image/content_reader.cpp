#include "ocifs/image/content_reader.hpp"

#include <algorithm>
#include <cstring>

#include "ocifs/util/deadline.hpp"

namespace ocifs::image {

ContentReader::ContentReader(const Tree& tree, std::vector<compress::SeekableReaderPtr> layers,
                             std::vector<std::string> layer_names)
    : tree_(tree),
      layers_(std::move(layers)),
      layer_names_(std::move(layer_names)),
      read_(new std::atomic<std::uint64_t>[(tree.inode_count() + 63) / 64]()),
      failures_(layers_.size()) {}

void ContentReader::note_failure(std::uint16_t layer, const Error& error) const {
  std::lock_guard lock(failures_mu_);
  auto& f = failures_.at(layer);
  ++f.errors;
  if (error.code == std::errc::timed_out) ++f.timeouts;
  f.last_error = error.message;
}

ContentReader::Failures ContentReader::failures(std::size_t layer) const {
  std::lock_guard lock(failures_mu_);
  return failures_.at(layer);
}

void ContentReader::note_read(std::uint32_t inode) const {
  const std::uint64_t bit = std::uint64_t{1} << (inode % 64);
  if (read_[inode / 64].load(std::memory_order_relaxed) & bit) return;
  if (read_[inode / 64].fetch_or(bit) & bit) return;  // another thread was first
  std::lock_guard lock(order_mu_);
  order_.push_back(inode);
}

std::vector<std::uint32_t> ContentReader::read_order() const {
  std::lock_guard lock(order_mu_);
  return order_;
}

void ContentReader::blob_ranges(std::uint32_t inode, std::vector<compress::BlobRange>& out) const {
  const Inode& node = tree_.inode(inode);
  if (!node.is_regular() || node.size == 0) return;
  std::uint64_t stored = node.size;
  if (auto extents = tree_.sparse(node); !extents.empty()) {
    stored = 0;
    for (const auto& e : extents) stored += e.length;
  }
  layers_.at(node.layer)->blob_ranges(node.data_offset, stored, out);
}

Result<std::size_t> ContentReader::read_stream(const Inode& node, std::uint64_t offset, std::span<std::byte> buf,
                                               OpenFile* file) const {
  const auto& layer = layers_.at(node.layer);
  std::size_t done = 0;
  while (done < buf.size()) {
    Result<std::size_t> n = std::size_t{0};
    if (file) {
      std::unique_lock lock(file->mutex_, std::defer_lock);
      if (!util::lock_until(lock, util::current_deadline())) {
        return util::deadline_passed(fmt::format("read inode {} at offset {}: another read of the same open file "
                                                 "is still waiting",
                                                 file->inode() + 1, offset + done));
      }
      if (!file->cursor_) file->cursor_ = layer->open_cursor();
      n = file->cursor_->read_at(node.data_offset + offset + done, buf.subspan(done));
    } else {
      n = layer->read_at(node.data_offset + offset + done, buf.subspan(done));
    }
    if (!n) return std::move(n).error();
    if (*n == 0) {
      return make_error(std::errc::io_error, "cannot read {} at offset {}: layer stream ends early",
                        layer_names_.at(node.layer), node.data_offset + offset + done);
    }
    done += *n;
  }
  return done;
}

Result<std::size_t> ContentReader::read(std::uint32_t inode, std::uint64_t offset, std::span<std::byte> buf,
                                        OpenFile* file) const {
  const Inode& node = tree_.inode(inode);
  if (!node.is_regular()) return make_error(std::errc::is_a_directory, "cannot read inode {}: not a regular file", inode + 1);
  if (offset >= node.size) return std::size_t{0};
  note_read(inode);
  buf = buf.first(std::min<std::uint64_t>(buf.size(), node.size - offset));
  auto n = read_extents(node, offset, buf, file);
  if (!n) note_failure(node.layer, n.error());
  return n;
}

Result<std::size_t> ContentReader::read_extents(const Inode& node, std::uint64_t offset, std::span<std::byte> buf,
                                                OpenFile* file) const {
  auto extents = tree_.sparse(node);
  if (extents.empty()) return read_stream(node, offset, buf, file);

  // Sparse: extents are the stored runs in logical order; their bytes sit back to back in the
  // stream, so a run's stream offset is the sum of the lengths before it.
  std::memset(buf.data(), 0, buf.size());
  std::uint64_t stored = 0;
  const std::uint64_t end = offset + buf.size();
  for (const auto& extent : extents) {
    std::uint64_t from = std::max(offset, extent.offset);
    std::uint64_t to = std::min(end, extent.offset + extent.length);
    if (from < to) {
      Inode shifted = node;
      shifted.data_offset = node.data_offset + stored;
      OCIFS_TRY(read_stream(shifted, from - extent.offset, buf.subspan(from - offset, to - from), file));
    }
    stored += extent.length;
  }
  return buf.size();
}

}  // namespace ocifs::image
