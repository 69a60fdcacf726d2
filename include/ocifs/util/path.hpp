// Paths inside an image: the one normal form every parser and lookup uses ("a/b": no leading,
// trailing or doubled "/", no "." components; "" is the root), and what makes a name from an
// image unusable as a path. Pure functions: thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "ocifs/util/result.hpp"

namespace ocifs::util {

// What a ".." component means to the caller.
enum class DotDot {
  // An error: an entry's own name or a hard link target must not climb (tar, TOC entries).
  refuse,
  // Steps up one component, never above the root: a symlink target followed inside an archive.
  resolve,
};

// Why `name` cannot be handed to the kernel as a path or link target, if it cannot: longer than
// PATH_MAX, or a NUL byte (the kernel would cut it there; a name starting with one would make its
// directory unlistable). The reason reads after the name: "it contains a NUL byte".
std::optional<std::string> path_problem(std::string_view name);

// `raw` in normal form: "./a//b/" and "/a/b" are "a/b"; "", "/", "." and "./" are "" (the root).
// Refused, with a reason that reads after the name as path_problem's does: what path_problem
// refuses, a component longer than NAME_MAX, and (DotDot::refuse) a ".." component.
Result<std::string> normalise_path(std::string_view raw, DotDot dotdot = DotDot::refuse);

}  // namespace ocifs::util
