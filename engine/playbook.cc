// Playbook files: parse (file:line:col findings) and offline validation against the inventory. See playbook.h.
#include "engine/playbook.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "engine/busy.h"
#include "engine/module.h"
#include "engine/text.h"
#include "engine/yaml_load.h"

namespace labfleet {

const char* StepKindName(StepKind k) {
  switch (k) {
    case StepKind::Apply: return "apply";
    case StepKind::Accounts: return "accounts";
    case StepKind::WaitIdle: return "wait_idle";
    case StepKind::Command: return "command";
    case StepKind::Confirm: return "confirm";
    case StepKind::Snapshot: return "snapshot";
    case StepKind::Reboot: return "reboot";
  }
  return "?";
}

const char* AccountActionName(AccountAction a) {
  switch (a) {
    case AccountAction::Lock: return "lock";
    case AccountAction::Remove: return "remove";
    case AccountAction::Archive: return "archive";
    case AccountAction::EndSessions: return "end_sessions";
    case AccountAction::Report: return "report";
    case AccountAction::Snapshot: return "snapshot";
    case AccountAction::DeleteData: return "delete_data";
  }
  return "?";
}

std::optional<size_t> Playbook::find_step(const std::string& s) const {
  for (size_t i = 0; i < steps.size(); ++i)
    if (steps[i].name == s) return i;
  if (!s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }) && s.size() < 6) {
    size_t n = std::stoul(s);
    if (n >= 1 && n <= steps.size()) return n - 1;
  }
  return std::nullopt;
}

std::optional<long long> DaysOfDate(const std::string& s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
  std::chrono::year_month_day ymd{std::chrono::year(std::stoi(s.substr(0, 4))),
                                  std::chrono::month(unsigned(std::stoi(s.substr(5, 2)))),
                                  std::chrono::day(unsigned(std::stoi(s.substr(8, 2))))};
  if (!ymd.ok()) return std::nullopt;
  return std::chrono::sys_days(ymd).time_since_epoch().count();
}

std::string DateOfDays(long long days) {
  std::chrono::year_month_day ymd{std::chrono::sys_days(std::chrono::days(days))};
  char buf[16];
  snprintf(buf, sizeof buf, "%04d-%02u-%02u", int(ymd.year()), unsigned(ymd.month()), unsigned(ymd.day()));
  return buf;
}

long long TodayDays() {
  return std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now()).time_since_epoch().count();
}

namespace {

const std::vector<std::string> kTopKeys = {"description", "nodes", "steps"};
const std::vector<std::string> kKinds = {"apply", "accounts", "wait_idle", "command", "confirm", "snapshot", "reboot"};
// The keys each kind allows besides `name` and the kind key.
const std::vector<std::string>& KeysOf(StepKind k) {
  static const std::vector<std::string> apply = {"name", "nodes", "apply", "batch", "health"};
  static const std::vector<std::string> accounts = {"name", "nodes", "accounts", "users", "within", "to", "keep", "homes"};
  static const std::vector<std::string> wait = {"name", "nodes", "wait_idle", "on_busy", "timeout"};
  static const std::vector<std::string> command = {"name", "nodes", "command", "unless", "creates", "batch", "health", "timeout"};
  static const std::vector<std::string> confirm = {"name", "confirm"};
  static const std::vector<std::string> snapshot = {"name", "nodes", "snapshot", "to", "keep"};
  static const std::vector<std::string> reboot = {"name", "nodes", "reboot", "batch", "health", "timeout"};
  switch (k) {
    case StepKind::Apply: return apply;
    case StepKind::Accounts: return accounts;
    case StepKind::WaitIdle: return wait;
    case StepKind::Command: return command;
    case StepKind::Confirm: return confirm;
    case StepKind::Snapshot: return snapshot;
    case StepKind::Reboot: return reboot;
  }
  return confirm;
}

std::string NoControl(const std::string& s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return "contains a control character";
  return "";
}

// Plain absolute paths: no "..", no "//", no trailing "/", printable.
bool PlainPath(const std::string& p) {
  return p.size() > 1 && p[0] == '/' && p.back() != '/' && p.find("//") == std::string::npos &&
         p.find("/../") == std::string::npos && !p.ends_with("/..") && p.find("/./") == std::string::npos &&
         !p.ends_with("/.") && NoControl(p).empty();
}

// An argv: a non-empty list of strings without control characters (a scalar is refused: no word splitting).
std::vector<std::string> Argv(MapReader& r, const std::string& key, Findings& f, bool required) {
  const Value* v = r.get(key);
  if (!v) {
    if (required) r.require(key, "a list of words, e.g. [systemctl, is-active, docker]");
    return {};
  }
  if (v->is_scalar()) {
    f.error(v->loc(), "wrong-type",
            "'" + key + "' must be a list of words (argv), not one string: write [" + v->str() +
                "] split into words; labfleet never splits or re-parses it");
    return {};
  }
  auto words = r.strings(key);
  if (!words) return {};
  if (words->empty()) f.error(v->loc(), "invalid-value", "'" + key + "' is empty: give the program and its arguments");
  for (size_t i = 0; i < words->size(); ++i)
    if (std::string why = NoControl((*words)[i]); !why.empty())
      f.error(v->items()[i].loc(), "invalid-value", "word " + std::to_string(i + 1) + " of '" + key + "' " + why);
  return *words;
}

std::optional<long long> Duration(MapReader& r, const std::string& key, Findings& f) {
  const Value* v = r.get(key);
  if (!v) return std::nullopt;
  auto s = ParseDurationSeconds(v->is_scalar() ? v->str() : "");
  if (!s || *s <= 0) {
    f.error(v->loc(), "invalid-value", "'" + key + "' must be a duration like 90s, 10m or 2h, got " + DescribeValue(*v));
    return std::nullopt;
  }
  return s;
}

PlaybookStep ParseStep(const Value& v, size_t index, Findings& f, bool& ok) {
  PlaybookStep st;
  st.where = v.loc();
  ok = false;
  const std::string what = "step " + std::to_string(index + 1);
  if (!v.is_map()) {
    f.error(v.loc(), "wrong-type", what + " must be a map with a name and one step kind (" + Join(kKinds, ", ") + ")");
    return st;
  }
  std::vector<std::string> kinds;
  for (const auto& e : v.entries())
    if (std::find(kKinds.begin(), kKinds.end(), e.key) != kKinds.end()) kinds.push_back(e.key);
  if (kinds.size() != 1) {
    f.error(v.loc(), kinds.empty() ? "unknown-step-kind" : "ambiguous-step",
            what + (kinds.empty() ? " has no step kind" : " has several step kinds (" + Join(kinds, ", ") + ")") +
                ": give exactly one of " + Join(kKinds, ", "));
    // Unknown keys still get their "did you mean".
    std::vector<std::string> all = {"name"};
    all.insert(all.end(), kKinds.begin(), kKinds.end());
    if (kinds.empty()) MapReader(v, what, v.loc(), f, all);
    return st;
  }
  st.kind = StepKind(std::find(kKinds.begin(), kKinds.end(), kinds[0]) - kKinds.begin());
  MapReader r(v, what, v.loc(), f, KeysOf(st.kind));
  if (r.require("name", "a short unique name, e.g. `name: lock expired accounts`"))
    if (auto n = r.str("name")) {
      st.name = *n;
      if (st.name.empty() || !NoControl(st.name).empty())
        f.error(r.get("name")->loc(), "invalid-value", "the name of " + what + " must be non-empty printable text");
    }
  if (const Value* n = r.get("nodes")) {
    st.nodes_where = n->loc();
    if (n->is_scalar()) st.nodes = {n->str()};
    else if (auto ns = r.strings("nodes")) st.nodes = *ns;
  }
  const Value* kv = r.get(kinds[0]);
  switch (st.kind) {
    case StepKind::Apply: {
      if (kv->is_scalar() && kv->str() == "all") break;
      if (kv->is_scalar()) {
        f.error(kv->loc(), "wrong-type", "'apply' takes `all` or a list of modules, e.g. [docker, services]");
        break;
      }
      if (auto m = r.strings("apply")) st.modules = *m;
      break;
    }
    case StepKind::Accounts: {
      if (auto a = r.one_of("accounts", {"lock", "remove", "archive", "end_sessions", "report", "snapshot", "delete_data"}))
        st.action = *a == "lock"          ? AccountAction::Lock
                    : *a == "remove"      ? AccountAction::Remove
                    : *a == "archive"     ? AccountAction::Archive
                    : *a == "report"      ? AccountAction::Report
                    : *a == "snapshot"    ? AccountAction::Snapshot
                    : *a == "delete_data" ? AccountAction::DeleteData
                                          : AccountAction::EndSessions;
      const bool snap = st.action == AccountAction::Snapshot;
      if (snap && r.require("to", "the directory (on the homes' btrfs filesystem) that keeps the snapshots"))
        if (auto to = r.str("to")) {
          if (!PlainPath(*to)) f.error(r.get("to")->loc(), "invalid-value", "'to' must be a plain absolute path");
          else st.snapshot_to = *to;
        }
      if (!snap)
        for (const char* k : {"to", "keep"})
          if (r.get(k))
            f.error(r.key_loc(k), "invalid-value", std::string("'") + k + "' only goes with `accounts: snapshot`");
      if (auto k = r.integer("keep", 0, 1000); k && snap) st.keep = *k;
      if (auto h = r.str("homes")) {
        if (!snap && st.action != AccountAction::DeleteData)
          f.error(r.key_loc("homes"), "invalid-value", "'homes' only goes with `accounts: snapshot` or `accounts: delete_data`");
        else if (!PlainPath(*h))
          f.error(r.get("homes")->loc(), "invalid-value",
                  "'homes' must be a plain absolute path: the directory that holds each account's home as NAME");
        else
          st.homes = *h;
      }
      const Value* u = r.get("users");
      if (!u)
        r.require("users", "`expired` or a list of account names");
      else if (u->is_scalar() && u->str() == "expired")
        st.expired = true;
      else if (u->is_scalar())
        f.error(u->loc(), "invalid-value", "'users' must be `expired` or a list of account names, got " + DescribeValue(*u));
      else if (auto names = r.strings("users"))
        st.users = *names;
      if (auto w = r.integer("within", 0, 3650)) {
        st.within_days = *w;
        if (!st.expired) f.error(r.key_loc("within"), "invalid-value", "'within' only goes with `users: expired`");
      }
      break;
    }
    case StepKind::WaitIdle: {
      if (!kv->is_null() && !(kv->is_scalar() && kv->as_bool() == true))
        f.error(kv->loc(), "wrong-type", "write `wait_idle: true` (options are the step's own keys: on_busy, timeout)");
      if (auto b = r.one_of("on_busy", {"skip", "wait", "fail"}))
        st.on_busy = *b == "skip" ? OnBusy::Skip : *b == "wait" ? OnBusy::Wait : OnBusy::Fail;
      if (auto t = Duration(r, "timeout", f)) st.timeout_s = *t;
      break;
    }
    case StepKind::Command: {
      st.argv = Argv(r, "command", f, true);
      st.unless = Argv(r, "unless", f, false);
      if (auto c = r.str("creates")) {
        st.creates = *c;
        if (st.creates.empty() || st.creates[0] != '/' || !NoControl(st.creates).empty())
          f.error(r.get("creates")->loc(), "invalid-value", "'creates' must be an absolute path on the node");
      }
      if (auto t = Duration(r, "timeout", f)) st.command_timeout_s = *t;
      break;
    }
    case StepKind::Snapshot: {
      auto plain = PlainPath;
      if (!kv->is_scalar() || !plain(kv->str()))
        f.error(kv->loc(), "invalid-value", "'snapshot' takes the btrfs subvolume to snapshot, a plain absolute path");
      else if (std::string base = kv->str().substr(kv->str().rfind('/') + 1);
               base.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") !=
               std::string::npos)
        f.error(kv->loc(), "invalid-value",
                "the last part of 'snapshot' names the snapshots: use letters, digits, '.', '_' and '-' only");
      else
        st.snapshot_of = kv->str();
      if (r.require("to", "the directory (on the same btrfs filesystem) that keeps the snapshots"))
        if (auto to = r.str("to")) {
          if (!plain(*to)) f.error(r.get("to")->loc(), "invalid-value", "'to' must be a plain absolute path");
          else st.snapshot_to = *to;
        }
      if (auto k = r.integer("keep", 0, 1000)) st.keep = *k;
      break;
    }
    case StepKind::Reboot: {
      if (auto w = r.one_of("reboot", {"when_required", "always"})) st.reboot_always = *w == "always";
      if (auto t = Duration(r, "timeout", f)) st.reboot_timeout_s = *t;
      st.batch = 1;
      break;
    }
    case StepKind::Confirm: {
      if (!kv->is_scalar() || kv->str().empty())
        f.error(kv->loc(), "wrong-type", "'confirm' takes the question to ask, e.g. `confirm: delete the homes listed above?`");
      else
        st.message = kv->str();
      break;
    }
  }
  if (st.kind == StepKind::Apply || st.kind == StepKind::Command || st.kind == StepKind::Reboot) {
    if (auto b = r.integer("batch", 1, 100000)) st.batch = int(*b);
    st.health = Argv(r, "health", f, false);
  }
  ok = true;
  return st;
}

}  // namespace

Playbook ParsePlaybook(const std::string& text, const std::string& file, Findings& f) {
  Playbook pb;
  pb.file = file;
  pb.name = std::filesystem::path(file).stem().string();
  Value doc = ParseYaml(text, file, f);
  if (f.has_errors()) return pb;
  Location top{file, 1, 1};
  if (!doc.is_map()) {
    f.error(doc.loc().known() ? doc.loc() : top, "wrong-type", "a playbook is a map with `steps:` (and description, nodes)");
    return pb;
  }
  MapReader r(doc, "the playbook", top, f, kTopKeys);
  if (auto d = r.str("description")) pb.description = *d;
  if (const Value* n = r.get("nodes")) {
    pb.nodes_where = n->loc();
    if (n->is_scalar()) pb.nodes = {n->str()};
    else if (auto ns = r.strings("nodes")) pb.nodes = *ns;
  }
  if (!r.require("steps", "a list of steps")) return pb;
  const Value* steps = r.seq("steps");
  if (!steps) return pb;
  if (steps->items().empty()) f.error(steps->loc(), "invalid-value", "'steps' is empty: a playbook does something");
  std::set<std::string> names;
  for (size_t i = 0; i < steps->items().size(); ++i) {
    bool ok = false;
    PlaybookStep st = ParseStep(steps->items()[i], i, f, ok);
    if (!ok) continue;
    if (!st.name.empty() && !names.insert(st.name).second)
      f.error(st.where, "duplicate-step", "two steps are named '" + st.name + "': --from needs names to be unique");
    pb.steps.push_back(std::move(st));
  }
  return pb;
}

std::vector<const UserDef*> SelectAccounts(const PlaybookStep& step, const Inventory& inv, long long today) {
  std::vector<const UserDef*> out;
  for (const auto& u : inv.users) {
    if (step.expired) {
      auto d = DaysOfDate(u.expires);
      if (d && *d <= today + step.within_days) out.push_back(&u);
    } else if (std::find(step.users.begin(), step.users.end(), u.name) != step.users.end()) {
      out.push_back(&u);
    }
  }
  return out;
}

Inventory AccountsInventory(const PlaybookStep& step, const Inventory& inv, long long today) {
  Inventory out = inv;
  std::set<std::string> chosen;
  for (const UserDef* u : SelectAccounts(step, inv, today)) chosen.insert(u->name);
  if (step.action == AccountAction::Lock) {
    // A directory account stays, expired since 1970-01-02: the directory module writes shadowExpire: 1, which
    // every node's sssd/nslcd reads as locked (the users module never touches it).
    for (auto& u : out.users)
      if (chosen.count(u.name) && u.accounts == "directory") u.expires = "1970-01-02";
    // An account that leaves the inventory is locked by the users module where it exists (usermod -e 1) and
    // never created where it does not: a rerun after the accounts were deleted changes nothing.
    std::erase_if(out.users, [&](const UserDef& u) { return chosen.count(u.name) > 0 && u.accounts != "directory"; });
    return out;
  }
  // No inventory change: the runner kills processes (end_sessions), only reads (report), or works on btrfs
  // snapshots and data directories itself (snapshot, delete_data).
  if (step.action == AccountAction::EndSessions || step.action == AccountAction::Report ||
      step.action == AccountAction::Snapshot || step.action == AccountAction::DeleteData)
    return out;
  for (auto& u : out.users) {
    if (!chosen.count(u.name)) continue;
    u.remove = true;
    u.archive_home = step.action == AccountAction::Archive;
  }
  return out;
}

std::vector<std::string> AccountsModules(const Inventory& inv) {
  if (const Value* d = inv.lab.find("directory"); d && !d->is_null()) return {"users", "directory"};
  return {"users"};
}

std::string AccountsRefusal(const PlaybookStep& step, const Inventory& inv, const std::vector<const NodeDef*>& nodes,
                            long long today) {
  if (step.action == AccountAction::Report) return "";  // it only reads
  for (const UserDef* u : SelectAccounts(step, inv, today)) {
    if (u->name == "root") return "the account root is never locked or removed by a playbook";
    for (const NodeDef* n : nodes)
      if (inv.ssh(*n).user == u->name)
        return "the account " + u->name + " is the one labfleet logs in as on " + n->name +
               " (ssh.user): locking or removing it would lock labfleet out; change ssh.user first";
  }
  return "";
}

void ValidatePlaybook(const Playbook& pb, const Inventory& inv, Findings& f) {
  if (!pb.nodes.empty()) {
    Findings unknown;
    inv.select(pb.nodes, &unknown);
    for (const auto& u : unknown.items()) f.error(pb.nodes_where, "unknown-node", u.message);
  }
  std::vector<std::string> module_names;
  for (const auto& m : Modules()) module_names.push_back(m->name());
  for (const auto& st : pb.steps) {
    const std::string what = "step '" + st.name + "'";
    if (!st.nodes.empty()) {
      Findings unknown;
      inv.select(st.nodes, &unknown);
      for (const auto& u : unknown.items()) f.error(st.nodes_where, "unknown-node", what + ": " + u.message);
    }
    for (const auto& m : st.modules)
      if (!FindModule(m)) {
        std::string msg = what + " applies the module '" + m + "', which does not exist";
        if (auto s = Suggest(m, module_names)) msg += "; did you mean '" + *s + "'?";
        f.error(st.where, "unknown-module", msg);
      }
    if (st.kind != StepKind::Accounts) continue;
    for (const auto& name : st.users)
      if (!inv.user(name)) {
        std::vector<std::string> names;
        for (const auto& u : inv.users) names.push_back(u.name);
        std::string msg = what + " names the account '" + name + "', which the inventory does not define";
        if (auto s = Suggest(name, names)) msg += "; did you mean '" + *s + "'?";
        f.error(st.where, "unknown-user", msg);
      }
    // What the step would apply must itself be a valid inventory (lab.home_archive for archive, the login user
    // never locked). Checked with every account the step could ever select, so the verdict does not depend on
    // today's date: `expired` selects every account with an `expires`.
    PlaybookStep all = st;
    if (all.expired) all.within_days = 1LL << 40;
    std::vector<const NodeDef*> every;
    for (const auto& n : inv.nodes) every.push_back(&n);
    if (std::string why = AccountsRefusal(all, inv, every, TodayDays()); !why.empty())
      f.error(st.where, "locks-out-login", what + ": " + why);
    Findings sub;
    ValidateInventory(AccountsInventory(all, inv, TodayDays()), sub);
    for (const auto& x : sub.items())
      if (x.severity == Severity::Error)
        f.error(st.where, x.code, what + " (" + std::string(AccountActionName(st.action)) + "): " + x.message +
                                      " [at " + x.where.str() + "]");
  }
}

std::string PlaybooksDir(const std::string& inventory_dir) {
  std::filesystem::path p(inventory_dir);
  while (!p.empty() && !p.has_filename()) p = p.parent_path();  // "inventory/" -> "inventory"
  std::filesystem::path parent = p.parent_path();
  return (parent.empty() ? std::filesystem::path("playbooks") : parent / "playbooks").string();
}

std::string PlaybookPath(const std::string& inventory_dir, const std::string& name) {
  std::error_code ec;
  if (name.find('/') != std::string::npos || name.ends_with(".yaml"))
    if (std::filesystem::is_regular_file(name, ec)) return name;
  return (std::filesystem::path(PlaybooksDir(inventory_dir)) / (name + ".yaml")).string();
}

size_t ValidatePlaybooksDir(const std::string& inventory_dir, const Inventory& inv, Findings& f) {
  std::error_code ec;
  const std::string dir = PlaybooksDir(inventory_dir);
  if (!std::filesystem::is_directory(dir, ec)) return 0;
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec))
    if (e.path().extension() == ".yaml" && e.is_regular_file(ec)) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    Findings pf;
    Playbook pb = ParsePlaybook(ss.str(), path, pf);
    ValidatePlaybook(pb, inv, pf);  // the steps that could be read: every finding in one pass
    for (const auto& x : pf.items()) f.add(x);
  }
  return files.size();
}

}  // namespace labfleet
