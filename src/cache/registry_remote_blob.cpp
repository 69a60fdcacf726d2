#include "ocifs/cache/registry_remote_blob.hpp"

#include "ocifs/registry/registry_client.hpp"

namespace ocifs::cache {

RegistryRemoteBlob::RegistryRemoteBlob(std::shared_ptr<registry::RegistryClient> client, std::string digest)
    : client_(std::move(client)), digest_(std::move(digest)) {}

Result<std::size_t> RegistryRemoteBlob::read_range(std::uint64_t offset, std::span<std::byte> buf) {
  return client_->read_blob_range(digest_, offset, buf);
}

Result<void> RegistryRemoteBlob::stream(std::uint64_t from, std::uint64_t to, const Sink& sink,
                                        const std::function<bool()>& cancelled) {
  return client_->stream_blob(digest_, from, sink, cancelled, to);
}

std::string RegistryRemoteBlob::describe() const { return fmt::format("{}@{}", client_->describe(), digest_); }

}  // namespace ocifs::cache
