// A libfuse session for MountOptions: what the supervisor mounts with (device.cpp) and what a
// server serves with (fuse_server.cpp) take the same options, so they are built in one place.
#pragma once

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

#include <string>
#include <vector>

#include "ocifs/fuse/fuse_server.hpp"

namespace ocifs::fuse {

// nullptr when libfuse refuses the options.
inline fuse_session* new_session(const MountOptions& options, const fuse_lowlevel_ops& ops, void* userdata) {
  std::vector<std::string> args = {"ocifs", "-o", mount_option_string(options)};
  if (options.debug) args.push_back("-d");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  fuse_session* session = fuse_session_new(&fargs, &ops, sizeof ops, userdata);
  fuse_opt_free_args(&fargs);
  return session;
}

}  // namespace ocifs::fuse
