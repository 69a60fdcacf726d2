#include "ocifs/util/result.hpp"

#include <cstring>

namespace ocifs::util {

Error errno_error(int err, std::string_view context) {
  return Error{static_cast<std::errc>(err), fmt::format("{}: {}", context, std::strerror(err))};
}

}  // namespace ocifs::util
