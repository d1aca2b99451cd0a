// nvidia: the NVIDIA driver of a GPU node, kept where the inventory says and out of the way of upgrades.
//
//   nvidia:
//     driver: "535.183.01"        # exact version (apt: any Debian revision of it), or
//     branch: "535"               # any version of the branch
//     flavor: server              # apt: server | headless | desktop (which packages, see engine/nvidia_facts.h)
//     hold: true                  # apt-mark hold / IgnorePkg, and unattended-upgrades kept away (apt)
//     persistence: true           # persistence mode on (nvidia-persistenced enabled when installed, nvidia-smi -pm 1)
//     container_toolkit: true     # nvidia-container-toolkit installed (the docker module registers the runtime)
//     blacklist_nouveau: true     # /etc/modprobe.d/blacklist-nouveau.conf, then update-initramfs
//     packages: apt               # apt | pacman; default: the node's package manager
//
// Live state: the package manager (installed userspace), /proc/driver/nvidia/version (the LOADED kernel module)
// and nvidia-smi. When the loaded module and the installed userspace disagree, the plan says "reboot pending".
// Installing or changing the driver is disruptive (it kills GPU jobs): the engine defers it on busy nodes.
#include <regex>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/schema.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "modules/facts/nvidia_facts.h"
#include "modules/facts/package_facts.h"
#include "engine/settings_layers.h"
#include "engine/shell.h"
#include "modules/facts/systemd_facts.h"
#include "engine/text.h"

namespace labfleet {
namespace {

const char* kNouveauFile = "/etc/modprobe.d/blacklist-nouveau.conf";
const char* kUnattendedFile = "/etc/apt/apt.conf.d/51labfleet-nvidia";
const char* kPinFile = kNvidiaAptPreferencesFile;
const char* kPersistenced = "nvidia-persistenced.service";
const char* kToolkit = "nvidia-container-toolkit";
const std::vector<std::string> kDpkgPatterns = {"nvidia-*", "libnvidia-*"};

const char* kNouveauText =
    "# Managed by labfleet (nvidia.blacklist_nouveau): the NVIDIA driver needs nouveau out of the way.\n"
    "blacklist nouveau\n"
    "options nouveau modeset=0\n";

const char* kUnattendedText =
    "// Managed by labfleet (nvidia.hold): the NVIDIA driver, its libraries and CUDA change only through the\n"
    "// inventory, never by unattended-upgrades (the entries are Python regular expressions matched at the start).\n"
    "Unattended-Upgrade::Package-Blacklist {\n"
    "    \"nvidia-\";\n"
    "    \"libnvidia-\";\n"
    "    \"cuda-\";\n"
    "};\n";

enum class Part { Driver, Hold, Toolkit, Unattended, Nouveau, Persistence };

struct NvRes {
  NvidiaSettings s;
  Part part;
};

std::string ManagerFor(const NvidiaSettings& s, const ProbeResults& results) {
  return s.packages.empty() ? PackageManagerOf(results) : s.packages;
}

// What the node has: versions of the driver packages, holds, the loaded module, nvidia-smi.
struct Live {
  std::string mgr;
  std::map<std::string, std::string> version;  // installed packages (nvidia-*, libnvidia-* / pacman's)
  std::set<std::string> held;
  std::optional<std::string> loaded;  // kernel module version
  NvidiaSmiState smi;
  bool smi_present = false;
  std::string error;  // the package manager could not be read
};

Live ReadLive(const NvidiaSettings& s, const ProbeResults& results) {
  Live l;
  l.mgr = ManagerFor(s, results);
  if (l.mgr == "apt") {
    const ProbeOutput* q = FindProbe(results, DpkgQueryProbe(kDpkgPatterns).key);
    if (!q || q->exit_code != 0) l.error = "dpkg-query failed on this node";
    DpkgStatus dpkg = ParseDpkgQuery(q ? q->out : "");
    for (const auto& [n, e] : dpkg.by_name) {
      if (e.installed()) l.version[n] = e.version;
      if (e.held()) l.held.insert(n);
    }
    if (const ProbeOutput* h = FindProbe(results, "apt-mark-showhold"); h && h->exit_code == 0) {
      l.held.clear();
      for (const auto& n : results.fact(kAptHolds).names) l.held.insert(n);
    }
  } else if (l.mgr == "pacman") {
    std::vector<std::string> names = NvidiaDriverPackages(s, "pacman");
    names.push_back(kToolkit);
    const ProbeOutput* q = FindProbe(results, PacmanQProbe(names).key);
    if (!q || q->exit_code != 0) l.error = "pacman -Q failed on this node";
    for (const auto& [n, v] : ParsePacmanQ(q ? q->out : "").version) l.version[n] = v;
    l.held = ParsePacmanConfIgnore(ParseFileProbe(results, "/etc/pacman.conf").content, "nvidia").managed;
  } else {
    l.error = "no supported package manager on this node (neither apt nor pacman)";
  }
  if (const ProbeOutput* p = FindProbe(results, "proc-driver-nvidia-version"); p && p->exit_code == 0)
    l.loaded = ParseProcDriverVersion(p->out);
  if (const ProbeOutput* p = FindProbe(results, "nvidia-smi-driver"); p && p->exit_code != 127) {
    l.smi_present = true;
    l.smi = ParseNvidiaSmiDriverQuery(p->out);
    if (p->exit_code != 0 && l.smi.error.empty()) l.smi.error = "nvidia-smi failed (exit " + std::to_string(p->exit_code) + ")";
  }
  return l;
}

// "reboot pending: kernel module 535.104.05 loaded, userspace 535.183.01 installed", or "".
std::string RebootStatus(const Live& l, const std::string& userspace) {
  if (!userspace.empty() && l.loaded && *l.loaded != userspace)
    return "reboot pending: kernel module " + *l.loaded + " loaded, userspace " + userspace + " installed";
  if (l.smi.version_mismatch())
    return "reboot pending: nvidia-smi reports a driver/library version mismatch (" + l.smi.error + ")";
  if (!userspace.empty() && !l.loaded)
    return "kernel module not loaded (userspace " + userspace + " installed; reboot or modprobe nvidia)";
  return "";
}

// Installed driver packages of another branch (apt): "nvidia-utils-525-server" when 535 is wanted.
std::vector<std::string> OtherBranch(const Live& l, const std::string& branch) {
  static const std::regex re("^(lib)?nvidia-[a-z0-9-]*?-([0-9]{3,4})(-server)?(-open)?$");
  std::vector<std::string> out;
  for (const auto& [n, v] : l.version) {
    std::smatch m;
    if (std::regex_match(n, m, re) && m[2].str() != branch) out.push_back(n);
  }
  return out;
}

// "nvidia-utils-525-server" -> "525".
std::string OtherBranchNumber(const std::string& pkg) {
  static const std::regex re("-([0-9]{3,4})(-|$)");
  std::smatch m;
  return std::regex_search(pkg, m, re) ? m[1].str() : "";
}

// Compares "535.104.05" with "535.183.01" number by number: <0, 0, >0.
int CompareDotted(const std::string& a, const std::string& b) {
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    long x = 0, y = 0;
    while (i < a.size() && isdigit((unsigned char)a[i])) x = x * 10 + (a[i++] - '0');
    while (j < b.size() && isdigit((unsigned char)b[j])) y = y * 10 + (b[j++] - '0');
    if (x != y) return x < y ? -1 : 1;
    if (i < a.size()) ++i;
    if (j < b.size()) ++j;
  }
  return 0;
}

class NvidiaModule : public Module {
 public:
  std::string name() const override { return "nvidia"; }
  // Right after packages (its mirror and lists), before anything that uses the GPU (docker's runtime).
  int order() const override { return 6; }
  std::vector<std::string> settings_keys() const override { return {"nvidia"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return Closed(kNvidiaKeys, {{"driver", Scalar("exact version, e.g. \"535.183.01\"")},
                                {"branch", Scalar("e.g. \"535\"")},
                                {"flavor", Enum({"server", "headless", "desktop"})},
                                {"hold", Boolean()},
                                {"persistence", Boolean()},
                                {"container_toolkit", Boolean()},
                                {"blacklist_nouveau", Boolean()},
                                {"packages", Enum({"apt", "pacman"})}},
                  "the NVIDIA driver");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    // Each layer for types and keys; the merged settings of each node for what needs all of them (a branch
    // from the defaults plus a driver from the node must agree).
    auto layer = [&](const Value& s) {
      if (const Value* v = s.find("nvidia"); v && !v->is_null()) {
        Findings scratch;
        ParseNvidiaSettings(*v, &scratch);
        for (const auto& x : scratch.items())
          if (x.code != "nvidia-branch-mismatch" && x.code != "nvidia-driver-missing") f.add(x);
      }
    };
    ForEachSettingsLayer(inv, layer);
    std::set<std::string> reported;
    for (const auto& n : inv.nodes) {
      Value settings = inv.settings(n);
      const Value* v = settings.find("nvidia");
      if (!v || v->is_null()) continue;
      Findings scratch;
      auto parsed = ParseNvidiaSettings(*v, &scratch);
      if (parsed && parsed->branch.empty() && parsed->packages != "pacman" &&
          reported.insert("nobranch@" + v->loc().str()).second)
        f.warning(v->loc(), "nvidia-driver-missing",
                  "nvidia settings of node " + n.name + " name no 'branch' or 'driver': only a pacman node can use them "
                  "(apt needs the branch to pick packages)");
      for (const auto& x : scratch.items())
        if ((x.code == "nvidia-branch-mismatch" || x.code == "nvidia-driver-missing") &&
            reported.insert(x.where.str() + x.message).second)
          f.add({x.where, x.severity, x.code, x.message + " (node " + n.name + ")"});
    }
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    std::vector<OwnedFile> out;
    auto s = NodeNvidia(ctx.settings);
    if (!s) return out;
    if (s->hold) out.push_back({kUnattendedFile, "nvidia.hold"});
    if (s->blacklist_nouveau) out.push_back({kNouveauFile, "nvidia.blacklist_nouveau"});
    return out;
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    auto s = NodeNvidia(ctx.settings);
    if (!s) return out;
    auto add = [&](const char* id, Part p) {
      out.push_back({name(), id, s->where, std::make_shared<NvRes>(NvRes{*s, p})});
    };
    add("nvidia:driver", Part::Driver);
    add("nvidia:hold", Part::Hold);
    if (s->container_toolkit) add("nvidia:container-toolkit", Part::Toolkit);
    if (s->hold) add("nvidia:unattended-upgrades", Part::Unattended);
    if (s->blacklist_nouveau) add("nvidia:nouveau", Part::Nouveau);
    if (s->persistence) add("nvidia:persistence", Part::Persistence);
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    if (rs.empty()) return {};
    const NvidiaSettings& s = rs[0].as<NvRes>().s;
    std::vector<std::string> pacman_names = NvidiaDriverPackages(s, "pacman");
    pacman_names.push_back(kToolkit);
    std::vector<Probe> out = {PackageManagerProbe(),   DpkgQueryProbe(kDpkgPatterns), AptMarkShowholdProbe(),
                              PacmanQProbe(pacman_names), FileProbe("/etc/pacman.conf"), ProcDriverVersionProbe(),
                              NvidiaSmiDriverProbe(),  FileProbe(kPinFile)};
    for (const auto& r : rs) {
      switch (r.as<NvRes>().part) {
        case Part::Unattended: out.push_back(FileProbe(kUnattendedFile)); break;
        case Part::Nouveau: out.push_back(FileProbe(kNouveauFile)); break;
        case Part::Persistence: out.push_back(SystemctlShowProbe({kPersistenced})); break;
        default: break;
      }
    }
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    const NvRes& nr = r.as<NvRes>();
    switch (nr.part) {
      case Part::Driver: {
        DiffResult d = DiffDriver(nr.s, results);
        // "reboot pending" is said whether or not the driver changes now.
        if (d.error.empty()) {
          Live l = ReadLive(nr.s, results);
          auto pkgs = l.error.empty() ? NvidiaDriverPackages(nr.s, l.mgr) : std::vector<std::string>{};
          auto first = pkgs.empty() ? l.version.end() : l.version.find(pkgs[0]);
          std::string reboot = RebootStatus(l, first == l.version.end() ? "" : UpstreamVersion(first->second));
          if (reboot.rfind("reboot pending", 0) == 0) d.warnings.push_back("nvidia: " + reboot);
        }
        return d;
      }
      case Part::Hold: return DiffHold(nr.s, results);
      case Part::Toolkit: return DiffToolkit(nr.s, results);
      case Part::Unattended: return DiffUnattended(nr.s, results);
      case Part::Nouveau: return DiffNouveau(nr.s, results);
      case Part::Persistence: return DiffPersistence(results);
    }
    return Failure("unknown nvidia resource");
  }

 private:
  static DiffResult DiffDriver(const NvidiaSettings& s, const ProbeResults& results) {
    Live l = ReadLive(s, results);
    if (!l.error.empty()) return Failure(l.error);
    std::vector<std::string> pkgs = NvidiaDriverPackages(s, l.mgr);
    if (pkgs.empty()) return Failure("nvidia settings for apt need 'branch' (e.g. \"535\") or an exact 'driver' version");
    std::vector<std::string> missing, wrong;
    for (const auto& p : pkgs) {
      auto it = l.version.find(p);
      if (it == l.version.end()) missing.push_back(p);
      else if (!DriverVersionMatches(it->second, s.driver)) wrong.push_back(p + " " + it->second);
    }
    auto first = l.version.find(pkgs[0]);
    std::string userspace = first == l.version.end() ? "" : UpstreamVersion(first->second);
    std::string reboot = RebootStatus(l, userspace);
    std::string want = s.driver.empty() ? "branch " + s.branch : s.driver;
    FileState pin = ParseFileProbe(results, kPinFile);
    std::string pin_want = s.driver.empty() ? "" : NvidiaAptPreferences(s.driver);
    bool pin_ok = l.mgr != "apt" || (s.driver.empty() ? !pin.exists : pin.exists && pin.content == pin_want);
    if (missing.empty() && wrong.empty()) {
      if (pin_ok)
        return Noop("nothing to do because nvidia driver " + userspace + " (" + want + ") is installed" +
                    (reboot.empty() ? "" : "; " + reboot));
      // Packages right, pin file not: only the pin file changes.
      DiffResult d;
      if (s.driver.empty()) {
        Change c;
        c.kind = Change::Kind::Remove;
        c.sign = '-';
        c.path = kPinFile;
        c.summary = std::string("apt pin of the nvidia driver ") + kPinFile;
        c.reason = "no exact nvidia.driver version in the inventory any more";
        d.changes.push_back(std::move(c));
      } else {
        d = DiffFile({kPinFile, pin_want, 0644, "root", "root"}, pin, std::string("apt pin of the nvidia driver ") + kPinFile);
      }
      return d;
    }
    if (l.mgr == "pacman") {
      if (!missing.empty()) {
        Change c;
        c.sign = '+';
        c.summary = "nvidia driver (install " + Join(missing, ", ") + "; reboot needed)";
        c.reason = "not installed";
        c.command = Cmd("pacman").arg("-S").arg("--noconfirm").arg("--needed").arg("--").args(missing).str();
        c.disruptive = true;
        DiffResult d;
        d.changes.push_back(std::move(c));
        return d;
      }
      return Failure("installed " + Join(wrong, ", ") + " is not driver " + want +
                     "; pacman installs only the repository's current version, so change nvidia.driver to match or "
                     "install the wanted version by hand");
    }
    // apt: one command installs (or moves to) the wanted version of every driver package.
    std::vector<std::string> other = OtherBranch(l, s.branch);
    std::vector<std::string> unhold;
    for (const auto& p : pkgs)
      if (l.held.count(p)) unhold.push_back(p);
    for (const auto& p : other)
      if (l.held.count(p)) unhold.push_back(p);
    std::vector<std::string> args;
    for (const auto& p : pkgs) args.push_back(s.driver.empty() ? p : p + "=" + AptVersionPattern(s.driver));
    Script sc;
    if (s.driver.empty()) {
      sc.add(Cmd("rm").arg("-f").arg(kPinFile));
    } else {
      sc.add(Cmd("mkdir").arg("-p").arg("/etc/apt/preferences.d"));
      sc.add(Cmd("printf").arg("%s").arg(Base64Encode(pin_want)).raw("|").then(Cmd("base64").arg("-d")).raw(">")
                 .arg(std::string(kPinFile) + ".labfleet-new"));
      sc.add(Cmd("mv").arg("-f").arg(std::string(kPinFile) + ".labfleet-new").arg(kPinFile));
    }
    if (!unhold.empty()) sc.add(Cmd("apt-mark").arg("unhold").arg("--").args(unhold));
    Cmd inst = AptGet("install").arg("--no-install-recommends").arg("--allow-downgrades");
    inst.arg("--allow-change-held-packages").arg("--").args(args);
    sc.raw(inst.str() + " || { " + AptGet("update").str() + " && " + inst.str() + "; }");
    if (s.hold) sc.add(Cmd("apt-mark").arg("hold").arg("--").args(pkgs));
    Change c;
    c.disruptive = true;
    c.command = sc.str();
    bool moves = !wrong.empty() || !other.empty();  // some driver version is replaced
    c.sign = moves ? '~' : '+';
    if (!moves) {
      c.summary = "nvidia driver " + want + " (install " + Join(missing, ", ") + "; reboot needed)";
    } else {
      std::string from = !wrong.empty() && !userspace.empty() ? userspace : Join(other, ", ");
      std::string to = UpstreamVersion(s.driver);
      // Upgrade or downgrade, by the dotted numbers (branch changes compare the branch).
      std::string a = !wrong.empty() && !userspace.empty() ? userspace : "", b = to;
      if (a.empty() || b.empty()) {
        a = other.empty() ? "" : OtherBranchNumber(other[0]);
        b = s.branch;
      }
      const char* verb = CompareDotted(a, b) > 0 ? "downgrade" : "upgrade";
      c.summary = "nvidia driver " + from + " -> " + want + " (" + verb + "; replaces " +
                  Join(wrong.empty() ? other : wrong, ", ") + "; reboot needed)";
    }
    c.reason = (missing.empty() ? "" : "missing: " + Join(missing, ", ")) +
               (wrong.empty() ? "" : std::string(missing.empty() ? "" : "; ") + "other version: " + Join(wrong, ", ")) +
               "; kills running GPU work" + (reboot.empty() ? "" : "; " + reboot);
    DiffResult d;
    d.changes.push_back(std::move(c));
    return d;
  }

  static DiffResult DiffHold(const NvidiaSettings& s, const ProbeResults& results) {
    Live l = ReadLive(s, results);
    if (!l.error.empty()) return Noop("nothing to do because the package manager could not be read (see nvidia:driver)");
    std::vector<std::string> pkgs = NvidiaDriverPackages(s, l.mgr);
    std::vector<std::string> installed, change;
    for (const auto& p : pkgs) {
      if (!l.version.count(p)) continue;  // the install change holds what it installs
      installed.push_back(p);
      if (s.hold != (l.held.count(p) > 0)) change.push_back(p);
    }
    if (l.mgr == "pacman") {
      std::set<std::string> want;
      if (s.hold) want.insert(pkgs.begin(), pkgs.end());
      if (want == l.held) return Noop(std::string("nothing to do because IgnorePkg ") + (s.hold ? "holds " + Join(pkgs, " ") : "holds no driver package"));
      Change c;
      c.summary = std::string("nvidia driver ") + (s.hold ? "held (IgnorePkg " + Join(pkgs, " ") + ")" : "no longer held");
      c.reason = "nvidia.hold: " + std::string(s.hold ? "true" : "false");
      c.command = PacmanIgnoreCommand("nvidia", s.hold ? pkgs : std::vector<std::string>{});
      DiffResult d;
      d.changes.push_back(std::move(c));
      return d;
    }
    if (change.empty())
      return Noop("nothing to do because " + (installed.empty() ? std::string("no driver package is installed yet")
                                                                 : Join(installed, ", ") + (s.hold ? " held" : " not held")));
    Change c;
    c.summary = "nvidia driver packages " + std::string(s.hold ? "held" : "unheld") + " (" + Join(change, ", ") + ")";
    c.reason = s.hold ? "apt upgrades must not move the driver" : "nvidia.hold: false";
    c.command = Cmd("apt-mark").arg(s.hold ? "hold" : "unhold").arg("--").args(change).str();
    DiffResult d;
    d.changes.push_back(std::move(c));
    return d;
  }

  static DiffResult DiffToolkit(const NvidiaSettings& s, const ProbeResults& results) {
    Live l = ReadLive(s, results);
    if (!l.error.empty()) return Noop("nothing to do because the package manager could not be read (see nvidia:driver)");
    if (l.version.count(kToolkit)) return Noop(std::string("nothing to do because ") + kToolkit + " " + l.version[kToolkit] + " is installed");
    Change c;
    c.sign = '+';
    c.summary = std::string(kToolkit) + " (install; the docker module registers the nvidia runtime)";
    c.reason = "container_toolkit: true";
    if (l.mgr == "pacman") {
      c.command = Cmd("pacman").arg("-S").arg("--noconfirm").arg("--needed").arg("--").arg(kToolkit).str();
    } else {
      Cmd inst = AptGet("install").arg("--no-install-recommends").arg("--").arg(kToolkit);
      c.command = inst.str() + " || { " + AptGet("update").str() + " && " + inst.str() + "; }";
    }
    DiffResult d;
    d.changes.push_back(std::move(c));
    return d;
  }

  static DiffResult DiffUnattended(const NvidiaSettings& s, const ProbeResults& results) {
    if (ManagerFor(s, results) != "apt") return Noop("nothing to do because unattended-upgrades is an apt tool");
    FileSpec want{kUnattendedFile, kUnattendedText, 0644, "root", "root"};
    return DiffFile(want, ParseFileProbe(results, kUnattendedFile), std::string("unattended-upgrades blacklist ") + kUnattendedFile);
  }

  static DiffResult DiffNouveau(const NvidiaSettings& s, const ProbeResults& results) {
    FileSpec want{kNouveauFile, kNouveauText, 0644, "root", "root"};
    DiffResult d = DiffFile(want, ParseFileProbe(results, kNouveauFile), std::string("nouveau blacklisted in ") + kNouveauFile);
    if (!d.changes.empty() && d.changes[0].kind == Change::Kind::PutFile) {
      bool pacman = ManagerFor(s, results) == "pacman";
      std::string command = pacman ? "mkinitcpio -P" : "update-initramfs -u";
      d.changes.push_back(NotifyChange(pacman ? "mkinitcpio" : "update-initramfs", command,
                                       command + " (nouveau stays unloaded from the next boot; reboot needed)",
                                       "modprobe blacklist changed"));
    }
    return d;
  }

  static DiffResult DiffPersistence(const ProbeResults& results) {
    NvidiaSettings none;
    Live l = ReadLive(none, results);
    std::vector<std::string> actions;
    Script sc;
    const UnitState* u = nullptr;
    SystemctlShow show;
    if (const ProbeOutput* p = FindProbe(results, SystemctlShowProbe({kPersistenced}).key)) {
      show = ParseSystemctlShow(p->out);
      u = show.find({kPersistenced}, kPersistenced);
    }
    if (u && u->found() && !u->masked() && (!u->enabled() || !u->active()) && !u->enable_not_applicable()) {
      actions.push_back("enable and start nvidia-persistenced");
      sc.add(Cmd("systemctl").arg("enable").arg("--now").arg(kPersistenced));
    }
    if (!l.smi_present || !l.smi.error.empty() || l.smi.gpus.empty()) {
      if (actions.empty())
        return Noop("nothing to do now: " + std::string(!l.smi_present ? "nvidia-smi is not installed" : l.smi.error.empty() ? "no GPU listed by nvidia-smi" : "nvidia-smi failed: " + l.smi.error) +
                    "; persistence mode is checked again once the driver runs");
    } else {
      std::vector<std::string> off;
      for (const auto& g : l.smi.gpus)
        if (g.persistence_mode != "Enabled") off.push_back(std::to_string(g.index));
      if (!off.empty()) {
        actions.push_back("nvidia-smi -pm 1 (GPU " + Join(off, ",") + " off)");
        sc.add(Cmd("nvidia-smi").arg("-pm").arg("1"));
      }
    }
    if (actions.empty())
      return Noop("nothing to do because persistence mode is on for " +
                  (l.smi.gpus.size() == 1 ? std::string("the GPU")
                                          : "all " + std::to_string(l.smi.gpus.size()) + " GPUs"));
    Change c;
    c.summary = "nvidia persistence mode (" + Join(actions, "; ") + ")";
    c.reason = "persistence: true";
    c.command = sc.str();
    DiffResult d;
    d.changes.push_back(std::move(c));
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<NvidiaModule>());

}  // namespace
}  // namespace labfleet
