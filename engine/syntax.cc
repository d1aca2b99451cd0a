#include "engine/syntax.h"

#include <algorithm>
#include <cstdio>

#include "engine/cidr.h"
#include "engine/shell.h"
#include "engine/text.h"

namespace labfleet {
namespace {

// The character at s[i]: its length in bytes (a UTF-8 sequence counts as one) and whether it is a control
// character: C0 (NUL..US), DEL, C1 encoded as UTF-8 (U+0080..U+009F), or a stray byte 0x80..0x9f that is not
// part of a UTF-8 sequence (terminals in 8-bit mode act on it).
size_t Step(std::string_view s, size_t i, bool* control) {
  unsigned char c = (unsigned char)s[i];
  *control = false;
  if (c < 0x20 || c == 0x7f) {
    *control = true;
    return 1;
  }
  if (c < 0x80) return 1;
  size_t len = c >= 0xf0 && c < 0xf8 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
  if (len == 0 || i + len > s.size()) {  // a stray continuation byte or a truncated sequence
    *control = c <= 0x9f;
    return 1;
  }
  for (size_t k = 1; k < len; ++k)
    if (((unsigned char)s[i + k] & 0xc0) != 0x80) {
      *control = c <= 0x9f;
      return 1;
    }
  if (c == 0xc2 && (unsigned char)s[i + 1] <= 0x9f) *control = true;
  return len;
}

// Length of the control character at s[i] when there is one there, else 0 (for a scan that uses Step).
size_t ControlAt(std::string_view s, size_t i) {
  bool control = false;
  size_t n = Step(s, i, &control);
  return control ? n : 0;
}

std::string Escape1(std::string_view s, size_t i, size_t n) {
  unsigned char c = (unsigned char)s[i];
  switch (c) {
    case '\n': return "\\n";
    case '\t': return "\\t";
    case '\r': return "\\r";
    case 0: return "\\0";
  }
  char buf[8];
  if (n == 2)
    snprintf(buf, sizeof buf, "\\u%04x", (unsigned)(unsigned char)s[i + 1]);
  else
    snprintf(buf, sizeof buf, "\\x%02x", (unsigned)c);
  return buf;
}

std::string NameOf(std::string_view s, size_t i, size_t n) {
  unsigned char c = (unsigned char)s[i];
  std::string e = Escape1(s, i, n);
  if (c == '\n') return "a newline (" + e + ")";
  if (c == '\r') return "a carriage return (" + e + ")";
  if (c == '\t') return "a tab (" + e + ")";
  if (c == 0) return "a NUL byte (" + e + ")";
  if (c == 0x1b) return "an escape character (" + e + ")";
  return "a control character (" + e + ")";
}

bool IsUrlChar(char c) {
  if (std::isalnum((unsigned char)c)) return true;
  return std::string_view("-._~:/?#[]@!$&'()*+,;=%").find(c) != std::string_view::npos;
}

bool IsHex(char c) { return std::isxdigit((unsigned char)c) != 0; }

}  // namespace

bool Report(Findings& f, const Location& where, const std::string& subject, const SyntaxResult& e) {
  if (!e) return false;
  f.error(where, e->code, subject + " " + e->what);
  return true;
}

std::string Quoted(std::string_view value) {
  std::string v = EscapeControls(value);
  if (v.size() > 120) v = v.substr(0, 117) + "...";
  return "'" + v + "'";
}

std::string EscapeControls(std::string_view s, bool keep_layout, bool escape_backslash) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    bool control = false;
    size_t n = Step(s, i, &control);
    if (!control) {
      if (escape_backslash && s[i] == '\\')
        out += "\\\\";
      else
        out.append(s.substr(i, n));
      i += n;
      continue;
    }
    if (keep_layout && (s[i] == '\n' || s[i] == '\t'))
      out += s[i];
    else
      out += Escape1(s, i, n);
    i += n;
  }
  return out;
}

size_t FindControl(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    bool control = false;
    size_t n = Step(s, i, &control);
    if (control) return i;
    i += n;
  }
  return std::string_view::npos;
}

SyntaxResult CheckNoControl(std::string_view s) {
  size_t i = FindControl(s);
  if (i == std::string_view::npos) return std::nullopt;
  return SyntaxError{"control-character",
                     "contains " + NameOf(s, i, ControlAt(s, i)) + " at character " + std::to_string(i + 1) +
                         "; it would end the line (or the field) it is written into"};
}

SyntaxResult CheckOneWord(std::string_view s) {
  if (auto e = CheckNoControl(s)) return e;
  if (size_t i = s.find(' '); i != std::string_view::npos)
    return SyntaxError{"blank", "contains a blank at character " + std::to_string(i + 1) + "; it must be one word"};
  return std::nullopt;
}

PathResult NormalizeAbsolutePath(std::string_view s) {
  PathResult r;
  if (auto e = CheckNoControl(s)) {
    r.error = e;
    return r;
  }
  if (s.empty() || s[0] != '/') {
    r.error = SyntaxError{"path-not-absolute", "is not an absolute path (it must start with '/')"};
    return r;
  }
  std::vector<std::string_view> parts;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find('/', i);
    if (j == std::string_view::npos) j = s.size();
    std::string_view part = s.substr(i, j - i);
    if (part == "..") {
      r.error = SyntaxError{"unsafe-path", "has a '..' component; write the path without it"};
      return r;
    }
    if (!part.empty() && part != ".") parts.push_back(part);
    i = j + 1;
  }
  std::string out;
  for (auto p : parts) out += "/" + std::string(p);
  r.path = out.empty() ? "/" : out;
  return r;
}

std::optional<Url> ParseUrl(std::string_view s, const std::vector<std::string>& schemes, SyntaxError* error) {
  auto fail = [&](std::string what) -> std::optional<Url> {
    if (error) *error = SyntaxError{"invalid-url", std::move(what)};
    return std::nullopt;
  };
  if (auto e = CheckNoControl(s)) {
    if (error) *error = *e;
    return std::nullopt;
  }
  Url u;
  size_t colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0) return fail("is not a URL (no scheme like http://)");
  std::string scheme(s.substr(0, colon));
  for (char& c : scheme) c = char(std::tolower((unsigned char)c));
  if (!std::isalpha((unsigned char)scheme[0]) ||
      scheme.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789+.-") != std::string::npos)
    return fail("is not a URL (no scheme like http://)");
  if (std::find(schemes.begin(), schemes.end(), scheme) == schemes.end())
    return fail("has the scheme '" + scheme + ":', expected " + Join(schemes, ":, ") + ":");
  u.scheme = scheme;
  std::string_view rest = s.substr(colon + 1);
  for (size_t i = 0; i < rest.size(); ++i) {
    char c = rest[i];
    if (c == ' ') return fail("contains a blank at character " + std::to_string(colon + 2 + i));
    if (!IsUrlChar(c) && (unsigned char)c < 0x80)
      return fail(std::string("contains '") + c + "' at character " + std::to_string(colon + 2 + i) +
                  ", which a URL cannot hold (write it %-escaped)");
    if ((unsigned char)c >= 0x80) return fail("contains a non-ASCII character (write it %-escaped)");
    if (c == '%' && !(i + 2 < rest.size() && IsHex(rest[i + 1]) && IsHex(rest[i + 2])))
      return fail("has a '%' that is not followed by two hex digits");
  }
  if (scheme == "file") {
    if (rest.empty() || rest[0] != '/') return fail("is a file: URL without an absolute path (file:/srv/mirror)");
    std::string_view p = rest;
    if (p.rfind("//", 0) == 0) {  // file:///path or file://localhost/path
      size_t slash = p.find('/', 2);
      if (slash == std::string_view::npos) return fail("is a file: URL without a path");
      p = p.substr(slash);
    }
    u.path = std::string(p);
    return u;
  }
  if (rest.rfind("//", 0) != 0) return fail("has no '//' after '" + scheme + ":'");
  rest.remove_prefix(2);
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  u.path = end == std::string_view::npos ? "" : std::string(rest.substr(end));
  if (size_t at = authority.rfind('@'); at != std::string_view::npos) {
    u.userinfo = std::string(authority.substr(0, at));
    authority.remove_prefix(at + 1);
    if (u.userinfo.find_first_of("[]") != std::string::npos) return fail("has '[' or ']' in its user:password part");
  }
  std::string_view host = authority, port;
  if (!authority.empty() && authority[0] == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return fail("has an IPv6 address without its closing ']'");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') return fail("has text after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) return fail("has an empty port after ':'");
    }
    auto ip = ParseIp(host);
    if (!ip || ip->family != 6) return fail("has '" + std::string(host) + "' in brackets, which is not an IPv6 address");
  } else {
    size_t c = authority.find(':');
    if (c != std::string_view::npos) {
      port = authority.substr(c + 1);
      host = authority.substr(0, c);
      if (port.empty()) return fail("has an empty port after ':'");
    }
    if (host.empty()) return fail("has no host");
    if (!IsHostName(host)) return fail("has the host '" + std::string(host) + "', which is not a host name or IPv4 address");
  }
  u.host = std::string(host);
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos)
      return fail("has the port '" + std::string(port) + "', which is not a number from 1 to 65535");
    int p = std::stoi(std::string(port));
    if (p < 1 || p > 65535) return fail("has the port " + std::string(port) + ", outside 1-65535");
    u.port = p;
  }
  return u;
}

const std::vector<std::string>& SshKeyTypes() {
  static const std::vector<std::string> types = {"ssh-ed25519",
                                                 "ssh-rsa",
                                                 "ecdsa-sha2-nistp256",
                                                 "ecdsa-sha2-nistp384",
                                                 "ecdsa-sha2-nistp521",
                                                 "sk-ssh-ed25519@openssh.com",
                                                 "sk-ecdsa-sha2-nistp256@openssh.com",
                                                 "ssh-dss"};
  return types;
}

std::optional<SshPublicKey> ParseSshPublicKey(std::string_view line, SyntaxError* error) {
  auto fail = [&](const char* code, std::string what) -> std::optional<SshPublicKey> {
    if (error) *error = SyntaxError{code, std::move(what)};
    return std::nullopt;
  };
  if (auto e = CheckNoControl(line)) {
    if (error) *error = *e;
    return std::nullopt;
  }
  const auto& types = SshKeyTypes();
  size_t b = line.find_first_not_of(' ');
  if (b == std::string_view::npos) return fail("ssh-key-bad-base64", "is empty");
  size_t e = line.find(' ', b);
  std::string type(line.substr(b, e == std::string_view::npos ? std::string_view::npos : e - b));
  if (std::find(types.begin(), types.end(), type) == types.end()) {
    // authorized_keys options come before the type: `command="..."`, `from="..."`, `no-pty`, ... A word with '='
    // or '"', or a known type later on the line, means options.
    bool options = type.find_first_of("=\",") != std::string::npos;
    for (const auto& t : types)
      if (line.find(" " + t + " ") != std::string_view::npos) options = true;
    if (options)
      return fail("ssh-key-options",
                  "starts with authorized_keys options ('" + type.substr(0, 40) +
                      "'); options like command=, from= or no-pty are not accepted from the inventory — write only "
                      "'type base64 comment'");
    return fail("ssh-key-unknown-type", "has unknown type '" + type + "'");
  }
  size_t db = e == std::string_view::npos ? std::string_view::npos : line.find_first_not_of(' ', e);
  if (db == std::string_view::npos) return fail("ssh-key-bad-base64", "has no key data after '" + type + "'");
  size_t de = line.find(' ', db);
  std::string data(line.substr(db, de == std::string_view::npos ? std::string_view::npos : de - db));
  bool ok = false;
  std::string blob = Base64Decode(data, &ok);
  if (!ok || blob.size() < 4)
    return fail("ssh-key-bad-base64",
                "is not valid base64 (truncated or mangled when copied?); paste the whole line of the .pub file");
  uint32_t n = uint32_t((unsigned char)blob[0]) << 24 | uint32_t((unsigned char)blob[1]) << 16 |
               uint32_t((unsigned char)blob[2]) << 8 | uint32_t((unsigned char)blob[3]);
  if (n > blob.size() - 4) return fail("ssh-key-bad-base64", "is truncated (its data is shorter than it says)");
  std::string embedded = blob.substr(4, n);
  if (embedded != type)
    return fail("ssh-key-type-mismatch", "says '" + EscapeControls(type) + "' but its data is a '" +
                                             EscapeControls(embedded) +
                                             "' key; the line was edited or assembled from two keys");
  if (type == "ssh-ed25519" && blob.size() != 4 + n + 4 + 32)
    return fail("ssh-key-bad-base64", "is an ssh-ed25519 key of the wrong length (truncated?)");
  SshPublicKey k;
  k.type = type;
  k.base64 = data;
  if (de != std::string_view::npos) k.comment = TrimChars(line.substr(de), " ");
  k.dsa = type == "ssh-dss";
  return k;
}

SyntaxResult CheckSystemdValue(std::string_view s) { return CheckNoControl(s); }

std::string SystemdEscape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '%')
      out += "%%";
    else if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else
      out += c;
  }
  return out;
}

SyntaxResult CheckHostName(std::string_view s) {
  if (auto e = CheckNoControl(s)) return e;
  if (!IsHostName(s))
    return SyntaxError{"hosts-name",
                       "is not a host name (labels of letters, digits and inner hyphens joined by dots, at most 253 "
                       "characters)"};
  return std::nullopt;
}

SyntaxResult CheckGecos(std::string_view s) {
  if (auto e = CheckNoControl(s)) return e;
  if (size_t i = s.find(':'); i != std::string_view::npos)
    return SyntaxError{"invalid-full-name", "contains ':' at character " + std::to_string(i + 1) +
                                                ", which separates the fields of /etc/passwd"};
  return std::nullopt;
}

SyntaxResult CheckPasswordHash(std::string_view s) {
  // Never quote the value itself: it is a secret.
  if (FindControl(s) != std::string_view::npos)
    return SyntaxError{"password-hash-invalid", "contains a control character (e.g. a newline)"};
  size_t i = 0;
  while (i < s.size() && s[i] == '!') ++i;
  std::string_view h = s.substr(i);
  if (s.empty() || (i == 0 && s[0] != '$' && s[0] != '*'))
    return SyntaxError{"password-hash-invalid", "is not a crypt(3) hash"};
  if (h.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789./$=,+-*") !=
      std::string_view::npos)
    return SyntaxError{"password-hash-invalid",
                       "contains a character a crypt(3) hash never has (blank, ':' or similar)"};
  return std::nullopt;
}

SyntaxResult CheckOwnerName(std::string_view s) {
  if (auto e = CheckNoControl(s)) return e;
  if (!s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos) return std::nullopt;
  bool ok = !s.empty() && s.size() <= 32 && (std::islower((unsigned char)s[0]) || s[0] == '_');
  for (size_t i = 1; ok && i < s.size(); ++i) {
    char c = s[i];
    ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || (c == '$' && i + 1 == s.size());
  }
  if (!ok)
    return SyntaxError{"invalid-owner",
                       "is not a user or group name (lowercase letters, digits, '_' and '-', starting with a letter or "
                       "'_') nor a numeric id"};
  return std::nullopt;
}

}  // namespace labfleet
