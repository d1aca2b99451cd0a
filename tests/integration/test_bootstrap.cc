// `labfleet apply NODE --bootstrap` on a freshly installed sandbox node (`sandbox up --password-only`): nobody has
// a key, and only the sudo user "installer" logs in, with a password. One command (password from
// LABFLEET_PASSWORD_FILE) makes the inventory's login (lfadmin, become: sudo) reachable with the admin's key, pins
// the host key in nodes.yaml and converges the node; a second run needs no password and plans nothing; a wrong
// password fails clearly and locks nothing; a password file others can read is refused; a changed key is refused.
// Independent checks run inside the node (getent, stat, sudoers) and on the inventory file's text.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>

#include "engine/ssh_transport.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;
namespace fs = std::filesystem;

namespace {

// LABFLEET_PASSWORD_FILE for one scope (unset with an empty path).
struct PasswordEnv {
  explicit PasswordEnv(const std::string& path) {
    if (path.empty())
      unsetenv("LABFLEET_PASSWORD_FILE");
    else
      setenv("LABFLEET_PASSWORD_FILE", path.c_str(), 1);
  }
  ~PasswordEnv() { unsetenv("LABFLEET_PASSWORD_FILE"); }
};

struct TtyRun {
  int rc = -1;
  std::string shown;  // everything the terminal showed (the program's output and the terminal's echo)
};

// Runs argv (argv[0] a path) on a fresh pseudo-terminal, its controlling terminal; each reply is typed only once
// its prompt has appeared (in order), as a person would. At most 120 s, then the program is killed.
TtyRun RunOnTty(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& dialog) {
  std::vector<char*> a;
  for (const auto& x : argv) a.push_back(const_cast<char*>(x.c_str()));
  a.push_back(nullptr);
  int master = -1;
  pid_t pid = forkpty(&master, nullptr, nullptr, nullptr);
  REQUIRE(pid >= 0);
  if (pid == 0) {
    execv(a[0], a.data());
    _exit(127);
  }
  TtyRun r;
  size_t step = 0, from = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (;;) {
    pollfd p{master, POLLIN, 0};
    if (::poll(&p, 1, 200) > 0) {
      char buf[4096];
      ssize_t n = ::read(master, buf, sizeof buf);
      if (n <= 0) break;  // EIO: the program closed the terminal
      r.shown.append(buf, size_t(n));
    }
    if (step < dialog.size()) {
      size_t at = r.shown.find(dialog[step].first, from);
      if (at != std::string::npos) {
        REQUIRE(::write(master, dialog[step].second.data(), dialog[step].second.size()) ==
                ssize_t(dialog[step].second.size()));
        from = at + dialog[step].first.size();
        ++step;
      }
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      break;
    }
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  ::close(master);
  r.rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

TEST_SUITE("integration-bootstrap") {
  TEST_CASE("bootstrap: a password-only node with a sudo user converges in one command, its host key pinned") {
    REQUIRE_MESSAGE(access("/usr/bin/sudo", X_OK) == 0, "sudo is not installed (.ci/install-deps installs it)");
    Sandbox sbx({.nodes = 1, .password_only = true});
    const SandboxNode& node = sbx.node("node1");
    TempInventory inv(sbx, "labfleet-boot");
    const std::string nodes_yaml = "nodes:\n  # racked today\n  node1:\n    address: " + node.address +
                                   "\n    ssh: { port: " + std::to_string(node.port) +
                                   ", user: lfadmin, become: sudo, identity: " + sbx.identity() + " }\n";
    inv.write("inventory/nodes.yaml", nodes_yaml);
    inv.write("inventory/lab.yaml", R"(lab:
  name: t
  defaults:
    files:
      - { path: /etc/labfleet-bootstrapped, content: "converged\n", mode: "0644" }
users:
  yseong:
    uid: 2001
    full_name: Yeon Seong
    shell: /bin/bash
)");
    // An empty known_hosts: the pin in the inventory is the only thing that can vouch for the node's key.
    const std::string kh = (inv.root / "known_hosts").string();
    WriteFile(kh, "");
    const std::string good = (inv.root / "pw").string();
    WriteFile(good, ReadFile(fs::path(sbx.dir()) / "password"));
    chmod(good.c_str(), 0600);
    const std::string wrong = (inv.root / "wrong").string();
    WriteFile(wrong, "not-the-password\n");
    chmod(wrong.c_str(), 0600);
    const std::string open = (inv.root / "open").string();
    WriteFile(open, ReadFile(good));
    chmod(open.c_str(), 0644);
    const std::string node_key = Trim(Exec(sbx, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub"));

    auto boot = [&](const std::string& pwfile, bool accept) {
      PasswordEnv env(pwfile);
      std::vector<std::string> a{"--inventory", inv.dir(), "apply", "node1", "--bootstrap", "--bootstrap-user",
                                 "installer", "--yes", "--allow-dirty", "--known-hosts", kh, "--format", "json"};
      if (accept) a.push_back("--accept-new-host-keys");
      return Cli(a);
    };

    // The node really accepts no key: the sandbox's key is refused for root (its authorized_keys is gone).
    CHECK_THROWS_AS(labfleet::SshTransport(Target(sbx, "node1", sbx.known_hosts())), labfleet::TransportError);

    // A password file others may read is refused before anything happens on the node.
    {
      auto r = boot(open, true);
      INFO(r.out << r.err);
      CHECK(r.rc == 4);
      CHECK(r.out.find("readable only by its owner") != std::string::npos);
      CHECK(ReadFile(inv.root / "inventory/nodes.yaml") == nodes_yaml);
      CHECK(sbx.exec("node1", "getent passwd lfadmin").exit_code == 2);
    }
    // A wrong password: one refused login, a clear message, nothing changed, nothing pinned.
    {
      auto r = boot(wrong, true);
      INFO(r.out << r.err);
      CHECK(r.rc == 4);
      CHECK(r.out.find("password login as installer refused") != std::string::npos);
      CHECK(r.out.find("not-the-password") == std::string::npos);
      CHECK(ReadFile(inv.root / "inventory/nodes.yaml") == nodes_yaml);
      CHECK(sbx.exec("node1", "getent passwd lfadmin").exit_code == 2);
    }
    // Without --accept-new-host-keys and no terminal to confirm on, the unknown key is refused. (Run from a
    // terminal, this part would ask there: it is left out then.)
    if (int tty = ::open("/dev/tty", O_RDWR | O_NOCTTY); tty >= 0) {
      ::close(tty);
      MESSAGE("a terminal is attached: the unconfirmed-key case is not run");
    } else {
      auto r = boot(good, false);
      INFO(r.out << r.err);
      CHECK(r.rc == 4);
      CHECK(r.out.find("was not confirmed") != std::string::npos);
      CHECK(ReadFile(inv.root / "inventory/nodes.yaml") == nodes_yaml);
    }
    // The right password (no lockout from the wrong one): one command to converged.
    {
      auto r = boot(good, true);
      INFO(r.out << r.err);
      REQUIRE(r.rc == 0);
      auto j = r.json();
      CHECK(j["bootstrap"][0]["password_used"] == true);
      CHECK(j["bootstrap"][0]["pinned_now"] == true);
      const std::string changes = j["bootstrap"][0]["changes"].dump();
      CHECK(changes.find("created account lfadmin") != std::string::npos);
      CHECK(changes.find("installed the admin's key") != std::string::npos);
      CHECK(changes.find("sudoers rule /etc/sudoers.d/labfleet-lfadmin") != std::string::npos);
      CHECK(r.out.find(ReadFile(good).substr(0, 10)) == std::string::npos);
      CHECK(Summaries(j).find("/etc/labfleet-bootstrapped") != std::string::npos);
    }
    // The host key landed in the inventory, minimally: the comment and every other line kept.
    const std::string pinned = ReadFile(inv.root / "inventory/nodes.yaml");
    CHECK(pinned == "nodes:\n  # racked today\n  node1:\n    host_key: \"" + node_key + "\"\n" +
                        nodes_yaml.substr(nodes_yaml.find("    address:")));
    // Independent checks inside the node.
    CHECK(Exec(sbx, "cat /etc/labfleet-bootstrapped") == "converged\n");
    CHECK(Exec(sbx, "getent passwd yseong | cut -d: -f1,3") == "yseong:2001\n");
    CHECK(Exec(sbx, "stat -c '%a %U' /etc/sudoers.d/labfleet-lfadmin /home/lfadmin/.ssh/authorized_keys") ==
          "440 root\n600 lfadmin\n");
    CHECK(Exec(sbx, "visudo -cqf /etc/sudoers.d/labfleet-lfadmin && echo valid") == "valid\n");
    const std::string admin_pub = Trim(ReadFile(sbx.identity() + ".pub"));
    CHECK(Exec(sbx, "cut -d' ' -f1,2 /home/lfadmin/.ssh/authorized_keys") ==
          admin_pub.substr(0, admin_pub.rfind(' ')) + "\n");

    // A second bootstrap needs no password (none is available) and changes nothing.
    {
      auto r = boot("", false);
      INFO(r.out << r.err);
      REQUIRE(r.rc == 0);
      auto j = r.json();
      CHECK(j["bootstrap"][0]["password_used"] == false);
      CHECK(j["bootstrap"][0]["pinned_now"] == false);
      CHECK(Summaries(j) == "");
    }
    CHECK(ReadFile(inv.root / "inventory/nodes.yaml") == pinned);
    // Every later command verifies the pin (known_hosts is still empty) and plans nothing.
    {
      auto r = Cli({"--inventory", inv.dir(), "plan", "--detailed-exitcode", "--known-hosts", kh});
      INFO(r.out << r.err);
      CHECK(r.rc == 0);
    }
    CHECK(ReadFile(kh) == "");
    // A changed key is refused, by bootstrap and by every other command.
    {
      const std::string other = Trim(ReadFile(sbx.identity() + ".pub"));
      std::string changed = pinned;
      changed.replace(changed.find(node_key), node_key.size(), other.substr(0, other.rfind(' ')));
      inv.write("inventory/nodes.yaml", changed);
      auto r = boot(good, true);
      INFO(r.out << r.err);
      CHECK(r.rc == 4);
      CHECK(r.out.find("HOST KEY MISMATCH") != std::string::npos);
      auto p = Cli({"--inventory", inv.dir(), "plan", "--known-hosts", kh, "--accept-new-host-keys"});
      CHECK(p.rc != 0);
      CHECK((p.out + p.err).find("HOST KEY MISMATCH") != std::string::npos);
    }
  }

  TEST_CASE("bootstrap at a terminal: the host key is confirmed by its fingerprint, --ask-pass reads with echo off") {
    Sandbox sbx({.nodes = 1, .password_only = true});
    const SandboxNode& node = sbx.node("node1");
    TempInventory inv(sbx, "labfleet-boot");
    inv.write("inventory/nodes.yaml", "nodes:\n  node1:\n    address: " + node.address + "\n    ssh: { port: " +
                                          std::to_string(node.port) + ", user: root, identity: " + sbx.identity() +
                                          " }\n");
    inv.write("inventory/lab.yaml", "lab: { name: t }\n");
    const std::string kh = (inv.root / "known_hosts").string();
    WriteFile(kh, "");
    const std::string pw = Trim(ReadFile(fs::path(sbx.dir()) / "password"));
    REQUIRE(pw.size() >= 8);
    const std::string fp = Trim(Exec(sbx, "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2"));
    const std::string node_key = Trim(Exec(sbx, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub"));
    std::vector<std::string> argv{LABFLEET_BINARY, "--inventory", inv.dir(), "apply", "node1", "--bootstrap",
                                  "--bootstrap-user", "installer", "--ask-pass", "--yes", "--allow-dirty",
                                  "--known-hosts", kh};
    // A wrong sudo password (--ask-become-pass): the node fails clearly and nothing is changed or pinned.
    {
      auto b = argv;
      b.push_back("--ask-become-pass");
      auto w = RunOnTty(b, {{"Pin it in the inventory? [y/N] ", "y\n"},
                            {"SSH password for installer@node1: ", pw + "\n"},
                            {"sudo password for installer@node1: ", "wrong-sudo-pw\n"}});
      INFO(w.shown);
      CHECK(w.rc == 4);
      CHECK(w.shown.find("did not run the setup as root") != std::string::npos);
      CHECK(w.shown.find("wrong-sudo-pw") == std::string::npos);
      CHECK(w.shown.find(pw) == std::string::npos);
      CHECK(ReadFile(inv.root / "inventory/nodes.yaml").find("host_key") == std::string::npos);
      CHECK(sbx.exec("node1", "test -e /root/.ssh/authorized_keys").exit_code == 1);
    }
    auto r = RunOnTty(argv,
                      {{"Pin it in the inventory? [y/N] ", "y\n"}, {"SSH password for installer@node1: ", pw + "\n"}});
    INFO(r.shown);
    CHECK(r.rc == 0);
    CHECK(r.shown.find("host key ssh-ed25519 " + fp) < r.shown.find("Pin it in the inventory?"));
    CHECK(r.shown.find(pw) == std::string::npos);  // typed, never echoed or printed
    CHECK(ReadFile(inv.root / "inventory/nodes.yaml").find("host_key: \"" + node_key + "\"") != std::string::npos);
    const std::string admin_pub = Trim(ReadFile(sbx.identity() + ".pub"));
    CHECK(Exec(sbx, "cut -d' ' -f1,2 /root/.ssh/authorized_keys") == admin_pub.substr(0, admin_pub.rfind(' ')) + "\n");
  }
}
