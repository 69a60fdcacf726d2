// gzip layers: the scan's ISA-L decoder and its checkpoints, GzipReader / GzipCursor resuming
// from them, and zlib's decode_units, against each other (decoder_check.hpp).
// libfuzzer: -max_len=131072
#include "decoder_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return ocifs::fuzz::check_decoder(ocifs::compress::Encoding::gzip, data, size);
}
