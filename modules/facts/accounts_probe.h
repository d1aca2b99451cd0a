// Facts shared by the account modules (same names, so each runs and is parsed once per node) and the users
// that land on a node. The list of accounts labfleet manages lives on the node in /var/lib/labfleet/managed-users.
#pragma once
#include <set>
#include <string>
#include <vector>

#include "modules/facts/accounts.h"
#include "engine/module.h"

namespace labfleet {

inline constexpr const char* kManagedUsersFile = "/var/lib/labfleet/managed-users";

// The account facts, each parsed once per node however many modules and users read it. The getent ones are
// required: a getent that fails (exit 2 with no output when NSS is broken) must not read as "no such user".
extern const Fact<Parsed<PasswdEntry>> kPasswd;   // "getent-passwd"
extern const Fact<Parsed<GroupEntry>> kGroup;     // "getent-group"
extern const Fact<Parsed<ShadowEntry>> kShadow;   // "getent-shadow"
// "managed-users": the names in kManagedUsersFile; absent (cat fails) = none, so not required.
extern const Fact<std::set<std::string>> kManagedUsers;

// Users whose `on:` selects this node, in inventory order (including `remove: true` ones).
std::vector<const UserDef*> UsersOnNode(const NodeContext& ctx);

}  // namespace labfleet
