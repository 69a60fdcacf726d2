// TarWalker: reads tar headers from a decoded layer stream in order and reports entries with
// their data offsets, skipping the data itself. Handles ustar, PAX x/g headers, GNU L/K long
// names, base-256 numbers, GNU sparse 0.0/0.1/1.0 and old GNU sparse headers.
// One per stream; not synchronised.
#pragma once

#include <optional>
#include <string>

#include "ocifs/compress/stream_decoder.hpp"
#include "ocifs/layer/tar_entry.hpp"

namespace ocifs::layer {

class TarWalker {
 public:
  // `name` names the layer in errors and warnings ("layer sha256:ab12…").
  TarWalker(compress::StreamDecoder& stream, std::string name);

  // The next entry, or nullopt at the end of the archive (two zero blocks, or the end of the
  // stream right after a complete entry). Corrupt headers, bad checksums, absurd sizes and
  // streams that end inside an entry are errors naming the layer, the entry and the offset.
  // Entries with ".." components are skipped with a warning.
  Result<std::optional<TarEntry>> next();

 private:
  compress::StreamDecoder& stream_;
  std::string name_;
  std::uint64_t pending_skip_ = 0;  // data + padding of the previous entry still to skip
  std::string global_pax_path_;     // unused by images, kept only to ignore it safely
  bool done_ = false;
};

}  // namespace ocifs::layer
