#include "ocifs/util/deadline.hpp"

namespace ocifs::util {

namespace {
thread_local Deadline t_deadline = kNoDeadline;
}  // namespace

Deadline current_deadline() { return t_deadline; }

DeadlineScope::DeadlineScope(Deadline deadline) : previous_(t_deadline) { t_deadline = earliest(previous_, deadline); }

DeadlineScope::~DeadlineScope() { t_deadline = previous_; }

Error deadline_passed(std::string_view what) {
  return make_error(std::errc::timed_out, "cannot {}: no answer within the read deadline", what);
}

}  // namespace ocifs::util
