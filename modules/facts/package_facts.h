// Package facts: pure parsers of what the package managers print, and the probes that print it. Shared by
// the packages and nvidia modules (same probe keys, so the planner runs each once per node).
//
//   apt:    dpkg-query -W -f='${Package}\t${Status}\t${Version}\n' NAMES...   (status = "want error state")
//           apt-mark showhold                                               (one held package a line)
//   pacman: pacman -Q NAMES...                                             ("name version" a line)
//           /etc/pacman.conf                                               (IgnorePkg = a b lines)
//
// Parsers never throw and skip lines they do not understand (counted in `skipped`).
#pragma once
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "engine/module.h"
#include "engine/shell.h"

namespace labfleet {

struct DpkgEntry {
  std::string name;
  std::string want;    // unknown | install | hold | deinstall | purge
  std::string error;   // ok | reinstreq
  std::string status;  // not-installed | config-files | half-installed | unpacked | half-configured |
                       // triggers-awaited | triggers-pending | installed
  std::string version;  // Debian version ("1:2.36-9+deb12u4"); empty when not installed
  // Configured (or only waiting for triggers). Unpacked / half-configured packages are broken: not installed.
  bool installed() const { return status == "installed" || status == "triggers-awaited" || status == "triggers-pending"; }
  bool held() const { return want == "hold"; }
};

struct DpkgStatus {
  std::map<std::string, DpkgEntry> by_name;  // one entry per name (an installed architecture wins)
  int skipped = 0;
};
DpkgStatus ParseDpkgQuery(std::string_view text);

struct NameSet {
  std::set<std::string> names;
  int skipped = 0;
};
// `apt-mark showhold`: names, an ":arch" qualifier dropped.
NameSet ParseAptMarkShowhold(std::string_view text);

struct PacmanQ {
  std::map<std::string, std::string> version;  // name -> "550.90.07-4"
  int skipped = 0;
};
PacmanQ ParsePacmanQ(std::string_view text);

// /etc/pacman.conf: every package of IgnorePkg lines in [options] (`effective`), and those of the lines that
// end with the marker "# labfleet-<tag>" (`managed`; the line labfleet owns for that tag).
struct PacmanIgnore {
  std::set<std::string> effective, managed;
};
PacmanIgnore ParsePacmanConfIgnore(std::string_view pacman_conf, std::string_view tag);
// Shell that rewrites labfleet's own IgnorePkg line for `tag` in /etc/pacman.conf (other lines untouched);
// no line when `names` is empty. Names must be valid package names (IsPackageName).
std::string PacmanIgnoreCommand(std::string_view tag, const std::vector<std::string>& names);

// A package name both apt and pacman accept: lower case letters, digits and @._+- (not starting with . or -).
bool IsPackageName(std::string_view name);

// "1:535.183.01-0ubuntu1" -> "535.183.01" (epoch and Debian revision dropped); pacman "550.90.07-4" ->
// "550.90.07".
std::string UpstreamVersion(std::string_view version);

// --- facts and probes (keys shared between modules) ---
// "pkg-manager": "apt", "pacman" or "none" (also when absent); read by packages, nvidia and mounts, parsed once.
extern const Fact<std::string> kPackageManager;
// "apt-mark-showhold": the held packages; exit 127 when the node has no apt-mark (modules check the exit).
extern const Fact<NameSet> kAptHolds;
// kPackageManager.probe(): prints "apt", "pacman" or "none".
Probe PackageManagerProbe();
// dpkg-query for the given names or glob patterns; key "dpkg-query:<names joined by space>".
Probe DpkgQueryProbe(const std::vector<std::string>& names_or_patterns);
Probe AptMarkShowholdProbe();                                  // kAptHolds.probe()
// `apt-cache policy NAMES` (LC_ALL=C; parsed by ParseAptCachePolicy, modules/facts/apt_facts.h); key
// "apt-cache-policy:<names>"; names must be valid package names. Exit 127 without apt-cache.
Probe AptCachePolicyProbe(const std::vector<std::string>& names);
Probe PacmanQProbe(const std::vector<std::string>& names);     // key "pacman-q:<names>"
// The package manager named by PackageManagerProbe's output ("apt", "pacman" or "none"): results.fact(kPackageManager).
std::string PackageManagerOf(const ProbeResults& results);

// package_mirror.apt replaces the distribution's own sources: these files (probed with FileProbe by the
// packages and apt_repos modules) are moved to kAptOrigDir. `DistroSourcesInUse`: those present and in use
// (sources.list only when it has a line that is not a comment; a .sources file always; an unread file too).
extern const std::vector<std::string> kDistroSources;
extern const char* const kAptOrigDir;
std::vector<std::string> DistroSourcesInUse(const ProbeResults& results);
// "- apt: move the distribution's sources aside ...": the first copy kept in kAptOrigDir is never overwritten.
Change MoveDistroSourcesChange(const std::vector<std::string>& paths);

// The apt-get environment and options labfleet always uses (noninteractive, keep local config files).
Cmd AptGet(const std::string& verb);

}  // namespace labfleet
