#include "modules/facts/systemd_facts.h"

#include <algorithm>

#include "modules/facts/accounts.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {

namespace {

constexpr std::string_view kBlanks = " \t\r\n";

std::string Trim(std::string_view s) { return TrimChars(s, kBlanks); }
std::vector<std::string> Words(std::string_view s) { return SplitWords(s, kBlanks); }

bool IsPropertyName(std::string_view k) {
  if (k.empty() || !isupper((unsigned char)k[0])) return false;
  for (char c : k)
    if (!isalnum((unsigned char)c)) return false;
  return true;
}

const char* const kUnitSuffixes[] = {".service", ".socket",  ".target", ".timer", ".mount", ".automount",
                                     ".path",    ".device",  ".swap",   ".slice", ".scope"};

bool HasUnitSuffix(std::string_view name) {
  for (const char* s : kUnitSuffixes) {
    std::string_view suf(s);
    if (name.size() > suf.size() && name.substr(name.size() - suf.size()) == suf) return true;
  }
  return false;
}

const std::string kGrubKey = "GRUB_CMDLINE_LINUX_DEFAULT=";
const std::string kGrubMarker = "# labfleet kernel_args:";

struct GrubLine {
  size_t index = std::string::npos;  // line number of the last assignment
  std::string prefix;                // text before the value ("GRUB_CMDLINE_LINUX_DEFAULT=", maybe "export ")
  std::string value;                 // unquoted
  std::string rest;                  // after the value (a comment)
  std::string error;
};

GrubLine FindGrubLine(const std::vector<std::string>& lines) {
  GrubLine g;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string t = Trim(lines[i]);
    if (t.rfind("export ", 0) == 0) t = Trim(t.substr(7));
    if (t.rfind(kGrubKey, 0) == 0) g.index = i;
  }
  if (g.index == std::string::npos) return g;
  const std::string& line = lines[g.index];
  size_t eq = line.find(kGrubKey) + kGrubKey.size();
  g.prefix = line.substr(0, eq);
  std::string_view v = std::string_view(line).substr(eq);
  if (!v.empty() && (v[0] == '"' || v[0] == '\'')) {
    char q = v[0];
    size_t close = v.find(q, 1);
    if (close == std::string_view::npos) {
      g.error = "GRUB_CMDLINE_LINUX_DEFAULT has no closing quote (a value over several lines?)";
      return g;
    }
    g.value = std::string(v.substr(1, close - 1));
    g.rest = std::string(v.substr(close + 1));
    if (q == '"' && g.value.find_first_of("$`\\") != std::string::npos)
      g.error = "GRUB_CMDLINE_LINUX_DEFAULT uses shell expansion ($, `, \\); labfleet edits only plain values";
  } else {
    size_t end = v.find_first_of(" \t");
    g.value = std::string(v.substr(0, end));
    g.rest = end == std::string_view::npos ? "" : std::string(v.substr(end));
    if (g.value.find_first_of("$`\\\"'") != std::string::npos)
      g.error = "GRUB_CMDLINE_LINUX_DEFAULT uses shell expansion or quoting labfleet does not edit";
  }
  if (!g.rest.empty() && !Trim(g.rest).empty() && Trim(g.rest)[0] != '#')
    g.error = "GRUB_CMDLINE_LINUX_DEFAULT is followed by more shell text on its line; labfleet edits only plain values";
  return g;
}

std::string KeyOf(const std::string& arg) { return arg.substr(0, arg.find('=')); }

}  // namespace

bool UnitState::has_name(std::string_view n) const {
  if (id == n) return true;
  return std::find(names.begin(), names.end(), n) != names.end();
}

SystemctlShow ParseSystemctlShow(std::string_view text) {
  SystemctlShow out;
  UnitState cur;
  bool open = false;
  auto flush = [&] {
    if (open) out.units.push_back(std::move(cur));
    cur = UnitState();
    open = false;
  };
  for (const auto& raw : SplitLines(text)) {
    std::string line = raw;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (Trim(line).empty()) {
      flush();
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string::npos || !IsPropertyName(line.substr(0, eq))) {
      ++out.skipped;
      continue;
    }
    std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    open = true;
    cur.props[k] = v;
    if (k == "Id") cur.id = v;
    else if (k == "Names") cur.names = Words(v);
    else if (k == "LoadState") cur.load_state = v;
    else if (k == "ActiveState") cur.active_state = v;
    else if (k == "SubState") cur.sub_state = v;
    else if (k == "UnitFileState") cur.unit_file_state = v;
  }
  flush();
  return out;
}

const UnitState* SystemctlShow::find(const std::vector<std::string>& asked, std::string_view name) const {
  if (units.size() == asked.size()) {
    for (size_t i = 0; i < asked.size(); ++i)
      if (asked[i] == name) return &units[i];
  }
  for (const auto& u : units)
    if (u.has_name(name)) return &u;
  return nullptr;
}

const char* const kUnitProperties = "Id,Names,LoadState,ActiveState,SubState,UnitFileState";

Probe SystemctlShowProbe(const std::vector<std::string>& units) {
  return {"systemctl-show:" + Join(units, " "),
          Cmd("systemctl").arg("show").arg("-p").arg(kUnitProperties).arg("--").args(units).str()};
}

Probe SystemctlGetDefaultProbe() { return {"systemctl-get-default", "systemctl get-default"}; }

std::string UnitName(std::string_view name) {
  if (HasUnitSuffix(name)) return std::string(name);
  return std::string(name) + ".service";
}

bool IsUnitName(std::string_view name) {
  if (name.empty() || name.size() > 255 || name[0] == '-' || name[0] == '.') return false;
  for (char c : name)
    if (!isalnum((unsigned char)c) && std::string_view(":_.\\@-").find(c) == std::string_view::npos) return false;
  return true;
}

bool IsKernelArg(std::string_view arg) {
  if (arg.empty() || arg.size() > 512) return false;
  for (char c : arg)
    if (!isalnum((unsigned char)c) && std::string_view("_.,:=/+@-").find(c) == std::string_view::npos) return false;
  return true;
}

std::optional<std::string> GrubCmdlineDefault(std::string_view grub_default) {
  auto lines = SplitLines(grub_default);
  GrubLine g = FindGrubLine(lines);
  if (g.index == std::string::npos) return std::nullopt;
  return g.value;
}

GrubEdit EditGrubCmdline(std::string_view grub_default, const std::vector<std::string>& want) {
  GrubEdit out;
  auto lines = SplitLines(grub_default);
  GrubLine g = FindGrubLine(lines);
  if (!g.error.empty()) {
    out.error = g.error;
    out.content = std::string(grub_default);
    return out;
  }
  // What labfleet added last time: the last marker line.
  std::vector<std::string> managed;
  for (const auto& l : lines)
    if (Trim(l).rfind(kGrubMarker, 0) == 0) managed = Words(Trim(l).substr(kGrubMarker.size()));
  std::vector<std::string> cur = Words(g.value);
  auto in = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (const auto& m : managed) {
    if (in(want, m) || !in(cur, m)) continue;
    cur.erase(std::remove(cur.begin(), cur.end(), m), cur.end());
    out.removed.push_back(m);
  }
  for (const auto& w : want) {
    if (in(cur, w)) continue;
    const std::string key = KeyOf(w);
    size_t same_key_wanted = 0;
    for (const auto& x : want) same_key_wanted += KeyOf(x) == key;
    std::vector<size_t> same;
    for (size_t i = 0; i < cur.size(); ++i)
      if (KeyOf(cur[i]) == key) same.push_back(i);
    if (w.find('=') != std::string::npos && same.size() == 1 && same_key_wanted == 1) {
      out.removed.push_back(cur[same[0]]);
      cur[same[0]] = w;
    } else {
      cur.push_back(w);
    }
    out.added.push_back(w);
  }
  if (out.added.empty() && out.removed.empty() && managed == want) {
    out.content = std::string(grub_default);  // nothing to do: byte for byte as it was
    return out;
  }
  std::string new_line = g.index == std::string::npos ? kGrubKey + "\"" + Join(cur, " ") + "\""
                         : out.added.empty() && out.removed.empty() ? lines[g.index]
                                                                     : g.prefix + "\"" + Join(cur, " ") + "\"" + g.rest;
  std::vector<std::string> result;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (Trim(lines[i]).rfind(kGrubMarker, 0) == 0) continue;
    if (i == g.index) {
      if (!want.empty()) result.push_back(kGrubMarker + " " + Join(want, " "));
      result.push_back(new_line);
      continue;
    }
    result.push_back(lines[i]);
  }
  if (g.index == std::string::npos && !want.empty()) {
    result.push_back(kGrubMarker + " " + Join(want, " "));
    result.push_back(new_line);
  }
  for (const auto& l : result) out.content += l + "\n";
  return out;
}

std::vector<std::string> MissingFromCmdline(std::string_view proc_cmdline, const std::vector<std::string>& want) {
  auto have = Words(proc_cmdline);
  std::vector<std::string> out;
  for (const auto& w : want)
    if (std::find(have.begin(), have.end(), w) == have.end()) out.push_back(w);
  return out;
}

bool IsSysctlKey(std::string_view key) {
  if (key.empty() || key.size() > 255 || key[0] == '.' || key[0] == '/' || key[0] == '-') return false;
  bool sep = false;
  for (char c : key) {
    if (c == '.' || c == '/') sep = true;
    else if (!isalnum((unsigned char)c) && c != '_' && c != '-') return false;
  }
  return sep;
}

std::string SysctlFile(const std::vector<std::pair<std::string, std::string>>& values) {
  std::string out = "# Managed by labfleet (the inventory's sysctl: settings); edits here are overwritten.\n";
  for (const auto& [k, v] : values) out += k + " = " + v + "\n";
  return out;
}


// ---- unit files labfleet writes ----

std::string UnitValueProblem(std::string_view value) {
  if (size_t at = FindControl(value); at != std::string_view::npos)
    return "has a control character (newline, tab, ...) at character " + std::to_string(at + 1) +
           "; a unit-file value is one line";
  if (!value.empty() && value.back() == '\\') return "ends with a backslash, which continues a unit-file line";
  if (!value.empty() && (isspace((unsigned char)value.front()) || isspace((unsigned char)value.back())))
    return "starts or ends with a blank, which systemd strips";
  return "";
}

std::string EscapeSpecifiers(std::string_view value) {
  std::string out;
  for (char c : value) {
    out += c;
    if (c == '%') out += '%';
  }
  return out;
}

std::string ArgvProblem(const std::vector<std::string>& argv) {
  if (argv.empty()) return "the command is empty; write it as a list like [duc, index, /home]";
  for (size_t i = 0; i < argv.size(); ++i)
    if (FindControl(argv[i]) != std::string::npos)
      return "word " + std::to_string(i + 1) + " " + Quoted(argv[i]) + " has a control character (newline, tab, ...)";
  const std::string& a0 = argv[0];
  bool ok = !a0.empty() && (a0[0] == '/' || isalnum((unsigned char)a0[0]) || a0[0] == '_');
  for (char c : a0)
    if (!isalnum((unsigned char)c) && std::string_view("_.+-/").find(c) == std::string_view::npos) ok = false;
  if (a0[0] != '/' && a0.find('/') != std::string::npos) ok = false;
  if (a0.find("/../") != std::string::npos || a0.find("/./") != std::string::npos) ok = false;
  if (!ok)
    return "the program " + Quoted(a0) +
           " must be an absolute path or a command name of letters, digits and _ . + - (systemd looks names up "
           "in its own PATH)";
  return "";
}

std::string SystemdQuoteWord(std::string_view word) {
  std::string esc;
  bool quote = word.empty();
  for (char c : word) {
    if (c == '%') {
      esc += "%%";
    } else if (c == '$') {
      esc += "$$";
    } else if (c == '\\' || c == '"') {
      esc += '\\';
      esc += c;
      quote = true;
    } else {
      if (!isalnum((unsigned char)c) && std::string_view("_./:=,+@-").find(c) == std::string_view::npos) quote = true;
      esc += c;
    }
  }
  return quote ? "\"" + esc + "\"" : esc;
}

std::string ExecStartValue(const std::vector<std::string>& argv) {
  std::string out;
  for (const auto& w : argv) out += (out.empty() ? "" : " ") + SystemdQuoteWord(w);
  return out;
}

namespace {

bool Number(std::string_view s, int& v) {
  if (s.empty() || s.size() > 4) return false;
  v = 0;
  for (char c : s) {
    if (!isdigit((unsigned char)c)) return false;
    v = v * 10 + (c - '0');
  }
  return true;
}

// "*" or a list of N, N..M, N/STEP, */STEP, N..M/STEP within [lo, hi].
bool CalendarComponent(std::string_view c, int lo, int hi) {
  if (c.empty()) return false;
  size_t start = 0;
  while (start <= c.size()) {
    size_t comma = c.find(',', start);
    std::string_view item = c.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (item.empty()) return false;
    if (size_t slash = item.find('/'); slash != std::string_view::npos) {
      int step;
      if (!Number(item.substr(slash + 1), step) || step == 0) return false;
      item = item.substr(0, slash);
    }
    if (item != "*") {
      size_t dots = item.find("..");
      int a, b;
      if (dots == std::string_view::npos) {
        if (!Number(item, a) || a < lo || a > hi) return false;
      } else if (!Number(item.substr(0, dots), a) || !Number(item.substr(dots + 2), b) || a < lo || b > hi || a > b) {
        return false;
      }
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return true;
}

int Weekday(std::string_view w) {
  static const char* kDays[] = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"};
  std::string l;
  for (char c : w) l += char(tolower((unsigned char)c));
  for (int i = 0; i < 7; ++i)
    if (l == std::string(kDays[i]).substr(0, 3) || l == kDays[i]) return i;
  return -1;
}

bool Weekdays(std::string_view s) {
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    std::string_view item = s.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    size_t dots = item.find("..");
    if (dots == std::string_view::npos) {
      if (Weekday(item) < 0) return false;
    } else if (Weekday(item.substr(0, dots)) < 0 || Weekday(item.substr(dots + 2)) < 0) {
      return false;
    }
    if (comma == std::string_view::npos) return true;
    start = comma + 1;
  }
}

std::vector<std::string_view> SplitOn(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

}  // namespace

std::string CalendarProblem(std::string_view spec) {
  static const char* kShort[] = {"minutely", "hourly", "daily", "weekly", "monthly", "quarterly",
                                 "semiannually", "yearly", "annually"};
  const std::string hint =
      "; write a shorthand (hourly, daily, weekly, monthly, ...) or \"[Mon..Fri] [YYYY-]MM-DD HH:MM[:SS]\" with "
      "numbers, *, lists (,), ranges (..) and steps (/N), e.g. \"Mon..Fri *-*-* 02:30\" or \"*:0/15\"";
  if (std::string p = UnitValueProblem(spec); !p.empty()) return p;
  if (spec.empty()) return "is empty" + hint;
  for (const char* s : kShort)
    if (spec == s) return "";
  std::vector<std::string_view> words;
  for (auto w : SplitOn(spec, ' '))
    if (!w.empty()) words.push_back(w);
  size_t i = 0;
  bool any = false;
  if (i < words.size() && isalpha((unsigned char)words[i][0]) && words[i] != "UTC") {
    if (!Weekdays(words[i])) return "has " + Quoted(std::string(words[i])) + ", which is not a weekday list like Mon..Fri or Sat,Sun" + hint;
    ++i, any = true;
  }
  if (i < words.size() && words[i].find('-') != std::string_view::npos) {
    auto parts = SplitOn(words[i], '-');
    bool ok = parts.size() == 2 || parts.size() == 3;
    if (parts.size() == 3) ok = ok && CalendarComponent(parts[0], 1970, 2199);
    if (ok) ok = CalendarComponent(parts[parts.size() - 2], 1, 12) && CalendarComponent(parts.back(), 1, 31);
    if (!ok) return "has the date " + Quoted(std::string(words[i])) + ", which is not [YYYY-]MM-DD" + hint;
    ++i, any = true;
  }
  if (i < words.size() && words[i].find(':') != std::string_view::npos) {
    auto parts = SplitOn(words[i], ':');
    bool ok = (parts.size() == 2 || parts.size() == 3) && CalendarComponent(parts[0], 0, 23) &&
              CalendarComponent(parts[1], 0, 59) && (parts.size() == 2 || CalendarComponent(parts[2], 0, 59));
    if (!ok) return "has the time " + Quoted(std::string(words[i])) + ", which is not HH:MM[:SS]" + hint;
    ++i, any = true;
  }
  if (i < words.size() && words[i] == "UTC" && any) ++i;
  if (i < words.size()) return "has " + Quoted(std::string(words[i])) + " where it expects no more" + hint;
  if (!any) return "is not a calendar expression" + hint;
  return "";
}

std::string VerifyUnitPrecheck(const std::string& name, const std::vector<std::pair<std::string, std::string>>& siblings) {
  auto in_dir = [](const std::string& unit) { return "\"$lf_vd\"/" + ShellQuote(unit); };
  std::string s = "lf_vd=$(mktemp -d) && " + Cmd("cp").arg("--").raw("\"$LF_NEW\"").raw(in_dir(name)).str();
  std::string files = in_dir(name);
  for (const auto& [unit, text] : siblings) {
    s += " && " + Cmd("printf").arg("%s").arg(text).raw(">").raw(in_dir(unit)).str();
    files += " " + in_dir(unit);
  }
  s += " && if command -v systemd-analyze >/dev/null 2>&1; then systemd-analyze verify --man=no " + files +
       " >\"$lf_vd/.out\" 2>&1; lf_vr=$?; sed \"s|$lf_vd/||g\" \"$lf_vd/.out\"; [ \"$lf_vr\" = 0 ]; else " +
       Cmd("echo")
           .arg("systemd-analyze not found on the node: labfleet verifies unit files before installing them; "
                "install systemd there")
           .raw(">&2")
           .str() +
       "; false; fi; lf_vr=$?; rm -rf -- \"$lf_vd\"; [ \"$lf_vr\" = 0 ]";
  return s;
}

bool IsUnitTextPath(std::string_view path) {
  static const char* kDirs[] = {"/etc/systemd/system/", "/run/systemd/system/", "/usr/local/lib/systemd/system/",
                                "/lib/systemd/system/", "/usr/lib/systemd/system/"};
  for (const char* d : kDirs) {
    std::string_view dir(d);
    if (path.substr(0, dir.size()) != dir) continue;
    std::string_view rest = path.substr(dir.size());
    size_t slash = rest.find('/');
    if (slash == std::string_view::npos) return IsUnitName(rest) && rest.find('.') != std::string_view::npos;
    std::string_view sub = rest.substr(0, slash), file = rest.substr(slash + 1);
    return sub.size() > 2 && sub.substr(sub.size() - 2) == ".d" && file.find('/') == std::string_view::npos &&
           file.size() > 5 && file.substr(file.size() - 5) == ".conf";
  }
  return false;
}

}  // namespace labfleet
