// `labfleet apply NODE --bootstrap`: from "OS installed, only the installer's password works" to a node that
// every later command reaches with the admin's key and the host key pinned in the inventory (docs/playbooks.md,
// "Bootstrap"). Per node:
//   1. key login as the inventory's ssh.user is tried first (the host key checked against the inventory's
//      host_key, else known_hosts, else shown with its SHA-256 fingerprint and confirmed); when it works there is
//      nothing to set up and no password is asked for (a rerun on a converged node); a key that logs in but
//      whose sudo wants a password goes on to step 2 (which adds the NOPASSWD rule);
//   2. otherwise one password login as the installer's user (--bootstrap-user) over plain exec channels (not the
//      kept script channel), `sudo -S` fed the password on stdin, runs BootstrapSetupScript as root: the login
//      account made if needed, the admin's public key in its authorized_keys, a NOPASSWD sudoers rule when the
//      login is non-root with `become: sudo`; then key login is proved with a fresh connection;
//   3. a host key the inventory does not pin yet is written into the node's map (`host_key:`) in the inventory
//      file that defines the node, and re-read to prove it.
// Passwords never reach argv, messages or the node's output: they travel only in libssh's auth request and on
// sudo's stdin.
#pragma once
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "engine/connect.h"
#include "engine/inventory.h"

namespace labfleet {

// Passwords, read at most once each and only when a node refuses key login. --ask-pass / --ask-become-pass
// prompt on /dev/tty with echo off; else LABFLEET_PASSWORD_FILE (ReadPasswordFile). The become (sudo) password
// is the login password unless --ask-become-pass. Cleared on destruction. Not thread-safe.
class PasswordSource {
 public:
  PasswordSource(bool ask_pass, bool ask_become_pass) : ask_pass_(ask_pass), ask_become_(ask_become_pass) {}
  ~PasswordSource();
  PasswordSource(const PasswordSource&) = delete;
  PasswordSource& operator=(const PasswordSource&) = delete;
  // Throws std::runtime_error saying what to do (no terminal, no file, a refused file).
  const std::string& login(const std::string& who);
  const std::string& become(const std::string& who);

 private:
  bool ask_pass_, ask_become_;
  std::optional<std::string> login_, become_;
};

// The first line of a password file. Refused (std::runtime_error) unless it is a regular file, not a symlink,
// owned by this process's user and with no permission bits for group or others; empty is refused too.
std::string ReadPasswordFile(const std::string& path);
// Prompts on /dev/tty with echo off; throws std::runtime_error when there is no terminal.
std::string ReadPasswordFromTerminal(const std::string& prompt);

// "" when `line` is one public key line "type base64 [comment]" safe to put in authorized_keys and in a shell
// word; else why not.
std::string CheckPublicKeyLine(const std::string& line);
// The admin's public key: IDENTITY.pub for the inventory's ssh.identity (expanded), else the first of
// ~/.ssh/id_ed25519.pub, id_ecdsa.pub, id_rsa.pub. Throws std::runtime_error saying what to set.
std::string AdminPublicKey(const std::string& identity);

// The root-side setup (sh text, stdin /dev/null): prints "@@lf-bootstrap-root" first (proof that sudo let it
// in), then one line per change made. `user` must be a plain account name ([a-z_][a-z0-9_-]{0,31}), `pubkey` a
// CheckPublicKeyLine-clean line: std::invalid_argument otherwise. The key is written as the user (su), never by
// root through a path the user controls.
std::string BootstrapSetupScript(const std::string& user, const std::string& pubkey, bool sudoers_rule);
inline constexpr const char* kBootstrapRootMarker = "@@lf-bootstrap-root";

// The text of an inventory file with `host_key: "KEY"` added to the node whose key sits on 1-based line
// `line`: a block map gets a line at its children's indentation, a one-line flow map `{ ... }` gets the key
// before its closing brace; comments and everything else are kept byte for byte. nullopt (and `why`) for any
// other layout.
std::optional<std::string> InsertHostKey(const std::string& text, int line, const std::string& key, std::string* why);

struct BootstrapOptions {
  std::string user;  // --bootstrap-user: the installer's account; empty = the inventory's ssh.user
  bool accept_new_host_keys = false;
};

struct BootstrapResult {
  std::string node;
  std::string host_key;     // "type base64" as verified
  std::string fingerprint;  // SHA256:...
  bool pinned_now = false;  // this run wrote host_key into the inventory
  std::string pinned_in;    // the inventory file the host_key was written to (pinned_now)
  bool used_password = false;
  std::vector<std::string> changes;  // what the setup script did, one line each
  std::string error;                 // non-empty: the node failed; nothing after the failing step was done
};

// Asked for a host key neither the inventory nor known_hosts vouches for: true = trust (and pin) it.
using ConfirmHostKey = std::function<bool(const std::string& node, const std::string& key, const std::string& fp)>;

// Steps 1 and 2 above for one ssh node (a `connection: local` node needs nothing). Never throws.
BootstrapResult BootstrapNode(const Inventory& inv, const NodeDef& node, const ConnectOptions& copts,
                              const BootstrapOptions& bo, PasswordSource& pw, const ConfirmHostKey& confirm);

// Step 3: when inv.ssh(node) pins no host key, writes r.host_key into the file defining the node (atomically,
// mode kept), re-reads the inventory and checks that the node now pins exactly that key (else puts the old text
// back). Sets r.pinned_now / r.pinned_in, or r.error.
void PinHostKey(const std::string& inventory_dir, const Inventory& inv, const NodeDef& node, BootstrapResult& r);

}  // namespace labfleet
