// SshTransport: a node over SSH with libssh (the only file that includes libssh is ssh_transport.cc).
// One session per node for the whole run; every run() opens a channel on it, every run_script() shares one. Connecting happens in the
// constructor and throws TransportError (Connect, HostKey, Auth, Timeout) with a message that says what to do.
// Not thread-safe: one thread uses one SshTransport at a time (ForEachNode gives each node its own).
// See docs/transport.md for host keys, auth, jump hosts, become and timeouts.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine/transport.h"

namespace labfleet {

struct SshJump {
  std::string name;      // for messages: inventory node name or host[:port]
  std::string host;
  int port = 22;
  std::string user;
  std::string identity;  // expanded path or empty
};

struct SshTarget {
  std::string name;      // node name, for messages
  std::string host;      // address
  int port = 22;
  std::string user = "root";
  std::string identity;  // private key file (expanded), tried after ssh-agent; empty = libssh's defaults
  std::string host_key;  // pinned public key "ssh-ed25519 AAAA..." (inventory host_key), optional
  // "type base64" of a key already verified for this node on another port (a Port change being followed):
  // accepted when known_hosts has no entry for this port, and then recorded there. Never overrides a
  // CHANGED entry.
  std::string trusted_key;
  bool become_sudo = false;
  std::optional<SshJump> jump;
  std::string known_hosts;  // file to check and (with accept_new) record keys in; must be set
  bool accept_new = false;
  // Bootstrap (engine/bootstrap.h): authenticate with this password (ssh "password" method) instead of keys.
  // Never logged, never part of a message; the caller clears it.
  std::string password;
  // Bootstrap: called with the node's key ("type base64") and its SHA-256 fingerprint when neither host_key nor
  // known_hosts vouches for it (a CHANGED known_hosts entry is refused before): true trusts the key for this
  // connection only (nothing is written to known_hosts; the caller pins it in the inventory), false refuses.
  std::function<bool(const std::string& key, const std::string& fingerprint)> confirm_new_key;
  int connect_timeout_s = 10;
  int command_timeout_s = 300;
};

class SshTransport : public Transport {
 public:
  explicit SshTransport(SshTarget target);  // connects, checks the host key, authenticates; throws TransportError
  ~SshTransport() override;
  SshTransport(const SshTransport&) = delete;
  SshTransport& operator=(const SshTransport&) = delete;

  std::string describe() const override;
  RunResult run(const std::string& command, std::string_view stdin_data = {}) override;
  RunResult stream(const std::string& command, ByteSource& in) override;
  // Every script of this transport over one kept channel (a loop on the node, engine/ssh_driver.h), started on
  // the first; after a stop (timeout, interrupt, output bound, a malformed result) the next one starts a fresh
  // loop. LABFLEET_SCRIPT_SESSIONS=per-script: run(ScriptRunner(), script), a channel per script.
  RunResult run_script(const std::string& script) override;
  // Notes gathered while connecting (e.g. "recorded new host key SHA256:... in FILE"); empty when none.
  std::string notes() const override;
  RunResult run_to(const std::string& command, ByteSink& out) override;  // at the end of ssh_transport.cc
  void add_note(const std::string& note);
  // The node's host key as verified while connecting: "ssh-ed25519 AAAA...".
  const std::string& host_key() const;

 private:
  // Impl throws the base class's errors through these.
  [[noreturn]] void raise_output_limit(const std::string& how, std::string out) const { throw_output_limit(how, std::move(out)); }
  [[noreturn]] void raise_interrupted(const std::string& how, std::string out) const { throw_interrupted(how, std::move(out)); }
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// "SHA256:..." of a public key line "type base64 [comment]"; empty when it is not one.
std::string HostKeyFingerprint(const std::string& key_line);

// Builds the OpenSSH ProxyCommand used for a jump host (exposed for unit tests).
std::string JumpProxyCommand(const SshTarget& target);
// "host" for port 22, "[host]:port" otherwise: how known_hosts names an endpoint.
std::string KnownHostsName(const std::string& host, int port);

}  // namespace labfleet
