// Where the SSH transport finds its key when the inventory names none: ssh-agent, then ~/.ssh/config's
// IdentityFile (libssh reads the OpenSSH client configuration). The labfleet binary runs in a private mount
// namespace with a tmpfs over /root, so the host's own ~/.ssh (keys, config) is neither used nor touched.
#include <doctest/doctest.h>
#include <signal.h>

#include <string>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;
using labfleet::ShellQuote;

namespace {

// The sandbox's nodes.yaml without `identity: ...`.
std::string NodesWithoutIdentity(const Sandbox& sbx) {
  std::string yaml = sbx.nodes_yaml();
  const std::string from = ", identity: " + sbx.identity();
  auto at = yaml.find(from);
  REQUIRE(at != std::string::npos);
  yaml.erase(at, from.size());
  REQUIRE(yaml.find("identity") == std::string::npos);
  return yaml;
}

// `labfleet --inventory INV facts` with an empty /root (a tmpfs, in its own mount namespace); `setup` runs
// first in that namespace (e.g. writes /root/.ssh/config); `env` are VAR=value words for the binary.
Sandbox::ExecResult FactsWithPrivateHome(const Sandbox& sbx, const std::string& inv, const std::string& setup,
                                         const std::string& env) {
  std::string inner = "mount -t tmpfs lf-home /root && " + setup + " && exec env -u SSH_AUTH_SOCK " + env + " " +
                      ShellQuote(LABFLEET_BINARY) + " --inventory " + ShellQuote(inv) + " facts --known-hosts " +
                      ShellQuote(sbx.known_hosts()) + " --connect-timeout 5";
  return RunCommand("unshare -m --propagation private sh -c " + ShellQuote(inner));
}

struct Agent {
  std::string sock, pid;
  explicit Agent(const std::string& dir) : sock(dir + "/agent.sock") {
    auto r = RunCommand("ssh-agent -a " + ShellQuote(sock) + " -s");
    REQUIRE_MESSAGE(r.exit_code == 0, r.err);
    auto at = r.out.find("SSH_AGENT_PID=");
    REQUIRE(at != std::string::npos);
    pid = r.out.substr(at + 14, r.out.find(';', at) - at - 14);
  }
  ~Agent() {
    if (!pid.empty()) kill(std::stol(pid), SIGTERM);
  }
};

}  // namespace

TEST_SUITE("integration-ssh") {
  TEST_CASE("no identity in the inventory: the key comes from ssh-agent, or from ~/.ssh/config's IdentityFile") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx);
    inv.write("inventory/nodes.yaml", NodesWithoutIdentity(sbx));
    inv.write("inventory/lab.yaml", "lab: { name: t }\n");

    // Neither: refused, and the message says where it looked (so the two cases below can fail).
    auto none = FactsWithPrivateHome(sbx, inv.dir(), "true", "");
    INFO(none.out << none.err);
    CHECK(none.exit_code == 4);
    CHECK(none.out.find("authentication as root refused") != std::string::npos);

    // ssh-agent holding the sandbox's key.
    {
      Agent agent(inv.root.string());
      auto add = RunCommand("SSH_AUTH_SOCK=" + ShellQuote(agent.sock) + " ssh-add -q " + ShellQuote(sbx.identity()));
      REQUIRE_MESSAGE(add.exit_code == 0, add.err);
      auto r = FactsWithPrivateHome(sbx, inv.dir(), "true", "SSH_AUTH_SOCK=" + ShellQuote(agent.sock));
      INFO(r.out << r.err);
      CHECK(r.exit_code == 0);
      CHECK(r.out.find("node1") != std::string::npos);
    }

    // ~/.ssh/config: IdentityFile for the node's address.
    const auto& n = sbx.node("node1");
    std::string config = "Host " + n.address + "\n  IdentityFile " + sbx.identity() + "\n";
    auto r = FactsWithPrivateHome(sbx, inv.dir(),
                                  "mkdir -m 700 /root/.ssh && printf %s " + ShellQuote(config) + " > /root/.ssh/config",
                                  "");
    INFO(r.out << r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("node1") != std::string::npos);
  }
}
