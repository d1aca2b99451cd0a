// sshd drop-in on a real sandbox sshd: converge, `sshd -t` guard, and the lockout guard (a setting that
// sshd accepts but that locks labfleet out is rolled back over the still-open session).
#include <doctest/doctest.h>

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

    // A value sshd rejects: `sshd -t` fails, the old file is put back, the node is failed.
    inv.sshd("{ ClientAliveInterval: banana, ClientAliveCountMax: 3, PasswordAuthentication: \"no\" }");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    CHECK(r.out.find("verification of /etc/ssh/sshd_config.d/50-labfleet.conf failed") != std::string::npos);
    CHECK(sbx.exec("node1", std::string("cat ") + kDropin).out == good);
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
}
