#include "engine/shell.h"

namespace labfleet {

std::string ShellQuote(std::string_view s) {
  if (s.empty()) return "''";
  bool plain = true;
  for (unsigned char c : s) {
    if (!(std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '/' || c == ':' || c == '=' || c == ',' ||
          c == '+' || c == '@' || c == '%')) {
      plain = false;
      break;
    }
  }
  // '=' at the start could be read as an assignment only in the first word; quote that case too.
  if (plain && s.find('=') == std::string_view::npos) return std::string(s);
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  out += "'";
  return out;
}

std::string Cmd::str() const {
  std::string out;
  for (size_t i = 0; i < words_.size(); ++i) {
    if (i) out += ' ';
    out += words_[i];
  }
  return out;
}

std::string Script::str() const {
  std::string out;
  for (const auto& l : lines_) {
    out += l;
    out += '\n';
  }
  return out;
}

static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string Base64Encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned n = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8 | (unsigned char)in[i + 2];
    out += kB64[n >> 18 & 63];
    out += kB64[n >> 12 & 63];
    out += kB64[n >> 6 & 63];
    out += kB64[n & 63];
  }
  if (i + 1 == in.size()) {
    unsigned n = (unsigned char)in[i] << 16;
    out += kB64[n >> 18 & 63];
    out += kB64[n >> 12 & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    unsigned n = (unsigned char)in[i] << 16 | (unsigned char)in[i + 1] << 8;
    out += kB64[n >> 18 & 63];
    out += kB64[n >> 12 & 63];
    out += kB64[n >> 6 & 63];
    out += '=';
  }
  return out;
}

std::string Base64Decode(std::string_view in, bool* ok) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  unsigned buf = 0;
  int bits = 0;
  size_t pad = 0;
  bool good = in.size() % 4 == 0;
  for (size_t i = 0; i < in.size() && good; ++i) {
    char c = in[i];
    if (c == '=') {
      ++pad;
      if (i + 2 < in.size() || pad > 2) good = false;
      continue;
    }
    if (pad) {
      good = false;
      break;
    }
    int v = val(c);
    if (v < 0) {
      good = false;
      break;
    }
    buf = buf << 6 | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char(buf >> bits & 0xff);
    }
  }
  if (ok) *ok = good;
  return good ? out : std::string();
}

}  // namespace labfleet
