// Small text helpers shared by the fact parsers, the modules and the executor: joining, splitting into words,
// trimming, lines and fields, integers, and a stable hash. Pure functions; header only.
#pragma once
#include <cctype>
#include <cstdio>
#include <optional>
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

// `s` split at every `sep` (empty fields kept; "" gives one empty field).
inline std::vector<std::string> Split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (true) {
    size_t p = s.find(sep, pos);
    if (p == std::string_view::npos) {
      out.emplace_back(s.substr(pos));
      break;
    }
    out.emplace_back(s.substr(pos, p - pos));
    pos = p + 1;
  }
  return out;
}

// The lines of `text` without their '\n's; no trailing empty line.
inline std::vector<std::string> SplitLines(std::string_view text) {
  std::vector<std::string> out = Split(text, '\n');
  if (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

// `s` without white space at either end (a view into `s`).
inline std::string_view TrimView(std::string_view s) {
  while (!s.empty() && std::isspace((unsigned char)s.front())) s.remove_prefix(1);
  while (!s.empty() && std::isspace((unsigned char)s.back())) s.remove_suffix(1);
  return s;
}

// The lines of `text` as views, a trailing '\r' dropped from each (CRLF output).
inline std::vector<std::string_view> LineViews(std::string_view text) {
  std::vector<std::string_view> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out.push_back(line);
    pos = nl + 1;
  }
  return out;
}

// A decimal integer (optional '-', blanks around allowed); nullopt for anything else or beyond 2^58.
inline std::optional<long long> ParseInteger(std::string_view s) {
  s = TrimView(s);
  if (s.empty()) return std::nullopt;
  size_t i = 0;
  bool neg = false;
  if (s[0] == '-') {
    neg = true;
    i = 1;
  }
  if (i >= s.size()) return std::nullopt;
  long long v = 0;
  for (; i < s.size(); ++i) {
    if (!std::isdigit((unsigned char)s[i])) return std::nullopt;
    if (v > (1LL << 58)) return std::nullopt;
    v = v * 10 + (s[i] - '0');
  }
  return neg ? -v : v;
}

// nvidia-smi CSV: fields separated by exactly ", " (a bare comma can be part of a value, e.g. a process name),
// each trimmed; values like "[N/A]" or "[Not Supported]" mean unknown.
inline std::vector<std::string> SplitNvidiaCsv(std::string_view line) {
  std::vector<std::string> out;
  size_t pos = 0;
  for (;;) {
    size_t c = line.find(", ", pos);
    if (c == std::string_view::npos) {
      out.emplace_back(TrimView(line.substr(pos)));
      return out;
    }
    out.emplace_back(TrimView(line.substr(pos, c - pos)));
    pos = c + 2;
  }
}

}  // namespace labfleet
