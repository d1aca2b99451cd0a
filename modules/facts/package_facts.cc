#include "modules/facts/package_facts.h"

#include <algorithm>

#include "modules/facts/accounts.h"
#include "engine/file_probe.h"
#include "engine/shell.h"
#include "engine/text.h"

namespace labfleet {

namespace {

constexpr std::string_view kBlanks = " \t\r";

std::string Trim(std::string_view s) { return TrimChars(s, kBlanks); }
std::vector<std::string> Words(std::string_view s) { return SplitWords(s, kBlanks); }

bool OneOf(const std::string& s, std::initializer_list<const char*> choices) {
  for (const char* c : choices)
    if (s == c) return true;
  return false;
}

// A version: no blanks, starts with a digit (Debian and pacman both), only version characters.
bool IsVersion(std::string_view v) {
  if (v.empty() || !isdigit((unsigned char)v[0])) return false;
  for (char c : v)
    if (!isalnum((unsigned char)c) && std::string_view(".+-~:_").find(c) == std::string_view::npos) return false;
  return true;
}

}  // namespace

bool IsPackageName(std::string_view name) {
  if (name.empty() || name.size() > 200) return false;
  char first = name[0];
  if (!(islower((unsigned char)first) || isdigit((unsigned char)first) || first == '@' || first == '_' || first == '+'))
    return false;
  for (char c : name)
    if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || std::string_view("@._+-").find(c) != std::string_view::npos)) return false;
  return true;
}

DpkgStatus ParseDpkgQuery(std::string_view text) {
  DpkgStatus out;
  for (const auto& line : SplitLines(text)) {
    if (line.empty()) continue;
    auto f = Split(line, '\t');
    if (f.size() != 3) {
      ++out.skipped;
      continue;
    }
    auto st = Words(f[1]);
    std::string name = f[0];
    if (auto colon = name.find(':'); colon != std::string::npos) name.resize(colon);  // ${binary:Package}
    if (st.size() != 3 || !IsPackageName(name) ||
        !OneOf(st[0], {"unknown", "install", "hold", "deinstall", "purge"}) ||
        !OneOf(st[2], {"not-installed", "config-files", "half-installed", "unpacked", "half-configured",
                       "triggers-awaited", "triggers-pending", "installed"}) ||
        (!f[2].empty() && !IsVersion(f[2]))) {
      ++out.skipped;
      continue;
    }
    DpkgEntry e{name, st[0], st[1], st[2], f[2]};
    auto it = out.by_name.find(name);
    if (it == out.by_name.end())
      out.by_name.emplace(name, std::move(e));
    else if (!it->second.installed() && e.installed())  // several architectures: an installed one wins
      it->second = std::move(e);
  }
  return out;
}

NameSet ParseAptMarkShowhold(std::string_view text) {
  NameSet out;
  for (const auto& raw : SplitLines(text)) {
    std::string line = Trim(raw);
    if (line.empty()) continue;
    if (auto colon = line.find(':'); colon != std::string::npos) line.resize(colon);
    if (!IsPackageName(line)) {
      ++out.skipped;
      continue;
    }
    out.names.insert(line);
  }
  return out;
}

PacmanQ ParsePacmanQ(std::string_view text) {
  PacmanQ out;
  for (const auto& line : SplitLines(text)) {
    if (Trim(line).empty()) continue;
    auto w = Words(line);
    if (w.size() != 2 || !IsPackageName(w[0]) || !IsVersion(w[1])) {
      ++out.skipped;
      continue;
    }
    out.version[w[0]] = w[1];
  }
  return out;
}

PacmanIgnore ParsePacmanConfIgnore(std::string_view conf, std::string_view tag) {
  PacmanIgnore out;
  std::string section;
  const std::string marker = "# labfleet-" + std::string(tag);
  for (const auto& raw : SplitLines(conf)) {
    std::string line = Trim(raw);
    if (line.size() > 2 && line.front() == '[' && line.back() == ']') {
      section = line.substr(1, line.size() - 2);
      continue;
    }
    if (section != "options") continue;
    bool mine = line.size() >= marker.size() && line.compare(line.size() - marker.size(), marker.size(), marker) == 0;
    if (auto hash = line.find('#'); hash != std::string::npos) line = Trim(line.substr(0, hash));
    auto eq = line.find('=');
    if (eq == std::string::npos || Trim(line.substr(0, eq)) != "IgnorePkg") continue;
    for (const auto& name : Words(line.substr(eq + 1))) {
      out.effective.insert(name);
      if (mine) out.managed.insert(name);
    }
  }
  return out;
}

std::string PacmanIgnoreCommand(std::string_view tag, const std::vector<std::string>& names) {
  const std::string marker = "# labfleet-" + std::string(tag);
  // sed addresses are fixed text plus validated package names (no sed or shell metacharacters); the whole
  // expression is still passed as one quoted word.
  std::string out = Cmd("sed").arg("-i").arg("/ " + marker + "$/d").arg("/etc/pacman.conf").str();
  if (!names.empty())
    out += "\n" + Cmd("sed")
                      .arg("-i")
                      .arg("/^\\[options\\]/a IgnorePkg = " + Join(names, " ") + " " + marker)
                      .arg("/etc/pacman.conf")
                      .str();
  return out;
}

std::string UpstreamVersion(std::string_view version) {
  std::string v(version);
  if (auto colon = v.find(':'); colon != std::string::npos) v = v.substr(colon + 1);
  if (auto dash = v.rfind('-'); dash != std::string::npos) v.resize(dash);
  return v;
}

static std::string ParsePackageManager(std::string_view out) {
  std::string s = Trim(std::string(out));
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s == "apt" || s == "pacman" ? s : "none";
}

const Fact<std::string> kPackageManager{
    "pkg-manager",
    "if command -v dpkg-query >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then echo apt; "
    "elif command -v pacman >/dev/null 2>&1; then echo pacman; else echo none; fi",
    ParsePackageManager};
const Fact<NameSet> kAptHolds{"apt-mark-showhold",
                              "command -v apt-mark >/dev/null 2>&1 || exit 127\n" + Cmd("apt-mark").arg("showhold").str(),
                              ParseAptMarkShowhold};

Probe PackageManagerProbe() { return kPackageManager.probe(); }

Probe DpkgQueryProbe(const std::vector<std::string>& names) {
  Cmd c("dpkg-query");
  c.arg("-W").arg("-f=${Package}\\t${Status}\\t${Version}\\n").arg("--").args(names);
  // Exit 1 when some name is unknown to dpkg: that is an answer (not installed), not a failure.
  return {"dpkg-query:" + Join(names, " "),
          "command -v dpkg-query >/dev/null 2>&1 || exit 127\n" + c.str() + "\n[ $? -le 1 ]"};
}

Probe AptMarkShowholdProbe() { return kAptHolds.probe(); }

Probe AptCachePolicyProbe(const std::vector<std::string>& names) {
  // Names are validated package names (never starting with "-"): apt-cache takes no "--".
  return {"apt-cache-policy:" + Join(names, " "),
          "command -v apt-cache >/dev/null 2>&1 || exit 127\n" +
              Cmd("env").arg("LC_ALL=C").arg("apt-cache").arg("policy").args(names).str()};
}

Probe PacmanQProbe(const std::vector<std::string>& names) {
  // Exit 1 when some name is not installed.
  return {"pacman-q:" + Join(names, " "),
          "command -v pacman >/dev/null 2>&1 || exit 127\n" + Cmd("pacman").arg("-Q").arg("--").args(names).str() +
              "\n[ $? -le 1 ]"};
}

std::string PackageManagerOf(const ProbeResults& results) { return results.fact(kPackageManager); }

const std::vector<std::string> kDistroSources = {"/etc/apt/sources.list", "/etc/apt/sources.list.d/debian.sources",
                                                 "/etc/apt/sources.list.d/ubuntu.sources"};
const char* const kAptOrigDir = "/var/lib/labfleet/apt-orig";

std::vector<std::string> DistroSourcesInUse(const ProbeResults& results) {
  std::vector<std::string> out;
  for (const auto& p : kDistroSources) {
    FileState st = ParseFileProbe(results, p);
    if (!st.exists) continue;
    bool active = !st.content_read;  // not read: assume it is in use
    if (p.size() > 8 && p.compare(p.size() - 8, 8, ".sources") == 0) active = true;
    for (const auto& line : SplitLines(st.content))
      if (auto t = Trim(line); !t.empty() && t[0] != '#') active = true;
    if (active) out.push_back(p);
  }
  return out;
}

Change MoveDistroSourcesChange(const std::vector<std::string>& paths) {
  Change c;
  c.sign = '-';
  c.summary = "apt: move the distribution's sources aside to " + std::string(kAptOrigDir) + ": " + Join(paths, ", ");
  c.reason = "package_mirror.apt replaces the distribution's own sources";
  c.backup_paths = paths;
  Script s;
  s.add(Cmd("mkdir").arg("-p").arg("-m").arg("0700").arg(kAptOrigDir));
  for (const auto& p : paths) {
    std::string keep = std::string(kAptOrigDir) + "/" + p.substr(p.rfind('/') + 1);
    // The first version kept there is the distribution's: never overwritten.
    s.raw("[ -e " + ShellQuote(keep) + " ] || " + Cmd("cp").arg("-p").arg("--").arg(p).arg(keep).str());
    s.add(Cmd("rm").arg("-f").arg("--").arg(p));
  }
  c.command = s.str();
  return c;
}

Cmd AptGet(const std::string& verb) {
  Cmd c("env");
  c.arg("DEBIAN_FRONTEND=noninteractive").arg("apt-get").arg(verb).arg("-y").arg("-q");
  c.arg("-o").arg("Dpkg::Options::=--force-confdef").arg("-o").arg("Dpkg::Options::=--force-confold");
  return c;
}

}  // namespace labfleet
