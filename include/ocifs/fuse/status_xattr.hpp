// The name `ocifs status` reads the live numbers of a mount by: a getxattr on the mount's root,
// answered by the server (Image::status_json) or, while no server runs, by the supervisor. No
// socket to find, and it works through the overlay of a writable root. It is not listed by
// listxattr, so the tree's xattrs stay exactly the image's.
#pragma once

#include <string_view>

namespace ocifs::fuse {

inline constexpr std::string_view kStatusXattr = "ocifs.status";

}  // namespace ocifs::fuse
