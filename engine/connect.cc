#include "engine/connect.h"

#include <pwd.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

#include "engine/local_transport.h"
#include "engine/ssh_transport.h"

namespace labfleet {

void AddConnectOptions(CLI::App& app, ConnectOptions& opts) {
  app.add_option("--parallel", opts.parallel, "nodes worked on at once")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--connect-timeout", opts.connect_timeout_s,
                 "seconds to wait for a node to connect, authenticate or answer a request")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--timeout", opts.command_timeout_s, "seconds one command on a node may run")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_flag("--accept-new-host-keys", opts.accept_new_host_keys,
               "record the host key of a node not yet in known_hosts (a changed key is still refused)");
  app.add_option("--known-hosts", opts.known_hosts, "known_hosts file (default ~/.ssh/known_hosts)");
}

std::string ExpandHome(const std::string& path) {
  if (path != "~" && path.rfind("~/", 0) != 0) return path;
  std::string home;
  if (const char* h = std::getenv("HOME"); h && *h) {
    home = h;
  } else if (const passwd* pw = getpwuid(getuid())) {
    home = pw->pw_dir;
  }
  return home + path.substr(1);
}

std::string KnownHostsFile(const ConnectOptions& opts) {
  return opts.known_hosts.empty() ? ExpandHome("~/.ssh/known_hosts") : ExpandHome(opts.known_hosts);
}

namespace {

// "user@host:port", "host:port", "[v6]:port", "host"
void ParseHostPort(const std::string& spec, SshJump& j) {
  std::string s = spec;
  if (auto at = s.find('@'); at != std::string::npos) {
    j.user = s.substr(0, at);
    s = s.substr(at + 1);
  }
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    j.host = s.substr(1, close == std::string::npos ? std::string::npos : close - 1);
    if (close != std::string::npos && close + 1 < s.size() && s[close + 1] == ':') j.port = std::atoi(s.c_str() + close + 2);
    return;
  }
  auto colon = s.find(':');
  if (colon != std::string::npos && s.find(':', colon + 1) == std::string::npos) {
    j.host = s.substr(0, colon);
    j.port = std::atoi(s.c_str() + colon + 1);
  } else {
    j.host = s;
  }
}

}  // namespace

SshTarget SshTargetFor(const Inventory& inv, const NodeDef& node, const ConnectOptions& opts) {
  SshSettings ssh = inv.ssh(node);
  if (node.address.empty())
    throw TransportError(TransportError::Kind::Connect,
                         "node " + node.name + " has no address; set `address:` in the inventory");
  SshTarget t;
  t.name = node.name;
  t.host = node.address;
  t.port = ssh.port;
  t.user = ssh.user.empty() ? "root" : ssh.user;
  t.identity = ExpandHome(ssh.identity);
  t.host_key = ssh.host_key;
  t.become_sudo = ssh.become == "sudo";
  t.known_hosts = KnownHostsFile(opts);
  t.accept_new = opts.accept_new_host_keys;
  t.connect_timeout_s = opts.connect_timeout_s;
  t.command_timeout_s = opts.command_timeout_s;
  if (!ssh.jump.empty()) {
    SshJump j;
    j.name = ssh.jump;
    if (const NodeDef* jn = inv.node(ssh.jump)) {
      if (jn->name == node.name)
        throw TransportError(TransportError::Kind::Connect, "node " + node.name + " names itself as its jump host");
      SshSettings js = inv.ssh(*jn);
      j.host = jn->address;
      j.port = js.port;
      j.user = js.user;
      j.identity = ExpandHome(js.identity);
    } else {
      ParseHostPort(ssh.jump, j);
      if (j.user.empty()) j.user = t.user;
      j.identity = t.identity;
    }
    if (j.host.empty())
      throw TransportError(TransportError::Kind::Connect,
                           "the jump host '" + ssh.jump + "' of node " + node.name + " has no address");
    t.jump = j;
  }
  return t;
}

std::unique_ptr<Transport> Connect(const Inventory& inv, const NodeDef& node, const ConnectOptions& opts,
                                   const Transport* previous) {
  SshSettings ssh = inv.ssh(node);
  if (node.connection == "local") {
    auto local = std::make_unique<LocalTransport>(node.name, opts.command_timeout_s, ssh.become == "sudo");
    local->set_cancel(opts.cancel);
    return local;
  }
  SshTarget t = SshTargetFor(inv, node, opts);
  if (auto* p = dynamic_cast<const SshTransport*>(previous)) t.trusted_key = p->host_key();
  try {
    auto tr = std::make_unique<SshTransport>(t);
    tr->set_cancel(opts.cancel);
    return tr;
  } catch (const TransportError& e) {
    bool unreachable = e.kind() == TransportError::Kind::Connect || e.kind() == TransportError::Kind::Timeout;
    // The fresh-connection check proves ssh.port itself: a login on a fallback port would prove nothing
    // (ProveFreshLogin retries ssh.port while sshd re-executes).
    if (!unreachable || ssh.fallback_ports.empty() || previous) throw;
    std::string tried;
    for (int port : ssh.fallback_ports) {
      if (port == t.port) continue;
      SshTarget f = t;
      f.port = port;
      try {
        auto tr = std::make_unique<SshTransport>(f);
        tr->set_cancel(opts.cancel);
        tr->add_note("ssh.port " + std::to_string(t.port) + " did not answer; connected on fallback port " +
                     std::to_string(port) + " (an sshd Port change not yet applied?)");
        return tr;
      } catch (const TransportError& fe) {
        if (fe.kind() != TransportError::Kind::Connect && fe.kind() != TransportError::Kind::Timeout) throw;
        tried += (tried.empty() ? "" : ", ") + std::to_string(port);
      }
    }
    throw TransportError(e.kind(), std::string(e.what()) + " The fallback ports (" + tried + ") did not answer either.");
  }
}

void ForEachNode(const std::vector<const NodeDef*>& nodes, int parallel,
                 const std::function<void(size_t, const NodeDef&)>& fn) {
  if (nodes.empty()) return;
  size_t workers = size_t(std::max(1, parallel));
  workers = std::min(workers, nodes.size());
  std::atomic<size_t> next{0};
  std::mutex mu;
  std::exception_ptr first;
  auto work = [&] {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= nodes.size()) return;
      try {
        fn(i, *nodes[i]);
      } catch (...) {
        std::lock_guard lock(mu);
        if (!first) first = std::current_exception();
      }
    }
  };
  if (workers == 1) {
    work();
  } else {
    std::vector<std::thread> threads;
    threads.reserve(workers);
    for (size_t w = 0; w < workers; ++w) threads.emplace_back(work);
    for (auto& th : threads) th.join();
  }
  if (first) std::rethrow_exception(first);
}

}  // namespace labfleet
