#include "modules/facts/ldif.h"

#include <stdexcept>

#include "engine/shell.h"
#include "engine/syntax.h"

namespace labfleet {

namespace {

char Lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (Lower(a[i]) != Lower(b[i])) return false;
  return true;
}

bool Alpha(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }
bool Digit(char c) { return c >= '0' && c <= '9'; }
int Hex(char c) {
  if (Digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A descriptor ("uid", "olcDbIndex") or a numeric OID ("0.9.2342.19200300.100.1.1").
bool AttrType(std::string_view t) {
  if (t.empty()) return false;
  if (Alpha(t[0])) {
    for (char c : t)
      if (!Alpha(c) && !Digit(c) && c != '-') return false;
    return true;
  }
  bool dot_ok = false;
  for (char c : t) {
    if (Digit(c)) dot_ok = true;
    else if (c == '.' && dot_ok) dot_ok = false;
    else return false;
  }
  return dot_ok;
}

void Skip(LdifParse& p, std::string_view line) {
  ++p.skipped_count;
  if (p.skipped.size() < 20) p.skipped.push_back(EscapeControls(line.substr(0, 200)));
}

}  // namespace

std::vector<std::string> LdifEntry::values(std::string_view attr) const {
  std::vector<std::string> out;
  for (const auto& [name, value] : attrs)
    if (IEquals(name, attr)) out.push_back(value);
  return out;
}

LdifParse ParseLdif(std::string_view text) {
  LdifParse p;
  // Unfold into logical lines; an empty line ends a record.
  std::vector<std::string> lines;
  size_t pos = 0;
  bool last_was_comment = false;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (!line.empty() && line[0] == ' ') {  // continuation of the previous line (or of a comment)
      if (last_was_comment) continue;
      if (!lines.empty() && !lines.back().empty()) lines.back().append(line.substr(1));
      else Skip(p, line);
      continue;
    }
    last_was_comment = !line.empty() && line[0] == '#';
    if (last_was_comment) continue;
    lines.emplace_back(line);
  }
  lines.emplace_back();  // the last record ends with the text
  std::optional<LdifEntry> cur;
  bool bad_record = false;  // a record whose first line is not dn: (skipped whole)
  for (const std::string& line : lines) {
    if (line.empty()) {
      if (cur) p.entries.push_back(std::move(*cur));
      cur.reset();
      bad_record = false;
      continue;
    }
    size_t colon = line.find(':');
    if (colon == std::string::npos || !AttrType(line.substr(0, line.find(';') < colon ? line.find(';') : colon))) {
      Skip(p, line);
      continue;
    }
    std::string name = line.substr(0, colon);
    std::string_view rest = std::string_view(line).substr(colon + 1);
    std::string value;
    if (!rest.empty() && rest[0] == ':') {
      rest.remove_prefix(1);
      while (!rest.empty() && rest[0] == ' ') rest.remove_prefix(1);
      bool ok = false;
      value = Base64Decode(rest, &ok);
      if (!ok) {
        Skip(p, line);
        continue;
      }
    } else if (!rest.empty() && rest[0] == '<') {
      Skip(p, line);  // a URL value: never fetched
      continue;
    } else {
      while (!rest.empty() && rest[0] == ' ') rest.remove_prefix(1);
      value = std::string(rest);
    }
    if (!cur) {
      if (bad_record) {
        Skip(p, line);
        continue;
      }
      if (IEquals(name, "version") && value == "1") continue;
      if (!IEquals(name, "dn")) {
        bad_record = true;
        Skip(p, line);
        continue;
      }
      cur.emplace();
      cur->dn = std::move(value);
      continue;
    }
    cur->attrs.emplace_back(std::move(name), std::move(value));
  }
  return p;
}

bool LdifSafe(std::string_view v) {
  if (v.empty()) return true;
  unsigned char first = (unsigned char)v[0];
  if (first == ' ' || first == ':' || first == '<') return false;
  for (unsigned char c : v)
    if (c == 0 || c == '\n' || c == '\r' || c >= 0x80) return false;
  return v.back() != ' ';
}

bool LdifAttrName(std::string_view name) {
  size_t semi = name.find(';');
  if (!AttrType(name.substr(0, semi))) return false;
  while (semi != std::string_view::npos) {
    size_t next = name.find(';', semi + 1);
    std::string_view opt = name.substr(semi + 1, next == std::string_view::npos ? std::string_view::npos : next - semi - 1);
    if (opt.empty()) return false;
    for (char c : opt)
      if (!Alpha(c) && !Digit(c) && c != '-') return false;
    semi = next;
  }
  return true;
}

static void Line(std::string& out, std::string_view name, std::string_view value) {
  if (!LdifAttrName(name)) throw std::invalid_argument("LDIF attribute name refused: " + EscapeControls(name));
  out.append(name);
  if (LdifSafe(value)) {
    out += ": ";
    out.append(value);
  } else {
    out += ":: ";
    out += Base64Encode(value);
  }
  out += '\n';
}

LdifBuilder& LdifBuilder::dn(std::string_view dn) {
  if (!out_.empty()) out_ += '\n';
  Line(out_, "dn", dn);
  return *this;
}

LdifBuilder& LdifBuilder::attr(std::string_view name, std::string_view value) {
  Line(out_, name, value);
  return *this;
}

LdifBuilder& LdifBuilder::changetype(std::string_view type) {
  if (type != "add" && type != "modify" && type != "delete")
    throw std::invalid_argument("LDIF changetype refused: " + EscapeControls(type));
  Line(out_, "changetype", type);
  return *this;
}

LdifBuilder& LdifBuilder::op(std::string_view op, std::string_view attr) {
  if (op != "add" && op != "replace" && op != "delete")
    throw std::invalid_argument("LDIF modify operation refused: " + EscapeControls(op));
  if (!LdifAttrName(attr)) throw std::invalid_argument("LDIF attribute name refused: " + EscapeControls(attr));
  Line(out_, op, attr);
  return *this;
}

LdifBuilder& LdifBuilder::end_op() {
  out_ += "-\n";
  return *this;
}

std::string DnEscape(std::string_view value) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    unsigned char c = (unsigned char)value[i];
    bool special = c == ',' || c == '+' || c == '"' || c == '\\' || c == '<' || c == '>' || c == ';' || c == '=';
    bool edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == value.size() && c == ' ');
    if (c < 0x20 || c == 0x7f) {
      out += '\\';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else if (special || edge) {
      out += '\\';
      out += char(c);
    } else {
      out += char(c);
    }
  }
  return out;
}

std::optional<std::string> NormalizeDn(std::string_view dn, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<std::string> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  if (dn.empty()) return fail("is empty");
  if (size_t c = FindControl(dn); c != std::string_view::npos)
    return fail("contains a control character at character " + std::to_string(c + 1));
  std::string out;
  size_t i = 0;
  int rdn = 1;
  while (true) {
    // type
    while (i < dn.size() && dn[i] == ' ') ++i;
    size_t t0 = i;
    while (i < dn.size() && dn[i] != '=' && dn[i] != ',' && dn[i] != '+') ++i;
    std::string_view type = dn.substr(t0, i - t0);
    while (!type.empty() && type.back() == ' ') type.remove_suffix(1);
    if (i >= dn.size() || dn[i] != '=')
      return fail("RDN " + std::to_string(rdn) + " '" + std::string(type) + "' has no '='");
    if (!AttrType(type))
      return fail("RDN " + std::to_string(rdn) + " has the attribute type '" + std::string(type) +
                  "', which is not a name (letter, then letters, digits, '-') or an OID");
    ++i;
    while (i < dn.size() && dn[i] == ' ') ++i;
    // value
    std::string value;
    size_t keep = 0;  // length of `value` up to its last character that is not an unescaped space
    if (i < dn.size() && dn[i] == '#') {
      return fail("RDN " + std::to_string(rdn) + " has a #hex (BER) value; write the value as text");
    }
    while (i < dn.size() && dn[i] != ',' && dn[i] != '+') {
      char c = dn[i];
      if (c == '\\') {
        if (i + 1 >= dn.size()) return fail("ends with a lone backslash");
        int h = Hex(dn[i + 1]), l = i + 2 < dn.size() ? Hex(dn[i + 2]) : -1;
        if (h >= 0 && l >= 0) {
          value += char(h * 16 + l);
          i += 3;
        } else if (std::string_view(",+\"\\<>;=# ").find(dn[i + 1]) != std::string_view::npos) {
          value += dn[i + 1];
          i += 2;
        } else {
          return fail("RDN " + std::to_string(rdn) + " has an unknown escape '\\" + std::string(1, dn[i + 1]) + "'");
        }
        keep = value.size();
        continue;
      }
      if (c == '"' || c == '<' || c == '>' || c == ';' || c == '=')
        return fail("RDN " + std::to_string(rdn) + " has an unescaped '" + std::string(1, c) +
                    "' in its value (write \\" + std::string(1, c) + ")");
      value += c;
      if (c != ' ') keep = value.size();
      ++i;
    }
    value.resize(keep);
    if (value.empty()) return fail("RDN " + std::to_string(rdn) + " '" + std::string(type) + "' has an empty value");
    std::string ltype(type), lvalue = value;
    for (auto& ch : ltype) ch = Lower(ch);
    for (auto& ch : lvalue) ch = Lower(ch);
    out += ltype + "=" + DnEscape(lvalue);
    if (i >= dn.size()) break;
    out += dn[i];
    if (dn[i] == ',') ++rdn;
    ++i;
    if (i >= dn.size()) return fail("ends with '" + std::string(1, dn[i - 1]) + "'");
  }
  return out;
}

}  // namespace labfleet
