// The pure planning of modules/user_groups.cc that the unit tests call (tests/unit/test_directory_local.cc).
#pragma once
#include <set>
#include <string>
#include <vector>

#include "modules/directory_client.h"

namespace labfleet {

// Which directory users the node's /etc/group line of `group` gains and loses. `live_members`: the line's member
// names now; `want`: the directory users of this node that the inventory puts in the group; `directory_users`:
// every inventory user with accounts: directory (only those are ever taken out: other names in the line are
// not labfleet's to remove); `resolving`: the names NSS resolves on the node (gpasswd -a needs that). A wanted
// name that does not resolve is not added: `waiting` says why, one message per name. Pure.
struct MembersPlan {
  std::vector<std::string> add, remove;
  std::vector<std::string> waiting;
};
MembersPlan PlanDirectoryMembers(const std::string& group, const std::vector<std::string>& live_members,
                                 const std::vector<std::string>& want, const std::set<std::string>& directory_users,
                                 const std::set<std::string>& resolving);

}  // namespace labfleet
