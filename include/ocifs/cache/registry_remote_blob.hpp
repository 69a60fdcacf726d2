// RegistryRemoteBlob: one blob of a registry repository as a RemoteBlob, over a shared
// registry::RegistryClient (range reads with its read deadline, streams that resume with Range
// after a dropped connection). Thread-safe, as the client is.
#pragma once

#include <memory>
#include <string>

#include "ocifs/cache/remote_blob.hpp"

namespace ocifs::registry {
class RegistryClient;
}

namespace ocifs::cache {

class RegistryRemoteBlob final : public RemoteBlob {
 public:
  RegistryRemoteBlob(std::shared_ptr<registry::RegistryClient> client, std::string digest);

  Result<std::size_t> read_range(std::uint64_t offset, std::span<std::byte> buf) override;
  Result<void> stream(std::uint64_t from, std::uint64_t to, const Sink& sink,
                      const std::function<bool()>& cancelled) override;
  std::string describe() const override;

 private:
  std::shared_ptr<registry::RegistryClient> client_;
  std::string digest_;
};

}  // namespace ocifs::cache
