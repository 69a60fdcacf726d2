// The low-level op table. Each handler decodes the request, asks the core, replies.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

namespace ocifs::fuse {

const fuse_lowlevel_ops& operations();

}  // namespace ocifs::fuse
