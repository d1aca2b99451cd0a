// Executor: runs a Plan on a node through a Transport. Dry-run is not a flag here: `plan` simply never
// calls the executor.
//
// One node = one apply round trip (a script on stdin) + one re-probe:
//   1. take the node lock /run/labfleet.lock (atomic create; holds run id, who, client host+pid, time,
//      commit, and the script's node-side pid + start time). A lock whose node-side holder is provably gone is
//      taken over (a note says so); a live holder refuses the apply with its details; --break-lock replaces
//      any lock (see LockInfo);
//   2. each change in order, in its own subshell with `set -e`; the first failure stops the node (later
//      changes are not attempted) and is reported with its output. Files are written atomically (temp in the
//      same directory, fsync, rename) after the previous version is copied to
//      /var/lib/labfleet/backup/<run-id>/<path>;
//   3. handlers (Notify), each once, in first-notified order, only when every change succeeded;
//   4. /var/lib/labfleet/state.json records commit, settings hash, who, when and run id;
//   (a plan with no change and nothing deferred, whose node already records this commit and settings hash
//   (StateRecordCurrent), is not sent at all: a converged node costs one session, the plan's);
//   5. the lock is released by an EXIT trap, also on failure and on SIGTERM/SIGINT/SIGHUP (how a timeout or an
//      interrupt stops the script). A script stopped that way (TransportError Timeout/Interrupted/OutputLimit)
//      makes the node Failed with how far it got (changes applied, the one running, those not attempted).
// Then the node is planned again: the node is "changed" only if that re-plan is empty, otherwise "failed".
#pragma once
#include <optional>
#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/planner.h"
#include "engine/shell.h"

namespace labfleet {

struct ApplyOptions {
  std::string run_id;         // e.g. 20261123T153300Z-1a2b3c; names the backup directory
  std::string commit;         // inventory commit being applied ("" when not in git)
  std::string dirty;          // "" or "dirty" when --allow-dirty let uncommitted changes through
  std::string who;            // user@host of the admin
  std::string client_host;    // this machine's host name (stale-lock detection)
  long client_pid = 0;        // this process (stale-lock detection)
  bool break_lock = false;
  // `root: { readonly_btrfs: true }` (engine/image.h ReadonlyRootOf; set per node by ApplyNode): the path of the
  // read-only btrfs root subvolume the script makes writable after taking the lock and read-only again in its
  // EXIT trap (also when a change fails or the script is stopped). "" = off.
  std::string readonly_root;
  PlanOptions plan;  // for the re-probe (same --force as the plan)
  bool second_pass = false;  // set by ApplyNode for the pass a Change::reprobe change called for (never a third)
  // Opens a fresh connection to the node (for Change::reconnect_check). Empty: the check is skipped.
  std::function<std::unique_ptr<Transport>()> reconnect;
  // A change that fails on shadow-utils' lock ("groupadd: cannot lock /etc/group; try again later": another
  // useradd/groupadd/chpasswd, or a package's maintainer script, holds the account files' lock) is run again,
  // with the changes after it, in a new round trip after each of these waits; then the node fails.
  std::vector<std::chrono::milliseconds> lock_retry_waits = {std::chrono::seconds(1), std::chrono::seconds(2),
                                                             std::chrono::seconds(3), std::chrono::seconds(4)};
  std::function<void(std::chrono::milliseconds)> sleep;  // empty: std::this_thread::sleep_for (tests inject one)
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
  std::vector<std::string> notes;   // e.g. "took over the stale lock of ..."
  bool interrupted = false;         // stopped mid-apply by an interrupt (SIGINT/SIGTERM to labfleet)
};

// The node's state record (what `status` reads back).
std::string StateJson(const Inventory& inv, const NodeDef& node, const ApplyOptions& opts);
std::string SettingsHash(const Inventory& inv, const NodeDef& node);
// Does the node's recorded state.json (as the plan read it) already say what StateJson would write, apart from
// who and when: same commit, dirty flag, settings hash, node and --only modules? Then a no-op apply leaves it.
bool StateRecordCurrent(const std::string& recorded, const Inventory& inv, const NodeDef& node,
                        const ApplyOptions& opts);

// Pure: the apply script for `plan` (tests run it with LocalTransport in a sandbox, or inspect it).
std::string BuildApplyScript(const NodePlan& plan, const ApplyOptions& opts, const std::string& state_json,
                             const std::string& nonce);

// The node lock's part of the apply script (BuildApplyScript starts with it): take /run/labfleet.lock (or take
// over a provably stale one, or replace it with opts.break_lock), else print "@@lf-NONCE:locked", the holder's
// verdict line and the lock file, and exit 75; release it on exit, also when stopped by a signal. For other
// scripts that change a node (playbook commands, engine/playbook_run.cc), so they never run beside an apply.
Script NodeLockScript(const ApplyOptions& opts, const std::string& nonce);

NodeApplyResult ApplyNode(const Inventory& inv, const NodeDef& node, const NodePlan& plan, Transport& transport,
                          const ApplyOptions& opts);
// True for a change's output that says shadow-utils could not take its lock and asks to try again later
// (useradd, usermod, userdel, groupadd, groupmod, chpasswd, ...): transient, ApplyNode retries it.
bool ShadowLockContention(const std::string& output);

// The lockout guard's proof: a fresh connection that runs `true`. Returns "" on success, else why not.
// sshd re-executes itself on SIGHUP and refuses (or drops) connections for a moment, so a refused or lost
// connection is tried again, `tries` times in all, waiting first_wait, 2x, 4x ... in between (defaults: about
// 4 s in all). A host key or authentication failure, or `true` failing, is final at once.
std::string ProveFreshLogin(const std::function<std::unique_ptr<Transport>()>& reconnect, int tries = 5,
                            std::chrono::milliseconds first_wait = std::chrono::milliseconds(250));


// The node lock, /run/labfleet.lock: "key=value" lines: run, who, host (client), pid (labfleet on the client),
// since, commit, and node_pid / node_start: the apply script's own shell on the node and its start time (field
// 22 of /proc/PID/stat). Whether the holder still runs is judged ON THE NODE (kill -0 node_pid, and its start
// time, since pids are reused): a holder that is provably gone is taken over automatically (reported as a
// note), a live one refuses the apply with its details, a lock without node_pid (older labfleet) is judged
// only when its client host is this one. --break-lock replaces any lock.
struct LockInfo {
  std::string run_id, who, host, commit;
  long pid = 0;
  long long since = 0;
  long node_pid = 0;
  long long node_start = 0;
};
LockInfo ParseLockInfo(const std::string& text);
// The refusal for a held lock. `verdict` is the node's judgement: "alive: ...", "gone: ...", "unknown".
std::string LockMessage(const std::string& node, const std::string& verdict, const LockInfo& holder,
                        const std::string& client_host);
// The output of a script that began with NodeLockScript(opts, nonce): LockMessage when the lock was held (the
// script stopped there), nullopt when this run took the lock.
std::optional<std::string> LockRefusal(const std::string& out, const std::string& nonce, const std::string& node,
                                       const std::string& client_host);

}  // namespace labfleet
