// rootless_docker: each user's own Docker daemon (rootless mode), end to end, on the nodes that give it.
//
// Who: every user with `rootless_docker: true` (users:, the same flag that gives the subids range) whose `on:`
// selects the node. Where and how: the node's `rootless_docker:` settings (mergeable from lab.defaults and
// groups to the node; a node without them gets only the subids ranges, as before):
//   rootless_docker:
//     data_root: "/local/.docker/{{user}}"   per-user data root on local scratch ({{user}}: the user's name)
//     packages: auto                         auto | docker-ce | distro | none
// Per node: the packages (docker-ce: docker-ce docker-ce-rootless-extras uidmap; distro (Debian/Ubuntu's own):
// docker.io rootlesskit slirp4netns uidmap; auto: docker-ce when docker-ce is installed on the node, else distro;
// none: installed by someone else, the flavor picked like auto). Per user, in order:
//   1. linger: `loginctl enable-linger USER` (probe: /var/lib/systemd/linger/USER exists); where systemd is not
//      running (an image, a container) the linger file itself is written, which logind reads when it starts;
//   2. the data root directory, 0700 USER:GROUP, through lf_mkdir: root creates it only when its parent is
//      root-only (lf_rootonly), else the user does; an existing one that is not a directory of the user is refused;
//   3. ~/.config/docker/daemon.json (data-root, the lab's address pools, registry mirrors, insecure registries,
//      dns from the node's `docker:` settings; the proxy too, as "proxies", for docker-ce), compared as JSON;
//   4. ~/.config/systemd/user/docker.service (dockerd-rootless.sh of the flavor; the distro's dockerd 20.10
//      has no "proxies" key, so there the proxy is the unit's Environment=);
//   5. the user service enabled: as the user, `systemctl --user enable --now docker.service` with
//      XDG_RUNTIME_DIR=/run/user/UID when the user's manager runs; else its default.target.wants link, what
//      enable makes (started at the next boot, linger on);
//   and a disruptive handler that try-restarts the user's daemon when its daemon.json or unit changed.
// Files 3 and 4 are written AS THE USER (the executor's lf_where: they are below the user's home), so a link
// planted in ~/.config can only redirect the write to where the user could write anyway; the plan refuses
// them (and skips the user's later steps) when a directory above is a link or not the user's.
#include <algorithm>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/file_probe.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"
#include "modules/docker_lab.h"
#include "modules/facts/accounts_probe.h"
#include "modules/facts/package_facts.h"

namespace labfleet {

struct RootlessSettings {
  Location where;
  std::string data_root;  // with {{user}}; "" = Docker's default (~/.local/share/docker)
  std::string packages = "auto";
};

// Parses a `rootless_docker:` value (one layer or the merged settings); findings to `f` when given.
RootlessSettings ParseRootlessSettings(const Value& v, Findings* f);
// The linger directory's listing (`ls -1A /var/lib/systemd/linger`): user names; lines that cannot be a
// user name are skipped. Pure.
std::set<std::string> ParseLingerList(std::string_view text);
// The user unit labfleet writes for `flavor` (docker-ce | distro), with the proxy as Environment= lines when
// `proxy_env` (distro). Pure.
std::string RootlessUnit(const std::string& flavor, const DockerForUsers& lab, bool proxy_env);
// ~/.config/docker/daemon.json for one user. Pure.
nlohmann::json RootlessDaemonJson(const std::string& data_root, const DockerForUsers& lab, bool proxies_key);

namespace {

const std::vector<std::string> kKeys = {"data_root", "packages"};
const std::vector<std::string> kPackageChoices = {"auto", "docker-ce", "distro", "none"};
const std::vector<std::string> kCePackages = {"docker-ce", "docker-ce-rootless-extras", "uidmap"};
const std::vector<std::string> kDistroPackages = {"docker.io", "rootlesskit", "slirp4netns", "uidmap"};
constexpr const char* kLingerDir = "/var/lib/systemd/linger";
constexpr const char* kUnitHeader = "# Managed by labfleet (rootless_docker); edits here are overwritten.";

std::vector<std::string> AllPackages() {
  std::vector<std::string> all = kCePackages;
  for (const auto& p : kDistroPackages)
    if (std::find(all.begin(), all.end(), p) == all.end()) all.push_back(p);
  return all;
}

std::string Replace(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
  return s;
}

}  // namespace

RootlessSettings ParseRootlessSettings(const Value& v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  RootlessSettings s;
  s.where = v.loc();
  MapReader r(v, "rootless_docker settings", v.loc(), out, kKeys);
  if (auto d = r.str("data_root")) {
    const Location at = r.get("data_root")->loc();
    std::string probe = Replace(*d, "{{user}}", "u");
    if (d->find("{{user}}") == std::string::npos) {
      out.error(at, "rootless-data-root-user",
                "rootless_docker data_root " + Quoted(*d) + " must contain {{user}} (each user's daemon needs its own "
                "directory), e.g. \"/local/.docker/{{user}}\"");
    } else if (probe.find("{{") != std::string::npos || probe.find("}}") != std::string::npos) {
      out.error(at, "rootless-data-root-user",
                "rootless_docker data_root " + Quoted(*d) + ": {{user}} is the only placeholder it may hold");
    } else {
      PathResult pr = NormalizeAbsolutePath(probe);
      if (pr.error) {
        Report(out, at, "rootless_docker data_root " + Quoted(*d), pr.error);
      } else if (pr.path != probe) {
        out.error(at, "rootless-data-root-user",
                  "rootless_docker data_root " + Quoted(*d) + " is not a plain absolute path (no '//', '.', '..' "
                  "or trailing '/')");
      } else if (pr.path.rfind("/home/", 0) == 0 || pr.path == "/home/u") {
        out.warning(at, "rootless-data-root-home",
                    "rootless_docker data_root " + Quoted(*d) + " is below /home, which labs often mount over NFS "
                    "where rootless Docker's storage does not work; use local scratch, e.g. /local/.docker/{{user}}");
        s.data_root = *d;
      } else {
        s.data_root = *d;
      }
    }
  }
  if (auto p = r.one_of("packages", kPackageChoices)) s.packages = *p;
  return s;
}

std::set<std::string> ParseLingerList(std::string_view text) {
  std::set<std::string> out;
  for (const auto& line : SplitLines(text)) {
    if (line.empty() || line.size() > 64 || line[0] == '-' || line[0] == '.') continue;
    bool ok = true;
    for (char c : line) ok &= std::isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.' || c == '$';
    if (ok) out.insert(line);
  }
  return out;
}

nlohmann::json RootlessDaemonJson(const std::string& data_root, const DockerForUsers& lab, bool proxies_key) {
  nlohmann::json j = lab.daemon_json;
  if (!data_root.empty()) j["data-root"] = data_root;
  if (proxies_key) {
    nlohmann::json p = nlohmann::json::object();
    if (!lab.http_proxy.empty()) p["http-proxy"] = lab.http_proxy;
    if (!lab.https_proxy.empty()) p["https-proxy"] = lab.https_proxy;
    if (!lab.no_proxy.empty()) p["no-proxy"] = lab.no_proxy;
    if (!p.empty()) j["proxies"] = p;
  }
  return j;
}

std::string RootlessUnit(const std::string& flavor, const DockerForUsers& lab, bool proxy_env) {
  const std::string exec = flavor == "docker-ce" ? "/usr/bin/dockerd-rootless.sh"
                                                 : "/usr/share/docker.io/contrib/dockerd-rootless.sh";
  std::string out = std::string(kUnitHeader) + "\n";
  out += "[Unit]\nDescription=Docker Application Container Engine (Rootless)\n"
         "Documentation=https://docs.docker.com/go/rootless/\n\n[Service]\n"
         "Environment=PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin\n";
  if (proxy_env) {
    auto env = [&](const char* k, const std::string& v) {
      if (!v.empty()) out += std::string("Environment=\"") + k + "=" + SystemdEscape(v) + "\"\n";
    };
    env("HTTP_PROXY", lab.http_proxy);
    env("HTTPS_PROXY", lab.https_proxy);
    env("NO_PROXY", lab.no_proxy);
  }
  out += "ExecStart=" + exec + "\n";
  out += "ExecReload=/bin/kill -s HUP $MAINPID\nTimeoutSec=0\nRestartSec=2\nRestart=always\nStartLimitBurst=3\n"
         "StartLimitInterval=60s\nLimitNOFILE=infinity\nLimitNPROC=infinity\nLimitCORE=infinity\nTasksMax=infinity\n"
         "Delegate=yes\nType=notify\nNotifyAccess=all\nKillMode=mixed\n\n[Install]\nWantedBy=default.target\n";
  return out;
}

namespace {

struct PackagesRes {
  std::string choice;  // auto | docker-ce | distro | none
};
struct UserRes {
  const UserDef* user;
  std::string data_root;  // rendered; "" = Docker's default
  std::string choice;
};

// The flavor the node gets: the setting, or (auto, none) docker-ce when dpkg says docker-ce is installed.
std::string Flavor(const std::string& choice, const DpkgStatus& dpkg) {
  if (choice == "docker-ce" || choice == "distro") return choice;
  auto it = dpkg.by_name.find("docker-ce");
  return it != dpkg.by_name.end() && it->second.installed() ? "docker-ce" : "distro";
}

// "directory", "symbolic link", ... from a "file:<path>" result's header ("" when absent or unknown).
std::string FileType(const ProbeResults& results, const std::string& path) {
  const ProbeOutput* p = FindProbe(results, "file:" + path);
  if (!p) return "";
  std::string head = p->out.substr(0, p->out.find('\n'));
  head = head.substr(0, head.find('\t'));
  if (head.rfind("present ", 0) != 0) return "";
  auto words = Split(head, ' ');
  if (words.size() < 5) return "";
  std::string type;
  for (size_t i = 4; i < words.size(); ++i) type += (i > 4 ? " " : "") + words[i];
  return type;
}

std::string WantsLink(const UserDef& u) { return HomeOf(u) + "/.config/systemd/user/default.target.wants/docker.service"; }
std::string UnitPath(const UserDef& u) { return HomeOf(u) + "/.config/systemd/user/docker.service"; }
std::string DaemonJsonPath(const UserDef& u) { return HomeOf(u) + "/.config/docker/daemon.json"; }

// Runs `cmd` as the user: setpriv with the user's uid, primary group and groups (no root through its paths).
Cmd AsUser(const UserDef& u) {
  return Cmd("setpriv").arg("--reuid=" + u.name).arg("--regid=" + PrimaryGroupOf(u)).arg("--init-groups").arg("--");
}

// Prints the target of the user's default.target.wants/docker.service link, read as the user (nothing when
// absent, or when the account does not exist yet).
Probe EnabledProbe(const UserDef& u) {
  return {"rootless-docker:enabled:" + u.name,
          AsUser(u).arg("readlink").arg("--").arg(WantsLink(u)).raw("2>/dev/null || true").str()};
}

Probe LingerProbe() {
  return {"rootless-docker:linger",
          Cmd("ls").arg("-1A").arg("--").arg(kLingerDir).raw("2>/dev/null | head -n 100000 || true").str()};
}

class RootlessDockerModule : public Module {
 public:
  std::string name() const override { return "rootless_docker"; }
  // After mounts (75): the data root lives on local scratch, often a mount; before services (85).
  int order() const override { return 80; }
  std::vector<std::string> settings_keys() const override { return {"rootless_docker"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return Closed(kKeys,
                  {{"data_root", Scalar("per-user data root, absolute, with {{user}}, e.g. /local/.docker/{{user}}")},
                   {"packages", Enum(kPackageChoices, "which packages provide rootless Docker")}},
                  "rootless Docker for the users with rootless_docker: true");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    if (const Value* d = inv.lab.find("defaults"); d && d->is_map())
      if (const Value* v = d->find("rootless_docker"); v && !v->is_null()) ParseRootlessSettings(*v, &f);
    for (const auto& g : inv.groups)
      if (const Value* v = g.raw.find("rootless_docker"); v && !v->is_null()) ParseRootlessSettings(*v, &f);
    for (const auto& n : inv.nodes)
      if (const Value* v = n.raw.find("rootless_docker"); v && !v->is_null()) ParseRootlessSettings(*v, &f);
    std::set<std::string> reported;
    // The system daemon's data root holds its own state: a user's data root inside it would be taken over.
    for (const auto& n : inv.nodes) {
      Value eff = inv.settings(n);
      const Value* v = eff.find("rootless_docker");
      const Value* dv = eff.find("docker");
      const Value* sys = dv && dv->is_map() ? dv->find("data_root") : nullptr;
      if (!v || !v->is_map() || !sys || !sys->is_scalar()) continue;
      RootlessSettings s = ParseRootlessSettings(*v, nullptr);
      PathResult root = NormalizeAbsolutePath(sys->str());
      if (s.data_root.empty() || root.error) continue;
      std::string mine = Replace(s.data_root, "{{user}}", "u");
      if ((mine + "/").rfind(root.path == "/" ? "/" : root.path + "/", 0) == 0 &&
          reported.insert(v->find("data_root")->loc().str()).second)
        f.error(v->find("data_root")->loc(), "rootless-data-root-in-docker",
                "rootless_docker data_root " + Quoted(s.data_root) + " lies inside the system Docker daemon's "
                "data_root " + Quoted(sys->str()) + " (" + sys->loc().str() + ") on node '" + n.name +
                    "'; give the users' daemons a directory of their own, e.g. /local/docker-rootless/{{user}}");
    }
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("rootless_docker");
    if (!v || !v->is_map()) return {};
    RootlessSettings s = ParseRootlessSettings(*v, nullptr);
    std::vector<Resource> out;
    for (const UserDef* u : UsersOnNode(ctx)) {
      if (!u->rootless_docker || u->remove) continue;
      std::string root = s.data_root.empty() ? "" : Replace(s.data_root, "{{user}}", u->name);
      out.push_back({name(), "rootless_docker:" + u->name, u->where,
                     std::make_shared<UserRes>(UserRes{u, root, s.packages})});
    }
    if (out.empty()) return {};
    out.insert(out.begin(), Resource{name(), "rootless_docker:packages", s.where,
                                     std::make_shared<PackagesRes>(PackagesRes{s.packages})});
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    if (rs.empty()) return {};
    std::vector<Probe> out = {kPackageManager.probe(), DpkgQueryProbe(AllPackages()), LingerProbe()};
    for (const auto& r : rs) {
      if (r.id == "rootless_docker:packages") continue;
      const auto& x = r.as<UserRes>();
      if (!x.data_root.empty()) out.push_back(FileProbe(x.data_root));
      out.push_back(FileProbe(DaemonJsonPath(*x.user)));
      out.push_back(FileProbe(UnitPath(*x.user)));
      out.push_back(EnabledProbe(*x.user));
    }
    return out;
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    const ProbeOutput* q = FindProbe(results, DpkgQueryProbe(AllPackages()).key);
    DpkgStatus dpkg = ParseDpkgQuery(q ? q->out : "");
    if (r.id == "rootless_docker:packages") return DiffPackages(r.as<PackagesRes>().choice, dpkg, results);
    return DiffUser(ctx, r.as<UserRes>(), Flavor(r.as<UserRes>().choice, dpkg), results);
  }

 private:
  static DiffResult DiffPackages(const std::string& choice, const DpkgStatus& dpkg, const ProbeResults& results) {
    const std::string flavor = Flavor(choice, dpkg);
    if (choice == "none")
      return Noop("nothing to do because rootless_docker.packages is none (the " + flavor +
                  " flavor's packages are installed by someone else)");
    const std::string& pm = results.fact(kPackageManager);
    if (pm != "apt")
      return Failure("rootless Docker's packages are installed by labfleet on apt nodes only (this node's package "
                     "manager: " + pm + "); install them with `packages:` and set rootless_docker.packages: none");
    const auto& want = flavor == "docker-ce" ? kCePackages : kDistroPackages;
    std::vector<std::string> missing;
    for (const auto& p : want) {
      auto it = dpkg.by_name.find(p);
      if (it == dpkg.by_name.end() || !it->second.installed()) missing.push_back(p);
    }
    if (missing.empty())
      return Noop("nothing to do because the " + flavor + " rootless Docker packages are installed (" + Join(want, ", ") + ")");
    Change c;
    c.kind = Change::Kind::Exec;
    c.sign = '+';
    c.summary = "rootless docker packages: install " + Join(missing, ", ");
    c.reason = flavor == "docker-ce" ? "docker-ce is installed: Docker's own rootless extras"
                                     : "the distribution's rootless Docker (docker.io with rootlesskit)";
    Cmd install = Cmd("apt-get").arg("install").arg("-y").arg("-q").arg("--no-install-recommends")
                      .arg("-o").arg("Dpkg::Options::=--force-confold").arg("--").args(missing);
    c.command = "export DEBIAN_FRONTEND=noninteractive\n" + install.str() + " || { " +
                Cmd("apt-get").arg("update").arg("-q").str() + " && " + install.str() + "; }";
    DiffResult d;
    d.changes.push_back(std::move(c));
    return d;
  }

  static DiffResult DiffUser(const NodeContext& ctx, const UserRes& x, const std::string& flavor,
                             const ProbeResults& results) {
    const UserDef& u = *x.user;
    const std::string group = PrimaryGroupOf(u);
    DiffResult d;
    auto refuse = [&](const std::string& why) {
      d.changes.clear();
      d.warnings.push_back("refused: rootless Docker of " + u.name + ": " + why);
      d.noop = "nothing done for rootless Docker of " + u.name + ": refused, " + why;
      return d;
    };

    // 1. linger
    if (!ParseLingerList(FindProbe(results, "rootless-docker:linger") ? FindProbe(results, "rootless-docker:linger")->out
                                                                      : "").count(u.name)) {
      const std::string file = std::string(kLingerDir) + "/" + u.name;
      Change c;
      c.kind = Change::Kind::Exec;
      c.sign = '+';
      c.summary = "linger for " + u.name + " (loginctl enable-linger)";
      c.reason = "its user manager, and so its Docker daemon, must run without a login session";
      c.command = "if [ -d /run/systemd/system ] && command -v loginctl >/dev/null 2>&1; then " +
                  Cmd("loginctl").arg("enable-linger").arg("--").arg(u.name).str() + "; else " +
                  Cmd("lf_where").arg(file).arg("root").arg("root").str() + " || exit 1; " +
                  Cmd("mkdir").arg("-p").arg("--").arg(kLingerDir).str() + " && " +
                  Cmd(":").raw(">").arg(file).str() + " && " +
                  Cmd("echo").arg("systemd is not running here: wrote " + file +
                                  ", which systemd-logind reads when it starts").str() +
                  "; fi";
      d.changes.push_back(std::move(c));
    }

    // 2. data root
    if (!x.data_root.empty()) {
      FileState ds = ParseFileProbe(results, x.data_root);
      std::string type = FileType(results, x.data_root);
      if (ds.exists && type != "directory")
        return refuse(x.data_root + " exists and is a " + (type.empty() ? "file it could not read" : type) +
                      ", not a directory (move it away)");
      if (ds.exists && ds.owner != u.name)
        return refuse(x.data_root + " belongs to " + ds.owner + ", not " + u.name +
                      "; labfleet does not take another account's directory (chown or remove it by hand)");
      if (!ds.exists || ds.mode != 0700 || ds.group != group) {
        Change c;
        c.kind = Change::Kind::Exec;
        c.sign = ds.exists ? '~' : '+';
        c.summary = "rootless docker data root " + x.data_root + " (0700 " + u.name + ":" + group + ")";
        c.reason = ds.exists ? "mode or group differs" : "absent";
        c.command = Cmd("lf_mkdir").arg(x.data_root).arg("0700").arg(u.name).arg(group).str();
        d.changes.push_back(std::move(c));
      }
    }

    // 3. daemon.json, 4. the user unit: written as the user; refused when the path is not safe.
    DockerForUsers lab;
    if (const Value* dv = ctx.settings.find("docker")) lab = DockerSettingsForUsers(*dv);
    const bool ce = flavor == "docker-ce";
    bool content_changed = false;
    auto file = [&](const std::string& path, std::string bytes, unsigned mode, const std::string& what,
                    bool json) -> bool {
      FileState live = ParseFileProbe(results, path);
      if (json && live.exists && live.regular) {
        auto have = nlohmann::json::parse(live.content, nullptr, false);
        if (!have.is_discarded() && have == nlohmann::json::parse(bytes)) bytes = live.content;
      }
      DiffResult f = DiffFile(FileSpec{path, bytes, mode, u.name, group}, live, what);
      if (!f.warnings.empty()) {
        d.warnings.insert(d.warnings.end(), f.warnings.begin(), f.warnings.end());
        return false;
      }
      for (auto& c : f.changes) {
        content_changed |= c.kind == Change::Kind::PutFile && live.exists;
        d.changes.push_back(std::move(c));
      }
      return true;
    };
    nlohmann::json dj = RootlessDaemonJson(x.data_root, lab, ce);
    if (!file(DaemonJsonPath(u), dj.dump(2) + "\n", 0644, "rootless docker daemon.json of " + u.name, true) ||
        !file(UnitPath(u), RootlessUnit(flavor, lab, !ce), 0644, "rootless docker unit of " + u.name, false)) {
      d.changes.clear();
      d.noop = "nothing done for rootless Docker of " + u.name + ": refused (see the warning)";
      return d;
    }

    // 5. enabled
    const ProbeOutput* en = FindProbe(results, "rootless-docker:enabled:" + u.name);
    std::string link = en ? std::string(TrimView(en->out)) : "";
    if (link.size() < 14 || link.compare(link.size() - 14, 14, "docker.service") != 0) {
      const std::string wants = WantsLink(u);
      const std::string wants_dir = wants.substr(0, wants.rfind('/'));
      Change c;
      c.kind = Change::Kind::Exec;
      c.sign = '+';
      c.summary = "rootless docker service of " + u.name + " (systemctl --user enable)";
      c.reason = link.empty() ? "not enabled" : "default.target.wants/docker.service points to " + link;
      // As the user, always. With its manager running: systemctl --user (enable --now). Without one (linger
      // written while systemd is not running): the link that enable makes, so it starts with the manager.
      c.command =
          "lf_uid=$(id -u -- " + ShellQuote(u.name) + ") || exit 1\n"
          "if [ -S \"/run/user/$lf_uid/systemd/private\" ] || [ -S \"/run/user/$lf_uid/bus\" ]; then " +
          AsUser(u).arg("env").arg("HOME=" + HomeOf(u)).raw("\"XDG_RUNTIME_DIR=/run/user/$lf_uid\"")
              .arg("systemctl").arg("--user").arg("enable").arg("--now").arg("docker.service").str() +
          "; else " +
          AsUser(u).arg("sh").arg("-c").arg("mkdir -p -- \"$1\" && ln -sfn -- ../docker.service \"$1/docker.service\"")
              .arg("lf").arg(wants_dir).str() +
          " && " +
          Cmd("echo").arg("no user manager runs for " + u.name + ": enabled by its default.target.wants link; it "
                          "starts with the manager (linger: at boot)").str() +
          "; fi";
      d.changes.push_back(std::move(c));
    } else if (content_changed) {
      std::string handler = "restart rootless docker of " + u.name;
      std::string command = "lf_uid=$(id -u -- " + ShellQuote(u.name) + ") || exit 1\n"
                    "if [ -S \"/run/user/$lf_uid/systemd/private\" ] || [ -S \"/run/user/$lf_uid/bus\" ]; then " +
                    AsUser(u).arg("env").arg("HOME=" + HomeOf(u)).raw("\"XDG_RUNTIME_DIR=/run/user/$lf_uid\"")
                        .arg("systemctl").arg("--user").arg("daemon-reload").str() + " && " +
                    AsUser(u).arg("env").arg("HOME=" + HomeOf(u)).raw("\"XDG_RUNTIME_DIR=/run/user/$lf_uid\"")
                        .arg("systemctl").arg("--user").arg("try-restart").arg("docker.service").str() +
                    "; else " + Cmd("echo").arg("no user manager runs for " + u.name + ": nothing to restart").str() +
                    "; fi";
      d.changes.push_back(NotifyChange(handler, std::move(command), handler,
                                       "its daemon.json or unit changed; its running containers stop",
                                       /*disruptive=*/true));
    }
    if (d.changes.empty())
      d.noop = "nothing to do because rootless Docker of " + u.name + " is set up (" + flavor + ", linger, " +
               (x.data_root.empty() ? std::string("default data root") : x.data_root) + ", enabled)";
    return d;
  }
};

const ModuleRegistrar kRootlessDocker(std::make_unique<RootlessDockerModule>());

}  // namespace
}  // namespace labfleet
