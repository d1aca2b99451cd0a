// users: accounts with uid, primary and extra groups, shell, home (created from /etc/skel), full name,
// expiry (an expired account is locked by its expiry date, never deleted), an optional password hash
// (never printed). labfleet records the accounts it manages on the node; one that leaves the inventory
// (or whose `on:` no longer selects the node) is locked by expiry and reported, and deleted only when the
// inventory says `remove: true`. Accounts labfleet never managed are never touched.
#include <algorithm>
#include <set>

#include "engine/accounts_probe.h"
#include "engine/module.h"
#include "engine/shell.h"
#include "engine/text.h"

namespace labfleet {
namespace {

struct Retired {};  // the resource that locks accounts which left the inventory

std::string RegisterManaged(const std::string& user) {
  return Cmd("mkdir").arg("-p").arg("/var/lib/labfleet").str() + "\n" +
         Cmd("grep").arg("-qxF").arg("--").arg(user).arg(kManagedUsersFile).str() + " 2>/dev/null || " +
         Cmd("printf").arg("%s\\n").arg(user).raw(">>").arg(kManagedUsersFile).str();
}

std::string ForgetManaged(const std::string& user) {
  // Rewrites the list without `user` (atomic rename).
  return "if [ -f " + ShellQuote(kManagedUsersFile) + " ]; then " +
         Cmd("grep").arg("-vxF").arg("--").arg(user).arg(kManagedUsersFile).str() + " > " +
         ShellQuote(std::string(kManagedUsersFile) + ".new") + " || true; " +
         Cmd("mv").arg("-f").arg(std::string(kManagedUsersFile) + ".new").arg(kManagedUsersFile).str() + "; fi";
}

std::string SetPassword(const std::string& user, const std::string& hash) {
  // printf is a shell builtin: the hash never appears in a process's argv on the node.
  return Cmd("printf").arg("%s:%s\\n").arg(user).arg(hash).raw("|").then(Cmd("chpasswd").arg("-e")).str();
}

std::string Join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? sep : "") + v[i];
  return out;
}

class UsersModule : public Module {
 public:
  std::string name() const override { return "users"; }
  int order() const override { return 20; }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    for (const UserDef* u : UsersOnNode(ctx))
      out.push_back({name(), "user:" + u->name, u->where, std::shared_ptr<const UserDef>(u, [](const UserDef*) {})});
    out.push_back({name(), "users:retired", {}, std::make_shared<Retired>()});
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>&) const override {
    return {PasswdProbe(), GroupProbe(), ShadowProbe(), ManagedProbe()};
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    auto out = [&](const char* key) {
      const ProbeOutput* p = FindProbe(results, key);
      return p ? p->out : std::string();
    };
    auto passwd = ParsePasswd(out("getent-passwd"));
    auto shadow = ParseShadow(out("getent-shadow"));
    std::set<std::string> managed;
    for (auto& l : SplitLines(out("managed-users")))
      if (!l.empty()) managed.insert(l);
    if (r.id == "users:retired") return DiffRetired(ctx, passwd, shadow, managed);
    auto groups = ParseGroup(out("getent-group"));
    return DiffUser(ctx, r.as<UserDef>(), passwd, groups, shadow, managed);
  }

 private:
  DiffResult DiffUser(const NodeContext& ctx, const UserDef& u, const Parsed<PasswdEntry>& passwd,
                      const Parsed<GroupEntry>& groups, const Parsed<ShadowEntry>& shadow,
                      const std::set<std::string>& managed) const {
    DiffResult d;
    auto live = passwd.by_name.find(u.name);
    const std::string uid = std::to_string(u.uid);
    if (u.remove) {
      if (live == passwd.by_name.end()) return Noop("nothing to do because user " + u.name + " is absent (remove: true)");
      if (!managed.count(u.name))
        return Failure("user " + u.name + " is marked remove: true but was not created or adopted by labfleet on this node; delete it by hand if that is meant");
      Change c;
      c.sign = '-';
      c.summary = "user " + u.name + " (deleted: remove: true; home " + live->second.home + " kept)";
      c.reason = "remove: true in the inventory";
      c.command = Cmd("userdel").arg(u.name).str() + "\n" + ForgetManaged(u.name);
      d.changes.push_back(std::move(c));
      return d;
    }
    const std::string primary = PrimaryGroupOf(u);
    long long expire_days = u.expires.empty() ? -1 : DaysSinceEpoch(u.expires);
    // Holder of the uid under another name: a conflict an admin must resolve.
    for (const auto& p : passwd.in_order)
      if (p.uid == u.uid && p.name != u.name)
        return Failure("uid " + uid + " of user " + u.name + " is taken on this node by '" + p.name +
                       "'; give one of them another uid (usermod -u on the node), then apply again");
    // Which inventory groups should list the user as a member.
    std::vector<std::string> want_groups = u.groups;
    std::vector<std::string> add_groups, del_groups;
    for (const auto& g : ctx.inv.user_groups) {
      bool want = std::find(want_groups.begin(), want_groups.end(), g.name) != want_groups.end();
      auto lg = groups.by_name.find(g.name);
      bool is = lg != groups.by_name.end() &&
                std::find(lg->second.members.begin(), lg->second.members.end(), u.name) != lg->second.members.end();
      if (want && !is) add_groups.push_back(g.name);
      if (!want && is) del_groups.push_back(g.name);
    }
    if (live == passwd.by_name.end()) {
      Change c;
      c.sign = '+';
      c.summary = "user " + u.name + " (uid " + uid + (u.groups.empty() ? "" : ", groups " + Join(u.groups, ",")) +
                  (expire_days >= 0 && expire_days * 86400 < time(nullptr) ? ", expired: locked" : "") + ")";
      c.reason = "absent";
      Cmd add("useradd");
      add.arg("-u").arg(uid).arg("-g").arg(primary).arg("-s").arg(u.shell).arg("-d").arg(HomeOf(u)).arg("-m");
      add.arg("-k").arg("/etc/skel").arg("-c").arg(u.full_name);
      add.arg("-K").arg("SUB_UID_COUNT=0").arg("-K").arg("SUB_GID_COUNT=0");  // subids: the subids module
      if (!u.groups.empty()) add.arg("-G").arg(Join(u.groups, ","));
      if (expire_days >= 0) add.arg("-e").arg(u.expires);
      add.arg(u.name);
      c.command = add.str();
      if (!u.password_hash.empty()) {
        c.command += "\n" + SetPassword(u.name, u.password_hash);
        c.secret = true;
        c.redact.push_back(u.password_hash);
        c.summary += " (secret set)";
      }
      c.command += "\n" + RegisterManaged(u.name);
      d.changes.push_back(std::move(c));
      return d;
    }
    const PasswdEntry& p = live->second;
    std::vector<std::string> what;
    Cmd mod("usermod");
    bool mod_needed = false;
    if (p.uid != u.uid) {
      what.push_back("uid " + std::to_string(p.uid) + " -> " + uid);
      mod.arg("-u").arg(uid);
      mod_needed = true;
    }
    // The primary group's gid: the personal group's is the uid; an inventory group's is known; any other
    // group is looked up on the node.
    long long want_gid = -1;
    if (u.primary_group.empty()) want_gid = u.uid;
    else if (const UserGroupDef* g = ctx.inv.user_group(u.primary_group)) want_gid = g->gid;
    else if (auto pg = groups.by_name.find(primary); pg != groups.by_name.end()) want_gid = pg->second.gid;
    if (want_gid != p.gid) {
      what.push_back("primary group -> " + primary);
      mod.arg("-g").arg(primary);
      mod_needed = true;
    }
    if (p.shell != u.shell) {
      what.push_back("shell " + p.shell + " -> " + u.shell);
      mod.arg("-s").arg(u.shell);
      mod_needed = true;
    }
    if (p.home != HomeOf(u)) {
      what.push_back("home " + p.home + " -> " + HomeOf(u) + " (not moved)");
      mod.arg("-d").arg(HomeOf(u));
      mod_needed = true;
    }
    if (p.gecos != u.full_name) {
      what.push_back("full name");
      mod.arg("-c").arg(u.full_name);
      mod_needed = true;
    }
    auto sh = shadow.by_name.find(u.name);
    long long live_expire = sh == shadow.by_name.end() ? -1 : sh->second.expire;
    if (live_expire != expire_days) {
      what.push_back("expires " + (live_expire < 0 ? std::string("never") : DateFromDays(live_expire)) + " -> " +
                     (expire_days < 0 ? std::string("never") : u.expires));
      mod.arg("-e").arg(expire_days < 0 ? "" : u.expires);
      mod_needed = true;
    }
    std::string command;
    if (mod_needed) command = mod.arg(u.name).str();
    for (const auto& g : add_groups) {
      what.push_back("+group " + g);
      command += (command.empty() ? "" : "\n") + Cmd("gpasswd").arg("-a").arg(u.name).arg(g).str() + " >/dev/null";
    }
    for (const auto& g : del_groups) {
      what.push_back("-group " + g);
      command += (command.empty() ? "" : "\n") + Cmd("gpasswd").arg("-d").arg(u.name).arg(g).str() + " >/dev/null";
    }
    bool secret = false;
    if (!u.password_hash.empty() && (sh == shadow.by_name.end() || sh->second.hash != u.password_hash)) {
      what.push_back("secret changed");
      command += (command.empty() ? "" : "\n") + SetPassword(u.name, u.password_hash);
      secret = true;
    }
    if (!managed.count(u.name)) {
      what.push_back("adopted: now managed by labfleet");
      command += (command.empty() ? "" : "\n") + RegisterManaged(u.name);
    }
    if (what.empty())
      return Noop("nothing to do because user " + u.name + " matches (uid " + uid + ", " +
                  Counted(u.groups.size(), "group", "groups") + ")");
    Change c;
    c.sign = '~';
    c.summary = "user " + u.name + " (" + Join(what, ", ") + ")";
    c.reason = Join(what, ", ");
    c.command = command;
    c.secret = secret;
    if (secret) c.redact.push_back(u.password_hash);
    d.changes.push_back(std::move(c));
    return d;
  }

  DiffResult DiffRetired(const NodeContext& ctx, const Parsed<PasswdEntry>& passwd, const Parsed<ShadowEntry>& shadow,
                         const std::set<std::string>& managed) const {
    std::set<std::string> wanted;
    for (const UserDef* u : UsersOnNode(ctx)) wanted.insert(u->name);
    DiffResult d;
    int locked = 0;
    for (const auto& name : managed) {
      if (wanted.count(name) || !passwd.by_name.count(name)) continue;
      auto sh = shadow.by_name.find(name);
      if (sh != shadow.by_name.end() && sh->second.expire >= 0 && sh->second.expire <= 1) {
        ++locked;
        continue;
      }
      const UserDef* u = ctx.inv.user(name);
      Change c;
      c.sign = '-';
      c.resource = "user:" + name;
      c.summary = "user " + name + " (locked: " + (u ? "no longer on this node" : "removed from inventory") + ")";
      c.reason = "locked by expiry (usermod -e 1), not deleted; set remove: true in the inventory to delete it";
      c.command = Cmd("usermod").arg("-e").arg("1").arg(name).str();
      d.changes.push_back(std::move(c));
    }
    if (d.changes.empty())
      d.noop = "nothing to do because no managed account left the inventory" +
               (locked ? " (" + std::to_string(locked) + " already locked)" : std::string());
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<UsersModule>());

}  // namespace
}  // namespace labfleet
