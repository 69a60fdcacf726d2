// TarWalker: reads tar headers from a decoded layer stream in order and reports entries with
// their data offsets, skipping the data itself. Handles ustar, PAX x/g headers, GNU L/K long
// names, base-256 numbers, GNU sparse 0.0/0.1/1.0 and old GNU sparse headers.
// One per stream; not synchronised.
//
// Limits against hostile input (util/limits.hpp; all errors, never large allocations): a PAX or
// GNU long-name payload above 1 MiB, a GNU sparse map above 1 Mi extents, data reaching past
// 1 TiB of decoded stream. A name that cannot be served — a path or link target above 4096 bytes
// (PATH_MAX), a component above 255 (NAME_MAX), a NUL byte anywhere in it — makes its entry be
// skipped with a warning like a ".." entry (never shown cut short); the stream framing is intact,
// so the rest of the layer is still usable. Xattrs Linux cannot hold are dropped with a warning.
// Names in messages are escaped (util::shown).
// Types 2-6 carry no data whatever their size field says (POSIX); a hard link carries data only
// when its size is non-zero (PAX allows that). Types '0' and '7' are regular files whatever their
// name ends with; only type NUL with a trailing slash is a (V7) directory, its data skipped.
// Unknown types are skipped with a warning.
#pragma once

#include <array>
#include <cstddef>
#include <optional>
#include <string>
#include <vector>

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
  struct Extensions;  // PAX x / GNU L K state collected for the next entry
  using Block = std::array<std::byte, 512>;

  Result<std::size_t> read_full(std::span<std::byte> out);
  Result<void> skip_pending();
  void set_pending(std::uint64_t data_size);
  // Reads the next header block; nullopt at the end of the archive.
  Result<std::optional<Block>> read_header(const Extensions& ext);
  Result<std::string> read_payload(const Block& header, std::uint64_t header_offset, char type);
  // Builds the entry for a non-extension header; nullopt if the entry is to be skipped.
  Result<std::optional<TarEntry>> make_entry(const Block& header, std::uint64_t header_offset, Extensions& ext);
  Result<void> read_old_gnu_sparse(const Block& header, TarEntry& entry, std::uint64_t& stored_remaining);
  Result<void> read_sparse_map_1_0(TarEntry& entry, std::uint64_t& stored_remaining);
  Result<void> check_sparse(TarEntry& entry, std::uint64_t stored);

  compress::StreamDecoder& stream_;
  std::string name_;
  std::uint64_t pending_data_ = 0;    // data of the previous entry still to skip
  std::size_t pending_padding_ = 0;  // then its padding to the next block
  std::string global_pax_path_;     // unused by images, kept only to ignore it safely
  bool done_ = false;
  // The entry whose data is being skipped, for messages when the stream ends inside it.
  std::string prev_path_;
  std::uint64_t prev_header_offset_ = 0;
  std::uint64_t prev_data_end_ = 0;
};

}  // namespace ocifs::layer
