// user_groups: the inventory's groups (same GID on every node) and each user's personal group. A user group that
// lives in the directory (modules/directory.cc writes it because a directory user is in it) is not made locally
// on a node where no local user of the inventory is in it: a local copy would shadow the directory's group
// (`getent group` reads files first and would show it without its directory members).
//
// Directory users in LOCAL groups (issue 13 §5): a group made locally on a directory client (a system group
// without a gid such as `docker`, or a group with a gid that a local user of the node is in) lists its directory
// users by name in the node's /etc/group line, without any local passwd entry (resource "members:GROUP", see
// PlanDirectoryMembers). `gpasswd -a` needs the name to resolve through NSS, so a directory user who does not
// resolve yet (sssd not configured or not running) is not added and the plan says so; inventory directory users
// who no longer belong (left the group, `remove: true`, `on:` elsewhere) are taken out; other names are kept.
#include <algorithm>
#include <set>

#include "modules/facts/accounts_probe.h"
#include "modules/user_groups.h"
#include "engine/module.h"
#include "engine/shell.h"
#include "engine/text.h"

namespace labfleet {

MembersPlan PlanDirectoryMembers(const std::string& group, const std::vector<std::string>& live_members,
                                 const std::vector<std::string>& want, const std::set<std::string>& directory_users,
                                 const std::set<std::string>& resolving) {
  MembersPlan p;
  auto in_line = [&](const std::string& n) {
    return std::find(live_members.begin(), live_members.end(), n) != live_members.end();
  };
  for (const auto& n : want) {
    if (in_line(n)) continue;
    if (resolving.count(n)) {
      p.add.push_back(n);
    } else {
      p.waiting.push_back("directory user " + n + " is not added to the local group " + group +
                          " yet: the name does not resolve through NSS on this node (sssd not configured or not "
                          "running yet), and gpasswd needs it to; the next apply after it resolves adds it");
    }
  }
  for (const auto& n : live_members)
    if (directory_users.count(n) && std::find(want.begin(), want.end(), n) == want.end() &&
        std::find(p.remove.begin(), p.remove.end(), n) == p.remove.end())
      p.remove.push_back(n);
  return p;
}

namespace {

struct MembersWant {
  std::string group;
  std::vector<std::string> want;          // directory users of this node listing the group, inventory order
  std::set<std::string> directory_users;  // every inventory user with accounts: directory
};

struct GroupWant {
  std::string name;
  long long gid;
  std::string why;  // "user group" / "personal group of yseong"
};

class UserGroupsModule : public Module {
 public:
  std::string name() const override { return "user_groups"; }
  int order() const override { return 10; }

  // A directory user in a system group (no gid: only ever local) is added to it only on directory clients she
  // is on; where that is no node at all, validate says so instead of the membership silently going nowhere.
  void validate(const Inventory& inv, Findings& f) const override {
    if (!inv.lab.find("directory")) return;
    std::vector<std::pair<const NodeDef*, bool>> clients;  // node, is a directory client
    for (const auto& n : inv.nodes) clients.emplace_back(&n, DirectoryClientOf(inv, n, inv.settings(n)).has_value());
    for (const auto& u : inv.users) {
      if (u.accounts != "directory" || u.remove) continue;
      bool somewhere = false;
      for (const auto& [n, client] : clients) somewhere |= client && inv.user_on_node(u, *n);
      if (somewhere) continue;
      for (const auto& g : u.groups)
        if (const UserGroupDef* ug = inv.user_group(g); ug && ug->gid < 0)
          f.warning(KeyLoc(u.raw, "groups"), "directory-local-group",
                    "directory user '" + u.name + "' is in the local group '" + g + "' (no gid: it lives in each "
                    "node's /etc/group, not in the directory), but no node she is on is a directory client "
                    "(lab.directory.uri, directory_client): she is added to it nowhere");
    }
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    std::set<std::string> in_directory, local;
    const bool directory = ctx.inv.lab.find("directory") != nullptr;
    for (const auto& u : ctx.inv.users) {
      const bool dir = u.accounts == "directory";  // removed ones too: the directory module still writes the group
      if (u.remove && !dir) continue;
      if (!dir && !ctx.inv.user_on_node(u, ctx.node)) continue;
      auto& into = dir ? in_directory : local;
      into.insert(u.groups.begin(), u.groups.end());
      if (!u.primary_group.empty()) into.insert(u.primary_group);
    }
    std::vector<const UserGroupDef*> made_here;
    for (const auto& g : ctx.inv.user_groups) {
      if (directory && g.gid >= 0 && in_directory.count(g.name) && !local.count(g.name)) continue;
      out.push_back({name(), "group:" + g.name, g.where, std::make_shared<GroupWant>(GroupWant{g.name, g.gid, "user group"})});
      made_here.push_back(&g);
    }
    for (const UserDef* u : UsersOnNode(ctx)) {
      // A directory user's personal group is a posixGroup in the directory (modules/directory.cc).
      if (!u->primary_group.empty() || u->remove || u->accounts == "directory") continue;
      out.push_back({name(), "group:" + u->name, u->where,
                     std::make_shared<GroupWant>(GroupWant{u->name, u->uid, "personal group of " + u->name})});
    }
    // On a directory client: the directory users in each group made here (after the groups: groupadd first).
    if (directory && DirectoryClientOfNode(ctx)) {
      const auto dir_users = DirectoryUsersOnClient(ctx);
      std::set<std::string> all_directory;
      for (const auto& u : ctx.inv.users)
        if (u.accounts == "directory") all_directory.insert(u.name);
      for (const UserGroupDef* g : made_here) {
        MembersWant m{g->name, {}, all_directory};
        for (const UserDef* u : dir_users)
          if (std::find(u->groups.begin(), u->groups.end(), g->name) != u->groups.end()) m.want.push_back(u->name);
        out.push_back({name(), "members:" + g->name, g->where, std::make_shared<MembersWant>(std::move(m))});
      }
    }
    return out;
  }

  std::vector<Probe> probes(const NodeContext& ctx, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out = {kGroup.probe()};
    for (const auto& r : rs)
      if (r.id.starts_with("members:")) {
        out.push_back(NssDirectoryProbe(ctx));
        break;
      }
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    if (r.id.starts_with("members:")) return DiffMembers(r.as<MembersWant>(), results);
    const auto& want = r.as<GroupWant>();
    const auto& groups = results.fact(kGroup);
    // A system group without a gid (docker, sudo): its gid may differ per node; only its existence is managed.
    if (want.gid < 0) {
      if (groups.by_name.count(want.name)) return Noop("nothing to do because system group " + want.name + " exists");
      DiffResult d;
      Change c;
      c.kind = Change::Kind::Exec;
      c.sign = '+';
      c.summary = "group " + want.name + " (system group)";
      c.reason = "absent";
      c.command = Cmd("groupadd").arg("--system").arg(want.name).str();
      d.changes.push_back(std::move(c));
      return d;
    }
    std::string gid = std::to_string(want.gid);
    const GroupEntry* holder = nullptr;
    for (const auto& g : groups.in_order)
      if (g.gid == want.gid && g.name != want.name) holder = &g;
    auto it = groups.by_name.find(want.name);
    if (it != groups.by_name.end() && it->second.gid == want.gid)
      return Noop("nothing to do because group " + want.name + " exists with gid " + gid);
    if (holder)
      return Failure("gid " + gid + " of group " + want.name + " is taken on this node by group '" + holder->name +
                     "'; give one of them another gid (inventory or groupmod on the node), then apply again");
    DiffResult d;
    Change c;
    c.kind = Change::Kind::Exec;
    if (it == groups.by_name.end()) {
      c.sign = '+';
      c.summary = "group " + want.name + " (gid " + gid + ")";
      c.reason = "absent (" + want.why + ")";
      c.command = Cmd("groupadd").arg("-g").arg(gid).arg(want.name).str();
    } else {
      c.sign = '~';
      c.summary = "group " + want.name + " (gid " + std::to_string(it->second.gid) + " -> " + gid + ")";
      c.reason = "gid drifted; files owned by the old gid keep it (find / -xdev -gid " +
                 std::to_string(it->second.gid) + ")";
      c.command = Cmd("groupmod").arg("-g").arg(gid).arg(want.name).str();
    }
    d.changes.push_back(std::move(c));
    return d;
  }

 private:
  static bool DirectoryClientOfNode(const NodeContext& ctx) {
    return DirectoryClientOf(ctx.inv, ctx.node, ctx.settings).has_value();
  }

  static DiffResult DiffMembers(const MembersWant& m, const ProbeResults& results) {
    const auto& groups = results.fact(kGroup);
    std::vector<std::string> live;
    if (auto it = groups.by_name.find(m.group); it != groups.by_name.end()) live = it->second.members;
    std::set<std::string> resolving;
    if (const ProbeOutput* n = FindProbe(results, kNssDirectoryKey))
      for (const auto& p : ParsePasswd(n->out).in_order) resolving.insert(p.name);
    MembersPlan p = PlanDirectoryMembers(m.group, live, m.want, m.directory_users, resolving);
    DiffResult d;
    d.warnings = p.waiting;
    if (p.add.empty() && p.remove.empty()) {
      d.noop = m.want.empty() ? "nothing to do because no directory user of this node is in group " + m.group
                              : "nothing to do because the local group " + m.group + " lists its directory users (" +
                                    Join(m.want, ",") + ")" + (p.waiting.empty() ? "" : " that resolve here");
      return d;
    }
    std::vector<std::string> what;
    std::string command;
    for (const auto& n : p.add) {
      what.push_back("+" + n);
      command += (command.empty() ? "" : "\n") + Cmd("gpasswd").arg("-a").arg(n).arg(m.group).str() + " >/dev/null";
    }
    for (const auto& n : p.remove) {
      what.push_back("-" + n);
      command += (command.empty() ? "" : "\n") + Cmd("gpasswd").arg("-d").arg(n).arg(m.group).str() + " >/dev/null";
    }
    Change c;
    c.kind = Change::Kind::Exec;
    c.sign = '~';
    c.summary = "group " + m.group + " members " + Join(what, ",") + " (directory users, by name in /etc/group)";
    c.reason = (p.add.empty() ? std::string() : "the inventory puts directory user" + std::string(p.add.size() > 1 ? "s " : " ") +
                                                   Join(p.add, ",") + " in the local group " + m.group +
                                                   " (no local account: the name resolves through NSS)") +
               (p.add.empty() || p.remove.empty() ? "" : "; ") +
               (p.remove.empty() ? std::string() : Join(p.remove, ",") + " no longer in it in the inventory");
    c.command = command;
    d.changes.push_back(std::move(c));
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<UserGroupsModule>());

}  // namespace
}  // namespace labfleet
