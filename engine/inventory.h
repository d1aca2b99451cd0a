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
  // Ports tried, in order, when the node refuses `port` (or does not answer on it): while an sshd Port change
  // rolls out, the inventory already says the new port and the node still listens on the old one.
  std::vector<int> fallback_ports;
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
  long long gid = -1;  // -1 = not managed (a `system: true` group that exists on the node, e.g. docker)
  bool system = false;
  Value raw;           // the group's own map, as written
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
  long long subid_start = -1;   // -1 = allocated from the uid (SubIdRange)
  long long subid_count = 65536;
  std::vector<std::string> on;  // groups or node names; empty = every node
  bool system = false;          // allows uid < 1000
  bool remove = false;          // delete the account (and only then)
  bool archive_home = false;    // `remove: archive`: also archive the home to lab.home_archive, then delete it
  // Where the account lives: "local" (the nodes' /etc/passwd, the users module) or "directory" (an entry in the
  // lab's LDAP directory, the directory module). The user's own `accounts:`, else the lab's, else "local".
  std::string accounts = "local";
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
  // Files that are, or lie below, a symlink pointing outside the repository are not read (nullopt).
  std::function<std::optional<std::string>(const std::string& relpath)> read_file;
  // Why `relpath` is refused, "" when it is not (an absent file is not refused, read_file says it is absent):
  // it leads (by "..", or through a symlink) outside `within` (a directory relative to the inventory
  // directory, e.g. the templates directory; "" = the repository). For findings that say why.
  std::function<std::string(const std::string& relpath, const std::string& within)> refusal;
  // The directory below which read_file reads (the inventory directory's parent); empty when loaded from a
  // git revision. What `apply` requires to be committed.
  std::string read_root;
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

// The user's /etc/subuid and /etc/subgid range: explicit `subids: {start, count}`, else allocated from the uid
// so every node agrees without coordination: start = 100000 + (uid - 1000) * 65536, count 65536.
struct SubIdRange {
  long long start = 0, count = 0;
};
SubIdRange SubIds(const UserDef& user);
inline std::string HomeOf(const UserDef& u) { return u.home.empty() ? "/home/" + u.name : u.home; }  // home or /home/<name>
// primary_group or the personal group (= user name)
inline std::string PrimaryGroupOf(const UserDef& u) { return u.primary_group.empty() ? u.name : u.primary_group; }

// "did you mean 'x'?" helper for unknown keys/names: the closest candidate within a small edit distance.
std::optional<std::string> Suggest(std::string_view word, const std::vector<std::string>& candidates);

// ---- Shared schema helpers: used by the loader and by every module that reads a settings Value ----

// Keys valid only directly under a node (not in lab.defaults or groups): address, groups, gpus, connection.
const std::vector<std::string>& NodeOnlyKeys();
// Settings keys valid in lab.defaults, groups and nodes: the core ones (ssh, host_key, vars) plus every
// registered module's settings_keys(), sorted.
std::vector<std::string> SettingsKeys();
// The core settings keys (ssh, host_key, vars) and the key tables of the other maps the loader reads; the same
// tables generate `labfleet schema` (engine/schema.h).
const std::vector<std::string>& CoreSettingsKeys();
const std::vector<std::string>& InventorySections();  // lab, groups, nodes, user_groups, users
const std::vector<std::string>& LabKeys();
const std::vector<std::string>& SshKeys();
const std::vector<std::string>& UserGroupKeys();
const std::vector<std::string>& UserKeys();

// Where `key` was written in `map` (the key itself); the map's own location when the key is absent.
Location KeyLoc(const Value& map, std::string_view key);
// "a list", "a map", "nothing", or the scalar quoted ('abc'): for "must be X, got Y" messages.
std::string DescribeValue(const Value& v);

// Reads one map of the inventory with findings, compiler style:
//   unknown-key       a key not in `allowed` (with "did you mean ..."), at the key;
//   wrong-type        a value of the wrong type, at the value;
//   missing-required  require() of an absent key, at `where` (the map's own key in its parent);
//   invalid-value     one_of() with a value outside the choices, at the value.
// A Null value reads as an empty map; any other non-map is reported (wrong-type) and reads as empty.
// Getters return nullopt/nullptr when the key is absent, null, or of the wrong type (already reported).
class MapReader {
 public:
  MapReader(const Value& v, std::string what, Location where, Findings& findings,
            const std::vector<std::string>& allowed);
  bool is_map() const { return v_.is_map(); }
  const Value& value() const { return v_; }
  const Location& where() const { return where_; }
  const std::string& what() const { return what_; }
  const Value* get(std::string_view key) const;
  Location key_loc(std::string_view key) const;
  bool require(std::string_view key, std::string_view hint = {});
  std::optional<std::string> str(std::string_view key);
  std::optional<long long> integer(std::string_view key, long long min = -(1LL << 62), long long max = 1LL << 62);
  std::optional<bool> boolean(std::string_view key);
  std::optional<std::vector<std::string>> strings(std::string_view key);  // a list of scalars
  const Value* map(std::string_view key);
  const Value* seq(std::string_view key);
  std::optional<std::string> one_of(std::string_view key, const std::vector<std::string>& choices);

 private:
  void wrong_type(std::string_view key, const Value& got, std::string_view expected);
  Value v_;
  std::string what_;
  Location where_;
  Findings& f_;
};


}  // namespace labfleet
