// Planner: probe → diff → Plan. Never writes. All probes of a node travel in ONE round trip: a script that
// runs each (deduplicated by key) probe with stdin from nothing and prints its output between markers that
// carry a per-run nonce, so no probe output can forge a boundary.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/transport.h"

namespace labfleet {

struct Note {
  std::string resource;
  std::string text;  // "nothing to do because ..."
};

struct NodePlan {
  std::string node;
  bool reachable = true;
  std::string error;  // why the node could not be planned (unreachable, probe failure, a resource conflict)
  std::vector<Change> changes;  // in apply order
  std::vector<Note> notes;
  int resources = 0;
  bool empty() const { return changes.empty(); }
};

struct Plan {
  std::vector<NodePlan> nodes;
  size_t change_count() const;
};

// The probe round trip, split into pure halves for tests.
std::string BuildProbeScript(const std::vector<Probe>& probes, const std::string& nonce);
// Throws std::runtime_error if a probe's markers are missing (output cut short).
ProbeResults ParseProbeOutput(const std::string& out, const std::vector<Probe>& probes, const std::string& nonce);
std::string NewNonce();

// Every resource of every module for one node, in module order.
std::vector<std::pair<const Module*, std::vector<Resource>>> NodeResources(const NodeContext& ctx);

// Plans one node over `transport` (one round trip). Transport errors propagate (TransportError).
NodePlan PlanNode(const Inventory& inv, const NodeDef& node, Transport& transport);
// The pure half: diffs given probe results.
NodePlan DiffNode(const Inventory& inv, const NodeDef& node, const ProbeResults& results);

// The command that runs a script sent on stdin: sh reads it whole first, so commands in it get EOF on stdin.
std::string ScriptRunner();

// Text and JSON renderings (the Reporter prints them).
std::string ChangeLine(const Change& c);  // "+ user yseong (uid 2001, groups gpu-users)"
nlohmann::json ChangeToJson(const Change& c);
nlohmann::json NodePlanToJson(const NodePlan& p);

}  // namespace labfleet
