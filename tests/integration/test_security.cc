// An unprivileged user on a node attacks labfleet's root writes (issue 10, class 1): symlinked ~/.ssh and
// ~/.config, a racing process that swaps every temporary and managed file in its home for links to a root file
// while applies run, a root file asked for below a user's directory, a 2 MiB authorized_keys (too large to diff),
// secrets that no output shows, root-only backups, and a change that locks labfleet out (rolled back). Each
// attack must gain nothing, and plan/apply must say why.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

const std::string kKey1 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEu9xH1r0Y9sZ3l6w8G3sQkq1Z1f0k8bYt7dGm2yW4cP alice@laptop";
const std::string kKey2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ7pQ2wE5rT8yU1iO4pA6sD9fG2hJ5kL8zX1cV4bN7mQ alice@desktop";

bool Has(const std::string& text, const std::string& what) { return text.find(what) != std::string::npos; }

// alice (uid 2301) with `keys`, and `files` (YAML list items, indented by 4) on every node.
void Write(const TempInventory& inv, const std::vector<std::string>& keys, const std::string& files = "") {
  std::string k;
  for (const auto& key : keys) k += (k.empty() ? "\"" : ", \"") + key + "\"";
  inv.write("inventory/lab.yaml", "lab:\n  name: sec\n" + (files.empty() ? "" : "  defaults:\n    files:\n" + files));
  inv.write("inventory/users.yaml", "users:\n  alice:\n    uid: 2301\n    ssh_keys: [" + k + "]\n");
}

// As alice inside the node (an ordinary account: no sudo, no capabilities).
std::string AsAlice(const std::string& cmd) { return "setpriv --reuid=alice --regid=alice --init-groups -- sh -c '" + cmd + "'"; }

// What a root-owned victim looks like: content, mode, owner; and no file anywhere outside /home owned by alice.
void CheckUntouched(const Sandbox& sbx) {
  CHECK(Exec(sbx, "cat /etc/lf-victim") == "root's secret\n");
  CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/lf-victim /etc/profile.d /etc/cron.d") == "600 root root\n755 root root\n755 root root\n");
  CHECK(Exec(sbx, "find / -xdev -user alice ! -path '/home/*' ! -path '/proc/*' ! -path '/var/spool/*' ! -path '/var/mail/*' 2>/dev/null; true") == "");
  CHECK(Exec(sbx, "ls /etc/profile.d/authorized_keys /etc/cron.d/lab.conf 2>&1; true") ==
        "ls: cannot access '/etc/profile.d/authorized_keys': No such file or directory\n"
        "ls: cannot access '/etc/cron.d/lab.conf': No such file or directory\n");
}

}  // namespace

TEST_SUITE("integration-security") {
  TEST_CASE("symlinked ~/.ssh and ~/.config: refused with the reason, nothing written or chowned outside the home") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-sec-links");
    Exec(sbx, "mkdir -p /etc/cron.d /etc/profile.d && printf \"root's secret\\n\" > /etc/lf-victim && chmod 600 /etc/lf-victim");
    Write(inv, {kKey1});
    auto first = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(first.out << first.err);
    REQUIRE(first.rc == 0);
    CHECK(Exec(sbx, "cat /home/alice/.ssh/authorized_keys") == kKey1 + "\n");

    // alice points ~/.ssh at a root directory whose files root's login shell sources, and ~/.config at cron's.
    Exec(sbx, AsAlice("cd /home/alice && mv .ssh .ssh-real && ln -s /etc/profile.d .ssh && ln -s /etc/cron.d .config"));
    Write(inv, {kKey1, kKey2},
          "      - { path: /home/alice/.config/lab.conf, content: \"* * * * * root id > /tmp/pwned\\n\", owner: alice, group: alice }\n");
    auto plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(Has(plan.out, "! refused: authorized_keys of alice (2 keys): /home/alice/.ssh is a symbolic link"));
    CHECK(Has(plan.out, "! refused: file /home/alice/.config/lab.conf: /home/alice/.config is a symbolic link"));
    CHECK_FALSE(Has(plan.out, "+ file /home/alice/.config/lab.conf"));
    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(apply.out << apply.err);
    CHECK(Has(apply.out, "refused: authorized_keys of alice"));
    CheckUntouched(sbx);

    // The admin's fix (alice's real ~/.ssh back, the link gone): one apply converges, as alice.
    Exec(sbx, "rm /home/alice/.ssh /home/alice/.config && mv /home/alice/.ssh-real /home/alice/.ssh");
    auto fixed = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(fixed.out << fixed.err);
    CHECK(fixed.rc == 0);
    CHECK(Exec(sbx, "cat /home/alice/.ssh/authorized_keys") == kKey1 + "\n" + kKey2 + "\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /home/alice/.ssh /home/alice/.ssh/authorized_keys /home/alice/.config/lab.conf") ==
          "700 alice alice\n600 alice alice\n644 alice alice\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
    CheckUntouched(sbx);
  }

  TEST_CASE("a racing swapper in the user's home during applies gains nothing; a root file below a home is refused") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-sec-race");
    Exec(sbx, "mkdir -p /etc/cron.d /etc/profile.d && printf \"root's secret\\n\" > /etc/lf-victim && chmod 600 /etc/lf-victim");
    Write(inv, {kKey1});
    REQUIRE(Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"}).rc == 0);
    // Every file that appears in ~/.ssh (labfleet's temporary files included) is replaced by a link to the victim,
    // and ~/.ssh itself flips between a directory and a link to /etc/profile.d, as fast as the shell can.
    Exec(sbx, AsAlice("cd /home/alice && (while :; do for f in .ssh/*; do rm -f \"$f\"; ln -s /etc/lf-victim \"$f\"; done; "
                      "mv .ssh .ssh-d; ln -s /etc/profile.d .ssh; rm .ssh; mv .ssh-d .ssh; done) "
                      "</dev/null >/dev/null 2>&1 &"));
    for (int i = 0; i < 6; ++i) {
      Write(inv, i % 2 ? std::vector<std::string>{kKey1} : std::vector<std::string>{kKey1, kKey2},
            "      - { path: /home/alice/root-owned, content: \"x\\n\" }\n");
      auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
      INFO(r.out << r.err);
      CHECK(Has(r.out, "file /home/alice/root-owned: /home/alice belongs to alice, and labfleet writes root's files only"));
    }
    Exec(sbx, "pkill -KILL -u alice; true");
    CheckUntouched(sbx);
    CHECK(Exec(sbx, "ls /home/alice/root-owned 2>&1; true") == "ls: cannot access '/home/alice/root-owned': No such file or directory\n");
  }

  TEST_CASE("a 2 MiB authorized_keys is compared by sha256, never diffed; secrets never printed; backups root-only") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-sec-large");
    Write(inv, {kKey1}, "      - { path: /etc/lab/wg.key, content: \"hunter2-private\\n\", mode: \"0600\" }\n"
                        "      - { path: /etc/lab/app.conf, content: \"token = t0ps3cret\\n\" }\n"
                        "      - { path: /etc/lab/plain.conf, content: \"visible\\n\", secret: true }\n");
    REQUIRE(Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"}).rc == 0);
    Exec(sbx, AsAlice("head -c 2097152 /dev/zero | tr \"\\\\0\" x > /home/alice/.ssh/authorized_keys"));
    Exec(sbx, "echo old-private > /etc/lab/wg.key; echo 'token = old' > /etc/lab/app.conf; echo old > /etc/lab/plain.conf");
    auto plan = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(plan.out << plan.err);
    CHECK(Has(plan.out, "content differs (too large to diff: 2097152 bytes, sha256 "));
    CHECK_FALSE(Has(plan.out, "xxxxxxxx"));
    for (const char* secret : {"hunter2", "old-private", "t0ps3cret", "token = old", "visible", "old\\n"}) {
      CAPTURE(secret);
      CHECK_FALSE(Has(plan.out, secret));
    }
    CHECK(Has(plan.out, "content differs, secret: sha256 "));
    auto text = Cli(sbx, inv.dir(), {"plan"});
    CHECK_FALSE(Has(text.out, "hunter2"));
    CHECK_FALSE(Has(text.out, "t0ps3cret"));
    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply.out << apply.err);
    CHECK(apply.rc == 0);
    CHECK_FALSE(Has(apply.out, "hunter2"));
    CHECK(Exec(sbx, "cat /home/alice/.ssh/authorized_keys") == kKey1 + "\n");
    CHECK(Exec(sbx, "cat /etc/lab/wg.key") == "hunter2-private\n");
    // Backups: the directories 0700, the kept files 0600, whatever their original mode.
    CHECK(Exec(sbx, "find /var/lib/labfleet/backup -type d ! -perm 0700 | wc -l") == "0\n");
    CHECK(Exec(sbx, "find /var/lib/labfleet/backup -type f ! -perm 0600 | wc -l") == "0\n");
    CHECK(Exec(sbx, "cat /var/lib/labfleet/backup/*/etc/lab/plain.conf") == "old\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }

  TEST_CASE("a change that locks labfleet out (NSS loses the login user) is rolled back after the fresh-login check") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx, "labfleet-sec-lockout");
    const std::string before = Exec(sbx, "cat /etc/nsswitch.conf");
    inv.write("inventory/lab.yaml", "lab:\n  name: sec\n  defaults:\n    files:\n"
                                    "      - { path: /etc/nsswitch.conf, content: \"passwd: nosuchservice\\ngroup: files\\nshadow: nosuchservice\\n\" }\n");
    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(apply.out << apply.err);
    CHECK(apply.rc != 0);
    CHECK(Has(apply.out, "could not log in over a fresh connection after changing /etc/nsswitch.conf"));
    CHECK(Has(apply.out, "restored the previous version"));
    CHECK(Exec(sbx, "cat /etc/nsswitch.conf") == before);
  }
}
