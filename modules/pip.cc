// pip: Python packages at exact versions, system-wide or in a named virtual environment. Module `pip`, order 7
// (after packages 5, which installs python3-pip / python3-venv, and nvidia 6).
//
//   pip:
//     - determined==0.26                                      # system-wide
//     - { venv: /opt/det, packages: [determined==0.26, pyOpenSSL==20.0.1] }
//     - { venv: /opt/tools, packages: [lf-demo==1.0], find_links: /srv/wheels, index: false }
//
// Contract:
// - every requirement is NAME==VERSION (exact; PEP 508 name, PEP 440 version characters only); one entry per
//   target (the system, or one venv path); read back with `pip list --format json` (at most 4 MiB, parsed as
//   hostile: lines not understood are skipped) and compared by canonical name (PEP 503) and version (trailing
//   ".0" ignored, so 0.26 == 0.26.0);
// - install: `python3 -m pip install` (VENV/bin/python for a venv) of the missing or other-version packages in one
//   command. System-wide on Debian 12 / Ubuntu 23.04+ the interpreter is "externally managed" (PEP 668): labfleet
//   sets PIP_BREAK_SYSTEM_PACKAGES=1 (older pips ignore it) because the inventory asked for exactly that; prefer a
//   venv where you can. package_mirror.pip becomes --index-url (with --trusted-host for http); `find_links` adds
//   --find-links, `index: false` adds --no-index (offline wheel directories);
// - a venv that does not exist is created with `python3 -m venv` (python3-venv) as root; an existing one is used
//   only if it, its parent and its top four levels are root's and not group/world writable (root runs its
//   python: a user who can write there could run code as root), else the node fails with the path.
#include <nlohmann/json.hpp>

#include <map>
#include <set>

#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/settings_layers.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"
#include "modules/facts/apt_facts.h"

namespace labfleet {
namespace {

const std::vector<std::string> kEntryKeys = {"venv", "packages", "find_links", "index"};

struct Req {
  std::string name, version;
};

struct PipTarget {
  std::string venv;  // "" = system-wide
  std::vector<Req> reqs;
  std::string find_links;
  bool index = true;
  Location where;
};

struct PipWant {
  std::vector<PipTarget> targets;
};

std::optional<Req> ParseReq(const std::string& s) {
  auto eq = s.find("==");
  if (eq == std::string::npos) return std::nullopt;
  Req r{s.substr(0, eq), s.substr(eq + 2)};
  if (!IsPipName(r.name) || !IsPipVersion(r.version)) return std::nullopt;
  return r;
}

PipWant ParsePip(const Value& v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  PipWant w;
  if (v.is_null()) return w;
  if (!v.is_seq()) {
    out.error(v.loc(), "wrong-type", "pip must be a list of NAME==VERSION or { venv, packages: [...] }, got " + DescribeValue(v));
    return w;
  }
  std::map<std::string, Location> targets;
  PipTarget system;
  auto add_req = [&](PipTarget& t, const Value& item, std::set<std::string>& names) {
    if (!item.is_scalar()) {
      out.error(item.loc(), "wrong-type", "a pip requirement must be NAME==VERSION, got " + DescribeValue(item));
      return false;
    }
    auto r = ParseReq(item.str());
    if (!r) {
      out.error(item.loc(), FindControl(item.str()) != std::string::npos ? "control-character" : "pip-requirement",
                "pip requirement " + Quoted(item.str()) +
                    " must be NAME==VERSION with an exact version (e.g. determined==0.26; letters, digits and ._- in the "
                    "name, .+!_- in the version)");
      return false;
    }
    if (!names.insert(PipCanonicalName(r->name)).second) {
      out.error(item.loc(), "pip-duplicate", "pip package " + r->name + " is listed twice for " +
                                                 (t.venv.empty() ? std::string("the system") : "venv " + t.venv));
      return false;
    }
    t.reqs.push_back(*r);
    return true;
  };
  std::set<std::string> system_names;
  bool system_map = false;
  for (const auto& e : v.items()) {
    if (e.is_scalar()) {
      if (system.reqs.empty()) system.where = e.loc();
      add_req(system, e, system_names);
      continue;
    }
    MapReader r(e, "pip entry", e.loc(), out, kEntryKeys);
    if (!r.is_map()) continue;
    bool ok = r.require("packages", "e.g. packages: [determined==0.26]");
    PipTarget t;
    t.where = e.loc();
    if (auto p = r.str("venv")) {
      PathResult pr = NormalizeAbsolutePath(*p);
      if (pr.error || pr.path == "/" || pr.path.find_first_of(" '\"\\$`") != std::string::npos) {
        out.error(r.get("venv")->loc(), pr.error ? pr.error->code : "pip-venv",
                  "venv " + Quoted(*p) + " must be an absolute path other than / without blanks or quotes" +
                      (pr.error ? " (it " + pr.error->what + ")" : std::string()));
        continue;  // not a target at all (and not the system's)
      }
      t.venv = pr.path;
    }
    if (auto fl = r.str("find_links")) {
      SyntaxError se;
      PathResult pr = NormalizeAbsolutePath(*fl);
      if (pr.error && !ParseUrl(*fl, {"http", "https", "file"}, &se)) {
        out.error(r.get("find_links")->loc(), "pip-find-links",
                  "find_links " + Quoted(*fl) + " must be an absolute directory on the node or an http(s)/file URL");
        ok = false;
      } else {
        t.find_links = pr.error ? *fl : pr.path;
      }
    }
    if (auto ix = r.boolean("index")) t.index = *ix;
    std::string key = t.venv.empty() ? std::string("(system)") : t.venv;
    if (auto it = targets.find(key); it != targets.end() || (t.venv.empty() && (system_map || !system.reqs.empty()))) {
      out.error(e.loc(), "pip-target-duplicate",
                "pip packages for " + (t.venv.empty() ? std::string("the system") : "venv " + t.venv) +
                    " are listed in two entries" +
                    (it != targets.end() ? " (first at " + it->second.str() + ")" : std::string()) + "; merge them");
      continue;
    }
    targets.emplace(key, e.loc());
    if (const Value* ps = r.get("packages")) {
      if (!ps->is_seq()) {
        out.error(ps->loc(), "wrong-type", "packages of a pip entry must be a list of NAME==VERSION");
        ok = false;
      } else {
        std::set<std::string> names;
        for (const auto& item : ps->items()) ok &= add_req(t, item, names);
      }
    }
    if (!ok) continue;
    if (t.venv.empty()) {
      system_map = true;
      system = t;
    } else {
      w.targets.push_back(t);
    }
  }
  if (!system.reqs.empty()) w.targets.insert(w.targets.begin(), system);
  return w;
}

// The index of package_mirror.pip (validated by packages), when set and usable.
std::string PipMirror(const Value& settings) {
  const Value* m = settings.find("package_mirror");
  if (!m || !m->is_map()) return "";
  const Value* p = m->find("pip");
  if (!p || !p->is_scalar() || p->str().find_first_of("'`$[]") != std::string::npos ||
      !ParseUrl(p->str(), {"http", "https"}, nullptr))
    return "";
  return p->str();
}

struct PipResource {
  PipTarget target;
  std::string mirror;
};

std::string Python(const PipTarget& t) { return t.venv.empty() ? "python3" : t.venv + "/bin/python"; }

Probe PipProbe(const PipTarget& t) {
  Script s;
  s.raw("command -v python3 >/dev/null 2>&1 || exit 127");
  if (t.venv.empty()) {
    s.raw("echo system");
  } else {
    const std::string parent = t.venv.substr(0, t.venv.rfind('/')).empty() ? "/" : t.venv.substr(0, t.venv.rfind('/'));
    s.raw("if [ ! -e " + ShellQuote(t.venv) + " ] && [ ! -L " + ShellQuote(t.venv) + " ]; then echo 'venv absent'; exit 0; fi");
    // Root runs this venv's python: it, its parent and its top levels must be root's and not group/world writable.
    s.raw("u=$(" + Cmd("find").arg(parent).arg(t.venv).arg("-maxdepth").arg("0").arg("(").arg("!").arg("-user").arg("root")
                       .arg("-o").arg("-perm").arg("/022").arg("-o").arg("-type").arg("l").arg(")").arg("-print").str() +
          "; " + Cmd("find").arg(t.venv).arg("-mindepth").arg("1").arg("-maxdepth").arg("4").arg("!").arg("-type").arg("l")
                     .arg("(").arg("!").arg("-user").arg("root").arg("-o").arg("-perm").arg("/022").arg(")").arg("-print").str() +
          " 2>/dev/null | head -n 1)");
    s.raw("if [ -n \"$u\" ]; then printf 'venv unsafe %s\\n' \"$u\" | head -c 300; exit 0; fi");
    s.raw("[ -x " + ShellQuote(t.venv + "/bin/python") + " ] || { echo 'venv notvenv'; exit 0; }");
    s.raw("echo 'venv ok'");
  }
  s.raw("{ " + Cmd("env").arg("PIP_DISABLE_PIP_VERSION_CHECK=1").arg("PIP_NO_INPUT=1").arg(Python(t)).arg("-m").arg("pip")
                   .arg("list").arg("--format").arg("json").str() +
        " 2>/dev/null; echo \"pip-exit=$?\"; } | head -c " + std::to_string(kMaxPipListBytes));
  return {"pip:" + (t.venv.empty() ? std::string("system") : t.venv), s.str()};
}

class PipModule : public Module {
 public:
  std::string name() const override { return "pip"; }
  // After packages (5: python3-pip, python3-venv) and nvidia (6).
  int order() const override { return 7; }
  std::vector<std::string> settings_keys() const override { return {"pip"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    nlohmann::json entry = Closed(kEntryKeys,
                                  {{"venv", Scalar("absolute path of a virtual environment")},
                                   {"packages", Strings()},
                                   {"find_links", Scalar("directory or URL of wheels")},
                                   {"index", Boolean()}},
                                  "pip packages of one target");
    return nlohmann::json{{"type", "array"},
                          {"items", OneOf({Scalar("NAME==VERSION (system-wide)"), entry}, "a requirement or a target")},
                          {"description", "pip packages at exact versions"}};
  }

  void validate(const Inventory& inv, Findings& f) const override {
    ForEachSettingsLayer(inv, [&](const Value& settings) {
      if (const Value* v = settings.find("pip")) ParsePip(*v, &f);
    });
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    const Value* v = ctx.settings.find("pip");
    if (!v) return out;
    std::string mirror = PipMirror(ctx.settings);
    for (const auto& t : ParsePip(*v, nullptr).targets)
      out.push_back({name(), "pip:" + (t.venv.empty() ? std::string("system") : t.venv), t.where,
                     std::make_shared<PipResource>(PipResource{t, mirror})});
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    for (const auto& r : rs) out.push_back(PipProbe(r.as<PipResource>().target));
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    const PipResource& pr = r.as<PipResource>();
    const PipTarget& t = pr.target;
    const std::string what = t.venv.empty() ? std::string("system-wide") : "venv " + t.venv;
    const ProbeOutput* o = FindProbe(results, PipProbe(t).key);
    if (!o) return Failure("pip " + what + ": no probe output");
    // No python3 (127) or no pip yet: packages (order 5) may install python3-pip / python3-venv in this same
    // apply, so the install is planned; if they are still missing then, it fails with pip's or python's message.
    std::string missing;
    if (o->exit_code == 127) missing = "python3 is not installed yet";
    else if (o->exit_code != 0) return Failure("pip " + what + ": the probe failed (exit " + std::to_string(o->exit_code) + ")");
    auto lines = SplitLines(o->out);
    std::string head = lines.empty() ? "" : lines[0];
    bool create = false;
    if (!missing.empty()) {
      create = !t.venv.empty();
    } else if (head == "venv absent") {
      create = true;
    } else if (head.rfind("venv unsafe ", 0) == 0) {
      return Failure("pip " + what + ": " + EscapeControls(head.substr(12)) +
                     " is not root's alone (owned by another user, group/world writable, or a link); labfleet will not "
                     "run that venv's python as root. Fix its ownership or choose another path");
    } else if (head == "venv notvenv") {
      return Failure("pip " + what + ": the path exists but is not a virtual environment (no bin/python); remove it or "
                     "choose another path");
    } else if (head != "venv ok" && head != "system") {
      return Failure("pip " + what + ": probe output not understood");
    }
    PipList installed;
    if (!create && missing.empty()) {
      std::string exit_line;
      for (auto it = lines.rbegin(); it != lines.rend(); ++it)
        if (!it->empty()) {
          exit_line = *it;
          break;
        }
      if (exit_line.rfind("pip-exit=", 0) != 0)
        return Failure("pip " + what + ": `pip list` printed more than " + std::to_string(kMaxPipListBytes) + " bytes");
      if (exit_line != "pip-exit=0") {
        missing = "`" + Python(t) + " -m pip list` failed (" + exit_line + "): pip is not installed yet?";
      } else {
        installed = ParsePipList(o->out);
        if (!installed.ok) return Failure("pip " + what + ": `pip list --format json` printed no JSON list");
      }
    }
    std::vector<std::string> install, why;
    for (const auto& q : t.reqs) {
      auto it = installed.version.find(PipCanonicalName(q.name));
      if (it != installed.version.end() && PipVersionEqual(it->second, q.version)) continue;
      install.push_back(q.name + "==" + q.version);
      why.push_back(q.name + ": " + (it == installed.version.end() ? std::string("not installed") : it->second + " installed"));
    }
    if (!create && install.empty())
      return Noop("nothing to do because " + what + " has " +
                  (t.reqs.size() == 1 ? std::string("its package") : "all " + std::to_string(t.reqs.size()) + " packages") +
                  " at the listed versions");
    Change c;
    c.sign = create ? '+' : '~';
    c.summary = "pip " + what + ": " + (create ? "create the venv, " : std::string()) + "install " + Join(install, ", ");
    c.reason = !missing.empty() ? missing : create ? "the venv does not exist" : Join(why, "; ");
    Script s;
    if (create) s.add(Cmd("python3").arg("-m").arg("venv").arg("--").arg(t.venv));
    Cmd pip("env");
    pip.arg("PIP_DISABLE_PIP_VERSION_CHECK=1").arg("PIP_NO_INPUT=1").arg("PIP_ROOT_USER_ACTION=ignore");
    if (t.venv.empty()) pip.arg("PIP_BREAK_SYSTEM_PACKAGES=1");  // PEP 668: see the header
    pip.arg(Python(t)).arg("-m").arg("pip").arg("install").arg("-q");
    if (!t.index) pip.arg("--no-index");
    else if (!pr.mirror.empty()) {
      pip.arg("--index-url").arg(pr.mirror);
      if (pr.mirror.rfind("http://", 0) == 0) {
        std::string host = pr.mirror.substr(7);
        host = host.substr(0, host.find_first_of(":/"));
        pip.arg("--trusted-host").arg(host);
      }
    }
    if (!t.find_links.empty()) pip.arg("--find-links").arg(t.find_links);
    pip.arg("--").args(install);
    s.add(pip);
    c.command = s.str();
    DiffResult d;
    d.changes.push_back(std::move(c));
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<PipModule>());

}  // namespace
}  // namespace labfleet
