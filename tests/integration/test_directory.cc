// directory on a real slapd: a sandbox node runs Debian's slapd (configured here with slapadd of a cn=config LDIF,
// suffix dc=lab,dc=example, root over ldapi:/// mapped to the manager, started as a daemon: the node has no
// systemd). labfleet applies directory users and groups; an independent ldapsearch inside the node checks the
// entries; a changed shell is applied; the re-plan is empty; an entry added by hand under the base is listed
// and kept; a removed user's entry is deleted.
#include <doctest/doctest.h>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"
#include "tests/integration/test_directory_slapd.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

// An independent read inside the node: the entry's attributes, -LLL, unwrapped.
std::string Search(const Sandbox& sbx, const std::string& dn, const std::string& attrs) {
  return Exec(sbx, "ldapsearch -Q -Y EXTERNAL -H ldapi:/// -LLL -o ldif-wrap=no -s base -b '" + dn + "' " + attrs);
}

// alice and bob live in the directory (lab-wide `accounts: directory`): the users module leaves them alone on
// every node, the server included (checked below: no local alice in its /etc/passwd).
std::string Inventory(const std::string& alice_shell, bool bob_removed) {
  return "lab:\n  name: t\n  accounts: directory\n"
         "  directory: { server: node1, base: \"dc=lab,dc=example\", uri: \"ldaps://ldap.lab.example\" }\n"
         "groups:\n  clients: {}\n"
         "user_groups:\n  gpu-users: { gid: 3000 }\n"
         "users:\n"
         "  alice: { uid: 2001, full_name: \"Alice M\xc3\xbcller\", shell: " + alice_shell +
         ", groups: [gpu-users], expires: 2030-01-01 }\n" +
         (bob_removed ? "  bob: { uid: 2002, remove: true }\n"
                      : "  bob: { uid: 2002, groups: [gpu-users] }\n");
}

}  // namespace

TEST_SUITE("integration-directory") {
  TEST_CASE("directory: users and groups into a real slapd, shell change, re-plan empty, strangers kept, remove") {
    Sandbox sbx({.nodes = 1});
    MustExec(sbx, "node1", SlapdSetup());
    TempInventory inv(sbx);
    inv.write("inventory/lab.yaml", Inventory("/bin/bash", false));
    auto v = Cli({"--inventory", inv.dir(), "validate"});
    INFO(v.out << v.err);
    REQUIRE(v.rc == 0);

    auto plan = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(plan.out << plan.err);
    CHECK(Summaries(plan) ==
          "ldap ou people (ou=people,dc=lab,dc=example) | ldap ou groups (ou=groups,dc=lab,dc=example) | "
          "ldap group gpu-users (cn=gpu-users,ou=groups,dc=lab,dc=example) | "
          "ldap group alice (cn=alice,ou=groups,dc=lab,dc=example) | ldap group bob (cn=bob,ou=groups,dc=lab,dc=example) | "
          "ldap user alice (uid=alice,ou=people,dc=lab,dc=example) | ldap user bob (uid=bob,ou=people,dc=lab,dc=example)");
    // (no local gpu-users: a group that lives in the directory is not made locally, it would shadow it)

    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    // directory users are entries, never local accounts, on the server too
    CHECK(Exec(sbx, "grep -c -e '^alice:' -e '^bob:' /etc/passwd || true") == "0\n");
    CHECK(Search(sbx, "uid=alice,ou=people,dc=lab,dc=example",
                 "objectClass uid cn uidNumber gidNumber homeDirectory loginShell shadowExpire") ==
          "dn: uid=alice,ou=people,dc=lab,dc=example\nobjectClass: account\nobjectClass: posixAccount\n"
          "objectClass: shadowAccount\nuid: alice\ncn:: QWxpY2UgTcO8bGxlcg==\nuidNumber: 2001\ngidNumber: 2001\n"
          "homeDirectory: /home/alice\nloginShell: /bin/bash\nshadowExpire: 21915\n\n");
    CHECK(Search(sbx, "cn=gpu-users,ou=groups,dc=lab,dc=example", "objectClass gidNumber memberUid") ==
          "dn: cn=gpu-users,ou=groups,dc=lab,dc=example\nobjectClass: posixGroup\ngidNumber: 3000\n"
          "memberUid: alice\nmemberUid: bob\n\n");
    CHECK(Search(sbx, "cn=bob,ou=groups,dc=lab,dc=example", "gidNumber") ==
          "dn: cn=bob,ou=groups,dc=lab,dc=example\ngidNumber: 2002\n\n");
    // Not made local on the server: no useradd for a directory user.
    CHECK(sbx.exec("node1", "grep -q '^alice:' /etc/passwd").exit_code != 0);
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // An entry made by hand under the base: listed, kept. alice's shell changes.
    MustExec(sbx, "node1",
             "printf 'dn: cn=printer,dc=lab,dc=example\\nchangetype: add\\nobjectClass: device\\ncn: printer\\n' | "
             "ldapmodify -Q -Y EXTERNAL -H ldapi:/// >/dev/null");
    inv.write("inventory/lab.yaml", Inventory("/bin/zsh", false));
    plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(plan.out.find("~ loginShell: /bin/bash -> /bin/zsh") != std::string::npos);
    CHECK(plan.out.find("ldap entry cn=printer,dc=lab,dc=example is not in the inventory: listed, never changed or "
                        "deleted") != std::string::npos);
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) == "ldap user alice (loginShell)");
    CHECK(Search(sbx, "uid=alice,ou=people,dc=lab,dc=example", "loginShell") ==
          "dn: uid=alice,ou=people,dc=lab,dc=example\nloginShell: /bin/zsh\n\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // bob removed: his entry and personal group go, the stranger stays, gpu-users loses him.
    inv.write("inventory/lab.yaml", Inventory("/bin/zsh", true));
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) ==
          "ldap group gpu-users (memberUid) | ldap group bob (delete cn=bob,ou=groups,dc=lab,dc=example) | "
          "ldap user bob (delete uid=bob,ou=people,dc=lab,dc=example)");
    CHECK(sbx.exec("node1", "ldapsearch -Q -Y EXTERNAL -H ldapi:/// -LLL -s base -b uid=bob,ou=people,dc=lab,dc=example dn")
              .exit_code == 32);
    CHECK(Search(sbx, "cn=printer,dc=lab,dc=example", "cn") == "dn: cn=printer,dc=lab,dc=example\ncn: printer\n\n");
    CHECK(Search(sbx, "cn=gpu-users,ou=groups,dc=lab,dc=example", "memberUid") ==
          "dn: cn=gpu-users,ou=groups,dc=lab,dc=example\nmemberUid: alice\n\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }

  TEST_CASE("directory: slapd down on the server fails that node with ldapsearch's message, plans nothing") {
    Sandbox sbx({.nodes = 1});
    TempInventory inv(sbx);
    inv.write("inventory/lab.yaml", Inventory("/bin/bash", false));
    auto plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc != 0);
    CHECK((plan.out + plan.err).find("ldapsearch -Y EXTERNAL -H ldapi:/// failed (exit 255)") != std::string::npos);
    CHECK((plan.out + plan.err).find("+ ldap") == std::string::npos);
  }
}
