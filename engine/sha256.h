// SHA-256 of bytes, as lowercase hex. The only user of OpenSSL's libcrypto.
#pragma once
#include <string>
#include <string_view>

namespace labfleet {

std::string Sha256Hex(std::string_view bytes);

}  // namespace labfleet
