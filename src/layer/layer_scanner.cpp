// Layer scanning: decode once, walk the tar, verify the digest, persist the index. The raw bytes
// are read ahead and hashed on a thread of their own (ScanSource), the decoder only decodes.
#include "ocifs/layer/layer_scanner.hpp"
#include "ocifs/util/thread_boundary.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "bounded_stream.hpp"
#include "decoded_tee.hpp"
#include "entry_table.hpp"
#include "ocifs/compress/gzip_cursor.hpp"
#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/io/file_source.hpp"
#include "ocifs/io/gated_source.hpp"
#include "ocifs/io/read_errors.hpp"
#include "ocifs/layer/header_walk.hpp"
#include "ocifs/layer/lazy_toc.hpp"
#include "ocifs/layer/tar_walker.hpp"
#include "ocifs/layer/toc_layer.hpp"
#include "ocifs/util/limits.hpp"
#include "scan_source.hpp"

namespace ocifs::layer {

namespace {
// Progress is reported every 4 MiB: ~250 calls per GiB, off the hot path of a terminal line.
constexpr std::uint64_t kReportEvery = 4u << 20;

// A tar error of a layer whose media type promises compression its bytes do not have (they were
// read as a plain tar, as docker-save layers are whatever they are called): the message says so,
// with the first bytes, since the tar error alone ("bad tar header checksum at offset 0") hides
// that the layer is no tar either — compressed another way, or not a layer at all.
Error with_declared_encoding(const LayerBlob& layer, compress::Encoding found, Error error) {
  const bool gzip = layer.media_type.ends_with("gzip");
  if (found != compress::Encoding::tar || (!gzip && !layer.media_type.ends_with("zstd"))) return error;
  std::array<std::byte, 4> head{};
  auto got = layer.blob->read_at(0, head);
  std::size_t n = got ? *got : 0;
  std::string first = n == 0 ? std::string("nothing") : std::string();
  for (std::size_t i = 0; i < n; ++i) {
    first += fmt::format("{}{:02x}", i ? " " : "", std::to_integer<unsigned>(head[i]));
  }
  // Other compressors' magic numbers (xz, bzip2, lz4 frames), named where one matches.
  static constexpr std::pair<std::string_view, std::string_view> kOthers[] = {
      {"\xfd" "7zX", "xz"}, {"BZh", "bzip2"}, {"\x04\x22\x4d\x18", "lz4"}};
  std::string_view bytes(reinterpret_cast<const char*>(head.data()), n);
  for (auto [magic, name] : kOthers) {
    if (bytes.starts_with(magic)) first += fmt::format(" ({})", name);
  }
  std::string_view reason = error.message;
  if (auto prefix = fmt::format("cannot read {}: ", layer.name); reason.starts_with(prefix)) {
    reason.remove_prefix(prefix.size());
  }
  return Error{error.code,
               fmt::format("cannot read {}: its media type {} says {}, but it does not start with the {} magic "
                           "({}): it starts with {}; read as an uncompressed tar: {}",
                           layer.name, layer.media_type, gzip ? "gzip" : "zstd", gzip ? "gzip" : "zstd",
                           gzip ? "1f 8b 08" : "28 b5 2f fd", first, reason)};
}
}  // namespace

ScanSource::ScanSource(io::BlobSourcePtr inner, ProgressFn progress, Options options)
    : inner_(std::move(inner)),
      progress_(std::move(progress)),
      size_(inner_->size()),
      chunk_(std::max<std::size_t>(options.chunk, 1)),
      slots_(static_cast<std::size_t>(std::clamp<std::uint64_t>((size_ + chunk_ - 1) / chunk_, 1,
                                                                std::max<std::size_t>(options.slots, 1)))),
      ring_(new std::byte[slots_ * chunk_]) {
  reader_ = std::thread([this] {
    if (auto escaped = util::catch_all(fmt::format("read ahead in {}", inner_->describe()), [this] { run(); })) {
      std::lock_guard lock(mutex_);  // the scan fails with it, rather than the process
      if (!read_error_) read_error_ = std::move(escaped);
      reader_done_ = true;
      filled_.notify_all();
    }
  });
}

ScanSource::~ScanSource() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  freed_.notify_all();
  if (reader_.joinable()) reader_.join();
}

void ScanSource::run() {
  util::Sha256 whole;
  io::BlockHasher blocks;
  const std::uint64_t slots = slots_;
  for (std::uint64_t k = 0; k * chunk_ < size_; ++k) {
    {
      std::unique_lock lock(mutex_);
      freed_.wait(lock, [&] { return stop_ || drain_ || k - released_ < slots; });
      if (stop_) return;
    }
    // Unlocked: the consumer reads only chunks below produced_, whose slots are not this one.
    auto data =
        std::span(slot(k), static_cast<std::size_t>(std::min<std::uint64_t>(chunk_, size_ - k * chunk_)));
    auto read = inner_->read_exact(k * chunk_, data);
    if (!read) {
      std::lock_guard lock(mutex_);
      read_error_ = std::move(read).error();
      reader_done_ = true;
      filled_.notify_all();
      return;
    }
    whole.update(data);
    blocks.update(data);
    {
      std::lock_guard lock(mutex_);
      ++produced_;
    }
    filled_.notify_all();
  }
  Digests digests{whole.hex_digest(), blocks.finish()};
  std::lock_guard lock(mutex_);
  digests_ = std::move(digests);
  reader_done_ = true;
  filled_.notify_all();
}

Result<std::size_t> ScanSource::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (finished_) return inner_->read_at(offset, buf);
  if (offset < position_) {
    ++direct_reads_;
    return inner_->read_at(offset, buf);
  }
  position_ = offset;  // a jump ahead: the chunks in between are released below, still hashed
  std::size_t copied = 0;
  while (copied < buf.size() && position_ < size_) {
    const std::uint64_t k = position_ / chunk_;
    {
      std::unique_lock lock(mutex_);
      for (;;) {
        if (released_ < k && released_ < produced_) {
          ++released_;  // skipped over
          freed_.notify_one();
          continue;
        }
        if (produced_ > k) break;
        if (reader_done_) {
          if (read_error_) return *read_error_;
          return make_error(std::errc::io_error, "cannot read {} at offset {}: the read-ahead ended early",
                            inner_->describe(), position_);  // a bug: the reader covers the blob
        }
        filled_.wait(lock);
      }
    }
    // Chunk k stays in its slot until released_ passes it, which only this thread does.
    const std::uint64_t chunk_start = k * chunk_;
    const std::uint64_t chunk_end = std::min<std::uint64_t>(chunk_start + chunk_, size_);
    auto n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size() - copied, chunk_end - position_));
    std::memcpy(buf.data() + copied, slot(k) + (position_ - chunk_start), n);
    copied += n;
    position_ += n;
    if (position_ == chunk_end) {
      {
        std::lock_guard lock(mutex_);
        released_ = k + 1;
      }
      freed_.notify_one();
    }
  }
  if (progress_) {
    served_ += copied;
    if (served_ - reported_ >= kReportEvery) {
      reported_ = served_;
      progress_(served_);
    }
  }
  return copied;
}

Result<ScanSource::Digests> ScanSource::finish() {
  finished_ = true;
  {
    std::lock_guard lock(mutex_);
    drain_ = true;
  }
  freed_.notify_all();
  if (reader_.joinable()) reader_.join();
  if (read_error_) return *read_error_;
  if (direct_reads_ > 0) {
    return make_error(std::errc::io_error,
                      "cannot index {}: the blob was not read in order ({} reads went back), so its digest "
                      "does not cover what was decoded",
                      inner_->describe(), direct_reads_);
  }
  return std::move(digests_);
}

void ScanSource::report_final() const {
  if (progress_) progress_(served_);
}

Result<LayerIndex> scan_layer(const LayerBlob& layer, const cache::Cache& cache, const ProgressFn& progress) {
  // Started first: reading ahead overlaps with everything below.
  auto source = std::make_shared<ScanSource>(layer.blob, progress);
  OCIFS_ASSIGN(compress::Encoding encoding, compress::detect_encoding(*layer.blob));
  // The raw bytes are hashed by `source`, which sees every one of them; an uncompressed layer's
  // decoded stream is its raw bytes, so only a compressed one needs a decoded hash for a diff_id.
  const bool decoded_digest = layer.digest_of_decoded && encoding != compress::Encoding::tar;
  compress::ScanOptions options;
  options.hash_compressed = false;
  options.hash_decoded = decoded_digest;
  OCIFS_ASSIGN(auto decoder, compress::make_stream_decoder(encoding, source, options));
  BoundedStream bounded(*decoder, limits::kMaxDecodedLayerBytes, layer.name);

  // A zstd layer may turn out (only at the end) to need its decoded stream kept: write it as we
  // go, within its share of the cache budget, and commit only if the seek index says so and the
  // digest verifies.
  std::unique_ptr<DecodedTee> tee;
  compress::StreamDecoder* stream = &bounded;
  if (encoding == compress::Encoding::zstd) {
    // Without a cache file, a layer of several small frames is still readable per frame.
    if (auto pending = cache.create_decoded(layer.digest); pending) {
      tee = std::make_unique<DecodedTee>(bounded, std::move(pending).value(), cache.decoded_copy_limit(),
                                         layer.name);
      stream = tee.get();
    } else {
      spdlog::warn("cannot keep the decoded stream of {}: {}", layer.name, pending.error().message);
    }
  }

  TarWalker walker(*stream, layer.name);
  auto entries = index_entries(walker, layer.name, layer.budget.get());
  if (!entries) return with_declared_encoding(layer, encoding, std::move(entries).error());
  LayerIndex index = std::move(entries).value();
  OCIFS_ASSIGN(compress::SeekIndex seek, stream->finish());
  OCIFS_ASSIGN(ScanSource::Digests raw, source->finish());
  source->report_final();

  std::string got = "sha256:" + (decoded_digest ? decoder->decoded_sha256() : raw.sha256);
  if (got != layer.digest) {
    return make_error(std::errc::io_error, "cannot verify {}: digest {} does not match {}", layer.name, got,
                      layer.digest);
  }
  if (seek.zstd_spilled) {
    if (!tee) {
      return make_error(
          std::errc::io_error,
          "cannot index {}: its zstd frames need a decoded copy in the cache, which cannot be written",
          layer.name);
    }
    if (!tee->file()) return tee->over_limit();
    auto committed = cache.commit_decoded(*tee->file(), layer.digest, tee->written());
    if (!committed) {
      return std::move(committed).error().with_context(
          fmt::format("cannot keep the decoded stream of {}", layer.name));
    }
  }
  index.blob_blocks() = std::move(raw.blocks);
  if (seek.zstd_spilled) index.decoded_blocks() = tee->block_digests();
  index.seek_index() = std::move(seek);
  index.set_digest(layer.digest);
  // A stargz layer read whole (legacy, or without a TOC digest) hides its TOC and landmarks as a
  // TOC-read one does. Its TOC is the tar's last entry; the footer is read only then, and only
  // now, when the scan has brought the whole blob in (a read ahead of the stream would fetch
  // that chunk twice).
  if (encoding == compress::Encoding::gzip && index.size() > 0 &&
      index.path(index.entries().back()) == "stargz.index.json" && has_stargz_footer(*layer.blob)) {
    index = without_entries(index, &is_stargz_metadata);
  }
  return index;
}

namespace {

Result<OpenLayer> open_reader(const LayerBlob& layer, const cache::Cache& cache,
                              std::shared_ptr<const LayerIndex> index, bool from_cache,
                              const std::shared_ptr<compress::SpanCache>& spans) {
  // Every byte served is checked against the block digests recorded in the verified scan.
  if (!index->blob_blocks().covers(layer.blob->size())) {
    return make_error(std::errc::io_error, "cannot open {}: its index describes a blob of {} bytes, not {}",
                      layer.name, index->blob_blocks().blob_size, layer.blob->size());
  }
  auto errors = std::make_shared<io::ReadErrors>();
  auto blob = std::make_shared<io::VerifiedSource>(layer.blob, index->blob_blocks(), errors);
  io::BlobSourcePtr decoded;
  if (index->seek_index().zstd_spilled) {
    OCIFS_ASSIGN(auto file, io::FileSource::open(cache.decoded_path(layer.digest)));
    if (!index->decoded_blocks().covers(file->size())) {
      return make_error(std::errc::io_error, "cannot open the decoded stream of {}: {} bytes, expected {}",
                        layer.name, file->size(), index->decoded_blocks().blob_size);
    }
    decoded = std::make_shared<io::VerifiedSource>(std::move(file), index->decoded_blocks(), errors);
    cache.touch_decoded(layer.digest);  // in use: the least recently used copies go first
  }
  OCIFS_ASSIGN(auto reader, compress::make_seekable_reader(index->seek_index(), blob, decoded, spans));
  OpenLayer opened{std::move(index), std::move(reader), from_cache};
  opened.read_errors = std::move(errors);
  return opened;
}

// Written in pieces into a temp file, renamed into place: no second copy of the index in memory.
Result<void> store_index(const cache::Cache& cache, std::string_view digest, const LayerIndex& index) {
  OCIFS_ASSIGN(auto file, cache.create_index(digest));
  OCIFS_TRY(index.write([&](std::string_view piece) { return file.write(piece); }));
  return file.commit();
}

Result<std::shared_ptr<const LayerIndex>> scan_and_store(const LayerBlob& layer, const cache::Cache& cache,
                                                         const ProgressFn& progress) {
  if (layer.prefetch) layer.prefetch();  // usually started already, for every layer at once
  auto scanned = scan_layer(layer, cache, progress);
  if (!scanned) {
    // Cached remote bytes that failed verification must not be read again as they are (a scan
    // that was stopped found nothing wrong with them).
    if (scanned.error().code != std::errc::operation_canceled) layer.blob->discard(0, layer.blob->size());
    return std::move(scanned).error();
  }
  LayerIndex index = std::move(scanned).value();
  if (auto written = store_index(cache, layer.digest, index); !written) {
    spdlog::warn("cannot store the index of {}: {} (continuing without it)", layer.name,
                 written.error().message);
  }
  return std::make_shared<const LayerIndex>(std::move(index));
}

// The verified source a walked layer's reads go through, once a scan of the whole blob has
// matched its digest and found the entries the walk found.
Result<io::BlobSourcePtr> verify_walked(const LayerBlob& layer, const cache::Cache& cache,
                                        const std::array<std::uint8_t, 32>& walked_entries,
                                        std::shared_ptr<io::ReadErrors> errors, std::stop_token stop) {
  if (stop.stop_requested()) {
    return make_error(std::errc::operation_canceled, "cannot verify {}: stopped", layer.name);
  }
  LayerBlob stoppable = layer;
  stoppable.blob = std::make_shared<io::StoppableSource>(layer.blob, stop);
  stoppable.budget = nullptr;  // the walk charged these entries already
  OCIFS_ASSIGN(auto index, scan_and_store(stoppable, cache, {}));
  if (index->entries_digest() != walked_entries) {
    // The verified index is stored: the next mount shows the layer as it really is.
    return make_error(std::errc::io_error,
                      "{} does not hold the entries its tar headers showed when the mount went live (the "
                      "registry served different bytes); its files cannot be read until it is mounted again",
                      layer.name);
  }
  if (!index->blob_blocks().covers(layer.blob->size())) {
    return make_error(std::errc::io_error, "cannot open {}: its index describes a blob of {} bytes, not {}",
                      layer.name, index->blob_blocks().blob_size, layer.blob->size());
  }
  return io::BlobSourcePtr(
      std::make_shared<io::VerifiedSource>(layer.blob, index->blob_blocks(), std::move(errors)));
}

Result<OpenLayer> open_walked(const LayerBlob& layer, const cache::Cache& cache, const ProgressFn& progress,
                              const std::shared_ptr<compress::SpanCache>& spans) {
  auto walk = walk_tar_headers(layer, progress);
  if (!walk) return with_declared_encoding(layer, compress::Encoding::tar, std::move(walk).error());
  LayerIndex walked = std::move(walk).value();
  auto gate = std::make_shared<io::GatedSource>(layer.blob->size(), layer.blob->describe());
  OCIFS_ASSIGN(auto reader, compress::make_seekable_reader(walked.seek_index(), gate, nullptr, spans));
  const auto entries = walked.entries_digest();
  OpenLayer opened{std::make_shared<const LayerIndex>(std::move(walked)), std::move(reader), false};
  opened.index_source = "walk";
  opened.gate = gate;
  auto errors = std::make_shared<io::ReadErrors>();
  opened.read_errors = errors;
  opened.verify = [layer, cache, gate, entries, errors](std::stop_token stop) -> Result<void> {
    Result<io::BlobSourcePtr> verified = Error{};
    if (auto escaped = util::catch_all(fmt::format("verify {}", layer.name),
                                       [&] { verified = verify_walked(layer, cache, entries, errors, stop); })) {
      verified = std::move(*escaped);
    }
    if (!verified) {
      gate->fail(verified.error());
      return std::move(verified).error();
    }
    gate->open(std::move(verified).value());
    return util::success();
  };
  return opened;
}

// Checks a shared index against the layer it claims to describe, once the layer has been
// streamed and scanned here (its digest verified): the same entries, the same block digests, the
// same seek table, and every gzip span decoded from the shared checkpoint's state the same as
// from the scan's own checkpoints (a forged state would decode the right compressed bytes into
// other files' contents).
Result<void> check_shared(const LayerBlob& layer, const cache::Cache& cache, const LayerIndex& shared,
                          std::stop_token stop) {
  LayerBlob stoppable = layer;
  stoppable.blob = std::make_shared<io::StoppableSource>(layer.blob, stop);
  stoppable.budget = nullptr;  // the shared index charged these entries already
  OCIFS_ASSIGN(auto local, scan_and_store(stoppable, cache, {}));
  auto mismatch = [&](std::string_view what) {
    return make_error(std::errc::io_error,
                      "the shared index of {} does not describe it: {} differ from a scan of the layer; its files "
                      "cannot be read until it is mounted again (with --shared-index=off to ignore the index)",
                      layer.name, what);
  };
  if (local->entries_digest() != shared.entries_digest()) return mismatch("its entries");
  if (local->blob_blocks().digests != shared.blob_blocks().digests) return mismatch("its block digests");
  const auto& a = local->seek_index();
  const auto& b = shared.seek_index();
  if (a.encoding != b.encoding || a.decoded_size != b.decoded_size || a.compressed_size != b.compressed_size) {
    return mismatch("its sizes");
  }
  if (a.encoding == compress::Encoding::zstd) {
    bool same = a.zstd_frames.size() == b.zstd_frames.size();
    for (std::size_t i = 0; same && i < a.zstd_frames.size(); ++i) {
      const auto &x = a.zstd_frames[i], &y = b.zstd_frames[i];
      same = x.compressed_offset == y.compressed_offset && x.compressed_size == y.compressed_size &&
             x.decoded_offset == y.decoded_offset && x.decoded_size == y.decoded_size;
    }
    if (!same) return mismatch("its zstd frames");
  }
  if (a.encoding != compress::Encoding::gzip) return util::success();
  auto blob = std::make_shared<io::StoppableSource>(layer.blob, stop);
  auto local_seek = std::make_shared<compress::SeekIndex>(a);
  auto shared_seek = std::make_shared<compress::SeekIndex>(b);
  compress::GzipCursor reference(local_seek, blob);
  constexpr std::size_t kPiece = 1u << 20;
  std::vector<std::byte> want(kPiece), got(kPiece);
  for (std::size_t k = 0; k < b.gzip_points.size(); ++k) {
    const std::uint64_t end = k + 1 < b.gzip_points.size() ? b.gzip_points[k + 1].decoded_offset : b.decoded_size;
    compress::GzipCursor from_shared(shared_seek, blob);  // starts at checkpoint k: its state is used
    for (std::uint64_t at = b.gzip_points[k].decoded_offset; at < end; at += kPiece) {
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(kPiece, end - at));
      OCIFS_ASSIGN(auto read_want, reference.read_at(at, std::span(want).first(n)));
      auto read_got = from_shared.read_at(at, std::span(got).first(n));
      if (!read_got || *read_got != read_want || std::memcmp(want.data(), got.data(), n) != 0) {
        return mismatch(fmt::format("the bytes decoded from its checkpoint {} (decoded offset {})", k, at));
      }
    }
  }
  return util::success();
}

// A layer opened from its shared index: like one indexed here, its reads by range checked
// against the index's block digests. With verify_shared_index its tree is shown at once but its
// reads wait, as a walked layer's do, until a scan in the background (OpenLayer::verify) has
// found that the index describes it exactly; otherwise they fail.
Result<OpenLayer> open_shared(const LayerBlob& layer, const cache::Cache& cache,
                              const std::shared_ptr<compress::SpanCache>& spans) {
  std::vector<ReadFirst> read_first;
  OCIFS_ASSIGN(auto loaded, load_shared_index(*layer.shared_index, layer.budget.get(), layer.name, &read_first));
  const MetadataUse use = loaded.use();  // charged by the load; given back if the layer is indexed here instead
  auto refuse = [&](Error error) {
    if (layer.budget) layer.budget->release(use);
    return error;
  };
  if (loaded.digest() != layer.digest) {
    return refuse(make_error(std::errc::invalid_argument, "the shared index {} describes {}, not {}",
                             layer.shared_index->blob->describe(), loaded.digest(), layer.name));
  }
  if (!loaded.blob_blocks().covers(layer.blob->size()) || loaded.seek_index().compressed_size != layer.blob->size()) {
    return refuse(make_error(std::errc::invalid_argument, "the shared index {} describes a blob of {} bytes, not {}",
                             layer.shared_index->blob->describe(), loaded.blob_blocks().blob_size, layer.blob->size()));
  }
  auto index = std::make_shared<const LayerIndex>(std::move(loaded));
  if (!layer.verify_shared_index) {
    auto opened = open_reader(layer, cache, index, false, spans);
    if (!opened) return refuse(std::move(opened).error());
    opened->index_source = "shared";
    opened->read_first = std::move(read_first);
    return opened;
  }
  auto errors = std::make_shared<io::ReadErrors>();
  auto gate = std::make_shared<io::GatedSource>(layer.blob->size(), layer.blob->describe());
  auto reader = compress::make_seekable_reader(index->seek_index(), gate, nullptr, spans);
  if (!reader) return refuse(std::move(reader).error());
  OpenLayer opened{index, std::move(reader).value(), false};
  opened.index_source = "shared";
  opened.gate = gate;
  opened.read_errors = errors;
  opened.verify = [layer, cache, gate, index, errors](std::stop_token stop) -> Result<void> {
    Result<void> checked = util::success();
    if (auto escaped = util::catch_all(fmt::format("verify {}", layer.name),
                                       [&] { checked = check_shared(layer, cache, *index, stop); })) {
      checked = std::move(*escaped);
    }
    if (!checked) {
      gate->fail(checked.error());
      return checked;
    }
    gate->open(std::make_shared<io::VerifiedSource>(layer.blob, index->blob_blocks(), errors));
    return util::success();
  };
  return opened;
}

}  // namespace

Result<OpenLayer> open_layer(const LayerBlob& layer, const cache::Cache& cache, const ProgressFn& progress,
                             const std::shared_ptr<compress::SpanCache>& spans, FirstOpen first_open) {
  // A remote layer built for lazy pulling is read by its TOC, never whole.
  if (auto format = toc_format_of(layer); format != TocFormat::none && !layer.blob->stable()) {
    auto opened = open_toc_layer(layer, format, spans);
    if (opened || opened.error().code != std::errc::not_supported) return opened;
    spdlog::warn("{}; scanning it instead", opened.error().message);
  }
  auto stored = cache.open_index(layer.digest);
  if (!stored) {
    spdlog::warn("cannot read the cached index of {}: {}; rebuilding it", layer.name, stored.error().message);
  } else if (*stored) {
    auto loaded = LayerIndex::load(***stored, layer.budget.get(), layer.name);
    if (!loaded && loaded.error().code == std::errc::file_too_large) {
      return std::move(loaded).error();  // over a limit: rebuilding it would find the same entries
    }
    if (!loaded) {
      spdlog::warn("{}; rebuilding the index of {}", loaded.error().message, layer.name);
    } else if (loaded->digest() != layer.digest) {
      if (layer.budget) layer.budget->release(loaded->use());
      spdlog::warn("cached index of {} describes {}; rebuilding it", layer.name, loaded->digest());
    } else {
      const MetadataUse use = loaded->use();
      auto opened =
          open_reader(layer, cache, std::make_shared<const LayerIndex>(std::move(loaded).value()), true, spans);
      if (opened) opened->index_source = "cache";
      if (opened) return opened;
      if (layer.budget) layer.budget->release(use);  // scanned again below, and charged then
      // E.g. the decoded stream of a zstd layer was evicted: scan again to recreate it.
      spdlog::warn("{}; rescanning {}", opened.error().message, layer.name);
    }
  }
  if (layer.shared_index) {
    auto opened = open_shared(layer, cache, spans);
    if (opened) return opened;
    if (opened.error().code == std::errc::file_too_large) return opened;  // over a limit: so is the layer
    spdlog::warn("{}; indexing {} here instead", opened.error().message, layer.name);
  }
  if (first_open == FirstOpen::walk_uncompressed && !layer.blob->stable()) {
    OCIFS_ASSIGN(auto encoding, compress::detect_encoding(*layer.blob));
    if (encoding == compress::Encoding::tar) return open_walked(layer, cache, progress, spans);
  }
  OCIFS_ASSIGN(auto index, scan_and_store(layer, cache, progress));
  OCIFS_ASSIGN(auto opened, open_reader(layer, cache, std::move(index), false, spans));
  opened.index_source = "scan";
  return opened;
}

}  // namespace ocifs::layer
