// user_groups: the inventory's groups (same GID on every node) and each user's personal group. A user group that
// lives in the directory (modules/directory.cc writes it because a directory user is in it) is not made locally
// on a node where no local user of the inventory is in it: a local copy would shadow the directory's group
// (`getent group` reads files first and would show it without its directory members).
#include <set>

#include "modules/facts/accounts_probe.h"
#include "engine/module.h"
#include "engine/shell.h"

namespace labfleet {
namespace {

struct GroupWant {
  std::string name;
  long long gid;
  std::string why;  // "user group" / "personal group of yseong"
};

class UserGroupsModule : public Module {
 public:
  std::string name() const override { return "user_groups"; }
  int order() const override { return 10; }

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
    for (const auto& g : ctx.inv.user_groups) {
      if (directory && g.gid >= 0 && in_directory.count(g.name) && !local.count(g.name)) continue;
      out.push_back({name(), "group:" + g.name, g.where, std::make_shared<GroupWant>(GroupWant{g.name, g.gid, "user group"})});
    }
    for (const UserDef* u : UsersOnNode(ctx)) {
      // A directory user's personal group is a posixGroup in the directory (modules/directory.cc).
      if (!u->primary_group.empty() || u->remove || u->accounts == "directory") continue;
      out.push_back({name(), "group:" + u->name, u->where,
                     std::make_shared<GroupWant>(GroupWant{u->name, u->uid, "personal group of " + u->name})});
    }
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>&) const override { return {kGroup.probe()}; }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
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
};

ModuleRegistrar registrar(std::make_unique<UserGroupsModule>());

}  // namespace
}  // namespace labfleet
