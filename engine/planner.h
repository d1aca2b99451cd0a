// Planner: probe → diff → Plan. Never writes. All probes of a node travel in ONE round trip: a script that
// runs each (deduplicated by key) probe with stdin from nothing and prints its output, exit status and the
// first lines of its stderr between markers that carry a per-run nonce, so no probe output can forge a
// boundary. A required probe (Probe::required, Fact::required) that fails stops the node: nothing is planned.
// `labfleet facts` (engine/facts.h) runs its facts through the same script and parser.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "engine/busy.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/transport.h"

namespace labfleet {

struct Note {
  std::string resource;
  std::string text;  // "nothing to do because ..."
};

// What makes a node busy (GpuJob, BusyInfo, ParseBusy: busy / idle / unknown with reasons): engine/busy.h.

// Handlers deferred by an earlier run (their inputs changed, the restart did not happen yet); kept on the
// node in /var/lib/labfleet/pending-handlers so a later run does them even though the files now match.
struct PendingHandler {
  std::string handler, command;
  bool disruptive = false;
};
std::vector<PendingHandler> ParsePendingHandlers(const std::string& text);  // pure
std::string PendingHandlersFile(const std::vector<PendingHandler>& handlers);

struct PlanOptions {
  bool force = false;              // apply disruptive changes even on a busy node (or one whose state is unknown)
  std::vector<std::string> only;   // module names; empty = every module
  // false: PlanNode leaves the busy probe out of the first round trip and asks it, in a second script on the same
  // channel, only when the plan has a disruptive change (plan, apply, status: a converged node is never asked).
  // true (the default): in the first round trip, so NodePlan::busy is always known (playbooks' wait_idle).
  bool always_busy = true;
};

struct NodePlan {
  std::string node;
  bool reachable = true;
  std::string error;  // why the node could not be planned (unreachable, probe failure, a resource conflict)
  std::vector<Change> changes;  // in apply order
  std::vector<Note> notes;
  std::vector<Note> warnings;  // DiffResult::warnings, printed even when the node has no changes
  std::vector<Change> deferred;  // disruptive changes held back: the node is busy, or whether it is is unknown
  BusyInfo busy;                 // ParseBusy of the built-in busy probe (engine/busy.h)
  // The node's /var/lib/labfleet/state.json as the probe read it ("" when absent): a no-op apply whose record
  // would not change sends nothing to the node (ApplyNode).
  std::string recorded_state;
  std::vector<DiffResult::Record> records;  // bookkeeping the next apply writes (DiffResult::records); not changes
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
// "passwd-file failed (exit 2): <first line of its stderr>"
std::string RequiredFailure(const std::string& key, const ProbeOutput& o);

// Every resource of every module for one node, in module order.
std::vector<std::pair<const Module*, std::vector<Resource>>> NodeResources(const NodeContext& ctx,
                                                                           const PlanOptions& opts = {});

// The probes PlanNode sends in its round trip for `node` (built-in ones, every module's, files batched).
std::vector<Probe> NodeProbes(const Inventory& inv, const NodeDef& node, const PlanOptions& opts = {});
// Plans one node over `transport` (one round trip). Transport errors propagate (TransportError).
NodePlan PlanNode(const Inventory& inv, const NodeDef& node, Transport& transport, const PlanOptions& opts = {});
// The pure half: diffs given probe results (including the built-in busy and pending-handler probes).
NodePlan DiffNode(const Inventory& inv, const NodeDef& node, const ProbeResults& results,
                  const PlanOptions& opts = {});
inline constexpr const char* kPendingHandlersFile = "/var/lib/labfleet/pending-handlers";
inline constexpr const char* kStateFile = "/var/lib/labfleet/state.json";



// True for files read when someone logs in (sshd, PAM, sudo, NSS, the account files) and for anything under the
// login user's ~/.ssh: a change to one is followed by a fresh-login check (Change::reconnect_check).
bool LoginSensitivePath(const std::string& path, const std::string& login_home);

}  // namespace labfleet
