// From an inventory node to a live Transport, and running per-node work in parallel.
//
//   ConnectOptions opts; AddConnectOptions(sub, opts);       // --parallel --connect-timeout --timeout ...
//   ForEachNode(nodes, opts.parallel, [&](size_t i, const NodeDef& n) {
//     try { auto t = Connect(inv, n, opts); ... t->run(...); } catch (const TransportError& e) { ... }
//   });
#pragma once
#include <CLI/CLI.hpp>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/inventory.h"
#include "engine/ssh_transport.h"
#include "engine/transport.h"

namespace labfleet {

struct ConnectOptions {
  int parallel = 32;
  int connect_timeout_s = 10;
  int command_timeout_s = 300;
  bool accept_new_host_keys = false;
  std::string known_hosts;  // empty = ~/.ssh/known_hosts
  // Set on every transport Connect() returns (Transport::set_cancel): when it becomes true, commands in flight
  // are stopped on their nodes and throw TransportError(Interrupted). Not owned; nullptr = never.
  const std::atomic<bool>* cancel = nullptr;
};

// --parallel N, --connect-timeout S, --timeout S, --accept-new-host-keys, --known-hosts FILE
void AddConnectOptions(CLI::App& app, ConnectOptions& opts);

// Connects to `node`: LocalTransport for `connection: local`, else SshTransport with user, port, identity, jump,
// become and host_key from inv.ssh(node). Throws TransportError (Connect, HostKey, Auth, Timeout, ...).
// When the node refuses ssh.port (or does not answer), ssh.fallback_ports are tried in order; the transport's
// notes() then say which port answered. `previous`: a live connection to the same node (the fresh-connection
// check after an sshd Port change): the host key it verified is trusted on the new port and recorded, and the
// fallback ports are not tried (that check is about ssh.port itself).
std::unique_ptr<Transport> Connect(const Inventory& inv, const NodeDef& node, const ConnectOptions& opts,
                                   const Transport* previous = nullptr);

// How Connect() reaches an ssh node (no fallback ports, no previous connection): user, port, identity, jump,
// become, host_key, known_hosts and timeouts from the inventory and `opts`. Throws TransportError(Connect) for a
// node without an address or a jump host that cannot be resolved. Bootstrap (engine/bootstrap.h) starts here.
SshTarget SshTargetFor(const Inventory& inv, const NodeDef& node, const ConnectOptions& opts);

// Calls fn(i, *nodes[i]) for every node on at most `parallel` threads (at least 1), returns when all are done.
// fn should not throw; if it does, the exception is caught and the first one is rethrown after all nodes finished.
void ForEachNode(const std::vector<const NodeDef*>& nodes, int parallel,
                 const std::function<void(size_t index, const NodeDef&)>& fn);

// "~/x" -> "$HOME/x"; anything else unchanged.
std::string ExpandHome(const std::string& path);
// The known_hosts file Connect() uses for `opts` (the option, else ~/.ssh/known_hosts).
std::string KnownHostsFile(const ConnectOptions& opts);

}  // namespace labfleet
