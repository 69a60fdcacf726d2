#include "ocifs/util/path.hpp"

#include <vector>

#include "ocifs/util/limits.hpp"

namespace ocifs::util {

std::optional<std::string> path_problem(std::string_view name) {
  if (name.size() > limits::kMaxPathBytes) {
    return fmt::format("it is {} bytes long, longer than {} (PATH_MAX)", name.size(), limits::kMaxPathBytes);
  }
  if (name.find('\0') != std::string_view::npos) return std::string("it contains a NUL byte");
  return std::nullopt;
}

Result<std::string> normalise_path(std::string_view raw, DotDot dotdot) {
  if (auto problem = path_problem(raw)) return Error{std::errc::invalid_argument, std::move(*problem)};
  std::vector<std::string_view> parts;
  for (std::size_t i = 0; i <= raw.size();) {
    std::size_t slash = raw.find('/', i);
    if (slash == std::string_view::npos) slash = raw.size();
    const std::string_view part = raw.substr(i, slash - i);
    i = slash + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (dotdot == DotDot::refuse) return make_error(std::errc::invalid_argument, "it has a '..' component");
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    if (part.size() > limits::kMaxNameBytes) {
      return make_error(std::errc::filename_too_long,
                        "a component of it is {} bytes long, longer than {} (NAME_MAX)", part.size(),
                        limits::kMaxNameBytes);
    }
    parts.push_back(part);
  }
  std::string out;
  out.reserve(raw.size());
  for (auto part : parts) {
    if (!out.empty()) out += '/';
    out += part;
  }
  return out;
}

}  // namespace ocifs::util
