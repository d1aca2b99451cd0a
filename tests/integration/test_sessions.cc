// One SSH session (channel) per node per command (issue 18): the planner's probe, the apply script and the
// re-probe run over one kept channel per node (engine/ssh_driver.h). Sessions are counted on the node side, from
// its sshd's log at LogLevel VERBOSE ("Starting session:" for every session), never from labfleet's own word.
// Also: the escape hatch LABFLEET_SCRIPT_SESSIONS=per-script, a failed or stopped script in the kept channel
// (the node lock is released, its node_pid is the loop's shell), output that arrives between two scripts, and
// nodes whose sshd keeps Debian's defaults (UsePAM yes: `sandbox up --sshd-defaults`).
#include <doctest/doctest.h>
#include <stdlib.h>

#include <chrono>
#include <map>
#include <string>
#include <thread>

#include "engine/shell.h"
#include "engine/ssh_transport.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using labfleet::ShellQuote;
using labfleet::SshTransport;
using labfleet::TransportError;
using namespace labfleet::testing;

namespace {

// Sessions sshd started on `node` so far.
int Sessions(const Sandbox& sbx, const std::string& node) {
  auto r = sbx.exec(node, "grep -c 'Starting session:' /var/log/sandbox-sshd.log");
  return std::atoi(r.out.c_str());
}

// Sessions per node that `fn` caused.
template <class F>
std::map<std::string, int> Counted(const Sandbox& sbx, F fn) {
  std::map<std::string, int> before;
  for (const auto& n : sbx.nodes()) before[n.name] = Sessions(sbx, n.name);
  fn();
  std::map<std::string, int> d;
  for (const auto& n : sbx.nodes()) d[n.name] = Sessions(sbx, n.name) - before[n.name];
  return d;
}

void WriteUsers(const TempInventory& inv, const std::string& extra = "") {
  inv.write("inventory/lab.yaml", "lab: { name: sessions-test }\n");
  inv.write("inventory/users.yaml", "users:\n  zed:\n    uid: 2101\n    full_name: Zed\n    ssh_keys: []\n" + extra);
}

struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* v) : name(n) { setenv(n, v, 1); }
  ~ScopedEnv() { unsetenv(name.c_str()); }
};

}  // namespace

TEST_SUITE("integration-sessions") {
  TEST_CASE("plan, facts, status and a no-op apply: one session per node; a first converge: one session per node") {
    Sandbox sbx({.nodes = 2});
    TempInventory inv(sbx);
    WriteUsers(inv);
    // The log counts what it should: the sandbox's own sshd, one line per session.
    REQUIRE(Sessions(sbx, "node1") == 0);
    auto d = Counted(sbx, [&] {
      auto r = Cli(sbx, inv.dir(), {"plan"});
      INFO(r.out << r.err);
      CHECK(r.rc == 0);
      CHECK(r.out.find("4 changes") != std::string::npos);
    });
    CHECK(d["node1"] == 1);
    CHECK(d["node2"] == 1);

    d = Counted(sbx, [&] {
      auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
      INFO(r.out << r.err);
      CHECK(r.rc == 0);
    });
    MESSAGE("first converge: " << d["node1"] << " session(s) on node1, " << d["node2"] << " on node2");
    CHECK(d["node1"] == 1);  // probe, apply script and re-probe over one channel
    CHECK(d["node2"] == 1);
    CHECK(Exec(sbx, "node1", "getent passwd zed | cut -d: -f3") == "2101\n");  // it did converge

    for (const std::vector<std::string>& cmd : {std::vector<std::string>{"plan"},
                                                std::vector<std::string>{"apply", "--yes", "--allow-dirty"},
                                                std::vector<std::string>{"facts"},
                                                std::vector<std::string>{"status"}}) {
      CAPTURE(cmd[0]);
      d = Counted(sbx, [&] {
        auto r = Cli(sbx, inv.dir(), cmd);
        INFO(r.out << r.err);
        CHECK(r.rc == 0);
      });
      CHECK(d["node1"] == 1);
      CHECK(d["node2"] == 1);
    }

    // The escape hatch: a channel per script again (probe, apply script, re-probe).
    WriteUsers(inv, "  amy:\n    uid: 2102\n    full_name: Amy\n    ssh_keys: []\n");
    {
      ScopedEnv env("LABFLEET_SCRIPT_SESSIONS", "per-script");
      d = Counted(sbx, [&] {
        auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
        INFO(r.out << r.err);
        CHECK(r.rc == 0);
      });
      CHECK(d["node1"] == 3);
      ScopedEnv bad("LABFLEET_SCRIPT_SESSIONS", "several");
      auto r = Cli(sbx, inv.dir(), {"plan"});
      CHECK(r.rc != 0);
      CHECK((r.out + r.err).find("LABFLEET_SCRIPT_SESSIONS is 'several'") != std::string::npos);
    }
    CHECK(Exec(sbx, "node2", "getent passwd amy | cut -d: -f3") == "2102\n");
  }

  // The probe cache (engine/file_probe.h): on a converged node a plan reads the users' keys from what an earlier
  // probe remembered (no setpriv), still in one session; an edit by the user is seen by the next plan all the same.
  TEST_CASE("a converged node's users' keys come from the probe cache, and a user's edit is still seen") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx);
    const std::string key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEu9xH1r0Y9sZ3l6w8G3sQkq1Z1f0k8bYt7dGm2yW4cP zed@laptop";
    inv.write("inventory/lab.yaml", "lab: { name: sessions-test }\n");
    inv.write("inventory/users.yaml", "users:\n  zed:\n    uid: 2101\n    full_name: Zed\n    ssh_keys: [\"" + key + "\"]\n");
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    const std::string entries = "find /run/labfleet-probe-cache -maxdepth 1 -type f ! -name '.*' | wc -l";
    // The file was written just now (its ctime within 2 s of the probes): nothing remembered yet.
    CHECK(Exec(sbx, "node1", entries) == "0\n");
    CHECK(Exec(sbx, "node1", "stat -c '%U %a' /run/labfleet-probe-cache") == "root 700\n");
    std::this_thread::sleep_for(std::chrono::seconds(3));
    for (int i = 0; i < 2; ++i) {  // the first plan remembers the key file, the second takes it from the cache
      auto d = Counted(sbx, [&] {
        auto p = Cli(sbx, inv.dir(), {"plan"});
        INFO(p.out << p.err);
        CHECK(p.rc == 0);
        CHECK(p.out.find("no changes") != std::string::npos);
      });
      CHECK(d["node1"] == 1);
      CHECK(Exec(sbx, "node1", entries) == "1\n");
    }
    // The user adds a key of their own: the next plan sees it (the file's ctime moved) and removes it.
    CHECK(Exec(sbx, "node1", "setpriv --reuid=2101 --regid=2101 --clear-groups sh -c "
                             "'echo ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7pQ2wE5rT8yU1iO4pA6sD9fG2hJ5kL8zX1cV4bN7mQ "
                             "zed@other >> /home/zed/.ssh/authorized_keys' && echo ok") == "ok\n");
    auto p = Cli(sbx, inv.dir(), {"plan"});
    INFO(p.out << p.err);
    CHECK(p.rc == 0);
    CHECK(p.out.find("zed@other") != std::string::npos);
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    CHECK(r.rc == 0);
    CHECK(Exec(sbx, "node1", "cat /home/zed/.ssh/authorized_keys") == key + "\n");
  }

  TEST_CASE("the kept channel: many scripts, one loop whose pid is $$; it ends with the transport") {
    Sandbox sbx({.nodes = 1});
    std::string pid;
    auto d = Counted(sbx, [&] {
      SshTransport t(Target(sbx, "node1", sbx.known_hosts()));
      auto r = t.run_script("echo out; echo err >&2; exit 3");
      CHECK(r.exit_code == 3);
      CHECK(r.out == "out\n");
      CHECK(r.err == "err\n");
      pid = t.run_script("echo $$").out;
      for (int i = 0; i < 20; ++i) CHECK(t.run_script("echo $$").out == pid);
      CHECK(t.run_script("cat; exit 0").out == "");  // stdin is /dev/null
      // The loop is a real process of the node, in a session of its own (the one a stop signals).
      CHECK(Exec(sbx, "node1", "ps -o sid= -p " + ShellQuote(pid.substr(0, pid.size() - 1)) + " | tr -d ' '") == pid);
      // Big output, exact.
      auto big = t.run_script("head -c 3000000 /dev/zero | tr '\\0' x; printf end");
      CHECK(big.out.size() == 3000003);
      CHECK(big.out.substr(3000000) == "end");
    });
    CHECK(d["node1"] == 1);
    // The transport is gone: EOF ended the loop (the destructor waits for that), and its private directory went
    // with it.
    CHECK(Exec(sbx, "node1", "ls -d /run/labfleet-driver.* 2>/dev/null; true") == "");
    bool gone = false;
    for (int i = 0; i < 50 && !gone; ++i) {
      gone = sbx.exec("node1", "test -e /proc/" + pid.substr(0, pid.size() - 1)).exit_code != 0;
      if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(gone);
  }

  TEST_CASE("output that arrives between two scripts is refused loudly; the next script gets a fresh loop") {
    Sandbox sbx({.nodes = 1});
    SshTransport t(Target(sbx, "node1", sbx.known_hosts()));
    CHECK(t.run_script("(sleep 1; echo stray) 2>/dev/null &").ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    try {
      t.run_script("echo next");
      FAIL("no error for bytes between two scripts");
    } catch (const TransportError& e) {
      CHECK(std::string(e.what()).find("bytes between two scripts") != std::string::npos);
    }
    CHECK(t.run_script("echo again").out == "again\n");
  }

  // The node side dies in the middle of the protocol: the loop is killed while its script is writing a result,
  // or a script forges a frame with another nonce. The node fails that script with a TransportError that says
  // what happened, nothing of the half result is trusted, and the next script gets a fresh loop.
  TEST_CASE("a loop that dies mid-result, or a forged frame, fails the script cleanly; the next one gets a fresh loop") {
    Sandbox sbx({.nodes = 1});
    SshTransport t(Target(sbx, "node1", sbx.known_hosts()));
    CHECK(t.run_script("echo ok").out == "ok\n");
    std::string what;
    try {
      auto r = t.run_script("printf 'half a resu'; kill -9 $$; sleep 5");
      what = "no error; exit " + std::to_string(r.exit_code) + ", out '" + r.out + "'";
    } catch (const TransportError& e) {
      what = e.what();
    }
    MESSAGE("loop killed mid-result: " << what);
    CHECK(what.find("the script loop on node1") != std::string::npos);
    CHECK(what.find("ended in the middle of a script") != std::string::npos);
    CHECK(what.find("nothing of that script's result is used") != std::string::npos);
    CHECK(t.run_script("echo again").out == "again\n");
    what.clear();
    try {
      auto r = t.run_script("printf '\\n@@lfd-00000000000000000000000000000000:end 0 0\\n@@lfd-00000000000000000000000000000000:fin\\n'; "
                            "printf '\\n@@lfd-%s:end 0 0\\n' nonce");
      what = "exit " + std::to_string(r.exit_code) + ", out '" + r.out + "'";
    } catch (const TransportError& e) {
      what = e.what();
    }
    // Without the script's nonce a frame is only output: the script's own result is the one that counts.
    CHECK(what.rfind("exit 0, out '\n@@lfd-00000000000000000000000000000000:end 0 0\n", 0) == 0);
    CHECK(what.find("@@lfd-nonce:end 0 0") != std::string::npos);
    CHECK(t.run_script("echo after").out == "after\n");
  }

  TEST_CASE("a failed and a stopped apply in the kept channel release the lock; its node_pid is the loop's shell") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx);
    WriteUsers(inv);
    // A useradd that records who holds the lock (node_pid, and that process's session id and command) and fails.
    const std::string failing =
        "#!/bin/sh\np=$(sed -n 's/^node_pid=//p' /run/labfleet.lock)\n"
        "{ echo \"pid=$p\"; echo \"mysid=$(ps -o sid= -p $$ | tr -d ' ')\"; tr '\\0' ' ' < /proc/$p/cmdline; echo; } "
        "> /run/lf-holder\nexit 1\n";
    Exec(sbx, "node1", "mkdir -p /usr/local/sbin && printf '%s' " + ShellQuote(failing) +
                           " > /usr/local/sbin/useradd && chmod 755 /usr/local/sbin/useradd");
    auto d = Counted(sbx, [&] {
      auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
      INFO(r.out << r.err);
      CHECK(r.rc == 4);
      CHECK(r.out.find("failed (exit 1)") != std::string::npos);
    });
    CHECK(d["node1"] == 1);
    CHECK(sbx.exec("node1", "test -e /run/labfleet.lock").exit_code != 0);  // released
    const std::string holder = Exec(sbx, "node1", "cat /run/lf-holder");
    INFO(holder);
    // node_pid is the session leader of the change's own process: the loop's shell, which the transport stops.
    const std::string p = holder.substr(4, holder.find('\n') - 4);
    CHECK(std::atol(p.c_str()) > 1);
    CHECK(holder.find("mysid=" + p + "\n") != std::string::npos);
    CHECK(holder.find("lf_h") != std::string::npos);  // its command line is the loop's

    // A change that never ends: --timeout stops it over a second channel (the stop), the lock is released.
    const std::string hanging = "#!/bin/sh\necho started > /run/lf-test-started\nwhile :; do sleep 7; done\n";
    Exec(sbx, "node1", "printf '%s' " + ShellQuote(hanging) + " > /usr/local/sbin/useradd");
    d = Counted(sbx, [&] {
      auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--timeout", "5"});
      INFO(r.out << r.err);
      CHECK(r.rc == 4);
      CHECK(r.out.find("It was stopped on the node (SIGTERM to its process group") != std::string::npos);
    });
    CHECK(d["node1"] == 2);  // the kept channel and the stop
    CHECK(sbx.exec("node1", "test -e /run/lf-test-started").exit_code == 0);
    CHECK(sbx.exec("node1", "test -e /run/labfleet.lock").exit_code != 0);
    CHECK(sbx.exec("node1", "ps -eo args | grep -e 'sleep 7' -e lf_h | grep -v grep").out == "");
    CHECK(Exec(sbx, "node1", "ls -d /run/labfleet-driver.* 2>/dev/null; true") == "");  // TERM ran its trap
    Exec(sbx, "node1", "rm /usr/local/sbin/useradd");
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(r.out.find("stale lock") == std::string::npos);
  }

  TEST_CASE("nodes whose sshd keeps Debian's defaults (UsePAM yes): same sessions, same result") {
    Sandbox sbx({.nodes = 1, .sshd_defaults = true});
    CHECK(Exec(sbx, "node1", "grep -c '^UsePAM yes' /etc/ssh/sshd_config") == "1\n");
    TempInventory inv(sbx);
    WriteUsers(inv);
    auto d = Counted(sbx, [&] {
      auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
      INFO(r.out << r.err);
      CHECK(r.rc == 0);
    });
    CHECK(d["node1"] == 1);
    d = Counted(sbx, [&] {
      auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
      INFO(r.out << r.err);
      CHECK(r.rc == 0);
    });
    CHECK(d["node1"] == 1);
    CHECK(Exec(sbx, "node1", "getent passwd zed | cut -d: -f3") == "2101\n");
  }
}
