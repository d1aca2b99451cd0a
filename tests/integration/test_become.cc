// `ssh.become: sudo` end to end, with the real sudo: a node whose root cannot log in at all, reached as a
// non-root user with passwordless sudo; facts, apply (accounts, keys, subids, files, hosts, the state record)
// and a re-plan that is empty. Independent checks run inside the node (getent, pwck, stat), not over labfleet.
#include <doctest/doctest.h>
#include <unistd.h>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

TEST_SUITE("integration-become") {
  TEST_CASE("become: sudo as a non-root login user: facts, apply, re-plan empty; root never logs in") {
    REQUIRE_MESSAGE(access("/usr/bin/sudo", X_OK) == 0, "sudo is not installed (.ci/install-deps installs it)");
    Sandbox sbx({.nodes = 1});
    // ops logs in with the sandbox's key; root's key is removed, so nothing can have logged in as root.
    Exec(sbx,
         "useradd -m -p '*' -s /bin/sh ops && install -d -m 700 -o ops -g ops /home/ops/.ssh && "
         "install -m 600 -o ops -g ops /root/.ssh/authorized_keys /home/ops/.ssh/authorized_keys && "
         "rm /root/.ssh/authorized_keys && mkdir -p /etc/sudoers.d && "
         "printf 'ops ALL=(ALL) NOPASSWD: ALL\\n' > /etc/sudoers.d/ops && chmod 440 /etc/sudoers.d/ops");
    TempInventory inv(sbx);
    std::string nodes = sbx.nodes_yaml();
    const std::string from = "user: root,";
    auto at = nodes.find(from);
    REQUIRE(at != std::string::npos);
    nodes.replace(at, from.size(), "user: ops, become: sudo,");
    inv.write("inventory/nodes.yaml", nodes);
    inv.write("inventory/lab.yaml", R"(lab:
  name: t
  defaults:
    hosts: { 10.0.1.66: [master] }
    files:
      - { path: /etc/labfleet-become, content: "written as root\n", mode: "0600" }
user_groups:
  gpu-users: { gid: 3000 }
users:
  yseong:
    uid: 2001
    full_name: Yeon Seong
    groups: [gpu-users]
    shell: /bin/bash
    rootless_docker: true
    ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEu9xH1r0Y9sZ3l6w8G3sQkq1Z1f0k8bYt7dGm2yW4cP yseong@laptop"]
)");

    auto facts = Cli(sbx, inv.dir(), {"facts", "--format", "json"});
    INFO(facts.out << facts.err);
    REQUIRE(facts.rc == 0);
    CHECK(facts.json()["nodes"][0]["hostname"] == "node1");

    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(apply.out << apply.err);
    REQUIRE(apply.rc == 0);
    auto plan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 0);

    CHECK(Exec(sbx, "getent passwd yseong | cut -d: -f1,3,4,7") == "yseong:2001:2001:/bin/bash\n");
    CHECK(Exec(sbx, "id -nG yseong") == "yseong gpu-users\n");
    Exec(sbx, "pwck -r && grpck -r");
    CHECK(Exec(sbx, "stat -c '%a %U:%G' /etc/labfleet-become /home/yseong/.ssh/authorized_keys") ==
          "600 root:root\n600 yseong:yseong\n");
    CHECK(Exec(sbx, "cat /etc/labfleet-become") == "written as root\n");
    CHECK(Exec(sbx, "grep -c '^yseong:' /etc/subuid /etc/subgid") == "/etc/subuid:1\n/etc/subgid:1\n");
    CHECK(Exec(sbx, "grep -c master /etc/hosts") == "1\n");
    CHECK(Exec(sbx, "stat -c %U /var/lib/labfleet/state.json") == "root\n");
    CHECK(Exec(sbx, "test ! -e /root/.ssh/authorized_keys && echo root-cannot-log-in") == "root-cannot-log-in\n");
  }
}
