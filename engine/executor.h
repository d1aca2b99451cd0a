// Executor: runs a Plan on a node through a Transport. Dry-run is not a flag here: `plan` simply never
// calls the executor.
//
// One node = one apply round trip (a script on stdin) + one re-probe:
//   1. take the node lock /run/labfleet.lock (atomic create; holds run id, who, client host+pid, time,
//      commit). A held lock refuses the apply with the holder's details; a lock whose holder is a dead
//      process on this client host is reported as stale; --break-lock replaces either;
//   2. each change in order, in its own subshell with `set -e`; the first failure stops the node (later
//      changes are not attempted) and is reported with its output. Files are written atomically (temp in the
//      same directory, fsync, rename) after the previous version is copied to
//      /var/lib/labfleet/backup/<run-id>/<path>;
//   3. handlers (Notify), each once, in first-notified order, only when every change succeeded;
//   4. /var/lib/labfleet/state.json records commit, settings hash, who, when and run id;
//   5. the lock is released by an EXIT trap, also on failure.
// Then the node is planned again: the node is "changed" only if that re-plan is empty, otherwise "failed".
#pragma once
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/planner.h"

namespace labfleet {

struct ApplyOptions {
  std::string run_id;         // e.g. 20261123T153300Z-1a2b3c; names the backup directory
  std::string commit;         // inventory commit being applied ("" when not in git)
  std::string dirty;          // "" or "dirty" when --allow-dirty let uncommitted changes through
  std::string who;            // user@host of the admin
  std::string client_host;    // this machine's host name (stale-lock detection)
  long client_pid = 0;        // this process (stale-lock detection)
  bool break_lock = false;
  PlanOptions plan;  // for the re-probe (same --force as the plan)
  // Opens a fresh connection to the node (for Change::reconnect_check). Empty: the check is skipped.
  std::function<std::unique_ptr<Transport>()> reconnect;
};

struct NodeApplyResult {
  enum class Status { Unchanged, Changed, Failed, Unreachable };
  std::string node;
  Status status = Status::Unchanged;
  int applied = 0;                  // changes that ran successfully
  std::vector<std::string> handlers_run;
  std::vector<std::string> deferred;  // DeferredLine()s: disruptive changes held back on a busy node
  std::string error;                // what failed and what to do
  NodePlan remaining;               // re-plan after apply (empty when converged)
};
const char* StatusName(NodeApplyResult::Status s);

// The node's state record (what `status` reads back).
std::string StateJson(const Inventory& inv, const NodeDef& node, const ApplyOptions& opts);
std::string SettingsHash(const Inventory& inv, const NodeDef& node);

// Pure: the apply script for `plan` (tests run it with LocalTransport in a sandbox, or inspect it).
std::string BuildApplyScript(const NodePlan& plan, const ApplyOptions& opts, const std::string& state_json,
                             const std::string& nonce);

NodeApplyResult ApplyNode(const Inventory& inv, const NodeDef& node, const NodePlan& plan, Transport& transport,
                          const ApplyOptions& opts);

// The lockout guard's proof: a fresh connection that runs `true`. Returns "" on success, else why not.
// sshd re-executes itself on SIGHUP and refuses (or drops) connections for a moment, so a refused or lost
// connection is tried again, `tries` times in all, waiting first_wait, 2x, 4x ... in between (defaults: about
// 4 s in all). A host key or authentication failure, or `true` failing, is final at once.
std::string ProveFreshLogin(const std::function<std::unique_ptr<Transport>()>& reconnect, int tries = 5,
                            std::chrono::milliseconds first_wait = std::chrono::milliseconds(250));

nlohmann::json ApplyResultToJson(const NodeApplyResult& r);

// Parses the lock file's "key=value" lines; used to tell a live holder from a dead one.
struct LockInfo {
  std::string run_id, who, host, commit;
  long pid = 0;
  long long since = 0;
};
LockInfo ParseLockInfo(const std::string& text);

}  // namespace labfleet
