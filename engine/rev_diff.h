// What changes for each node between two versions of the inventory (`labfleet diff REV1 REV2`): the blast
// radius of a merge request, offline, without touching a node. Pure over two loaded Inventories.
//
// A node's desired state is compared through what feeds it: its effective settings (Inventory::settings, key by
// key: docker, files, mounts, ...), the lab-wide keys outside `defaults` (which every node reads), the accounts
// that land on it (users by `on:`, and the user groups), and the bytes every `template:` renders to and every
// `source:` file holds for it, at each version. A template that cannot be rendered at one version is reported
// as such (the diff never throws for a bad inventory; validate says what is wrong).
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/inventory.h"

namespace labfleet {

struct NodeDelta {
  std::string node;
  char status = '~';               // '+' only in the new version, '-' only in the old, '~' in both
  std::vector<std::string> lines;  // "~ settings docker", "+ user alice", "~ file /etc/motd (template motd.mustache)"
};

// Nodes whose desired state differs, in the new version's node order (then removed nodes); unchanged nodes are
// left out.
std::vector<NodeDelta> DiffInventories(const Inventory& before, const Inventory& after);

nlohmann::json NodeDeltaToJson(const NodeDelta& d);

}  // namespace labfleet
