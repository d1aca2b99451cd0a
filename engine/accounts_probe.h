// Probes shared by the account modules (same keys, so each runs once per node) and the users that land on
// a node. The list of accounts labfleet manages lives on the node in /var/lib/labfleet/managed-users.
#pragma once
#include <string>
#include <vector>

#include "engine/accounts.h"
#include "engine/module.h"

namespace labfleet {

inline constexpr const char* kManagedUsersFile = "/var/lib/labfleet/managed-users";

Probe PasswdProbe();   // key "getent-passwd"
Probe GroupProbe();    // key "getent-group"
Probe ShadowProbe();   // key "getent-shadow"
Probe ManagedProbe();  // key "managed-users"

// Users whose `on:` selects this node, in inventory order (including `remove: true` ones).
std::vector<const UserDef*> UsersOnNode(const NodeContext& ctx);
std::string HomeOf(const UserDef& u);          // home or /home/<name>
std::string PrimaryGroupOf(const UserDef& u);  // primary_group or the personal group (= user name)

}  // namespace labfleet
