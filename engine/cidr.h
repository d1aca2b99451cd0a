// IP addresses and CIDR networks, for offline checks (Docker pools vs reserved networks, node addresses).
// IPv4 and IPv6 are both parsed; networks of different families never overlap.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace labfleet {

struct IpAddr {
  int family = 4;                   // 4 or 6
  std::array<uint8_t, 16> bytes{};  // IPv4 uses the first 4
  int bits() const { return family == 4 ? 32 : 128; }
  std::string str() const;
  bool operator==(const IpAddr&) const = default;
};

struct Cidr {
  IpAddr addr;     // as written (host bits may be set, e.g. a bridge address 172.17.0.1/16)
  int prefix = 0;  // 0..32 or 0..128
  IpAddr network() const;         // host bits cleared
  bool host_bits_set() const { return !(network() == addr); }
  std::string str() const;        // "addr/prefix" as written
  std::string network_str() const;  // "network/prefix"
};

// Parses a dotted-quad IPv4 or an IPv6 address. On failure returns nullopt and, when `error` is given, a short
// reason a person can act on.
std::optional<IpAddr> ParseIp(std::string_view s, std::string* error = nullptr);
// Parses "address/prefix". A missing prefix is an error (say what is meant: 10.0.1.5/32).
std::optional<Cidr> ParseCidr(std::string_view s, std::string* error = nullptr);

bool Contains(const Cidr& net, const IpAddr& ip);
bool Overlaps(const Cidr& a, const Cidr& b);

}  // namespace labfleet
