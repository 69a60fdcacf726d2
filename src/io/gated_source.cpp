#include "ocifs/io/gated_source.hpp"

#include "ocifs/util/deadline.hpp"

namespace ocifs::io {

void GatedSource::open(BlobSourcePtr inner) {
  {
    std::lock_guard lock(mu_);
    if (inner_ || error_) return;
    inner_ = std::move(inner);
  }
  cv_.notify_all();
}

void GatedSource::fail(Error error) {
  {
    std::lock_guard lock(mu_);
    if (inner_ || error_) return;
    error_ = std::move(error);
  }
  cv_.notify_all();
}

BlobSourcePtr GatedSource::opened() const {
  std::lock_guard lock(mu_);
  return inner_;
}

bool GatedSource::is_open() const { return opened() != nullptr; }

std::optional<Error> GatedSource::failure() const {
  std::lock_guard lock(mu_);
  return error_;
}

Result<BlobSourcePtr> GatedSource::wait() const {
  std::unique_lock lock(mu_);
  if (!util::wait_within_deadline(cv_, lock, [&] { return inner_ || error_; })) {
    return util::deadline_passed(fmt::format("read {}: its layer is still being verified", name_));
  }
  if (error_) return *error_;
  return inner_;
}

Result<std::size_t> GatedSource::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  OCIFS_ASSIGN(auto inner, wait());
  return inner->read_at(offset, buf);
}

bool GatedSource::discard(std::uint64_t offset, std::uint64_t length) const {
  auto inner = opened();
  return inner && inner->discard(offset, length);
}

Result<void> GatedSource::prefetch(std::uint64_t offset, std::uint64_t length) const {
  auto inner = opened();
  return inner ? inner->prefetch(offset, length) : util::success();
}

bool GatedSource::fetching() const {
  auto inner = opened();
  return inner && inner->fetching();
}

std::uint64_t GatedSource::local_prefix(std::uint64_t offset, std::uint64_t length) const {
  auto inner = opened();
  return inner ? inner->local_prefix(offset, length) : 0;
}

Result<std::size_t> StoppableSource::read_at(std::uint64_t offset, std::span<std::byte> buf) const {
  if (stop_.stop_requested()) {
    return make_error(std::errc::operation_canceled, "cannot read {}: stopped", inner_->describe());
  }
  return inner_->read_at(offset, buf);
}

}  // namespace ocifs::io
