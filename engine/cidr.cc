#include "engine/cidr.h"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace labfleet {

std::string IpAddr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family == 4 ? AF_INET : AF_INET6, bytes.data(), buf, sizeof buf);
  return buf;
}

IpAddr Cidr::network() const {
  IpAddr n = addr;
  int bits = addr.bits();
  for (int i = prefix; i < bits; ++i) n.bytes[i / 8] &= uint8_t(~(0x80u >> (i % 8)));
  return n;
}

std::string Cidr::str() const { return addr.str() + "/" + std::to_string(prefix); }
std::string Cidr::network_str() const { return network().str() + "/" + std::to_string(prefix); }

std::optional<IpAddr> ParseIp(std::string_view s, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<IpAddr> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  if (s.empty()) return fail("empty address");
  std::string text(s);
  IpAddr ip;
  if (text.find(':') != std::string::npos) {
    ip.family = 6;
    if (inet_pton(AF_INET6, text.c_str(), ip.bytes.data()) != 1) return fail("'" + text + "' is not an IPv6 address");
    return ip;
  }
  // IPv4: exactly four decimal parts 0..255, no leading zeros (which some tools read as octal).
  int part = 0;
  size_t i = 0;
  while (true) {
    size_t j = i;
    while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
    if (j == i || j - i > 3) return fail("'" + text + "' is not an IPv4 address (expected four numbers 0-255)");
    if (j - i > 1 && text[i] == '0') return fail("'" + text + "' has a part with a leading zero");
    int v = 0;
    std::from_chars(text.data() + i, text.data() + j, v);
    if (v > 255) return fail("'" + text + "' has a part above 255");
    if (part > 3) return fail("'" + text + "' has more than four parts");
    ip.bytes[part++] = uint8_t(v);
    if (j == text.size()) break;
    if (text[j] != '.') return fail("'" + text + "' is not an IPv4 address (unexpected '" + text.substr(j, 1) + "')");
    i = j + 1;
  }
  if (part != 4) return fail("'" + text + "' is not an IPv4 address (expected four numbers 0-255)");
  return ip;
}

std::optional<Cidr> ParseCidr(std::string_view s, std::string* error) {
  auto slash = s.find('/');
  if (slash == std::string_view::npos) {
    if (error) *error = "'" + std::string(s) + "' has no prefix length (write it as address/prefix, e.g. 10.0.0.0/24)";
    return std::nullopt;
  }
  auto ip = ParseIp(s.substr(0, slash), error);
  if (!ip) return std::nullopt;
  std::string_view p = s.substr(slash + 1);
  int prefix = -1;
  auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), prefix);
  if (p.empty() || ec != std::errc() || end != p.data() + p.size() || prefix < 0 || prefix > ip->bits()) {
    if (error)
      *error = "'" + std::string(s) + "' has an invalid prefix length (0-" + std::to_string(ip->bits()) + ")";
    return std::nullopt;
  }
  return Cidr{*ip, prefix};
}

static bool SamePrefix(const IpAddr& a, const IpAddr& b, int prefix) {
  for (int i = 0; i < prefix; ++i) {
    uint8_t mask = uint8_t(0x80u >> (i % 8));
    if ((a.bytes[i / 8] & mask) != (b.bytes[i / 8] & mask)) return false;
  }
  return true;
}

bool Contains(const Cidr& net, const IpAddr& ip) {
  return net.addr.family == ip.family && SamePrefix(net.addr, ip, net.prefix);
}

bool Overlaps(const Cidr& a, const Cidr& b) {
  return a.addr.family == b.addr.family && SamePrefix(a.addr, b.addr, std::min(a.prefix, b.prefix));
}

}  // namespace labfleet
