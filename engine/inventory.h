// The inventory: every *.yaml below a directory (or below it at a git revision), merged into one model.
// Top-level sections: lab, groups, nodes, user_groups, users. Each section may be spread over files;
// the same name defined twice is an error naming both places. Every value keeps its Location.
//
// Node-level settings (docker, mounts, sshd, files, hosts, packages, nvidia, vars, ...) stay Values: the
// module that owns a key parses and validates it (Module::settings_keys()), so adding a module adds
// settings without touching this file.
#pragma once
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "engine/finding.h"
#include "engine/value.h"

namespace labfleet {

struct SourceFile {
  std::string path;  // as reported in locations, e.g. "inventory/users.yaml"
  std::string text;
};

struct SshSettings {
  std::string user = "root";
  int port = 22;
  std::string identity;  // path, may start with ~/
  std::string jump;      // node name or host[:port]; empty = direct
  std::string become;    // "" or "sudo"
  std::string host_key;  // pinned public key ("ssh-ed25519 AAAA..."), optional
};

struct NodeDef {
  std::string name;
  Location where;                   // location of the node's key
  std::string address;              // IP or host name
  std::vector<std::string> groups;  // in order
  int gpus = -1;                    // -1 = not declared
  std::string connection = "ssh";   // "ssh" or "local"
  Value raw;                        // the node's own map, as written
};

struct GroupDef {
  std::string name;
  Location where;
  Value raw;  // the group's settings map
};

struct UserGroupDef {
  std::string name;
  Location where;
  long long gid = -1;
  bool system = false;
};

struct UserDef {
  std::string name;
  Location where;
  long long uid = -1;
  std::string full_name;
  std::string primary_group;  // empty = a personal group named like the user, gid = uid
  std::vector<std::string> groups;
  std::vector<std::string> ssh_keys;
  std::string shell = "/bin/bash";
  std::string home;             // empty = /home/<name>
  std::string expires;          // YYYY-MM-DD or empty
  std::string password_hash;    // crypt(3) hash, never printed; empty = not managed
  bool rootless_docker = false;
  std::vector<std::string> on;  // groups or node names; empty = every node
  bool system = false;          // allows uid < 1000
  bool remove = false;          // delete the account (and only then)
  Value raw;
};

class Inventory {
 public:
  std::string root;          // the inventory directory as given (for messages)
  Value lab;                 // the lab: map (name, reserved_networks, ssh, defaults, ...)
  std::vector<GroupDef> groups;
  std::vector<NodeDef> nodes;
  std::vector<UserGroupDef> user_groups;
  std::vector<UserDef> users;
  // Reads a file of the inventory repository by path relative to the inventory directory ("../templates/x"
  // allowed while it stays in the repository). Works the same for a directory and for a git revision.
  std::function<std::optional<std::string>(const std::string& relpath)> read_file;
  std::string revision;  // commit id when loaded from git (full hex), else empty

  const NodeDef* node(std::string_view name) const;
  const GroupDef* group(std::string_view name) const;
  const UserDef* user(std::string_view name) const;
  const UserGroupDef* user_group(std::string_view name) const;

  // Effective settings of a node: lab.defaults, then its groups in order, then the node itself; maps merge
  // key by key, lists replace (MergeOver). Values keep their Locations, which is the provenance `show` prints.
  Value settings(const NodeDef& node) const;
  SshSettings ssh(const NodeDef& node) const;
  // Does the user's `on:` select this node?
  bool user_on_node(const UserDef& user, const NodeDef& node) const;
  // Nodes selected by names of nodes or groups ("all" or empty = every node), in inventory order.
  std::vector<const NodeDef*> select(const std::vector<std::string>& names, Findings* unknown = nullptr) const;
};

// Loads and type-checks the model. Structural errors (syntax, duplicate keys, wrong types, unknown keys,
// duplicate definitions) go to `findings`; the returned Inventory holds whatever could be read.
Inventory LoadInventory(const std::vector<SourceFile>& files, Findings& findings);
// Every *.yaml below `dir` (sorted), read from the filesystem.
Inventory LoadInventoryDir(const std::string& dir, Findings& findings);
// The same, from the git repository that contains `dir`, at revision `rev` (via GitRepo).
Inventory LoadInventoryRev(const std::string& dir, const std::string& rev, Findings& findings);

// All offline checks: the model's own (users, uids, keys, ranges, nodes) and each module's.
void ValidateInventory(const Inventory& inv, Findings& findings);

// "did you mean 'x'?" helper for unknown keys/names: the closest candidate within a small edit distance.
std::optional<std::string> Suggest(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace labfleet
