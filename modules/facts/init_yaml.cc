#include "modules/facts/init_yaml.h"

#include <cstdio>
#include <regex>

#include "engine/syntax.h"

namespace labfleet {

YNode& YNode::set(std::string key, YNode v, std::string comment) {
  for (auto& e : entries_)
    if (e.key == key) {
      e.value = std::move(v);
      if (!comment.empty()) e.comment = std::move(comment);
      return e.value;
    }
  entries_.push_back({std::move(key), std::move(v), std::move(comment)});
  return entries_.back().value;
}

const YNode* YNode::find(std::string_view key) const {
  for (const auto& e : entries_)
    if (e.key == key) return &e.value;
  return nullptr;
}

namespace {

// Length of the valid UTF-8 sequence at s[i], 0 when invalid (overlong, surrogate, > U+10FFFF, truncated).
size_t Utf8Len(std::string_view s, size_t i, unsigned* cp) {
  unsigned char c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t n;
  unsigned v;
  if ((c & 0xE0) == 0xC0) n = 2, v = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) n = 3, v = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) n = 4, v = c & 0x07;
  else return 0;
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    unsigned char d = static_cast<unsigned char>(s[i + k]);
    if ((d & 0xC0) != 0x80) return 0;
    v = (v << 6) | (d & 0x3F);
  }
  if ((n == 2 && v < 0x80) || (n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
      (v >= 0xD800 && v <= 0xDFFF))
    return 0;
  *cp = v;
  return n;
}

bool DottedQuad(std::string_view s) {
  static const std::regex re("^[0-9]{1,3}(\\.[0-9]{1,3}){3}(/[0-9]{1,2})?$");
  return std::regex_match(s.begin(), s.end(), re);
}

bool PlainSafe(std::string_view s) {
  if (s.empty() || s.size() > 200) return false;
  if (DottedQuad(s)) return true;  // an IPv4 address or network: never a number to YAML
  if (s.front() == ' ' || s.back() == ' ' || s.find("  ") != std::string_view::npos) return false;
  char f = s[0];
  if (!((f >= 'a' && f <= 'z') || (f >= 'A' && f <= 'Z') || f == '/' || f == '_')) return false;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '.' ||
              c == '/' || c == '@' || c == '+' || c == '~' || c == '-' || c == ' ' || c == '(' || c == ')';
    if (!ok) return false;
  }
  std::string low;
  for (char c : s) low += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
  for (const char* w : {"y", "n", "yes", "no", "on", "off", "true", "false", "null", ".inf", ".nan"})
    if (low == w) return false;
  return true;
}

void Indent(std::string& out, int n) { out.append(size_t(n), ' '); }

// Written on one line: a scalar, or a flow() map or sequence of such.
bool CanFlow(const YNode& n) {
  if (n.kind() != YNode::Kind::Seq && n.kind() != YNode::Kind::Map) return true;
  if (!n.flow()) return n.empty();
  for (const auto& i : n.items())
    if (!CanFlow(i)) return false;
  for (const auto& e : n.entries())
    if (!CanFlow(e.value)) return false;
  return true;
}

std::string Flow(const YNode& n) {
  switch (n.kind()) {
    case YNode::Kind::Str: return YamlScalar(n.text());
    case YNode::Kind::Int:
    case YNode::Kind::Bool: return n.text();
    case YNode::Kind::Seq: {
      std::string s = "[";
      for (size_t i = 0; i < n.items().size(); ++i) s += (i ? ", " : "") + Flow(n.items()[i]);
      return s + "]";
    }
    case YNode::Kind::Map: {
      if (n.entries().empty()) return "{}";
      std::string s = "{ ";
      for (size_t i = 0; i < n.entries().size(); ++i)
        s += (i ? ", " : "") + YamlScalar(n.entries()[i].key) + ": " + Flow(n.entries()[i].value);
      return s + " }";
    }
  }
  return "";
}

void Comment(std::string& out, const std::string& text, int indent) {
  if (text.empty()) return;
  size_t p = 0;
  while (p <= text.size()) {
    size_t nl = text.find('\n', p);
    std::string line = text.substr(p, nl == std::string::npos ? std::string::npos : nl - p);
    Indent(out, indent);
    out += line.empty() ? "#\n" : "# " + EscapeControls(line) + "\n";
    if (nl == std::string::npos) break;
    p = nl + 1;
  }
}

void Block(std::string& out, const YNode& n, int indent);

// Writes " VALUE\n" after "key:" or "-", or a newline and the nested block.
void After(std::string& out, const YNode& v, int indent) {
  if (CanFlow(v)) {
    out += " " + Flow(v) + "\n";
    return;
  }
  out += "\n";
  Block(out, v, indent + 2);
}

void Block(std::string& out, const YNode& n, int indent) {
  if (n.kind() == YNode::Kind::Map) {
    for (const auto& e : n.entries()) {
      Comment(out, e.comment, indent);
      Indent(out, indent);
      out += YamlScalar(e.key) + ":";
      After(out, e.value, indent);
    }
  } else {
    for (const auto& i : n.items()) {
      Indent(out, indent);
      if (i.kind() == YNode::Kind::Map && !CanFlow(i)) {
        // "- key: value" with the rest of the map aligned under the first key.
        out += "- ";
        std::string inner;
        Block(inner, i, indent + 2);
        out += inner.substr(size_t(indent) + 2);
        continue;
      }
      out += "-";
      After(out, i, indent);
    }
  }
}

}  // namespace

std::string YamlTextProblem(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    unsigned cp = 0;
    size_t n = Utf8Len(s, i, &cp);
    if (n == 0) return "is not valid UTF-8 (byte " + std::to_string(i + 1) + ")";
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F)) {
      char buf[16];
      snprintf(buf, sizeof buf, "%02X", cp);
      return std::string("holds a control character (0x") + buf + ") at byte " + std::to_string(i + 1);
    }
    i += n;
  }
  return "";
}

std::string YamlScalar(std::string_view s) {
  if (PlainSafe(s)) return std::string(s);
  std::string out = "\"";
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    unsigned cp = 0;
    size_t n = Utf8Len(s, i, &cp);
    if (n == 0) {
      snprintf(buf, sizeof buf, "\\x%02X", static_cast<unsigned char>(s[i]));
      out += buf;
      ++i;
      continue;
    }
    if (cp == '"') out += "\\\"";
    else if (cp == '\\') out += "\\\\";
    else if (cp == '\n') out += "\\n";
    else if (cp == '\t') out += "\\t";
    else if (cp < 0x20 || cp == 0x7F) snprintf(buf, sizeof buf, "\\x%02X", cp), out += buf;
    else if ((cp >= 0x80 && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF || cp == 0x85)
      snprintf(buf, sizeof buf, "\\u%04X", cp), out += buf;
    else out.append(s.substr(i, n));
    i += n;
  }
  return out + "\"";
}

std::string EmitYaml(const YNode& root, const std::string& header) {
  std::string out;
  Comment(out, header, 0);
  Block(out, root, 0);
  return out;
}

}  // namespace labfleet
