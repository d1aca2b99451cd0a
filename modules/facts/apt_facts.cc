#include "modules/facts/apt_facts.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

#include "engine/shell.h"
#include "engine/text.h"
#include "modules/facts/package_facts.h"

namespace labfleet {

namespace {

constexpr std::string_view kBlanks = " \t\r";

std::string Trim(std::string_view s) { return TrimChars(s, kBlanks); }

uint32_t Crc24(std::string_view data) {  // RFC 4880 6.1
  uint32_t crc = 0xB704CEu;
  for (unsigned char c : data) {
    crc ^= uint32_t(c) << 16;
    for (int i = 0; i < 8; ++i) {
      crc <<= 1;
      if (crc & 0x1000000u) crc ^= 0x1864CFBu;
    }
  }
  return crc & 0xFFFFFFu;
}

// The armor's body, decoded; nullopt with *error when it is not a well-formed PUBLIC KEY block.
std::optional<std::string> Unarmor(std::string_view text, std::string* error) {
  const std::string begin = "-----BEGIN PGP PUBLIC KEY BLOCK-----", end = "-----END PGP PUBLIC KEY BLOCK-----";
  auto lines = SplitLines(text);
  size_t i = 0;
  for (; i < lines.size() && Trim(lines[i]) != begin; ++i)
    if (Trim(lines[i]).rfind("-----BEGIN PGP PRIVATE KEY BLOCK-----", 0) == 0) {
      *error = "is a PRIVATE key block: apt needs the repository's public key (gpg --armor --export KEYID), and a "
               "secret key must never be in the inventory";
      return std::nullopt;
    }
  if (i == lines.size()) {
    *error = "is neither an ASCII-armored public key (no line '" + begin + "') nor binary OpenPGP packets";
    return std::nullopt;
  }
  ++i;
  // Armor headers ("Comment: ..."), up to the blank line.
  size_t j = i;
  while (j < lines.size() && !Trim(lines[j]).empty() && Trim(lines[j]).find(": ") != std::string::npos) ++j;
  if (j < lines.size() && Trim(lines[j]).empty()) i = j + 1;
  else if (j != i) {
    *error = "has armor headers not followed by a blank line (line " + std::to_string(j + 1) + ")";
    return std::nullopt;
  }
  std::string b64, crc;
  bool ended = false;
  for (; i < lines.size(); ++i) {
    std::string l = Trim(lines[i]);
    if (l == end) {
      ended = true;
      break;
    }
    if (l.empty()) continue;
    if (l[0] == '=' && l.size() == 5) {
      crc = l.substr(1);
      continue;
    }
    b64 += l;
  }
  if (!ended) {
    *error = "has no line '" + end + "' (cut short?)";
    return std::nullopt;
  }
  bool ok = false;
  std::string bin = Base64Decode(b64, &ok);
  if (!ok || bin.empty()) {
    *error = "has an armored body that is not valid base64";
    return std::nullopt;
  }
  if (!crc.empty()) {
    bool cok = false;
    std::string c = Base64Decode(crc, &cok);
    uint32_t want = c.size() == 3 ? (uint32_t((unsigned char)c[0]) << 16 | uint32_t((unsigned char)c[1]) << 8 |
                                     uint32_t((unsigned char)c[2]))
                                  : 0xFFFFFFFFu;
    if (!cok || want != Crc24(bin)) {
      *error = "has an armor checksum (=" + crc + ") that does not match its body: the file is damaged";
      return std::nullopt;
    }
  }
  return bin;
}

std::string PacketName(int tag) {
  switch (tag) {
    case 2: return "signature";
    case 5: return "secret key";
    case 6: return "public key";
    case 7: return "secret subkey";
    case 12: return "trust";
    case 13: return "user ID";
    case 14: return "public subkey";
    case 17: return "user attribute";
    default: return "type " + std::to_string(tag);
  }
}

// Walks the packets of a binary keyring; "" when it is a transferable public key (or several).
std::string CheckPackets(std::string_view b) {
  size_t at = 0;
  int n = 0, keys = 0;
  while (at < b.size()) {
    unsigned char h = b[at];
    if (!(h & 0x80)) return "is not OpenPGP data (byte " + std::to_string(at) + " is no packet header)";
    int tag;
    size_t len, hl;
    if (h & 0x40) {  // new format
      tag = h & 0x3f;
      if (at + 1 >= b.size()) return "ends inside a packet header";
      unsigned char o1 = b[at + 1];
      if (o1 < 192) len = o1, hl = 2;
      else if (o1 < 224) {
        if (at + 2 >= b.size()) return "ends inside a packet header";
        len = ((size_t(o1) - 192) << 8) + (unsigned char)b[at + 2] + 192, hl = 3;
      } else if (o1 == 255) {
        if (at + 5 >= b.size()) return "ends inside a packet header";
        len = size_t((unsigned char)b[at + 2]) << 24 | size_t((unsigned char)b[at + 3]) << 16 |
              size_t((unsigned char)b[at + 4]) << 8 | size_t((unsigned char)b[at + 5]);
        hl = 6;
      } else {
        return "has a partial-length packet (not a key)";
      }
    } else {  // old format
      tag = (h >> 2) & 0x0f;
      int lt = h & 3;
      if (lt == 3) return "has an indeterminate-length packet (not a key)";
      size_t nb = lt == 0 ? 1 : lt == 1 ? 2 : 4;
      if (at + nb >= b.size()) return "ends inside a packet header";
      len = 0;
      for (size_t k = 0; k < nb; ++k) len = len << 8 | (unsigned char)b[at + 1 + k];
      hl = 1 + nb;
    }
    if (len > b.size() - at - hl) return "ends inside a " + PacketName(tag) + " packet (cut short?)";
    std::string_view body = b.substr(at + hl, len);
    if (n == 0 && tag != 6)
      return tag == 5 ? "is a SECRET key: apt needs the repository's public key (gpg --export KEYID), and a secret key "
                        "must never be in the inventory"
                      : "does not start with a public key packet (it starts with a " + PacketName(tag) + " packet)";
    if (tag == 5 || tag == 7) return "holds a " + PacketName(tag) + " packet: export only the public key";
    if (tag != 2 && tag != 6 && tag != 12 && tag != 13 && tag != 14 && tag != 17)
      return "holds a " + PacketName(tag) + " packet, which has no place in a public key";
    if (tag == 6 || tag == 14) {
      if (body.empty() || (body[0] != 4 && body[0] != 5 && body[0] != 6))
        return "has a " + PacketName(tag) + " packet of unsupported version " +
               (body.empty() ? std::string("(empty)") : std::to_string(int((unsigned char)body[0])));
      keys += tag == 6;
    }
    at += hl + len;
    ++n;
  }
  if (keys == 0) return "holds no public key";
  return "";
}

bool IsAptVersion(std::string_view v) {
  if (v.empty() || v.size() > 200 || !isalnum((unsigned char)v[0])) return false;
  for (char c : v)
    if (!isalnum((unsigned char)c) && std::string_view(".+-~:_").find(c) == std::string_view::npos) return false;
  return true;
}

}  // namespace

std::optional<std::string> DearmorPublicKey(std::string_view bytes, std::string* error) {
  std::string scratch;
  std::string& err = error ? *error : scratch;
  if (bytes.size() > kMaxKeyBytes) {
    err = "is larger than 1 MiB: not a repository key";
    return std::nullopt;
  }
  if (bytes.empty()) {
    err = "is empty";
    return std::nullopt;
  }
  std::string bin;
  if ((unsigned char)bytes[0] & 0x80) {
    bin = std::string(bytes);
  } else if (bytes.size() >= 4 && bytes.substr(0, 4) == std::string_view("\0\0\0\x20", 4)) {
    err = "is a GnuPG keybox (.kbx), not OpenPGP: export the key with gpg --export KEYID";
    return std::nullopt;
  } else {
    auto b = Unarmor(bytes, &err);
    if (!b) return std::nullopt;
    bin = std::move(*b);
  }
  std::string why = CheckPackets(bin);
  if (!why.empty()) {
    err = why;
    return std::nullopt;
  }
  return bin;
}

AptPolicy ParseAptCachePolicy(std::string_view text) {
  AptPolicy out;
  std::string name;
  AptPolicyEntry cur;
  bool has_inst = false, has_cand = false;
  auto flush = [&] {
    if (!name.empty() && has_inst && has_cand) out.by_name[name] = cur;
    name.clear();
    cur = {};
    has_inst = has_cand = false;
  };
  for (const auto& line : SplitLines(text)) {
    if (line.empty()) continue;
    if (line[0] != ' ') {  // "NAME:" (or "NAME:ARCH:")
      flush();
      std::string n = line;
      if (n.back() != ':') {
        ++out.skipped;
        continue;
      }
      n.pop_back();
      if (auto colon = n.find(':'); colon != std::string::npos) n.resize(colon);
      if (!IsPackageName(n)) {
        ++out.skipped;
        continue;
      }
      name = n;
      continue;
    }
    std::string l = Trim(line);
    auto field = [&](const char* key, std::string& into, bool& seen) {
      std::string k = std::string(key) + ": ";
      if (l.rfind(k, 0) != 0) return false;
      std::string v = l.substr(k.size());
      if (v == "(none)") v.clear();
      else if (!IsAptVersion(v)) {
        ++out.skipped;
        return true;
      }
      if (!name.empty()) into = v, seen = true;
      return true;
    };
    if (field("Installed", cur.installed, has_inst) || field("Candidate", cur.candidate, has_cand)) continue;
    // Version table and pin lines: not needed; anything else in them is harmless.
  }
  flush();
  return out;
}

std::string PipCanonicalName(std::string_view name) {
  std::string out;
  bool sep = false;
  for (char c : name) {
    if (c == '-' || c == '_' || c == '.') {
      sep = true;
      continue;
    }
    if (sep && !out.empty()) out += '-';
    sep = false;
    out += char(tolower((unsigned char)c));
  }
  return out;
}

bool IsPipName(std::string_view n) {
  if (n.empty() || n.size() > 200 || !isalnum((unsigned char)n.front()) || !isalnum((unsigned char)n.back()))
    return false;
  for (char c : n)
    if (!isalnum((unsigned char)c) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

bool IsPipVersion(std::string_view v) {
  if (v.empty() || v.size() > 100 || !isalnum((unsigned char)v.front())) return false;
  for (char c : v)
    if (!isalnum((unsigned char)c) && std::string_view(".+!-_").find(c) == std::string_view::npos) return false;
  return true;
}

static std::string CanonVersion(std::string_view v) {
  std::string s;
  for (char c : v) s += char(tolower((unsigned char)c));
  size_t rel = 0;
  while (rel < s.size() && (isdigit((unsigned char)s[rel]) || s[rel] == '.')) ++rel;
  std::string release = s.substr(0, rel), rest = s.substr(rel);
  while (release.size() > 2 && release.compare(release.size() - 2, 2, ".0") == 0) release.resize(release.size() - 2);
  return release + rest;
}

bool PipVersionEqual(std::string_view a, std::string_view b) { return CanonVersion(a) == CanonVersion(b); }

PipList ParsePipList(std::string_view text) {
  PipList out;
  if (text.size() > kMaxPipListBytes) text = text.substr(0, kMaxPipListBytes);
  for (const auto& line : SplitLines(text)) {
    std::string l = Trim(line);
    if (l.empty()) continue;
    if (out.ok || l[0] != '[') {
      ++out.skipped;
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(l, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_array()) {
      ++out.skipped;
      continue;
    }
    out.ok = true;
    for (const auto& e : j) {
      if (!e.is_object() || !e.contains("name") || !e.contains("version") || !e["name"].is_string() ||
          !e["version"].is_string()) {
        ++out.skipped;
        continue;
      }
      std::string n = e["name"].get<std::string>(), v = e["version"].get<std::string>();
      if (!IsPipName(n) || !IsPipVersion(v)) {
        ++out.skipped;
        continue;
      }
      out.version[PipCanonicalName(n)] = v;
    }
  }
  return out;
}

}  // namespace labfleet
