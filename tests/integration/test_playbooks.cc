// Playbooks on real sandbox nodes (`labfleet run`, engine/playbook_run.h):
//   - the shipped semester-end playbook over 3 nodes with btrfs, node3 the storage server: the dry run changes
//     nothing; the run locks the expired accounts, ends their processes (not root's, not a current user's),
//     snapshots the expired homes on node3 (checked with btrfs subvolume show, the ro property and files read
//     back), archives and deletes the accounts on every node (archive read back by tar, pwck -r / grpck -r clean,
//     current accounts and a root session untouched), deletes the expired homes on node3 and every node's expired
//     Docker data; a rerun changes nothing; the inventory then marked `remove: archive` plans empty;
//   - a snapshot that fails (a world-writable snapshot directory) deletes nothing; fixed, old snapshots are
//     pruned to keep and an account with no home and no snapshot keeps its Docker data;
//   - lock with a directory: shadowExpire 1 in a real slapd, usermod -e 1 for a local account, rerun unchanged;
//   - reboot: without --reboot nodes with /run/reboot-required are listed; with it a busy node is not rebooted
//     and a node whose boot id does not change (a sandbox node cannot reboot) fails and stops the rollout;
//   - an upgrade-shaped playbook: a node with a GPU job (a process holding a stand-in GPU device file open) is
//     left out and listed, the idle nodes run the command, its `creates:` guard makes a rerun harmless; the
//     shipped upgrade playbook's dry run lists the busy node too;
//   - a rolling apply in batches of one whose health check fails on the second node: the third is never
//     applied;
//   - `labfleet validate` checks playbooks/ next to the inventory with file:line:col.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "engine/playbook.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"
#include "tests/integration/test_directory_slapd.h"

using namespace labfleet::testing;

namespace {

bool Has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string Shipped(const std::string& name) {
  return ReadFile(std::filesystem::path(LABFLEET_SOURCE_DIR) / "playbooks" / (name + ".yaml"));
}

// The shipped semester-end for a sandbox lab: node3 is the storage server, its homes on /srv/btrfs.
std::string ForSandbox(std::string text) {
  text = std::regex_replace(text, std::regex("nodes: storage"), "nodes: node3");
  text = std::regex_replace(text, std::regex("homes: /mnt/HDD/home"), "homes: /srv/btrfs/home");
  return std::regex_replace(text, std::regex("to: /mnt/HDD/.snapshots"), "to: /srv/btrfs/snapshots");
}

// step name -> "node=status ..." of a `run --format json` document.
std::string StepStatuses(const nlohmann::json& doc, const std::string& step) {
  for (const auto& s : doc["steps"])
    if (s["name"] == step) {
      std::string out;
      for (const auto& n : s["nodes"]) out += (out.empty() ? "" : " ") + n["node"].get<std::string>() + "=" + n["status"].get<std::string>();
      return out;
    }
  return "<no step " + step + ">";
}

}  // namespace

TEST_SUITE("integration-playbooks") {
  TEST_CASE("semester-end: expired accounts locked, homes archived and deleted on every node; a rerun is a no-op") {
    Sandbox sbx({.nodes = 3, .btrfs_mb = 128});
    TempInventory inv(sbx, "labfleet-pb-sem");
    inv.write("inventory/lab.yaml", "lab:\n  name: sem\n  home_archive: /var/backups/homes\n  defaults:\n"
                                    "    rootless_docker: { data_root: \"/local/.docker/{{user}}\" }\n");
    auto users = [&](const std::string& extra) {
      inv.write("inventory/users.yaml",
                "users:\n"
                "  olda: { uid: 2301, expires: 2024-01-31" + extra + " }\n"
                "  oldb: { uid: 2302, expires: 2024-06-30" + extra + " }\n"
                "  cur: { uid: 2303, expires: 2099-12-31 }\n"
                "  soon: { uid: 2305, expires: " + labfleet::DateOfDays(labfleet::TodayDays() + 3) + " }\n"
                "  staff: { uid: 2304 }\n");
    };
    users("");
    inv.write("playbooks/semester-end.yaml", ForSandbox(Shipped("semester-end")));
    auto created = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(created.out << created.err);
    REQUIRE(created.rc == 0);
    for (const std::string n : {"node1", "node2", "node3"})
      Exec(sbx, n, "mkdir -p /home/olda/data && printf 'epoch 12\\n' > /home/olda/data/log.txt && chown -R olda:olda /home/olda/data");
    // node3 is the storage server: its btrfs holds the homes (olda's a subvolume, cur's a directory; oldb has
    // none there). Every node has the users' rootless Docker data.
    Exec(sbx, "node3", "mkdir -p /srv/btrfs/home && btrfs subvolume create /srv/btrfs/home/olda >/dev/null && "
                       "mkdir -p /srv/btrfs/home/olda/data /srv/btrfs/home/cur && "
                       "printf 'weights v3\\n' > /srv/btrfs/home/olda/data/model.txt && "
                       "ln -s /etc/shadow /srv/btrfs/home/olda/link && chown -R 2301:2301 /srv/btrfs/home/olda && "
                       "echo mine > /srv/btrfs/home/cur/notes.txt");
    for (const std::string n : {"node1", "node2", "node3"})
      Exec(sbx, n, "for u in olda oldb cur; do mkdir -p /local/.docker/$u/overlay2 && echo x > /local/.docker/$u/overlay2/l; done");
    // A root session stays up through the run (labfleet logs in as root here); olda's forgotten job on node2 and
    // cur's job are running too.
    Exec(sbx, "node1", "nohup setsid sleep 600 >/dev/null 2>&1 & sleep 0.2; pgrep -x sleep >/dev/null");
    Exec(sbx, "node2", "nohup setsid runuser -u olda -- sleep 600 >/dev/null 2>&1 & "
                       "nohup setsid runuser -u cur -- sleep 600 >/dev/null 2>&1 & sleep 0.3; "
                       "pgrep -u 2301 >/dev/null && pgrep -u 2303 >/dev/null");

    // Dry run: which accounts, what each node would do; nothing changes.
    auto dry = Cli(sbx, inv.dir(), {"run", "semester-end", "--format", "json"});
    INFO(dry.out << dry.err);
    REQUIRE(dry.rc == 0);
    auto d = dry.json();
    CHECK(d["playbook"]["dry_run"] == true);
    CHECK(d["steps"][1]["notes"][0] == "lock 2 accounts: olda (expires 2024-01-31), oldb (expires 2024-06-30)");
    CHECK(StepStatuses(d, "lock expired accounts") == "node1=planned node2=planned node3=planned");
    CHECK(StepStatuses(d, "end the sessions of expired accounts") == "node1=unchanged node2=planned node3=unchanged");
    CHECK(d["steps"][3]["nodes"][1]["detail"] == "would end the processes of olda (1)");
    CHECK(Has(d["steps"][5]["nodes"][0]["changes"].dump(), "user olda (deleted: remove: archive; home /home/olda archived to"));
    CHECK(StepStatuses(d, "snapshot the homes") == "node3=planned");
    CHECK(d["steps"][4]["nodes"][0]["detail"] == "would snapshot: olda; no home and no snapshot (nothing of theirs is deleted): oldb");
    CHECK(StepStatuses(d, "delete homes and docker data") == "node1=planned node2=planned node3=planned");
    CHECK(Has(d["steps"][6]["nodes"][2]["changes"].dump(), "- /srv/btrfs/home/olda (olda, "));
    CHECK(Has(d["steps"][6]["nodes"][0]["changes"].dump(), "- /local/.docker/oldb (oldb, "));
    CHECK(sbx.exec("node2", "pgrep -u 2301 >/dev/null").exit_code == 0);
    CHECK(sbx.exec("node3", "test -d /srv/btrfs/snapshots").exit_code != 0);
    // A week ahead: the dry run as of 7 days later also lists soon; a run cannot pretend it is later.
    auto ahead = Cli(sbx, inv.dir(), {"run", "semester-end", "--within", "7", "--format", "json"});
    INFO(ahead.out << ahead.err);
    CHECK(ahead.rc == 0);
    CHECK(ahead.json()["steps"][1]["notes"][0] ==
          "lock 3 accounts: olda (expires 2024-01-31), oldb (expires 2024-06-30), soon (expires " +
              labfleet::DateOfDays(labfleet::TodayDays() + 3) + ")");
    CHECK(ahead.json()["playbook"]["as_of"] == labfleet::DateOfDays(labfleet::TodayDays() + 7));
    // ... with each home's size and last login per node, as CSV too (checked against du and lastlog in the node)
    Exec(sbx, "node2", "lastlog -S -u olda");
    const std::string csv = (inv.root / "expiring.csv").string();
    auto listed = Cli(sbx, inv.dir(), {"run", "semester-end", "--within", "7", "--csv", csv});
    INFO(listed.out << listed.err);
    CHECK(listed.rc == 0);
    CHECK(Has(listed.out, "step 1/7 list expired accounts (accounts): dry-run"));
    CHECK(Has(listed.out, "  node1: listed — 3 accounts on this node\n    = olda: home /home/olda, "));
    const std::string text = labfleet::testing::ReadFile(csv);
    CHECK(std::filesystem::status(csv).permissions() ==
          (std::filesystem::perms::owner_read | std::filesystem::perms::owner_write));
    CHECK(text.rfind("node,user,expires,home,home_kib,last_login\r\n", 0) == 0);
    CHECK(std::count(text.begin(), text.end(), '\n') == 10);  // header + 3 accounts x 3 nodes
    for (const std::string n : {"node1", "node2", "node3"}) {
      CAPTURE(n);
      const std::string kib = Exec(sbx, n, "du -sxk /home/olda | cut -f1 | tr -d '\\n'");
      CHECK(Has(text, "\"" + n + "\",\"olda\",\"2024-01-31\",\"/home/olda\",\"" + kib + "\",\"" +
                          (n == "node2" ? "" : "never\"")));
    }
    const std::string year = labfleet::DateOfDays(labfleet::TodayDays()).substr(0, 4);
    CHECK(std::regex_search(text, std::regex("\"node2\",\"olda\",[^\n]*,\"[^\"]*[A-Z][a-z]{2} [A-Z][a-z]{2} [0-9]+ [0-9:]{8} [+-][0-9]{4} " + year + "\"\r\n")));
    CHECK(Cli(sbx, inv.dir(), {"run", "semester-end", "--within", "7", "--yes"}).rc == 3);
    CHECK(Exec(sbx, "node1", "getent passwd olda | cut -d: -f3") == "2301\n");
    CHECK(sbx.exec("node1", "ls -A /var/backups/homes 2>/dev/null | grep -q .").exit_code != 0);

    // The run.
    auto run = Cli(sbx, inv.dir(), {"run", "semester-end", "--yes", "--allow-dirty", "--format", "json"});
    INFO(run.out << run.err);
    CHECK(run.rc == 0);
    auto r = run.json();
    CHECK(r["result"]["ok"] == true);
    CHECK(StepStatuses(r, "list expired accounts") == "node1=listed node2=listed node3=listed");
    CHECK(StepStatuses(r, "lock expired accounts") == "node1=changed node2=changed node3=changed");
    CHECK(StepStatuses(r, "end the sessions of expired accounts") == "node1=unchanged node2=changed node3=unchanged");
    CHECK(StepStatuses(r, "archive homes and delete accounts") == "node1=changed node2=changed node3=changed");
    CHECK(StepStatuses(r, "snapshot the homes") == "node3=changed");
    CHECK(StepStatuses(r, "delete homes and docker data") == "node1=changed node2=changed node3=changed");
    // The snapshot, checked with btrfs and read back; the homes on the storage server and the Docker data.
    const std::string snap = "/srv/btrfs/snapshots/homes-" + labfleet::DateOfDays(labfleet::TodayDays()) + "/olda";
    CHECK(Has(Exec(sbx, "node3", "btrfs subvolume show " + snap), "Flags:"));
    CHECK(Exec(sbx, "node3", "btrfs property get -ts " + snap + " ro") == "ro=true\n");
    CHECK(Exec(sbx, "node3", "cat " + snap + "/data/model.txt") == "weights v3\n");
    CHECK(Exec(sbx, "node3", "readlink " + snap + "/link") == "/etc/shadow\n");
    CHECK(Exec(sbx, "node3", "ls /srv/btrfs/snapshots/homes-*") == "olda\n");  // oldb has no home there: no snapshot
    CHECK(sbx.exec("node3", "test ! -e /srv/btrfs/home/olda && test -f /srv/btrfs/home/cur/notes.txt").exit_code == 0);
    for (const std::string n : {"node1", "node2", "node3"}) {
      CAPTURE(n);
      CHECK(Exec(sbx, n, "ls /local/.docker") == "cur\n");  // oldb's too: its home was archived on every node
    }
    CHECK(sbx.exec("node2", "pgrep -u 2301 >/dev/null").exit_code != 0);  // olda's job ended
    CHECK(sbx.exec("node2", "pgrep -u 2303 >/dev/null").exit_code == 0);  // cur's job runs on
    for (const std::string n : {"node1", "node2", "node3"}) {
      CAPTURE(n);
      CHECK(sbx.exec(n, "getent passwd olda").exit_code == 2);
      CHECK(sbx.exec(n, "getent passwd oldb").exit_code == 2);
      CHECK(sbx.exec(n, "test ! -e /home/olda && test ! -e /home/oldb").exit_code == 0);
      CHECK(Exec(sbx, n, "getent passwd cur | cut -d: -f3,6") == "2303:/home/cur\n");
      CHECK(Exec(sbx, n, "getent passwd staff | cut -d: -f3") == "2304\n");
      CHECK(Exec(sbx, n, "getent passwd soon | cut -d: -f3") == "2305\n");
      CHECK(Exec(sbx, n, "test -d /home/soon && echo yes") == "yes\n");
      CHECK(Exec(sbx, n, "test -d /home/cur && echo yes") == "yes\n");
      CHECK(sbx.exec(n, "pwck -r").exit_code == 0);
      CHECK(sbx.exec(n, "grpck -r").exit_code == 0);
      std::string archives = Exec(sbx, n, "ls /var/backups/homes");
      CHECK(std::regex_match(archives, std::regex("olda-2301-[0-9]{8}T[0-9]{6}Z\\.tar\\.gz\noldb-2302-[0-9]{8}T[0-9]{6}Z\\.tar\\.gz\n")));
      std::string olda = "/var/backups/homes/" + archives.substr(0, archives.find('\n'));
      CHECK(Exec(sbx, n, "stat -c '%a %U' " + olda) == "600 root\n");
      CHECK(Exec(sbx, n, "tar -xzOf " + olda + " olda/data/log.txt") == "epoch 12\n");
    }
    CHECK(sbx.exec("node1", "pgrep -x sleep >/dev/null").exit_code == 0);  // the root session survived

    // A rerun changes nothing: the accounts are gone, the lock step creates nothing.
    auto again = Cli(sbx, inv.dir(), {"run", "semester-end", "--yes", "--allow-dirty", "--format", "json"});
    INFO(again.out << again.err);
    CHECK(again.rc == 0);
    CHECK(StepStatuses(again.json(), "lock expired accounts") == "node1=unchanged node2=unchanged node3=unchanged");
    CHECK(StepStatuses(again.json(), "archive homes and delete accounts") == "node1=unchanged node2=unchanged node3=unchanged");
    CHECK(StepStatuses(again.json(), "snapshot the homes") == "node3=unchanged");
    CHECK(again.json()["steps"][4]["nodes"][0]["detail"] ==
          "snapshot there already, checked: olda; no home and no snapshot (nothing of theirs is deleted): oldb");
    CHECK(StepStatuses(again.json(), "delete homes and docker data") == "node1=unchanged node2=unchanged node3=unchanged");
    CHECK(Exec(sbx, "node3", "ls /srv/btrfs/snapshots/homes-*") == "olda\n");
    for (const std::string n : {"node1", "node2", "node3"}) CHECK(sbx.exec(n, "getent passwd olda").exit_code == 2);

    // The inventory says what was done: a plan of it is empty.
    users(", remove: archive");
    auto plan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 0);
  }

  TEST_CASE("semester-end: a snapshot that fails deletes nothing; data of an account without a snapshot is kept") {
    Sandbox sbx({.nodes = 2, .btrfs_mb = 64});
    TempInventory inv(sbx, "labfleet-pb-snapfail");
    inv.write("inventory/lab.yaml", "lab:\n  name: sem\n  defaults:\n"
                                    "    rootless_docker: { data_root: \"/local/.docker/{{user}}\" }\n");
    inv.write("inventory/users.yaml", "users:\n  olda: { uid: 2301, expires: 2024-01-31 }\n"
                                      "  oldc: { uid: 2306, expires: 2024-02-28 }\n  cur: { uid: 2303 }\n");
    inv.write("playbooks/end.yaml",
              "steps:\n"
              "  - { name: snapshot, nodes: node2, accounts: snapshot, users: expired, homes: /srv/btrfs/home,"
              " to: /srv/btrfs/snapshots, keep: 1 }\n"
              "  - { name: delete, accounts: delete_data, users: expired, homes: /srv/btrfs/home }\n");
    Exec(sbx, "node2", "mkdir -p /srv/btrfs/home/olda /srv/btrfs/snapshots/homes-2020-01-01 && echo a > /srv/btrfs/home/olda/a && "
                       "btrfs subvolume create /srv/btrfs/snapshots/homes-2020-01-01/gone >/dev/null");
    for (const std::string n : {"node1", "node2"})
      Exec(sbx, n, "for u in olda oldc cur; do mkdir -p /local/.docker/$u && echo x > /local/.docker/$u/f; done");

    // A user can write to the snapshot directory: the snapshot is refused and the run stops before the delete.
    Exec(sbx, "node2", "chmod 0777 /srv/btrfs/snapshots");
    auto bad = Cli(sbx, inv.dir(), {"run", "end", "--yes", "--allow-dirty", "--format", "json"});
    INFO(bad.out << bad.err);
    CHECK(bad.rc == 4);
    auto b = bad.json();
    CHECK(StepStatuses(b, "snapshot") == "node2=failed");
    CHECK(Has(b["steps"][0]["nodes"][0]["detail"].get<std::string>(), "a user can change /srv/btrfs/snapshots"));
    CHECK(b["steps"][1]["status"] == "not-started");
    CHECK(sbx.exec("node2", "test -f /srv/btrfs/home/olda/a && test ! -e /srv/btrfs/snapshots/homes-" +
                                labfleet::DateOfDays(labfleet::TodayDays())).exit_code == 0);
    for (const std::string n : {"node1", "node2"}) CHECK(Exec(sbx, n, "ls /local/.docker") == "cur\nolda\noldc\n");

    // Fixed: olda's home is snapshotted (keep: 1 prunes 2020's), then deleted with olda's Docker data; oldc has
    // no home and no snapshot: nothing of oldc's is deleted.
    Exec(sbx, "node2", "chmod 0755 /srv/btrfs/snapshots");
    auto good = Cli(sbx, inv.dir(), {"run", "end", "--yes", "--allow-dirty", "--format", "json"});
    INFO(good.out << good.err);
    CHECK(good.rc == 0);
    auto g = good.json();
    CHECK(StepStatuses(g, "delete") == "node1=changed node2=changed");
    CHECK(Has(g["steps"][1]["nodes"][0]["detail"].get<std::string>(),
              "kept (no snapshot or archive of theirs checked in this run): oldc"));
    CHECK(Has(g["steps"][0]["nodes"][0]["detail"].get<std::string>(), "pruned homes-2020-01-01"));
    CHECK(Exec(sbx, "node2", "ls /srv/btrfs/snapshots") == "homes-" + labfleet::DateOfDays(labfleet::TodayDays()) + "\n");
    CHECK(Exec(sbx, "node2", "cat /srv/btrfs/snapshots/homes-*/olda/a") == "a\n");
    CHECK(sbx.exec("node2", "test ! -e /srv/btrfs/home/olda").exit_code == 0);
    for (const std::string n : {"node1", "node2"}) CHECK(Exec(sbx, n, "ls /local/.docker") == "cur\noldc\n");
  }

  TEST_CASE("lock with a directory: an expired directory account gets shadowExpire 1 in slapd, a local one usermod -e 1") {
    Sandbox sbx({.nodes = 1});
    MustExec(sbx, "node1", SlapdSetup());
    TempInventory inv(sbx, "labfleet-pb-dir");
    inv.write("inventory/lab.yaml",
              "lab:\n  name: t\n  accounts: directory\n"
              "  directory: { server: node1, base: \"dc=lab,dc=example\", uri: \"ldaps://ldap.lab.example\" }\n"
              "users:\n"
              "  olda: { uid: 2301, expires: 2024-01-31 }\n"
              "  cur: { uid: 2303, expires: 2099-12-31 }\n"
              "  loca: { uid: 2304, accounts: local, expires: 2024-02-29 }\n");
    inv.write("playbooks/lock.yaml", "steps:\n  - { name: lock expired accounts, accounts: lock, users: expired }\n");
    auto created = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(created.out << created.err);
    REQUIRE(created.rc == 0);
    auto expire = [&](const std::string& user) {
      return Exec(sbx, "node1", "ldapsearch -Q -Y EXTERNAL -H ldapi:/// -LLL -o ldif-wrap=no -s base -b "
                                "uid=" + user + ",ou=people,dc=lab,dc=example shadowExpire | grep '^shadowExpire'");
    };
    CHECK(expire("olda") == "shadowExpire: " + std::to_string(*labfleet::DaysOfDate("2024-01-31")) + "\n");
    CHECK(sbx.exec("node1", "grep -q '^olda:' /etc/passwd").exit_code != 0);  // no local account to usermod

    auto run = Cli(sbx, inv.dir(), {"run", "lock", "--yes", "--allow-dirty", "--format", "json"});
    INFO(run.out << run.err);
    CHECK(run.rc == 0);
    CHECK(StepStatuses(run.json(), "lock expired accounts") == "node1=changed");
    CHECK(expire("olda") == "shadowExpire: 1\n");
    CHECK(expire("cur") == "shadowExpire: " + std::to_string(*labfleet::DaysOfDate("2099-12-31")) + "\n");
    CHECK(Exec(sbx, "node1", "getent shadow loca | cut -d: -f8") == "1\n");

    auto again = Cli(sbx, inv.dir(), {"run", "lock", "--yes", "--allow-dirty", "--format", "json"});
    INFO(again.out << again.err);
    CHECK(again.rc == 0);
    CHECK(StepStatuses(again.json(), "lock expired accounts") == "node1=unchanged");
    CHECK(expire("olda") == "shadowExpire: 1\n");
  }

  TEST_CASE("without end_sessions, archive is refused while an expired user runs a process: nothing of theirs is deleted") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-pb-busy");
    inv.write("inventory/lab.yaml", "lab:\n  name: sem\n  home_archive: /var/backups/homes\n");
    inv.write("inventory/users.yaml", "users:\n  olda: { uid: 2301, expires: 2024-01-31 }\n");
    inv.write("playbooks/semester-end.yaml",
              "steps:\n"
              "  - { name: lock expired accounts, accounts: lock, users: expired }\n"
              "  - { name: archive homes and delete accounts, accounts: archive, users: expired }\n");
    REQUIRE(Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"}).rc == 0);
    Exec(sbx, "node1", "nohup setsid runuser -u olda -- sleep 300 >/dev/null 2>&1 & sleep 0.2; pgrep -u 2301 >/dev/null");
    auto run = Cli(sbx, inv.dir(), {"run", "semester-end", "--yes", "--allow-dirty"});
    INFO(run.out << run.err);
    CHECK(run.rc == 4);
    CHECK(Has(run.out, "user olda has running processes (pgrep -u 2301)"));
    CHECK(Has(run.out, "stopped at step 'archive homes and delete accounts'"));
    CHECK(Exec(sbx, "node1", "getent passwd olda | cut -d: -f3") == "2301\n");
    CHECK(Exec(sbx, "node1", "getent shadow olda | cut -d: -f8") == "1\n");  // locked by the first step
    CHECK(sbx.exec("node1", "test -d /home/olda").exit_code == 0);
    CHECK(sbx.exec("node1", "ls -A /var/backups/homes 2>/dev/null | grep -q .").exit_code != 0);
  }

  TEST_CASE("upgrade: a node with a GPU job is left out and listed; the idle nodes run the command once") {
    Sandbox sbx({.nodes = 3});
    TempInventory inv(sbx, "labfleet-pb-up");
    inv.defaults("    busy: { device_glob: \"/dev/shm/lf-gpu[0-9]*\" }\n");
    inv.write("playbooks/up.yaml",
              "description: test upgrade\n"
              "steps:\n"
              "  - { name: idle, wait_idle: true }\n"
              "  - name: upgrade\n"
              "    command: [sh, -c, \"date +%s%N > /var/tmp/lf-upgraded; echo upgraded\"]\n"
              "    creates: /var/tmp/lf-upgraded\n"
              "    batch: 1\n");
    inv.write("playbooks/upgrade.yaml", Shipped("upgrade"));
    // The GPU job: a user's process holding a stand-in GPU device file open.
    MustExec(sbx, "node2",
             "useradd -u 2050 -M -s /bin/sh trainee && : > /dev/shm/lf-gpu0 && "
             "setsid setpriv --reuid 2050 --regid 2050 --clear-groups sleep 600 3</dev/shm/lf-gpu0 "
             ">/dev/null 2>&1 </dev/null &");
    MustExec(sbx, "node2", "for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -u 2050 -x sleep && break; sleep 0.2; done");

    auto dry = Cli(sbx, inv.dir(), {"run", "upgrade"});
    INFO(dry.out << dry.err);
    CHECK(dry.rc == 0);
    CHECK(Has(dry.out, "  node2: skipped — busy: 1 GPU job running (trainee: pid "));
    CHECK(Has(dry.out, "a run would leave it out"));
    CHECK(Has(dry.out, "Dry run of playbook upgrade (5 steps): nothing is changed; --yes runs it\n"
                       "  upgrade packages on idle nodes, one at a time, with holds kept\n"));
    CHECK(Has(dry.out, "  node1: would-run — sh -c if command -v apt-get"));
    CHECK(Has(dry.out, "step 5/5 reboot where needed (reboot): dry-run\n"
                       "  without --reboot: the nodes that need a reboot are listed, none is rebooted\n"));
    CHECK(Has(dry.out, "  node1: unchanged — no reboot needed\n  node2: unchanged — no reboot needed\n"));

    auto run = Cli(sbx, inv.dir(), {"run", "up", "--yes", "--allow-dirty", "--format", "json"});
    INFO(run.out << run.err);
    CHECK(run.rc == 0);
    auto r = run.json();
    CHECK(StepStatuses(r, "idle") == "node1=idle node2=skipped node3=idle");
    CHECK(StepStatuses(r, "upgrade") == "node1=changed node3=changed");
    REQUIRE(r["result"]["skipped_nodes"].size() == 1);
    CHECK(Has(r["result"]["skipped_nodes"][0].get<std::string>(), "node2 (busy: 1 GPU job running (trainee"));
    CHECK(sbx.exec("node2", "test -e /var/tmp/lf-upgraded").exit_code != 0);
    std::string first = Exec(sbx, "node1", "cat /var/tmp/lf-upgraded");
    CHECK(sbx.exec("node3", "test -e /var/tmp/lf-upgraded").exit_code == 0);
    CHECK(sbx.exec("node2", "pgrep -u 2050 -x sleep >/dev/null").exit_code == 0);  // the job was left alone

    // The job ends; a rerun upgrades node2 and leaves the others (creates: guard).
    MustExec(sbx, "node2", "pkill -u 2050; for i in $(seq 50); do pgrep -u 2050 >/dev/null || break; sleep 0.1; done");
    auto again = Cli(sbx, inv.dir(), {"run", "up", "--yes", "--allow-dirty", "--format", "json"});
    INFO(again.out << again.err);
    CHECK(again.rc == 0);
    CHECK(StepStatuses(again.json(), "upgrade") == "node1=unchanged node2=changed node3=unchanged");
    CHECK(Exec(sbx, "node1", "cat /var/tmp/lf-upgraded") == first);

    // Another admin's apply holds node1's lock: the command does not run there (commands take the node lock).
    MustExec(sbx, "node1", "rm /var/tmp/lf-upgraded && "
                           "printf 'run=other\\nwho=alice@laptop\\nhost=laptop\\npid=4242\\nsince=1\\n' > /run/labfleet.lock");
    auto locked = Cli(sbx, inv.dir(), {"run", "up", "--yes", "--allow-dirty"});
    INFO(locked.out << locked.err);
    CHECK(locked.rc == 4);
    CHECK(Has(locked.out, "  node1: failed — node node1 is locked by alice@laptop"));
    CHECK(sbx.exec("node1", "test -e /var/tmp/lf-upgraded").exit_code != 0);
    CHECK(Has(Exec(sbx, "node1", "cat /run/labfleet.lock"), "who=alice@laptop"));  // the holder's lock stays
    MustExec(sbx, "node1", "rm /run/labfleet.lock");
    auto free = Cli(sbx, inv.dir(), {"run", "up", "--yes", "--allow-dirty"});
    INFO(free.out << free.err);
    CHECK(free.rc == 0);
    CHECK(sbx.exec("node1", "test -e /var/tmp/lf-upgraded && test ! -e /run/labfleet.lock").exit_code == 0);
  }

  TEST_CASE("upgrade --reboot: a busy node is not rebooted; a node that does not come back stops the rollout") {
    Sandbox sbx({.nodes = 3});
    TempInventory inv(sbx, "labfleet-pb-reboot");
    inv.defaults("    busy: { device_glob: \"/dev/shm/lf-gpu[0-9]*\" }\n");
    inv.write("playbooks/rb.yaml", "steps:\n  - { name: reboot where needed, reboot: when_required, timeout: 10s }\n");
    for (const std::string n : {"node1", "node2", "node3"}) {
      InstallDoubles(sbx, n, {"reboot"});
      MustExec(sbx, n, "touch /run/reboot-required");
    }
    // node1 runs a GPU job (a process holding a stand-in GPU device file open).
    MustExec(sbx, "node1",
             "useradd -u 2050 -M -s /bin/sh trainee && : > /dev/shm/lf-gpu0 && "
             "setsid setpriv --reuid 2050 --regid 2050 --clear-groups sleep 600 3</dev/shm/lf-gpu0 "
             ">/dev/null 2>&1 </dev/null &");
    MustExec(sbx, "node1", "for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -u 2050 -x sleep && break; sleep 0.2; done");

    // Without --reboot: listed, nothing rebooted.
    auto listed = Cli(sbx, inv.dir(), {"run", "rb", "--yes", "--allow-dirty", "--format", "json"});
    INFO(listed.out << listed.err);
    CHECK(listed.rc == 0);
    CHECK(StepStatuses(listed.json(), "reboot where needed") == "node1=pending node2=pending node3=pending");
    for (const std::string n : {"node1", "node2", "node3"}) CHECK(CountCalls(DoubleCalls(sbx, n), "reboot") == 0);

    // --reboot: node1 is busy (left alone); node2 is rebooted, but a sandbox node's boot id never changes (it
    // shares the host's kernel; the reboot stand-in only records the call): node2 fails after the timeout and
    // node3, the next batch, is never rebooted.
    auto run = Cli(sbx, inv.dir(), {"run", "rb", "--yes", "--reboot", "--allow-dirty", "--format", "json"});
    INFO(run.out << run.err);
    CHECK(run.rc == 4);
    auto r = run.json();
    CHECK(StepStatuses(r, "reboot where needed") == "node1=skipped node2=failed node3=not-started");
    CHECK(Has(r["steps"][0]["nodes"][0]["detail"].get<std::string>(), "1 GPU job running (trainee"));
    CHECK(r["steps"][0]["nodes"][1]["detail"] ==
          "rebooted, but it did not come back with a new boot id within 10 s (still the old boot id)");
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "reboot") == 0);
    CHECK(CountCalls(DoubleCalls(sbx, "node2"), "reboot") == 1);
    CHECK(CountCalls(DoubleCalls(sbx, "node3"), "reboot") == 0);
    CHECK(sbx.exec("node2", "test ! -e /run/labfleet.lock").exit_code == 0);  // the lock was released
    CHECK(sbx.exec("node1", "pgrep -u 2050 -x sleep >/dev/null").exit_code == 0);  // the job runs on
  }

  TEST_CASE("reboot on restartable sandbox nodes: each comes back, is checked, and a failed check stops the rollout") {
    // --btrfs-root nodes can be restarted (Sandbox::restart: the node's init and everything in it start again;
    // the kernel, and so its boot id, stays the host's, PID 1's start time is new). The test plays the machine:
    // when a node's reboot stand-in has been called, it restarts that node.
    Sandbox sbx({.nodes = 3, .btrfs_mb = 64, .btrfs_root = true});
    TempInventory inv(sbx, "labfleet-pb-restart");
    // Every node should show 2 GPUs and run docker: the checks after the restart ask the node's own nvidia-smi
    // and systemctl (stand-ins in /usr/local/sbin and their state in /var/lib, both in @: they survive it).
    std::string nodes = sbx.nodes_yaml();
    for (const std::string n : {"node1", "node2", "node3"}) {
      auto at = nodes.find(n + ": { ");
      REQUIRE(at != std::string::npos);
      nodes.insert(at + n.size() + 4, "gpus: 2, ");
    }
    inv.write("inventory/nodes.yaml", nodes);
    inv.defaults("    docker: { data_root: /local/.docker }\n");
    inv.write("playbooks/rb.yaml",
              "steps:\n  - { name: reboot, reboot: when_required, timeout: 2m, health: [test, -e, /etc/lf-healthy] }\n");
    const std::string two_gpus =
        "index,name,uuid,driver_version,persistence_mode,pci.bus_id\n"
        "0,NVIDIA A100-SXM4-80GB,GPU-aaaa,535.104.05,Enabled,00000000:07:00.0\n"
        "1,NVIDIA A100-SXM4-80GB,GPU-bbbb,535.104.05,Enabled,00000000:0F:00.0\n";
    for (const std::string n : {"node1", "node2", "node3"}) {
      InstallDoubles(sbx, n, {"reboot", "nvidia-smi", "systemctl"});
      SeedGpus(sbx, n, two_gpus);
      SeedUnit(sbx, n, "docker.service", "enabled", "active");
      MustExec(sbx, n, "touch /run/reboot-required");  // /run is gone after the restart, as on a machine
    }
    // node2 comes back with one GPU lost (the failure a reboot after a driver upgrade shows) and docker down.
    SeedGpus(sbx, "node2", two_gpus.substr(0, two_gpus.rfind("1,NVIDIA")));
    SeedUnit(sbx, "node2", "docker.service", "enabled", "failed");
    MustExec(sbx, "node1", "touch /etc/lf-healthy");  // node2 and node3 fail the health check once back
    MustExec(sbx, "node3", "touch /etc/lf-healthy");
    // Runs labfleet while playing the machine: a node whose reboot stand-in was called is restarted, once.
    std::vector<std::string> restarted;
    auto run_with_machine = [&] {
      std::atomic<bool> done{false};
      std::thread machine([&] {
        while (!done.load()) {
          for (const std::string n : {"node1", "node2", "node3"}) {
            if (std::find(restarted.begin(), restarted.end(), n) != restarted.end()) continue;
            if (sbx.exec(n, "grep -qx reboot /var/log/labfleet-doubles.log").exit_code == 0) {
              restarted.push_back(n);
              try {
                sbx.restart(n);
              } catch (const std::exception& e) {
                restarted.push_back(std::string("restart failed: ") + e.what());
              }
            }
          }
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
        }
      });
      auto res = Cli(sbx, inv.dir(), {"run", "rb", "--yes", "--reboot", "--allow-dirty", "--format", "json"});
      done = true;
      machine.join();
      return res;
    };
    auto run = run_with_machine();
    INFO(run.out << run.err);
    CHECK(run.rc == 4);
    auto r = run.json();
    CHECK(StepStatuses(r, "reboot") == "node1=changed node2=failed node3=not-started");
    CHECK(r["steps"][0]["nodes"][0]["detail"] == "rebooted and back; checked: 2 GPUs, docker active, health check passed");
    CHECK(r["steps"][0]["nodes"][1]["detail"] ==
          "rebooted and back; check failed: 1 GPUs visible, the inventory says 2; docker is failed; "
          "health check test -e /etc/lf-healthy failed (exit 1)");
    CHECK(restarted == std::vector<std::string>{"node1", "node2"});  // node3 was never rebooted
    CHECK(sbx.exec("node1", "test ! -e /run/reboot-required").exit_code == 0);
    CHECK(sbx.exec("node3", "test -e /run/reboot-required").exit_code == 0);
    // A rerun: node1 and node2 need no reboot any more, node3 is next.
    MustExec(sbx, "node2", "touch /etc/lf-healthy");
    SeedGpus(sbx, "node2", two_gpus);
    SeedUnit(sbx, "node2", "docker.service", "enabled", "active");
    auto again = run_with_machine();
    INFO(again.out << again.err);
    CHECK(again.rc == 0);
    CHECK(StepStatuses(again.json(), "reboot") == "node1=unchanged node2=unchanged node3=changed");
    CHECK(restarted == std::vector<std::string>{"node1", "node2", "node3"});
  }

  TEST_CASE("rolling apply: the health check fails on the second batch; the third node is never applied") {
    Sandbox sbx({.nodes = 3});
    TempInventory inv(sbx, "labfleet-pb-roll");
    inv.defaults("    files:\n      - { path: /etc/lf-motd, content: \"v2\\n\", mode: \"0644\" }\n");
    inv.write("playbooks/roll.yaml",
              "steps:\n"
              "  - name: roll\n"
              "    apply: [files]\n"
              "    batch: 1\n"
              "    health: [sh, -c, \"! test -e /etc/lf-broken\"]\n");
    MustExec(sbx, "node2", "touch /etc/lf-broken");
    auto run = Cli(sbx, inv.dir(), {"run", "roll", "--yes", "--allow-dirty", "--format", "json"});
    INFO(run.out << run.err);
    CHECK(run.rc == 4);
    auto r = run.json();
    CHECK(r["result"]["ok"] == false);
    CHECK(r["result"]["stopped_at"] == "roll");
    CHECK(StepStatuses(r, "roll") == "node1=changed node2=failed node3=not-started");
    CHECK(Has(r["steps"][0]["nodes"][1]["detail"].get<std::string>(), "health check sh -c ! test -e /etc/lf-broken failed (exit 1)"));
    CHECK(Exec(sbx, "node1", "cat /etc/lf-motd") == "v2\n");
    CHECK(Exec(sbx, "node2", "cat /etc/lf-motd") == "v2\n");  // applied, then found unhealthy
    CHECK(sbx.exec("node3", "test -e /etc/lf-motd").exit_code != 0);
    // node1 recorded its step; node2 (unhealthy) did not.
    CHECK(Has(Exec(sbx, "node1", "cat /var/lib/labfleet/playbooks/roll.progress"), "done=0\n"));
    CHECK(sbx.exec("node2", "test -e /var/lib/labfleet/playbooks/roll.progress").exit_code != 0);

    // Fixed; --resume: node1's step is skipped (its record says done), node2 is checked again, node3 applied.
    MustExec(sbx, "node2", "rm /etc/lf-broken");
    auto resumed = Cli(sbx, inv.dir(), {"run", "roll", "--yes", "--allow-dirty", "--resume", "--format", "json"});
    INFO(resumed.out << resumed.err);
    CHECK(resumed.rc == 0);
    CHECK(StepStatuses(resumed.json(), "roll") == "node1=done-earlier node2=unchanged node3=changed");
    CHECK(Exec(sbx, "node3", "cat /etc/lf-motd") == "v2\n");
    // The run finished: no record is left on any node.
    for (const std::string n : {"node1", "node2", "node3"})
      CHECK(sbx.exec(n, "test -e /var/lib/labfleet/playbooks/roll.progress").exit_code != 0);
  }

  TEST_CASE("the shipped rolling-apply: batches of 2 with the health check, then a plan of the fleet is empty") {
    Sandbox sbx({.nodes = 3});
    TempInventory inv(sbx, "labfleet-pb-ship");
    inv.defaults("    files:\n      - { path: /etc/lf-daemon.json, content: \"{}\\n\", mode: \"0644\" }\n");
    inv.write("playbooks/rolling-apply.yaml", Shipped("rolling-apply"));
    // The sandbox nodes have the docker CLI but no engine: the docker stand-in answers the health check.
    for (const std::string n : {"node1", "node2", "node3"}) InstallDoubles(sbx, n, {"docker"});
    auto dry = Cli(sbx, inv.dir(), {"run", "rolling-apply", "--format", "json"});
    INFO(dry.out << dry.err);
    CHECK(dry.rc == 0);
    CHECK(StepStatuses(dry.json(), "apply in batches") == "node1=planned node2=planned node3=planned");
    CHECK(sbx.exec("node1", "test -e /etc/lf-daemon.json").exit_code != 0);
    auto run = Cli(sbx, inv.dir(), {"run", "rolling-apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(run.out << run.err);
    CHECK(run.rc == 0);
    auto r = run.json();
    CHECK(StepStatuses(r, "apply in batches") == "node1=changed node2=changed node3=changed");
    CHECK(r["steps"][0]["notes"] == nlohmann::json::array({"batch 1/2 (2 nodes): ok", "batch 2/2 (1 node): ok"}));
    for (const std::string n : {"node1", "node2", "node3"}) {
      CHECK(Exec(sbx, n, "cat /etc/lf-daemon.json") == "{}\n");
      CHECK(CountCalls(DoubleCalls(sbx, n), "docker info") == 1);  // the health check ran once per node
    }
    auto plan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 0);
  }

  TEST_CASE("snapshot: read-only btrfs snapshots checked and pruned to keep; a failed snapshot stops the run") {
    Sandbox sbx({.nodes = 1, .btrfs_mb = 128});
    TempInventory inv(sbx, "labfleet-pb-snap");
    inv.write("inventory/lab.yaml", "lab: { name: t }\n");
    inv.write("playbooks/snap.yaml",
              "steps:\n"
              "  - { name: snap, snapshot: /srv/btrfs/home, to: /srv/btrfs/snapshots, keep: 2 }\n"
              "  - { name: after, command: [touch, /var/tmp/lf-after] }\n");
    MustExec(sbx, "node1", "btrfs subvolume create /srv/btrfs/home >/dev/null && mkdir /srv/btrfs/home/olda && "
                           "printf 'epoch 12\\n' > /srv/btrfs/home/olda/log.txt && mkdir /srv/btrfs/plain");
    std::vector<std::string> names;
    for (int i = 0; i < 3; ++i) {
      if (i) MustExec(sbx, "node1", "sleep 1.1");  // one snapshot a second
      if (i == 2) {
        auto dry = Cli(sbx, inv.dir(), {"run", "snap"});
        INFO(dry.out << dry.err);
        CHECK(dry.rc == 0);
        CHECK(Has(dry.out, "  node1: planned — would snapshot /srv/btrfs/home as /srv/btrfs/snapshots/home-<UTC time>; "
                           "would prune " + names[0] + "\n"));
      }
      auto run = Cli(sbx, inv.dir(), {"run", "snap", "--yes", "--allow-dirty", "--format", "json"});
      INFO(run.out << run.err);
      REQUIRE(run.rc == 0);
      std::string detail = run.json()["steps"][0]["nodes"][0]["detail"];
      std::smatch m;
      REQUIRE(std::regex_search(detail, m, std::regex("snapshot /srv/btrfs/snapshots/(home-[0-9]{8}T[0-9]{6}Z) checked")));
      names.push_back(m[1]);
      CHECK(Has(detail, i == 2 ? "; pruned " + names[0] : " checked"));
    }
    // The two newest are kept; each is a read-only subvolume whose file reads back.
    CHECK(Exec(sbx, "node1", "ls /srv/btrfs/snapshots") == names[1] + "\n" + names[2] + "\n");
    for (int i : {1, 2}) {
      const std::string snap = "/srv/btrfs/snapshots/" + names[i];
      CHECK(sbx.exec("node1", "btrfs subvolume show " + snap + " >/dev/null").exit_code == 0);
      CHECK(Exec(sbx, "node1", "btrfs property get -ts " + snap + " ro") == "ro=true\n");
      CHECK(Exec(sbx, "node1", "cat " + snap + "/olda/log.txt") == "epoch 12\n");
    }
    CHECK(sbx.exec("node1", "test -e /var/tmp/lf-after").exit_code == 0);

    // A snapshot that cannot be made (not a subvolume): the step fails and nothing after it runs.
    MustExec(sbx, "node1", "rm /var/tmp/lf-after");
    inv.write("playbooks/bad.yaml",
              "steps:\n"
              "  - { name: snap, snapshot: /srv/btrfs/plain, to: /srv/btrfs/snapshots }\n"
              "  - { name: after, command: [touch, /var/tmp/lf-after] }\n");
    auto bad = Cli(sbx, inv.dir(), {"run", "bad", "--yes", "--allow-dirty"});
    INFO(bad.out << bad.err);
    CHECK(bad.rc == 4);
    CHECK(Has(bad.out, "snapshot of /srv/btrfs/plain failed (exit 1): /srv/btrfs/plain is not a btrfs subvolume"));
    CHECK(sbx.exec("node1", "test -e /var/tmp/lf-after").exit_code != 0);
    CHECK(Exec(sbx, "node1", "ls /srv/btrfs/snapshots") == names[1] + "\n" + names[2] + "\n");

    // A destination a user can change (a world-writable parent: it could be swapped for a link): refused
    // before anything is made or pruned.
    MustExec(sbx, "node1", "mkdir -m 0777 /srv/btrfs/open");
    inv.write("playbooks/open.yaml",
              "steps:\n"
              "  - { name: snap, snapshot: /srv/btrfs/home, to: /srv/btrfs/open/snaps, keep: 1 }\n");
    auto open = Cli(sbx, inv.dir(), {"run", "open", "--yes", "--allow-dirty"});
    INFO(open.out << open.err);
    CHECK(open.rc == 4);
    CHECK(Has(open.out, "a user can change /srv/btrfs/open (d, owner root, mode 777) at or above /srv/btrfs/open/snaps"));
    CHECK(Exec(sbx, "node1", "ls -A /srv/btrfs/open") == "");
  }

  TEST_CASE("validate checks the playbooks next to the inventory, with file:line:col") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-pb-val");
    inv.write("inventory/lab.yaml", "lab: { name: t }\n");
    inv.write("playbooks/ok.yaml", "steps:\n  - { name: a, apply: all }\n");
    auto ok = Cli({"--inventory", inv.dir(), "validate"});
    INFO(ok.out << ok.err);
    CHECK(ok.rc == 0);
    CHECK(Has(ok.out, "1 playbook)"));
    inv.write("playbooks/bad.yaml", "steps:\n  - name: a\n    apply: [dockr]\n  - { name: b, restart: now }\n  - { name: c, reboot: now }\n");
    auto bad = Cli({"--inventory", inv.dir(), "validate"});
    INFO(bad.out << bad.err);
    CHECK(bad.rc == 1);
    const std::string file = (inv.root / "playbooks" / "bad.yaml").string();
    CHECK(Has(bad.err, file + ":2:5: error: step 'a' applies the module 'dockr', which does not exist; did you mean 'docker'?"));
    CHECK(Has(bad.err, file + ":4:5: error: step 2 has no step kind"));
    CHECK(Has(bad.err, file + ":5:24: error: 'reboot' of step 3 must be one of when_required, always, got 'now'"));
    auto refused = Cli(sbx, inv.dir(), {"run", "bad"});
    CHECK(refused.rc == 1);
    CHECK(Has(refused.err, "nothing was run"));
  }
}
