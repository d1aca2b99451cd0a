// The only file that includes libssh. Design notes (details in docs/transport.md):
// - Connecting: ~/.ssh/config (and /etc/ssh/ssh_config) are processed first, then the inventory's values
//   override them (host, user, port, known_hosts, timeout, identity). StrictHostKeyChecking is forced on after the
//   config: libssh 0.10 otherwise reports an unknown host as OK when a config says "StrictHostKeyChecking no".
// - Timeouts: SSH_OPTIONS_TIMEOUT (the connect timeout) bounds TCP connect, banner, key exchange, auth, channel
//   open and exec, since every blocking libssh call waits at most the session timeout. A command's data phase runs
//   the session non-blocking and polls the socket until the command deadline, so a frozen node costs at most
//   the timeout. After a command timeout the session is closed: the node is treated as failed for this run.
// - Jump hosts: libssh 0.10 has no SSH_OPTIONS_PROXYJUMP (it came in 0.11) and cannot layer a session over a
//   channel, so the jump hop is OpenSSH's `ssh -W host:port jump` as the ProxyCommand, with the same known_hosts
//   file, identity and timeouts, in batch mode (never prompts).
// - Scripts (run_script): one kept channel per transport runs the node-side loop of engine/ssh_driver.h; each
//   script is a request written whole, then its frame is read non-blocking under the same bound, deadline and
//   cancel checks as a command; anything malformed or unexpected stops the loop (stop_on_node) and fails loudly.
#include "engine/ssh_transport.h"

#include <libssh/libssh.h>
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <fstream>
#include <mutex>
#include <vector>

#include "engine/local_transport.h"
#include "engine/planner.h"
#include "engine/shell.h"
#include "engine/ssh_driver.h"

namespace labfleet {

using Kind = TransportError::Kind;

std::string KnownHostsName(const std::string& host, int port) {
  if (port == 22) return host;
  return "[" + host + "]:" + std::to_string(port);
}

std::string JumpProxyCommand(const SshTarget& t) {
  if (!t.jump) return "";
  const SshJump& j = *t.jump;
  Cmd c("ssh");
  c.arg("-o").arg("BatchMode=yes");
  c.arg("-o").arg("ConnectTimeout=" + std::to_string(t.connect_timeout_s));
  c.arg("-o").arg("ServerAliveInterval=" + std::to_string(std::max(1, t.connect_timeout_s)));
  c.arg("-o").arg("ServerAliveCountMax=3");
  c.arg("-o").arg("UserKnownHostsFile=" + t.known_hosts);
  c.arg("-o").arg(std::string("StrictHostKeyChecking=") + (t.accept_new ? "accept-new" : "yes"));
  c.arg("-o").arg("ControlPath=none");
  if (!j.identity.empty()) c.arg("-i").arg(j.identity);
  c.arg("-p").arg(std::to_string(j.port));
  if (!j.user.empty()) c.arg("-l").arg(j.user);
  std::string dest = t.host.find(':') != std::string::npos ? "[" + t.host + "]" : t.host;
  c.arg("-W").arg(dest + ":" + std::to_string(t.port));
  c.arg("--").arg(j.host);
  return c.str();
}

namespace {

void IgnoreSigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { ::signal(SIGPIPE, SIG_IGN); });
}

std::mutex& KnownHostsMutex() {
  static std::mutex m;
  return m;
}

std::string Fingerprint(ssh_key key) {
  unsigned char* hash = nullptr;
  size_t len = 0;
  if (ssh_get_publickey_hash(key, SSH_PUBLICKEY_HASH_SHA256, &hash, &len) != 0) return "(unknown fingerprint)";
  char* fp = ssh_get_fingerprint_hash(SSH_PUBLICKEY_HASH_SHA256, hash, len);
  ssh_clean_pubkey_hash(&hash);
  std::string out = fp ? fp : "(unknown fingerprint)";
  ssh_string_free_char(fp);
  return out;
}

struct KeyPtr {
  ssh_key k = nullptr;
  ~KeyPtr() {
    if (k) ssh_key_free(k);
  }
};

// Entries of `file` for `host_name` (plain or hashed), as "file:line: SHA256:..." strings.
std::vector<std::string> KnownEntries(const std::string& file, const std::string& host_name) {
  std::vector<std::string> out;
  std::ifstream in(file);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos || line[b] == '#') continue;
    struct ssh_knownhosts_entry* e = nullptr;
    if (ssh_known_hosts_parse_line(host_name.c_str(), line.c_str(), &e) == SSH_OK && e) {
      if (e->publickey) out.push_back(file + ":" + std::to_string(n) + ": " + ssh_key_type_to_char(ssh_key_type(e->publickey)) +
                                      " " + Fingerprint(e->publickey));
      ssh_knownhosts_entry_free(e);
    }
  }
  return out;
}

// The host key algorithms to offer so that the server presents the pinned key's type.
std::string AlgorithmsFor(ssh_key key) {
  switch (ssh_key_type(key)) {
    case SSH_KEYTYPE_RSA:
      return "rsa-sha2-512,rsa-sha2-256,ssh-rsa";
    default:
      return ssh_key_type_to_char(ssh_key_type(key));
  }
}

// True when libssh holds data of channel `c` that a read returns now. poll(2) cannot see it: a read of ONE stream
// (ssh_channel_poll handles the socket when that stream's buffer is empty) also moves the OTHER stream's data off
// the socket into libssh's buffers, so a wait on the socket after reading stdout then stderr could sleep its whole
// timeout (200 ms) with stdout data waiting. Checked as stdout, stderr, stdout again: what the stderr check moves
// into stdout's buffer is seen; what the last check moves into stderr's waits for the next read (results and
// frames come on stdout).
bool ChannelBuffered(ssh_channel c) {
  return ssh_channel_poll(c, 0) > 0 || ssh_channel_poll(c, 1) > 0 || ssh_channel_poll(c, 0) > 0;
}

}  // namespace

std::string HostKeyFingerprint(const std::string& key_line) {
  size_t sp = key_line.find(' ');
  if (sp == std::string::npos) return "";
  std::string type = key_line.substr(0, sp);
  size_t e = key_line.find(' ', sp + 1);
  std::string b64 = key_line.substr(sp + 1, e == std::string::npos ? std::string::npos : e - sp - 1);
  KeyPtr k;
  if (b64.empty() || ssh_pki_import_pubkey_base64(b64.c_str(), ssh_key_type_from_name(type.c_str()), &k.k) != SSH_OK)
    return "";
  return Fingerprint(k.k);
}

// The first line of every wrapped command's stdout: the node-side pid of its session leader.
constexpr const char* kPidTag = "@@labfleet-pid:";

struct SshTransport::Impl {
  SshTransport* owner = nullptr;  // for the output bound and the cancel flag
  SshTarget t;
  ssh_session s = nullptr;
  std::string notes;
  std::string server_key;  // "type base64", set by check_host_key
  std::string dead;  // non-empty: the session is gone, why

  std::string where() const {
    std::string w = t.name + " (" + t.user + "@" + t.host + ":" + std::to_string(t.port);
    if (t.jump) w += " via " + t.jump->name;
    return w + ")";
  }

  [[noreturn]] void fail(Kind kind, const std::string& msg) { throw TransportError(kind, msg); }

  std::string libssh_error() const { return s ? ssh_get_error(s) : "out of memory"; }

  void connect() {
    IgnoreSigpipe();
    s = ssh_new();
    if (!s) fail(Kind::Other, "cannot create an SSH session for " + where());
    ssh_options_set(s, SSH_OPTIONS_HOST, t.host.c_str());
    // ~/.ssh/config and /etc/ssh/ssh_config, for this host; the inventory's values below override them.
    if (ssh_options_parse_config(s, nullptr) != SSH_OK)
      fail(Kind::Connect, "cannot read the OpenSSH client configuration (~/.ssh/config) for " + where() + ": " +
                              libssh_error());
    unsigned port = unsigned(t.port);
    ssh_options_set(s, SSH_OPTIONS_PORT, &port);
    ssh_options_set(s, SSH_OPTIONS_USER, t.user.c_str());
    ssh_options_set(s, SSH_OPTIONS_KNOWNHOSTS, t.known_hosts.c_str());
    int strict = 1;
    ssh_options_set(s, SSH_OPTIONS_STRICTHOSTKEYCHECK, &strict);
    long timeout = std::max(1, t.connect_timeout_s);
    ssh_options_set(s, SSH_OPTIONS_TIMEOUT, &timeout);
    if (!t.identity.empty()) ssh_options_set(s, SSH_OPTIONS_ADD_IDENTITY, t.identity.c_str());
    // TCP_NODELAY, as OpenSSH's client sets it for a session: every request here is a small write answered by the
    // node (the driver's header and script, the next request after a diff), and with Nagle's algorithm such a
    // write waits for the ACK of the previous one, which the node's kernel delays by up to 40 ms.
    int nodelay = 1;
    ssh_options_set(s, SSH_OPTIONS_NODELAY, &nodelay);
    if (t.jump) {
      std::string pc = JumpProxyCommand(t);
      if (pc.find('%') != std::string::npos)
        fail(Kind::Connect, "cannot reach " + where() + " through its jump host: a '%' in a host, user, path or "
                            "file name cannot be passed to the ProxyCommand; rename it");
      ssh_options_set(s, SSH_OPTIONS_PROXYCOMMAND, pc.c_str());
    }
    KeyPtr pinned;
    if (!t.host_key.empty()) {
      // "type base64 [comment]"
      std::string type, b64;
      size_t sp = t.host_key.find(' ');
      if (sp != std::string::npos) {
        type = t.host_key.substr(0, sp);
        size_t e = t.host_key.find(' ', sp + 1);
        b64 = t.host_key.substr(sp + 1, e == std::string::npos ? std::string::npos : e - sp - 1);
      }
      if (type.empty() || b64.empty() ||
          ssh_pki_import_pubkey_base64(b64.c_str(), ssh_key_type_from_name(type.c_str()), &pinned.k) != SSH_OK)
        fail(Kind::HostKey, "the host key pinned for " + t.name + " in the inventory (ssh.host_key) is not a public "
                            "key line like \"ssh-ed25519 AAAA...\"; copy it from the node's /etc/ssh/ssh_host_*_key.pub");
      std::string algs = AlgorithmsFor(pinned.k);
      ssh_options_set(s, SSH_OPTIONS_HOSTKEYS, algs.c_str());
    }

    if (ssh_connect(s) != SSH_OK) {
      std::string e = libssh_error();
      bool timed_out = e.find("imeout") != std::string::npos || e.find("timed out") != std::string::npos;
      std::string what = "cannot connect to " + where() + ": " + e + ". ";
      if (timed_out)
        fail(Kind::Timeout, what + "The node did not answer within " + std::to_string(t.connect_timeout_s) +
                                " s (--connect-timeout): check that it is up and not hung, or raise the timeout.");
      fail(Kind::Connect, what + "Check that the node is up and sshd listens on port " + std::to_string(t.port) +
                              " (ssh.port)" + (t.jump ? ", and that the jump host " + t.jump->name + " is reachable" : "") +
                              ".");
    }
    check_host_key(pinned.k);
    authenticate();
  }

  void check_host_key(ssh_key pinned) {
    KeyPtr srv;
    if (ssh_get_server_publickey(s, &srv.k) != SSH_OK) fail(Kind::HostKey, "no host key from " + where() + ": " + libssh_error());
    const std::string fp = Fingerprint(srv.k);
    const std::string type = ssh_key_type_to_char(ssh_key_type(srv.k));
    const std::string kh_name = KnownHostsName(t.host, t.port);
    {
      char* b64 = nullptr;
      if (ssh_pki_export_pubkey_base64(srv.k, &b64) == SSH_OK && b64) server_key = type + " " + b64;
      ssh_string_free_char(b64);
    }
    bool pinned_ok = false;
    if (pinned) {
      if (ssh_key_cmp(srv.k, pinned, SSH_KEY_CMP_PUBLIC) != 0)
        fail(Kind::HostKey, "HOST KEY MISMATCH for " + where() + ": the inventory pins " +
                                ssh_key_type_to_char(ssh_key_type(pinned)) + " " + Fingerprint(pinned) +
                                " (ssh.host_key) but the node presents " + type + " " + fp +
                                ". Refusing to connect. If the node was reinstalled, verify the new key out of band and "
                                "update host_key in the inventory; otherwise someone may be intercepting the connection.");
      pinned_ok = true;
    }
    enum ssh_known_hosts_e state = ssh_session_is_known_server(s);
    switch (state) {
      case SSH_KNOWN_HOSTS_OK:
        return;
      case SSH_KNOWN_HOSTS_OTHER:
        if (pinned_ok) return;  // the pinned key is authoritative; known_hosts only has another key type
        [[fallthrough]];
      case SSH_KNOWN_HOSTS_CHANGED: {
        std::vector<std::string> old = KnownEntries(t.known_hosts, kh_name);
        std::string olds;
        for (const auto& o : old) olds += (olds.empty() ? "" : "; ") + o;
        if (olds.empty()) olds = "an entry for " + kh_name + " (in " + t.known_hosts + " or /etc/ssh/ssh_known_hosts)";
        fail(Kind::HostKey,
             "HOST KEY CHANGED for " + where() + ": known_hosts has " + olds + ", but the node now presents " + type +
                 " " + fp + ". Refusing to connect (always, even with --accept-new-host-keys): someone may be "
                 "intercepting the connection. If the node was reinstalled, verify the new fingerprint out of band, "
                 "remove the old entry with `ssh-keygen -R '" + kh_name + "' -f " + t.known_hosts +
                 "` and connect again with --accept-new-host-keys.");
      }
      case SSH_KNOWN_HOSTS_UNKNOWN:
      case SSH_KNOWN_HOSTS_NOT_FOUND:
        if (pinned_ok) return;
        if (!t.trusted_key.empty() && t.trusted_key == server_key) {
          std::lock_guard lock(KnownHostsMutex());
          if (ssh_session_update_known_hosts(s) != SSH_OK)
            fail(Kind::HostKey, "cannot record the host key of " + where() + " in " + t.known_hosts + ": " + libssh_error());
          notes += std::string(notes.empty() ? "" : "; ") + "recorded host key " + type + " " + fp + " for " +
                   kh_name + " in " + t.known_hosts + " (the key this run verified on the node's previous port)";
          return;
        }
        if (t.confirm_new_key) {
          if (t.confirm_new_key(server_key, fp)) {
            notes += std::string(notes.empty() ? "" : "; ") + "trusted host key " + type + " " + fp + " (confirmed)";
            return;
          }
          fail(Kind::HostKey, "host key " + type + " " + fp + " of " + where() + " was not confirmed; nothing was "
                              "done on the node. Compare it with `ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub` on the "
                              "node's console, then run again and confirm it (or pass --accept-new-host-keys).");
        }
        if (t.accept_new) {
          std::lock_guard lock(KnownHostsMutex());
          if (ssh_session_update_known_hosts(s) != SSH_OK)
            fail(Kind::HostKey, "cannot record the host key of " + where() + " in " + t.known_hosts + ": " + libssh_error());
          notes += "recorded new host key " + type + " " + fp + " for " + kh_name + " in " + t.known_hosts;
          return;
        }
        fail(Kind::HostKey, "UNKNOWN HOST KEY for " + where() + ": " + type + " " + fp + " is not in " + t.known_hosts +
                                ". Verify the fingerprint (e.g. `ssh-keygen -lf /etc/ssh/ssh_host_" +
                                (type == "ssh-ed25519" ? std::string("ed25519") : std::string("*")) +
                                "_key.pub` on the node's console), then run again with --accept-new-host-keys to "
                                "record it, or pin it in the inventory (ssh.host_key).");
      case SSH_KNOWN_HOSTS_ERROR:
      default:
        fail(Kind::HostKey, "cannot check the host key of " + where() + " against " + t.known_hosts + ": " + libssh_error());
    }
  }

  void authenticate() {
    if (!t.password.empty()) {
      // One attempt only, so a wrong password never adds up to a lockout (sshd MaxAuthTries, pam_faillock).
      int rc = ssh_userauth_password(s, nullptr, t.password.c_str());
      if (rc == SSH_AUTH_SUCCESS) return;
      std::string e = libssh_error();
      if (rc == SSH_AUTH_ERROR && !ssh_is_connected(s))
        fail(Kind::Lost, "connection to " + where() + " lost while authenticating: " + e);
      fail(Kind::Auth, "password login as " + t.user + " refused by " + where() +
                           " (one attempt was made): check the password (--ask-pass or LABFLEET_PASSWORD_FILE) and "
                           "that sshd allows PasswordAuthentication for " + t.user + (e.empty() ? "" : " (" + e + ")"));
    }
    int rc = ssh_userauth_publickey_auto(s, nullptr, nullptr);
    if (rc == SSH_AUTH_SUCCESS) return;
    std::string e = libssh_error();
    if (rc == SSH_AUTH_ERROR && !ssh_is_connected(s))
      fail(Kind::Lost, "connection to " + where() + " lost while authenticating: " + e);
    if (rc == SSH_AUTH_ERROR && (e.find("imeout") != std::string::npos || e.find("timed out") != std::string::npos))
      fail(Kind::Timeout, "authentication on " + where() + " did not finish within " + std::to_string(t.connect_timeout_s) +
                              " s (--connect-timeout): " + e);
    fail(Kind::Auth, "authentication as " + t.user + " refused by " + where() + " (tried ssh-agent" +
                         (t.identity.empty() ? std::string(" and the default keys in ~/.ssh")
                                             : " and the identity file " + t.identity) +
                         "): " + (e.empty() ? "no key accepted" : e) + ". Put the public key in ~" + t.user +
                         "/.ssh/authorized_keys on the node, load the key into ssh-agent, or set ssh.identity/ssh.user "
                         "in the inventory.");
  }

  void kill_session(const std::string& why) {
    dead = why;
    drv = nullptr;  // freed with the session
    drv_pid = 0;
    if (s) {
      ssh_disconnect(s);
      ssh_free(s);
      s = nullptr;
    }
  }

  // The command as sshd gets it: /bin/sh (sshd would use the user's login shell; the contract is /bin/sh), as root
  // (sudo), and, where the node has setsid, in a session of its own whose leader prints its pid (= session id =
  // process group id) as the first line of stdout, before the command can print anything: what stop_on_node()
  // signals. Without setsid the pid printed is the shell sshd started (a session leader already, when no sudo).
  std::string wrap(const std::string& command_in) const {
    // The command runs in this shell by eval (after `set --`: no positional parameters, as under `sh -c`), not
    // in a third `exec sh -c`: one program fewer per session; same pid, so the pid printed is still its own.
    const std::string inner = "printf '" + std::string(kPidTag) + "%s\\n' \"$$\"; eval \"set --\n$1\"";
    const std::string outer = "if command -v setsid >/dev/null 2>&1; then exec setsid -w sh -c " + ShellQuote(inner) +
                              " sh \"$1\"; else " + inner + "; fi";
    Cmd c = t.become_sudo && t.user != "root" ? Cmd("sudo").arg("-n").arg("sh") : Cmd("sh");
    return c.arg("-c").arg(outer).arg("sh").arg(command_in).str();
  }

  // Stops the command whose node-side session/group leader is `pid`, over a fresh channel of this session:
  // SIGTERM to its process group (`kill -TERM -PGID`: dash's kill takes no `--`) and every process of its session (found in /proc), up to ~2 s for them to go,
  // then SIGKILL.
  // Returns a sentence for the error message: whether it worked.
  std::string stop_on_node(long pid) {
    if (pid <= 1) return "labfleet could not stop it on the node (no node-side pid was received); check the node.";
    if (!dead.empty()) return "labfleet could not stop it on the node (" + dead + "); check the node.";
    const std::string p = std::to_string(pid);
    Script k;
    k.raw("p=" + p);
    // The session's live (not zombie) members from /proc: fields after the name are state, ppid, pgrp, session.
    // lf_each 1: all of them; lf_each 0: those outside its process group (the group gets one kill -SIG -- -PGID:
    // a second signal would hit an apply script's exit trap while it releases the lock).
    k.raw("lf_each() { lf_all=$1; for f in /proc/[0-9]*/stat; do { read -r l < \"$f\"; } 2>/dev/null || continue; "
          "l=${l##*) }; set -- $l; [ \"$1\" != Z ] && [ \"$4\" = $p ] && { [ $lf_all = 1 ] || [ \"$3\" != $p ]; } && "
          "echo \"${f%/stat}\"; done; }");
    k.raw("lf_sig() { kill -\"$1\" -$p 2>/dev/null; for d in $(lf_each 0); do kill -\"$1\" \"${d#/proc/}\" 2>/dev/null; done; }");
    k.raw("lf_alive() { if [ -r /proc/self/stat ]; then [ -n \"$(lf_each 1)\" ]; else kill -0 -$p 2>/dev/null; fi; }");
    k.raw("lf_wait() { i=0; while lf_alive && [ $i -lt $1 ]; do sleep 0.1 2>/dev/null || sleep 1; i=$((i+1)); done; }");
    k.raw("lf_alive || { echo gone; exit 0; }");
    k.raw("lf_sig TERM; lf_wait 20");
    k.raw("lf_alive || { echo term; exit 0; }");
    k.raw("lf_sig KILL; lf_wait 20");
    k.raw("lf_alive && echo alive || echo kill");
    try {
      StringSource none("");
      RunResult r = exec(k.str(), none, /*stoppable=*/false, t.connect_timeout_s + 5);
      const std::string how = r.out.substr(0, r.out.find('\n'));
      if (how == "gone") return "It had already ended on the node.";
      if (how == "term") return "It was stopped on the node (SIGTERM to its process group, node-side pid " + p + ").";
      if (how == "kill")
        return "It was stopped on the node (SIGTERM, then SIGKILL to its process group, node-side pid " + p + ").";
      return "labfleet could NOT stop it on the node (process group " + p + " survived SIGKILL: " + r.out + r.err +
             "); check the node.";
    } catch (const TransportError& e) {
      return std::string("labfleet could not stop it on the node (") + e.what() + "); check the node.";
    }
  }

  RunResult run(const std::string& command_in, ByteSource& in) {
    return exec(command_in, in, /*stoppable=*/true, t.command_timeout_s);
  }

  // `stoppable`: the user's command (wrapped, bounded, cancellable, stopped on the node at the timeout); else
  // labfleet's own short command (stop_on_node): sent as is under `sh -c`, and only the timeout applies.
  RunResult exec(const std::string& command_in, ByteSource& in, bool stoppable, int timeout_s) {
    using Clock = std::chrono::steady_clock;
    if (!dead.empty()) fail(Kind::Lost, "no session to " + where() + ": " + dead);
    if (stoppable && owner->cancelled())
      throw TransportError(Kind::Interrupted, "interrupted: the command on " + where() + " was not started.");
    const bool sudo = t.become_sudo && t.user != "root";
    const std::string command =
        stoppable ? wrap(command_in) : (sudo ? WrapSudo(command_in) : Cmd("sh").arg("-c").arg(command_in).str());

    ssh_channel ch = ssh_channel_new(s);
    if (!ch) fail(Kind::Other, "cannot create a channel to " + where() + ": " + libssh_error());
    struct ChannelGuard {
      ssh_channel ch;
      ~ChannelGuard() {
        if (ch) ssh_channel_free(ch);
      }
    } guard{ch};
    auto session_failure = [&](const std::string& doing) {
      std::string e = libssh_error();
      bool timed_out = e.find("imeout") != std::string::npos || e.find("timed out") != std::string::npos;
      guard.ch = nullptr;
      ssh_channel_free(ch);
      kill_session(doing + " failed: " + e);
      if (timed_out)
        fail(Kind::Timeout, "node " + where() + " stopped answering (" + doing + " took more than " +
                                std::to_string(t.connect_timeout_s) + " s): " + e + ". Check that it is not hung.");
      fail(Kind::Lost, "connection to " + where() + " lost (" + doing + "): " + e);
    };
    if (ssh_channel_open_session(ch) != SSH_OK) session_failure("opening a channel");
    if (ssh_channel_request_exec(ch, command.c_str()) != SSH_OK) session_failure("starting the command");

    RunResult r;
    const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    // The first line of stdout is the wrapper's pid line; it is held in `head` until complete.
    long node_pid = 0;
    bool head_done = !stoppable;
    std::string head;
    const size_t max_output = owner->max_output();
    // Stops the command on the node over a fresh channel, then closes this one. This channel stays open until
    // then: a script whose output pipe is closed would die of SIGPIPE at its next write instead of running its
    // TERM trap (which releases the apply lock). What still arrives on it meanwhile is bounded by its window.
    auto stop = [&]() -> std::string {
      ssh_set_blocking(s, 1);
      std::string how = stop_on_node(node_pid);
      guard.ch = nullptr;
      if (s) {  // else the stop lost the session, and ssh_free() freed this channel with it
        ssh_channel_close(ch);
        ssh_channel_free(ch);
      }
      return how;
    };
    // stdin: one buffer from the source at a time, refilled once the channel took all of it.
    char inbuf[65536];
    size_t in_len = 0, in_off = 0;
    bool src_done = false;
    auto refill = [&] {
      if (in_off < in_len || src_done) return;
      in_off = 0;
      in_len = in.read(inbuf, sizeof inbuf);
      if (in_len == 0) src_done = true;
    };
    bool eof_sent = false;
    refill();
    if (src_done) {
      ssh_channel_send_eof(ch);
      eof_sent = true;
    }
    ssh_set_blocking(s, 0);
    const int fd = ssh_get_fd(s);
    char buf[65536];
    bool lost = false;
    bool exited = false;
    Clock::time_point last_progress = Clock::now();
    for (;;) {
      bool progress = false;
      if (!eof_sent && !ssh_channel_is_closed(ch)) {
        uint32_t window = ssh_channel_window_size(ch);
        if (window > 0 && in_off < in_len) {
          uint32_t n = uint32_t(std::min<size_t>({in_len - in_off, size_t(window), size_t(32768)}));
          int w = ssh_channel_write(ch, inbuf + in_off, n);
          if (w == SSH_ERROR) {
            if (!ssh_is_connected(s)) {
              lost = true;
              break;
            }
            in_off = in_len;  // the command closed its input; nothing more to write
            src_done = true;
          } else if (w > 0) {
            in_off += size_t(w);
            progress = true;
          }
        }
        if (in_off >= in_len) {
          try {
            refill();
          } catch (...) {
            ssh_set_blocking(s, 1);
            ssh_channel_send_eof(ch);
            ssh_channel_close(ch);
            throw;
          }
          if (in_len > 0 && !src_done) progress = true;
        }
        if (src_done && in_off >= in_len) {
          ssh_channel_send_eof(ch);
          eof_sent = true;
          progress = true;
        }
      }
      int got[2] = {0, 0};
      for (int is_err = 0; is_err < 2; ++is_err) {
        for (;;) {
          int n = ssh_channel_read_nonblocking(ch, buf, sizeof buf, is_err);
          if (n == SSH_ERROR) {
            lost = true;
            break;
          }
          if (n <= 0) break;  // 0 = nothing now, SSH_EOF = done
          if (!is_err && !head_done) {
            head.append(buf, size_t(n));
            size_t nl = head.find('\n');
            if (nl == std::string::npos && head.size() < 64) continue;
            head_done = true;
            const std::string tag = kPidTag;
            if (nl != std::string::npos && head.compare(0, tag.size(), tag) == 0) {
              node_pid = std::atol(head.c_str() + tag.size());
              r.out.append(head, nl + 1, std::string::npos);
            } else {
              r.out += head;  // no pid line (cannot happen with the wrapper): all of it is output
            }
            head.clear();
          } else {
            (is_err ? r.err : r.out).append(buf, size_t(n));
          }
          got[is_err] += n;
          if (stoppable && r.out.size() + r.err.size() > max_output) break;
        }
        if (lost) break;
        if (stoppable && r.out.size() + r.err.size() > max_output) break;
      }
      if (lost) break;
      if (stoppable && r.out.size() + r.err.size() > max_output) {
        std::string how = stop();
        if (r.out.size() > max_output) r.out.resize(max_output);
        // The session is fine (the node answered the stop): later commands may still use it.
        owner->raise_output_limit(how, std::move(r.out));
      }
      if (stoppable && owner->cancelled()) {
        std::string how = stop();
        kill_session("labfleet was interrupted");
        owner->raise_interrupted(how, std::move(r.out));
      }
      if (got[0] || got[1]) progress = true;
      if (ssh_channel_is_eof(ch) || ssh_channel_is_closed(ch)) break;
      auto now = Clock::now();
      // The command has exited but something it started in the background still holds its stdout/stderr
      // open (so no EOF comes): take what arrives within a short grace period and stop, as LocalTransport
      // does, instead of waiting for the background process. In non-blocking mode this only peeks.
      if (!exited && ssh_channel_get_exit_status(ch) >= 0) {
        exited = true;
        last_progress = now;
      }
      if (progress) {
        last_progress = now;
        continue;
      }
      if (exited && now - last_progress > std::chrono::milliseconds(200)) break;
      if (now >= deadline) {
        std::string how = stoppable ? stop() : "";
        if (!stoppable) {
          ssh_set_blocking(s, 1);
          guard.ch = nullptr;
          ssh_channel_free(ch);
        }
        kill_session("a command timed out");
        throw TransportError(Kind::Timeout, "command on " + where() + " did not finish within " +
                                                std::to_string(timeout_s) + " s (--timeout). " + how +
                                                " The session was closed. Check whether the node is hung, or raise "
                                                "--timeout if the command is expected to take longer.",
                             std::move(r.out));
      }
      long ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      if (ChannelBuffered(ch)) continue;
      pollfd p{fd, short(POLLIN | ((ssh_get_poll_flags(s) & SSH_WRITE_PENDING) ? POLLOUT : 0)), 0};
      // Bounded wait all the same (a bound, not a schedule: data is read as soon as the socket has some).
      ::poll(&p, 1, int(std::min<long>(ms, exited ? 50 : 200)));
      if (!ssh_is_connected(s)) {
        lost = true;
        break;
      }
    }
    ssh_set_blocking(s, 1);
    if (lost) session_failure("running a command");
    if (!head_done) r.out += head;  // a command that ended before its first newline
    // The exit status follows the EOF; waiting for it is bounded by the session timeout.
    int status = ssh_channel_get_exit_status(ch);
    if (status < 0) {
      if (!ssh_is_connected(s)) session_failure("reading the exit status");
      status = 255;  // killed by a signal (exit-signal), or the server sent no status
      if (r.err.empty() || r.err.back() != '\n') r.err += r.err.empty() ? "" : "\n";
      r.err += "labfleet: the command ended without an exit status (killed by a signal?)\n";
    }
    r.exit_code = status;
    ssh_channel_close(ch);
    if (sudo && IsSudoPasswordRefusal(r))
      fail(Kind::Auth, "sudo on " + where() + " asks for a password; `ssh.become: sudo` needs passwordless sudo for " +
                           t.user + " (a NOPASSWD rule in /etc/sudoers.d)");
    return r;
  }

  // --- the script driver: every run_script() of this transport over one kept channel (engine/ssh_driver.h) ---
  bool per_script = false;      // LABFLEET_SCRIPT_SESSIONS=per-script: each script on a channel of its own
  ssh_channel drv = nullptr;    // the loop's channel; null until the first script, or after it was stopped
  long drv_pid = 0;             // the loop's node-side pid (its session and process group; the lock's node_pid)
  std::string drv_err;          // the loop's own stderr (not the scripts'), kept for messages, bounded

  // Closes the loop's channel: EOF on its stdin ends the loop on the node (its EXIT trap removes its directory).
  // `wait`: first wait (at most 1 s) for the loop to end, so that its directory is gone when the transport is.
  void close_driver(bool wait = false) {
    if (drv && s) {
      ssh_set_blocking(s, 1);
      ssh_channel_send_eof(drv);
      if (wait) {
        ssh_set_blocking(s, 0);
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        char buf[4096];
        while (std::chrono::steady_clock::now() < until && ssh_is_connected(s) && !ssh_channel_is_closed(drv) &&
               !ssh_channel_is_eof(drv)) {
          bool got = false;
          for (int is_err = 0; is_err < 2; ++is_err)
            while (ssh_channel_read_nonblocking(drv, buf, sizeof buf, is_err) > 0) got = true;
          // The read above may have taken the loop's exit status, EOF and close off the socket: test for them
          // again before waiting, or the wait below sleeps its full 20 ms on a socket that has nothing more.
          if (!got && !ssh_channel_is_closed(drv) && !ssh_channel_is_eof(drv) && !ChannelBuffered(drv)) wait_socket(20);
        }
        ssh_set_blocking(s, 1);
      }
      ssh_channel_close(drv);
      ssh_channel_free(drv);
    }
    drv = nullptr;
    drv_pid = 0;
    drv_err.clear();
  }

  // Stops the loop and whatever script it runs (its process group and session, as stop_on_node does for a
  // command), then closes its channel; the next script starts a fresh loop. Returns stop_on_node's sentence.
  std::string stop_driver() {
    ssh_set_blocking(s, 1);
    std::string how = stop_on_node(drv_pid);
    close_driver();
    return how;
  }

  [[noreturn]] void driver_channel_failure(const std::string& doing) {
    std::string e = libssh_error();
    bool timed_out = e.find("imeout") != std::string::npos || e.find("timed out") != std::string::npos;
    kill_session(doing + " failed: " + e);
    if (timed_out)
      fail(Kind::Timeout, "node " + where() + " stopped answering (" + doing + " took more than " +
                              std::to_string(t.connect_timeout_s) + " s): " + e + ". Check that it is not hung.");
    fail(Kind::Lost, "connection to " + where() + " lost (" + doing + "): " + e);
  }

  // The loop ended (its channel closed) when it should not have: why, from its exit status and stderr.
  [[noreturn]] void driver_ended(const std::string& when) {
    ssh_set_blocking(s, 1);
    int status = ssh_channel_get_exit_status(drv);
    RunResult r;
    r.exit_code = status;
    r.err = drv_err;
    close_driver();
    const bool sudo = t.become_sudo && t.user != "root";
    if (sudo && IsSudoPasswordRefusal(r))
      fail(Kind::Auth, "sudo on " + where() + " asks for a password; `ssh.become: sudo` needs passwordless sudo for " +
                           t.user + " (a NOPASSWD rule in /etc/sudoers.d)");
    std::string err = r.err.substr(0, 300);
    while (!err.empty() && err.back() == '\n') err.pop_back();
    // Ending as it starts is a node that cannot run the loop; ending later, something on the node ended it.
    const std::string hint =
        when == "as it started"
            ? "the node needs /bin/sh with head -c and mktemp. LABFLEET_SCRIPT_SESSIONS=per-script runs each script "
              "on a channel of its own instead."
            : "something on the node ended it (killed, out of memory, shutting down); nothing of that script's "
              "result is used, and the node's next script starts a fresh loop.";
    fail(Kind::Lost, "the script loop on " + where() + " ended " + when + " (exit " +
                         (status < 0 ? std::string("unknown") : std::to_string(status)) +
                         (err.empty() ? std::string() : ": " + err) + "); " + hint);
  }

  // Reads what the loop's channel has now (non-blocking): stdout appended to `out`, the loop's own stderr to
  // drv_err (bounded). Returns bytes read; throws when the connection is lost.
  size_t drain_driver(std::string& out, size_t out_cap) {
    char buf[65536];
    size_t total = 0;
    for (int is_err = 0; is_err < 2; ++is_err) {
      for (;;) {
        if (!is_err && out.size() > out_cap) break;
        int n = ssh_channel_read_nonblocking(drv, buf, sizeof buf, is_err);
        if (n == SSH_ERROR) driver_channel_failure("reading a script's result");
        if (n <= 0) break;
        total += size_t(n);
        if (!is_err)
          out.append(buf, size_t(n));
        else if (drv_err.size() < kDriverMaxErr)
          drv_err.append(buf, std::min(size_t(n), kDriverMaxErr - drv_err.size()));
      }
    }
    return total;
  }

  // Waits (bounded) for the socket or `ms`.
  void wait_socket(long ms) {
    pollfd p{ssh_get_fd(s), short(POLLIN | ((ssh_get_poll_flags(s) & SSH_WRITE_PENDING) ? POLLOUT : 0)), 0};
    ::poll(&p, 1, int(ms));
  }

  // Opens the loop's channel and reads its pid line (within --connect-timeout).
  void start_driver() {
    using Clock = std::chrono::steady_clock;
    ssh_set_blocking(s, 1);
    ssh_channel ch = ssh_channel_new(s);
    if (!ch) fail(Kind::Other, "cannot create a channel to " + where() + ": " + libssh_error());
    if (ssh_channel_open_session(ch) != SSH_OK) {
      ssh_channel_free(ch);
      driver_channel_failure("opening a channel");
    }
    drv = ch;
    if (ssh_channel_request_exec(ch, wrap(DriverLoopScript()).c_str()) != SSH_OK)
      driver_channel_failure("starting the script loop");
    const auto deadline = Clock::now() + std::chrono::seconds(std::max(1, t.connect_timeout_s));
    std::string head;
    ssh_set_blocking(s, 0);
    for (;;) {
      drain_driver(head, 256);
      size_t nl = head.find('\n');
      const std::string tag = kPidTag;
      if (nl != std::string::npos || head.size() > 64) {
        ssh_set_blocking(s, 1);
        if (nl == std::string::npos || nl != head.size() - 1 || head.compare(0, tag.size(), tag) != 0) {
          std::string got = head.substr(0, 64);
          stop_driver();
          fail(Kind::Other, "the script loop on " + where() + " did not start as expected (its first output was not "
                            "its pid line, " + std::to_string(head.size()) + " bytes); check the node's /bin/sh. "
                            "LABFLEET_SCRIPT_SESSIONS=per-script runs each script on a channel of its own instead.");
        }
        drv_pid = std::atol(head.c_str() + tag.size());
        return;
      }
      if (ssh_channel_is_eof(drv) || ssh_channel_is_closed(drv)) driver_ended("as it started");
      if (!ssh_is_connected(s)) driver_channel_failure("starting the script loop");
      auto now = Clock::now();
      if (now >= deadline) {
        ssh_set_blocking(s, 1);
        close_driver();
        kill_session("the script loop did not start");
        fail(Kind::Timeout, "node " + where() + " did not start its script loop within " +
                                std::to_string(t.connect_timeout_s) + " s (--connect-timeout). Check that it is not hung.");
      }
      if (!ChannelBuffered(drv)) wait_socket(50);
    }
  }

  RunResult run_script(const std::string& script) {
    using Clock = std::chrono::steady_clock;
    if (per_script) {
      StringSource in(script);
      return run(ScriptRunner(), in);
    }
    if (!dead.empty()) fail(Kind::Lost, "no session to " + where() + ": " + dead);
    if (owner->cancelled())
      throw TransportError(Kind::Interrupted, "interrupted: the script on " + where() + " was not started.");
    if (!drv) start_driver();
    ssh_set_blocking(s, 0);
    // Lockstep: nothing may arrive between two frames.
    std::string stray;
    drain_driver(stray, 4096);
    if (!stray.empty()) {
      std::string how = stop_driver();
      fail(Kind::Other, "node " + where() + " sent " + std::to_string(stray.size()) + "+ bytes between two scripts "
                        "(something the previous script left running writes to its output, or the node is not "
                        "trustworthy); labfleet stopped its script loop. " + how);
    }
    const std::string nonce = NewNonce() + NewNonce();
    const std::string req = DriverRequest(script, nonce);
    ssh_set_blocking(s, 1);
    // Blocking writes: each waits for window at most the session timeout (--connect-timeout); a node that takes
    // nothing for that long (a write of 0 bytes) is treated as hung, as a command past its deadline is.
    auto last_progress = Clock::now();
    for (size_t off = 0; off < req.size();) {
      int w = ssh_channel_write(drv, req.data() + off, uint32_t(std::min<size_t>(req.size() - off, 32768)));
      if (w == SSH_ERROR) {
        if (!ssh_is_connected(s)) driver_channel_failure("sending a script");
        driver_ended("while a script was sent");
      }
      if (w > 0) {
        off += size_t(w);
        last_progress = Clock::now();
      } else if (owner->cancelled() ||
                 Clock::now() - last_progress > std::chrono::seconds(std::max(1, t.connect_timeout_s))) {
        const bool interrupted = owner->cancelled();
        std::string how = stop_driver();
        kill_session(interrupted ? "labfleet was interrupted" : "the node took no input");
        if (interrupted) owner->raise_interrupted(how, "");
        fail(Kind::Timeout, "node " + where() + " took no part of a script for " + std::to_string(t.connect_timeout_s) +
                                " s (--connect-timeout). " + how + " Check that it is not hung.");
      }
    }
    ssh_set_blocking(s, 0);
    const size_t max_output = owner->max_output();
    const auto deadline = Clock::now() + std::chrono::seconds(t.command_timeout_s);
    std::string buf;
    size_t from = 0;
    // What the node may send for one script: the bound, plus the frame around it.
    const size_t cap = max_output + kDriverMaxErr + 256;
    for (;;) {
      size_t got = drain_driver(buf, cap);
      DriverFrame f = ParseDriverFrame(buf, nonce, from);
      if (f.state == DriverFrame::State::Complete) {
        ssh_set_blocking(s, 1);
        RunResult r;
        r.exit_code = f.exit_code;
        r.err = std::move(f.err);
        buf.resize(f.out_len);
        r.out = std::move(buf);
        if (r.out.size() + r.err.size() > max_output) {
          if (r.out.size() > max_output) r.out.resize(max_output);
          owner->raise_output_limit("It had already ended on the node.", std::move(r.out));
        }
        return r;
      }
      if (f.state == DriverFrame::State::Malformed) {
        std::string how = stop_driver();
        fail(Kind::Other, "node " + where() + " sent a malformed script result: " + f.why +
                              ". labfleet stopped its script loop and trusts nothing of this result; check the node. " +
                              how);
      }
      from = f.search_from;
      if (buf.size() > max_output) {
        std::string how = stop_driver();
        buf.resize(max_output);
        owner->raise_output_limit(how, std::move(buf));
      }
      if (owner->cancelled()) {
        std::string how = stop_driver();
        kill_session("labfleet was interrupted");
        owner->raise_interrupted(how, std::move(buf));
      }
      if (got) continue;
      if (ssh_channel_is_eof(drv) || ssh_channel_is_closed(drv)) driver_ended("in the middle of a script");
      auto now = Clock::now();
      if (now >= deadline) {
        std::string how = stop_driver();
        kill_session("a command timed out");
        throw TransportError(Kind::Timeout, "command on " + where() + " did not finish within " +
                                                std::to_string(t.command_timeout_s) + " s (--timeout). " + how +
                                                " The session was closed. Check whether the node is hung, or raise "
                                                "--timeout if the command is expected to take longer.",
                             std::move(buf));
      }
      long ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
      if (!ChannelBuffered(drv)) wait_socket(std::min<long>(ms, 200));
      if (!ssh_is_connected(s)) driver_channel_failure("running a script");
    }
  }

  ~Impl() {
    close_driver(/*wait=*/true);
    if (s) {
      ssh_disconnect(s);
      ssh_free(s);
    }
  }
};

SshTransport::SshTransport(SshTarget target) : impl_(std::make_unique<Impl>()) {
  impl_->owner = this;
  impl_->t = std::move(target);
  const char* mode = std::getenv("LABFLEET_SCRIPT_SESSIONS");
  const std::string m = mode ? mode : "";
  if (m != "" && m != "one" && m != "per-script")
    throw TransportError(TransportError::Kind::Other,
                         "LABFLEET_SCRIPT_SESSIONS is '" + m + "': it must be 'one' (the default: every script of a "
                         "run over one channel per node) or 'per-script' (a channel for each script)");
  impl_->per_script = m == "per-script";
  impl_->connect();
}

SshTransport::~SshTransport() = default;

std::string SshTransport::describe() const { return impl_->where(); }

RunResult SshTransport::run(const std::string& command, std::string_view stdin_data) {
  StringSource in(stdin_data);
  return impl_->run(command, in);
}

RunResult SshTransport::stream(const std::string& command, ByteSource& in) { return impl_->run(command, in); }

RunResult SshTransport::run_script(const std::string& script) { return impl_->run_script(script); }

std::string SshTransport::notes() const { return impl_->notes; }

void SshTransport::add_note(const std::string& note) {
  impl_->notes += (impl_->notes.empty() ? "" : "; ") + note;
}

const std::string& SshTransport::host_key() const { return impl_->server_key; }

}  // namespace labfleet

// ---- Streaming stdout (run_to, transport.h "Streaming stdout"): a fresh channel of the kept session, apart from
// Impl::exec, so the command path above stays as it is. Bytes go to the sink as they arrive (one 64 KiB buffer);
// stderr is bounded by max_output(). Stopping = closing the channel: sshd closes the command's stdout, so
// `btrfs send | zstd` ends on SIGPIPE.
namespace labfleet {

RunResult SshTransport::run_to(const std::string& command_in, ByteSink& out) {
  using Clock = std::chrono::steady_clock;
  Impl& im = *impl_;
  if (!im.dead.empty()) throw TransportError(Kind::Lost, "no session to " + im.where() + ": " + im.dead);
  if (cancelled()) throw_interrupted("It was not started.", {});
  const bool sudo = im.t.become_sudo && im.t.user != "root";
  const std::string command = sudo ? WrapSudo(command_in) : Cmd("sh").arg("-c").arg(command_in).str();
  ssh_set_blocking(im.s, 1);
  ssh_channel ch = ssh_channel_new(im.s);
  if (!ch) throw TransportError(Kind::Other, "cannot create a channel to " + im.where() + ": " + im.libssh_error());
  struct Guard {
    ssh_channel ch;
    ~Guard() {
      if (ch) {
        ssh_channel_close(ch);
        ssh_channel_free(ch);
      }
    }
  } guard{ch};
  if (ssh_channel_open_session(ch) != SSH_OK || ssh_channel_request_exec(ch, command.c_str()) != SSH_OK)
    throw TransportError(Kind::Lost, "cannot start a streaming command on " + im.where() + ": " + im.libssh_error());
  ssh_channel_send_eof(ch);  // no stdin
  RunResult r;
  const auto deadline = Clock::now() + std::chrono::seconds(im.t.command_timeout_s);
  std::vector<char> buf(65536);
  for (;;) {
    int n = ssh_channel_read_timeout(ch, buf.data(), uint32_t(buf.size()), 0, 100);
    if (n == SSH_ERROR) {
      im.kill_session("a streaming command lost its connection");
      guard.ch = nullptr;  // freed with the session
      throw TransportError(Kind::Lost, "connection to " + im.where() + " lost while streaming: " + im.dead);
    }
    if (n > 0) {
      bool more = out.write(buf.data(), size_t(n));  // an exception closes the channel (guard) and propagates
      if (!more) {
        r.exit_code = 141;
        r.err += "labfleet: the receiving side took no more output; the command was stopped\n";
        return r;
      }
    }
    for (;;) {
      int e = ssh_channel_read_nonblocking(ch, buf.data(), uint32_t(buf.size()), 1);
      if (e <= 0) break;
      if (r.err.size() < max_output()) r.err.append(buf.data(), std::min(size_t(e), max_output() - r.err.size()));
    }
    if (ssh_channel_is_eof(ch) || ssh_channel_is_closed(ch)) {
      // drain what is still buffered
      while ((n = ssh_channel_read_nonblocking(ch, buf.data(), uint32_t(buf.size()), 0)) > 0)
        if (!out.write(buf.data(), size_t(n))) break;
      break;
    }
    if (cancelled()) throw_interrupted("Its channel was closed.", {});
    if (Clock::now() >= deadline)
      throw TransportError(Kind::Timeout, "streaming command on " + im.where() + " did not finish within " +
                                              std::to_string(im.t.command_timeout_s) +
                                              " s (--timeout); its channel was closed. Raise --timeout for large images.");
  }
  int status = ssh_channel_get_exit_status(ch);
  if (status < 0) {
    status = 255;
    r.err += "labfleet: the command ended without an exit status (killed by a signal?)\n";
  }
  r.exit_code = status;
  return r;
}

}  // namespace labfleet
