#include "engine/accounts_probe.h"

#include "engine/shell.h"

namespace labfleet {

Probe PasswdProbe() { return {"getent-passwd", "getent passwd"}; }
Probe GroupProbe() { return {"getent-group", "getent group"}; }
Probe ShadowProbe() { return {"getent-shadow", "getent shadow"}; }
Probe ManagedProbe() { return {"managed-users", Cmd("cat").arg(kManagedUsersFile).str()}; }

std::vector<const UserDef*> UsersOnNode(const NodeContext& ctx) {
  std::vector<const UserDef*> out;
  for (const auto& u : ctx.inv.users)
    if (ctx.inv.user_on_node(u, ctx.node)) out.push_back(&u);
  return out;
}

std::string HomeOf(const UserDef& u) { return u.home.empty() ? "/home/" + u.name : u.home; }
std::string PrimaryGroupOf(const UserDef& u) { return u.primary_group.empty() ? u.name : u.primary_group; }

}  // namespace labfleet
