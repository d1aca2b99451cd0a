// exports and automounts on real sandbox nodes: a storage server (node1) exports two directories to the compute
// group (node2), which automounts /home from it. Independent checks with the tools that read these files:
// nfs-utils' own `exportfs` (run for real by labfleet's handler; `exportfs -v` then lists what it parsed; a
// sandbox node needs no kernel NFS server for that) and autofs's `automount -m` (dumps the maps as the daemon
// would read them; no daemon needed). exportfs runs in a private network namespace (a shim in the node's
// /usr/local/sbin): on a host whose kernel has nfsd loaded, exportfs in a node sharing the host's network would
// otherwise rewrite the HOST's export table. systemctl is the recording double. Then: re-plan empty, one
// inventory change = exactly its changes, a removed automount's files removed, a node without exportfs gets
// its file with a warning and a note (no failure), and validate refuses a read-write mount of a read-only export
// and a static mount on an automounted directory, with file:line:col.
#include <doctest/doctest.h>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

std::string Nodes(const Sandbox& sbx) {
  std::string nodes = sbx.nodes_yaml();
  for (auto [node, group] : {std::pair{"node1: {", "storage"}, std::pair{"node2: {", "compute"}}) {
    auto at = nodes.find(node);
    REQUIRE(at != std::string::npos);
    nodes.insert(at + std::string(node).size(), std::string(" groups: [") + group + "],");
  }
  return nodes;
}

std::string Lab(const std::string& exports, const std::string& compute) {
  return "lab: { name: t }\ngroups:\n  storage:\n    exports:\n" + exports + "  compute:\n" + compute;
}

const std::string kExports =
    "      - { path: /srv/export/home, clients: [compute], options: [rw, sync] }\n"
    "      - { path: /srv/export/public/, clients: [compute, 10.0.2.0/24], options: [ro] }\n";
const std::string kAutomounts =
    "    automounts:\n"
    "      - { mount: /home, map: { \"*\": \"node1:/srv/export/home/&\" }, options: [fstype=nfs, vers=4.2, hard], timeout: 300 }\n";

std::string Run(const Sandbox& sbx, const std::string& node, const std::string& cmd) {
  auto r = sbx.exec(node, cmd);
  INFO(cmd << "\n" << r.out << r.err);
  CHECK(r.exit_code == 0);
  return r.out;
}

}  // namespace

TEST_SUITE("integration-exports") {
  TEST_CASE("exports on the server checked by exportfs, automounts on the client checked by automount -m") {
    Sandbox sbx({.nodes = 2});
    REQUIRE(sbx.exec("node1", "test -x /usr/sbin/exportfs && test -x /usr/sbin/automount").exit_code == 0);
    InstallDoubles(sbx, "node2", {"systemctl"});
    SeedUnit(sbx, "node2", "autofs.service", "disabled", "inactive");
    const std::string admin_exports = Run(sbx, "node1", "cat /etc/exports");
    MustExec(sbx, "node1",
             "mkdir -p /srv/export/home/alice /srv/export/public && "
             "printf '#!/bin/sh\\nexec unshare -n /usr/sbin/exportfs \"$@\"\\n' > /usr/local/sbin/exportfs && "
             "chmod 0755 /usr/local/sbin/exportfs");
    TempInventory inv(sbx);
    inv.write("inventory/nodes.yaml", Nodes(sbx));
    inv.write("inventory/lab.yaml", Lab(kExports, kAutomounts));
    auto v = Cli({"--inventory", inv.dir(), "validate"});
    INFO(v.out << v.err);
    REQUIRE(v.rc == 0);

    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r.json()) ==
          "NFS exports in /etc/exports.d/labfleet.exports (2 exports) | exportfs -ra | "
          "service autofs.service (enable, start; automounts /home) | "
          "autofs master entry /etc/auto.master.d/labfleet-home.autofs (/home) | "
          "autofs map /etc/auto.labfleet-home (1 key) | systemctl try-reload-or-restart autofs.service");

    // The server: labfleet's file exactly, the admin's /etc/exports untouched, and nfs-utils' reading of it.
    CHECK(Run(sbx, "node1", "cat /etc/exports.d/labfleet.exports") ==
          "# Managed by labfleet (exports:); changes here are overwritten by the next apply.\n"
          "# The admin's own exports stay in /etc/exports.\n"
          "/srv/export/home 127.0.0.1(rw,sync,no_subtree_check)\n"
          "/srv/export/public 127.0.0.1(ro,no_subtree_check) 10.0.2.0/24(ro,no_subtree_check)\n");
    CHECK(Run(sbx, "node1", "cat /etc/exports") == admin_exports);
    const std::string listed = Run(sbx, "node1", "exportfs -v");
    CHECK(listed.find("/srv/export/home\n\t\t127.0.0.1(sync,wdelay,hide,no_subtree_check,sec=sys,rw,") != std::string::npos);
    CHECK(listed.find("/srv/export/public\n\t\t127.0.0.1(sync,wdelay,hide,no_subtree_check,sec=sys,ro,") != std::string::npos);
    CHECK(listed.find("10.0.2.0/24(sync,wdelay,hide,no_subtree_check,sec=sys,ro,") != std::string::npos);

    // The client: autofs's own dump of its maps.
    const std::string dump = Run(sbx, "node2", "automount -m");
    CHECK(dump.find("Mount point: /home\n") != std::string::npos);
    CHECK(dump.find("map: /etc/auto.labfleet-home\n") != std::string::npos);
    CHECK(dump.find("  * | -fstype=nfs,vers=4.2,hard node1:/srv/export/home/&\n") != std::string::npos);
    CHECK(Run(sbx, "node2", "cat /etc/auto.master.d/labfleet-home.autofs") ==
          "# Managed by labfleet (automounts: /home); changes here are overwritten.\n"
          "/home /etc/auto.labfleet-home --timeout=300\n");
    CHECK(DoubleActions(sbx, "node2") ==
          std::vector<std::string>{"systemctl enable autofs.service", "systemctl start autofs.service",
                                   "systemctl try-reload-or-restart autofs.service"});

    // Converged.
    auto plan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 0);

    // One export option and one map location change: exactly those files and their reloads.
    ClearDoubleCalls(sbx, "node2");
    inv.write("inventory/lab.yaml",
              Lab("      - { path: /srv/export/home, clients: [compute], options: [rw, async] }\n"
                  "      - { path: /srv/export/public/, clients: [compute, 10.0.2.0/24], options: [ro] }\n",
                  "    automounts:\n"
                  "      - { mount: /home, map: { \"*\": \"node1:/srv/export/home/&\" }, options: [fstype=nfs, vers=4.1, hard], timeout: 300 }\n"));
    auto r2 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r2.out << r2.err);
    REQUIRE(r2.rc == 0);
    CHECK(Summaries(r2.json()) ==
          "NFS exports in /etc/exports.d/labfleet.exports (2 exports) | exportfs -ra | "
          "autofs map /etc/auto.labfleet-home (1 key) | systemctl try-reload-or-restart autofs.service");
    const std::string listed2 = Run(sbx, "node1", "exportfs -v");
    INFO(listed2);
    CHECK(listed2.find("/srv/export/home\n\t\t127.0.0.1(async,wdelay,hide,no_subtree_check,sec=sys,rw,") != std::string::npos);
    CHECK(Run(sbx, "node2", "automount -m").find("* | -fstype=nfs,vers=4.1,hard node1:") != std::string::npos);
    CHECK(DoubleActions(sbx, "node2") == std::vector<std::string>{"systemctl try-reload-or-restart autofs.service"});

    // The automount goes away: its two files are removed and autofs reloaded. node2 also exports a directory,
    // but has no exportfs (hidden in its mount namespace): the file is written, the plan warns, the handler
    // prints a note instead of failing.
    ClearDoubleCalls(sbx, "node2");
    MustExec(sbx, "node2", "mkdir -p /srv/scratch && mount --bind /dev/null /usr/sbin/exportfs && ! command -v exportfs");
    inv.write("inventory/nodes.yaml", [&] {
      std::string n = Nodes(sbx);
      n.insert(n.find("groups: [compute],") + 18, " exports: [{ path: /srv/scratch, clients: [node1] }],");
      return n;
    }());
    inv.write("inventory/lab.yaml", Lab(kExports, "    automounts: []\n"));
    auto p3 = Cli(sbx, inv.dir(), {"plan"});
    INFO(p3.out << p3.err);
    CHECK(p3.out.find("exportfs is not installed on this node, so nothing serves /etc/exports.d/labfleet.exports") !=
          std::string::npos);
    auto r3 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r3.out << r3.err);
    REQUIRE(r3.rc == 0);
    CHECK(Summaries(r3.json()) ==
          "NFS exports in /etc/exports.d/labfleet.exports (2 exports) | exportfs -ra | "
          "NFS exports in /etc/exports.d/labfleet.exports (1 export) | exportfs -ra | "
          "autofs file /etc/auto.master.d/labfleet-home.autofs (remove) | autofs file /etc/auto.labfleet-home (remove) | "
          "systemctl try-reload-or-restart autofs.service");
    // The handler ran and did not fail; apply's report carries the re-plan's warning.
    const auto applied = r3.json()["apply"];
    REQUIRE(applied.size() == 2);
    CHECK(applied[1]["node"] == "node2");
    CHECK(applied[1]["status"] == "changed");
    CHECK(applied[1]["handlers"].dump().find("exportfs -ra") != std::string::npos);
    CHECK(applied[1]["warnings"].dump().find("exportfs is not installed on this node, so nothing serves") !=
          std::string::npos);
    CHECK(Run(sbx, "node2", "ls -d /etc/auto.master.d/labfleet-* /etc/auto.labfleet-* 2>/dev/null | wc -l") == "0\n");
    CHECK(Run(sbx, "node2", "cat /etc/exports.d/labfleet.exports").find("/srv/scratch 127.0.0.1(no_subtree_check)\n") !=
          std::string::npos);
    CHECK(DoubleActions(sbx, "node2") == std::vector<std::string>{"systemctl try-reload-or-restart autofs.service"});
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // Offline: a read-write mount of a read-only export, and a static mount where autofs mounts.
    inv.write("inventory/nodes.yaml", Nodes(sbx));
    inv.write("inventory/lab.yaml",
              Lab(kExports, kAutomounts +
                                "    mounts:\n"
                                "      - { source: \"node1:/srv/export/public\", target: /media/public }\n"
                                "      - { source: \"node1:/srv/export/home\", target: /home }\n"));
    auto bad = Cli({"--inventory", inv.dir(), "validate"});
    INFO(bad.out << bad.err);
    CHECK(bad.rc != 0);
    const std::string all = bad.out + bad.err;
    CHECK(all.find("lab.yaml:11:19: error: mount /media/public on node 'node2' (node1:/srv/export/public) is "
                   "read-write, but export /srv/export/public on 'node1'") != std::string::npos);
    CHECK(all.find("lab.yaml:9:18: error: automount /home on node 'node2' is also a static mount") != std::string::npos);
  }
}
