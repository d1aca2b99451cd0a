// directory: the LDIF parser on real `ldapsearch -LLL` output (a folded line, a base64 value, a garbage line),
// the LDIF builder's escaping (no value can add a line), DN syntax, the per-entry diff on fake probe output, and
// the offline checks of lab.directory and `accounts:`.
#include <doctest/doctest.h>

#include "modules/facts/ldif.h"
#include "engine/shell.h"
#include "tests/unit/module_helpers.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

std::string Lab(const std::string& directory, const std::string& users, const std::string& extra = "") {
  return "lab:\n  name: t\n" + directory + extra +
         "nodes:\n  ldap1: { address: 10.9.0.1 }\n  n2: { address: 10.9.0.2 }\n"
         "user_groups:\n  gpu-users: { gid: 3000 }\n  docker: { system: true }\n"
         "users:\n" + users;
}

const char* kDir = "  directory: { server: ldap1, base: \"dc=lab,dc=example\", uri: \"ldaps://ldap.lab.example\" }\n";

ModuleRun Run(const std::string& users, const std::string& ldif, int code = 0, const std::string& err = "") {
  Inventory inv = Load(Lab(kDir, users));
  return RunModule(inv, "directory", {{"directory:ldapsearch", {code, ldif, err}}});
}

std::string ChangeFor(const ModuleRun& run, const std::string& prefix) {
  for (const auto& c : run.changes)
    if (c.summary.rfind(prefix, 0) == 0) return c.summary + "\n" + c.diff;
  return "";
}

}  // namespace

TEST_SUITE("directory") {
  TEST_CASE("LDIF parser: real ldapsearch -LLL output, folded line, base64 value, garbage line skipped") {
    LdifParse p = ParseLdif(Fixture("directory/ldapsearch.txt"));
    REQUIRE(p.entries.size() == 4);
    CHECK(p.entries[0].dn == "dc=lab,dc=example");
    CHECK(p.entries[0].values("objectclass") == std::vector<std::string>{"dcObject", "organization"});
    const LdifEntry& alice = p.entries[2];
    CHECK(alice.dn == "uid=alice,ou=people,dc=lab,dc=example");
    CHECK(alice.values("cn") == std::vector<std::string>{"\xc3\x81lice M\xc3\xbcller"});
    CHECK(alice.values("homeDirectory") ==
          std::vector<std::string>{"/home/alice/with/a/very/long/path/that/will/need/folding/at/seventy/six/columns"});
    CHECK(alice.values("gidNumber") == std::vector<std::string>{"2001"});
    CHECK(p.entries[3].values("memberUid") == std::vector<std::string>{"bob", "carol"});
    CHECK(p.skipped_count == 1);
    CHECK(p.skipped[0] == "this line is garbage from a broken pipe");
  }

  TEST_CASE("LDIF parser: records without dn, bad base64, URL values and CRLF") {
    LdifParse p = ParseLdif("cn: orphan\nuid: x\n\ndn:: dWlkPWEsZGM9eA==\r\ncn:: !!!\r\ncn:< file:///etc/shadow\r\nsn: ok\r\n");
    REQUIRE(p.entries.size() == 1);
    CHECK(p.entries[0].dn == "uid=a,dc=x");
    CHECK(p.entries[0].attrs == std::vector<std::pair<std::string, std::string>>{{"sn", "ok"}});
    CHECK(p.skipped_count == 4);
  }

  TEST_CASE("LDIF builder: unsafe values are base64, names checked, nothing can add a line") {
    LdifBuilder b;
    b.dn("uid=alice,ou=people,dc=lab,dc=example").changetype("modify").op("replace", "loginShell");
    b.attr("loginShell", "/bin/bash\nuid: root").end_op();
    b.attr("cn", " leading space").attr("cn", "trailing ").attr("cn", ":colon").attr("cn", "<lt").attr("cn", "M\xc3\xbcller");
    b.attr("cn", "plain: with colon");
    CHECK(b.str() ==
          "dn: uid=alice,ou=people,dc=lab,dc=example\nchangetype: modify\nreplace: loginShell\n"
          "loginShell:: " + Base64Encode("/bin/bash\nuid: root") + "\n-\n"
          "cn:: " + Base64Encode(" leading space") + "\ncn:: " + Base64Encode("trailing ") + "\ncn:: " +
              Base64Encode(":colon") + "\ncn:: " + Base64Encode("<lt") + "\ncn:: " + Base64Encode("M\xc3\xbcller") +
              "\ncn: plain: with colon\n");
    // The builder's own output reads back as the same values.
    LdifParse back = ParseLdif(LdifBuilder().dn("dc=x").attr("cn", "a\nb\r\nc").attr("cn", "M\xc3\xbcller").str());
    REQUIRE(back.entries.size() == 1);
    CHECK(back.entries[0].values("cn") == std::vector<std::string>{"a\nb\r\nc", "M\xc3\xbcller"});
    CHECK_THROWS_AS(LdifBuilder().attr("cn\nuid", "x"), std::invalid_argument);
    CHECK_THROWS_AS(LdifBuilder().attr("", "x"), std::invalid_argument);
    CHECK_THROWS_AS(LdifBuilder().changetype("modrdn"), std::invalid_argument);
    CHECK_THROWS_AS(LdifBuilder().op("increment", "uidNumber"), std::invalid_argument);
    CHECK(LdifAttrName("cn;lang-en"));
    CHECK(LdifAttrName("0.9.2342.19200300.100.1.1"));
    CHECK_FALSE(LdifAttrName("1cn"));
  }

  TEST_CASE("DNs: RFC 4514 syntax, escaping and normalisation") {
    CHECK(NormalizeDn("dc=Lab, DC=Example") == "dc=lab,dc=example");
    CHECK(NormalizeDn("cn=a\\,b+uid=x,dc=y") == "cn=a\\,b+uid=x,dc=y");
    CHECK(NormalizeDn("cn=\\41b,dc=y") == "cn=ab,dc=y");
    std::string why;
    CHECK_FALSE(NormalizeDn("dc=lab,dc=", &why));
    CHECK(why == "RDN 2 'dc' has an empty value");
    CHECK_FALSE(NormalizeDn("lab.example", &why));
    CHECK(why == "RDN 1 'lab.example' has no '='");
    CHECK_FALSE(NormalizeDn("dc=lab;dc=example", &why));
    CHECK_FALSE(NormalizeDn("dc=lab,dc=ex\nample", &why));
    CHECK(why.find("control character") != std::string::npos);
    CHECK_FALSE(NormalizeDn("dc=lab,", &why));
    CHECK_FALSE(NormalizeDn("d c=lab", &why));
    CHECK(DnEscape("a,b+c\"d\\e<f>g;h=i") == "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h\\=i");
    CHECK(DnEscape("#x ") == "\\#x\\ ");
    CHECK(DnEscape(std::string("a\nb", 3)) == "a\\0Ab");
  }

  TEST_CASE("diff: entries added, changed and deleted; unlisted entries only listed; ous created") {
    ModuleRun run = Run("  alice: { uid: 2001, full_name: \"\xc3\x81lice M\xc3\xbcller\", accounts: directory, shell: /bin/zsh,"
                        " home: /home/alice/with/a/very/long/path/that/will/need/folding/at/seventy/six/columns,"
                        " groups: [gpu-users] }\n"
                        "  bob: { uid: 2002, accounts: directory, groups: [gpu-users], expires: 2022-01-08 }\n"
                        "  carl: { uid: 2003 }\n",
                        Fixture("directory/ldapsearch.txt"));
    CHECK(run.probe_keys == std::vector<std::string>{"directory:ldapsearch"});
    CHECK(run.lines().size() == 6);
    CHECK(ChangeFor(run, "ldap user alice") ==
          "ldap user alice (loginShell, -shadowExpire)\ndn: uid=alice,ou=people,dc=lab,dc=example\n~ loginShell: /bin/bash -> /bin/zsh\n"
          "- shadowExpire: 19000\n");
    // (the shadowExpire line: alice has no expires, her entry has one)
    CHECK(ChangeFor(run, "ldap ou groups") ==
          "ldap ou groups (ou=groups,dc=lab,dc=example)\ndn: ou=groups,dc=lab,dc=example\n+ objectClass: "
          "organizationalUnit\n+ ou: groups\n");
    CHECK(ChangeFor(run, "ldap group gpu-users") ==
          "ldap group gpu-users (cn=gpu-users,ou=groups,dc=lab,dc=example)\ndn: cn=gpu-users,ou=groups,dc=lab,dc=example\n"
          "+ objectClass: posixGroup\n+ cn: gpu-users\n+ gidNumber: 3000\n+ memberUid: alice\n+ memberUid: bob\n");
    CHECK(ChangeFor(run, "ldap user bob").find("+ shadowExpire: 19000\n") != std::string::npos);
    CHECK(ChangeFor(run, "ldap group bob").find("+ gidNumber: 2002\n") != std::string::npos);
    CHECK(ChangeFor(run, "ldap user carl").empty());  // a local account
    CHECK(run.warnings == std::vector<std::string>{
                              "ldap:unlisted: ldap entry cn=stranger,dc=lab,dc=example is not in the inventory: listed, "
                              "never changed or deleted",
                              "ldap:unlisted: ldapsearch printed 1 lines that are not LDIF; first: this line is garbage "
                              "from a broken pipe"});
    // Nothing deletes the stranger; the modify LDIF goes to ldapmodify over ldapi as root.
    for (const auto& c : run.changes) CHECK(c.command.find("stranger") == std::string::npos);
    for (const auto& c : run.changes)
      CHECK(c.command.find("| ldapmodify -Q -Y EXTERNAL -H ldapi:///") != std::string::npos);
  }

  TEST_CASE("diff: converged entry is a no-op; remove deletes; absent removed entry is a no-op") {
    const std::string users =
        "  alice: { uid: 2001, full_name: \"\xc3\x81lice M\xc3\xbcller\", accounts: directory,"
        " home: /home/alice/with/a/very/long/path/that/will/need/folding/at/seventy/six/columns, expires: 2022-01-08 }\n";
    ModuleRun run = Run(users, Fixture("directory/ldapsearch.txt"));
    CHECK(ChangeFor(run, "ldap user alice").empty());
    CHECK(run.all_notes().find("nothing to do because the entry of user alice matches") != std::string::npos);
    run = Run("  alice: { uid: 2001, accounts: directory, remove: true }\n  dave: { uid: 2004, accounts: directory, remove: true }\n",
              Fixture("directory/ldapsearch.txt"));
    CHECK(ChangeFor(run, "ldap user alice") ==
          "ldap user alice (delete uid=alice,ou=people,dc=lab,dc=example)\ndn: uid=alice,ou=people,dc=lab,dc=example\n- (entry deleted)\n");
    CHECK(ChangeFor(run, "ldap user dave").empty());
    CHECK(run.all_notes().find("user dave has no entry (remove)") != std::string::npos);
  }

  TEST_CASE("diff: a failed, cut or missing-base search plans nothing and fails the node") {
    const std::string users = "  alice: { uid: 2001, accounts: directory }\n";
    ModuleRun run = Run(users, "# labfleet: ldapsearch exit 255\n", 0, "ldap_sasl_interactive_bind: Can't contact LDAP server (-1)\n");
    CHECK(run.changes.empty());
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("failed (exit 255): ldap_sasl_interactive_bind: Can't contact LDAP server (-1)") != std::string::npos);
    run = Run(users, "# labfleet: ldapsearch exit 32\n");
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("the base dc=lab,dc=example does not exist") != std::string::npos);
    std::string cut = Fixture("directory/ldapsearch.txt");
    cut.resize(cut.find("# labfleet"));
    run = Run(users, cut);
    CHECK(run.changes.empty());
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("no complete answer") != std::string::npos);
  }

  TEST_CASE("only the server node gets directory resources; other nodes none") {
    Inventory inv = Load(Lab(kDir, "  alice: { uid: 2001, accounts: directory }\n"));
    ModuleRun run = RunModule(inv, "directory", {});
    REQUIRE(run.probes.size() == 1);
    // Root over the server's own socket, the managed attributes only (never userPassword), the base a quoted
    // argument, output bounded and followed by ldapsearch's exit status.
    CHECK(run.probes[0].command ==
          "sh -c '{ ldapsearch -Q -Y EXTERNAL -H ldapi:/// -LLL -b \"$1\" -s sub '\\''(objectClass=*)'\\'' objectClass "
          "uid cn uidNumber gidNumber homeDirectory loginShell shadowExpire memberUid ou; echo \"# labfleet: ldapsearch "
          "exit $?\"; } | head -c 16777216' ldap-probe 'dc=lab,dc=example'");
    Inventory other = Load("lab:\n  name: t\n  directory: { server: n2, base: \"dc=x\" }\nnodes:\n  n1: { address: 10.0.0.1 }\n"
                           "  n2: { address: 10.0.0.2 }\nusers:\n  alice: { uid: 2001, accounts: directory }\n");
    run = RunModule(other, "directory", {});
    CHECK(run.probe_keys.empty());
    CHECK(run.changes.empty());
  }

  TEST_CASE("validate: directory keys, DN, server, uri, CA file, accounts") {
    auto errors = [](const std::string& yaml) {
      Findings f;
      Load(yaml, &f);
      return All(f);
    };
    CHECK(errors(Lab("  directory: { server: ldap2, base: \"dc=lab,,dc=example\", uri: \"http://x\", sevrer: x }\n",
                     "  alice: { uid: 2001, accounts: directory, password_hash: \"$6$x$y\" }\n")) ==
          "inventory/test.yaml:3:76: unknown-key: unknown key 'sevrer' in lab.directory; did you mean 'server'?\n"
          "inventory/test.yaml:3:24: unknown-node: lab.directory.server 'ldap2' is not a node of the inventory; did you mean 'ldap1'?\n"
          "inventory/test.yaml:3:37: invalid-dn: lab.directory.base 'dc=lab,,dc=example' is not a DN (RDN 2 '' has no '='); write it like dc=lab,dc=example\n"
          "inventory/test.yaml:3:64: invalid-url: lab.directory.uri 'http://x' has the scheme 'http:', expected ldap:, ldaps: (ldaps://HOST or ldap://HOST)\n"
          "inventory/test.yaml:11:44: directory-password: user 'alice' lives in the directory: labfleet never writes passwords there; remove password_hash and set it with ldappasswd\n");
    CHECK(errors(Lab("", "  alice: { uid: 2001 }\n", "  accounts: directory\n")) ==
          "inventory/test.yaml:3:3: missing-required: user 'alice' has accounts: directory but the lab has no directory; "
          "add `directory: { server: NODE, base: \"dc=lab,dc=example\" }` to the lab section (docs/directory.md)\n");
    CHECK(errors(Lab("  directory: ldap1\n", "  alice: { uid: 2001, accounts: directory }\n")) ==
          "inventory/test.yaml:3:14: wrong-type: 'directory' of the lab must be a map, got 'ldap1'\n");
    CHECK(errors(Lab("", "  alice: { uid: 2001, accounts: ldap }\n")).find("invalid-value: 'accounts' of user 'alice' must be one of local, directory") != std::string::npos);
    CHECK(errors(Lab("  directory: { server: ldap1, base: \"dc=x\", ca: files/nope.pem }\n", "  alice: { uid: 2001 }\n"))
              .find("missing-file: lab.directory.ca 'files/nope.pem' cannot be read") != std::string::npos);
    // The CA file: read from the inventory repository, must be a PEM certificate.
    TempDir d("labfleet-dir");
    d.write("inventory/lab.yaml", Lab("  directory: { server: ldap1, base: \"dc=lab,dc=example\", ca: ../files/ldap-ca.pem }\n",
                                      "  alice: { uid: 2001, accounts: directory }\n"));
    d.write("files/ldap-ca.pem", Fixture("directory/ldap-ca.pem"));
    Findings ok;
    ValidateInventory(LoadInventoryDir(d.str("inventory"), ok), ok);
    CHECK(All(ok) == "");
    d.write("files/ldap-ca.pem", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n");
    Findings bad;
    ValidateInventory(LoadInventoryDir(d.str("inventory"), bad), bad);
    CHECK(All(bad) == d.str("inventory/lab.yaml") + ":3:62: not-pem: lab.directory.ca '../files/ldap-ca.pem' is not a PEM certificate "
                      "(-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE----- around base64); give the CA certificate "
                      "that signed the server's certificate\n");
    // accounts: directory lab-wide, local per user
    Inventory inv = Load(Lab(kDir, "  alice: { uid: 2001 }\n  bob: { uid: 2002, accounts: local }\n", "  accounts: directory\n"));
    CHECK(inv.user("alice")->accounts == "directory");
    CHECK(inv.user("bob")->accounts == "local");
  }
}
