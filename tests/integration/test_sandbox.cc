// The sandbox nodes themselves: what every other integration test relies on.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <sstream>
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
      CHECK(sbx.exec("node1", Cmd("test").arg("!").arg("-e").arg(std::string(LABFLEET_SOURCE_DIR) + "/CMakeLists.txt")
                                  .str()).exit_code == 0);
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

  TEST_CASE("isolation: own PID namespace, own host key, own /home /var /root /usr/local, host folders hidden") {
    Sandbox sbx({.nodes = 2});
    const std::string tag = std::filesystem::path(sbx.dir()).filename().string();  // unique per run

    // PID namespace: a node sees its own init as PID 1 and its own few processes, nothing of the host or of the
    // other node (one sshd: its own), over `exec` and over SSH alike.
    for (const char* name : {"node1", "node2"}) {
      CAPTURE(name);
      auto ps = sbx.exec(name, "ps -e -o pid=,comm=");
      REQUIRE_MESSAGE(ps.exit_code == 0, ps.err);
      std::map<int, std::string> procs;
      for (const auto& line : Lines(ps.out)) {
        std::istringstream in(line);
        int pid = 0;
        std::string comm;
        in >> pid >> comm;
        procs[pid] = comm;
      }
      CAPTURE(ps.out);
      REQUIRE(procs.count(1) == 1);
      CHECK(procs[1] == "bash");
      int sshd = 0;
      for (const auto& [pid, comm] : procs) {
        CHECK(std::set<std::string>{"bash", "sleep", "sshd", "sh", "ps"}.count(comm) == 1);
        sshd += comm == "sshd";
      }
      CHECK(sshd == 1);
      auto init = sbx.exec(name, "tr '\\0' ' ' </proc/1/cmdline");
      CHECK(init.out.find(" __node ") != std::string::npos);
      CHECK(init.out.find(std::string(" ") + name + " ") != std::string::npos);
      auto over_ssh = RunCommand(SshTo(sbx, sbx.node(name).port, "tr '\\0' ' ' </proc/1/cmdline").str());
      CHECK_MESSAGE(over_ssh.exit_code == 0, over_ssh.err);
      CHECK(over_ssh.out == init.out);
    }

    // Host keys: one fresh ed25519 key per node (the host's keys are gone), the one sshd presents, the one
    // known_hosts records; no two nodes share it.
    std::set<std::string> fingerprints;
    const std::regex fp_re("SHA256:[A-Za-z0-9+/]+");
    auto fp_of = [&](const std::string& text) {
      std::smatch m;
      return std::regex_search(text, m, fp_re) ? m.str() : std::string();
    };
    for (const auto& n : sbx.nodes()) {
      CAPTURE(n.name);
      CHECK(sbx.exec(n.name, "ls /etc/ssh | grep ^ssh_host_").out == "ssh_host_ed25519_key\nssh_host_ed25519_key.pub\n");
      const std::string own = fp_of(sbx.exec(n.name, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub").out);
      REQUIRE(!own.empty());
      const std::string host_port = "[" + n.address + "]:" + std::to_string(n.port);
      CHECK(fp_of(Host(Cmd("ssh-keygen").arg("-lf").arg(sbx.known_hosts()).arg("-F").arg(host_port))) == own);
      auto scan = RunCommand(Cmd("sh").arg("-c").arg(Cmd("ssh-keyscan").arg("-t").arg("ed25519").arg("-p")
                                                          .arg(std::to_string(n.port)).arg(n.address).str() +
                                                      " 2>/dev/null | ssh-keygen -lf -").str());
      CHECK(fp_of(scan.out) == own);
      if (std::filesystem::exists("/etc/ssh/ssh_host_ed25519_key.pub"))
        CHECK(fp_of(Host(Cmd("ssh-keygen").arg("-lf").arg("/etc/ssh/ssh_host_ed25519_key.pub"))) != own);
      fingerprints.insert(own);
    }
    CHECK(fingerprints.size() == sbx.nodes().size());

    // Per-node /home, /var, /root and /usr/local: what one node writes there, the other node and the host do not
    // see, and the other node's own file of that name does not disturb it.
    for (const char* d : {"/home", "/var", "/root", "/usr/local"}) {
      const std::string f = std::string(d) + "/labfleet-isolation-" + tag;
      CAPTURE(f);
      auto w = sbx.exec("node1", Cmd("sh").arg("-c").arg("echo node1 > \"$0\" && cat \"$0\"").arg(f).str());
      CHECK_MESSAGE(w.exit_code == 0, w.err);
      CHECK(w.out == "node1\n");
      CHECK(sbx.exec("node2", Cmd("test").arg("!").arg("-e").arg(f).str()).exit_code == 0);
      CHECK_FALSE(std::filesystem::exists(f));
      CHECK(sbx.exec("node2", Cmd("sh").arg("-c").arg("echo node2 > \"$0\"").arg(f).str()).exit_code == 0);
      CHECK(sbx.exec("node1", Cmd("cat").arg(f).str()).out == "node1\n");
      CHECK_FALSE(std::filesystem::exists(f));
    }

    // Host folders hidden: the node's /work, /tmp and /var/tmp are empty, its /root holds only skel's files,
    // .ssh (with the sandbox's key alone) and what this test wrote; the repository and DIR are not there.
    auto listing = [&](const std::string& node, const std::string& path) {
      auto r = sbx.exec(node, Cmd("ls").arg("-A").arg(path).str());
      CHECK_MESSAGE(r.exit_code == 0, r.err);
      return Lines(r.out);
    };
    std::set<std::string> root_expected = Lines(Host(Cmd("ls").arg("-A").arg("/etc/skel")));
    root_expected.insert({".ssh", "labfleet-isolation-" + tag});
    for (const char* name : {"node1", "node2"}) {
      CAPTURE(name);
      if (std::filesystem::is_directory("/work")) CHECK(listing(name, "/work").empty());
      CHECK(listing(name, "/tmp").empty());
      CHECK(listing(name, "/var/tmp").empty());
      CHECK(listing(name, "/root") == root_expected);
      CHECK(listing(name, "/root/.ssh") == std::set<std::string>{"authorized_keys"});
      CHECK(sbx.exec(name, "cat /root/.ssh/authorized_keys").out ==
            Host(Cmd("cat").arg(sbx.identity() + ".pub")));
      // Hidden = nothing of it is visible: the path is absent (inside a hidden folder such as /work) or an
      // empty tmpfs mounted over it (a checkout elsewhere, e.g. CI's /check/work/main).
      for (const std::string& hidden : {std::string(LABFLEET_SOURCE_DIR), sbx.dir()}) {
        CAPTURE(hidden);
        CHECK(std::filesystem::exists(hidden));
        auto seen = sbx.exec(name, Cmd("sh").arg("-c").arg("[ ! -e \"$0\" ] || ls -A \"$0\"").arg(hidden).str());
        CHECK_MESSAGE(seen.exit_code == 0, seen.err);
        CHECK(seen.out == "");
      }
      CHECK(sbx.exec(name, Cmd("test").arg("!").arg("-e").arg(std::string(LABFLEET_SOURCE_DIR) + "/CMakeLists.txt")
                               .str()).exit_code == 0);
    }
    // The same view over SSH.
    auto view = RunCommand(
        SshTo(sbx, sbx.node("node2").port,
              "for d in /work /tmp /var/tmp; do [ -d $d ] && echo \"$d: $(ls -A $d | wc -l)\"; done; ls -A /root/.ssh")
            .str());
    CHECK_MESSAGE(view.exit_code == 0, view.err);
    CHECK(view.out == std::string(std::filesystem::is_directory("/work") ? "/work: 0\n" : "") +
                          "/tmp: 0\n/var/tmp: 0\nauthorized_keys\n");
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
