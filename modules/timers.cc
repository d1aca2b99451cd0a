// timers: periodic jobs as systemd timers. Module `timers`, order 86 (after services: the programs they run are
// installed by packages, their users exist, and the daemon-reload handler is shared with services).
//
//   timers:
//     - { name: duc-index, on_calendar: daily, command: [duc, index, /home] }
//     - name: backup
//       on_calendar: "Mon..Fri *-*-* 02:30"
//       command: [/usr/local/sbin/backup, --to, "nas:/backup/%H"]   # "%" and "$" are written literally
//       user: root                 # default root
//       description: nightly backup
//     - { name: old-job, state: absent }
//
// Contract, per timer NAME:
// - present: /etc/systemd/system/labfleet-NAME.service (Type=oneshot, User=, ExecStart= built from `command`
//   with systemd's quoting, every "%" as "%%" and "$" as "$$") and labfleet-NAME.timer (OnCalendar=,
//   Persistent=true, WantedBy=timers.target), both 0644 root:root, exact. Each file is checked with
//   `systemd-analyze verify` ON THE NODE, beside the other one's new text, before it is put in place; one that
//   fails is refused with the verifier's messages and neither is installed (the service goes first, and its check
//   covers the timer too). A changed file notifies "systemd daemon-reload" (shared with services:, run once per
//   apply; in the plan once, by the first timer whose files change); a timer not enabled or not active is then enabled and started by the handler
//   "enable --now labfleet-NAME.timer" after the reload (or directly, when no file changed); that handler skips
//   a timer whose file is not there (a run that refused it still owes the handler).
// - absent: `systemctl disable --now` of the timer when systemd knows it, then both files removed (only files
//   whose first line is labfleet's header), and daemon-reload.
// - Validated offline: name [a-z0-9][a-z0-9_.-]*; command a non-empty list whose words have no control
//   character and whose program is an absolute path or a plain command name; user an account name; description
//   and on_calendar one unit-file line (no newline, no trailing "\"); on_calendar by CalendarProblem's strict
//   pattern (not systemd's parser, so validate gives the same answer on every machine; the node's verify
//   checks it again).
// Probes: the two files of each timer (batched file probe), one `systemctl show` of all the node's timers.
#include <nlohmann/json.hpp>

#include <memory>
#include <set>

#include "engine/file_probe.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/schema.h"
#include "engine/settings_layers.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"
#include "engine/textdiff.h"
#include "modules/facts/systemd_facts.h"

namespace labfleet {
namespace {

const std::vector<std::string> kTimerKeys = {"name", "on_calendar", "command", "user", "description", "state"};
const char* kHeader = "# Managed by labfleet (timers: ";

struct TimerWant {
  std::string name, on_calendar, user = "root", description;
  std::vector<std::string> command;
  bool absent = false;
  Location where;
  std::string service() const { return "labfleet-" + name + ".service"; }
  std::string timer() const { return "labfleet-" + name + ".timer"; }
  std::string service_path() const { return "/etc/systemd/system/" + service(); }
  std::string timer_path() const { return "/etc/systemd/system/" + timer(); }
};

bool IsTimerName(const std::string& n) {
  if (n.empty() || n.size() > 64 || !(islower((unsigned char)n[0]) || isdigit((unsigned char)n[0]))) return false;
  for (char c : n)
    if (!islower((unsigned char)c) && !isdigit((unsigned char)c) && c != '_' && c != '.' && c != '-') return false;
  return true;
}

std::optional<TimerWant> ParseTimer(const Value& v, Findings& f) {
  MapReader r(v, "a timers entry", v.loc(), f, kTimerKeys);
  if (!r.is_map()) return std::nullopt;
  TimerWant t;
  t.where = v.loc();
  bool ok = true;
  if (!r.require("name", "the timer's name, like duc-index")) return std::nullopt;
  if (auto n = r.str("name")) t.name = *n;
  if (!IsTimerName(t.name)) {
    f.error(r.get("name") ? r.get("name")->loc() : r.key_loc("name"), "timer-name",
            "timer name " + Quoted(t.name) + " must be lowercase letters, digits and _ . - (it becomes labfleet-NAME.timer)");
    return std::nullopt;
  }
  if (auto s = r.one_of("state", {"present", "absent"})) t.absent = *s == "absent";
  if (t.absent) return t;
  if (!r.require("on_calendar", "when it runs, like daily") || !r.require("command", "a list like [duc, index, /home]"))
    return std::nullopt;
  if (auto s = r.str("on_calendar")) {
    t.on_calendar = *s;
    if (std::string p = CalendarProblem(*s); !p.empty()) {
      f.error(r.get("on_calendar")->loc(), "timer-calendar", "on_calendar " + Quoted(*s) + " of timer " + t.name + " " + p);
      ok = false;
    }
  } else {
    ok = false;
  }
  if (auto argv = r.strings("command")) {
    t.command = *argv;
    if (std::string p = ArgvProblem(t.command); !p.empty()) {
      f.error(r.get("command")->loc(), "timer-command", "command of timer " + t.name + ": " + p);
      ok = false;
    }
  } else {
    ok = false;
  }
  if (auto u = r.str("user")) {
    t.user = *u;
    if (Report(f, r.get("user")->loc(), "user " + Quoted(*u) + " of timer " + t.name, CheckOwnerName(*u))) ok = false;
  }
  if (auto d = r.str("description")) {
    t.description = *d;
    if (std::string p = UnitValueProblem(*d); !p.empty()) {
      f.error(r.get("description")->loc(), "timer-description", "description " + Quoted(*d) + " of timer " + t.name + " " + p);
      ok = false;
    }
  }
  if (!ok) return std::nullopt;
  return t;
}

std::vector<TimerWant> ParseTimers(const Value* list, Findings* fp) {
  Findings scratch;
  Findings& f = fp ? *fp : scratch;
  std::vector<TimerWant> out;
  if (!list || list->is_null()) return out;
  if (!list->is_seq()) {
    f.error(list->loc(), "wrong-type", "timers must be a list of { name, on_calendar, command }, got " + DescribeValue(*list));
    return out;
  }
  std::set<std::string> names;
  for (const auto& item : list->items())
    if (auto t = ParseTimer(item, f)) {
      if (!names.insert(t->name).second) {
        f.error(t->where, "timer-duplicate", "timer " + t->name + " is listed twice");
        continue;
      }
      out.push_back(std::move(*t));
    }
  return out;
}

}  // namespace

// The two unit files of a present timer (exposed for tests).
std::string TimerServiceText(const std::string& name, const std::vector<std::string>& command, const std::string& user,
                             const std::string& description) {
  std::string desc = description.empty() ? "labfleet timer " + name : description;
  return kHeader + name + "); changes here are overwritten\n[Unit]\nDescription=" + EscapeSpecifiers(desc) +
         "\n\n[Service]\nType=oneshot\nUser=" + EscapeSpecifiers(user) + "\nExecStart=" + ExecStartValue(command) + "\n";
}
std::string TimerTimerText(const std::string& name, const std::string& on_calendar, const std::string& description) {
  std::string desc = description.empty() ? "labfleet timer " + name : description;
  return kHeader + name + "); changes here are overwritten\n[Unit]\nDescription=" + EscapeSpecifiers(desc) +
         "\n\n[Timer]\nOnCalendar=" + on_calendar + "\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n";
}

namespace {

std::vector<std::string> TimerUnits(const std::vector<TimerWant>& ts) {
  std::vector<std::string> units;
  for (const auto& t : ts) units.push_back(t.timer());
  return units;
}

class TimersModule : public Module {
 public:
  std::string name() const override { return "timers"; }
  int order() const override { return 86; }
  std::vector<std::string> settings_keys() const override { return {"timers"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return ListOf(Closed(kTimerKeys, {{"name", Scalar("lowercase name; the units are labfleet-NAME.service/.timer")},
                                      {"on_calendar", Scalar("OnCalendar= expression, like daily")},
                                      {"command", Strings("the program and its arguments")},
                                      {"user", Scalar("account the job runs as (root)")},
                                      {"description", Scalar()},
                                      {"state", Enum({"present", "absent"})}}),
                  "periodic jobs as systemd timers");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    ForEachSettingsLayer(inv, [&](const Value& s) { ParseTimers(s.find("timers"), &f); });
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    std::vector<OwnedFile> out;
    for (const auto& t : ParseTimers(ctx.settings.find("timers"), nullptr)) {
      out.push_back({t.service_path(), "timers: " + t.name});
      out.push_back({t.timer_path(), "timers: " + t.name});
    }
    return out;
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    for (auto& t : ParseTimers(ctx.settings.find("timers"), nullptr))
      out.push_back({name(), "timer:" + t.name, t.where, std::make_shared<TimerWant>(std::move(t))});
    return out;
  }

  std::vector<Probe> probes(const NodeContext& ctx, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    if (rs.empty()) return out;
    out.push_back(SystemctlShowProbe(TimerUnits(ParseTimers(ctx.settings.find("timers"), nullptr))));
    for (const auto& r : rs) {
      out.push_back(FileProbe(r.as<TimerWant>().service_path()));
      out.push_back(FileProbe(r.as<TimerWant>().timer_path()));
    }
    return out;
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    const TimerWant& t = r.as<TimerWant>();
    auto asked = TimerUnits(ParseTimers(ctx.settings.find("timers"), nullptr));
    const ProbeOutput* show_out = FindProbe(results, SystemctlShowProbe(asked).key);
    SystemctlShow show = ParseSystemctlShow(show_out ? show_out->out : "");
    const UnitState* u = show.find(asked, t.timer());
    FileState svc = ParseFileProbe(results, t.service_path()), tmr = ParseFileProbe(results, t.timer_path());
    // One reload in the plan: notified by the first timer (in list order) whose unit files this apply changes.
    bool reload = true;
    for (const auto& other : ParseTimers(ctx.settings.find("timers"), nullptr)) {
      if (other.name == t.name) break;
      if (TouchesUnits(other, results)) reload = false;
    }
    return t.absent ? DiffAbsent(t, u, svc, tmr, reload) : DiffPresent(t, u, svc, tmr, show_out, reload);
  }

 private:
  static bool OurFile(const FileState& live) {
    return live.exists && live.regular && live.content_read && live.content.rfind(kHeader, 0) == 0;
  }
  // Whether this apply writes or removes a unit file of `t`.
  static bool TouchesUnits(const TimerWant& t, const ProbeResults& results) {
    FileState svc = ParseFileProbe(results, t.service_path()), tmr = ParseFileProbe(results, t.timer_path());
    if (t.absent) return OurFile(svc) || OurFile(tmr);
    auto differs = [](const FileState& live, const std::string& want) {
      return !live.exists || !live.regular || (live.content_read && live.content != want);
    };
    return differs(svc, TimerServiceText(t.name, t.command, t.user, t.description)) ||
           differs(tmr, TimerTimerText(t.name, t.on_calendar, t.description));
  }

  static DiffResult DiffPresent(const TimerWant& t, const UnitState* u, const FileState& svc, const FileState& tmr,
                                const ProbeOutput* show_out, bool reload) {
    std::string svc_text = TimerServiceText(t.name, t.command, t.user, t.description);
    std::string tmr_text = TimerTimerText(t.name, t.on_calendar, t.description);
    DiffResult d;
    bool files_changed = false;
    for (int i = 0; i < 2; ++i) {
      const FileState& live = i == 0 ? svc : tmr;
      FileSpec want{i == 0 ? t.service_path() : t.timer_path(), i == 0 ? svc_text : tmr_text, 0644, "root", "root"};
      DiffResult f = DiffFile(want, live, std::string(i == 0 ? "timer service " : "timer ") + want.path);
      for (auto& w : f.warnings) d.warnings.push_back(w);
      for (auto& c : f.changes) {
        if (c.kind == Change::Kind::PutFile && live.content != want.bytes) {
          files_changed = true;
          // Verified on the node beside the other unit's NEW text: a bad one is refused before anything of this
          // timer is installed (the service is put in place first, and its check covers the timer).
          c.precheck = i == 0 ? VerifyUnitPrecheck(t.service(), {{t.timer(), tmr_text}})
                              : VerifyUnitPrecheck(t.timer(), {{t.service(), svc_text}});
        }
        d.changes.push_back(std::move(c));
      }
      if (!f.error.empty()) return f;
    }
    if (files_changed && reload)
      d.changes.push_back(NotifyChange("systemd daemon-reload", "systemctl daemon-reload", "systemctl daemon-reload",
                                       "timer " + t.name + "'s unit text changed"));
    bool enabled = u && u->enabled(), active = u && u->active();
    if (!enabled || !active) {
      std::string cmd = Cmd("systemctl").arg("enable").arg("--now").arg(t.timer()).str();
      // As a handler it may still be owed by a run whose unit was refused (never installed): skipped then; the
      // next plan asks again for a timer that is installed and not enabled.
      std::string handler_cmd = "if [ -f " + ShellQuote(t.timer_path()) + " ]; then " + cmd + "; fi";
      std::string live = !u || !u->found() ? std::string("not loaded yet")
                                           : (u->unit_file_state.empty() ? u->load_state : u->unit_file_state) + ", " +
                                                 u->active_state;
      if (!u && show_out && show_out->exit_code != 0)
        return Failure("systemctl show failed for " + t.timer() + " (exit " + std::to_string(show_out->exit_code) +
                       "); is systemd running on this node?");
      if (files_changed) {
        d.changes.push_back(NotifyChange("enable --now " + t.timer(), handler_cmd,
                                         "enable --now " + t.timer() + " (after daemon-reload)", "live: " + live));
      } else {
        Change c;
        c.summary = "timer " + t.timer() + " (enable --now)";
        c.reason = "live: " + live;
        c.command = cmd;
        d.changes.push_back(std::move(c));
      }
    }
    if (d.changes.empty())
      d.noop = "nothing to do because " + t.timer() + " and its service are up to date, enabled and active";
    return d;
  }

  static DiffResult DiffAbsent(const TimerWant& t, const UnitState* u, const FileState& svc, const FileState& tmr,
                               bool reload) {
    DiffResult d;
    if (u && u->found() && !u->masked() && (u->enabled() || u->active())) {
      Change c;
      c.sign = '-';
      c.summary = "timer " + t.timer() + " (disable --now)";
      c.reason = "state: absent; live: " + u->unit_file_state + ", " + u->active_state;
      c.command = Cmd("systemctl").arg("disable").arg("--now").arg(t.timer()).str();
      d.changes.push_back(std::move(c));
    }
    bool removed = false;
    for (const FileState* live : {&tmr, &svc}) {
      std::string path = live == &svc ? t.service_path() : t.timer_path();
      if (!live->exists) continue;
      if (!OurFile(*live)) {
        d.warnings.push_back(path + " was not written by labfleet (its first line is not labfleet's header), so it "
                                    "is left as it is");
        continue;
      }
      Change c;
      c.kind = Change::Kind::Remove;
      c.sign = '-';
      c.path = path;
      c.summary = "timer unit " + path;
      c.reason = "state: absent";
      c.diff = UnifiedDiff(live->content, "", path, "/dev/null");
      d.changes.push_back(std::move(c));
      removed = true;
    }
    if (removed && reload)
      d.changes.push_back(NotifyChange("systemd daemon-reload", "systemctl daemon-reload", "systemctl daemon-reload",
                                       "timer " + t.name + "'s units were removed"));
    if (d.changes.empty()) d.noop = "nothing to do because " + t.timer() + " is not installed";
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<TimersModule>());

}  // namespace
}  // namespace labfleet
