// Image::status_json: the numbers behind `ocifs status`, read from the live layers.
#include <nlohmann/json.hpp>

#include "ocifs/cache/cached_blob_source.hpp"
#include "ocifs/image/image.hpp"

namespace ocifs::image {

std::string Image::status_json() const {
  nlohmann::json layers = nlohmann::json::array();
  for (std::size_t i = 0; i < layers_.size(); ++i) {
    const LayerInfo& info = layers_[i];
    nlohmann::json layer = {
        {"index", i + 1},
        {"digest", info.digest},
        {"format", info.toc_format.empty() ? std::string(compress::to_string(info.encoding)) : info.toc_format},
        {"size", info.compressed_size},
        {"decoded_size", info.decoded_size},
        {"entries", info.entries},
        {"index_from_cache", info.from_cache},
        {"walked", info.walked},
        {"index_source", info.index_source},
        {"state", "ready"},
    };
    if (const auto& gate = gates_[i]; gate && !gate->is_open()) {
      if (auto failure = gate->failure()) {
        layer["state"] = "failed";
        layer["error"] = failure->message;
      } else {
        layer["state"] = "verifying";
      }
    }
    // Reads of this layer's files that failed: a deadline that passed, a fetch that failed, bytes
    // that did not match their digest.
    auto failures = content_->failures(i);
    layer["read_errors"] = failures.errors;
    layer["read_timeouts"] = failures.timeouts;
    if (!failures.last_error.empty()) layer["last_read_error"] = failures.last_error;
    // Bytes that no longer match the digests the layer was verified with: the blob is damaged
    // (or a registry keeps serving bad bytes), and those reads got EIO.
    if (const auto& errors = read_errors_[i]) {
      auto seen = errors->snapshot();
      layer["verify_errors"] = seen.count;
      if (seen.count > 0) {
        layer["state"] = "failed";
        layer["error"] = seen.last;
      }
    }
    // Registry layers live in the blob cache, which counts what it serves and fetches.
    const auto* cached = dynamic_cast<const cache::CachedBlobSource*>(resolved_.layers[i].blob.get());
    layer["source"] = cached ? "registry" : "local";
    if (cached) {
      auto p = cached->progress();
      layer["cached"] = p.present;
      layer["fetched"] = p.fetched + p.streamed;
      layer["reads"] = p.reads;
      layer["cache_hits"] = p.hits;
      layer["fetch_errors"] = p.fetch_errors;
    }
    layers.push_back(std::move(layer));
  }
  nlohmann::json status = {
      {"image", resolved_.name},
      {"manifest", resolved_.manifest_descriptor.digest},
      {"prefetch", !prefetcher_ ? "none" : prefetcher_->done() ? "done" : "running"},
      {"layers", std::move(layers)},
  };
  return status.dump();
}

}  // namespace ocifs::image
