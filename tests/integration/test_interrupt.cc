// Interrupted and timed-out runs on real sandbox nodes (issue 10, part 6) and the bound on what a node may send
// (part 4b): a change that never ends is stopped ON THE NODE at --timeout (no process of it is left, its lock is
// released, or taken over as provably stale); SIGTERM/SIGINT to a running `labfleet apply` stop its node-side
// script, release the lock and name the nodes left mid-apply; a lock whose node-side holder is gone is judged
// stale on the node; 1 GiB of output ends in a clear error while the controller's peak memory stays small.
//
// The never-ending change is a stand-in `useradd` in the node's /usr/local/sbin that marks that it started
// (/run/lf-test-started) and then sleeps: every wait below is on an event (that marker, a process exit), with
// generous upper bounds only.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "engine/shell.h"
#include "engine/ssh_transport.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

extern char** environ;

namespace fs = std::filesystem;
using labfleet::Cmd;
using labfleet::ShellQuote;
using labfleet::SshTransport;
using labfleet::TransportError;
using namespace labfleet::testing;

namespace {

using Clock = std::chrono::steady_clock;

// One user: applying it runs `useradd` on the node.
void WriteUserInventory(const TempInventory& inv) {
  inv.write("inventory/lab.yaml", "lab: { name: interrupt-test }\n");
  inv.write("inventory/users.yaml", "users:\n  zed:\n    uid: 2101\n    full_name: Zed\n    ssh_keys: []\n");
}

// A useradd that never ends. `ignore_term`: it (and its sleeps) ignore SIGTERM, so only SIGKILL stops it.
void InstallHangingUseradd(const Sandbox& sbx, const std::string& node, bool ignore_term = false) {
  std::string body = std::string("#!/bin/sh\n") + (ignore_term ? "trap '' TERM\n" : "") +
                     "echo started > /run/lf-test-started\nwhile :; do sleep 7; done\n";
  Exec(sbx, node, "rm -f /run/lf-test-started; mkdir -p /usr/local/sbin && printf '%s' " + ShellQuote(body) +
                      " > /usr/local/sbin/useradd && chmod 755 /usr/local/sbin/useradd");
}

// Processes of the stand-in left in the node (its `sleep 7` loop), as `ps` lines; "" when none.
std::string LeftOver(const Sandbox& sbx, const std::string& node) {
  return sbx.exec(node, "ps -eo pid,pgid,args | grep -e 'sleep 7' -e 'local/sbin/useradd' | grep -v grep").out;
}

bool LockHeld(const Sandbox& sbx, const std::string& node) {
  return sbx.exec(node, "test -e /run/labfleet.lock").exit_code == 0;
}

// Waits until `cmd` succeeds inside the node, at most `limit`.
bool WaitInNode(const Sandbox& sbx, const std::string& node, const std::string& cmd, std::chrono::seconds limit) {
  const auto until = Clock::now() + limit;
  while (Clock::now() < until) {
    if (sbx.exec(node, cmd).exit_code == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

long StatusKib(pid_t pid, const char* field) {
  FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  if (!f) return -1;
  char line[256];
  long kib = -1;
  std::string fmt = std::string(field) + ": %ld kB";
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, fmt.c_str(), &kib) == 1) break;
  std::fclose(f);
  return kib;
}

}  // namespace

TEST_SUITE("integration-interrupt") {
  TEST_CASE("a change that never ends: --timeout stops it on the node, the lock is released, the next apply works") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx);
    WriteUserInventory(inv);
    InstallHangingUseradd(sbx, "node1");
    auto t0 = Clock::now();
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--timeout", "10"});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    CHECK(Clock::now() - t0 < std::chrono::seconds(60));
    CHECK(r.out.find("node1: failed: apply stopped") != std::string::npos);
    CHECK(r.out.find("did not finish within 10 s (--timeout)") != std::string::npos);
    CHECK(r.out.find("was running when it stopped (it may be partly applied)") != std::string::npos);
    CHECK(r.out.find("It was stopped on the node (SIGTERM to its process group") != std::string::npos);
    CHECK(sbx.exec("node1", "test -e /run/lf-test-started").exit_code == 0);  // it did run
    CHECK(LeftOver(sbx, "node1") == "");                                      // and nothing of it is left
    CHECK_FALSE(LockHeld(sbx, "node1"));                                      // its TERM trap released the lock
    Exec(sbx, "node1", "rm /usr/local/sbin/useradd");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(Exec(sbx, "node1", "getent passwd zed | cut -d: -f3") == "2101\n");
  }

  TEST_CASE("a change that ignores SIGTERM: SIGKILL stops it, nothing is left, the next apply needs no --break-lock") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx);
    WriteUserInventory(inv);
    InstallHangingUseradd(sbx, "node1", /*ignore_term=*/true);
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--timeout", "10"});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    CHECK(r.out.find("SIGTERM, then SIGKILL to its process group") != std::string::npos);
    CHECK(LeftOver(sbx, "node1") == "");
    // The apply shell itself does not ignore TERM: its trap releases the lock while the change still runs; had it
    // been killed first, its lock would name a node-side process that is gone, which the next apply takes over.
    Exec(sbx, "node1", "rm /usr/local/sbin/useradd");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);  // no --break-lock needed
    CHECK_FALSE(LockHeld(sbx, "node1"));
  }

  TEST_CASE("SIGTERM and SIGINT to a running labfleet apply: exits non-zero, names the node, releases its lock") {
    Sandbox sbx({.nodes = 2});
    TempInventory inv(sbx);
    WriteUserInventory(inv);
    for (int sig : {SIGTERM, SIGINT}) {
      CAPTURE(sig);
      InstallHangingUseradd(sbx, "node1");
      // --parallel 1: node1 hangs mid-apply, node2 waits its turn and is never started
      Child child(sbx, {"--inventory", inv.dir(), "apply", "node1", "node2", "--yes", "--allow-dirty", "--parallel", "1"},
                  inv.root);
      REQUIRE_MESSAGE(WaitInNode(sbx, "node1", "test -e /run/lf-test-started", std::chrono::seconds(90)),
                      child.output());
      REQUIRE(LockHeld(sbx, "node1"));
      REQUIRE(child.running());
      ::kill(child.pid, sig);
      int rc = child.wait(std::chrono::seconds(60));
      const std::string out = child.output();
      INFO(out);
      CHECK(rc == 128 + sig);
      CHECK(out.find(std::string("interrupted by ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT")) != std::string::npos);
      CHECK(out.find("left mid-apply (changes maybe partly applied") != std::string::npos);
      CHECK(out.find("): node1") != std::string::npos);  // the list of nodes left mid-apply
      CHECK(out.find("not started: node2") != std::string::npos);
      CHECK(out.find("node1: failed: left mid-apply: ") != std::string::npos);
      CHECK(out.find("'+ user zed (uid 2101)' was running when it stopped (it may be partly applied)") != std::string::npos);
      CHECK(LeftOver(sbx, "node1") == "");
      CHECK_FALSE(LockHeld(sbx, "node1"));  // its TERM trap released it
      CHECK(sbx.exec("node2", "getent passwd zed").exit_code != 0);  // never started
    }
    // The next apply takes the locks and finishes both nodes.
    Exec(sbx, "node1", "rm /usr/local/sbin/useradd");
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);  // without --break-lock
    CHECK(r.out.find("stale lock") == std::string::npos);  // the locks were released, not left stale
  }

  TEST_CASE("a lock is judged on the node: a gone holder (or a reused pid) is taken over, a live one refuses") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx);
    WriteUserInventory(inv);
    const std::string start1 = Exec(sbx, "node1", "cut -d' ' -f22 /proc/1/stat");  // the node's init
    auto lock = [&](const std::string& node_pid, const std::string& node_start) {
      Exec(sbx, "node1", "printf 'run=old\\nwho=alice@laptop\\nhost=laptop\\npid=4242\\nsince=1\\nnode_pid=%s\\nnode_start=%s\\n' " +
                             ShellQuote(node_pid) + " " + ShellQuote(node_start) + " > /run/labfleet.lock");
    };
    // A live holder (pid 1 of the node, with its real start time): refused, with its details.
    lock("1", start1.substr(0, start1.find('\n')));
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    CHECK(r.out.find("locked by alice@laptop (run old, labfleet pid 4242 on laptop, node-side pid 1") != std::string::npos);
    CHECK(r.out.find("another apply is running (its node-side process 1 still runs)") != std::string::npos);
    CHECK(sbx.exec("node1", "getent passwd zed").exit_code != 0);
    // The same pid, but another process now (a different start time): stale, taken over.
    lock("1", "12345");
    r = Cli(sbx, inv.dir(), {"plan"});  // plan never touches locks
    CHECK(LockHeld(sbx, "node1"));
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(r.out.find("took over the stale lock of alice@laptop") != std::string::npos);
    CHECK(r.out.find("that pid is now another process") != std::string::npos);
    CHECK_FALSE(LockHeld(sbx, "node1"));
    // A holder that is not running at all.
    inv.write("inventory/users.yaml", "users:\n  zed:\n    uid: 2101\n    full_name: Zed Two\n    ssh_keys: []\n");
    lock("999999", "1");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    auto j = r.json();
    REQUIRE(j["apply"][0]["notes"].size() == 1);
    CHECK(j["apply"][0]["notes"][0].get<std::string>().find("its node-side process 999999 no longer runs") !=
          std::string::npos);
    CHECK(Exec(sbx, "node1", "getent passwd zed | cut -d: -f5") == "Zed Two\n");
  }

  TEST_CASE("1 GiB of output over SSH: a clear error naming the node and the bound, fast, in flat memory") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx);
    // In a child process, so that its peak RSS measures this alone (the test process's own peak may have been
    // raised by earlier tests): the peak is reset to the current RSS first, then read before the child exits.
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      ::close(fds[0]);
      std::string report;
      if (FILE* f = std::fopen("/proc/self/clear_refs", "w")) {
        std::fputs("5", f);
        std::fclose(f);
      }
      const long base = StatusKib(getpid(), "VmHWM");
      const auto t0 = Clock::now();
      try {
        SshTransport t(Target(sbx, "node1", sbx.known_hosts()));
        t.run("head -c 1G /dev/zero");
        report = "no error";
      } catch (const TransportError& e) {
        report = std::string(e.kind() == TransportError::Kind::OutputLimit ? "OutputLimit" : "other") + "\n" + e.what();
      } catch (const std::exception& e) {
        report = std::string("exception\n") + e.what();
      }
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      report = std::to_string(StatusKib(getpid(), "VmHWM") - base) + "\n" + std::to_string(secs) + "\n" + report;
      ssize_t off = 0;
      while (off < ssize_t(report.size())) {
        ssize_t w = ::write(fds[1], report.data() + off, report.size() - off);
        if (w <= 0) break;
        off += w;
      }
      _exit(0);
    }
    ::close(fds[1]);
    std::string got;
    char buf[4096];
    for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;) got.append(buf, size_t(n));
    ::close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    INFO(got);
    REQUIRE(WIFEXITED(st));
    size_t a = got.find('\n'), b = got.find('\n', a + 1), c = got.find('\n', b + 1);
    REQUIRE(c != std::string::npos);
    const long grew_kib = std::atol(got.c_str());
    const double secs = std::atof(got.c_str() + a + 1);
    const std::string kind = got.substr(b + 1, c - b - 1), what = got.substr(c + 1);
    CHECK(kind == "OutputLimit");
    CHECK(what.find("node node1 (root@127.0.0.1:") != std::string::npos);
    CHECK(what.find("sent more than 64 MiB of output") != std::string::npos);
    CHECK(what.find("stopped") != std::string::npos);
    CHECK(secs < 60);
    MESSAGE("peak RSS growth while 1 GiB was offered: " << grew_kib / 1024 << " MiB, " << secs << " s");
    // Buffering it would have meant more than 1024 MiB; the bound is 64 MiB (+ a string's growth and buffers).
    CHECK(grew_kib > 0);
    CHECK(grew_kib < 200 * 1024);
    // Nothing of it is left on the node.
    CHECK(sbx.exec("node1", "pgrep -x head").exit_code != 0);
  }
}
