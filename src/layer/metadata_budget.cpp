#include "ocifs/layer/metadata_budget.hpp"

#include "ocifs/util/limits.hpp"

namespace ocifs::layer {

Result<void> MetadataBudget::check(const MetadataUse& total, std::string_view layer_name, const What& what) {
  auto refuse = [&](std::string_view kind, std::uint64_t have, std::uint64_t limit) {
    return make_error(
        std::errc::file_too_large,
        "cannot index {}: at {} the image holds {} {}, more than the limit of {} (a memory bound: "
        "see 'Limits' in ocifs(1))",
        layer_name, what(), have, kind, limit);
  };
  if (total.entries > limits::kMaxEntriesPerImage)
    return refuse("entries", total.entries, limits::kMaxEntriesPerImage);
  if (total.bytes > limits::kMaxMetadataBytesPerImage) {
    return refuse("bytes of names, link targets and xattrs", total.bytes, limits::kMaxMetadataBytesPerImage);
  }
  if (total.records > limits::kMaxRecordsPerImage) {
    return refuse("xattrs and sparse extents", total.records, limits::kMaxRecordsPerImage);
  }
  return util::success();
}

Result<void> MetadataBudget::charge(const MetadataUse& use, std::string_view layer_name, const What& what) {
  MetadataUse total;
  total.entries = entries_.fetch_add(use.entries, std::memory_order_relaxed) + use.entries;
  total.bytes = bytes_.fetch_add(use.bytes, std::memory_order_relaxed) + use.bytes;
  total.records = records_.fetch_add(use.records, std::memory_order_relaxed) + use.records;
  return check(total, layer_name, what);
}

void MetadataBudget::release(const MetadataUse& use) {
  entries_.fetch_sub(use.entries, std::memory_order_relaxed);
  bytes_.fetch_sub(use.bytes, std::memory_order_relaxed);
  records_.fetch_sub(use.records, std::memory_order_relaxed);
}

MetadataUse MetadataBudget::used() const {
  return {entries_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed),
          records_.load(std::memory_order_relaxed)};
}

}  // namespace ocifs::layer
