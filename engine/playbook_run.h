// The playbook runner: a Playbook's steps, in order, over the selected nodes (`labfleet run`, engine/cmd_run.cc).
//
// Contracts:
//   - dry run (the default): nothing is written on any node. Steps that converge (apply, accounts) are planned
//     and print the changes they would make; wait_idle reads the busy verdict; command prints the argv and its
//     guard; confirm prints its question. Reads only (the same probe round trip as `plan`);
//   - real run: every step in order. A node that cannot be reached, fails its apply or command, or fails its
//     health check fails the step; the run stops after that step (for a batched step, after the failing batch:
//     later batches are never started) and says which step to resume with `--from`;
//   - wait_idle reads the planner's busy verdict (engine/busy.h) and fails safe: a node whose state is unknown,
//     or that cannot be planned, counts as busy. Skipped nodes take no part in the later steps and are listed;
//   - an accounts step applies only the users module, with the inventory changed as AccountsInventory says, and
//     proves it like apply does (a re-plan of that inventory is empty);
//   - `stop` (SIGINT/SIGTERM) is read before each step and each batch: nothing new starts after it;
//   - every result goes through the Reporter (text, or doc()["steps"] with --format json).
// Every step is safe to run again (apply and accounts converge; a command has `unless`/`creates`), so an
// interrupted run is resumed by running it again, or from a step with --from.
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
#include "engine/playbook.h"
#include "engine/reporter.h"
#include "engine/transport.h"

namespace labfleet {

// What touches nodes, faked in unit tests.
struct RunnerOps {
  // Throws TransportError when the node cannot be reached.
  std::function<std::unique_ptr<Transport>(const Inventory&, const NodeDef&)> connect;
  std::function<NodePlan(const Inventory&, const NodeDef&, Transport&, const PlanOptions&)> plan;
  std::function<NodeApplyResult(const Inventory&, const NodeDef&, const NodePlan&, Transport&, const ApplyOptions&)>
      apply;
  // Waits `d`; false when `stop` was set meanwhile.
  std::function<bool(std::chrono::seconds d, const std::atomic<bool>* stop)> wait;
  std::function<std::chrono::steady_clock::time_point()> now;
  // Asks the confirm step's question; true = go on. Only called in a real run without --yes.
  std::function<bool(const std::string& question)> confirm;
};
// Connect(), PlanNode(), ApplyNode(), a sleeping wait and the steady clock; `copts` must outlive the result.
RunnerOps RealRunnerOps(const ConnectOptions& copts);

struct RunnerOptions {
  bool execute = false;  // --yes or --ask; false = dry run
  bool ask = false;      // --ask: confirm steps ask RunnerOps::confirm; otherwise --yes answers them
  size_t from = 0;       // first step (index); earlier steps are reported as skipped
  int parallel = 16;
  ApplyOptions apply;    // run id, who, commit (ApplyOptions::plan is set per step)
  long long today_days = 0;  // for `users: expired`
  long long drain_s = 0;     // --drain: wait_idle steps with on_busy: skip wait up to this long first (0 = no)
};

struct StepNodeResult {
  std::string node;
  std::string status;  // planned, changed, unchanged, failed, unreachable, skipped, busy, idle, ok, would-run
  std::string detail;  // what happened, one line
  std::vector<std::string> changes;  // change lines ("+ user ...") of a plan or an apply
};

struct StepResult {
  std::string name, kind;
  std::string status;  // done, failed, skipped (before --from), not-started, stopped, declined, dry-run
  std::vector<StepNodeResult> nodes;
  std::vector<std::string> notes;
};

struct PlaybookRun {
  std::vector<StepResult> steps;
  bool ok = true;                    // no step failed and the run was not stopped or declined
  std::string stopped_at;            // the step the run stopped in ("" = it ran to the end)
  std::vector<std::string> skipped;  // nodes a wait_idle step left out, with why
};

PlaybookRun RunPlaybook(const Playbook& pb, const Inventory& inv, const std::vector<const NodeDef*>& nodes,
                       const RunnerOptions& opts, const RunnerOps& ops, const std::atomic<bool>* stop);

// Text lines and doc()["playbook"] / doc()["steps"].
void ReportRun(Reporter& rep, const Playbook& pb, const PlaybookRun& r, const RunnerOptions& opts);

}  // namespace labfleet
