// SHA-256 of bytes, as lowercase hex. The only user of OpenSSL's libcrypto.
#pragma once
#include <memory>
#include <string>
#include <string_view>

namespace labfleet {

std::string Sha256Hex(std::string_view bytes);

// Incremental SHA-256: update() any number of times, then hex() once (the hash of everything given).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes);
  std::string hex();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace labfleet
