// lines: single lines in files labfleet does not own whole (`/etc/environment`, sysctl-style KEY=VALUE files,
// a line of a vendor's config). Module `lines`, order 55 (after files and hosts, before docker and sshd).
//
//   lines:
//     - { path: /etc/environment, line: "DET_MASTER=10.0.1.66:8080", match: "^DET_MASTER=" }
//     - { path: /etc/environment, match: "^OLD_PROXY=", state: absent }
//
// Contract, per entry in list order (entries of one path are applied to that file together):
// - present: every line matching `match` (a POSIX extended regular expression, searched in the line; without
//   `match`, the line itself) is the managed line: the first becomes exactly `line`, the later ones are removed;
//   when none matches, `line` is appended. `line` must match its own `match` (validated), so a second apply finds
//   it and changes nothing.
// - absent: every line matching `match` (or equal to `line`) is removed.
// - The rest of the file is kept byte for byte, and so are its mode and owner. A missing file is an error unless
//   `create: true` (then root:root, `mode` or 0644). A file the probe could not read whole is never edited.
// - Values are checked offline for the file's own syntax where labfleet knows it (/etc/environment: NAME=VALUE;
//   sysctl files: key = value); files other modules own (accounts, sudoers, /etc/hosts with `hosts:`, fstab with
//   `mounts:`, a `files:` entry) are refused, naming the setting to use instead.
//
// yaml_key entries set one scalar of a YAML file someone else wrote (netplan's, above all):
//     - { path: /etc/netplan/50-cloud-init.yaml, yaml_key: network.ethernets.eno1.optional, value: true, check: netplan }
// - Edited as text by SetYamlKeys (lines.h): the key's line, or new lines for a missing key; every other byte,
//   mode and owner kept; what cannot be edited safely (flow style, anchors, ...) fails the resource, file untouched.
// - `value` is validated offline into exactly one scalar (bool, integer, double-quoted string): it cannot inject
//   YAML. A file in /etc/netplan/ is checked on the node with `netplan generate --root-dir` on a copy of its
//   netplan configuration before it is put in place (NetplanPrecheck); a rejection leaves the live file alone.
#include <nlohmann/json.hpp>

#include <regex.h>

#include <memory>
#include <regex>
#include <set>

#include "engine/file_probe.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"
#include "modules/lines.h"

namespace labfleet {

namespace {
// A POSIX extended regular expression, compiled by the C library (glibc's matcher is not recursive: node text
// of any length cannot exhaust the stack, unlike std::regex).
class Ere {
 public:
  explicit Ere(const std::string& pattern) {
    int rc = regcomp(&re_, pattern.c_str(), REG_EXTENDED | REG_NOSUB);
    if (rc != 0) {
      char buf[256];
      regerror(rc, &re_, buf, sizeof buf);
      error_ = buf;
    } else {
      ok_ = true;
    }
  }
  ~Ere() {
    if (ok_) regfree(&re_);
  }
  Ere(const Ere&) = delete;
  Ere& operator=(const Ere&) = delete;
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  bool search(const std::string& line) const { return ok_ && regexec(&re_, line.c_str(), 0, nullptr, 0) == 0; }

 private:
  regex_t re_{};
  bool ok_ = false;
  std::string error_;
};
}  // namespace

std::string ApplyLineEntries(const std::string& text, const std::vector<LineEntry>& entries) {
  std::vector<std::string> lines = SplitLines(text);
  const std::vector<std::string> before = lines;
  for (const auto& e : entries) {
    std::unique_ptr<Ere> re;
    if (!e.match.empty()) re = std::make_unique<Ere>(e.match);
    // A NUL inside a node's line ends it for regexec: such a line is compared only up to there.
    auto hits = [&](const std::string& l) { return re ? re->search(l) : l == e.line; };
    std::vector<std::string> out;
    bool placed = false;
    for (auto& l : lines) {
      if (!hits(l)) {
        out.push_back(std::move(l));
        continue;
      }
      if (!e.absent && !placed) out.push_back(e.line);
      placed = true;
    }
    if (!e.absent && !placed) out.push_back(e.line);
    lines = std::move(out);
  }
  // Unchanged lines: the text as it was (a file without a final newline keeps it that way). Changed: every
  // line ends with a newline.
  if (lines == before) return text;
  std::string result;
  for (const auto& l : lines) result += l + "\n";
  return result;
}


// ---- yaml_key: one scalar of a block-style YAML file, edited as text (no YAML emitter: comments survive)

namespace {

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

// One line of the file: its leading spaces, and whether it holds YAML content (not blank, not a comment).
struct YLine {
  size_t indent = 0;
  bool content = false;
};

// A `key: rest` line of a block mapping, parsed from its mapping's indentation on.
struct YEntry {
  enum Kind { Nested, Scalar, Flow, Special, Block, OpenQuote };
  std::string key, error;  // error: why the line is not a mapping entry labfleet can edit
  Kind kind = Nested;      // Nested: nothing (or a comment) after the colon; a mapping, list or null follows
  size_t colon = 0;        // index just after the ':'
  size_t begin = 0, end = 0;  // Scalar: the scalar's text [begin, end)
};

// The index just past the quoted text that starts at t[i] (a " or ' quote), or npos when it does not close on
// this line.
size_t QuoteEnd(std::string_view t, size_t i) {
  const char q = t[i];
  for (size_t j = i + 1; j < t.size(); ++j) {
    if (q == '"' && t[j] == '\\') {
      ++j;
      continue;
    }
    if (t[j] != q) continue;
    if (q == '\'' && j + 1 < t.size() && t[j + 1] == '\'') {
      ++j;
      continue;
    }
    return j + 1;
  }
  return std::string_view::npos;
}

bool IsSeqItem(std::string_view line, size_t indent) {
  return indent < line.size() && line[indent] == '-' && (indent + 1 == line.size() || IsSpace(line[indent + 1]));
}

YEntry ParseYEntry(std::string_view line, size_t indent) {
  YEntry e;
  std::string_view t = line.substr(indent);
  const char c = t[0];
  if (IsSeqItem(line, indent)) return e.error = "is a list item where a `key: value` line belongs", e;
  if (c == '?') return e.error = "is a complex key (`? `)", e;
  if (c == '{' || c == '[') return e.error = "is in flow style ({...} or [...])", e;
  if (c == '&' || c == '*' || c == '!') return e.error = "starts with an anchor, alias or tag", e;
  size_t colon = std::string_view::npos;
  if (c == '"' || c == '\'') {
    size_t q = QuoteEnd(t, 0);
    if (q == std::string_view::npos) return e.error = "has a quoted key that does not close on its line", e;
    e.key = std::string(t.substr(1, q - 2));
    while (q < t.size() && IsSpace(t[q])) ++q;
    if (q >= t.size() || t[q] != ':' || (q + 1 < t.size() && !IsSpace(t[q + 1])))
      return e.error = "is not `key: value`", e;
    colon = q;
  } else {
    for (size_t i = 0; i < t.size(); ++i) {
      if (t[i] == '#' && i > 0 && IsSpace(t[i - 1])) break;
      if (t[i] == ':' && (i + 1 == t.size() || IsSpace(t[i + 1]))) {
        colon = i;
        break;
      }
    }
    if (colon == std::string_view::npos) return e.error = "is not `key: value`", e;
    size_t k = colon;
    while (k > 0 && IsSpace(t[k - 1])) --k;
    e.key = std::string(t.substr(0, k));
  }
  if (e.key == "<<") return e.error = "is a merge key (<<)", e;
  e.colon = indent + colon + 1;
  size_t r = e.colon;
  while (r < line.size() && IsSpace(line[r])) ++r;
  if (r == line.size() || line[r] == '#') return e.kind = YEntry::Nested, e;
  const char v = line[r];
  if (v == '{' || v == '[') return e.kind = YEntry::Flow, e;
  if (v == '&' || v == '*' || v == '!' || v == '%' || v == '@' || v == '`') return e.kind = YEntry::Special, e;
  if (v == '|' || v == '>') return e.kind = YEntry::Block, e;
  e.kind = YEntry::Scalar;
  e.begin = r;
  if (v == '"' || v == '\'') {
    size_t q = QuoteEnd(line, r);
    if (q == std::string_view::npos) return e.kind = YEntry::OpenQuote, e;
    e.end = q;
    while (q < line.size() && IsSpace(line[q])) ++q;
    if (q < line.size() && line[q] != '#') return e.error = "has text after its quoted value", e;
    return e;
  }
  size_t end = line.size();
  for (size_t i = r; i < line.size(); ++i)
    if (line[i] == '#' && IsSpace(line[i - 1])) {
      end = i;
      break;
    }
  while (end > r && IsSpace(line[end - 1])) --end;
  e.end = end;
  return e;
}

struct YDoc {
  std::vector<std::string> lines;
  std::vector<YLine> info;
  bool final_newline = true;
  size_t start = 0;  // the first line after a leading `---`
  size_t step = 2;   // the file's indentation step
};

std::string LineNo(size_t i) { return "line " + std::to_string(i + 1); }

// Splits and checks the whole file; "" when it can be edited line by line.
std::string ReadYDoc(const std::string& text, YDoc& d) {
  if (text.find('\r') != std::string::npos) return "it has CR (DOS) line endings";
  d.lines = SplitLines(text);
  d.final_newline = text.empty() || text.back() == '\n';
  bool seen_content = false;
  for (size_t i = 0; i < d.lines.size(); ++i) {
    const std::string& l = d.lines[i];
    YLine y;
    while (y.indent < l.size() && l[y.indent] == ' ') ++y.indent;
    size_t first = y.indent;
    while (first < l.size() && IsSpace(l[first])) ++first;
    y.content = first < l.size() && l[first] != '#';
    if (y.content && first != y.indent) return LineNo(i) + " has a tab in its indentation";
    if (y.content && y.indent == 0 && l[0] == '%') return LineNo(i) + " is a YAML directive";
    bool start_marker = l.rfind("---", 0) == 0 && (l.size() == 3 || IsSpace(l[3]));
    bool end_marker = l.rfind("...", 0) == 0 && (l.size() == 3 || IsSpace(l[3]));
    if (y.content && (start_marker || end_marker)) {
      size_t k = 3;
      while (k < l.size() && IsSpace(l[k])) ++k;
      if (!start_marker || seen_content || (k < l.size() && l[k] != '#'))
        return LineNo(i) + " starts or ends a YAML document: only a file of one document is edited";
      d.start = i + 1;
      y.content = false;  // the marker is no part of the mapping
    }
    seen_content = seen_content || y.content;
    d.info.push_back(y);
  }
  // The indentation step: the first key whose value is a nested block, and that block's indentation.
  for (size_t i = d.start; i < d.lines.size(); ++i) {
    if (!d.info[i].content || IsSeqItem(d.lines[i], d.info[i].indent)) continue;
    YEntry e = ParseYEntry(d.lines[i], d.info[i].indent);
    if (!e.error.empty() || e.kind != YEntry::Nested) continue;
    size_t j = i + 1;
    while (j < d.lines.size() && !d.info[j].content) ++j;
    if (j < d.lines.size() && d.info[j].indent > d.info[i].indent) {
      d.step = d.info[j].indent - d.info[i].indent;
      break;
    }
  }
  return "";
}

// One past the last line of the entry at line i (indent ci): its deeper lines, and for a nested value the list
// items at its own indentation. Trailing blank and comment lines are not part of it.
size_t EntryEnd(const YDoc& d, size_t i, size_t ci, bool nested, size_t limit) {
  size_t last = i;
  for (size_t j = i + 1; j < limit; ++j) {
    if (!d.info[j].content) continue;
    if (d.info[j].indent > ci || (nested && d.info[j].indent == ci && IsSeqItem(d.lines[j], ci)))
      last = j;
    else
      break;
  }
  return last + 1;
}

std::string Joined(const std::vector<std::string>& key, size_t upto) {
  std::string s;
  for (size_t i = 0; i < upto && i < key.size(); ++i) s += (i ? "." : "") + key[i];
  return s;
}

// Sets one key; "" when done (d.lines changed or not).
std::string SetOne(YDoc& d, const YamlKeySet& set) {
  const auto& key = set.key;
  size_t region_b = d.start, region_e = d.lines.size();
  long parent_indent = -1;
  auto create = [&](size_t k, size_t base, size_t at) {
    std::vector<std::string> add;
    for (size_t r = k; r < key.size(); ++r) {
      std::string l(base + (r - k) * d.step, ' ');
      l += key[r] + ":";
      if (r + 1 == key.size()) l += " " + set.value;
      add.push_back(l);
    }
    d.lines.insert(d.lines.begin() + long(at), add.begin(), add.end());
    return std::string();
  };
  for (size_t k = 0; k < key.size(); ++k) {
    const std::string here = Joined(key, k + 1);
    size_t first = region_b;
    while (first < region_e && !d.info[first].content) ++first;
    if (first == region_e) {
      // An empty document, or a key with nothing below it (null): the missing keys go right below.
      size_t base = parent_indent < 0 ? 0 : size_t(parent_indent) + d.step;
      return create(k, base, parent_indent < 0 ? d.lines.size() : region_b);
    }
    const size_t ci = d.info[first].indent;
    if (parent_indent >= 0 && ci <= size_t(parent_indent))
      return "`" + Joined(key, k) + "` is a list (" + LineNo(first) + "), not a mapping";
    long found = -1;
    size_t found_end = 0, last_end = first;
    YEntry fe;
    for (size_t i = first; i < region_e;) {
      if (!d.info[i].content) {
        ++i;
        continue;
      }
      if (d.info[i].indent != ci)
        return LineNo(i) + " is indented differently from the keys before it (" + std::to_string(ci) + " spaces)";
      YEntry e = ParseYEntry(d.lines[i], ci);
      if (!e.error.empty()) return LineNo(i) + " " + e.error + " (in the mapping that should hold `" + here + "`)";
      size_t end = EntryEnd(d, i, ci, e.kind == YEntry::Nested, region_e);
      if (e.key == key[k]) {
        if (found >= 0) return "`" + here + "` is there twice (" + LineNo(size_t(found)) + " and " + LineNo(i) + ")";
        found = long(i), found_end = end, fe = e;
      }
      last_end = end;
      i = end;
    }
    if (found < 0) return create(k, ci, last_end);
    const size_t at = size_t(found);
    const std::string where = "`" + here + "` (" + LineNo(at) + ")";
    switch (fe.kind) {
      case YEntry::Flow:
        return where + " is written in flow style ({...} or [...]); labfleet edits block style only: rewrite it "
                       "in block style once (one key per line)";
      case YEntry::Special:
        return where + " holds an anchor, alias, tag or reserved character; not edited";
      case YEntry::Block:
        return where + " is a text block (| or >)" + (k + 1 < key.size() ? ", not a mapping" : "; not edited");
      case YEntry::OpenQuote:
        return where + " is a quoted text over several lines; not edited";
      case YEntry::Scalar:
        if (k + 1 < key.size()) return where + " has a value, not a mapping of keys below it";
        if (found_end > at + 1) return where + " is a text over several lines; not edited";
        {
          std::string& l = d.lines[at];
          if (l.compare(fe.begin, fe.end - fe.begin, set.value) != 0)
            l = l.substr(0, fe.begin) + set.value + l.substr(fe.end);
        }
        return "";
      case YEntry::Nested:
        if (k + 1 < key.size()) {
          parent_indent = long(ci), region_b = at + 1, region_e = found_end;
          continue;
        }
        if (found_end > at + 1) return where + " is a mapping or list; yaml_key sets a single value";
        {
          std::string& l = d.lines[at];  // `key:` or `key:  # comment`: null
          l = l.substr(0, fe.colon) + " " + set.value + l.substr(fe.colon);
          while (!l.empty() && IsSpace(l.back())) l.pop_back();
        }
        return "";
    }
  }
  return "an empty key";
}

}  // namespace

YamlEditResult SetYamlKeys(const std::string& text, const std::vector<YamlKeySet>& sets) {
  std::string cur = text;
  for (const auto& set : sets) {
    YDoc d;
    std::string err = ReadYDoc(cur, d);
    if (err.empty()) err = SetOne(d, set);
    if (!err.empty()) return {text, "cannot set " + Joined(set.key, set.key.size()) + ": " + err};
    std::string out;
    for (size_t i = 0; i < d.lines.size(); ++i) out += d.lines[i] + (i + 1 < d.lines.size() || d.final_newline ? "\n" : "");
    cur = std::move(out);
  }
  return {cur, ""};
}

std::string YamlKeySegmentProblem(const std::string& s) {
  static const std::regex ok("^[A-Za-z0-9_][A-Za-z0-9_.+@-]*$");
  if (s.empty()) return "an empty key segment (two dots, or a dot at an end)";
  if (s.size() > 64) return "key segment " + Quoted(s) + " is longer than 64 characters";
  if (!std::regex_match(s, ok))
    return "key segment " + Quoted(s) +
           " may hold only letters, digits and _ . + @ - (starting with a letter, digit or _), so it is a plain YAML key";
  return "";
}

YamlScalar YamlScalarText(const std::string& raw, bool quoted) {
  if (quoted) {
    std::string out = "\"";
    for (unsigned char c : raw) {
      if (c < 0x20 || c == 0x7f) return {"", "value " + Quoted(raw) + " contains a control character"};
      if (c == '"' || c == '\\') out += '\\';
      out += char(c);
    }
    return {out + "\"", ""};
  }
  static const std::set<std::string> kTrue = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const std::set<std::string> kFalse = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  if (kTrue.count(raw)) return {"true", ""};
  if (kFalse.count(raw)) return {"false", ""};
  static const std::regex integer("^-?(0|[1-9][0-9]{0,17})$");
  if (std::regex_match(raw, integer)) return {raw, ""};
  return {"", "value " + Quoted(raw) +
                  " is neither a boolean (true/false), an integer nor a quoted string; to set a string, quote it "
                  "(value: \"" + raw + "\")"};
}

namespace {

const std::vector<std::string> kKeys = {"path", "line", "match", "state", "create", "mode", "yaml_key", "value", "check"};

bool InNetplanDir(const std::string& p) { return p.rfind("/etc/netplan/", 0) == 0; }

// `yaml_key:` (a dotted string, or a list of segments for a segment that holds a dot, like a VLAN eno1.100),
// `value:` and `check:`; false after reporting a problem.
bool ParseYamlEntry(MapReader& r, LineEntry& e, Findings* f) {
  auto err = [&](const Location& l, const std::string& code, const std::string& msg) {
    if (f) f->error(l, code, msg);
  };
  bool ok = true;
  for (const char* k : {"line", "match"})
    if (r.get(k)) {
      err(r.key_loc(k), "line-yaml-mixed",
          std::string("a lines entry sets either `line:`/`match:` or `yaml_key:` with `value:`, not both (`") + k + ":` here)");
      ok = false;
    }
  if (e.absent) {
    err(r.key_loc("state"), "line-yaml-mixed", "a yaml_key entry sets a key (state: present); removing keys is not supported");
    ok = false;
  }
  const Value* key = r.get("yaml_key");
  std::vector<std::pair<std::string, Location>> segs;
  if (key->is_scalar()) {
    std::string k = key->str();
    for (size_t pos = 0;;) {
      size_t dot = k.find('.', pos);
      segs.push_back({k.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos), key->loc()});
      if (dot == std::string::npos) break;
      pos = dot + 1;
    }
  } else if (key->is_seq() && !key->items().empty()) {
    for (const auto& item : key->items()) segs.push_back({item.is_scalar() ? item.str() : "", item.loc()});
  } else {
    err(key->loc(), "yaml-key", "yaml_key must be a dotted key like network.ethernets.eno1.optional, or a list of "
                                "its segments ([network, vlans, eno1.100, optional]) when a segment holds a dot");
    return false;
  }
  for (const auto& [seg, loc] : segs) {
    if (std::string why = YamlKeySegmentProblem(seg); !why.empty()) {
      err(loc, "yaml-key", "yaml_key " + Quoted(key->is_scalar() ? key->str() : seg) + ": " + why);
      ok = false;
    }
    e.yaml_key.push_back(seg);
  }
  if (const Value* v = r.get("value"); !v) {
    err(r.where(), "missing-required", "a lines entry with `yaml_key:` needs `value:` (true, an integer or a quoted string)");
    ok = false;
  } else if (!v->is_scalar()) {
    err(v->loc(), "yaml-value", "value of yaml_key must be a single value (true/false, an integer or a quoted string), not a list or mapping");
    ok = false;
  } else {
    YamlScalar sc = YamlScalarText(v->str(), v->quoted());
    if (!sc.problem.empty()) {
      err(v->loc(), "yaml-value", sc.problem);
      ok = false;
    }
    e.value = sc.text;
  }
  if (auto c = r.one_of("check", {"netplan"})) e.netplan_check = true;
  if (!e.path.empty()) {
    if (e.netplan_check && !InNetplanDir(e.path)) {
      err(r.key_loc("check"), "line-check", "check: netplan is for files in /etc/netplan/, not " + e.path);
      ok = false;
    }
    if (InNetplanDir(e.path)) {
      e.netplan_check = true;  // always: a netplan file is never installed unchecked
      if (e.path.size() < 5 || e.path.substr(e.path.size() - 5) != ".yaml" || e.path.find('/', 13) != std::string::npos) {
        err(r.key_loc("path"), "line-path", "netplan reads only /etc/netplan/*.yaml; " + e.path + " would be ignored");
        ok = false;
      }
      if (!e.yaml_key.empty() && e.yaml_key[0] != "network") {
        err(key->loc(), "yaml-key", "a netplan key starts with `network.` (e.g. network.ethernets.eno1.optional); `netplan get` "
                                    "leaves that first segment out, the file does not");
        ok = false;
      }
      if (!r.get("mode")) e.mode = 0600;  // a created netplan file: netplan warns about anything others can read
    }
  }
  return ok;
}

// Files whose lines belong to another module or tool: editing them line by line would fight it or bypass its
// checks. Path -> what to use instead.
std::optional<std::string> OwnedElsewhere(const std::string& path) {
  static const std::map<std::string, std::string> kFixed = {
      {"/etc/passwd", "users:"}, {"/etc/shadow", "users:"},     {"/etc/group", "user_groups:"},
      {"/etc/gshadow", "user_groups:"}, {"/etc/subuid", "users: (subids)"}, {"/etc/subgid", "users: (subids)"},
      {"/etc/sudoers", "files: (checked with visudo)"}};
  if (auto it = kFixed.find(path); it != kFixed.end()) return it->second;
  if (path.rfind("/etc/sudoers.d/", 0) == 0) return "files: (checked with visudo)";
  return std::nullopt;
}

bool IsSysctlFile(const std::string& p) {
  return p == "/etc/sysctl.conf" || (p.rfind("/etc/sysctl.d/", 0) == 0 && p.size() > 5 && p.substr(p.size() - 5) == ".conf");
}

// The file's own syntax, where labfleet knows it; "" when fine.
std::string FileSyntax(const std::string& path, const std::string& line) {
  if (line.empty() || line[0] == '#') return "";
  if (path == "/etc/environment") {
    static const std::regex env("^[A-Za-z_][A-Za-z0-9_]*=.*$");
    if (!std::regex_match(line, env))
      return "is not NAME=VALUE, the only form pam_env reads from /etc/environment (no `export`, no spaces around =)";
  }
  if (IsSysctlFile(path)) {
    static const std::regex kv(R"(^-?[A-Za-z0-9_.*/-]+[ \t]*=[ \t]*[^ \t].*$)");
    if (!std::regex_match(line, kv)) return "is not `key = value`, the form sysctl.d(5) reads";
  }
  return "";
}

std::optional<LineEntry> ParseEntry(const Value& v, Findings* f) {
  auto err = [&](const Location& l, const std::string& code, const std::string& msg) {
    if (f) f->error(l, code, msg);
  };
  Findings scratch;
  MapReader r(v, "a lines entry", v.loc(), f ? *f : scratch, kKeys);
  if (!r.is_map()) return std::nullopt;
  LineEntry e;
  e.where = v.loc();
  bool ok = r.require("path", "e.g. `path: /etc/environment`");
  auto path = r.str("path");
  if (path) {
    PathResult pr = NormalizeAbsolutePath(*path);
    if (pr.error) {
      err(r.get("path")->loc(), pr.error->code == "path-not-absolute" ? "line-path" : pr.error->code,
          "lines path " + Quoted(*path) + " " + pr.error->what);
      ok = false;
    } else {
      e.path = pr.path;
      if (auto other = OwnedElsewhere(e.path)) {
        err(r.get("path")->loc(), "line-path-owned",
            "lines may not edit " + e.path + ": its lines are managed through `" + *other + "`");
        ok = false;
      }
    }
  }
  if (auto s = r.one_of("state", {"present", "absent"})) e.absent = *s == "absent";
  if (auto b = r.boolean("create")) e.create = *b;
  if (auto m = r.str("mode")) {
    char* end = nullptr;
    unsigned long mode = strtoul(m->c_str(), &end, 8);
    if (m->size() < 3 || *end || mode > 07777) {
      err(r.get("mode")->loc(), "line-mode", "mode " + Quoted(*m) + " is not an octal file mode; write it quoted, like \"0644\"");
      ok = false;
    } else {
      e.mode = unsigned(mode);
    }
  }
  if (r.get("yaml_key")) {
    if (!ParseYamlEntry(r, e, f)) ok = false;
    if (!ok) return std::nullopt;
    return e;
  }
  if (InNetplanDir(e.path)) {
    err(r.key_loc("path"), "line-yaml-mixed",
        "a netplan file is edited by key, checked with `netplan generate`: use `yaml_key:` and `value:` instead of `line:`");
    ok = false;
  }
  for (const char* k : {"value", "check"})
    if (r.get(k)) {
      err(r.key_loc(k), "line-yaml-mixed", std::string("`") + k + ":` belongs to a `yaml_key:` entry; a line entry sets `line:`");
      ok = false;
    }
  if (auto l = r.str("line")) {
    e.line = *l;
    if (Report(f ? *f : scratch, r.get("line")->loc(), "line " + Quoted(*l), CheckNoControl(*l))) ok = false;
  }
  if (auto m = r.str("match")) {
    e.match = *m;
    if (Report(f ? *f : scratch, r.get("match")->loc(), "match " + Quoted(*m), CheckNoControl(*m))) {
      ok = false;
    } else {
      Ere re(e.match);
      if (!re.ok()) {
        err(r.get("match")->loc(), "line-regex",
            "match " + Quoted(e.match) + " is not a POSIX extended regular expression (" + re.error() + ")");
        ok = false;
      } else {
        if (!e.absent && r.get("line") && !re.search(e.line)) {
          err(r.get("match")->loc(), "line-not-matching",
              "line " + Quoted(e.line) + " does not match its own match " + Quoted(e.match) +
                  "; the next apply would not find it and would add it again. Make `match` select the line "
                  "(e.g. \"^NAME=\" for NAME=VALUE)");
          ok = false;
        }
      }
    }
  }
  if (!e.absent && !r.get("line")) {
    err(v.loc(), "missing-required", "a lines entry needs `line:` (or `state: absent` with `match:`)");
    ok = false;
  }
  if (e.absent && e.match.empty() && !r.get("line")) {
    err(v.loc(), "missing-required", "a lines entry with `state: absent` needs `match:` or `line:`");
    ok = false;
  }
  if (ok && !e.absent && !e.path.empty())
    if (std::string why = FileSyntax(e.path, e.line); !why.empty()) {
      err(r.get("line")->loc(), "line-syntax", "line " + Quoted(e.line) + " for " + e.path + " " + why);
      ok = false;
    }
  if (!ok) return std::nullopt;
  return e;
}

std::vector<LineEntry> ParseEntries(const Value* list, Findings* f) {
  std::vector<LineEntry> out;
  if (!list || list->is_null()) return out;
  if (!list->is_seq()) {
    if (f) f->error(list->loc(), "wrong-type", "lines must be a list of { path: ..., line: ..., match: ... }");
    return out;
  }
  for (const auto& item : list->items())
    if (auto e = ParseEntry(item, f)) out.push_back(std::move(*e));
  return out;
}

// Runs on the node with the new version in "$LF_NEW" (Change::precheck): `netplan generate --root-dir` on a
// copy of the node's netplan configuration (/lib, /etc and /run/netplan: it reads all three) with the new file in
// place of `path`. In netplan.io 0.106 (Debian 12) `generate --root-dir DIR` only runs the generator on DIR: it
// reads DIR/{lib,etc,run}/netplan/*.yaml and writes below DIR/run, nothing outside DIR, no daemon-reload. Its
// output (at most 4 KiB, the temporary directory left out of paths) is the check's message; a node without
// netplan fails the check. Uses no `exit`.
std::string NetplanPrecheck(const std::string& path) {
  const std::string base = path.substr(path.rfind('/') + 1);
  Script s;
  s.raw("if ! command -v netplan >/dev/null 2>&1; then");
  s.raw("echo 'netplan is not installed on the node (package netplan.io): the new file cannot be checked'; false");
  s.raw("elif lf_d=$(mktemp -d /run/labfleet-netplan.XXXXXX); then");
  s.raw("lf_rc=0");
  s.raw("for lf_s in lib etc run; do");
  s.raw("if [ -d \"/$lf_s/netplan\" ]; then mkdir -p \"$lf_d/$lf_s/netplan\" && cp -pR \"/$lf_s/netplan/.\" \"$lf_d/$lf_s/netplan/\" || lf_rc=1; fi");
  s.raw("done");
  s.raw("mkdir -p \"$lf_d/etc/netplan\" && rm -f -- \"$lf_d/etc/netplan/${LF_NEW##*/}\" && cp -p -- \"$LF_NEW\" \"$lf_d/etc/netplan/\"" +
        ShellQuote(base) + " || lf_rc=1");
  s.raw("if [ $lf_rc = 0 ]; then");
  s.raw("netplan generate --root-dir \"$lf_d\" > \"$lf_d.out\" 2>&1; lf_rc=$?");
  s.raw("head -c 4096 \"$lf_d.out\" | sed \"s|$lf_d||g\"");
  s.raw("else echo 'could not copy /etc/netplan for the check'; fi");
  s.raw("rm -rf -- \"$lf_d\" \"$lf_d.out\"; [ $lf_rc = 0 ]");
  s.raw("else false; fi");
  return s.str();
}

struct LinesWant {
  std::string path;
  std::vector<LineEntry> entries;
};

class LinesModule : public Module {
 public:
  std::string name() const override { return "lines"; }
  int order() const override { return 55; }
  std::vector<std::string> settings_keys() const override { return {"lines"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return ListOf(Closed(kKeys, {{"path", Scalar("absolute path of the file (required)")},
                                 {"line", Scalar("the exact line")},
                                 {"match", Scalar("POSIX extended regular expression selecting the line")},
                                 {"state", Enum({"present", "absent"})},
                                 {"create", Boolean()},
                                 {"mode", Scalar("octal mode of a created file")},
                                 {"yaml_key", OneOf({Scalar("dotted key of a YAML file, e.g. network.ethernets.eno1.optional"), Strings()})},
                                 {"value", Scalar("the key's value: true/false, an integer or a quoted string")},
                                 {"check", Enum({"netplan"})}}),
                  "single lines or YAML keys in files labfleet does not own whole");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    const Value* defaults = inv.lab.find("defaults");
    ParseEntries(defaults ? defaults->find("lines") : nullptr, &f);
    for (const auto& g : inv.groups) ParseEntries(g.raw.find("lines"), &f);
    for (const auto& n : inv.nodes) ParseEntries(n.raw.find("lines"), &f);
    // Per node: a file another module or a `files:` entry writes whole would flap between the two.
    std::set<std::string> reported;
    for (const auto& n : inv.nodes) {
      Value settings = inv.settings(n);
      auto entries = ParseEntries(settings.find("lines"), nullptr);
      if (entries.empty()) continue;
      NodeContext ctx{inv, n, settings};
      std::map<std::string, std::string> owned;  // path -> the setting that writes it
      for (const auto& m : Modules())
        if (m->name() != name())
          for (auto& o : m->owned_files(ctx)) owned.emplace(o.path, o.by);
      if (const Value* files = settings.find("files"); files && files->is_seq())
        for (const auto& item : files->items())
          if (const Value* p = item.find("path"); p && p->is_scalar())
            if (PathResult pr = NormalizeAbsolutePath(p->str()); !pr.error) owned.emplace(pr.path, "files:");
      // One file: lines or keys, not both; a key set twice, or a key set below another key's value, would flap.
      std::map<std::string, std::vector<const LineEntry*>> by_path;
      for (const auto& e : entries) by_path[e.path].push_back(&e);
      for (const auto& [path, list] : by_path) {
        const LineEntry* first_line = nullptr;
        const LineEntry* first_key = nullptr;
        for (const LineEntry* e : list) {
          const LineEntry*& slot = e->yaml_key.empty() ? first_line : first_key;
          if (!slot) slot = e;
        }
        if (first_line && first_key && reported.insert(first_key->where.str() + "|mixed|" + n.name).second)
          f.error(first_key->where, "line-yaml-mixed",
                  "lines edits " + path + " both by line (" + first_line->where.str() + ") and by yaml_key on node '" +
                      n.name + "'; a file is edited one way");
        for (size_t i = 0; i < list.size(); ++i)
          for (size_t j = 0; j < i; ++j) {
            const auto &a = list[j]->yaml_key, &b = list[i]->yaml_key;
            if (a.empty() || b.empty()) continue;
            size_t common = std::min(a.size(), b.size());
            if (!std::equal(a.begin(), a.begin() + long(common), b.begin())) continue;
            if (!reported.insert(list[i]->where.str() + "|key|" + n.name).second) continue;
            std::string ka, kb;
            for (const auto& s : a) ka += (ka.empty() ? "" : ".") + s;
            for (const auto& s : b) kb += (kb.empty() ? "" : ".") + s;
            f.error(list[i]->where, "yaml-key-conflict",
                    a.size() == b.size()
                        ? "yaml_key " + kb + " of " + path + " is set twice on node '" + n.name + "' (also at " + list[j]->where.str() + ")"
                        : "yaml_key " + kb + " and " + ka + " (" + list[j]->where.str() + ") of " + path + " on node '" + n.name +
                              "': one lies inside the other, so one of them cannot be a single value");
          }
      }
      for (const auto& e : entries) {
        auto it = owned.find(e.path);
        if (it == owned.end() || !reported.insert(e.where.str() + "|" + n.name).second) continue;
        f.error(e.where, "file-owned-by-module",
                "lines edits " + e.path + ", which `" + it->second + "` writes on node '" + n.name +
                    "'; every apply would undo the other's change. Set what it should say through `" + it->second + "`");
      }
    }
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    std::map<std::string, std::shared_ptr<LinesWant>> by_path;
    for (auto& e : ParseEntries(ctx.settings.find("lines"), nullptr)) {
      auto& w = by_path[e.path];
      if (!w) {
        w = std::make_shared<LinesWant>();
        w->path = e.path;
        out.push_back({name(), "lines:" + e.path, e.where, w});
      }
      w->entries.push_back(std::move(e));
    }
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    for (const auto& r : rs) out.push_back(FileProbe(r.as<LinesWant>().path));
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    const LinesWant& w = r.as<LinesWant>();
    FileState live = ParseFileProbe(results, w.path);
    std::vector<LineEntry> line_entries;
    std::vector<YamlKeySet> keys;
    bool netplan = false;
    for (const auto& e : w.entries) {
      if (e.yaml_key.empty()) {
        line_entries.push_back(e);
      } else {
        keys.push_back({e.yaml_key, e.value});
        netplan = netplan || e.netplan_check;
      }
    }
    const std::string what = (keys.empty() ? "lines in " : "yaml keys in ") + w.path + " (" +
                             Counted(w.entries.size(), "entry", "entries") + ")";
    if (live.exists && !live.regular)
      return Failure(w.path + " is not a regular file (a link, a directory?); lines edits only a plain file");
    if (auto refused = RefuseUnreadEdit(live, w.path)) return *refused;
    bool create = false;
    unsigned mode = 0644;
    for (const auto& e : w.entries)
      if (e.create) create = true, mode = e.mode;
    if (!live.exists && !create) {
      bool only_absent = true;
      for (const auto& e : w.entries) only_absent = only_absent && e.absent;
      if (only_absent) return Noop(w.path + " does not exist, so none of its lines to remove is there");
      return Failure(w.path + " does not exist; lines edits an existing file (set `create: true` on the entry to "
                              "create it as root:root " + Octal(mode) + ")");
    }
    std::string text = live.exists ? live.content : "";
    if (!line_entries.empty()) text = ApplyLineEntries(text, line_entries);
    if (!keys.empty()) {
      YamlEditResult edit = SetYamlKeys(text, keys);
      if (!edit.error.empty())
        return Failure(w.path + ": " + edit.error + "; the file was left as it is (edit that part by hand, or "
                                                     "manage the whole file with `files:`)");
      text = std::move(edit.text);
    }
    FileSpec want{w.path, std::move(text), live.exists ? live.mode : mode, live.exists ? live.owner : "root",
                  live.exists ? live.group : "root"};
    // A netplan file may hold Wi-Fi or 802.1X passwords: such a file's diff is not shown.
    bool secret = LooksSecret(w.path, live.content + want.bytes) ||
                  (netplan && (live.content + want.bytes).find("password") != std::string::npos);
    DiffResult d = DiffFile(want, live, what, !secret);
    if (netplan)
      for (auto& c : d.changes)
        if (c.kind == Change::Kind::PutFile) c.precheck = NetplanPrecheck(w.path);
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<LinesModule>());

}  // namespace
}  // namespace labfleet
