// The sandbox nodes themselves: what every other integration test relies on.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "engine/shell.h"
#include "tests/integration/sandbox.h"

using labfleet::Cmd;
using labfleet::testing::RunCommand;
using labfleet::testing::Sandbox;
using labfleet::testing::SandboxOptions;

namespace {

std::string Host(const Cmd& c) { return RunCommand(c.str()).out; }

std::set<std::string> Lines(const std::string& s) {
  std::set<std::string> out;
  size_t start = 0;
  while (start < s.size()) {
    size_t nl = s.find('\n', start);
    if (nl == std::string::npos) nl = s.size();
    if (nl > start) out.insert(s.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::set<std::string> HostMounts() { return Lines(Host(Cmd("findmnt").arg("-rn"))); }

// Any process on the host whose command line mentions `needle`.
std::vector<std::string> ProcessesMentioning(const std::string& needle) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    std::string pid = e.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline;
    try {
      std::ifstream in(e.path() / "cmdline", std::ios::binary);
      std::getline(in, cmdline, '\x01');
    } catch (...) {
      continue;
    }
    for (auto& c : cmdline)
      if (c == '\0') c = ' ';
    if (cmdline.find(needle) != std::string::npos) out.push_back(pid + ": " + cmdline);
  }
  return out;
}

bool Listening(int port) {
  return !Host(Cmd("ss").arg("-Htln").arg("sport = :" + std::to_string(port))).empty();
}

Cmd SshTo(const Sandbox& sbx, int port, const std::string& command) {
  return Cmd("ssh")
      .arg("-F")
      .arg("/dev/null")
      .arg("-i")
      .arg(sbx.identity())
      .arg("-o")
      .arg("IdentitiesOnly=yes")
      .arg("-o")
      .arg("UserKnownHostsFile=" + sbx.known_hosts())
      .arg("-o")
      .arg("StrictHostKeyChecking=yes")
      .arg("-o")
      .arg("BatchMode=yes")
      .arg("-o")
      .arg("ConnectTimeout=10")
      .arg("-p")
      .arg(std::to_string(port))
      .arg("root@127.0.0.1")
      .arg(command);
}

}  // namespace

TEST_SUITE("integration-sandbox") {
  TEST_CASE("three nodes: own hostnames over real sshd, isolated roots, nothing left afterwards") {
    const auto mounts_before = HostMounts();
    std::string dir;
    std::vector<int> ports;
    {
      Sandbox sbx({.nodes = 3});
      dir = sbx.dir();
      REQUIRE(sbx.nodes().size() == 3);
      CHECK(dir.rfind("/var/tmp/labfleet-sbx-", 0) == 0);
      std::set<int> distinct;
      for (const auto& n : sbx.nodes()) {
        CAPTURE(n.name);
        CHECK(n.address == "127.0.0.1");
        distinct.insert(n.port);
        ports.push_back(n.port);
        auto r = RunCommand(SshTo(sbx, n.port, "hostname").str());
        CHECK_MESSAGE(r.exit_code == 0, r.err);
        CHECK(r.out == n.name + "\n");
      }
      CHECK(distinct.size() == 3);
      CHECK(sbx.nodes()[0].name == "node1");
      CHECK(sbx.nodes_yaml().find("  node1: { address: 127.0.0.1, ssh: { port: " + std::to_string(ports[0]) +
                                  ", user: root, identity: " + sbx.identity() + " } }\n") != std::string::npos);

      // Each node has its own /etc.
      const std::string marker = "/etc/labfleet-sandbox-marker";
      auto w = sbx.exec("node1", "echo from-node1 > " + marker + " && cat " + marker);
      CHECK(w.exit_code == 0);
      CHECK(w.out == "from-node1\n");
      CHECK_FALSE(std::filesystem::exists(marker));
      CHECK(sbx.exec("node2", "test ! -e " + marker).exit_code == 0);
      CHECK(sbx.exec("node1", "cat " + marker).out == "from-node1\n");

      // The host's project, homes and the sandbox directory are hidden.
      CHECK(sbx.exec("node1", "test ! -e /work/main").exit_code == 0);
      CHECK(sbx.exec("node1", Cmd("test").arg("!").arg("-e").arg(sbx.identity()).str()).exit_code == 0);
      CHECK(sbx.exec("node1", "test -s /root/.ssh/authorized_keys").exit_code == 0);

      // exec passes the exit status and both streams through; PATH puts /usr/local first.
      auto e = sbx.exec("node3", "echo out; echo err >&2; exit 7");
      CHECK(e.exit_code == 7);
      CHECK(e.out == "out\n");
      CHECK(e.err == "err\n");
      CHECK(sbx.exec("node3", "echo $PATH").out.rfind("/usr/local/sbin:/usr/local/bin:", 0) == 0);
      CHECK(sbx.exec("node2", "hostname").out == "node2\n");
      CHECK(sbx.exec("node2", "sshd -t").exit_code == 0);
      auto pw = sbx.exec("node2", "pwck -r && grpck -r");
      CHECK_MESSAGE(pw.exit_code == 0, (pw.out + pw.err));
    }
    for (int port : ports) CHECK_FALSE(Listening(port));
    CHECK(ProcessesMentioning(dir).empty());
    CHECK_FALSE(std::filesystem::exists(dir));
    CHECK(HostMounts() == mounts_before);
    CHECK(Host(Cmd("losetup").arg("-a")).find(dir) == std::string::npos);
  }

  TEST_CASE("btrfs: each node has its own btrfs at /srv/btrfs, loop devices released afterwards") {
    const auto mounts_before = HostMounts();
    std::string dir;
    {
      Sandbox sbx({.nodes = 2, .btrfs_mb = 128});
      dir = sbx.dir();
      for (const auto& n : sbx.nodes()) {
        CAPTURE(n.name);
        auto r = sbx.exec(n.name, "btrfs subvolume show /srv/btrfs >/dev/null && findmnt -no FSTYPE /srv/btrfs");
        CHECK_MESSAGE(r.exit_code == 0, r.err);
        CHECK(r.out == "btrfs\n");
      }
      CHECK(sbx.exec("node1", "btrfs subvolume create /srv/btrfs/sub >/dev/null").exit_code == 0);
      CHECK(sbx.exec("node2", "test ! -e /srv/btrfs/sub").exit_code == 0);
      CHECK(Host(Cmd("losetup").arg("-a")).find(dir) != std::string::npos);
      CHECK(HostMounts() == mounts_before);  // mounted inside the nodes only
    }
    CHECK(Host(Cmd("losetup").arg("-a")).find(dir) == std::string::npos);
    CHECK(HostMounts() == mounts_before);
    CHECK(ProcessesMentioning(dir).empty());
  }

  TEST_CASE("login: hidden nodes are reachable only through the login node") {
    const auto mounts_before = HostMounts();
    const auto netns_before = Host(Cmd("ip").arg("netns").arg("list"));
    std::string dir, veth;
    {
      Sandbox sbx({.nodes = 2, .login = true});
      dir = sbx.dir();
      REQUIRE(sbx.nodes().size() == 3);
      std::ifstream state_in(dir + "/state.json");
      auto state = nlohmann::json::parse(state_in);
      REQUIRE(state.at("veth").size() == 1);
      veth = state.at("veth")[0].get<std::string>();
      CHECK(Host(Cmd("ip").arg("-o").arg("link").arg("show").arg("dev").arg(veth)).find(veth) != std::string::npos);
      const auto& login = sbx.node("login");
      CHECK(login.address.rfind("10.233.", 0) == 0);
      CHECK(sbx.nodes_yaml().find("  node1: { address: " + sbx.node("node1").address + ", ssh: { port: 22, user: root, "
                                  "identity: " + sbx.identity() + ", jump: login } }\n") != std::string::npos);
      for (const char* name : {"login", "node1", "node2"}) {
        CAPTURE(name);
        auto r = RunCommand(Cmd("ssh").arg("-F").arg(sbx.ssh_config()).arg(name).arg("hostname").str());
        CHECK_MESSAGE(r.exit_code == 0, r.err);
        CHECK(r.out == std::string(name) + "\n");
      }
      // Explicit -J with the hidden node's address.
      auto j = RunCommand(Cmd("ssh")
                              .arg("-F")
                              .arg(sbx.ssh_config())
                              .arg("-J")
                              .arg("login")
                              .arg("root@" + sbx.node("node2").address)
                              .arg("cat /etc/hostname")
                              .str());
      CHECK_MESSAGE(j.exit_code == 0, j.err);
      CHECK(j.out == "node2\n");
      // No way around login: forwarding off there, no default route in the hidden netns, and the host has
      // no route to the hidden subnet through the sandbox's link.
      CHECK(sbx.exec("login", "cat /proc/sys/net/ipv4/ip_forward").out == "0\n");
      CHECK(sbx.exec("node1", "ip route show default").out.empty());
      auto via = Host(Cmd("ip").arg("-o").arg("route").arg("get").arg(sbx.node("node1").address));
      CHECK(via.find(" dev lfs") == std::string::npos);
      CHECK(sbx.exec("node1", Cmd("bash").arg("-c").arg("exec 3<>/dev/tcp/" + login.address + "/22").str()).exit_code !=
            0);
    }
    CHECK(HostMounts() == mounts_before);
    CHECK(Host(Cmd("ip").arg("netns").arg("list")) == netns_before);
    CHECK(RunCommand(Cmd("ip").arg("link").arg("show").arg("dev").arg(veth).str()).exit_code != 0);
    CHECK(ProcessesMentioning(dir).empty());
  }

  TEST_CASE("up failures throw with the script's message and leave nothing behind") {
    CHECK_THROWS_WITH_AS(Sandbox({.nodes = 0}), doctest::Contains("--nodes"), std::runtime_error);
    CHECK_THROWS_AS(Sandbox({.nodes = 1, .prefix = "bad prefix"}), std::runtime_error);
  }
}
