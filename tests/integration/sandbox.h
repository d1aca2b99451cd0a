// RAII wrapper around tests/sandbox/sandbox for doctest integration tests (see docs/sandbox.md).
//
//   labfleet::testing::Sandbox sbx({.nodes = 3});
//   sbx.nodes_yaml();                         // inventory fragment for the engine
//   sbx.exec("node1", "getent passwd alice"); // independent check inside a node, not over SSH
//
// The constructor runs `sandbox up` (throws std::runtime_error with the script's stderr on failure);
// the destructor always runs `sandbox down` and removes the directory. If the test process dies
// without running the destructor (abort, SIGINT/SIGTERM, even SIGKILL), a watcher process started
// with the sandbox takes it down; std::atexit and signal handlers also run `down` for live sandboxes.
#pragma once
#include <string>
#include <sys/types.h>
#include <vector>

namespace labfleet::testing {

struct SandboxNode {
  std::string name;
  std::string address;
  int port = 0;
};

struct SandboxOptions {
  int nodes = 1;
  std::string prefix = "node";
  int btrfs_mb = 0;    // > 0: each node gets a btrfs filesystem of this size at /srv/btrfs (>= 16)
  // With btrfs_mb >= 64 (`up --btrfs-root`): each node's root is the subvolume @ of that filesystem, mounted by
  // subvol=@ (a copy of the host's /etc, /var's skeleton, fstab naming subvol=@; the host's /usr under it), and
  // restart() boots the node again from whatever subvolume is named @ then. Not with `login`.
  bool btrfs_root = false;
  bool login = false;  // nodes reachable only through an extra node "login" (ssh jump)
  bool sshd_defaults = false;  // sshd with Debian's default sshd_config (UsePAM yes, ...): `up --sshd-defaults`
  // A freshly installed node (`up --password-only`): no authorized_keys anywhere; the sudo user "installer" logs
  // in only with the password in DIR/password (mode 0600, random unless the file exists).
  bool password_only = false;
};

class Sandbox {
 public:
  explicit Sandbox(SandboxOptions opts);
  ~Sandbox();
  Sandbox(const Sandbox&) = delete;
  Sandbox& operator=(const Sandbox&) = delete;

  // Host-side directory (/var/tmp/labfleet-sbx-XXXXXX); nodes cannot see it.
  const std::string& dir() const { return dir_; }
  // Every node, in nodes.yaml order ("login" first when opts.login).
  const std::vector<SandboxNode>& nodes() const { return nodes_; }
  const SandboxNode& node(const std::string& name) const;  // throws std::out_of_range
  std::string nodes_yaml() const;   // contents of DIR/nodes.yaml
  std::string known_hosts() const;  // path of DIR/known_hosts
  std::string identity() const;     // path of DIR/id_ed25519 (client key, root on every node)
  std::string ssh_config() const;   // path of DIR/ssh_config: `ssh -F PATH NODE CMD` (jumps included)

  struct ExecResult {
    int exit_code = 0;
    std::string out;
    std::string err;
  };
  // Runs `sh -c shell_command` inside the node (its namespaces and root, as root) via `sandbox exec`.
  ExecResult exec(const std::string& node, const std::string& shell_command) const;

  // `sandbox restart`: the node's "reboot" (btrfs_root sandboxes only). Kills the node (every process, mount and
  // its loop device go, as at a power cut), then starts it on the same address and port from its btrfs: it runs
  // the subvolume named @ now, with the hostname, machine-id and ssh host key that root holds (known_hosts is
  // kept, so an SSH connection afterwards proves the host key). Throws std::runtime_error with the script's
  // stderr when the node does not come back.
  void restart(const std::string& node);

 private:
  void down() noexcept;

  SandboxOptions opts_;
  std::string dir_;
  std::vector<SandboxNode> nodes_;
  int slot_ = -1;          // index in the process-wide cleanup registry
  pid_t watcher_ = -1;     // `sandbox watch`: takes the sandbox down if this process dies
  int watcher_fd_ = -1;    // write end of the watcher's stdin
};

// Path of tests/sandbox/sandbox in the source tree.
std::string SandboxScript();

// Runs `/bin/sh -c command` with stdin from /dev/null; returns exit status (128+signal when killed),
// stdout and stderr. Shared by the sandbox wrapper and integration tests; build `command` with
// labfleet::Cmd.
Sandbox::ExecResult RunCommand(const std::string& command);

}  // namespace labfleet::testing
