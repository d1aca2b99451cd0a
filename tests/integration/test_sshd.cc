// sshd drop-in on a real sandbox sshd: converge, `sshd -t` guard, and the lockout guard (a setting that
// sshd accepts but that locks labfleet out is rolled back over the still-open session).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/cli.h"
#include "engine/shell.h"
#include "tests/integration/sandbox.h"

namespace fs = std::filesystem;
using labfleet::testing::Sandbox;

namespace {

struct Run {
  int rc;
  std::string out, err;
};

Run Cli(const Sandbox& sbx, const std::string& inv, std::vector<std::string> args) {
  std::vector<std::string> all{"--inventory", inv};
  all.insert(all.end(), args.begin(), args.end());
  all.push_back("--known-hosts");
  all.push_back(sbx.known_hosts());
  std::vector<const char*> argv{"labfleet"};
  for (auto& a : all) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int rc = labfleet::RunCli(int(argv.size()), argv.data(), out, err);
  return {rc, out.str(), err.str()};
}

struct Inv {
  fs::path root;
  explicit Inv(const Sandbox& sbx) {
    char tmpl[] = "/var/tmp/labfleet-inv-XXXXXX";
    root = mkdtemp(tmpl);
    fs::create_directories(root / "inventory");
    std::ofstream(root / "inventory/nodes.yaml") << sbx.nodes_yaml();
  }
  ~Inv() { fs::remove_all(root); }
  std::string dir() const { return (root / "inventory").string(); }
  void sshd(const std::string& map) const {
    std::ofstream(root / "inventory/lab.yaml") << "lab:\n  name: t\n  defaults:\n    sshd: " << map << "\n";
  }
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
