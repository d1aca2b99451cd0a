// The converge engine on real sandbox nodes: apply → independent checks → re-plan empty → one inventory
// change → exactly one change → apply → empty. Plus locks, a node failing mid-apply, hostile values and
// secrets. Independent checks run inside the node (sandbox exec), not over labfleet's own transport.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

// Hostile on purpose: quotes, command substitution, backticks, a glob and a newline must arrive literally.
const std::string kHostileContent = "it's \"quoted\" $(touch /tmp/pwned) `id` * ${HOME}\nsecond line\n";
const std::string kHash = "$6$saltsalt$Yx6n1wGq7Zk6mQ0pE3hXj3bVt0s5k2Jm8u9Qy1rL4cFZpWzN1oA7tH2gD5eB8iK0lM3nO6pR9sU2vX5yZ8aC1";

const char* kLab = R"(lab:
  name: testlab
  templates_dir: ../templates
  defaults:
    vars: { motto: "GPUs are shared" }
    hosts: { 10.0.1.66: [master], 10.0.1.68: [proxy, proxy.lab] }
    files:
      - { path: /etc/motd, template: motd.mustache, mode: "0644" }
      - { path: /etc/labfleet-test/hostile, content: "%HOSTILE%", mode: "0640", owner: root, group: gpu-users }
user_groups:
  gpu-users: { gid: 3000 }
  admins: { gid: 3001 }
)";

std::string Users(const std::string& kpark_shell) {
  return std::string(R"(users:
  yseong:
    uid: 2001
    full_name: "Yeon 'Y' Seong $(id) `x`"
    groups: [gpu-users, admins]
    ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEu9xH1r0Y9sZ3l6w8G3sQkq1Z1f0k8bYt7dGm2yW4cP yseong@laptop"]
    rootless_docker: true
    password_hash: ")") + kHash + R"("
  kpark:
    uid: 2002
    full_name: Kim Park
    groups: [gpu-users]
    shell: )" + kpark_shell + R"(
    ssh_keys: []
)";
}

const char* kMotd = "Welcome to {{node}} ({{lab}}), {{gpus}} GPUs. {{vars.motto}}\n";

void WriteBase(const TempInventory& inv, const std::string& shell = "/bin/bash") {
  std::string lab = kLab;
  std::string escaped;
  for (char c : kHostileContent) {
    if (c == '"') escaped += "\\\"";
    else if (c == '\n') escaped += "\\n";
    else if (c == '\\') escaped += "\\\\";
    else escaped += c;
  }
  lab.replace(lab.find("%HOSTILE%"), 9, escaped);
  inv.write("inventory/lab.yaml", lab);
  inv.write("inventory/users.yaml", Users(shell));
  inv.write("templates/motd.mustache", kMotd);
}

}  // namespace

TEST_SUITE("integration-converge") {
  TEST_CASE("accounts, keys, subids, files and hosts converge, re-plan empty, one change is one change") {
    Sandbox sbx({.nodes = 2});
    TempInventory inv(sbx);
    WriteBase(inv);

    auto plan0 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan0.out << plan0.err);
    REQUIRE(plan0.rc == 2);
    CHECK(plan0.out.find("+ user yseong (uid 2001") != std::string::npos);
    CHECK(plan0.out.find("+ group gpu-users (gid 3000)") != std::string::npos);
    CHECK(plan0.out.find("file /etc/motd") != std::string::npos);

    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply.out << apply.err);
    REQUIRE(apply.rc == 0);
    auto aj = apply.json();
    CHECK(aj["result"]["changed"] == 2);
    CHECK(aj["result"]["failed"] == 0);

    for (const auto& n : sbx.nodes()) {
      CAPTURE(n.name);
      // Independent tools, inside the node.
      CHECK(Exec(sbx, n.name, "getent passwd yseong") ==
            "yseong:x:2001:2001:Yeon 'Y' Seong $(id) `x`:/home/yseong:/bin/bash\n");
      CHECK(Exec(sbx, n.name, "getent group gpu-users") == "gpu-users:x:3000:yseong,kpark\n");
      CHECK(Exec(sbx, n.name, "getent group admins") == "admins:x:3001:yseong\n");
      CHECK(Exec(sbx, n.name, "id -gn kpark") == "kpark\n");
      CHECK(sbx.exec(n.name, "pwck -r").exit_code == 0);
      CHECK(sbx.exec(n.name, "grpck -r").exit_code == 0);
      CHECK(Exec(sbx, n.name, "stat -c '%a %U %G' /home/yseong/.ssh /home/yseong/.ssh/authorized_keys") ==
            "700 yseong yseong\n600 yseong yseong\n");
      CHECK(Exec(sbx, n.name, "cat /home/yseong/.ssh/authorized_keys").find("yseong@laptop") != std::string::npos);
      CHECK(Exec(sbx, n.name, "cat /home/kpark/.ssh/authorized_keys").empty());
      CHECK(Exec(sbx, n.name, "grep '^yseong:' /etc/subuid") == "yseong:65701536:65536\n");
      CHECK(Exec(sbx, n.name, "grep -c '^kpark:' /etc/subuid || true") == "0\n");
      CHECK(Exec(sbx, n.name, "cat /etc/motd") == "Welcome to " + n.name + " (testlab), 0 GPUs. GPUs are shared\n");
      CHECK(Exec(sbx, n.name, "cat /etc/labfleet-test/hostile") == kHostileContent);
      CHECK(Exec(sbx, n.name, "stat -c '%a %U %G' /etc/labfleet-test/hostile") == "640 root gpu-users\n");
      CHECK(sbx.exec(n.name, "test -e /tmp/pwned").exit_code != 0);
      CHECK(Exec(sbx, n.name, "sed -n '/BEGIN labfleet/,/END labfleet/p' /etc/hosts | sed -n 2,3p") ==
            "10.0.1.66 master\n10.0.1.68 proxy proxy.lab\n");
      CHECK(Exec(sbx, n.name, "grep -c localhost /etc/hosts") != "0\n");  // lines outside the block kept
      CHECK(Exec(sbx, n.name, "getent shadow yseong | cut -d: -f2") == kHash + "\n");
      auto state = nlohmann::json::parse(Exec(sbx, n.name, "cat /var/lib/labfleet/state.json"));
      CHECK(state["node"] == n.name);
      CHECK(state["run_id"] == aj["run_id"]);
      CHECK(sbx.exec(n.name, "test -e /run/labfleet.lock").exit_code != 0);
    }
    // The password hash never reaches any output.
    CHECK(plan0.out.find(kHash) == std::string::npos);
    CHECK(plan0.err.find(kHash) == std::string::npos);
    CHECK(apply.out.find(kHash) == std::string::npos);
    CHECK(apply.err.find(kHash) == std::string::npos);

    auto plan1 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode", "--format", "json"});
    INFO(plan1.out << plan1.err);
    CHECK(plan1.rc == 0);
    CHECK(plan1.json()["summary"]["changes"] == 0);

    // One inventory value changes: exactly one change per node.
    WriteBase(inv, "/bin/sh");
    auto plan2 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode", "--format", "json"});
    INFO(plan2.out << plan2.err);
    CHECK(plan2.rc == 2);
    auto p2 = plan2.json();
    for (const auto& node : p2["plan"]) {
      REQUIRE(node["changes"].size() == 1);
      CHECK(node["changes"][0]["summary"] == "user kpark (shell /bin/bash -> /bin/sh)");
    }
    auto apply2 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--progress", "always"});
    INFO(apply2.out << apply2.err);
    CHECK(apply2.rc == 0);
    // Progress: one stderr line per node as it finishes, counted to the total (the order is the nodes').
    for (const auto& n : sbx.nodes())
      CHECK(apply2.err.find("] " + n.name + ": changed (1 change)\n") != std::string::npos);
    CHECK(apply2.err.find("[1/" + std::to_string(sbx.nodes().size()) + "] ") != std::string::npos);
    CHECK(apply2.err.find("[" + std::to_string(sbx.nodes().size()) + "/" + std::to_string(sbx.nodes().size()) + "] ") !=
          std::string::npos);
    CHECK(Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"}).err.find("[1/") == std::string::npos);
    for (const auto& n : sbx.nodes()) CHECK(Exec(sbx, n.name, "getent passwd kpark | cut -d: -f7") == "/bin/sh\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // A file edited by hand on one node is drift: shown as a diff, restored, and the old copy is backed up.
    Exec(sbx, "node1", "echo 'hand edit' > /etc/motd");
    auto plan3 = Cli(sbx, inv.dir(), {"plan", "node1"});
    CHECK(plan3.out.find("-hand edit") != std::string::npos);
    auto apply3 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "node1", "--format", "json"});
    CHECK(apply3.rc == 0);
    std::string run = apply3.json()["run_id"];
    CHECK(Exec(sbx, "node1", "cat /var/lib/labfleet/backup/" + run + "/etc/motd") == "hand edit\n");
    CHECK(Exec(sbx, "node1", "cat /etc/motd") == "Welcome to node1 (testlab), 0 GPUs. GPUs are shared\n");

    // A user removed from the inventory is locked (expired), not deleted; remove: true deletes it.
    std::string users = Users("/bin/sh");
    inv.write("inventory/users.yaml", users.substr(0, users.find("  kpark:")));
    auto plan4 = Cli(sbx, inv.dir(), {"plan"});
    CHECK(plan4.out.find("- user kpark (locked: removed from inventory)") != std::string::npos);
    CHECK(Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"}).rc == 0);
    CHECK(Exec(sbx, "node1", "getent shadow kpark | cut -d: -f8") == "1\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
    inv.write("inventory/users.yaml", users.substr(0, users.find("  kpark:")) + "  kpark: { uid: 2002, remove: true }\n");
    CHECK(Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"}).rc == 0);
    CHECK(sbx.exec("node1", "getent passwd kpark").exit_code != 0);
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }

  TEST_CASE("a held lock refuses the apply; a dead holder is named stale; --break-lock takes it") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx);
    WriteBase(inv);
    // Another admin's run, alive as far as we can tell (another host).
    Exec(sbx, "node1", "printf 'run=other\\nwho=alice@laptop\\nhost=laptop\\npid=4242\\nsince=1\\n' > /run/labfleet.lock");
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    CHECK(r.rc == 4);
    CHECK(r.out.find("locked by alice@laptop") != std::string::npos);
    CHECK(r.out.find("another apply is running") != std::string::npos);
    CHECK(sbx.exec("node1", "getent passwd yseong").exit_code != 0);  // nothing applied
    // A run of this host whose process is gone: reported as dead.
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    Exec(sbx, "node1", "printf 'run=dead\\nwho=root@x\\nhost=%s\\npid=999999999\\nsince=1\\n' " +
                           labfleet::ShellQuote(host) + " > /run/labfleet.lock");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    CHECK(r.rc == 4);
    CHECK(r.out.find("that run is dead") != std::string::npos);
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--break-lock"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(sbx.exec("node1", "test -e /run/labfleet.lock").exit_code != 0);
  }

  TEST_CASE("accounts come from the local files: a directory user is refused, an oversized file stops its node; "
            "shadow-utils' busy lock is retried, then applies") {
    Sandbox sbx({.nodes = 2});
    TempInventory inv(sbx);
    WriteBase(inv);
    // Test double on node1: NSS knows yseong from "the directory" (as SSSD would), /etc/passwd does not.
    Exec(sbx, "node1",
         "mkdir -p /usr/local/sbin && printf '#!/bin/sh\n[ \"$1\" = passwd ] && for a; do [ \"$a\" = yseong ] && "
         "echo \"yseong:*:5001:5001:Yoon Seong:/home/yseong:/bin/bash\"; done\nexec /usr/bin/getent \"$@\"\n' > "
         "/usr/local/sbin/getent && chmod +x /usr/local/sbin/getent");
    REQUIRE(Exec(sbx, "node1", "getent passwd yseong | head -n 1") == "yseong:*:5001:5001:Yoon Seong:/home/yseong:/bin/bash\n");
    auto r = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(r.out << r.err);
    CHECK(r.out.find("user yseong is not in /etc/passwd on this node, but NSS resolves it (uid 5001)") != std::string::npos);
    auto j = r.json();
    for (const auto& n : j["plan"])
      if (n["node"] == "node1")
        for (const auto& c : n["changes"]) CHECK(c["summary"].get<std::string>().rfind("user yseong", 0) != 0);
    Exec(sbx, "node1", "rm /usr/local/sbin/getent");
    // /etc/shadow past the read bound (comment lines after root's, so sshd still finds root): a cut file would
    // read as missing users, so it is no answer, and nothing is planned for node1.
    Exec(sbx, "node1", "cp -p /etc/shadow /etc/shadow.real && yes '#' | head -c 34000000 >> /etc/shadow");
    r = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(r.out << r.err);
    j = r.json();
    for (const auto& n : j["plan"]) {
      if (n["node"] == "node1") {
        CHECK(n["error"].get<std::string>().rfind("shadow-file failed (exit 3): /etc/shadow is more than 33554432 bytes", 0) == 0);
        CHECK(n["changes"].empty());
      } else {
        CHECK_FALSE(n.contains("error"));
        CHECK(n["changes"].size() > 3);
      }
    }
    Exec(sbx, "node1", "mv /etc/shadow.real /etc/shadow");
    // Test double on node2: the first groupadd finds /etc/group locked by another program; later ones work.
    Exec(sbx, "node2",
         "mkdir -p /usr/local/sbin && printf '#!/bin/sh\nif [ ! -e /run/lf-test-locked-once ]; then : > "
         "/run/lf-test-locked-once; echo \"groupadd: cannot lock /etc/group; try again later.\" >&2; exit 10; "
         "fi\nexec /usr/sbin/groupadd \"$@\"\n' > /usr/local/sbin/groupadd && chmod +x /usr/local/sbin/groupadd");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    j = r.json();
    bool retried = false;
    for (const auto& n : j["apply"])
      if (n["node"] == "node2" && n.contains("notes"))
        for (const auto& note : n["notes"])
          retried |= note.get<std::string>().find("cannot lock /etc/group; try again later.; tried again after 1 s") !=
                     std::string::npos;
    CHECK(retried);
    CHECK(Exec(sbx, "node2", "getent group gpu-users | cut -d: -f3") == "3000\n");
    CHECK(sbx.exec("node2", "grpck -r").exit_code == 0);
    Exec(sbx, "node2", "rm /usr/local/sbin/groupadd");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }

  TEST_CASE("a node failing mid-apply: others converge, exit 4, the next apply finishes it") {
    Sandbox sbx({.nodes = 2});
    TempInventory inv(sbx);
    WriteBase(inv);
    // Test double: a useradd on node2 only that fails, as a full disk or a broken NSS would.
    Exec(sbx, "node2", "mkdir -p /usr/local/sbin && printf '#!/bin/sh\\necho \"useradd: cannot lock /etc/passwd\" >&2\\nexit 1\\n' > /usr/local/sbin/useradd && chmod +x /usr/local/sbin/useradd");
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    auto j = r.json();
    CHECK(j["result"]["changed"] == 1);
    CHECK(j["result"]["failed"] == 1);
    for (const auto& n : j["apply"])
      if (n["node"] == "node2") CHECK(n["error"].get<std::string>().find("cannot lock /etc/passwd") != std::string::npos);
    CHECK(Exec(sbx, "node1", "getent passwd yseong | cut -d: -f3") == "2001\n");
    CHECK(Exec(sbx, "node2", "getent group gpu-users | cut -d: -f3") == "3000\n");  // earlier changes stay
    CHECK(sbx.exec("node2", "pwck -r").exit_code == 0);                           // consistent state
    CHECK(sbx.exec("node2", "test -e /run/labfleet.lock").exit_code != 0);        // lock released
    Exec(sbx, "node2", "rm /usr/local/sbin/useradd");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(Exec(sbx, "node2", "getent passwd yseong | cut -d: -f3") == "2001\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }
}
