// RegistryClient's state (registry_client.hpp): its endpoints and what they share, and the loop
// that tries an operation on them in turn. Shared by the files of its operations: reads
// (registry_client.cpp) and pushes with referrers (registry_push.cpp).
#pragma once

#include <spdlog/spdlog.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "endpoint_session.hpp"
#include "ocifs/registry/registry_client.hpp"
#include "ranged_get.hpp"

namespace ocifs::registry {

struct RegistryClient::Impl {
  Impl(oci::Reference r, RegistryOptions options) : ref(std::move(r)), shared(std::move(options)) {}

  oci::Reference ref;
  ClientShared shared;
  std::vector<std::unique_ptr<EndpointSession>> endpoints;
  std::atomic<std::size_t> preferred{0};

  // Runs `fn` on the endpoints that may serve the request: the one that answered last first, then
  // the others in configured order (mirrors, then the primary). `fn` sets `final` for errors that
  // another endpoint cannot fix (the caller's sink failed).
  template <class T>
  Result<T> over_endpoints(bool by_digest,
                           const std::function<Result<T>(EndpointSession&, bool& final)>& fn) {
    std::vector<std::size_t> order;
    std::size_t first = preferred.load(std::memory_order_relaxed);
    if (first < endpoints.size() && endpoints[first]->endpoint().serves(by_digest)) order.push_back(first);
    for (std::size_t i = 0; i < endpoints.size(); ++i) {
      if (i != first && endpoints[i]->endpoint().serves(by_digest)) order.push_back(i);
    }
    std::optional<Error> primary_error, last_error;
    std::vector<std::string> failed;
    for (std::size_t i : order) {
      bool final = false;
      auto r = fn(*endpoints[i], final);
      if (r) {
        preferred.store(i, std::memory_order_relaxed);
        return r;
      }
      if (final) return r;
      const auto& ep = endpoints[i]->endpoint();
      if (order.size() > 1)
        spdlog::info("{}: {}", ep.mirror ? "mirror failed" : "registry failed", r.error().message);
      failed.push_back(ep.str());
      if (!ep.mirror) primary_error = r.error();
      last_error = std::move(r).error();
    }
    Error e = primary_error ? *primary_error : *last_error;
    if (failed.size() > 1) e.message += fmt::format(" (tried {})", fmt::join(failed, ", "));
    return e;
  }

  // The registry itself, where pushes go: the endpoint that is no mirror.
  EndpointSession& primary() {
    for (auto& ep : endpoints) {
      if (!ep->endpoint().mirror) return *ep;
    }
    return *endpoints.back();
  }

  // ranged_get over the endpoints, each resuming where the one before stopped.
  Result<std::uint64_t> ranged(const RangedGet& get) {
    std::uint64_t pos = get.from;
    std::function<Result<std::uint64_t>(EndpointSession&, bool&)> fn = [&](EndpointSession& ep, bool& final) {
      return ranged_get(shared, ep, get, pos, final);
    };
    return over_endpoints(true, fn);
  }
};

}  // namespace ocifs::registry
