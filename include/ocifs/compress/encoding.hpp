// Encoding of a layer blob, detected from its first bytes (magic numbers beat media types:
// docker-save layers are plain tar whatever they are called).
#pragma once

#include <string_view>

#include "ocifs/io/blob_source.hpp"

namespace ocifs::compress {

enum class Encoding : unsigned char { tar = 0, gzip = 1, zstd = 2 };

// gzip `1f 8b 08`, zstd `28 b5 2f fd`, anything else is taken to be tar.
Result<Encoding> detect_encoding(const io::BlobSource& source);
std::string_view to_string(Encoding encoding);

}  // namespace ocifs::compress
