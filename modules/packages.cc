// packages: system packages installed / absent / held, with apt (dpkg) or pacman, whichever the node has;
// and package mirrors for apt (a sources.list.d file) and pip (/etc/pip.conf), since labs often sit behind
// slow links.
//
//   packages: [htop, tmux]                                  # a list: installed
//   packages: { htop: installed, snapd: absent, linux-image-generic: held, docker-ce: latest }
//   package_mirror:
//     apt: http://mirror.lab/ubuntu                         # or { url, suites: [...], components: [...], trusted }
//     pip: http://mirror.lab/pypi/simple
//
// Maps merge key by key from lab.defaults and groups to the node; a list replaces what it overrides.
// `installed` means installed and NOT held (a held package is unheld); `held` = installed and held against
// upgrades; `absent` = removed (configuration files kept, like `apt-get remove`); `latest` = installed, not held,
// and upgraded whenever `apt-cache policy` (read in the probe, from the node's current package lists) shows a
// candidate other than the installed version (apt only picks an older candidate when a pin >= 1000 asks for it).
// package_mirror.apt REPLACES the distribution's own sources: /etc/apt/sources.list (when it has a deb line),
// sources.list.d/debian.sources and ubuntu.sources are moved to /var/lib/labfleet/apt-orig/ by the apt_repos
// module (order 4: before its own apt-get update); here they only make the update handler run.
// All missing packages are installed by one command; likewise removals, holds and unholds.
#include <map>
#include <set>

#include "modules/facts/accounts.h"
#include <nlohmann/json.hpp>

#include "engine/schema.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "modules/facts/nvidia_facts.h"
#include "modules/facts/apt_facts.h"
#include "modules/facts/package_facts.h"
#include "engine/settings_layers.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {
namespace {

const std::vector<std::string> kStates = {"installed", "latest", "absent", "held"};
const std::vector<std::string> kMirrorKeys = {"apt", "pip"};
const std::vector<std::string> kAptMirrorKeys = {"url", "suites", "components", "trusted"};
const char* kAptMirrorFile = "/etc/apt/sources.list.d/labfleet-mirror.list";
const char* kPipConf = "/etc/pip.conf";

struct PkgWant {
  std::string name, state;
  Location where;
};

struct PackagesWant {
  std::vector<PkgWant> items;  // in inventory order
};

struct AptMirror {
  std::string url;
  std::vector<std::string> suites, components;  // empty suites: from /etc/os-release
  bool has_components = false;
  bool trusted = false;
  Location where;
};

struct PipMirror {
  std::string url;
  Location where;
};

// A mirror URL is one word of a sources.list line ("deb [opts] URL suite components") and of pip.conf's
// "index-url = URL": ParseUrl, and none of the characters a shell or apt would read specially.
bool IsMirrorUrl(const std::string& s, const std::vector<std::string>& schemes = {"http", "https", "file"}) {
  if (s.find_first_of("'`$[]") != std::string::npos) return false;
  return ParseUrl(s, schemes, nullptr).has_value();
}

bool IsAptWord(const std::string& s) {  // a suite or component
  if (s.empty()) return false;
  for (char c : s)
    if (!isalnum((unsigned char)c) && std::string_view("./_+-").find(c) == std::string_view::npos) return false;
  return true;
}

// Parses `packages:` (a list or a map). Findings to `f` when given; invalid entries are left out.
PackagesWant ParsePackages(const Value& v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  PackagesWant w;
  std::map<std::string, Location> seen;
  auto add = [&](const std::string& name, const Location& name_loc, const std::string& state, const Location& where) {
    if (!IsPackageName(name)) {
      out.error(name_loc, "package-name",
                "'" + name + "' is not a package name (lower case letters, digits and @._+- only)");
      return;
    }
    if (auto it = seen.find(name); it != seen.end()) {
      out.error(name_loc, "package-duplicate", "package " + name + " is listed twice (first at " + it->second.str() + ")");
      return;
    }
    seen.emplace(name, name_loc);
    w.items.push_back({name, state, where});
  };
  if (v.is_null()) return w;
  if (v.is_seq()) {
    for (const auto& item : v.items()) {
      if (!item.is_scalar()) {
        out.error(item.loc(), "wrong-type",
                  "items of packages must be package names, got " + DescribeValue(item) +
                      " (for states write a map: { name: installed|latest|absent|held })");
        continue;
      }
      add(item.str(), item.loc(), "installed", item.loc());
    }
    return w;
  }
  if (!v.is_map()) {
    out.error(v.loc(), "wrong-type",
              "packages must be a list of names or a map { name: installed|latest|absent|held }, got " + DescribeValue(v));
    return w;
  }
  for (const auto& e : v.entries()) {
    if (!e.value.is_scalar()) {
      out.error(e.value.loc().known() ? e.value.loc() : e.key_loc, "wrong-type",
                "the state of package " + e.key + " must be installed, latest, absent or held, got " + DescribeValue(e.value));
      continue;
    }
    const std::string& st = e.value.str();
    if (std::find(kStates.begin(), kStates.end(), st) == kStates.end()) {
      std::string msg = "the state of package " + e.key + " must be installed, latest, absent or held, got '" + st + "'";
      if (auto s = Suggest(st, kStates)) msg += "; did you mean '" + *s + "'?";
      out.error(e.value.loc(), "invalid-value", msg);
      continue;
    }
    add(e.key, e.key_loc, st, e.key_loc);
  }
  return w;
}

std::vector<std::string> LatestNames(const PackagesWant& w) {
  std::vector<std::string> out;
  for (const auto& i : w.items)
    if (i.state == "latest") out.push_back(i.name);
  return out;
}

struct MirrorWant {
  std::optional<AptMirror> apt;
  std::optional<PipMirror> pip;
};

MirrorWant ParseMirror(const Value& v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  MirrorWant m;
  MapReader r(v, "package_mirror", v.loc(), out, kMirrorKeys);
  if (const Value* a = r.get("apt")) {
    AptMirror am;
    am.where = a->loc().known() ? a->loc() : r.key_loc("apt");
    bool ok = true;
    if (a->is_scalar()) {
      am.url = a->str();
    } else {
      MapReader ar(*a, "package_mirror.apt", r.key_loc("apt"), out, kAptMirrorKeys);
      if (!ar.is_map()) ok = false;
      if (!ar.require("url", "e.g. { url: http://mirror.lab/ubuntu }")) ok = false;
      if (auto u = ar.str("url")) am.url = *u;
      if (auto s = ar.strings("suites")) am.suites = *s;
      if (auto c = ar.strings("components")) am.components = *c, am.has_components = true;
      if (auto t = ar.boolean("trusted")) am.trusted = *t;
      for (const auto& w : am.suites)
        if (!IsAptWord(w)) out.error(ar.get("suites")->loc(), "package-mirror", "'" + w + "' is not an apt suite"), ok = false;
      for (const auto& w : am.components)
        if (!IsAptWord(w))
          out.error(ar.get("components")->loc(), "package-mirror", "'" + w + "' is not an apt component"), ok = false;
    }
    if (!am.url.empty() && !IsMirrorUrl(am.url)) {
      SyntaxError e;
      ParseUrl(am.url, {"http", "https", "file"}, &e);
      out.error(am.where, e.code == "control-character" ? e.code : "package-mirror",
                "package_mirror.apt must be an http://, https:// or file:/ URL, got " + Quoted(am.url) +
                    (e.what.empty() ? std::string(" (no quotes, '$', '`' or brackets)") : ", which " + e.what));
      ok = false;
    }
    if (ok && !am.url.empty()) m.apt = am;
  }
  if (auto p = r.str("pip")) {
    Location loc = r.get("pip")->loc();
    if (!IsMirrorUrl(*p, {"http", "https"}))
      out.error(loc, FindControl(*p) != std::string::npos ? "control-character" : "package-mirror",
                "package_mirror.pip must be an http:// or https:// URL (a simple index), got " + Quoted(*p));
    else
      m.pip = PipMirror{*p, loc};
  }
  return m;
}

std::string HostOf(const std::string& url) {
  size_t b = url.find("://");
  if (b == std::string::npos) return "";
  b += 3;
  size_t e = url.find_first_of(":/", b);
  return url.substr(b, e == std::string::npos ? std::string::npos : e - b);
}

// KEY=value lines of /etc/os-release.
std::map<std::string, std::string> OsRelease(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const auto& line : SplitLines(text)) {
    auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string v = line.substr(eq + 1);
    if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') && v.back() == v.front()) v = v.substr(1, v.size() - 2);
    out[line.substr(0, eq)] = v;
  }
  return out;
}

class PackagesModule : public Module {
 public:
  std::string name() const override { return "packages"; }
  // Before everything: later modules use what packages bring (groups like docker, units, config dirs).
  int order() const override { return 5; }
  std::vector<std::string> settings_keys() const override { return {"packages", "package_mirror"}; }
  nlohmann::json settings_schema(const std::string& key) const override {
    using namespace schema;
    if (key == "packages")
      return OneOf({Strings(), MapOf(Enum(kStates))}, "a list of names (installed), or name: installed|latest|absent|held");
    return Closed(kMirrorKeys,
                  {{"apt", OneOf({Scalar("URL"), Closed(kAptMirrorKeys, {{"url", Scalar()},
                                                                          {"suites", Strings()},
                                                                          {"components", Strings()},
                                                                          {"trusted", Boolean()}})})},
                   {"pip", Scalar("URL of a simple index")}},
                  "package mirrors");
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    std::vector<OwnedFile> out;
    if (const Value* m = ctx.settings.find("package_mirror"); m && !m->is_null()) {
      MirrorWant mw = ParseMirror(*m, nullptr);
      if (mw.apt) out.push_back({kAptMirrorFile, "package_mirror.apt"});
      if (mw.pip) out.push_back({kPipConf, "package_mirror.pip"});
    }
    return out;
  }

  void validate(const Inventory& inv, Findings& f) const override {
    auto layer = [&](const Value& settings) {
      if (const Value* p = settings.find("packages")) ParsePackages(*p, &f);
      if (const Value* m = settings.find("package_mirror")) ParseMirror(*m, &f);
    };
    ForEachSettingsLayer(inv, layer);
    // Per node: packages the nvidia settings manage must not be managed here too (they would fight).
    std::set<std::string> reported;
    for (const auto& n : inv.nodes) {
      Value settings = inv.settings(n);
      const Value* p = settings.find("packages");
      auto nv = NodeNvidia(settings);
      // nvidia-docker2 (the old packaging of the nvidia runtime) ships /etc/docker/daemon.json with the runtime in
      // it; labfleet writes that file whole from `docker:`, so the runtime would be gone after the next apply.
      if (const Value* dv = settings.find("docker"); p && dv && dv->is_map())
        for (const auto& w : ParsePackages(*p, nullptr).items)
          if (w.name == "nvidia-docker2" && w.state != "absent")
            f.error(w.where, "package-nvidia-docker2",
                    "package nvidia-docker2 on node '" + n.name + "' registers the nvidia runtime in "
                    "/etc/docker/daemon.json, which labfleet writes from the node's docker: settings (" +
                        dv->loc().str() + "): the runtime would be lost and GPU containers would stop starting. "
                        "Remove nvidia-docker2 from packages and set `nvidia: { container_toolkit: true }` (labfleet "
                        "installs nvidia-container-toolkit and keeps the nvidia runtime in the daemon.json it "
                        "writes)" + (nv && nv->container_toolkit ? "; container_toolkit is already true here, so "
                                                                   "only the package has to go"
                                                                 : ""));
      if (!p || !nv) continue;
      std::set<std::string> theirs;
      for (const char* mgr : {"apt", "pacman"})
        for (auto& name : NvidiaDriverPackages(*nv, mgr)) theirs.insert(name);
      theirs.insert("nvidia-container-toolkit");
      for (const auto& w : ParsePackages(*p, nullptr).items)
        if (theirs.count(w.name) && reported.insert(w.name + "@" + w.where.str()).second)
          f.error(w.where, "package-conflict",
                  "package " + w.name + " is managed by the nvidia settings of node " + n.name +
                      "; remove it from packages");
    }
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    if (const Value* m = ctx.settings.find("package_mirror")) {
      MirrorWant mw = ParseMirror(*m, nullptr);
      if (mw.apt) out.push_back({name(), "package-mirror:apt", mw.apt->where, std::make_shared<AptMirror>(*mw.apt)});
      if (mw.pip) out.push_back({name(), "package-mirror:pip", mw.pip->where, std::make_shared<PipMirror>(*mw.pip)});
    }
    if (const Value* p = ctx.settings.find("packages")) {
      PackagesWant w = ParsePackages(*p, nullptr);
      if (!w.items.empty()) out.push_back({name(), "packages", p->loc(), std::make_shared<PackagesWant>(w)});
    }
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    if (rs.empty()) return out;
    out.push_back(PackageManagerProbe());
    for (const auto& r : rs) {
      if (r.id == "packages") {
        std::vector<std::string> names;
        for (const auto& i : r.as<PackagesWant>().items) names.push_back(i.name);
        out.push_back(DpkgQueryProbe(names));
        out.push_back(AptMarkShowholdProbe());
        if (auto latest = LatestNames(r.as<PackagesWant>()); !latest.empty()) out.push_back(AptCachePolicyProbe(latest));
        out.push_back(PacmanQProbe(names));
        out.push_back(FileProbe("/etc/pacman.conf"));
      } else if (r.id == "package-mirror:apt") {
        out.push_back(FileProbe(kAptMirrorFile));
        out.push_back(FileProbe("/etc/os-release"));
        for (const auto& p : kDistroSources) out.push_back(FileProbe(p));
      } else if (r.id == "package-mirror:pip") {
        out.push_back(FileProbe(kPipConf));
      }
    }
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    std::string mgr = PackageManagerOf(results);
    if (r.id == "package-mirror:apt") return DiffAptMirror(r.as<AptMirror>(), mgr, results);
    if (r.id == "package-mirror:pip") return DiffPipMirror(r.as<PipMirror>(), results);
    const auto& w = r.as<PackagesWant>();
    if (mgr == "apt") return DiffApt(w, results);
    if (mgr == "pacman") return DiffPacman(w, results);
    return Failure("no supported package manager on this node (neither dpkg-query + apt-get nor pacman found)");
  }

 private:
  static DiffResult DiffApt(const PackagesWant& w, const ProbeResults& results) {
    std::vector<std::string> names;
    for (const auto& i : w.items) names.push_back(i.name);
    const ProbeOutput* q = FindProbe(results, DpkgQueryProbe(names).key);
    if (!q || q->exit_code != 0) return Failure("dpkg-query failed on this node (exit " + std::to_string(q ? q->exit_code : -1) + ")");
    DpkgStatus dpkg = ParseDpkgQuery(q->out);
    std::set<std::string> holds;
    const ProbeOutput* h = FindProbe(results, "apt-mark-showhold");
    if (h && h->exit_code == 0) {
      holds = results.fact(kAptHolds).names;
    } else {
      for (const auto& [n, e] : dpkg.by_name)
        if (e.held()) holds.insert(n);
    }
    auto installed = [&](const std::string& n) {
      auto it = dpkg.by_name.find(n);
      return it != dpkg.by_name.end() && it->second.installed();
    };
    auto present = [&](const std::string& n) {  // anything but gone (removal needed): broken states too
      auto it = dpkg.by_name.find(n);
      return it != dpkg.by_name.end() && it->second.status != "not-installed" && it->second.status != "config-files";
    };
    std::vector<std::string> install, install_held, unhold_first, remove, hold, unhold, why_install;
    std::vector<std::string> upgrade, why_upgrade, unhold_upgrade, no_candidate;
    AptPolicy policy;
    if (auto latest = LatestNames(w); !latest.empty()) {
      const ProbeOutput* p = FindProbe(results, AptCachePolicyProbe(latest).key);
      if (!p || p->exit_code != 0)
        return Failure("apt-cache policy failed on this node (exit " + std::to_string(p ? p->exit_code : -1) +
                       (p && !p->err.empty() ? ": " + p->err.substr(0, p->err.find('\n')) : std::string()) +
                       "); it tells which packages of state latest have a newer candidate");
      policy = ParseAptCachePolicy(p->out);
    }
    for (const auto& i : w.items) {
      bool held = holds.count(i.name) > 0;
      if (i.state == "absent") {
        if (present(i.name)) remove.push_back(i.name);
        continue;
      }
      if (!installed(i.name)) {
        install.push_back(i.name);
        auto it = dpkg.by_name.find(i.name);
        why_install.push_back(i.name + ": " + (it == dpkg.by_name.end() ? std::string("not installed") : it->second.status));
        if (held) unhold_first.push_back(i.name);  // apt refuses to install a held package
        if (i.state == "held") install_held.push_back(i.name);
        continue;
      }
      if (i.state == "held" && !held) hold.push_back(i.name);
      if (i.state == "latest") {
        auto it = policy.by_name.find(i.name);
        if (it == policy.by_name.end() || it->second.candidate.empty()) {
          no_candidate.push_back(i.name);  // installed, but no repository offers it: nothing to upgrade to
        } else if (it->second.candidate != it->second.installed) {
          upgrade.push_back(i.name);
          why_upgrade.push_back(i.name + ": " + it->second.installed + " installed, " + it->second.candidate + " available");
          if (held) unhold_upgrade.push_back(i.name);  // apt does not upgrade a held package
          continue;
        }
      }
      if (i.state != "held" && held) unhold.push_back(i.name);
    }
    DiffResult d;
    if (!install.empty()) {
      Change c;
      c.sign = '+';
      c.summary = "packages: install " + Join(install, ", ") +
                  (install_held.empty() ? "" : " (held: " + Join(install_held, ", ") + ")");
      c.reason = Join(why_install, "; ");
      Script s;
      if (!unhold_first.empty()) s.add(Cmd("apt-mark").arg("unhold").arg("--").args(unhold_first));
      Cmd inst = AptGet("install").arg("--no-install-recommends").arg("--").args(install);
      // The package lists may be stale or not know a new mirror yet: on failure, update them and retry once.
      s.raw(inst.str() + " || { " + AptGet("update").str() + " && " + inst.str() + "; }");
      if (!install_held.empty()) s.add(Cmd("apt-mark").arg("hold").arg("--").args(install_held));
      c.command = s.str();
      d.changes.push_back(std::move(c));
    }
    if (!upgrade.empty()) {
      Change c;
      c.sign = '~';
      c.summary = "packages: upgrade " + Join(upgrade, ", ");
      c.reason = Join(why_upgrade, "; ") + " (state latest)";
      Script s;
      if (!unhold_upgrade.empty()) s.add(Cmd("apt-mark").arg("unhold").arg("--").args(unhold_upgrade));
      s.add(AptGet("install").arg("--no-install-recommends").arg("--only-upgrade").arg("--").args(upgrade));
      c.command = s.str();
      d.changes.push_back(std::move(c));
    }
    if (!remove.empty()) {
      Change c;
      c.sign = '-';
      c.summary = "packages: remove " + Join(remove, ", ");
      c.reason = "absent in the inventory";
      Script s;
      std::vector<std::string> held_rm;
      for (const auto& n : remove)
        if (holds.count(n)) held_rm.push_back(n);
      if (!held_rm.empty()) s.add(Cmd("apt-mark").arg("unhold").arg("--").args(held_rm));
      s.add(AptGet("remove").arg("--").args(remove));
      c.command = s.str();
      d.changes.push_back(std::move(c));
    }
    if (!hold.empty())
      d.changes.push_back(NamesChange('~', "hold", hold, "held in the inventory, not held on the node",
                                      Cmd("apt-mark").arg("hold").arg("--")));
    if (!unhold.empty())
      d.changes.push_back(NamesChange('~', "unhold", unhold,
                                      "held on the node, `installed` (not held) in the inventory",
                                      Cmd("apt-mark").arg("unhold").arg("--")));
    if (d.changes.empty()) {
      d.noop = NoopText(w);
      if (!no_candidate.empty())
        d.noop += "; note: no repository offers " + Join(no_candidate, ", ") + " (state latest keeps what is installed)";
    }
    return d;
  }

  static DiffResult DiffPacman(const PackagesWant& w, const ProbeResults& results) {
    std::vector<std::string> names;
    for (const auto& i : w.items) names.push_back(i.name);
    if (!LatestNames(w).empty())
      return Failure("state latest is implemented for apt nodes only (" + Join(LatestNames(w), ", ") +
                     "); on pacman nodes write installed and upgrade with the system");
    const ProbeOutput* q = FindProbe(results, PacmanQProbe(names).key);
    if (!q || q->exit_code != 0) return Failure("pacman -Q failed on this node (exit " + std::to_string(q ? q->exit_code : -1) + ")");
    PacmanQ pq = ParsePacmanQ(q->out);
    FileState conf = ParseFileProbe(results, "/etc/pacman.conf");
    if (auto refused = RefuseUnreadEdit(conf, "/etc/pacman.conf")) return *refused;
    PacmanIgnore ign = ParsePacmanConfIgnore(conf.content, "packages");
    std::vector<std::string> install, remove, want_held, stuck;
    for (const auto& i : w.items) {
      bool inst = pq.version.count(i.name) > 0;
      if (i.state == "absent") {
        if (inst) remove.push_back(i.name);
        continue;
      }
      if (!inst) install.push_back(i.name);
      if (i.state == "held") want_held.push_back(i.name);
      else if (ign.effective.count(i.name) && !ign.managed.count(i.name)) stuck.push_back(i.name);
    }
    DiffResult d;
    if (!install.empty())
      d.changes.push_back(NamesChange('+', "install", install, "not installed",
                                      Cmd("pacman").arg("-S").arg("--noconfirm").arg("--needed").arg("--")));
    if (!remove.empty())
      d.changes.push_back(NamesChange('-', "remove", remove, "absent in the inventory",
                                      Cmd("pacman").arg("-R").arg("--noconfirm").arg("--")));
    std::set<std::string> want_set(want_held.begin(), want_held.end());
    if (want_set != ign.managed) {
      Change c;
      c.summary = "packages: IgnorePkg in /etc/pacman.conf = " + (want_held.empty() ? std::string("(none)") : Join(want_held, " "));
      c.reason = "held packages differ (labfleet's IgnorePkg line holds " +
                 (ign.managed.empty() ? std::string("none") : Join({ign.managed.begin(), ign.managed.end()}, " ")) + ")";
      c.command = PacmanIgnoreCommand("packages", want_held);
      d.changes.push_back(std::move(c));
    }
    if (d.changes.empty()) {
      d.noop = NoopText(w);
      if (!stuck.empty())
        d.noop += "; note: " + Join(stuck, ", ") + " held by an IgnorePkg line labfleet does not own";
    }
    return d;
  }

  // "packages: VERB NAME, NAME": one command (`cmd` followed by the names) on those packages.
  static Change NamesChange(char sign, const std::string& verb, const std::vector<std::string>& names,
                            const std::string& reason, Cmd cmd) {
    Change c;
    c.sign = sign;
    c.summary = "packages: " + verb + " " + Join(names, ", ");
    c.reason = reason;
    c.command = cmd.args(names).str();
    return c;
  }

  static std::string NoopText(const PackagesWant& w) {
    int n_inst = 0, n_abs = 0, n_held = 0, n_latest = 0;
    for (const auto& i : w.items)
      (i.state == "absent" ? n_abs : i.state == "held" ? n_held : i.state == "latest" ? n_latest : n_inst)++;
    return "nothing to do because " +
           (w.items.size() == 1 ? std::string("the package matches")
                                : "all " + std::to_string(w.items.size()) + " packages match") +
           " (" + std::to_string(n_inst) + " installed, " +
           (n_latest ? std::to_string(n_latest) + " latest, " : std::string()) + std::to_string(n_held) + " held, " +
           std::to_string(n_abs) + " absent)";
  }

  static DiffResult DiffAptMirror(const AptMirror& m, const std::string& mgr, const ProbeResults& results) {
    if (mgr != "apt") return Noop("nothing to do because this node does not use apt (package_mirror.apt applies to apt nodes)");
    std::vector<std::string> suites = m.suites, components = m.components;
    auto os = OsRelease(ParseFileProbe(results, "/etc/os-release").content);
    std::string id = os["ID"], codename = os["VERSION_CODENAME"];
    if (suites.empty()) {
      if (codename.empty())
        return Failure("/etc/os-release has no VERSION_CODENAME; write package_mirror.apt as { url: ..., suites: [...] }");
      suites = {codename, codename + "-updates"};
      if (id == "ubuntu") suites.push_back(codename + "-security");
    }
    if (!m.has_components) {
      if (id == "ubuntu") components = {"main", "restricted", "universe", "multiverse"};
      else if (id == "debian") components = {"main", "contrib", "non-free", "non-free-firmware"};
      else if (m.suites.empty() || m.suites[0].back() != '/')
        return Failure("unknown distribution '" + id + "'; write package_mirror.apt as { url: ..., suites: [...], components: [...] }");
    }
    std::string text = "# Managed by labfleet (package_mirror.apt); edits here are overwritten.\n";
    for (const auto& s : suites) {
      text += "deb " + std::string(m.trusted ? "[trusted=yes] " : "") + m.url + " " + s;
      // A flat repository ("./") has no components.
      if (s.empty() || s.back() != '/')
        for (const auto& c : components) text += " " + c;
      text += "\n";
    }
    FileSpec want{kAptMirrorFile, text, 0644, "root", "root"};
    DiffResult d = DiffFile(want, ParseFileProbe(results, kAptMirrorFile), std::string("apt mirror ") + kAptMirrorFile);
    bool lists_changed = !d.changes.empty() && d.changes[0].kind == Change::Kind::PutFile;
    // The distribution's own sources are moved aside by apt_repos (order 4, before this), so that its update
    // never reaches them; when they are still in use here, the lists change in this run too.
    if (!DistroSourcesInUse(results).empty()) lists_changed = true;
    if (lists_changed) {
      d.changes.push_back(NotifyChange("apt-get update", AptGet("update").str(),
                                       "apt-get update (package lists from the new mirror)", "apt sources changed"));
      d.noop.clear();
    }
    return d;
  }

  static DiffResult DiffPipMirror(const PipMirror& m, const ProbeResults& results) {
    std::string text = "# Managed by labfleet (package_mirror.pip); edits here are overwritten.\n[global]\nindex-url = " +
                       m.url + "\n";
    if (m.url.rfind("http://", 0) == 0) text += "trusted-host = " + HostOf(m.url) + "\n";
    FileSpec want{kPipConf, text, 0644, "root", "root"};
    return DiffFile(want, ParseFileProbe(results, kPipConf), std::string("pip mirror ") + kPipConf);
  }
};

ModuleRegistrar registrar(std::make_unique<PackagesModule>());

}  // namespace
}  // namespace labfleet
