// sshd drop-in on a real sandbox sshd: converge, `sshd -t` guard, and the lockout guard (a setting that
// sshd accepts but that locks labfleet out is rolled back over the still-open session).
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

struct Inv : TempInventory {
  using TempInventory::TempInventory;
  void sshd(const std::string& map) const { defaults("    sshd: " + map + "\n"); }
};

const char* kDropin = "/etc/ssh/sshd_config.d/50-labfleet.conf";

// A loopback port nothing listens on right now (the kernel's pick, above the sandbox's 20000-31999).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

TEST_SUITE("integration-sshd") {
  TEST_CASE("sshd drop-in converges; sshd -t and the lockout guard restore the previous config") {
    Sandbox sbx({.nodes = 1});
    Inv inv(sbx);
    inv.sshd("{ ClientAliveInterval: 30, ClientAliveCountMax: 3, PasswordAuthentication: \"no\" }");
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(r.out.find("reload sshd") != std::string::npos);
    CHECK(sbx.exec("node1", "sshd -t").exit_code == 0);
    auto t = sbx.exec("node1", "sshd -T | grep -E '^clientalive(interval|countmax) '");
    CHECK(t.out == "clientaliveinterval 30\nclientalivecountmax 3\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
    const std::string good = sbx.exec("node1", std::string("cat ") + kDropin).out;

    // A value sshd rejects: `sshd -t` fails on the new version before it is moved into place (it never replaces
    // the live drop-in), the node is failed, and no temporary file or directory is left.
    inv.sshd("{ ClientAliveInterval: banana, ClientAliveCountMax: 3, PasswordAuthentication: \"no\" }");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    CHECK(r.out.find("check of the new /etc/ssh/sshd_config.d/50-labfleet.conf failed; it was not put in place") !=
          std::string::npos);
    CHECK(r.out.find("50-labfleet.conf line 2: invalid time value") != std::string::npos);  // sshd's own words
    CHECK(sbx.exec("node1", std::string("cat ") + kDropin).out == good);
    // Only the sandbox's own drop-in and labfleet's: no temporary file, no precheck directory in /run.
    CHECK(sbx.exec("node1", "ls -A /etc/ssh/sshd_config.d /run | grep labfleet").out ==
          "00-labfleet-sandbox.conf\n50-labfleet.conf\n");
    CHECK(sbx.exec("node1", "sshd -t").exit_code == 0);
    CHECK(sbx.exec("node1", "test -e /run/labfleet.lock").exit_code != 0);

    // A value sshd accepts but that locks root out: the fresh login fails, the old file comes back.
    inv.sshd("{ ClientAliveInterval: 30, ClientAliveCountMax: 3, PasswordAuthentication: \"no\", AllowUsers: nobody }");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--connect-timeout", "5"});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    CHECK(r.out.find("could not log in over a fresh connection") != std::string::npos);
    CHECK(r.out.find("restored the previous version") != std::string::npos);
    CHECK(sbx.exec("node1", std::string("cat ") + kDropin).out == good);
    // Independent proof that root can log in again: OpenSSH, not labfleet.
    auto ssh = labfleet::testing::RunCommand(
        labfleet::Cmd("ssh").arg("-F").arg(sbx.ssh_config()).arg("-o").arg("BatchMode=yes").arg("node1").arg("echo").arg("in").str());
    INFO(ssh.err);
    CHECK(ssh.out == "in\n");
    // Back to the good settings: nothing to do.
    inv.sshd("{ ClientAliveInterval: 30, ClientAliveCountMax: 3, PasswordAuthentication: \"no\" }");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }

  TEST_CASE("a Port change is followed: in by the fallback port, a fresh login on the new one, known_hosts updated") {
    Sandbox sbx({.nodes = 1});
    Inv inv(sbx);
    const auto& n = sbx.node("node1");
    const std::string old_port = std::to_string(n.port), new_port = std::to_string(FreePort());
    // The sandbox's fragment ("ssh: { port: P, user: root, identity: ... }") with other ports.
    auto nodes = [&](const std::string& port, const std::string& fallback) {
      std::string yaml = sbx.nodes_yaml();
      const std::string from = "port: " + old_port + ",";
      auto at = yaml.find(from);
      REQUIRE(at != std::string::npos);
      yaml.replace(at, from.size(), "port: " + port + "," + (fallback.empty() ? "" : " fallback_ports: [" + fallback + "],"));
      inv.write("inventory/nodes.yaml", yaml);
    };
    nodes(new_port, old_port);
    inv.sshd("{ Port: " + new_port + ", ClientAliveInterval: 30 }");
    // The new port does not answer yet: plan comes in by the old one and says so under the node.
    auto r = Cli(sbx, inv.dir(), {"plan", "--connect-timeout", "5"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(r.out.find("ssh.port " + new_port + " did not answer; connected on fallback port " + old_port) !=
          std::string::npos);
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--connect-timeout", "5"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    // sshd listens on the new port (the sandbox's own drop-in keeps the old one as well).
    CHECK(sbx.exec("node1", "sshd -T | grep -qx 'port " + new_port + "'").exit_code == 0);
    // The fresh login went to the new port and recorded the key verified on the old one.
    CHECK(ReadFile(sbx.known_hosts()).find("[" + n.address + "]:" + new_port + " ") != std::string::npos);
    // Without the fallback, labfleet goes straight to the new port: nothing to do, nothing to warn about.
    nodes(new_port, "");
    r = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(r.out.find("fallback") == std::string::npos);
    // Independent proof: OpenSSH logs in on the new port with the known_hosts labfleet updated.
    auto ssh = labfleet::testing::RunCommand(labfleet::Cmd("ssh")
                                                 .arg("-F").arg(sbx.ssh_config())
                                                 .arg("-o").arg("BatchMode=yes")
                                                 .arg("-o").arg("StrictHostKeyChecking=yes")
                                                 .arg("-p").arg(new_port)
                                                 .arg("node1").arg("echo").arg("in")
                                                 .str());
    INFO(ssh.err);
    CHECK(ssh.out == "in\n");
    // A fallback port that does not answer either: the error names both.
    nodes(std::to_string(FreePort()), std::to_string(FreePort()));
    inv.sshd("{ ClientAliveInterval: 30 }");
    r = Cli(sbx, inv.dir(), {"plan", "--connect-timeout", "5"});
    CHECK(r.rc == 4);
    CHECK(r.out.find("did not answer either") != std::string::npos);
  }
}
