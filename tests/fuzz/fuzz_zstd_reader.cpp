// zstd layers: the scan's decoder and its frame table, ZstdReader / ZstdCursor per frame (or the
// decoded copy of a spilled layer), and decode_units, against each other (decoder_check.hpp).
// libfuzzer: -max_len=131072
#include "decoder_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return ocifs::fuzz::check_decoder(ocifs::compress::Encoding::zstd, data, size);
}
