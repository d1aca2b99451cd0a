// automounts: autofs indirect maps (home directories mounted on first access, per user). Module `automounts`,
// order 77 (after mounts and exports, before services).
//
//   automounts:
//     - { mount: /home, map: { "*": "nas:/mnt/HDD/home/&" }, options: [fstype=nfs, vers=4.2, hard], timeout: 600 }
//     - { mount: /media/public, name: public, map: { datasets: "nas:/mnt/SSD/public/datasets" }, options: [ro] }
//
// Keys: mount (required: absolute, normalised, only [A-Za-z0-9._+@/-], not /), map (required: key -> location),
// options (mount options of every map entry, a list or one comma-separated string), timeout (seconds, the
// master map's --timeout), name (the files' name; default from mount: /media/public -> media-public).
//
// Files, per entry, labfleet's own (written whole, 0644 root:root):
//   /etc/auto.master.d/labfleet-NAME.autofs   "MOUNT /etc/auto.labfleet-NAME [--timeout=N]"
//   /etc/auto.labfleet-NAME                   "KEY [-OPTIONS] LOCATION" per map key, in inventory order
// Files named labfleet-*.autofs / auto.labfleet-* that no entry wants any more are removed.
// Map keys: "*" or [A-Za-z0-9._@-] words (not starting with '+', '-' or '.'); locations: HOST:/path (a host
// name or IPv4 address; path of [A-Za-z0-9._+@/-] and '&'), '&' (autofs's "the key") only in the "*" entry.
// Options: [A-Za-z0-9._=:+/-] words. Nothing a value holds can add a map line, a field or an option.
// Validate: a `mounts:` entry on the same target is an error (two mechanisms fighting over one directory).
//
// Apply: the autofs package (apt or pacman; left to `packages` when it lists autofs), the files, autofs.service
// enabled and started (left to `services` when it manages autofs), and `systemctl try-reload-or-restart
// autofs.service` as a handler when a map or master file changed (reload when running: autofs re-reads its
// maps on SIGHUP without unmounting anything in use). Each plan warns when /etc/auto.master exists but does not
// include /etc/auto.master.d (`+dir:/etc/auto.master.d`, Debian's default), since autofs would not read the
// files then.
#include <map>
#include <memory>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/file_probe.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"
#include "modules/facts/package_facts.h"
#include "modules/facts/systemd_facts.h"

namespace labfleet {

constexpr const char* kAutoMasterDir = "/etc/auto.master.d";
constexpr const char* kAutoMaster = "/etc/auto.master";
constexpr const char* kAutofsUnit = "autofs.service";

struct AutomountSpec {
  std::string name, mount;
  std::vector<std::pair<std::string, std::string>> map;  // key -> location, in inventory order
  std::vector<std::string> options;
  long long timeout = -1;
  Location where, mount_where;
  std::string master_path() const { return std::string(kAutoMasterDir) + "/labfleet-" + name + ".autofs"; }
  std::string map_path() const { return "/etc/auto.labfleet-" + name; }
};

// The two files of one entry.
std::string RenderAutoMaster(const AutomountSpec& a) {
  return "# Managed by labfleet (automounts: " + a.mount + "); changes here are overwritten.\n" + a.mount + " " +
         a.map_path() + (a.timeout >= 0 ? " --timeout=" + std::to_string(a.timeout) : std::string()) + "\n";
}
std::string RenderAutoMap(const AutomountSpec& a) {
  std::string s = "# Managed by labfleet (automounts: " + a.mount + "); changes here are overwritten.\n";
  std::string opts = a.options.empty() ? "" : " -" + Join(a.options, ",");
  for (const auto& [k, loc] : a.map) s += k + opts + " " + loc + "\n";
  return s;
}

// The probe that lists labfleet's autofs files on the node: one absolute path a line. Pure parser: keeps only
// paths of labfleet's two name patterns (anything else is counted in `skipped`).
struct AutofsFiles {
  std::vector<std::string> paths;
  int skipped = 0;
};
AutofsFiles ParseAutofsFiles(std::string_view text) {
  AutofsFiles out;
  const std::string master = std::string(kAutoMasterDir) + "/labfleet-";
  for (std::string_view l : LineViews(text)) {
    std::string p(l);
    bool ok = (p.rfind(master, 0) == 0 && p.size() > master.size() + 7 && p.substr(p.size() - 7) == ".autofs" &&
               p.find('/', master.size()) == std::string::npos) ||
              (p.rfind("/etc/auto.labfleet-", 0) == 0 && p.size() > 19 && p.find('/', 19) == std::string::npos);
    if (ok && FindControl(p) == std::string::npos)
      out.paths.push_back(p);
    else
      ++out.skipped;
  }
  return out;
}

// Whether auto.master's text includes /etc/auto.master.d (a `+dir:` line, not commented out).
bool AutoMasterIncludesDir(std::string_view text) {
  for (std::string_view l : LineViews(text)) {
    std::string t = TrimChars(l, " \t\r");
    if (t == "+dir:/etc/auto.master.d" || t == "+dir:/etc/auto.master.d/") return true;
  }
  return false;
}

namespace {

const std::vector<std::string> kKeys = {"mount", "map", "options", "timeout", "name"};
constexpr std::string_view kPathChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+@/-";

bool AllOf(std::string_view s, std::string_view allowed) {
  return !s.empty() && s.find_first_not_of(allowed) == std::string_view::npos;
}

std::string DefaultName(const std::string& mount) {
  std::string n = mount.substr(1);
  for (char& c : n)
    if (c == '/') c = '-';
  return n;
}

// "" when `loc` is a location labfleet writes for `key`; else why not.
std::string CheckLocation(const std::string& key, const std::string& loc) {
  size_t colon = loc.find(':');
  if (colon == std::string::npos || colon == 0)
    return "is not HOST:/path (e.g. \"nas:/mnt/HDD/home/&\")";
  std::string host = loc.substr(0, colon), path = loc.substr(colon + 1);
  if (!IsHostName(host)) return "has host '" + host + "', which is not a host name or IPv4 address";
  if (path.empty() || path[0] != '/') return "needs an absolute path after the host";
  if (!AllOf(path, std::string(kPathChars) + "&"))
    return "has a path with characters other than letters, digits, ._+@/- and & (a blank, quote, backslash or "
           "'#' would change the map line)";
  for (const auto& part : Split(path, '/'))
    if (part == "..") return "has a '..' component";
  if (key != "*" && path.find('&') != std::string::npos)
    return "uses '&' (autofs's \"the key\"), which only the wildcard key \"*\" may use; write the key itself";
  return "";
}

std::vector<AutomountSpec> ParseAutomounts(const Value* v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  std::vector<AutomountSpec> list;
  if (!v || v->is_null()) return list;
  if (!v->is_seq()) {
    out.error(v->loc(), "wrong-type",
              "automounts must be a list of { mount: /home, map: { \"*\": \"nas:/export/home/&\" } }, got " +
                  DescribeValue(*v));
    return list;
  }
  for (const auto& item : v->items()) {
    MapReader r(item, "an automount", item.loc(), out, kKeys);
    if (!r.is_map()) continue;
    AutomountSpec a;
    a.where = item.loc();
    bool ok = r.require("mount", "the directory autofs manages, e.g. mount: /home");
    ok = r.require("map", "keys and locations, e.g. map: { \"*\": \"nas:/export/home/&\" }") && ok;
    if (auto m = r.str("mount")) {
      a.mount_where = r.get("mount")->loc();
      PathResult pr = NormalizeAbsolutePath(*m);
      if (Report(out, a.mount_where, "automount mount " + Quoted(*m), pr.error)) {
        ok = false;
      } else if (pr.path == "/" || !AllOf(pr.path, kPathChars)) {
        out.error(a.mount_where, "automount-mount",
                  "automount mount " + Quoted(*m) +
                      " must be a directory below / of letters, digits and ._+@/- (no blank or '#', which "
                      "auto.master reads as separators or a comment; direct maps /- are not supported)");
        ok = false;
      } else {
        a.mount = pr.path;
        a.name = DefaultName(a.mount);
      }
    }
    if (auto n = r.str("name")) {
      if (!AllOf(*n, "abcdefghijklmnopqrstuvwxyz0123456789._-") || (*n)[0] == '.' || (*n)[0] == '-') {
        out.error(r.get("name")->loc(), "automount-name",
                  "automount name " + Quoted(*n) + " must be lower-case letters, digits and ._- (it names the files)");
        ok = false;
      } else {
        a.name = *n;
      }
    }
    if (auto t = r.integer("timeout", 0, 86400 * 365)) a.timeout = *t;
    if (const Value* o = r.get("options")) {
      std::vector<std::pair<std::string, Location>> opts;
      if (o->is_scalar()) {
        for (const auto& s : Split(o->str(), ','))
          if (!s.empty()) opts.push_back({s, o->loc()});
      } else if (auto l = r.strings("options")) {
        for (size_t i = 0; i < l->size(); ++i) opts.push_back({(*l)[i], o->items()[i].loc()});
      } else {
        ok = false;
      }
      for (auto& [opt, at] : opts) {
        std::string o2 = opt[0] == '-' ? opt.substr(1) : opt;
        if (Report(out, at, "automount option " + Quoted(opt), CheckOneWord(opt))) {
          ok = false;
        } else if (!AllOf(o2, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._=:+/-") || o2[0] == '-') {
          out.error(at, "automount-option",
                    "automount option " + Quoted(opt) + " may hold only letters, digits and ._=:+/- (e.g. fstype=nfs, vers=4.2, ro)");
          ok = false;
        } else {
          a.options.push_back(o2);
        }
      }
    }
    if (const Value* m = r.get("map")) {
      if (!m->is_map() || m->entries().empty()) {
        out.error(m->loc(), "automount-map", "map must be a non-empty map of key: location, e.g. { \"*\": \"nas:/export/home/&\" }");
        ok = false;
      } else {
        for (const auto& e : m->entries()) {
          const std::string& key = e.key;
          bool key_ok = key == "*" || (AllOf(key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-") &&
                                       key[0] != '-' && key[0] != '.');
          if (!key_ok) {
            out.error(e.key_loc, "automount-key",
                      "automount map key " + Quoted(key) +
                          " must be \"*\" or a word of letters, digits and ._@- (not starting with - or .; a '+' "
                          "line would include another map)");
            ok = false;
            continue;
          }
          if (!e.value.is_scalar()) {
            out.error(e.value.loc(), "wrong-type", "automount map location must be a string HOST:/path, got " + DescribeValue(e.value));
            ok = false;
            continue;
          }
          const std::string& loc = e.value.str();
          if (Report(out, e.value.loc(), "automount location " + Quoted(loc), CheckOneWord(loc))) {
            ok = false;
            continue;
          }
          if (std::string why = CheckLocation(key, loc); !why.empty()) {
            out.error(e.value.loc(), "automount-location", "automount location " + Quoted(loc) + " for key " + Quoted(key) + " " + why);
            ok = false;
            continue;
          }
          a.map.push_back({key, loc});
        }
      }
    }
    if (ok) list.push_back(std::move(a));
  }
  return list;
}

// Targets of a node's static mounts (`mounts:`, not removed), normalised, with where they are written.
std::vector<std::pair<std::string, Location>> StaticMountTargets(const Value& settings) {
  std::vector<std::pair<std::string, Location>> out;
  const Value* m = settings.find("mounts");
  if (!m || !m->is_seq()) return out;
  for (const auto& item : m->items()) {
    if (!item.is_map()) continue;
    const Value* t = item.find("target");
    const Value* rm = item.find("remove");
    if (!t || !t->is_scalar() || (rm && rm->is_scalar() && rm->str() == "true")) continue;
    PathResult pr = NormalizeAbsolutePath(t->str());
    if (!pr.error) out.push_back({pr.path, t->loc()});
  }
  return out;
}

struct FilesWant {
  AutomountSpec spec;
};
struct StaleWant {
  std::set<std::string> wanted;  // every labfleet autofs file an entry writes
};
struct ServiceWant {
  std::vector<std::string> mounts;
  bool package_elsewhere = false, service_elsewhere = false;
};

Probe AutofsFilesProbe() {
  return {"automounts:files",
          "for f in /etc/auto.master.d/labfleet-*.autofs /etc/auto.labfleet-*; do if [ -e \"$f\" ] || [ -L \"$f\" ]; "
          "then printf '%s\\n' \"$f\"; fi; done; true"};
}

class AutomountsModule : public Module {
 public:
  std::string name() const override { return "automounts"; }
  int order() const override { return 77; }
  std::vector<std::string> settings_keys() const override { return {"automounts"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return ListOf(Closed(kKeys, {{"mount", Scalar("absolute path autofs manages (required)")},
                                 {"map", MapOf(Scalar("HOST:/path; & = the key, only for key \"*\""))},
                                 {"options", OneOf({Strings(), Scalar()})},
                                 {"timeout", Integer(0, 86400 * 365, "seconds idle before unmounting")},
                                 {"name", Scalar("name of the files (default from mount)")}}),
                  "autofs indirect maps in /etc/auto.master.d and /etc/auto.labfleet-NAME");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    if (const Value* d = inv.lab.find("defaults"); d && d->is_map()) ParseAutomounts(d->find("automounts"), &f);
    for (const auto& g : inv.groups) ParseAutomounts(g.raw.find("automounts"), &f);
    for (const auto& n : inv.nodes) ParseAutomounts(n.raw.find("automounts"), &f);
    std::set<std::string> reported;
    for (const auto& n : inv.nodes) {
      Value eff = inv.settings(n);
      auto list = ParseAutomounts(eff.find("automounts"), nullptr);
      if (list.empty()) continue;
      auto statics = StaticMountTargets(eff);
      for (size_t i = 0; i < list.size(); ++i) {
        const AutomountSpec& a = list[i];
        for (const auto& [target, where] : statics)
          if (target == a.mount && reported.insert(a.mount_where.str() + "|" + where.str()).second)
            f.error(a.mount_where, "automount-mount-conflict",
                    "automount " + a.mount + " on node '" + n.name + "' is also a static mount (mounts: at " +
                        where.str() + "); one directory takes one mechanism: drop one of them");
        for (size_t j = 0; j < i; ++j) {
          std::string why;
          if (list[j].mount == a.mount) why = "mount " + a.mount;
          else if (list[j].name == a.name) why = "name " + a.name;
          if (!why.empty() && reported.insert(a.mount_where.str() + "|dup|" + n.name).second)
            f.error(a.mount_where, "automount-duplicate",
                    "automount " + a.mount + " on node '" + n.name + "' has the same " + why + " as " +
                        list[j].where.str() + "; each entry needs its own mount and name");
        }
      }
    }
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    std::vector<OwnedFile> out;
    for (const auto& a : ParseAutomounts(ctx.settings.find("automounts"), nullptr)) {
      out.push_back({a.master_path(), "automounts:"});
      out.push_back({a.map_path(), "automounts:"});
    }
    return out;
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("automounts");
    if (!v || !v->is_seq()) return {};
    auto list = ParseAutomounts(v, nullptr);
    std::vector<Resource> out;
    auto stale = std::make_shared<StaleWant>();
    if (!list.empty()) {
      auto svc = std::make_shared<ServiceWant>();
      for (const auto& a : list) svc->mounts.push_back(a.mount);
      if (const Value* p = ctx.settings.find("packages")) {
        if (p->is_seq()) {
          for (const auto& i : p->items()) svc->package_elsewhere |= i.is_scalar() && i.str() == "autofs";
        } else if (p->is_map()) {
          const Value* st = p->find("autofs");
          svc->package_elsewhere = st && st->is_scalar() && st->str() != "absent";
        }
      }
      if (const Value* s = ctx.settings.find("services"); s && s->is_map())
        svc->service_elsewhere = s->find("autofs") || s->find(kAutofsUnit);
      out.push_back({name(), "automounts:autofs", v->loc(), svc});
    }
    for (const auto& a : list) {
      stale->wanted.insert(a.master_path());
      stale->wanted.insert(a.map_path());
      out.push_back({name(), "automount:" + a.mount, a.where, std::make_shared<FilesWant>(FilesWant{a})});
    }
    out.push_back({name(), "automounts:stale", v->loc(), stale});
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out{AutofsFilesProbe(), FileProbe(kAutoMaster)};
    for (const auto& r : rs) {
      if (r.id == "automounts:autofs") {
        out.push_back(PackageManagerProbe());
        out.push_back(DpkgQueryProbe({"autofs"}));
        out.push_back(PacmanQProbe({"autofs"}));
        out.push_back(SystemctlShowProbe({kAutofsUnit}));
      } else if (r.id.rfind("automount:", 0) == 0) {
        out.push_back(FileProbe(r.as<FilesWant>().spec.master_path()));
        out.push_back(FileProbe(r.as<FilesWant>().spec.map_path()));
      }
    }
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    if (r.id == "automounts:autofs") return DiffService(r.as<ServiceWant>(), results);
    if (r.id == "automounts:stale") return DiffStale(r.as<StaleWant>(), results);
    return DiffFiles(r.as<FilesWant>().spec, results);
  }

 private:
  static Change Reload(const std::string& why) {
    return NotifyChange("autofs reload", Cmd("systemctl").arg("try-reload-or-restart").arg(kAutofsUnit).str(),
                        "systemctl try-reload-or-restart " + std::string(kAutofsUnit),
                        why + ": autofs re-reads its maps (a reload when it runs; nothing mounted is unmounted)");
  }

  static DiffResult DiffFiles(const AutomountSpec& a, const ProbeResults& results) {
    DiffResult d;
    bool changed = false;
    std::vector<std::string> notes;
    for (const auto& [path, bytes, what] :
         {std::tuple{a.master_path(), RenderAutoMaster(a), "autofs master entry " + a.master_path() + " (" + a.mount + ")"},
          std::tuple{a.map_path(), RenderAutoMap(a),
                     "autofs map " + a.map_path() + " (" + Counted(a.map.size(), "key", "keys") + ")"}}) {
      FileState live = ParseFileProbe(results, path);
      if (live.exists && !live.regular)
        return Failure(path + " is not a regular file (a link, a directory?); move it away on the node");
      DiffResult fd = DiffFile(FileSpec{path, bytes, 0644, "root", "root"}, live, what);
      for (auto& c : fd.changes) {
        changed |= c.kind == Change::Kind::PutFile;
        d.changes.push_back(std::move(c));
      }
      for (auto& w : fd.warnings) d.warnings.push_back(std::move(w));
      if (fd.changes.empty()) notes.push_back(fd.noop);
    }
    if (changed) d.changes.push_back(Reload("the map of " + a.mount + " changed"));
    if (d.changes.empty()) d.noop = Join(notes, "; ");
    return d;
  }

  static DiffResult DiffStale(const StaleWant& w, const ProbeResults& results) {
    const ProbeOutput* p = FindProbe(results, "automounts:files");
    AutofsFiles files = ParseAutofsFiles(p ? p->out : "");
    DiffResult d;
    FileState master = ParseFileProbe(results, kAutoMaster);
    if (!w.wanted.empty() && master.exists && master.regular && master.content_read &&
        !AutoMasterIncludesDir(master.content))
      d.warnings.push_back("/etc/auto.master has no `+dir:/etc/auto.master.d` line, so autofs does not read "
                           "labfleet's files there; add that line to /etc/auto.master (Debian's default has it)");
    for (const auto& path : files.paths) {
      if (w.wanted.count(path)) continue;
      Change c;
      c.kind = Change::Kind::Remove;
      c.sign = '-';
      c.path = path;
      c.summary = "autofs file " + path + " (remove)";
      c.reason = "labfleet wrote it for an automount the inventory no longer has";
      d.changes.push_back(std::move(c));
    }
    if (!d.changes.empty())
      d.changes.push_back(Reload("an automount was removed"));
    else
      d.noop = "nothing to do because no autofs file of labfleet's is left over from a removed automount";
    return d;
  }

  static DiffResult DiffService(const ServiceWant& w, const ProbeResults& results) {
    DiffResult d;
    const std::string why = "automounts " + Join(w.mounts, ", ");
    std::string pm = PackageManagerOf(results);
    bool installed = false;
    if (pm == "apt") {
      const ProbeOutput* p = FindProbe(results, "dpkg-query:autofs");
      DpkgStatus st = ParseDpkgQuery(p ? p->out : "");
      auto it = st.by_name.find("autofs");
      installed = it != st.by_name.end() && it->second.installed();
    } else if (pm == "pacman") {
      const ProbeOutput* p = FindProbe(results, "pacman-q:autofs");
      installed = ParsePacmanQ(p ? p->out : "").version.count("autofs") > 0;
    }
    bool installing = false;
    std::vector<std::string> notes;
    if (!installed) {
      if (w.package_elsewhere) {
        installing = true;
        notes.push_back("autofs is installed by the packages module");
      } else if (pm == "apt" || pm == "pacman") {
        Change c;
        c.kind = Change::Kind::Exec;
        c.sign = '+';
        c.summary = "autofs package (install; " + why + ")";
        c.reason = "not installed; the maps need the automount daemon";
        if (pm == "apt") {
          Cmd inst = AptGet("install").arg("--no-install-recommends").arg("--").arg("autofs");
          c.command = inst.str() + " || { " + AptGet("update").str() + " && " + inst.str() + "; }";
        } else {
          c.command = Cmd("pacman").arg("-S").arg("--noconfirm").arg("--needed").arg("--").arg("autofs").str();
        }
        d.changes.push_back(std::move(c));
        installing = true;
      } else {
        return Failure(why + " need autofs, which is not installed, and this node has neither apt nor pacman: "
                             "install autofs on it");
      }
    }
    if (w.service_elsewhere) {
      notes.push_back("the services module manages autofs.service");
    } else {
      const ProbeOutput* p = FindProbe(results, "systemctl-show:" + std::string(kAutofsUnit));
      SystemctlShow show = ParseSystemctlShow(p ? p->out : "");
      const UnitState* u = show.find({kAutofsUnit}, kAutofsUnit);
      if (u && u->masked())
        return Failure(std::string(kAutofsUnit) + " is masked, but " + why +
                       " need it running: unmask it (services: { autofs: { masked: false } }) or drop the automounts");
      if (!u && !installing)
        return Failure("systemctl show printed nothing for " + std::string(kAutofsUnit) +
                       "; is systemd running on this node? (" + why + " need autofs running)");
      bool found = u && u->found();
      if (!found && !installing)
        return Failure("autofs is installed but " + std::string(kAutofsUnit) + " does not exist; " + why +
                       " need the daemon running");
      std::vector<std::string> actions;
      Script s;
      if (!found || (!u->enabled() && !u->enable_not_applicable())) {
        actions.push_back("enable");
        s.add(Cmd("systemctl").arg("enable").arg(kAutofsUnit));
      }
      if (!found || !u->active()) {
        actions.push_back("start");
        s.add(Cmd("systemctl").arg("start").arg(kAutofsUnit));
      }
      if (!actions.empty()) {
        Change c;
        c.kind = Change::Kind::Exec;
        c.sign = '~';
        c.summary = "service " + std::string(kAutofsUnit) + " (" + Join(actions, ", ") + "; " + why + ")";
        c.reason = found ? "live: " + u->unit_file_state + ", " + u->active_state
                         : "not loaded yet (comes with the package installed above)";
        c.command = s.str();
        d.changes.push_back(std::move(c));
      }
    }
    if (d.changes.empty())
      d.noop = "nothing to do because autofs is installed, enabled and running (" + why + ")" +
               (notes.empty() ? "" : "; " + Join(notes, "; "));
    return d;
  }
};

const ModuleRegistrar kAutomounts(std::make_unique<AutomountsModule>());

}  // namespace
}  // namespace labfleet
