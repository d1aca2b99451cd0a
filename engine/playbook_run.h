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
//   - accounts snapshot/delete_data are the runner's own node scripts (under the node lock): delete_data deletes
//     only for the accounts a snapshot step of this run checked, or whose home this run's archive step archived
//     on that node (PlaybookStep, AccountAction::DeleteData);
//   - reboot steps reboot only with RunnerOptions::reboot, only idle nodes, and a node counts as back only with a
//     new boot id; its checks run on the new connection before the next batch starts;
//   - `stop` (SIGINT/SIGTERM) is read before each step and each batch: nothing new starts after it;
//   - every result goes through the Reporter (text, or doc()["steps"] with --format json).
// Every step is safe to run again (apply and accounts converge; a command has `unless`/`creates`), so an
// interrupted run is resumed by running it again, from a step with --from, or with --resume (progress records,
// RunnerOptions::resume).
#pragma once
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <set>
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
  // Progress records (real runs): after an apply, accounts or command step succeeded on a node, the node records
  // it in /var/lib/labfleet/playbooks/NAME.progress (the run id, `playbook_id`, the steps done); a run that
  // ends with every step done removes the records. --resume reads them first: on each node the steps its record
  // lists for the same playbook text (`playbook_id`) are skipped ("done-earlier"). wait_idle and confirm steps
  // are never skipped: a node's busy state is checked again, and a question asked again.
  bool resume = false;
  std::string playbook_id;  // Sha256Hex of the playbook file
  int parallel = 16;
  ApplyOptions apply;    // run id, who, commit (ApplyOptions::plan is set per step)
  long long today_days = 0;  // for `users: expired`
  long long drain_s = 0;     // --drain: wait_idle steps with on_busy: skip wait up to this long first (0 = no)
  bool reboot = false;       // --reboot: reboot steps reboot (otherwise they list the nodes that need one)
};

// One account on one node, from an `accounts: report` step. Everything but `user` and `expires` came from the node
// (untrusted): sanitised by ParseAccountReport.
struct AccountReportRow {
  std::string node, user, expires;
  std::string home;         // "" when the node's passwd entry gave no usable path
  long long home_kib = -1;  // -1: unknown (no such directory, unreadable, du timed out)
  std::string last_login;   // "never", "unknown", or lastlog's port/from/time with blanks collapsed
};

// Pure: the node's "NAME<TAB>HOME<TAB>KIB<TAB>LASTLOG-LINE" lines into rows for the accounts in `names` (lines for
// other names, or malformed, are skipped; control characters dropped; fields bounded).
std::vector<AccountReportRow> ParseAccountReport(const std::string& out, const std::vector<std::string>& names);
// RFC 4180 CSV with a header (node,user,expires,home,home_kib,last_login); every field quoted, and a field that a
// spreadsheet would run as a formula (= + - @ at its start) gets a leading apostrophe.
std::string AccountReportCsv(const std::vector<AccountReportRow>& rows);

struct StepNodeResult {
  std::string node;
  std::string status;  // planned, changed, unchanged, failed, unreachable, skipped, busy, idle, would-run,
                       // not-started, done-earlier (--resume), pending (reboot without --reboot), listed (report)
  std::string detail;  // what happened, one line
  std::vector<std::string> changes;  // change lines ("+ user ...") of a plan or an apply
  std::vector<AccountReportRow> rows;  // accounts: report
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

// The node file of a playbook's progress record: /var/lib/labfleet/playbooks/NAME.progress, NAME reduced to
// [A-Za-z0-9._-] (other characters become '_'), at most 64 of them.
std::string ProgressFile(const std::string& playbook_name);
// Pure: the steps (indices below `steps`) a node's record lists for `playbook_id`, and the run id that wrote it;
// anything else (another playbook text, garbage, an index out of range) is ignored.
struct ProgressRecord {
  std::string run_id;
  std::set<size_t> done;
};
ProgressRecord ParseProgress(const std::string& text, const std::string& playbook_id, size_t steps);

// Text lines and doc()["playbook"] / doc()["steps"].
void ReportRun(Reporter& rep, const Playbook& pb, const PlaybookRun& r, const RunnerOptions& opts);

}  // namespace labfleet
