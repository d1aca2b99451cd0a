// `labfleet init`, the pure half: from what was read on each node (NodeScan) to the files of an inventory in
// labfleet's own layout, plus every disagreement between nodes. No I/O; unit-tested on hand-made scans.
//
// Rules:
// - accounts in the uid range [uid_min, uid_max) are "human"; their fields are compared across the nodes that
//   have them; each field gets the majority value (ties: the value of the node first in name order) and every
//   field with more than one value is a Conflict naming the nodes on each side and the commands that reconcile it;
// - a user present on only some nodes gets `on: [those nodes]`;
// - groups: every group a human account is in, every primary group that is not the account's personal group, and
//   every group with a gid in the range; gid < 1000 means `system: true` (membership only);
// - held packages, the /etc/hosts block and labfleet's fstab block are facts of each node: the same on every
//   node -> lab.defaults, the same on every GPU node (two or more) -> the group `gpu`, otherwise on each node;
// - daemon.json (+ labfleet's proxy drop-in) and the sshd drop-in are lab policy: variants are Conflicts and the
//   majority is written (lab.defaults when every node has one, else to each node that has one, or the group gpu);
// - what is found but cannot be expressed exactly (a hand-written fstab line, /etc/hosts lines outside labfleet's
//   block, an authorized_keys with options, comments or another mode, a hand-written sshd drop-in, daemon.json
//   values the docker settings cannot hold, other Docker drop-ins, the NVIDIA driver) is not written as a setting (the first plan would change it); it is listed in CONFLICTS.md under "Found, not
//   managed yet", with how to hand it over;
// - a value that fails the inventory's own syntax checks is not written; `skipped` says which and why;
// - every string reaches YAML through EmitYaml (engine/init_yaml.h); output is sorted and has no timestamps, so
//   the same nodes give byte-identical files.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "modules/facts/init_scan.h"

namespace labfleet {

struct InitOptions {
  std::string lab_name = "lab";
  long long uid_min = 1000, uid_max = 60000;
};

struct ConflictSide {
  std::string value;               // as shown ("2003", "member", "2 keys: a@x, b@y", "absent")
  std::vector<std::string> nodes;  // sorted
};

struct Conflict {
  std::string kind;                // "uid", "gid", "membership", "field", "keys", "subids"
  std::string subject;             // "user alice", "group gpu-users"
  std::string field;               // "uid", "shell", "membership of alice", ...
  std::vector<ConflictSide> sides; // the written (majority) value first
  std::vector<std::string> fix;    // "on node3: usermod -u 2001 alice", in order
  // The plan resources this disagreement changes on the other sides' nodes ("user:alice"; a trailing '*'
  // matches a prefix): how init's own check of the written inventory tells a listed change from a problem.
  std::vector<std::string> resources;
};

struct InitResult {
  std::map<std::string, std::string> files;  // path relative to the output directory -> content
  std::vector<Conflict> conflicts;
  std::vector<std::string> skipped;    // values not written and why
  std::vector<std::string> unmanaged;  // found on the nodes, not managed by the written inventory (and how to)
  size_t users = 0, groups = 0;
};

// `scans` in any order (sorted by name inside). Node names must be unique and valid (the caller checks).
InitResult BuildInventory(std::vector<NodeScan> scans, const InitOptions& opts);

// What init's check of the written inventory found: `labfleet plan` of it against the same nodes.
struct InitCheck {
  std::vector<std::string> adoptions;  // "node1: user alice": only "adopted: now managed by labfleet"
  std::vector<std::string> listed;     // "node3: ~ user bob (uid 2003 -> 2002)": a listed disagreement
  std::vector<std::string> problems;   // anything else: a change the promise says cannot be there
};
// Pure: sorts one node's plan (its changes, or the error that kept it from being planned) into `check`.
void ClassifyPlan(const InitResult& r, const std::string& node, const std::vector<Change>& changes,
                  const std::string& error, InitCheck& check);

// CONFLICTS.md: each disagreement with its sides and fix commands, then what was found and not managed, then
// what was skipped. Part of BuildInventory's files; exposed for tests.
std::string ConflictsMarkdown(const InitResult& r, const std::vector<std::string>& nodes);

// "User or group name" as the inventory accepts it: ^[a-z_][a-z0-9_-]*[$]?$, at most 32 characters.
bool InitNameOk(const std::string& s);
// Node name as the inventory accepts it: letters, digits, '.', '-', '_', starting with a letter or digit.
bool InitNodeNameOk(const std::string& s);

}  // namespace labfleet
