// The settings maps of an inventory as written, before merging: for a module's validate(), which checks each
// place a key is written once (a node's effective settings repeat what its groups and the defaults say).
#pragma once
#include "engine/inventory.h"
#include "engine/value.h"

namespace labfleet {

// Calls `layer(const Value&)` on lab.defaults (when present), then on each group's map, then on each node's own
// map, in inventory order: the order Inventory::settings merges them.
template <class F>
void ForEachSettingsLayer(const Inventory& inv, F&& layer) {
  if (const Value* d = inv.lab.find("defaults")) layer(*d);
  for (const auto& g : inv.groups) layer(g.raw);
  for (const auto& n : inv.nodes) layer(n.raw);
}

}  // namespace labfleet
