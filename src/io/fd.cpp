#include "ocifs/io/fd.hpp"

#include <unistd.h>

namespace ocifs::io {

void Fd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

}  // namespace ocifs::io
