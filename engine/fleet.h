// Plan and apply across the selected nodes: what `plan`, `apply` and `status` share, out of the CLI so that it
// is unit-tested with fakes. The CLI parses options, asks for confirmation and hands results to the reporter
// (engine/plan_report.h); this file decides what happens to each node and in which order.
//
// Contracts:
//   - every node is planned in parallel (at most `parallel` at once) over its own connection, which is kept for
//     the apply; a connection error makes the node unreachable, any other error fails the node, and neither
//     stops the other nodes;
//   - a node whose plan has an error (or that was unreachable) is never applied;
//   - `stop` (SIGINT/SIGTERM) is read before each node starts: a node not yet started is reported as not
//     started and never touched; a node in flight is stopped by its transport (ConnectOptions::cancel);
//   - --drain: while disruptive changes are held back because the node is busy, the node is re-planned every
//     5 s over the same connection, for at most `drain` seconds in all, then applied with what it has.
// The three steps that touch nodes (connect, plan one node, apply one node) and the wait between re-plans are
// FleetOps; RealFleetOps() wires Connect(), PlanNode() and ApplyNode().
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/connect.h"
#include "engine/executor.h"
#include "engine/inventory.h"
#include "engine/planner.h"
#include "engine/transport.h"

namespace labfleet {

struct FleetOps {
  // Opens a connection to the node; `previous` is a live one to the same node (see Connect()). Throws
  // TransportError when the node cannot be reached.
  std::function<std::unique_ptr<Transport>(const NodeDef&, const Transport* previous)> connect;
  std::function<NodePlan(const NodeDef&, Transport&)> plan;
  std::function<NodeApplyResult(const NodeDef&, const NodePlan&, Transport&, const ApplyOptions&)> apply;
  // Waits `d` between two drain re-plans; returns false when `stop` was set meanwhile (the wait ends early).
  std::function<bool(std::chrono::seconds d, const std::atomic<bool>* stop)> wait;
  std::function<std::chrono::steady_clock::time_point()> now;
};

// Connect(inv, n, copts, previous), PlanNode(inv, n, t, popts), ApplyNode(inv, n, plan, t, opts), a wait that
// sleeps in 100 ms ticks watching `stop`, and the steady clock. `inv` must outlive the result.
FleetOps RealFleetOps(const Inventory& inv, const ConnectOptions& copts, const PlanOptions& popts);

struct NodeRun {
  std::unique_ptr<Transport> transport;  // null when the node could not be reached
  NodePlan plan;
};

// Plans every node; runs[i] belongs to nodes[i]. `keep_connections` false (plan, status): each node's connection
// is closed by its own thread as soon as it is planned (closing waits for the node's script loop to end, a few
// ms per node that would otherwise be paid one node after another when `runs` is destroyed); runs[i].transport
// is then null.
std::vector<NodeRun> PlanAll(const std::vector<const NodeDef*>& nodes, int parallel, const FleetOps& ops,
                             const std::atomic<bool>* stop, bool keep_connections = true);

struct PlanTotals {
  size_t changes = 0;        // on nodes that apply would change (a failed node's changes are not counted)
  size_t changed_nodes = 0;  // nodes with changes and no error
  size_t unchanged = 0;      // nodes with nothing to do
  size_t failed = 0;         // unreachable, or could not be planned
};
PlanTotals CountPlan(const std::vector<NodeRun>& runs);

struct ApplyOutcome {
  std::vector<NodeApplyResult> results;  // results[i] belongs to nodes[i]
  std::vector<std::string> mid_apply;    // nodes stopped by the interrupt while their apply ran
  std::vector<std::string> not_started;  // nodes the interrupt kept from starting
  size_t unchanged = 0, changed = 0, failed = 0, unreachable = 0;
};

// Called once per node as soon as its result is final (applied, failed, unreachable or not started), with how
// many nodes are done so far (1..total). Calls are serialised (never two at once) but come from the node threads.
using ApplyProgressFn = std::function<void(const NodeApplyResult& result, size_t done, size_t total)>;

// Applies every node of `runs` (from PlanAll over the same `nodes`), each with `opts` plus a reconnect that
// goes through ops.connect with the node's live connection as `previous`. `drain`: seconds, 0 = no waiting.
// Each node's connection is closed by its own thread once its result is final (runs[i].transport is null after).
ApplyOutcome ApplyAll(const std::vector<const NodeDef*>& nodes, std::vector<NodeRun>& runs, int parallel,
                      const FleetOps& ops, const ApplyOptions& opts, int drain, const std::atomic<bool>* stop,
                      const ApplyProgressFn& progress = {});

}  // namespace labfleet
