// services: systemd units and boot settings.
//
//   services:
//     cachefilesd:                        # ".service" is implied when the name has no unit suffix
//       enabled: true                     # systemctl enable / disable
//       state: running                    # running | stopped: systemctl start / stop
//       masked: false                     # true: systemctl mask --now (and nothing else)
//       config:                           # files whose change restarts (or reloads) the unit, once per run
//         - { path: /etc/cachefilesd.conf, template: cachefilesd.conf.mustache, mode: "0644" }
//       unit: |                           # /etc/systemd/system/UNIT, checked with `systemd-analyze verify` on
//         [Service]                       #   the node before it is installed (daemon-reload, restart); so is a
//                                         #   config: file that is a unit file in a unit directory
//         ExecStart=/usr/sbin/cachefilesd -n
//       dropin: |                         # /etc/systemd/system/UNIT.d/labfleet.conf (daemon-reload, restart)
//         [Service]
//         Nice=5
//       on_change: restart                # restart | reload | none
//       disruptive: false                 # true: stopping/restarting it kills work (deferred on busy nodes)
//   default_target: multi-user.target     # systemctl set-default
//   disable_wait_online: true             # systemd-networkd-wait-online, NetworkManager-wait-online disabled
//   kernel_args: [pci=realloc]            # GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, then update-grub
//   sysctl: { vm.swappiness: 10 }         # /etc/sysctl.d/90-labfleet.conf, then sysctl -p on it
//
// One `systemctl show` probe covers every unit of the node. Restarts and reloads are Notify handlers: run once
// per node after all changes, only when something they depend on changed. Unit text (`unit:`, `dropin:`, a
// `config:` file below a systemd unit directory) that changes notifies "systemd daemon-reload" (one handler per
// apply, shared with timers:; in the plan once, by the first changed unit text), notified before any restart; a start of a unit whose text changed is a handler
// too ("start UNIT"), so the unit starts on the reloaded text.
#include <map>
#include <set>

#include "modules/facts/accounts.h"
#include <nlohmann/json.hpp>

#include "engine/schema.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "engine/node_vars.h"
#include "engine/settings_layers.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "modules/facts/systemd_facts.h"
#include "engine/text.h"

namespace labfleet {
namespace {

const std::vector<std::string> kServiceKeys = {"enabled", "state",     "masked",     "config", "unit",
                                               "dropin",  "on_change", "disruptive"};
const std::vector<std::string> kConfigKeys = {"path", "content", "source", "template", "mode", "owner", "group"};
const std::vector<std::string> kWaitOnline = {"systemd-networkd-wait-online.service",
                                              "NetworkManager-wait-online.service"};
const char* kSysctlFile = "/etc/sysctl.d/90-labfleet.conf";
const char* kGrubDefault = "/etc/default/grub";

struct ConfigFile {
  std::string path, content, source, tmpl, owner = "root", group = "root";
  unsigned mode = 0644;
  bool has_content = false;
  Location where;
};

struct ServiceWant {
  std::string unit;  // with suffix
  Location where;
  std::optional<bool> enabled, masked;
  std::string state;  // "" | running | stopped
  std::vector<ConfigFile> config;
  std::optional<std::string> unit_text;  // the unit file /etc/systemd/system/UNIT
  std::optional<std::string> dropin;
  std::string on_change = "restart";
  bool disruptive = false;
};

struct ConfigRes {  // a config file, the drop-in or the unit file of a unit
  std::shared_ptr<const ServiceWant> svc;
  ConfigFile file;
  bool dropin = false;
  bool unit_file = false;
};

struct KernelArgs {
  std::vector<std::string> args;
};
struct Sysctl {
  std::vector<std::pair<std::string, std::string>> values;
};
struct DefaultTarget {
  std::string target;
};
struct WaitOnline {};

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

std::string DropinPath(const std::string& unit) { return "/etc/systemd/system/" + unit + ".d/labfleet.conf"; }
std::string UnitPath(const std::string& unit) { return "/etc/systemd/system/" + unit; }

std::optional<ConfigFile> ParseConfig(const Value& v, const std::string& unit, Findings& f) {
  MapReader r(v, "a config file of service " + unit, v.loc(), f, kConfigKeys);
  if (!r.is_map()) return std::nullopt;
  ConfigFile c;
  c.where = v.loc();
  bool ok = true;
  if (auto p = r.str("path")) c.path = *p;
  if (PathResult pr = NormalizeAbsolutePath(c.path); pr.error) {
    if (c.path.empty() || pr.error->code == "path-not-absolute")
      f.error(v.loc(), "file-path", "a config file of service " + unit + " needs an absolute 'path'");
    else
      f.error(r.get("path")->loc(), pr.error->code, "config file path " + Quoted(c.path) + " " + pr.error->what);
    ok = false;
  } else {
    c.path = pr.path;
  }
  for (const char* k : {"owner", "group", "source", "template"}) {
    auto s = r.str(k);
    if (!s) continue;
    SyntaxResult e = std::string_view(k) == "owner" || std::string_view(k) == "group" ? CheckOwnerName(*s)
                                                                                        : CheckNoControl(*s);
    if (Report(f, r.get(k)->loc(), std::string(k) + " " + Quoted(*s) + " of config file " + c.path, e)) ok = false;
  }
  if (auto s = r.str("content")) c.content = *s, c.has_content = true;
  if (auto s = r.str("source")) c.source = *s;
  if (auto s = r.str("template")) c.tmpl = *s;
  if (auto s = r.str("owner")) c.owner = *s;
  if (auto s = r.str("group")) c.group = *s;
  if (auto s = r.str("mode")) {
    char* end = nullptr;
    unsigned long m = strtoul(s->c_str(), &end, 8);
    if (s->size() < 3 || *end || m > 07777) {
      f.error(r.get("mode")->loc(), "file-mode", "mode '" + *s + "' is not an octal file mode; write it quoted, like \"0644\"");
      ok = false;
    } else {
      c.mode = unsigned(m);
    }
  }
  if (int(c.has_content) + int(!c.source.empty()) + int(!c.tmpl.empty()) != 1) {
    f.error(v.loc(), "file-source", "config file " + c.path + " needs exactly one of 'content', 'source' or 'template'");
    ok = false;
  }
  if (!ok) return std::nullopt;
  return c;
}

// `services:` (one layer or merged). Findings to `f`; invalid entries are left out.
std::vector<ServiceWant> ParseServices(const Value& v, Findings* fp) {
  Findings scratch;
  Findings& f = fp ? *fp : scratch;
  std::vector<ServiceWant> out;
  if (v.is_null()) return out;
  if (!v.is_map()) {
    f.error(v.loc(), "wrong-type", "services must be a map { unit: { enabled, state, masked } }, got " + DescribeValue(v));
    return out;
  }
  std::set<std::string> units;
  for (const auto& e : v.entries()) {
    std::string unit = UnitName(e.key);
    if (!IsUnitName(unit)) {
      f.error(e.key_loc, "service-name", "'" + e.key + "' is not a systemd unit name");
      continue;
    }
    if (!units.insert(unit).second) {
      f.error(e.key_loc, "service-duplicate", "unit " + unit + " is listed twice under services");
      continue;
    }
    MapReader r(e.value, "service " + e.key, e.key_loc, f, kServiceKeys);
    if (!r.is_map()) continue;
    ServiceWant w;
    w.unit = unit;
    w.where = e.key_loc;
    w.enabled = r.boolean("enabled");
    w.masked = r.boolean("masked");
    if (auto s = r.one_of("state", {"running", "stopped"})) w.state = *s;
    if (auto s = r.one_of("on_change", {"restart", "reload", "none"})) w.on_change = *s;
    if (auto b = r.boolean("disruptive")) w.disruptive = *b;
    if (auto s = r.str("dropin")) w.dropin = *s;
    if (auto s = r.str("unit")) w.unit_text = *s;
    if (w.masked.value_or(false) && (w.enabled.value_or(false) || w.state == "running")) {
      f.error(e.key_loc, "service-masked", "service " + e.key + " cannot be masked and enabled or running at once");
      continue;
    }
    if (w.masked.value_or(false) && w.unit_text) {
      f.error(r.key_loc("unit"), "service-masked",
              "service " + e.key + " cannot be masked and have a unit file (masking links " + UnitPath(unit) +
                  " to /dev/null); drop 'unit' or 'masked'");
      continue;
    }
    if (const Value* cfg = r.seq("config"))
      for (const auto& item : cfg->items())
        if (auto c = ParseConfig(item, unit, f)) w.config.push_back(*c);
    out.push_back(std::move(w));
  }
  return out;
}

std::optional<KernelArgs> ParseKernelArgs(const Value& v, Findings* fp) {
  Findings scratch;
  Findings& f = fp ? *fp : scratch;
  if (!v.is_seq()) {
    f.error(v.loc(), "wrong-type", "kernel_args must be a list like [pci=realloc], got " + DescribeValue(v));
    return std::nullopt;
  }
  KernelArgs k;
  bool ok = true;
  for (const auto& item : v.items()) {
    if (!item.is_scalar() || !IsKernelArg(item.str())) {
      f.error(item.loc(), "kernel-arg",
              "kernel argument " + DescribeValue(item) +
                  " must be one word of letters, digits and _.,:=/+@- (no blanks or quotes)");
      ok = false;
      continue;
    }
    if (std::find(k.args.begin(), k.args.end(), item.str()) != k.args.end()) {
      f.error(item.loc(), "kernel-arg", "kernel argument " + item.str() + " is listed twice");
      ok = false;
      continue;
    }
    k.args.push_back(item.str());
  }
  if (!ok) return std::nullopt;
  return k;
}

std::optional<Sysctl> ParseSysctl(const Value& v, Findings* fp) {
  Findings scratch;
  Findings& f = fp ? *fp : scratch;
  if (!v.is_map()) {
    f.error(v.loc(), "wrong-type", "sysctl must be a map { key: value }, got " + DescribeValue(v));
    return std::nullopt;
  }
  Sysctl s;
  bool ok = true;
  for (const auto& e : v.entries()) {
    if (!IsSysctlKey(e.key)) {
      f.error(e.key_loc, "sysctl-key", "'" + e.key + "' is not a sysctl key (like vm.swappiness)");
      ok = false;
      continue;
    }
    if (!e.value.is_scalar() || e.value.str().empty() || FindControl(e.value.str()) != std::string::npos) {
      f.error(e.value.loc().known() ? e.value.loc() : e.key_loc, "sysctl-value",
              "the value of sysctl " + e.key + " must be one line of text or a number, got " + DescribeValue(e.value));
      ok = false;
      continue;
    }
    s.values.emplace_back(e.key, e.value.str());
  }
  if (!ok) return std::nullopt;
  return s;
}

std::optional<std::string> ParseTarget(const Value& v, Findings* fp) {
  Findings scratch;
  Findings& f = fp ? *fp : scratch;
  if (!v.is_scalar() || !IsUnitName(v.str()) || v.str().size() < 8 ||
      v.str().compare(v.str().size() - 7, 7, ".target") != 0) {
    f.error(v.loc(), "default-target", "default_target must be a target unit like multi-user.target, got " + DescribeValue(v));
    return std::nullopt;
  }
  return v.str();
}

// Every unit the node's services settings look at, in a stable order (the batched probe's arguments).
std::vector<std::string> AllUnits(const Value& settings) {
  std::vector<std::string> units;
  if (const Value* s = settings.find("services"))
    for (const auto& w : ParseServices(*s, nullptr)) units.push_back(w.unit);
  if (const Value* w = settings.find("disable_wait_online"); w && w->as_bool().value_or(false))
    for (const auto& u : kWaitOnline)
      if (std::find(units.begin(), units.end(), u) == units.end()) units.push_back(u);
  return units;
}

class ServicesModule : public Module {
 public:
  std::string name() const override { return "services"; }
  // After the configuration modules (files 50, docker/sshd 70, mounts 75): units start with their config in place.
  int order() const override { return 85; }
  std::vector<std::string> settings_keys() const override {
    return {"services", "default_target", "disable_wait_online", "kernel_args", "sysctl"};
  }
  nlohmann::json settings_schema(const std::string& key) const override {
    using namespace schema;
    if (key == "services")
      return MapOf(Closed(kServiceKeys,
                          {{"enabled", Boolean()},
                           {"state", Enum({"running", "stopped"})},
                           {"masked", Boolean()},
                           {"config", ListOf(Closed(kConfigKeys))},
                           {"unit", Scalar("the unit file's text")},
                           {"dropin", Scalar()},
                           {"on_change", Enum({"restart", "reload", "none"})},
                           {"disruptive", Boolean()}}),
                   "systemd unit -> settings");
    if (key == "default_target") return Scalar("a .target unit");
    if (key == "disable_wait_online") return Boolean();
    if (key == "kernel_args") return Strings("GRUB_CMDLINE_LINUX_DEFAULT words");
    return MapOf(Scalar(), "sysctl key: value");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    auto layer = [&](const Value& s) {
      if (const Value* v = s.find("services")) {
        for (const auto& w : ParseServices(*v, &f))
          for (const auto& c : w.config)
            if (!c.source.empty() && !(inv.read_file && inv.read_file(c.source))) {
              std::string why = inv.refusal ? inv.refusal(c.source, "") : "";
              if (why.empty())
                f.error(c.where, "file-source-missing", "source file '" + c.source + "' not found (relative to the inventory directory)");
              else
                f.error(c.where, "file-source-refused", "source file " + why);
            } else if (!c.tmpl.empty() && !ReadTemplate(inv, c.tmpl)) {
              if (std::string why = TemplateRefusal(inv, c.tmpl); !why.empty())
                f.error(c.where, "template-refused", "template " + why);
              else
                f.error(c.where, "template-missing", "template '" + c.tmpl + "' not found in " + TemplateSearchText(inv));
            }
      }
      if (const Value* v = s.find("default_target"); v && !v->is_null()) ParseTarget(*v, &f);
      if (const Value* v = s.find("disable_wait_online"); v && !v->is_null() && !v->as_bool())
        f.error(v->loc(), "wrong-type", "disable_wait_online must be true or false, got " + DescribeValue(*v));
      if (const Value* v = s.find("kernel_args"); v && !v->is_null()) ParseKernelArgs(*v, &f);
      if (const Value* v = s.find("sysctl"); v && !v->is_null()) ParseSysctl(*v, &f);
    };
    ForEachSettingsLayer(inv, layer);
    // Per node: a config file must have one owner (another service, or the files module).
    std::set<std::string> reported;
    for (const auto& n : inv.nodes) {
      Value settings = inv.settings(n);
      const Value* sv = settings.find("services");
      if (!sv) continue;
      std::map<std::string, std::string> owner;
      if (const Value* files = settings.find("files"); files && files->is_seq())
        for (const auto& item : files->items())
          if (const Value* p = item.find("path"); p && p->is_scalar()) owner[p->str()] = "files:";
      for (const auto& w : ParseServices(*sv, nullptr))
        for (const auto& c : w.config) {
          auto [it, fresh] = owner.emplace(c.path, "services." + w.unit + ".config");
          if (!fresh && reported.insert(c.path + "@" + c.where.str()).second)
            f.error(c.where, "file-duplicate",
                    "file " + c.path + " is managed twice on node " + n.name + " (also by " + it->second + ")");
        }
    }
  }

  // Not the `config` files: they are the inventory's own entries (file-duplicate compares them with files:).
  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    std::vector<OwnedFile> out;
    if (const Value* s = ctx.settings.find("services"))
      for (const auto& w : ParseServices(*s, nullptr)) {
        if (w.dropin) out.push_back({DropinPath(w.unit), "services." + w.unit + ".dropin"});
        if (w.unit_text) out.push_back({UnitPath(w.unit), "services." + w.unit + ".unit"});
      }
    if (const Value* v = ctx.settings.find("kernel_args"); v && !v->is_null()) out.push_back({kGrubDefault, "kernel_args:"});
    if (const Value* v = ctx.settings.find("sysctl"); v && !v->is_null()) out.push_back({kSysctlFile, "sysctl:"});
    return out;
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    std::vector<std::shared_ptr<const ServiceWant>> svcs;
    if (const Value* s = ctx.settings.find("services"))
      for (auto& w : ParseServices(*s, nullptr)) svcs.push_back(std::make_shared<ServiceWant>(std::move(w)));
    // Unit files and drop-ins first (their daemon-reload handler must be notified before any restart), then
    // config files, then the units themselves.
    for (const auto& w : svcs)
      if (w->unit_text) {
        ConfigFile c;
        c.path = UnitPath(w->unit);
        c.content = *w->unit_text;
        c.has_content = true;
        c.where = w->where;
        out.push_back({name(), "service-unit:" + w->unit, w->where,
                       std::make_shared<ConfigRes>(ConfigRes{w, c, false, true})});
      }
    for (const auto& w : svcs)
      if (w->dropin) {
        ConfigFile c;
        c.path = DropinPath(w->unit);
        c.content = *w->dropin;
        c.has_content = true;
        c.where = w->where;
        out.push_back({name(), "service-dropin:" + w->unit, w->where, std::make_shared<ConfigRes>(ConfigRes{w, c, true})});
      }
    for (const auto& w : svcs)
      for (const auto& c : w->config)
        out.push_back({name(), "service-config:" + c.path, c.where, std::make_shared<ConfigRes>(ConfigRes{w, c, false})});
    for (const auto& w : svcs) out.push_back({name(), "service:" + w->unit, w->where, w});
    if (const Value* v = ctx.settings.find("default_target"); v && !v->is_null())
      if (auto t = ParseTarget(*v, nullptr)) out.push_back({name(), "default-target", v->loc(), std::make_shared<DefaultTarget>(DefaultTarget{*t})});
    if (const Value* v = ctx.settings.find("disable_wait_online"); v && v->as_bool().value_or(false))
      out.push_back({name(), "wait-online", v->loc(), std::make_shared<WaitOnline>()});
    if (const Value* v = ctx.settings.find("kernel_args"); v && !v->is_null())
      if (auto k = ParseKernelArgs(*v, nullptr)) out.push_back({name(), "kernel-args", v->loc(), std::make_shared<KernelArgs>(*k)});
    if (const Value* v = ctx.settings.find("sysctl"); v && !v->is_null())
      if (auto s = ParseSysctl(*v, nullptr)) out.push_back({name(), "sysctl", v->loc(), std::make_shared<Sysctl>(*s)});
    return out;
  }

  std::vector<Probe> probes(const NodeContext& ctx, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    auto units = AllUnits(ctx.settings);
    if (!units.empty()) out.push_back(SystemctlShowProbe(units));
    for (const auto& r : rs) {
      if (r.id.rfind("service-dropin:", 0) == 0 || r.id.rfind("service-config:", 0) == 0 ||
          r.id.rfind("service-unit:", 0) == 0)
        out.push_back(FileProbe(r.as<ConfigRes>().file.path));
      else if (r.id == "default-target")
        out.push_back(SystemctlGetDefaultProbe());
      else if (r.id == "kernel-args") {
        out.push_back(FileProbe(kGrubDefault));
        out.push_back({"proc-cmdline", "cat /proc/cmdline"});
      } else if (r.id == "sysctl")
        out.push_back(FileProbe(kSysctlFile));
    }
    return out;
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    if (r.id.rfind("service-dropin:", 0) == 0 || r.id.rfind("service-config:", 0) == 0 ||
        r.id.rfind("service-unit:", 0) == 0)
      return DiffConfig(ctx, r.as<ConfigRes>(), results);
    if (r.id.rfind("service:", 0) == 0) return DiffService(ctx, r.as<ServiceWant>(), results);
    if (r.id == "default-target") return DiffTarget(r.as<DefaultTarget>(), results);
    if (r.id == "wait-online") return DiffWaitOnline(ctx, results);
    if (r.id == "kernel-args") return DiffKernelArgs(r.as<KernelArgs>(), results);
    if (r.id == "sysctl") return DiffSysctl(r.as<Sysctl>(), results);
    return Failure("unknown resource " + r.id);
  }

 private:
  struct Units {
    SystemctlShow show;
    std::vector<std::string> asked;
    const ProbeOutput* probe = nullptr;
  };
  static Units LiveUnits(const NodeContext& ctx, const ProbeResults& results) {
    Units u;
    u.asked = AllUnits(ctx.settings);
    u.probe = FindProbe(results, SystemctlShowProbe(u.asked).key);
    if (u.probe) u.show = ParseSystemctlShow(u.probe->out);
    return u;
  }
  static std::string NoUnitInfo(const Units& u, const std::string& unit) {
    return "systemctl show printed nothing for " + unit +
           (u.probe ? " (exit " + std::to_string(u.probe->exit_code) + ")" : "") +
           "; is systemd running on this node?";
  }

  static DiffResult DiffService(const NodeContext& ctx, const ServiceWant& w, const ProbeResults& results) {
    Units live = LiveUnits(ctx, results);
    const UnitState* u = live.show.find(live.asked, w.unit);
    if (!u) return Failure(NoUnitInfo(live, w.unit));
    std::vector<std::string> actions;
    Script s;
    bool stop = false, start_after_reload = false;
    std::string note;
    if (w.masked.value_or(false)) {
      if (!u->masked()) {
        actions.push_back(u->active() ? "mask, stop" : "mask");
        s.add(Cmd("systemctl").arg("mask").arg("--now").arg(w.unit));
        stop = u->active();
      }
    } else {
      bool unmasking = u->masked() && (w.masked.has_value() || w.enabled.has_value() || !w.state.empty());
      if (unmasking) {
        actions.push_back("unmask");
        s.add(Cmd("systemctl").arg("unmask").arg(w.unit));
      }
      if (w.enabled == true) {
        if (unmasking || !u->found() || (!u->enabled() && !u->enable_not_applicable())) {
          actions.push_back("enable");
          s.add(Cmd("systemctl").arg("enable").arg(w.unit));
        } else if (u->enable_not_applicable()) {
          note = " (" + u->unit_file_state + ": enable does not apply)";
        }
      } else if (w.enabled == false) {
        if (u->enabled() || (unmasking && u->found())) {
          actions.push_back("disable");
          s.add(Cmd("systemctl").arg("disable").arg(w.unit));
        }
      }
      if (w.state == "running" && (unmasking || !u->active())) {
        if (UnitTextChanges(ctx, w, results)) {
          // Started by a handler after the daemon-reload, on the new text (the reload is notified first).
          start_after_reload = true;
        } else {
          actions.push_back(u->active_state == "failed" ? "start (was failed)" : "start");
          s.add(Cmd("systemctl").arg("start").arg(w.unit));
        }
      } else if (w.state == "stopped" && u->active()) {
        actions.push_back("stop");
        s.add(Cmd("systemctl").arg("stop").arg(w.unit));
        stop = true;
      }
    }
    DiffResult d;
    if (start_after_reload)
      d.changes.push_back(NotifyChange("start " + w.unit, Cmd("systemctl").arg("start").arg(w.unit).str(),
                                       "start " + w.unit + " (after daemon-reload)",
                                       "its unit text changed in this apply; live: " +
                                           (u->active_state.empty() ? std::string("unknown") : u->active_state)));
    if (actions.empty()) {
      if (start_after_reload) return d;
      std::string state = u->masked() ? "masked" : u->unit_file_state.empty() ? u->load_state : u->unit_file_state;
      return Noop("nothing to do because " + w.unit + " is " + state + " and " + u->active_state +
                  (u->sub_state.empty() ? "" : " (" + u->sub_state + ")") + note);
    }
    Change c;
    c.sign = w.masked.value_or(false) || stop ? '-' : '~';
    c.summary = "service " + w.unit + " (" + Join(actions, ", ") + ")";
    c.reason = "live: " + (u->found() ? (u->masked() ? std::string("masked") : u->unit_file_state) : "not loaded yet") +
               ", " + (u->active_state.empty() ? "unknown" : u->active_state) +
               (u->found() ? "" : " (installed by an earlier change? enabling fails if the unit still does not exist)");
    c.command = s.str();
    c.disruptive = stop && w.disruptive;
    d.changes.insert(d.changes.begin(), std::move(c));
    return d;
  }

  // The bytes a config file should hold; nullopt with `error` set when they cannot be made.
  static std::optional<std::string> Bytes(const NodeContext& ctx, const ConfigFile& c, std::string* error) {
    if (c.has_content) return c.content;
    if (!c.source.empty()) {
      auto text = ctx.inv.read_file ? ctx.inv.read_file(c.source) : std::nullopt;
      if (!text && error) *error = "source file '" + c.source + "' not found in the inventory repository";
      return text;
    }
    try {
      return RenderForNode(ctx.inv, ctx.node, ctx.settings, c.tmpl);
    } catch (const std::exception& e) {
      if (error) *error = e.what();
      return std::nullopt;
    }
  }
  static bool ContentChanges(const NodeContext& ctx, const ConfigFile& c, const ProbeResults& results) {
    auto bytes = Bytes(ctx, c, nullptr);
    FileState live = ParseFileProbe(results, c.path);
    return bytes && (!live.exists || !live.regular || live.content != *bytes);
  }
  static ConfigFile UnitFileOf(const ServiceWant& w) {
    ConfigFile c;
    c.path = UnitPath(w.unit);
    c.content = w.unit_text.value_or("");
    c.has_content = true;
    return c;
  }
  // The path of the first unit text of the node (in resource order: unit files, drop-ins, config files below a
  // unit directory) that this apply changes; "" when none.
  static std::string FirstChangedUnitText(const NodeContext& ctx, const ProbeResults& results) {
    const Value* sv = ctx.settings.find("services");
    if (!sv) return "";
    auto svcs = ParseServices(*sv, nullptr);
    for (const auto& w : svcs)
      if (w.unit_text && ContentChanges(ctx, UnitFileOf(w), results)) return UnitPath(w.unit);
    for (const auto& w : svcs)
      if (w.dropin) {
        ConfigFile d;
        d.path = DropinPath(w.unit);
        d.content = *w.dropin;
        d.has_content = true;
        if (ContentChanges(ctx, d, results)) return d.path;
      }
    for (const auto& w : svcs)
      for (const auto& c : w.config)
        if (IsUnitTextPath(c.path) && ContentChanges(ctx, c, results)) return c.path;
    return "";
  }
  // Whether this apply changes the unit's own text (unit file, drop-in, a config file that is unit text).
  static bool UnitTextChanges(const NodeContext& ctx, const ServiceWant& w, const ProbeResults& results) {
    if (w.unit_text && ContentChanges(ctx, UnitFileOf(w), results)) return true;
    if (w.dropin) {
      ConfigFile d;
      d.path = DropinPath(w.unit);
      d.content = *w.dropin;
      d.has_content = true;
      if (ContentChanges(ctx, d, results)) return true;
    }
    for (const auto& c : w.config)
      if (IsUnitTextPath(c.path) && ContentChanges(ctx, c, results)) return true;
    return false;
  }

  static DiffResult DiffConfig(const NodeContext& ctx, const ConfigRes& cr, const ProbeResults& results) {
    const ConfigFile& c = cr.file;
    const ServiceWant& w = *cr.svc;
    std::string error;
    auto bytes = Bytes(ctx, c, &error);
    if (!bytes) return Failure(error);
    FileSpec want{c.path, *bytes, c.mode, c.owner, c.group};
    std::string what = cr.unit_file ? "unit file " + c.path
                       : cr.dropin  ? "drop-in " + c.path
                                    : "config " + c.path + " of " + w.unit;
    DiffResult d = DiffFile(want, ParseFileProbe(results, c.path), what);
    bool content_changed = !d.changes.empty() && d.changes[0].kind == Change::Kind::PutFile;
    if (!content_changed) return d;
    bool unit_text = cr.dropin || cr.unit_file || IsUnitTextPath(c.path);
    // A unit file is verified on the node before it is put in place; a failing one is never installed.
    if (cr.unit_file) {
      d.changes[0].precheck = VerifyUnitPrecheck(w.unit, {});
    } else if (!cr.dropin && IsUnitTextPath(c.path) && c.path.find(".d/") == std::string::npos) {
      d.changes[0].precheck = VerifyUnitPrecheck(c.path.substr(c.path.rfind('/') + 1), {});  // a config: unit file
    }
    // One reload in the plan: notified by the node's first changed unit text (the executor runs it once anyway).
    if (unit_text && FirstChangedUnitText(ctx, results) == c.path)
      d.changes.push_back(NotifyChange("systemd daemon-reload", "systemctl daemon-reload", "systemctl daemon-reload",
                                       "unit text " + c.path + " changed"));
    // Restart/reload only a unit that runs now and stays running: a stopped one reads its config when it
    // starts (a start planned in this run comes after this file).
    Units live = LiveUnits(ctx, results);
    const UnitState* u = live.show.find(live.asked, w.unit);
    bool running = u && u->active() && !u->masked();
    // One restart per unit in the plan: the unit's first changed file (drop-in, then config files in order)
    // notifies it; the executor would run a handler once anyway, this keeps the plan readable.
    bool earlier = false;
    if (!cr.unit_file && w.unit_text) earlier |= ContentChanges(ctx, UnitFileOf(w), results);
    if (!cr.dropin && !cr.unit_file) {
      if (w.dropin) {
        ConfigFile d;
        d.path = DropinPath(w.unit);
        d.content = *w.dropin;
        d.has_content = true;
        earlier |= ContentChanges(ctx, d, results);
      }
      for (const auto& other : w.config) {
        if (other.path == c.path) break;
        earlier |= ContentChanges(ctx, other, results);
      }
    }
    if (!earlier && w.on_change != "none" && running && w.state != "stopped" && !w.masked.value_or(false)) {
      std::string verb = w.on_change == "reload" && !unit_text ? "reload" : "restart";
      d.changes.push_back(NotifyChange(verb + " " + w.unit, Cmd("systemctl").arg(verb).arg(w.unit).str(),
                                       verb + " " + w.unit, c.path + " changed", w.disruptive));
    }
    return d;
  }

  static DiffResult DiffTarget(const DefaultTarget& t, const ProbeResults& results) {
    const ProbeOutput* p = FindProbe(results, "systemctl-get-default");
    std::string live = p ? Trim(p->out) : "";
    if (p && p->exit_code == 0 && live == t.target) return Noop("nothing to do because the default target is " + live);
    Change c;
    c.summary = "default target " + (live.empty() ? std::string("(unknown)") : live) + " -> " + t.target;
    c.reason = p && p->exit_code != 0 ? "systemctl get-default failed (exit " + std::to_string(p->exit_code) + ")"
                                      : "default target differs; takes effect at the next boot";
    c.command = Cmd("systemctl").arg("set-default").arg(t.target).str();
    DiffResult d;
    d.changes.push_back(std::move(c));
    return d;
  }

  static DiffResult DiffWaitOnline(const NodeContext& ctx, const ProbeResults& results) {
    Units live = LiveUnits(ctx, results);
    std::vector<std::string> disable, present;
    for (const auto& unit : kWaitOnline) {
      const UnitState* u = live.show.find(live.asked, unit);
      if (!u) return Failure(NoUnitInfo(live, unit));
      if (!u->found()) continue;
      present.push_back(unit);
      if (u->enabled()) disable.push_back(unit);
    }
    if (disable.empty())
      return Noop(present.empty() ? "nothing to do because no *-wait-online service is installed"
                                  : "nothing to do because " + Join(present, ", ") + " is not enabled");
    Change c;
    c.summary = "wait-online services disabled (" + Join(disable, ", ") + ")";
    c.reason = "disable_wait_online: true; boot does not wait for the network";
    c.command = Cmd("systemctl").arg("disable").args(disable).str();
    DiffResult d;
    d.changes.push_back(std::move(c));
    return d;
  }

  static DiffResult DiffKernelArgs(const KernelArgs& k, const ProbeResults& results) {
    FileState live = ParseFileProbe(results, kGrubDefault);
    if (!live.exists || !live.regular)
      return Failure(std::string(kGrubDefault) + " not found: kernel_args needs GRUB on this node");
    if (auto refused = RefuseUnreadEdit(live, kGrubDefault)) return *refused;
    GrubEdit e = EditGrubCmdline(live.content, k.args);
    if (!e.error.empty()) return Failure(std::string(kGrubDefault) + ": " + e.error);
    const ProbeOutput* cmdline = FindProbe(results, "proc-cmdline");
    auto missing = MissingFromCmdline(cmdline ? cmdline->out : "", k.args);
    if (e.content == live.content) {
      DiffResult d = Noop("nothing to do because GRUB_CMDLINE_LINUX_DEFAULT has " +
                          (k.args.empty() ? std::string("no labfleet arguments") : Join(k.args, " ")) +
                          (missing.empty() ? "" : "; reboot pending: the running kernel lacks " + Join(missing, " ")));
      if (!missing.empty()) d.warnings.push_back("reboot pending: the running kernel lacks " + Join(missing, " "));
      return d;
    }
    FileSpec want{kGrubDefault, e.content, live.mode, live.owner, live.group};
    DiffResult d = DiffFile(want, live, std::string("kernel args in ") + kGrubDefault);
    std::vector<std::string> what;
    for (const auto& a : e.added) what.push_back("+" + a);
    for (const auto& a : e.removed) what.push_back("-" + a);
    if (!d.changes.empty()) {
      d.changes[0].summary = "kernel args " + Join(what, " ") + " in " + kGrubDefault + " (reboot needed)";
      d.changes[0].reason = "GRUB_CMDLINE_LINUX_DEFAULT differs from kernel_args; reboot needed for the new kernel command line";
    }
    d.changes.push_back(NotifyChange(
        "update-grub",
        "if command -v update-grub >/dev/null 2>&1; then update-grub; else grub-mkconfig -o /boot/grub/grub.cfg; fi",
        "update-grub (reboot needed for the new kernel command line)", "kernel_args changed"));
    return d;
  }

  static DiffResult DiffSysctl(const Sysctl& s, const ProbeResults& results) {
    FileSpec want{kSysctlFile, SysctlFile(s.values), 0644, "root", "root"};
    DiffResult d = DiffFile(want, ParseFileProbe(results, kSysctlFile), std::string("sysctl ") + kSysctlFile);
    if (!d.changes.empty() && d.changes[0].kind == Change::Kind::PutFile)
      d.changes.push_back(NotifyChange("sysctl apply", Cmd("sysctl").arg("-p").arg(kSysctlFile).str(),
                                       std::string("sysctl -p ") + kSysctlFile,
                                       "sysctl settings changed (a key dropped from the inventory keeps its value until reboot)"));
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<ServicesModule>());

}  // namespace
}  // namespace labfleet
