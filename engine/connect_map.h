// --connect-map FILE: run against stand-ins of the inventory's nodes (a staging copy, or the sandbox nodes
// of `make demo`) without editing the inventory. FILE has the shape of a nodes section:
//
//   nodes:
//     asahi: { address: 127.0.0.1, ssh: { port: 40123, user: root, identity: /tmp/sbx/id_ed25519 } }
//
// For each listed node the inventory's address is replaced, its ssh settings are replaced key by key, and
// any pinned host_key/jump is dropped (the stand-in has its own key: use --known-hosts). Nodes of the
// map that the inventory lacks are errors; inventory nodes the map lacks are left as they are.
#pragma once
#include <string>

#include "engine/finding.h"
#include "engine/inventory.h"

namespace labfleet {

void ApplyConnectMap(Inventory& inv, const std::string& file, Findings& findings);

}  // namespace labfleet
