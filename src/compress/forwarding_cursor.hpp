// ForwardingCursor: the ReadCursor of a reader whose reads cost the same wherever they land
// (DirectReader): it forwards each read. Private to compress/. Not synchronised, like any cursor,
// although the reader it forwards to is.
#pragma once

#include "ocifs/compress/seekable_reader.hpp"

namespace ocifs::compress {

class ForwardingCursor final : public ReadCursor {
 public:
  explicit ForwardingCursor(SeekableReaderPtr reader) : reader_(std::move(reader)) {}
  Result<std::size_t> read_at(std::uint64_t offset, std::span<std::byte> buf) override {
    return reader_->read_at(offset, buf);
  }

 private:
  SeekableReaderPtr reader_;
};

}  // namespace ocifs::compress
