// Playbooks: ordered procedures over the fleet (playbooks/NAME.yaml), read and checked offline. The runner is
// engine/playbook_run.h; the format, every step kind and the shipped playbooks are in docs/playbooks.md.
//
//   description: text
//   nodes: [gpu]                     # default selection (node or group names; "all"); the CLI's names replace it
//   steps:
//     - name: lock expired accounts  # required, unique: what --from and the report name
//       accounts: lock               # exactly one kind key per step: apply | accounts | wait_idle | command |
//                                    # snapshot | reboot | confirm
//       users: expired               # ...and that kind's own keys (below)
//
// Contracts:
//   - ParsePlaybook never touches a node and never throws: problems are findings at file:line:col, and the
//     returned Playbook holds what could be read (a step whose kind is unknown is left out);
//   - ValidatePlaybook checks it against an inventory: node/group names, module names, account names, and that
//     what an accounts step would change passes ValidateInventory (e.g. archive needs lab.home_archive, the
//     ssh login user is never locked);
//   - command argv is trusted playbook text (committed like the inventory) and reaches a node only as quoted
//     words (Cmd); it is never re-parsed by a shell unless argv[0] is one.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "engine/finding.h"
#include "engine/inventory.h"
#include "engine/value.h"

namespace labfleet {

enum class StepKind { Apply, Accounts, WaitIdle, Command, Confirm, Snapshot, Reboot };
// "apply", "accounts", "wait_idle", "command", "confirm", "snapshot", "reboot"
const char* StepKindName(StepKind k);

// Report: read-only; per node, each selected account's home, its size (du -sxk, bounded in time) and last login
// (lastlog), listed under the step and written as CSV by `labfleet run --csv FILE`. Runs in dry runs too.
// EndSessions: kill every process of the selected accounts on each node (pkill -KILL -u UID, only for uid >= 1000
// and never root or the ssh login user), so that archive is not refused for a forgotten tmux session.
// Snapshot: on the step's nodes (the storage server), a read-only btrfs snapshot of each selected account's home
// (`homes`/NAME, else the inventory's home) as `to`/homes-YYYY-MM-DD/NAME, checked (btrfs subvolume show, the
// read-only property, the file count and one file read back); an account that already has a snapshot under `to`
// keeps it (checked again, nothing new: a rerun is a no-op); the oldest homes-* directories beyond `keep` are
// deleted. The accounts whose snapshot was checked in this run are what delete_data may delete.
// DeleteData: on each node, deletes each selected account's rootless Docker data root (the node's
// rootless_docker.data_root with {{user}}) and, with `homes`, `homes`/NAME; only for accounts whose snapshot a
// snapshot step of this run checked, or whose home an archive step of this run archived (and read back) on that
// node. Nothing else (the account is listed as kept).
enum class AccountAction { Lock, Remove, Archive, EndSessions, Report, Snapshot, DeleteData };
// "lock", "remove", "archive", "end_sessions", "report", "snapshot", "delete_data"
const char* AccountActionName(AccountAction a);

enum class OnBusy { Skip, Wait, Fail };

struct PlaybookStep {
  std::string name;
  Location where;  // the step's map
  StepKind kind = StepKind::Command;
  // Which of the run's nodes the step works on (node or group names, e.g. the storage server); empty = all of
  // them. A node outside the run's selection is never added.
  std::vector<std::string> nodes;
  Location nodes_where;
  // apply: the modules applied (empty = every module); accounts: always the users module.
  std::vector<std::string> modules;
  // apply, command, reboot: nodes per batch (0 = every node at once; reboot: 1 when not given). After each batch `health` (argv) runs on its
  // nodes; any failure in a batch (apply, command or health) stops the playbook before the next batch.
  int batch = 0;
  std::vector<std::string> health;
  // accounts: what to do to the selected accounts; `expired` selects those whose `expires` is before today +
  // within_days; otherwise `users` names them.
  AccountAction action = AccountAction::Lock;
  bool expired = false;
  long long within_days = 0;
  std::vector<std::string> users;
  // accounts snapshot/delete_data: the directory on the node that holds each account's home as NAME ("" = the
  // inventory's home). accounts snapshot also uses snapshot_to (`to`) and keep.
  std::string homes;
  // wait_idle: busy or unknown (fail safe) nodes are skipped for the rest of the run (listed), waited for
  // (re-checked every 5 s up to timeout_s, then skipped), or stop the playbook.
  OnBusy on_busy = OnBusy::Skip;
  long long timeout_s = 600;
  // command: argv run as root on each node; skipped on a node where `unless` (argv) exits 0 or `creates` exists.
  std::vector<std::string> argv;
  std::vector<std::string> unless;
  std::string creates;
  long long command_timeout_s = 3600;
  // snapshot: a read-only btrfs snapshot of the subvolume `snapshot_of` as `snapshot_to`/<its name>-<UTC time>,
  // checked (btrfs subvolume show, read-only property) before the step succeeds; then the oldest snapshots of it
  // beyond `keep` are deleted (0 = none).
  std::string snapshot_of, snapshot_to;
  long long keep = 0;
  // reboot: only with --reboot (RunnerOptions::reboot; otherwise the nodes that need one are listed). Each node
  // of a batch that needs a reboot (/run/reboot-required, or `reboot: always`) and is idle (the busy verdict;
  // busy or unknown: skipped) is rebooted under the node lock, waited for over SSH until its boot id (or PID 1's
  // start time: a restarted container) changed (up to reboot_timeout_s), then checked: as many GPUs as the inventory's `gpus` (nvidia-smi), docker active where
  // the node has `docker:` settings, the mounts module's plan empty, and `health`. A failed check fails the node
  // and the batch: later batches are never started.
  bool reboot_always = false;
  long long reboot_timeout_s = 900;
  // confirm: the question; a real run asks it on the terminal (--yes answers it), a dry run prints it.
  std::string message;
};

struct Playbook {
  std::string name;  // the file's stem
  std::string file;  // as given (for messages)
  std::string description;
  std::vector<std::string> nodes;  // default selection; empty = all
  Location nodes_where;
  std::vector<PlaybookStep> steps;
  // The index of the step named `name_or_number` (a step name, or its 1-based number); nullopt when none.
  std::optional<size_t> find_step(const std::string& name_or_number) const;
};

Playbook ParsePlaybook(const std::string& text, const std::string& file, Findings& findings);
void ValidatePlaybook(const Playbook& pb, const Inventory& inv, Findings& findings);

// The accounts an accounts step selects, in inventory order, for `today_days` (days since 1970-01-01, UTC).
std::vector<const UserDef*> SelectAccounts(const PlaybookStep& step, const Inventory& inv, long long today_days);
// The inventory the step applies (with the users module only): `inv` with the selected accounts
//   lock     left out: the users module locks a managed account that left the inventory (usermod -e 1) where it
//            exists, and creates nothing where it does not; an `accounts: directory` account stays, with
//            expires 1970-01-02 (the directory module writes shadowExpire: 1, locked for every node);
//   remove   remove: true (deleted, home kept);
//   archive  remove: archive (home archived to lab.home_archive and checked, then deleted; see modules/users.cc).
// Other accounts, and every account for end_sessions, report, snapshot and delete_data, are as written.
Inventory AccountsInventory(const PlaybookStep& step, const Inventory& inv, long long today_days);
// The modules an accounts step that converges applies: users, and directory when the lab has one (lab.directory).
std::vector<std::string> AccountsModules(const Inventory& inv);
// Why the step may not run on `nodes`: it selects root, or the account labfleet logs in as on one of them;
// "" when it may.
std::string AccountsRefusal(const PlaybookStep& step, const Inventory& inv, const std::vector<const NodeDef*>& nodes,
                            long long today_days);
// Days since 1970-01-01 of "YYYY-MM-DD"; nullopt when it is not a real date.
std::optional<long long> DaysOfDate(const std::string& ymd);
long long TodayDays();
std::string DateOfDays(long long days);  // "YYYY-MM-DD"

// The repository's playbooks directory for an inventory directory: its sibling `playbooks/`.
std::string PlaybooksDir(const std::string& inventory_dir);
// `name_or_path`: an existing file, else PlaybooksDir/NAME.yaml. Returns the path (which may not exist).
std::string PlaybookPath(const std::string& inventory_dir, const std::string& name_or_path);
// Every *.yaml of PlaybooksDir(inventory_dir), parsed and validated against `inv` (validate's part). Returns the
// number of playbooks read; none when the directory is absent.
size_t ValidatePlaybooksDir(const std::string& inventory_dir, const Inventory& inv, Findings& findings);

}  // namespace labfleet
