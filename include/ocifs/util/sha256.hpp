// Sha256: incremental SHA-256 over OpenSSL's EVP API, and digest string helpers.
// One hasher per thread; not synchronised.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace ocifs::util {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void update(std::span<const std::byte> data);
  void update(std::string_view data);
  // Finishes and returns the lowercase hex digest (64 chars). The hasher is reset afterwards.
  std::string hex_digest();
  std::array<std::uint8_t, 32> digest();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

std::string sha256_hex(std::span<const std::byte> data);
std::string sha256_hex(std::string_view data);

// Only the digits 0-9a-f (a digest's encoded part; "" too).
bool is_lower_hex(std::string_view text);
// What a sha256 names itself by: 64 lowercase hex digits (digests, cache file names, archive
// member names). Uppercase is refused, as the OCI image spec's digest grammar does.
bool is_sha256_hex(std::string_view text);
// "sha256:" then is_sha256_hex.
bool is_sha256_digest(std::string_view text);

}  // namespace ocifs::util
