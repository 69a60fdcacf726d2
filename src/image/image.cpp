#include "ocifs/image/image.hpp"

#include <atomic>
#include <thread>

#include <spdlog/spdlog.h>

#include "ocifs/cache/blob_cache.hpp"
#include "ocifs/image/tree_builder.hpp"
#include "ocifs/layer/toc_layer.hpp"
#include "ocifs/util/thread_boundary.hpp"

namespace ocifs::image {

Image::~Image() {
  for (auto& verifier : verifiers_) verifier.request_stop();  // all at once; the members join them
  if (spans_) spans_->stop();
  if (record_to_ && content_) {
    if (auto order = content_->read_order(); !order.empty()) {
      if (auto written = record_to_->write_access_record(resolved_.manifest_descriptor.digest, order); !written) {
        spdlog::info("cannot keep the files this mount read: {}", written.error().message);
      }
    }
  }
}

Result<std::unique_ptr<Image>> Image::open(const oci::ImageRef& ref, const cache::Cache& cache,
                                           const OpenOptions& options) {
  std::unique_ptr<Image> image(new Image());
  OCIFS_ASSIGN(image->resolved_, resolve_image(ref, options.resolve));
  if (options.on_resolved) options.on_resolved(image->resolved_);
  // One budget for what all the layers' indexes hold (util/limits.hpp), charged as they are built.
  auto budget = std::make_shared<layer::MetadataBudget>();
  for (auto& blob : image->resolved_.layers) blob.budget = budget;
  const auto& blobs = image->resolved_.layers;
  if (blobs.size() > UINT16_MAX) {
    return make_error(std::errc::invalid_argument, "cannot mount {}: {} layers is more than {}", image->resolved_.name,
                      blobs.size(), UINT16_MAX);
  }

  // Remote layers without an index are fetched whole: start them all now, so the network works
  // on every layer while the scans below take them two at a time. Those to be walked are
  // fetched only once the mount is live, and those with a shared index are read by range.
  const bool walk = options.first_open == layer::FirstOpen::walk_uncompressed;
  for (const auto& blob : blobs) {
    if (blob.prefetch && !cache.has_index(blob.digest) && !(walk && blob.declared_uncompressed) &&
        layer::toc_format_of(blob) == layer::TocFormat::none && (!blob.shared_index || blob.verify_shared_index)) {
      blob.prefetch();
    }
  }
  // Index layers in parallel: each is one independent streaming pass (decode + hash), CPU-bound.
  std::vector<std::optional<Result<layer::OpenLayer>>> opened(blobs.size());
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};  // one layer failed: the mount is refused, the rest need not run
  image->spans_ = std::make_shared<compress::SpanCache>(options.span_cache_bytes);  // one budget for all layers
  const auto& spans = image->spans_;
  auto worker = [&] {
    for (std::size_t i; !failed && (i = next.fetch_add(1)) < blobs.size();) {
      layer::ProgressFn progress;
      if (options.on_progress) progress = [&, i](std::uint64_t bytes) { options.on_progress(i, bytes); };
      if (auto escaped = util::catch_all(fmt::format("open {}", blobs[i].name), [&] {
            opened[i] = layer::open_layer(blobs[i], cache, progress, spans, options.first_open);
          })) {
        opened[i] = std::move(*escaped);  // that layer fails, and with it the mount
      }
      if (!opened[i]->ok()) failed = true;
    }
  };
  unsigned jobs = options.jobs ? options.jobs : std::max(1u, std::thread::hardware_concurrency());
  jobs = static_cast<unsigned>(std::min<std::size_t>(jobs, blobs.size()));
  std::vector<std::jthread> threads;
  for (unsigned t = 1; t < jobs; ++t) threads.emplace_back(worker);
  worker();
  threads.clear();  // joins

  TreeBuilder builder;
  std::vector<compress::SeekableReaderPtr> readers;
  std::vector<std::string> names;
  for (auto& layer : opened) {
    if (layer && !layer->ok()) return std::move(*layer).error();
  }
  for (std::size_t i = 0; i < blobs.size(); ++i) {
    auto& layer = opened[i]->value();
    const auto& seek = layer.index->seek_index();
    image->layers_.push_back({blobs[i].digest, seek.encoding, seek.compressed_size, seek.decoded_size,
                              layer.index->size(), layer.from_cache,
                              seek.encoding == compress::Encoding::zstd && !seek.zstd_spilled,
                              layer.index_source == "walk", layer.toc_format, layer.index_source});
    OCIFS_TRY(builder.apply_layer(static_cast<std::uint16_t>(i), *layer.index, blobs[i].name));
    readers.push_back(layer.reader);
    image->gates_.push_back(layer.gate);
    image->read_errors_.push_back(layer.read_errors);
    names.push_back(blobs[i].name);
  }
  image->tree_ = std::move(builder).build();
  for (auto& layer : opened) layer->value().index.reset();  // the tree has what it needs; entry tables go
  image->content_ = std::make_unique<ContentReader>(image->tree_, std::move(readers), std::move(names));
  std::optional<std::vector<std::uint32_t>> record;
  if (options.record_access || options.prefetch != PrefetchMode::none) {
    auto read = cache.read_access_record(image->resolved_.manifest_descriptor.digest);
    if (read) record = std::move(read).value();
  }
  if (options.record_access && !record) image->record_to_ = cache;
  if (options.prefetch != PrefetchMode::none) {
    std::vector<std::optional<std::uint64_t>> landmarks;
    std::vector<std::vector<layer::ReadFirst>> read_first;
    for (auto& layer : opened) {
      landmarks.push_back(layer->value().landmark_end);
      read_first.push_back(std::move(layer->value().read_first));
    }
    const auto& blob_cache = options.resolve.blob_cache;
    auto ranges = prefetch_plan(image->tree_, *image->content_, record.value_or(std::vector<std::uint32_t>{}),
                                read_first, image->resolved_.layers, landmarks, options.prefetch,
                                blob_cache ? blob_cache->max_bytes() : 0);
    if (!ranges.empty()) image->prefetcher_ = std::make_unique<Prefetcher>(std::move(ranges));
  }
  // Walked layers, and with --shared-index=verify layers opened from a shared index, are verified
  // in the background, all at once: their streams share the link.
  for (auto& layer : opened) {
    if (!layer->value().verify) continue;
    image->verifiers_.emplace_back([verify = std::move(layer->value().verify)](std::stop_token stop) {
      // verify() fails its layer's gate on any error, exceptions included; this is the thread's
      // last line.
      (void)util::catch_all("verify a layer", [&] {
        if (auto verified = verify(stop); !verified && verified.error().code != std::errc::operation_canceled) {
          spdlog::error("{}", verified.error().message);
        }
      });
    });
  }
  return image;
}

}  // namespace ocifs::image
