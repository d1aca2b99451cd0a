// SshTransport and `labfleet facts` against real sandbox nodes: facts from several nodes (checked against the
// nodes themselves), host key refusal (changed, unknown) and acceptance, stopped and frozen nodes within the
// timeouts while the rest succeed (also one node at a time), a node reached only through the login node,
// become: sudo (with a stand-in sudo), one session per node; and facts of a `connection: local` node.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "engine/shell.h"
#include "engine/ssh_transport.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

namespace fs = std::filesystem;
using labfleet::Cmd;
using labfleet::SshTarget;
using labfleet::SshTransport;
using labfleet::TransportError;
using namespace labfleet::testing;

namespace {

// A scratch directory with an inventory (lab + the sandbox's nodes) and a private copy of known_hosts.
struct Scratch : TempInventory {
  explicit Scratch(const Sandbox& sbx) : TempInventory(sbx, "labfleet-ssh") {
    write("inventory/lab.yaml", "lab: { name: ssh-test }\n");
    fs::copy_file(sbx.known_hosts(), known_hosts());
  }
  std::string inv() const { return dir(); }
  std::string known_hosts() const { return (root / "known_hosts").string(); }
};

// Lines of `known_hosts` naming `name` ("[127.0.0.1]:PORT"), and the other lines.
std::pair<std::vector<std::string>, std::vector<std::string>> SplitKnownHosts(const std::string& file,
                                                                              const std::string& name) {
  std::vector<std::string> mine, rest;
  std::istringstream in(ReadFile(file));
  for (std::string line; std::getline(in, line);) (line.rfind(name + " ", 0) == 0 ? mine : rest).push_back(line);
  return {mine, rest};
}

std::string Fingerprint(const std::string& pubkey_line, const fs::path& scratch) {
  fs::path f = scratch / "fp.pub";
  WriteFile(f, pubkey_line + "\n");
  auto r = RunCommand(Cmd("ssh-keygen").arg("-lf").arg(f.string()).str());
  REQUIRE(r.exit_code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(r.out, m, std::regex("SHA256:[A-Za-z0-9+/]+")));
  return m.str();
}

const nlohmann::json& NodeIn(const nlohmann::json& doc, const std::string& name) {
  for (const auto& n : doc["nodes"])
    if (n["node"] == name) return n;
  FAIL("node " << name << " missing from the facts output");
  static nlohmann::json none;
  return none;
}

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

TEST_SUITE("integration-ssh") {
  TEST_CASE("facts from three nodes, JSON and text; one session serves many commands") {
    Sandbox sbx({.nodes = 3});
    Scratch s(sbx);
    // node3 without a docker client (its own /usr: the host is not touched); the others may see the host's client
    // through the overlay, but no daemon (their /run is their own)
    auto nodocker = sbx.exec("node3", "which -a docker | xargs -r rm -f && ! command -v docker");
    REQUIRE_MESSAGE(nodocker.exit_code == 0, nodocker.err);
    auto r = Cli({"--inventory", s.inv(), "facts", "--format", "json", "--known-hosts", s.known_hosts()});
    INFO(r.err);
    REQUIRE(r.rc == 0);
    auto doc = r.json();
    REQUIRE(doc["nodes"].size() == 3);
    for (const char* name : {"node1", "node2", "node3"}) {
      CAPTURE(name);
      const auto& n = NodeIn(doc, name);
      CHECK(n["reachable"] == true);
      CHECK(n["ok"] == true);
      CHECK(n["hostname"] == name);  // each node answers for itself
      CHECK(!n["kernel"].get<std::string>().empty());
      CHECK(n["cpu"]["logical"].get<int>() >= 1);
      CHECK(n["memory"]["total_kib"].get<long long>() > 0);
      CHECK(!n["root_fs"]["type"].get<std::string>().empty());

      // the same facts, read independently inside the node
      auto line = [&](const std::string& cmd) {
        std::string out = Exec(sbx, name, cmd);
        if (!out.empty() && out.back() == '\n') out.pop_back();
        return out;
      };
      // 0 here (no GPU); on a machine with GPUs, what `nvidia-smi -L` lists
      CHECK(n["gpus"]["count"] == std::stoi(line("if command -v nvidia-smi >/dev/null; "
                                                 "then nvidia-smi -L | grep -c '^GPU ' || true; else echo 0; fi")));
      CHECK(n["os"]["id"] == line(". /etc/os-release && echo \"$ID\""));
      CHECK(n["os"]["name"] == line(". /etc/os-release && echo \"$NAME\""));
      CHECK(n["os"]["version_id"] == line(". /etc/os-release && echo \"$VERSION_ID\""));
      CHECK(n["os"]["pretty_name"] == line(". /etc/os-release && echo \"$PRETTY_NAME\""));
      CHECK(!n["os"]["name"].get<std::string>().empty());
      CHECK(n["kernel"] == line("uname -r"));
      CHECK(n["arch"] == line("uname -m"));
      REQUIRE(n["uptime_s"].is_number());
      CHECK(n["uptime_s"].get<double>() > 0);
      CHECK(!n["cpu"]["model"].get<std::string>().empty());
      CHECK(n["cpu"]["cores"].get<int>() >= 1);
      CHECK(n["cpu"]["cores"].get<int>() <= n["cpu"]["logical"].get<int>());
      const long long mem_total = n["memory"]["total_kib"];
      CHECK(std::to_string(mem_total) == line("awk '/^MemTotal:/ { print $2 }' /proc/meminfo"));
      REQUIRE(n["memory"]["available_kib"].is_number());
      CHECK(n["memory"]["available_kib"].get<long long>() > 0);
      CHECK(n["memory"]["available_kib"].get<long long>() <= mem_total);
      const auto& root = n["root_fs"];
      CHECK(root["type"] == line("stat -f -c %T /"));
      CHECK(root["type"] == "overlayfs");  // the node's root is the sandbox's overlay, not the host's
      CHECK(root["btrfs"] == false);
      CHECK(root["device"] == line("df -Pk / | awk 'NR == 2 { print $1 }'"));
      REQUIRE(root["avail_kib"].is_number());
      CHECK(root["avail_kib"].get<long long>() > 0);
      CHECK(root["size_kib"].get<long long>() >= root["avail_kib"].get<long long>());
      const bool has_client = sbx.exec(name, "command -v docker").exit_code == 0;
      CHECK(n["docker"]["installed"] == has_client);
      CHECK(n["docker"]["version"] == "");  // no daemon on a sandbox node
      CHECK(n["docker"]["containers"].empty());
      CHECK(n["labfleet_state"].is_null());  // a fresh node: labfleet never ran there
      CHECK_FALSE(n.contains("labfleet_state_error"));
    }
    CHECK(NodeIn(doc, "node3")["docker"]["installed"] == false);
    CHECK(doc["summary"]["failed"] == 0);

    // text, a subset of nodes
    r = Cli({"--inventory", s.inv(), "facts", "node2", "--known-hosts", s.known_hosts()});
    CHECK(r.rc == 0);
    CHECK(r.out.find("node2") != std::string::npos);
    CHECK(r.out.find("node1") == std::string::npos);
    CHECK(r.out.find("1 node: 1 ok, 0 failed") != std::string::npos);

    // The transport itself: exit codes, stderr, stdin (large, while output flows), all on one session.
    SshTransport t(Target(sbx, "node1", s.known_hosts()));
    auto x = t.run("echo out; echo err >&2; exit 3");
    CHECK(x.exit_code == 3);
    CHECK(x.out == "out\n");
    CHECK(x.err == "err\n");
    CHECK(t.run("cat", "it's $(id) `x`\n").out == "it's $(id) `x`\n");
    std::string big(4 << 20, 'y');
    for (size_t i = 0; i < big.size(); i += 61) big[i] = '\n';
    x = t.run("cat; head -c 1000000 /dev/zero >&2", big);
    CHECK(x.exit_code == 0);
    CHECK(x.out == big);
    CHECK(x.err.size() == 1000000);
    CHECK(t.run("echo ignored-stdin", big).out == "ignored-stdin\n");
    CHECK(t.run("echo $0").out == "sh\n");  // commands run with sh, whatever root's login shell is
    // a background process keeping stdout open does not hold run() once the command itself has exited
    auto t0 = std::chrono::steady_clock::now();
    x = t.run("sleep 20 & echo started");
    CHECK(x.out == "started\n");
    CHECK(x.exit_code == 0);
    CHECK(Since(t0) < 10);
    sbx.exec("node1", "pkill -x sleep");
    x = t.run("sleep 1; echo late; exit 4");  // but a command that is merely slow is waited for
    CHECK(x.out == "late\n");
    CHECK(x.exit_code == 4);
    for (int i = 0; i < 10; ++i) CHECK(t.run("true").ok());
    // sshd logged exactly one accepted login for all of the above
    auto log = sbx.exec("node1", "grep -c 'Accepted publickey' /var/log/sandbox-sshd.log");
    CHECK(log.out == "2\n");  // one for the first `facts`, one for the SshTransport above
  }

  TEST_CASE("GPUs from a stand-in nvidia-smi: model, driver, who uses them, and a count below the inventory's") {
    Sandbox sbx({.nodes = 1});
    Scratch s(sbx);
    // The inventory says 8 GPUs; the node shows 4 (the failure after a BIOS/PCI change).
    std::string yaml = sbx.nodes_yaml();
    auto at = yaml.find("node1: { ");
    REQUIRE(at != std::string::npos);
    yaml.insert(at + 9, "gpus: 8, ");
    WriteFile(fs::path(s.inv()) / "nodes.yaml", yaml);
    // nvidia-smi stand-in in the node's /usr/local/sbin answering the two queries of the facts script with
    // the first four GPUs of the fixture
    std::istringstream in(ReadFile(fs::path(LABFLEET_SOURCE_DIR) / "tests/fixtures/facts/nvidia-smi-gpus-a100x8.txt"));
    std::string four;
    for (std::string line; std::getline(in, line) && line.rfind("4, ", 0) != 0;)
      if (line.rfind("# ", 0) != 0 && line.rfind("Unable", 0) != 0) four += line + "\n";
    const std::string apps = "GPU-4f3c2a1e-7b9d-4e21-9c7a-1d2e3f4a5b60, 1, 74102, /usr/bin/python3\n";
    auto setup = sbx.exec("node1", "mkdir -p /opt/fake && cat > /opt/fake/gpus <<'EOF'\n" + four + "EOF\n" +
                                       "cat > /opt/fake/apps <<'EOF'\n" + apps + "EOF\n" +
                                       "printf '%s\\n' '#!/bin/sh' 'case \"$*\" in *query-gpu*) cat /opt/fake/gpus;; "
                                       "*query-compute-apps*) cat /opt/fake/apps;; *) exit 2;; esac' "
                                       "> /usr/local/sbin/nvidia-smi && chmod 755 /usr/local/sbin/nvidia-smi");
    REQUIRE_MESSAGE(setup.exit_code == 0, setup.err);
    auto r = Cli({"--inventory", s.inv(), "facts", "--format", "json", "--known-hosts", s.known_hosts()});
    INFO(r.err);
    REQUIRE(r.rc == 0);
    auto doc = r.json();
    const auto& n = NodeIn(doc, "node1");
    CHECK(n["gpus"]["source"] == "nvidia-smi");
    CHECK(n["gpus"]["count"] == 4);
    CHECK(n["gpus"]["expected"] == 8);
    CHECK(n["gpus"]["count_mismatch"] == true);
    CHECK(n["gpus"]["model"] == "NVIDIA A100-SXM4-80GB");
    CHECK(n["gpus"]["driver"] == "535.104.05");
    REQUIRE(n["gpus"]["processes"].size() == 1);
    CHECK(n["gpus"]["processes"][0]["gpu_index"] == 0);
    CHECK(n["gpus"]["processes"][0]["user"] == "root");  // pid 1 of the node, looked up with ps
    CHECK(n["gpus"]["processes"][0]["elapsed_s"].get<long long>() >= 0);
    CHECK(doc["summary"]["gpu_count_mismatch"] == nlohmann::json::array({"node1"}));
    r = Cli({"--inventory", s.inv(), "facts", "--known-hosts", s.known_hosts()});
    CHECK(r.rc == 0);
    INFO(r.out);
    CHECK(r.out.find("4x A100-SXM4-80GB (535.104.05) [expected 8]") != std::string::npos);
    CHECK(r.out.find("declares gpus: 8 but the node shows 4") != std::string::npos);
    CHECK(r.out.find("busy GPUs:") != std::string::npos);
    CHECK(r.out.find("warning: node1: the inventory declares gpus: 8 but the node shows 4") != std::string::npos);
  }

  TEST_CASE("a changed host key is refused with both fingerprints and the file to fix; others succeed") {
    Sandbox sbx({.nodes = 3});
    Scratch s(sbx);
    const auto& n2 = sbx.node("node2");
    const std::string name = "[" + n2.address + "]:" + std::to_string(n2.port);
    auto [mine, rest] = SplitKnownHosts(s.known_hosts(), name);
    REQUIRE(mine.size() == 1);
    const std::string real_fp = Fingerprint(mine[0].substr(name.size() + 1), s.root);
    // someone else's key recorded for node2
    auto kg = RunCommand(Cmd("ssh-keygen").arg("-q").arg("-t").arg("ed25519").arg("-N").arg("").arg("-f")
                             .arg((s.root / "other").string()).str());
    REQUIRE(kg.exit_code == 0);
    std::string other = ReadFile(s.root / "other.pub");
    other = other.substr(0, other.find(' ', other.find(' ') + 1));
    const std::string old_fp = Fingerprint(other, s.root);
    REQUIRE(old_fp != real_fp);
    std::string text;
    for (const auto& l : rest) text += l + "\n";
    text += name + " " + other + "\n";
    WriteFile(s.known_hosts(), text);

    for (bool accept : {false, true}) {  // --accept-new-host-keys never accepts a changed key
      std::vector<std::string> args{"--inventory", s.inv(), "facts", "--format", "json", "--known-hosts", s.known_hosts()};
      if (accept) args.push_back("--accept-new-host-keys");
      auto r = Cli(args);
      CHECK(r.rc == 4);
      auto doc = r.json();
      const auto& bad = NodeIn(doc, "node2");
      CHECK(bad["reachable"] == false);
      CHECK(bad["error_kind"] == "host-key");
      const std::string msg = bad["error"];
      CHECK(msg.find("HOST KEY CHANGED") != std::string::npos);
      CHECK(msg.find(old_fp) != std::string::npos);
      CHECK(msg.find(real_fp) != std::string::npos);
      CHECK(msg.find(s.known_hosts()) != std::string::npos);
      CHECK(msg.find("ssh-keygen -R") != std::string::npos);
      CHECK(NodeIn(doc, "node1")["ok"] == true);
      CHECK(NodeIn(doc, "node3")["ok"] == true);
    }
    // the file was not touched: the old (wrong) key is still the only entry for node2
    CHECK(SplitKnownHosts(s.known_hosts(), name).first == std::vector<std::string>{name + " " + other});

    // a key pinned in the inventory is checked too
    SshTarget t = Target(sbx, "node1", s.known_hosts());
    t.host_key = other;
    try {
      SshTransport bad(t);
      FAIL("a node whose key differs from the pinned one was accepted");
    } catch (const TransportError& e) {
      CHECK(e.kind() == TransportError::Kind::HostKey);
      CHECK(std::string(e.what()).find("pins") != std::string::npos);
      CHECK(std::string(e.what()).find(old_fp) != std::string::npos);
    }
  }

  TEST_CASE("an unknown host key is refused, then accepted and recorded with --accept-new-host-keys") {
    Sandbox sbx({.nodes = 2});
    Scratch s(sbx);
    const auto& n1 = sbx.node("node1");
    const std::string name = "[" + n1.address + "]:" + std::to_string(n1.port);
    auto [mine, rest] = SplitKnownHosts(s.known_hosts(), name);
    REQUIRE(mine.size() == 1);
    const std::string fp = Fingerprint(mine[0].substr(name.size() + 1), s.root);
    std::string text;
    for (const auto& l : rest) text += l + "\n";
    WriteFile(s.known_hosts(), text);

    auto r = Cli({"--inventory", s.inv(), "facts", "--format", "json", "--known-hosts", s.known_hosts()});
    CHECK(r.rc == 4);
    auto doc = r.json();
    const auto& bad = NodeIn(doc, "node1");
    CHECK(bad["error_kind"] == "host-key");
    CHECK(bad["error"].get<std::string>().find("UNKNOWN HOST KEY") != std::string::npos);
    CHECK(bad["error"].get<std::string>().find(fp) != std::string::npos);
    CHECK(bad["error"].get<std::string>().find("--accept-new-host-keys") != std::string::npos);
    CHECK(NodeIn(doc, "node2")["ok"] == true);
    CHECK(SplitKnownHosts(s.known_hosts(), name).first.empty());

    r = Cli({"--inventory", s.inv(), "facts", "--known-hosts", s.known_hosts(), "--accept-new-host-keys"});
    CHECK(r.rc == 0);
    CHECK(r.err.find("recorded new host key") != std::string::npos);
    auto recorded = SplitKnownHosts(s.known_hosts(), name).first;
    REQUIRE(recorded.size() == 1);
    CHECK(Fingerprint(recorded[0].substr(name.size() + 1), s.root) == fp);

    // and from now on without the flag
    r = Cli({"--inventory", s.inv(), "facts", "--known-hosts", s.known_hosts()});
    CHECK(r.rc == 0);
    // a key pinned in the inventory is enough on its own, without a known_hosts entry
    WriteFile(s.known_hosts(), text);
    SshTarget t = Target(sbx, "node1", s.known_hosts());
    t.host_key = mine[0].substr(name.size() + 1);
    SshTransport pinned(t);
    CHECK(pinned.run("hostname").out == "node1\n");
  }

  TEST_CASE("a stopped node and a frozen node are reported within the timeouts while the rest succeed") {
    Sandbox sbx({.nodes = 4});
    Scratch s(sbx);
    // node2: sshd stopped (connection refused). node3: sshd frozen (accepts TCP, never answers).
    REQUIRE(sbx.exec("node2", "kill $(cat /run/sshd.pid)").exit_code == 0);
    struct Thaw {
      const Sandbox& sbx;
      ~Thaw() { sbx.exec("node3", "pkill -CONT -x sshd"); }
    } thaw{sbx};
    REQUIRE(sbx.exec("node3", "kill -STOP $(cat /run/sshd.pid)").exit_code == 0);

    auto t0 = std::chrono::steady_clock::now();
    auto r = Cli({"--inventory", s.inv(), "facts", "--format", "json", "--known-hosts", s.known_hosts(),
                  "--connect-timeout", "2", "--timeout", "3"});
    double took = Since(t0);
    CHECK(r.rc == 4);
    auto doc = r.json();
    CHECK(NodeIn(doc, "node1")["ok"] == true);
    CHECK(NodeIn(doc, "node4")["ok"] == true);
    CHECK(NodeIn(doc, "node1")["hostname"] == "node1");
    const auto& stopped = NodeIn(doc, "node2");
    CHECK(stopped["reachable"] == false);
    CHECK(stopped["error_kind"] == "connect");
    CHECK(stopped["error"].get<std::string>().find("sshd listens on port") != std::string::npos);
    const auto& frozen = NodeIn(doc, "node3");
    CHECK(frozen["reachable"] == false);
    CHECK(frozen["error_kind"] == "timeout");
    CHECK(frozen["error"].get<std::string>().find("--connect-timeout") != std::string::npos);
    CHECK(doc["summary"]["failed"] == 2);
    CHECK(took < 20);  // generous: the frozen node costs the 2 s connect timeout, not forever

    // text mode names them with the reason
    r = Cli({"--inventory", s.inv(), "facts", "--known-hosts", s.known_hosts(), "--connect-timeout", "2"});
    CHECK(r.rc == 4);
    CHECK(r.out.find("unreachable:") != std::string::npos);
    CHECK(r.out.find("node2: cannot connect") != std::string::npos);
    CHECK(r.out.find("4 nodes: 2 ok, 2 failed") != std::string::npos);
  }

  TEST_CASE("a frozen node with --parallel 1: the nodes after it still succeed, within the connect timeout") {
    Sandbox sbx({.nodes = 4});
    Scratch s(sbx);
    // node2 frozen whole: every process in it stopped (its init aside, which signals from inside cannot reach);
    // the kernel still accepts TCP on its port, nothing answers. One node at a time, so node3 and node4 wait
    // behind it.
    struct Thaw {
      const Sandbox& sbx;
      ~Thaw() { sbx.exec("node2", "kill -CONT -1"); }
    } thaw{sbx};
    REQUIRE(sbx.exec("node2", "kill -STOP -1").exit_code == 0);
    REQUIRE(sbx.exec("node2", "grep -l '^State:.*stopped' /proc/[0-9]*/status | wc -l").out != "0\n");

    auto t0 = std::chrono::steady_clock::now();
    auto r = Cli({"--inventory", s.inv(), "facts", "--format", "json", "--known-hosts", s.known_hosts(),
                  "--parallel", "1", "--connect-timeout", "2", "--timeout", "3"});
    double took = Since(t0);
    INFO(r.out, r.err);
    CHECK(r.rc == 4);
    auto doc = r.json();
    for (const char* name : {"node1", "node3", "node4"}) {
      CAPTURE(name);
      CHECK(NodeIn(doc, name)["ok"] == true);
      CHECK(NodeIn(doc, name)["hostname"] == name);
    }
    const auto& frozen = NodeIn(doc, "node2");
    CHECK(frozen["reachable"] == false);
    CHECK(frozen["error_kind"] == "timeout");
    CHECK(frozen["error"].get<std::string>().find("within 2 s (--connect-timeout)") != std::string::npos);
    CHECK(doc["summary"]["failed"] == 1);
    CHECK(took < 15);  // generous: the frozen node costs its 2 s connect timeout once, not the rest of the run
  }

  TEST_CASE("a connection: local node: facts runs on this machine (read-only), no SSH") {
    // No sandbox: the node is this machine. Its address is TEST-NET-1 (RFC 5737), which nothing answers: facts
    // that come back at all did not go over the network.
    char tmpl[] = "/var/tmp/labfleet-local-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    struct Remove {
      fs::path p;
      ~Remove() {
        std::error_code ec;
        fs::remove_all(p, ec);
      }
    } remove{tmpl};
    const fs::path inv = fs::path(tmpl) / "inventory";
    WriteFile(inv / "lab.yaml", "lab: { name: local-test }\n");
    WriteFile(inv / "nodes.yaml", "nodes:\n  here: { address: 192.0.2.1, connection: local }\n");
    const bool state_dir_before = fs::exists("/var/lib/labfleet");
    const bool lock_before = fs::exists("/run/labfleet.lock");

    auto r = Cli({"--inventory", inv.string(), "facts", "--format", "json", "--connect-timeout", "2",
                  "--known-hosts", (fs::path(tmpl) / "known_hosts").string()});
    INFO(r.out, r.err);
    REQUIRE(r.rc == 0);
    auto doc = r.json();
    REQUIRE(doc["nodes"].size() == 1);
    const auto& n = NodeIn(doc, "here");
    CHECK(n["ok"] == true);
    auto host = [](const std::string& cmd) {
      auto x = RunCommand(cmd);
      REQUIRE_MESSAGE(x.exit_code == 0, cmd << ": " << x.err);
      if (!x.out.empty() && x.out.back() == '\n') x.out.pop_back();
      return x.out;
    };
    CHECK(n["hostname"] == host("hostname"));
    CHECK(n["kernel"] == host("uname -r"));
    CHECK(n["arch"] == host("uname -m"));
    CHECK(n["os"]["id"] == host(". /etc/os-release && echo \"$ID\""));
    CHECK(n["os"]["version_id"] == host(". /etc/os-release && echo \"$VERSION_ID\""));
    CHECK(std::to_string(n["memory"]["total_kib"].get<long long>()) ==
          host("awk '/^MemTotal:/ { print $2 }' /proc/meminfo"));
    CHECK(n["root_fs"]["type"] == host("stat -f -c %T /"));
    CHECK(n["root_fs"]["device"] == host("df -Pk / | awk 'NR == 2 { print $1 }'"));
    CHECK(n["uptime_s"].get<double>() > 0);
    CHECK(n["cpu"]["cores"].get<int>() >= 1);
    // read-only: no state, no lock, no known_hosts entry left behind
    CHECK(fs::exists("/var/lib/labfleet") == state_dir_before);
    CHECK(fs::exists("/run/labfleet.lock") == lock_before);
    CHECK_FALSE(fs::exists(fs::path(tmpl) / "known_hosts"));

    r = Cli({"--inventory", inv.string(), "facts", "here", "--connect-timeout", "2"});
    CHECK(r.rc == 0);
    CHECK(r.out.find("here ") != std::string::npos);
    CHECK(r.out.find("1 node: 1 ok, 0 failed") != std::string::npos);
  }

  TEST_CASE("a node frozen mid-session: the next command times out, the session is closed") {
    Sandbox sbx({.nodes = 1});
    Scratch s(sbx);
    SshTarget tgt = Target(sbx, "node1", s.known_hosts());
    tgt.connect_timeout_s = 2;
    tgt.command_timeout_s = 2;
    SshTransport t(tgt);
    CHECK(t.run("true").ok());
    struct Thaw {
      const Sandbox& sbx;
      ~Thaw() { sbx.exec("node1", "pkill -CONT -x sshd"); }
    } thaw{sbx};
    REQUIRE(sbx.exec("node1", "pkill -STOP -x sshd").exit_code == 0);
    auto t0 = std::chrono::steady_clock::now();
    try {
      t.run("echo never");
      FAIL("a frozen node answered");
    } catch (const TransportError& e) {
      CHECK((e.kind() == TransportError::Kind::Timeout || e.kind() == TransportError::Kind::Lost));
    }
    CHECK(Since(t0) < 15);
    CHECK_THROWS_AS(t.run("true"), TransportError);  // the session is gone
    sbx.exec("node1", "pkill -CONT -x sshd");
    // a command that outlives --timeout while the node is fine
    tgt.command_timeout_s = 1;
    SshTransport slow(tgt);
    try {
      slow.run("sleep 20");
      FAIL("no timeout");
    } catch (const TransportError& e) {
      CHECK(e.kind() == TransportError::Kind::Timeout);
      CHECK(std::string(e.what()).find("--timeout") != std::string::npos);
    }
  }

  TEST_CASE("become: sudo wraps commands for a non-root user; a password prompt is an auth error") {
    Sandbox sbx({.nodes = 1});
    Scratch s(sbx);
    // A non-root login user, and a stand-in sudo in the node's /usr/local/bin (it runs the command as the user
    // and records its argv, which is what this test checks: wrapping and stdin; then it asks for a password).
    // The real sudo, end to end through the CLI, is tested in test_become.cc.
    auto setup = sbx.exec("node1",
                          "useradd -m -p '*' -s /bin/bash ops && mkdir -p /home/ops/.ssh && "
                          "cp /root/.ssh/authorized_keys /home/ops/.ssh/ && chown -R ops: /home/ops/.ssh && "
                          "chmod 700 /home/ops/.ssh && chmod 600 /home/ops/.ssh/authorized_keys && "
                          "printf '%s\\n' '#!/bin/sh' 'printf \"%s|\" \"$@\" > /tmp/sudo-argv' "
                          "'[ \"$1\" = -n ] || exit 99' 'shift' 'exec \"$@\"' > /usr/local/bin/sudo && "
                          "chmod 755 /usr/local/bin/sudo");
    REQUIRE_MESSAGE(setup.exit_code == 0, setup.err);
    SshTarget t = Target(sbx, "node1", s.known_hosts());
    t.user = "ops";
    t.become_sudo = true;
    SshTransport ops(t);
    auto r = ops.run("echo \"$1-$(cat)\" | tr a-z A-Z; id -un", "from stdin");
    CHECK(r.exit_code == 0);
    CHECK(r.out == "-FROM STDIN\nops\n");
    // sudo -n sh -c <the setsid wrapper, docs/transport.md> sh <the command, one word>
    const std::string argv = sbx.exec("node1", "cat /tmp/sudo-argv").out;
    CHECK(argv.rfind("-n|sh|-c|", 0) == 0);
    CHECK(argv.find("setsid -w") != std::string::npos);
    const std::string tail = "|sh|echo \"$1-$(cat)\" | tr a-z A-Z; id -un|";
    CHECK(argv.size() > tail.size());
    CHECK(argv.compare(argv.size() - tail.size(), tail.size(), tail) == 0);
    // sudo that wants a password
    sbx.exec("node1", "printf '%s\\n' '#!/bin/sh' 'echo \"sudo: a password is required\" >&2' 'exit 1' "
                      "> /usr/local/bin/sudo");
    try {
      ops.run("true");
      FAIL("expected an auth error");
    } catch (const TransportError& e) {
      CHECK(e.kind() == TransportError::Kind::Auth);
      CHECK(std::string(e.what()).find("NOPASSWD") != std::string::npos);
    }
    // a wrong user is an auth error that says what to do
    t.user = "nobody-here";
    try {
      SshTransport nope(t);
      FAIL("expected an auth error");
    } catch (const TransportError& e) {
      CHECK(e.kind() == TransportError::Kind::Auth);
      CHECK(std::string(e.what()).find("authorized_keys") != std::string::npos);
    }
  }

  TEST_CASE("a node reachable only through the login node (ssh.jump)") {
    Sandbox sbx({.nodes = 2, .login = true});
    Scratch s(sbx);
    REQUIRE(sbx.nodes_yaml().find("jump: login") != std::string::npos);
    auto r = Cli({"--inventory", s.inv(), "facts", "--format", "json", "--known-hosts", s.known_hosts(),
                  "--connect-timeout", "5"});
    INFO(r.out, r.err);
    CHECK(r.rc == 0);
    auto doc = r.json();
    CHECK(NodeIn(doc, "login")["hostname"] == "login");
    CHECK(NodeIn(doc, "node1")["hostname"] == "node1");
    CHECK(NodeIn(doc, "node2")["hostname"] == "node2");
    // without the jump the hidden node cannot be reached at all
    SshTarget direct = Target(sbx, "node1", s.known_hosts());
    direct.connect_timeout_s = 2;
    CHECK_THROWS_AS(SshTransport{direct}, TransportError);
  }
}
