// Small text helpers shared by the fact parsers, the modules and the executor: joining, splitting into words,
// trimming, and a stable hash (lines: SplitLines in engine/accounts.h). Pure functions; header only.
#pragma once
#include <cctype>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace labfleet {

// The items with `sep` between them.
inline std::string Join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

// "1 entry", "2 entries", "0 keys": a count with the noun that fits it.
inline std::string Counted(size_t n, std::string_view one, std::string_view many) {
  return std::to_string(n) + " " + std::string(n == 1 ? one : many);
}

// A DNS host name or dotted IPv4 address: labels of letters, digits and inner hyphens (1-63 characters),
// joined by dots, 253 characters at most.
inline bool IsHostName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  size_t start = 0;
  while (true) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-') return false;
    for (char c : label)
      if (!std::isalnum((unsigned char)c) && c != '-') return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

// `s` without the characters of `blanks` at either end.
inline std::string TrimChars(std::string_view s, std::string_view blanks) {
  size_t b = 0, e = s.size();
  while (b < e && blanks.find(s[b]) != std::string_view::npos) ++b;
  while (e > b && blanks.find(s[e - 1]) != std::string_view::npos) --e;
  return std::string(s.substr(b, e - b));
}

// The words of `s`: the longest runs of characters not in `blanks` (never an empty word).
inline std::vector<std::string> SplitWords(std::string_view s, std::string_view blanks) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (blanks.find(c) != std::string_view::npos) {
      if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

// 64-bit FNV-1a of `s` as 16 lower-case hex digits: stable across runs and machines (not for security).
inline std::string Fnv1a64Hex(std::string_view s) {
  unsigned long long h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", h);
  return buf;
}

}  // namespace labfleet
