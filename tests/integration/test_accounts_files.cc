// Accounts, keys, subids, files and hosts on a real sandbox node, module by module: after a converged apply,
// ONE inventory value changes and the plan shows exactly that change (text line and JSON), the apply makes it,
// an independent tool inside the node sees it, and the re-plan is empty. Also: an account created already
// expired, a changed password hash that no output shows, /etc/skel in new homes, files from `source:`,
// `labfleet render`, the plan's summary line, state.json, two applies racing for one node's lock, and a uid held by an
// account the inventory does not name (nothing of the node applied until the admin fixes it), and `remove: archive`
// (refused while the user runs a process; then archived, read back by tar, and deleted).
#include <doctest/doctest.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <latch>
#include <nlohmann/json.hpp>
#include <regex>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

const std::string kHash1 = "$6$saltone$Qm4cXq7e2Lk9Rz1tVb8nHs3Wd6Fy0Jp5Gu7Ai2Oe4Kx9Ct1Mv6Ni3Bl8Dh5Sr0Zw2Ya7Pf4Eg9Ij1Uk6Ho3Qs";
const std::string kHash2 = "$6$salttwo$Zt8aKd3Wq1Ln6Ry4Vx9Bm2Cs7Eh0Fj5Gp3Hu8Ik1Jo6Lw4Mz9Na2Ob7Pc5Qd0Re3Sf8Tg1Uh6Vi4Wj9Xk2Yl7";
const std::string kHash3 = "$y$j9T$threesaltthree$Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op7Qr9St1Uv3Wx5Yz7Ab9";
const std::string kKey1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEu9xH1r0Y9sZ3l6w8G3sQkq1Z1f0k8bYt7dGm2yW4cP alice@laptop";
const std::string kKey2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7pQ2wE5rT8yU1iO4pA6sD9fG2hJ5kL8zX1cV4bN7mQ alice@desktop";
const char* kMotd = "Welcome to {{node}} ({{lab}}), {{gpus}} GPUs. {{vars.motto}}\n{{#users}}{{name}}={{uid}} {{/users}}\n";
const char* kMotdNode1 = "Welcome to node1 (acct), 0 GPUs. share the GPUs\nalice=2101 bob=2102 olduser=2103 \n";

// The inventory values the tests change, one at a time.
struct Knobs {
  int gpu_gid = 3100;
  int admins_gid = 3101;
  std::string hosts_names = "[master]";
  std::string source_text = "alpha=1\nbeta=two words\n";
  std::vector<std::string> alice_keys = {kKey1};
  bool bob_rootless = false;
  std::string alice_hash = kHash1;
};

void Write(const TempInventory& inv, const Knobs& k) {
  inv.write("inventory/lab.yaml", R"(lab:
  name: acct
  templates_dir: ../templates
  defaults:
    vars: { motto: "share the GPUs" }
    hosts: { 10.0.1.66: )" + k.hosts_names + R"( }
    files:
      - { path: /etc/lab/inline, content: "v1\n", mode: "0644" }
      - { path: /etc/lab/from-source, source: ../files/lab.conf, mode: "0640", owner: root, group: gpu-users }
      - { path: /etc/lab/motd, template: motd.mustache }
user_groups:
  gpu-users: { gid: )" + std::to_string(k.gpu_gid) + R"( }
  admins: { gid: )" + std::to_string(k.admins_gid) + R"( }
)");
  std::string keys;
  for (const auto& key : k.alice_keys) keys += (keys.empty() ? "\"" : ", \"") + key + "\"";
  inv.write("inventory/users.yaml", R"(users:
  alice:
    uid: 2101
    full_name: Alice Lab
    groups: [gpu-users, admins]
    ssh_keys: [)" + keys + R"(]
    rootless_docker: true
    password_hash: ")" + k.alice_hash + R"("
  bob:
    uid: 2102
    groups: [gpu-users]
    rootless_docker: )" + (k.bob_rootless ? "true" : "false") + R"(
  olduser:
    uid: 2103
    expires: 2020-01-31
)");
  inv.write("files/lab.conf", k.source_text);
  inv.write("templates/motd.mustache", kMotd);
}

bool Has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

// Nothing of `secret` in any of a command's output.
void CheckNoSecret(const CliResult& r, const std::string& secret) {
  CHECK_FALSE(Has(r.out, secret));
  CHECK_FALSE(Has(r.err, secret));
}

const char* kConverged = "\nPlan: 0 changes on 0 nodes, 1 unchanged, 0 unreachable or failed.\n";

// The node's account files pass pwck -r and grpck -r, and a fresh plan of the inventory is empty.
void CheckCleanAndConverged(const Sandbox& sbx, const TempInventory& inv) {
  CHECK(sbx.exec("node1", "pwck -r").exit_code == 0);
  CHECK(sbx.exec("node1", "grpck -r").exit_code == 0);
  auto plan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
  INFO(plan.out << plan.err);
  CHECK(plan.rc == 0);
  CHECK(Has(plan.out, kConverged));
}

}  // namespace

TEST_SUITE("integration-accounts-files") {
  TEST_CASE("one inventory value per module is exactly one change; expiry, secrets, skel, source, render, state") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-acct");
    Knobs k;
    Write(inv, k);
    // What useradd -m copies into every new home.
    Exec(sbx, "mkdir -p /etc/skel && printf 'skel line\\n' > /etc/skel/.labfleet-skel");

    // ---- first converge
    auto plan0 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan0.out << plan0.err);
    REQUIRE(plan0.rc == 2);
    CHECK(Has(plan0.out, "\n  + user olduser (uid 2103, expired: locked)  # absent\n"));
    CHECK(Has(plan0.out, "\n  + user alice (uid 2101, groups gpu-users,admins) (secret set)  # absent\n"));
    auto plan0j = Cli(sbx, inv.dir(), {"plan", "--format", "json"}).json();
    size_t n0 = plan0j["summary"]["changes"].get<size_t>();
    CHECK(n0 == plan0j["plan"][0]["changes"].size());
    CHECK(n0 > 10);
    CHECK(Has(plan0.out, "node1: " + std::to_string(n0) + " changes\n"));
    CHECK(Has(plan0.out, "\nPlan: " + std::to_string(n0) + " changes on 1 node, 0 unchanged, 0 unreachable or failed.\n"));

    auto apply0 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(apply0.out << apply0.err);
    REQUIRE(apply0.rc == 0);
    CHECK(Has(apply0.out, "\nnode1: changed (" + std::to_string(n0) + " changes; re-plan empty)\n"));
    CheckNoSecret(plan0, kHash1);
    CheckNoSecret(apply0, kHash1);

    // Independent checks inside the node.
    CHECK(Exec(sbx, "getent passwd alice bob olduser") ==
          "alice:x:2101:2101:Alice Lab:/home/alice:/bin/bash\n"
          "bob:x:2102:2102::/home/bob:/bin/bash\n"
          "olduser:x:2103:2103::/home/olduser:/bin/bash\n");
    CHECK(Exec(sbx, "getent group gpu-users admins") == "gpu-users:x:3100:alice,bob\nadmins:x:3101:alice\n");
    CHECK(sbx.exec("node1", "pwck -r").exit_code == 0);
    CHECK(sbx.exec("node1", "grpck -r").exit_code == 0);
    CHECK(Exec(sbx, "getent shadow alice | cut -d: -f2") == kHash1 + "\n");
    // Created already expired: shadow's expire field (days since 1970) and chage agree on 2020-01-31.
    CHECK(Exec(sbx, "getent shadow olduser | cut -d: -f8") == "18292\n");
    CHECK(Exec(sbx, "LC_ALL=C chage -l olduser | sed -n 's/^Account expires[[:space:]]*: //p'") == "Jan 31, 2020\n");
    CHECK(Exec(sbx, "getent shadow alice bob | cut -d: -f8") == "\n\n");  // the others never expire
    // /etc/skel in every new home, owned by the user.
    for (const std::string u : {"alice", "bob", "olduser"}) {
      CAPTURE(u);
      CHECK(Exec(sbx, "cat /home/" + u + "/.labfleet-skel") == "skel line\n");
      CHECK(Exec(sbx, "stat -c '%U:%G' /home/" + u + " /home/" + u + "/.labfleet-skel") ==
            u + ":" + u + "\n" + u + ":" + u + "\n");
    }
    CHECK(Exec(sbx, "cat /home/alice/.ssh/authorized_keys") == kKey1 + "\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /home/alice/.ssh /home/alice/.ssh/authorized_keys") ==
          "700 alice alice\n600 alice alice\n");
    // subuid AND subgid: 100000 + (2101 - 1000) * 65536; bob has no range.
    CHECK(Exec(sbx, "grep -c '' /etc/subuid /etc/subgid") == "/etc/subuid:1\n/etc/subgid:1\n");
    CHECK(Exec(sbx, "cat /etc/subuid") == "alice:72255136:65536\n");
    CHECK(Exec(sbx, "cat /etc/subgid") == "alice:72255136:65536\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/subuid /etc/subgid") == "644 root root\n644 root root\n");
    // files: inline, copied from the inventory repository (source:), rendered from a template.
    CHECK(Exec(sbx, "cat /etc/lab/inline") == "v1\n");
    CHECK(Exec(sbx, "cat /etc/lab/from-source") == k.source_text);
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/lab/from-source") == "640 root gpu-users\n");
    CHECK(Exec(sbx, "cat /etc/lab/motd") == kMotdNode1);
    CHECK(Exec(sbx, "sed -n '/^# BEGIN labfleet/,/^# END labfleet/p' /etc/hosts") ==
          "# BEGIN labfleet managed block: edits inside are overwritten\n10.0.1.66 master\n# END labfleet managed block\n");
    const std::string hosts_outside = Exec(sbx, "sed '/^# BEGIN labfleet/,/^# END labfleet/d' /etc/hosts");
    CHECK(Has(hosts_outside, "localhost"));

    // `render` prints exactly what the node got, offline (text and JSON).
    auto render = Cli({"--inventory", inv.dir(), "render", "motd.mustache", "--node", "node1"});
    CHECK(render.rc == 0);
    CHECK(render.out == kMotdNode1);
    CHECK(render.err.empty());
    auto renderj = Cli({"--inventory", inv.dir(), "--format", "json", "render", "motd.mustache", "--node", "node1"});
    CHECK(renderj.rc == 0);
    CHECK(renderj.json()["output"] == kMotdNode1);
    CHECK(renderj.json()["node"] == "node1");
    CHECK(Cli({"--inventory", inv.dir(), "render", "motd.mustache", "--node", "nosuch"}).rc == 3);

    // state.json: besides the commit, the settings hash, who applied and when.
    auto state0 = nlohmann::json::parse(Exec(sbx, "cat /var/lib/labfleet/state.json"));
    REQUIRE(state0.is_object());
    CHECK(state0["commit"].is_string());  // "" here: the inventory is not in git (test_git_state covers commits)
    REQUIRE(state0["settings_hash"].is_string());
    CHECK(std::regex_match(state0["settings_hash"].get<std::string>(), std::regex("[0-9a-f]{16}")));
    REQUIRE(state0["applied_by"].is_string());
    char host[256] = {0};
    gethostname(host, sizeof host - 1);
    std::string by = state0["applied_by"];
    CHECK(by.size() > std::string(host).size() + 1);
    CHECK(by.ends_with(std::string("@") + host));
    REQUIRE(state0["applied_at"].is_string());
    std::string at = state0["applied_at"];
    REQUIRE(std::regex_match(at, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")));
    {
      std::tm tm{};
      REQUIRE(strptime(at.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm));
      long long age = (long long)time(nullptr) - (long long)timegm(&tm);
      CHECK(age >= 0);
      CHECK(age < 600);  // written by the apply that just ran, in UTC
    }

    // ---- converged: the re-plan is empty, summary line included
    auto plan1 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan1.out << plan1.err);
    CHECK(plan1.rc == 0);
    CHECK(Has(plan1.out, "node1: no changes ("));
    CHECK(Has(plan1.out, kConverged));

    // ---- one inventory value at a time. `want` is every change line of the plan, in order.
    auto one_change = [&](const char* what, const std::vector<std::string>& want) {
      CAPTURE(what);
      auto text = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
      INFO(text.out << text.err);
      CHECK(text.rc == 2);
      std::string lines = "node1: " + std::to_string(want.size()) + " change" + (want.size() == 1 ? "" : "s") + "\n";
      std::string json_want;
      for (const auto& w : want) {
        CHECK(Has(text.out, "\n  " + w));
        json_want += (json_want.empty() ? "" : " | ") + w.substr(2);
      }
      CHECK(Has(text.out, lines + "  " + want[0]));
      CHECK(Has(text.out, "\nPlan: " + std::to_string(want.size()) + " change" + (want.size() == 1 ? "" : "s") +
                              " on 1 node, 0 unchanged, 0 unreachable or failed.\n"));
      // The JSON apply carries the plan it ran.
      auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
      INFO(apply.out << apply.err);
      CHECK(apply.rc == 0);
      CHECK(Summaries(apply) == json_want);
      CHECK(apply.json()["summary"]["changes"] == want.size());
      CHECK(apply.json()["result"]["changed"] == 1);
      CHECK(apply.json()["apply"][0]["applied"] == want.size());
      auto again = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
      INFO(again.out << again.err);
      CHECK(again.rc == 0);
      CHECK(Has(again.out, kConverged));
      return std::vector<CliResult>{text, apply};
    };

    // user_groups: a gid.
    k.admins_gid = 3102;
    Write(inv, k);
    one_change("user_groups", {"~ group admins (gid 3101 -> 3102)"});
    CHECK(Exec(sbx, "getent group admins") == "admins:x:3102:alice\n");
    CHECK(Exec(sbx, "id -G alice | tr ' ' '\\n' | sort -n | tr '\\n' ' '") == "2101 3100 3102 ");
    CHECK(sbx.exec("node1", "grpck -r").exit_code == 0);
    // The settings hash follows the settings.
    auto state1 = nlohmann::json::parse(Exec(sbx, "cat /var/lib/labfleet/state.json"));
    CHECK(state1["settings_hash"].is_string());
    CHECK(state1["settings_hash"] != state0["settings_hash"]);
    // user_groups: the gid of a group that owns a managed file. groupmod -g leaves the file with the old gid,
    // so the plan says that the file is chown-ed again (else the re-plan would find it owned by UNKNOWN).
    k.gpu_gid = 3110;
    Write(inv, k);
    one_change("user_groups, group of a file",
               {"~ group gpu-users (gid 3100 -> 3110)", "~ file /etc/lab/from-source (group gpu-users: gid 3100 -> 3110)"});
    CHECK(Exec(sbx, "getent group gpu-users") == "gpu-users:x:3110:alice,bob\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G %g' /etc/lab/from-source") == "640 root gpu-users 3110\n");
    CHECK(Exec(sbx, "find /etc /home /var/lib/labfleet -gid 3100 | wc -l") == "0\n");
    CHECK(sbx.exec("node1", "grpck -r").exit_code == 0);

    // ssh_keys: one more key.
    k.alice_keys.push_back(kKey2);
    Write(inv, k);
    auto keys = one_change("ssh_keys", {"~ authorized_keys of alice (2 keys)"});
    CHECK(Has(keys[0].out, "\n      +" + kKey2 + "\n"));
    CHECK(Exec(sbx, "cat /home/alice/.ssh/authorized_keys") == kKey1 + "\n" + kKey2 + "\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /home/alice/.ssh /home/alice/.ssh/authorized_keys") ==
          "700 alice alice\n600 alice alice\n");

    // subids: bob gets rootless Docker — one value, its two files (subuid and subgid). A line of an account
    // the inventory does not know is kept.
    Exec(sbx, "echo 'svc:500000:65536' >> /etc/subgid");
    k.bob_rootless = true;
    Write(inv, k);
    one_change("subids", {"~ /etc/subuid (2 rootless Docker ranges)", "~ /etc/subgid (2 rootless Docker ranges)"});
    CHECK(Exec(sbx, "cat /etc/subuid") == "alice:72255136:65536\nbob:72320672:65536\n");
    CHECK(Exec(sbx, "cat /etc/subgid") == "svc:500000:65536\nalice:72255136:65536\nbob:72320672:65536\n");
    CHECK(sbx.exec("node1", "pwck -r").exit_code == 0);

    // files: the content of a `source:` file in the inventory repository.
    k.source_text = "alpha=2\nbeta=two words\n";
    Write(inv, k);
    auto src = one_change("files", {"~ file /etc/lab/from-source"});
    CHECK(Has(src[0].out, "\n      -alpha=1\n      +alpha=2\n"));
    CHECK(Exec(sbx, "cat /etc/lab/from-source") == k.source_text);
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/lab/from-source") == "640 root gpu-users\n");

    // hosts: one more name for an address.
    k.hosts_names = "[master, master.lab]";
    Write(inv, k);
    one_change("hosts", {"~ hosts block in /etc/hosts (1 entry)"});
    CHECK(Exec(sbx, "sed -n '/^# BEGIN labfleet/,/^# END labfleet/p' /etc/hosts") ==
          "# BEGIN labfleet managed block: edits inside are overwritten\n10.0.1.66 master master.lab\n"
          "# END labfleet managed block\n");
    CHECK(Exec(sbx, "sed '/^# BEGIN labfleet/,/^# END labfleet/d' /etc/hosts") == hosts_outside);
    CHECK(Exec(sbx, "getent hosts master.lab") == "10.0.1.66       master master.lab\n");

    // users: a new password hash for an existing account. Never in any output, text or JSON.
    k.alice_hash = kHash2;
    Write(inv, k);
    auto pw_json = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    CHECK(Summaries(pw_json) == "user alice (secret changed)");
    auto pw = one_change("users: password hash (JSON apply)", {"~ user alice (secret changed)"});
    pw.push_back(pw_json);
    for (const auto& r : pw) {
      CheckNoSecret(r, kHash1);
      CheckNoSecret(r, kHash2);
    }
    CHECK(Exec(sbx, "getent shadow alice | cut -d: -f2") == kHash2 + "\n");
    // Once more with a text apply.
    k.alice_hash = kHash3;
    Write(inv, k);
    auto pw_plan = Cli(sbx, inv.dir(), {"plan"});
    auto pw_apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(pw_apply.out << pw_apply.err);
    CHECK(pw_apply.rc == 0);
    CHECK(Has(pw_plan.out, "node1: 1 change\n  ~ user alice (secret changed)\n"));
    CHECK(Has(pw_apply.out, "node1: 1 change\n  ~ user alice (secret changed)\n"));
    CHECK(Has(pw_apply.out, "\nnode1: changed (1 change; re-plan empty)\n"));
    for (const auto* r : {&pw_plan, &pw_apply})
      for (const auto& h : {kHash1, kHash2, kHash3}) CheckNoSecret(*r, h);
    CHECK(Exec(sbx, "getent shadow alice | cut -d: -f2") == kHash3 + "\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
    CHECK(sbx.exec("node1", "pwck -r").exit_code == 0);
  }

  TEST_CASE("two applies started together on one node: one converges it, the other is refused by the lock") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-race");
    Write(inv, Knobs{});
    // Test double: useradd waits (at most 60 s) until the test releases it, so whichever apply takes the lock
    // first holds it while the other one arrives.
    Exec(sbx, "mkdir -p /usr/local/sbin && printf '%s\\n' '#!/bin/sh' "
              "'i=0; while [ ! -e /run/lf-release ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done' "
              "'exec /usr/sbin/useradd \"$@\"' > /usr/local/sbin/useradd && chmod +x /usr/local/sbin/useradd");

    std::latch start(2);
    auto run = [&] {
      start.arrive_and_wait();
      return Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    };
    auto a = std::async(std::launch::async, run);
    auto b = std::async(std::launch::async, run);
    // The first to come back must be the refused one; only then is the holder let go.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(90);
    while (a.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready &&
           b.wait_for(std::chrono::milliseconds(0)) != std::future_status::ready &&
           std::chrono::steady_clock::now() < deadline) {
    }
    const bool a_first = a.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    const bool b_first = b.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    CHECK(a_first != b_first);  // exactly one came back while the other held the lock
    std::string held = sbx.exec("node1", "cat /run/labfleet.lock").out;  // the holder's lock is still there
    Exec(sbx, "touch /run/lf-release");
    CliResult ra = a.get(), rb = b.get();
    const CliResult& refused = a_first ? ra : rb;
    const CliResult& winner = a_first ? rb : ra;
    INFO("refused: " << refused.out << refused.err);
    INFO("winner: " << winner.out << winner.err);
    CHECK(refused.rc == 4);
    CHECK(winner.rc == 0);
    auto rj = refused.json(), wj = winner.json();
    CHECK(rj["result"]["failed"] == 1);
    CHECK(rj["apply"][0]["applied"] == 0);
    CHECK(wj["result"]["changed"] == 1);
    CHECK(wj["result"]["failed"] == 0);
    std::string err = rj["apply"][0]["error"];
    std::string wrun = wj["run_id"];
    CHECK(Has(err, "node node1 is locked by "));
    CHECK(Has(err, "(run " + wrun + ", labfleet pid " + std::to_string(getpid()) + " on "));
    CHECK(Has(err, ": another apply is running (its node-side process "));  // judged on the node
    CHECK(Has(err, "still runs); wait for it to finish. Only if you know it is stuck, stop it on the node or rerun with --break-lock"));
    CHECK(Has(held, "run=" + wrun + "\n"));

    // The node ends converged, lock released, by the winner's run.
    CHECK(sbx.exec("node1", "test -e /run/labfleet.lock").exit_code != 0);
    CHECK(Exec(sbx, "getent passwd alice | cut -d: -f3") == "2101\n");
    auto state = nlohmann::json::parse(Exec(sbx, "cat /var/lib/labfleet/state.json"));
    CHECK(state["run_id"] == wrun);
    CheckCleanAndConverged(sbx, inv);
  }

  TEST_CASE("a uid held on the node by an account the inventory does not name: nothing applied, then fixed") {
    // UID drift: carol was made by hand on the node with the uid the inventory gives dave.
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-uid-drift");
    Exec(sbx, "useradd -u 2203 -m carol");
    auto write = [&](int dave_uid) {
      inv.write("inventory/lab.yaml", "lab:\n  name: drift\n");
      inv.write("inventory/users.yaml", "users:\n  alice: { uid: 2201 }\n  dave: { uid: " +
                                            std::to_string(dave_uid) + " }\n");
    };
    write(2203);
    auto plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 4);
    CHECK(Has(plan.out, "node1: cannot be planned: "));
    CHECK(Has(plan.out, "uid 2203 of user dave is taken on this node by 'carol'"));
    CHECK(Has(plan.out, " once that is fixed (apply leaves this node alone until then)\n"));
    CHECK(Has(plan.out, "  + user alice (uid 2201"));
    // The changes of a node that is not applied are not counted as changes to make.
    CHECK(Has(plan.out, "\nPlan: 0 changes on 0 nodes, 0 unchanged, 1 unreachable or failed.\n"));

    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply.out << apply.err);
    CHECK(apply.rc == 4);
    auto j = apply.json();
    CHECK(j["summary"]["changes"] == 0);
    CHECK(j["result"]["failed"] == 1);
    CHECK(j["apply"][0]["applied"] == 0);
    CHECK(Has(j["apply"][0]["error"].get<std::string>(), "uid 2203 of user dave is taken on this node by 'carol'"));
    CHECK(sbx.exec("node1", "getent passwd alice").exit_code == 2);  // nothing of the node was applied
    CHECK(Exec(sbx, "getent passwd carol | cut -d: -f3") == "2203\n");

    // The admin gives dave a free uid: one apply converges, carol is left alone.
    write(2204);
    auto fixed = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(fixed.out << fixed.err);
    CHECK(fixed.rc == 0);
    CHECK(Exec(sbx, "getent passwd dave | cut -d: -f3") == "2204\n");
    CHECK(Exec(sbx, "getent passwd alice | cut -d: -f3") == "2201\n");
    CHECK(Exec(sbx, "getent passwd carol | cut -d: -f3,6") == "2203:/home/carol\n");
    CheckCleanAndConverged(sbx, inv);
  }

  TEST_CASE("remove: archive: refused while the user runs a process, then the home is archived and deleted") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-archive");
    auto write = [&](const std::string& erin) {
      inv.write("inventory/lab.yaml", "lab:\n  name: sem\n  home_archive: /var/backups/homes\n");
      inv.write("inventory/users.yaml", "users:\n  erin: { uid: 2205" + erin + " }\n  frank: { uid: 2206 }\n");
    };
    write("");
    auto create = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(create.out << create.err);
    REQUIRE(create.rc == 0);
    Exec(sbx, "mkdir -p /home/erin/data && printf 'epoch 90: 0.91\\n' > /home/erin/data/results.txt && "
              "chown -R erin:erin /home/erin/data");
    // A job of erin's still runs (in the node's own PID namespace).
    Exec(sbx, "nohup setsid runuser -u erin -- sleep 300 >/dev/null 2>&1 & sleep 0.2; pgrep -u 2205 >/dev/null");

    write(", remove: archive");
    auto plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(Has(plan.out, "  - user erin (deleted: remove: archive; home /home/erin archived to "
                        "/var/backups/homes/erin-2205-<UTC time>.tar.gz, then deleted)"));
    auto refused = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(refused.out << refused.err);
    CHECK(refused.rc == 4);
    CHECK(Has(refused.out + refused.err, "user erin has running processes (pgrep -u 2205); stop them, then apply again"));
    CHECK(Exec(sbx, "getent passwd erin | cut -d: -f3") == "2205\n");
    CHECK(Exec(sbx, "cat /home/erin/data/results.txt") == "epoch 90: 0.91\n");
    CHECK(Exec(sbx, "ls -A /var/backups/homes 2>/dev/null || true") == "");

    Exec(sbx, "pkill -u 2205; for i in $(seq 50); do pgrep -u 2205 >/dev/null || break; sleep 0.1; done; "
              "! pgrep -u 2205");
    auto removed = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(removed.out << removed.err);
    CHECK(removed.rc == 0);
    CHECK(sbx.exec("node1", "getent passwd erin").exit_code == 2);
    CHECK(sbx.exec("node1", "test ! -e /home/erin").exit_code == 0);
    CHECK(Exec(sbx, "getent passwd frank | cut -d: -f6") == "/home/frank\n");  // the others are untouched
    CHECK(Exec(sbx, "test -d /home/frank && echo yes") == "yes\n");
    // One archive, root's only; tar reads it back with the home's files and owners.
    std::string archive = Exec(sbx, "ls /var/backups/homes");
    CHECK(std::regex_match(archive, std::regex("erin-2205-[0-9]{8}T[0-9]{6}Z\\.tar\\.gz\n")));
    archive = "/var/backups/homes/" + archive.substr(0, archive.size() - 1);
    CHECK(Exec(sbx, "stat -c '%a %U' " + archive) == "600 root\n");
    CHECK(Exec(sbx, "stat -c '%a' /var/backups/homes") == "700\n");
    CHECK(Exec(sbx, "tar -xzOf " + archive + " erin/data/results.txt") == "epoch 90: 0.91\n");
    std::string listing = Exec(sbx, "tar -tzvf " + archive);
    CHECK(Has(listing, "erin/erin"));
    CHECK(Has(listing, " erin/.profile\n"));  // from /etc/skel
    CheckCleanAndConverged(sbx, inv);
  }
}
