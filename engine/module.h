// A module is one resource kind (users, files, docker, ...), in one file under modules/, registered by a
// static ModuleRegistrar. Modules never do I/O: the planner runs their probes (all modules' probes of a
// node in one round trip) and hands them the outputs; the executor runs the changes they return.
//
//   validate(inventory)                 offline, before any node is touched
//   resources(node)                     the desired things on that node
//   probes(node, resources)             read-only shell commands; equal keys are run once per node
//                                       (a shared Fact: kPasswd.probe())
//   diff(node, resource, probe outputs) changes, each with a reason, or a "nothing to do because" note
//                                       (typed facts: results.fact(kPasswd), parsed once per node)
#pragma once
#include <nlohmann/json_fwd.hpp>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <typeindex>
#include <utility>
#include <vector>

#include "engine/finding.h"
#include "engine/inventory.h"
#include "engine/transport.h"
#include "engine/value.h"

namespace labfleet {

struct NodeContext {
  const Inventory& inv;
  const NodeDef& node;
  const Value& settings;  // effective settings (Inventory::settings)
};

struct Probe {
  Probe() = default;
  Probe(std::string k, std::string cmd, bool req = false) : key(std::move(k)), command(std::move(cmd)), required(req) {}
  std::string key;      // identifies the output; modules share a probe by using the same key
  std::string command;  // built with Cmd/Script; read-only; its exit status is part of the result
  // A non-zero exit is not an answer (an unreadable /etc/passwd says nothing about which users exist): the node
  // is not planned at all, its error is "KEY failed (exit N): <stderr's first line>".
  bool required = false;
};

struct ProbeOutput {
  ProbeOutput() = default;
  ProbeOutput(int code, std::string o, std::string e = {}) : exit_code(code), out(std::move(o)), err(std::move(e)) {}
  int exit_code = 0;
  std::string out;
  std::string err;  // the first lines of its stderr (bounded by the probe script: 4 lines of 300 bytes)
};

// A typed fact about a node: one read-only command and one pure parser of its output. Every module that needs
// it asks for the same Fact (same name = one run per node) and reads the parsed value from ProbeResults::fact,
// parsed once per node. Parsers never throw and skip lines they do not understand.
//   const Fact<Parsed<PasswdEntry>> kPasswd{"passwd-file", Cmd("cat").arg("/etc/passwd").str(), ParsePasswd, true};
//   probes(): return {kPasswd.probe()};   diff(): const auto& passwd = results.fact(kPasswd);
template <class T>
struct Fact {
  Fact(std::string n, std::string cmd, std::function<T(std::string_view)> p, bool req = false)
      : name(std::move(n)), command(std::move(cmd)), parse(std::move(p)), required(req) {}
  std::string name;     // the probe key
  std::string command;  // built with Cmd/Script (inventory values only as quoted words)
  std::function<T(std::string_view)> parse;
  bool required = false;  // a non-zero exit stops the node (Probe::required)
  Probe probe() const { return {name, command, required}; }
};

// The outputs of one node's probe round trip, by probe key, and the typed facts parsed from them. A fact is
// parsed on first use and kept until its output changes; one node's results are used by one thread.
class ProbeResults : public std::map<std::string, ProbeOutput> {
 public:
  using std::map<std::string, ProbeOutput>::map;
  // The parsed value of `f` (of its empty output when the round trip had no such probe).
  template <class T>
  const T& fact(const Fact<T>& f) const {
    auto it = find(f.name);
    const std::string& raw = it == end() ? kNoOutput : it->second.out;
    Cached& c = parsed_[{f.name, std::type_index(typeid(T))}];
    if (!c.value || c.raw != raw) {
      c.value = std::make_shared<const T>(f.parse(raw));
      c.raw = raw;
    }
    return *static_cast<const T*>(c.value.get());
  }

 private:
  struct Cached {
    std::string raw;
    std::shared_ptr<const void> value;
  };
  static inline const std::string kNoOutput;
  mutable std::map<std::pair<std::string, std::type_index>, Cached> parsed_;
};

struct Resource {
  std::string module;  // module name
  std::string id;      // "user:yseong", "file:/etc/motd"; unique per node
  Location where;      // where the inventory asks for it
  std::shared_ptr<const void> data;  // the module's own typed desired state
  template <class T>
  const T& as() const { return *static_cast<const T*>(data.get()); }
};

struct Change {
  enum class Kind { PutFile, Exec, Remove, Notify };
  Kind kind = Kind::Exec;
  std::string resource;  // Resource::id
  char sign = '~';       // '+' create, '~' modify, '-' remove/lock: the first column of `plan`
  std::string summary;   // "user yseong (uid 2001, groups gpu-users)"
  std::string reason;    // why this change is needed
  std::string diff;      // unified diff of a file (secrets never included)
  FileSpec file;         // PutFile
  std::string command;   // Exec: shell text built with Cmd/Script; Notify: the handler's command
  std::string path;      // Remove
  std::string handler;   // Notify: handler name, e.g. "sshd reload"; run once per node, after all changes
  // Kills running work (docker restart, driver reload, reboot). On a busy node (GPU compute processes,
  // running containers) the planner defers it unless --force; `plan` shows what would be deferred.
  bool disruptive = false;
  // PutFile only: a command run on the node right after the new file is in place (e.g. "sshd -t"). If it
  // fails, the previous version (or absence) is restored and the change fails with the command's output.
  std::string verify;
  // PutFile only: a command run on the node BEFORE the new file is moved into place, with the new version in
  // the temporary file "$LF_NEW" (same directory, final mode and owner). If it fails, the temporary file is
  // removed, the live file is never touched, and the change fails with the command's output.
  std::string precheck;
  // After the node's changes and handlers ran, open a FRESH connection to prove labfleet can still log in;
  // if not, every file this run changed on the node is restored from the backup, `rollback` is run
  // (e.g. "systemctl reload ssh") and the node is reported failed. For sshd changes.
  bool reconnect_check = false;
  std::string rollback;
  // Exec only: files kept in the run's backup before the command runs (root-only paths, e.g. /etc/passwd), and
  // put back if the fresh-login check after a reconnect_check change fails.
  std::vector<std::string> backup_paths;
  // Applying it can make more of the node visible to the probe than the plan saw (sssd.conf/nsswitch.conf: the
  // directory's users start to resolve, so their local group memberships and homes can be planned). When the
  // re-probe after an apply finds changes and an applied change had this, the executor applies those once more
  // (a second pass, noted in the result) before it judges convergence.
  bool reprobe = false;
  bool secret = false;      // never print the command or a diff (password hashes)
  std::vector<std::string> redact;  // strings replaced by "(secret)" in any output of this change
};

// A change that only triggers a handler (a service restart or reload, daemon-reload, exportfs -ra): `command`
// runs once per node for every distinct `handler` name, after all of the node's other changes. Set the
// other fields (reconnect_check, rollback, resource) on the result where a handler needs them.
inline Change NotifyChange(std::string handler, std::string command, std::string summary, std::string reason,
                           bool disruptive = false) {
  Change n;
  n.kind = Change::Kind::Notify;
  n.handler = std::move(handler);
  n.command = std::move(command);
  n.summary = std::move(summary);
  n.reason = std::move(reason);
  n.disruptive = disruptive;
  return n;
}

struct DiffResult {
  std::vector<Change> changes;
  std::string noop;  // when changes is empty: "nothing to do because ..."
  std::string error;  // the resource cannot be converged as asked (conflict on the node); the node is not applied
  // Things the admin must see whether or not anything changes ("reboot pending: kernel module 535.104.05
  // loaded, userspace 535.183.01 installed"); `plan`, `apply` and `status` print them under the node.
  std::vector<std::string> warnings;
  // labfleet's own bookkeeping on the node that changes nothing there (an account that already matches is
  // recorded in managed-users: "adopted"). Not a change: plan stays empty for it; the next apply that runs on
  // the node runs it (a converged node with records pending gets its apply session for them).
  struct Record {
    std::string what;     // "user alice: adopted (recorded as managed by labfleet)"
    std::string command;  // built with Cmd/Script
  };
  std::vector<Record> records;
};

// A file a module writes whole (or keeps a block of) on a node: a `files:` entry for the same path would make
// apply flap between the two (validate: file-owned-by-module).
struct OwnedFile {
  std::string path;  // absolute, normalised
  std::string by;    // what makes the module write it, for the message: "hosts:", "docker.proxy"
};

// Helpers for modules' pure diffs.
const ProbeOutput* FindProbe(const ProbeResults& results, const std::string& key);
DiffResult Noop(std::string why);
DiffResult Failure(std::string why);

class Module {
 public:
  virtual ~Module() = default;
  virtual std::string name() const = 0;
  // Changes of a node are applied by ascending order, ties by name: busy 1 (settings only, no changes),
  // images 2 (a root image before anything is configured on it), apt_repos 4 (sources before packages),
  // packages 5, nvidia 6 (right after packages, before docker's runtime uses the GPU), pip 7 (venvs need the
  // python3-venv package), directory 8 (LDAP entries on the directory server, after slapd is installed),
  // user_groups 10, users 20 (groups exist first), ssh_keys 30 (homes exist), subids 40, files 50, hosts 50,
  // lines 55 (after whole files), directory_client 60 (sssd after the files it reads), docker 70, sshd 70,
  // mounts 75, exports 76 (a server's exports after its own mounts), automounts 77, rootless_docker 80 (after
  // docker's settings and the users' subids), services 85 (units start on the finished configuration),
  // timers 86. tests/unit/test_module_order.cc pins it.
  virtual int order() const = 0;
  // Node-level settings keys this module owns (e.g. {"docker"}); used for unknown-key checks.
  virtual std::vector<std::string> settings_keys() const { return {}; }
  // The JSON Schema (draft-07) of the value of one of settings_keys(), for `labfleet schema` (engine/schema.h):
  // built from the same key tables validate() uses. Default: any value.
  virtual nlohmann::json settings_schema(const std::string& key) const;
  virtual void validate(const Inventory&, Findings&) const {}
  // The fixed files this module writes on this node, only when it is active there (its settings are set).
  // Offline and cheap: called for every node by the validator; never reads the nodes or renders anything.
  virtual std::vector<OwnedFile> owned_files(const NodeContext&) const { return {}; }
  virtual std::vector<Resource> resources(const NodeContext&) const = 0;
  virtual std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>&) const = 0;
  virtual DiffResult diff(const NodeContext&, const Resource&, const ProbeResults&) const = 0;
};

const std::vector<std::unique_ptr<Module>>& Modules();  // sorted by (order(), name())
// Throws when no module registered (a build that dropped the modules' object files): every command calls it
// first, so such a binary fails loudly instead of planning nothing.
void RequireModules();
const Module* FindModule(std::string_view name);

struct ModuleRegistrar {
  explicit ModuleRegistrar(std::unique_ptr<Module> m);
};

}  // namespace labfleet
