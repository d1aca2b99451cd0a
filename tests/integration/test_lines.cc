// lines on a real node: /etc/environment edited line by line (its other lines, mode and group kept), read back
// by PAM (su's pam_env, the reader students' logins use); a created sysctl-style file; a re-plan with nothing to
// do; and a user's symlinked directory that root's create would have followed is refused. yaml_key: netplan keys
// set in a cloud-init file (read back with `netplan get`), re-plan empty, a value netplan rejects leaves the file.
#include <doctest/doctest.h>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet;
using namespace labfleet::testing;

TEST_SUITE("integration-lines") {
  TEST_CASE("lines: edit /etc/environment in place, create a file, re-plan empty, refuse a user's symlink") {
    Sandbox sbx({.nodes = 1});
    MustExec(sbx, "node1",
             "printf '%s\\n' 'PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"' 'DET_MASTER=old:8080' "
             "'# site settings, kept' 'OLD_PROXY=http://10.0.0.9:3128' 'DET_MASTER=duplicate' > /etc/environment && "
             "chgrp adm /etc/environment && chmod 0640 /etc/environment && "
             "useradd -m -u 2060 -s /bin/sh alice && "
             "runuser -u alice -- ln -s /etc/cron.d /home/alice/.config");
    TempInventory inv(sbx);
    inv.defaults("    lines:\n"
                 "      - { path: /etc/environment, line: \"DET_MASTER=10.0.1.66:8080\", match: \"^DET_MASTER=\" }\n"
                 "      - { path: /etc/environment, match: \"^OLD_PROXY=\", state: absent }\n"
                 "      - { path: /etc/sysctl.d/90-lab.conf, line: \"vm.swappiness = 10\", match: \"^vm\\\\.swappiness\", create: true }\n");
    auto v = Cli({"--inventory", inv.dir(), "validate"});
    INFO(v.out << v.err);
    REQUIRE(v.rc == 0);

    auto plan = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(plan.out << plan.err);
    CHECK(Summaries(plan) == "lines in /etc/environment (2 entries) | lines in /etc/sysctl.d/90-lab.conf (1 entry)");

    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Exec(sbx, "cat /etc/environment") ==
          "PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\nDET_MASTER=10.0.1.66:8080\n"
          "# site settings, kept\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/environment") == "640 root adm\n");
    CHECK(Exec(sbx, "cat /etc/sysctl.d/90-lab.conf") == "vm.swappiness = 10\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/sysctl.d/90-lab.conf") == "644 root root\n");
    // An independent reader: PAM's pam_env, through su, as a login reads it. (`sysctl -p` is not run: the node
    // shares the host's kernel.)
    auto su = sbx.exec("node1", "su -s /bin/sh -c 'printenv DET_MASTER' alice");
    INFO(su.err);
    CHECK(su.out == "10.0.1.66:8080\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // alice's ~/.config is a link to /etc/cron.d: creating a file there as root would plant a root cron job.
    inv.defaults("    lines:\n"
                 "      - { path: /home/alice/.config/lab.env, line: \"X=1\", create: true }\n");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.out.find("refused: lines in /home/alice/.config/lab.env (1 entry): /home/alice belongs to alice") != std::string::npos);
    CHECK(sbx.exec("node1", "test -e /etc/cron.d/lab.env").exit_code != 0);
  }
}

namespace {
// cloud-init's file as a node has it, with a site comment; eno1 with a match: block.
const char* kCloudInit =
    "# This file is generated from information provided by the datasource.  Changes\n"
    "# to it will not persist across an instance reboot.\n"
    "network:\n"
    "    ethernets:\n"
    "        eno1:\n"
    "            dhcp4: true\n"
    "            match:\n"
    "                macaddress: 3c:ec:ef:6a:10:2e\n"
    "            set-name: eno1\n"
    "        enp65s0f1:\n"
    "            dhcp4: false\n"
    "            optional: false   # 25G NIC, cabled only in rack B\n"
    "    version: 2\n";
}  // namespace

TEST_SUITE("integration-lines") {
  TEST_CASE("lines yaml_key: netplan keys set in place, checked by netplan generate, a bad value leaves the file") {
    Sandbox sbx({.nodes = 1});
    // netplan.io is installed by .ci/install-deps; the node's root is an overlay of the host's.
    REQUIRE(sbx.exec("node1", "command -v netplan").exit_code == 0);
    MustExec(sbx, "node1",
             "mkdir -p /etc/netplan && printf '%s' " + ShellQuote(kCloudInit) +
                 " > /etc/netplan/50-cloud-init.yaml && chmod 0600 /etc/netplan/50-cloud-init.yaml && "
                 "printf 'network:\\n  version: 2\\n  renderer: networkd\\n' > /etc/netplan/01-lab.yaml && "
                 "chmod 0600 /etc/netplan/01-lab.yaml");
    TempInventory inv(sbx);
    inv.defaults("    lines:\n"
                 "      - { path: /etc/netplan/50-cloud-init.yaml, yaml_key: network.ethernets.enp65s0f1.optional, value: true, check: netplan }\n"
                 "      - { path: /etc/netplan/50-cloud-init.yaml, yaml_key: network.ethernets.eno1.mtu, value: 9000 }\n");
    auto v = Cli({"--inventory", inv.dir(), "validate"});
    INFO(v.out << v.err);
    REQUIRE(v.rc == 0);

    auto plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(plan.out.find("yaml keys in /etc/netplan/50-cloud-init.yaml (2 entries)") != std::string::npos);
    CHECK(plan.out.find("-            optional: false   # 25G NIC, cabled only in rack B") != std::string::npos);
    CHECK(plan.out.find("+            optional: true   # 25G NIC, cabled only in rack B") != std::string::npos);
    CHECK(plan.out.find("+            mtu: 9000") != std::string::npos);

    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    std::string want = kCloudInit;
    want.replace(want.find("optional: false"), 15, "optional: true");
    want.replace(want.find("            set-name: eno1\n"), 27, "            set-name: eno1\n            mtu: 9000\n");
    // Comments, order and the other keys byte for byte; mode and owner kept.
    CHECK(Exec(sbx, "cat /etc/netplan/50-cloud-init.yaml") == want);
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/netplan/50-cloud-init.yaml") == "600 root root\n");
    // netplan itself reads the result (the independent tool), and the other file is as it was.
    CHECK(Exec(sbx, "netplan get ethernets.enp65s0f1.optional") == "true\n");
    CHECK(Exec(sbx, "netplan get ethernets.eno1.mtu") == "9000\n");
    CHECK(Exec(sbx, "netplan get ethernets.eno1.match.macaddress") == "\"3c:ec:ef:6a:10:2e\"\n");  // YAML-quoted
    CHECK(Exec(sbx, "cat /etc/netplan/01-lab.yaml") == "network:\n  version: 2\n  renderer: networkd\n");
    // The check generated into its own root only: nothing for networkd in the node's /run.
    CHECK(Exec(sbx, "ls /run/systemd/network 2>/dev/null | grep -c netplan || true") == "0\n");
    auto again = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(again.out << again.err);
    CHECK(again.rc == 0);

    // A value labfleet accepts offline (an integer) that netplan rejects for a boolean key: netplan's message,
    // the live file untouched, no temporary file or directory left behind.
    inv.defaults("    lines:\n"
                 "      - { path: /etc/netplan/50-cloud-init.yaml, yaml_key: network.ethernets.enp65s0f1.optional, value: 7 }\n");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc != 0);
    CHECK(r.out.find("/etc/netplan/50-cloud-init.yaml:13:23: Error in network definition: invalid boolean value '7'") != std::string::npos);  // the real path, not the copy's
    CHECK(r.out.find("check of the new /etc/netplan/50-cloud-init.yaml failed; it was not put in place") != std::string::npos);
    CHECK(Exec(sbx, "cat /etc/netplan/50-cloud-init.yaml") == want);
    CHECK(Exec(sbx, "ls -A /etc/netplan") == "01-lab.yaml\n50-cloud-init.yaml\n");
    CHECK(Exec(sbx, "ls -d /run/labfleet-netplan.* 2>/dev/null | wc -l") == "0\n");

    // A file written in flow style is refused before anything runs on the node.
    MustExec(sbx, "node1", "printf 'network: {version: 2, ethernets: {eno1: {dhcp4: true}}}\\n' > /etc/netplan/60-flow.yaml");
    inv.defaults("    lines:\n"
                 "      - { path: /etc/netplan/60-flow.yaml, yaml_key: network.ethernets.eno1.optional, value: true }\n");
    r = Cli(sbx, inv.dir(), {"plan"});
    INFO(r.out << r.err);
    CHECK(r.out.find("`network` (line 1) is written in flow style") != std::string::npos);
    CHECK(Exec(sbx, "cat /etc/netplan/60-flow.yaml") == "network: {version: 2, ethernets: {eno1: {dhcp4: true}}}\n");
  }
}
