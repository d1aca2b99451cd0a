#include "modules/facts/accounts_probe.h"

#include "engine/shell.h"

namespace labfleet {

static std::set<std::string> ParseManaged(std::string_view text) {
  std::set<std::string> names;
  for (auto& l : SplitLines(text))
    if (!l.empty()) names.insert(l);
  return names;
}

const Fact<Parsed<PasswdEntry>> kPasswd{"getent-passwd", Cmd("getent").arg("passwd").str(), ParsePasswd, true};
const Fact<Parsed<GroupEntry>> kGroup{"getent-group", Cmd("getent").arg("group").str(), ParseGroup, true};
const Fact<Parsed<ShadowEntry>> kShadow{"getent-shadow", Cmd("getent").arg("shadow").str(), ParseShadow, true};
const Fact<std::set<std::string>> kManagedUsers{"managed-users", Cmd("cat").arg(kManagedUsersFile).str(),
                                                ParseManaged, false};

std::vector<const UserDef*> UsersOnNode(const NodeContext& ctx) {
  std::vector<const UserDef*> out;
  for (const auto& u : ctx.inv.users)
    if (ctx.inv.user_on_node(u, ctx.node)) out.push_back(&u);
  return out;
}


}  // namespace labfleet
