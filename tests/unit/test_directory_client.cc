// directory client: which nodes are clients, sssd.conf as rendered, the nsswitch.conf edit on Debian's own file
// (and the lines it refuses), the client's changes on fake probe output (sssctl precheck, restart handler,
// pam-auth-update, sss_cache after a directory change), the sshd drop-in's AuthorizedKeysCommand, and the
// directory module's ssh keys (openssh-lpk schema, ldapPublicKey + sshPublicKey).
#include <doctest/doctest.h>

#include <regex>

#include "modules/directory_client.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

const char* kKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOZGkfYVpiV1MjHv6msbYkUctI81lbtpIw/gX95QfkvY alice@lab";

// n2 (node 0: the one RunModule looks at) is a client; ldap1 is the server.
std::string Lab(const std::string& directory_extra = "", const std::string& n2 = "",
                const std::string& users = "  alice: { uid: 2001, groups: [gpu-users] }\n", bool server_first = false) {
  const std::string nodes = server_first ? "  ldap1: { address: 10.9.0.1 }\n  n2: { address: 10.9.0.2" + n2 + " }\n"
                                         : "  n2: { address: 10.9.0.2" + n2 + " }\n  ldap1: { address: 10.9.0.1 }\n";
  return std::string("lab:\n  name: t\n  accounts: directory\n"
                     "  directory: { server: ldap1, base: \"dc=lab,dc=example\", uri: \"ldap://127.0.0.1:3899\"") +
         directory_extra + " }\n"
         "nodes:\n" + nodes +
         "user_groups:\n  gpu-users: { gid: 3000 }\n"
         "users:\n" + users;
}

const char* kDebianNsswitch =
    "# /etc/nsswitch.conf\n#\n# Example configuration of GNU Name Service Switch functionality.\n\n"
    "passwd:         files systemd\ngroup:          files systemd\nshadow:         files systemd\n"
    "gshadow:        files systemd\n\nhosts:          files dns\nnetworks:       files\n\n"
    "protocols:      db files\nservices:       db files\nethers:         db files\nrpc:            db files\n\n"
    "netgroup:       nis\n";

std::vector<std::string> Summaries(const ModuleRun& run) {
  std::vector<std::string> out;
  for (const auto& c : run.changes) out.push_back(c.summary);
  return out;
}

}  // namespace

TEST_SUITE("directory_client") {
  TEST_CASE("nsswitch.conf: passwd, group, shadow get sss after the node's sources; the rest byte for byte") {
    std::string why;
    auto out = EditNsswitch(kDebianNsswitch, &why);
    REQUIRE(out);
    std::string want = kDebianNsswitch;
    for (const char* db : {"passwd:         files systemd\n", "group:          files systemd\n",
                           "shadow:         files systemd\n"}) {
      std::string line = db;
      want.replace(want.find(line), line.size(), line.substr(0, line.size() - 1) + " sss\n");
    }
    CHECK(*out == want);
    CHECK(EditNsswitch(*out, &why) == out);  // a second edit changes nothing
    // sss moved last, files added first, a missing line appended, a comment kept
    CHECK(EditNsswitch("passwd: sss compat # mine\ngroup: files\n", &why) ==
          "passwd:         files compat sss # mine\ngroup:          files sss\nshadow:         files sss\n");
    CHECK_FALSE(EditNsswitch("passwd: files [NOTFOUND=return] sss\n", &why));
    CHECK(why.find("'[NOTFOUND=return]'") != std::string::npos);
    CHECK_FALSE(EditNsswitch("passwd: files\npasswd: sss\n", &why));
    CHECK(why.find("two passwd: lines") != std::string::npos);
  }

  TEST_CASE("sssd.conf: from lab.directory; CA only when given; no value can add a line") {
    DirectoryClient c{"ldaps://ldap.lab.example", "dc=lab,dc=example", "", true};
    std::string conf = RenderSssdConf(c);
    CHECK(conf.find("[domain/lab]\nid_provider = ldap\nauth_provider = ldap\n") != std::string::npos);
    CHECK(conf.find("ldap_uri = ldaps://ldap.lab.example\nldap_search_base = dc=lab,dc=example\n"
                    "ldap_user_search_base = ou=people,dc=lab,dc=example\n"
                    "ldap_group_search_base = ou=groups,dc=lab,dc=example\n"
                    "ldap_user_ssh_public_key = sshPublicKey\n") != std::string::npos);
    CHECK(conf.find("services = nss, pam, ssh\n") != std::string::npos);
    CHECK(conf.find("ldap_tls_cacert") == std::string::npos);
    c.ca = "files/ca.pem";
    CHECK(RenderSssdConf(c).find("ldap_tls_cacert = /etc/sssd/labfleet-ldap-ca.pem\nldap_tls_reqcert = demand\n") !=
          std::string::npos);
    c.base = "dc=lab\nid_provider = local";
    CHECK_THROWS_AS(RenderSssdConf(c), std::invalid_argument);
  }

  TEST_CASE("clients: every node but the server; directory_client false opts out, true opts the server in") {
    Inventory inv = Load(Lab());
    CHECK(DirectoryClientOf(inv, inv.nodes[0], inv.settings(inv.nodes[0])));
    CHECK_FALSE(DirectoryClientOf(inv, inv.nodes[1], inv.settings(inv.nodes[1])));
    inv = Load(Lab("", ", directory_client: false"));
    CHECK_FALSE(DirectoryClientOf(inv, inv.nodes[0], inv.settings(inv.nodes[0])));
    CHECK(RunModule(inv, "directory_client", {}).changes.empty());
    inv = Load(Lab("", ", directory_client: { homes: shared }"));
    auto c = DirectoryClientOf(inv, inv.nodes[0], inv.settings(inv.nodes[0]));
    REQUIRE(c);
    CHECK_FALSE(c->mkhomedir);
    Findings f;
    Load(Lab("", ", directory_client: { homes: nfs }"), &f);
    CHECK(All(f).find("directory_client.homes must be local or shared") != std::string::npos);
  }

  TEST_CASE("client changes: packages, sssd.conf checked by sssctl before it is installed, nsswitch, mkhomedir, cache") {
    Inventory inv = Load(Lab());
    ProbeResults res = {{"directory_client:dpkg", {0, "sssd-ldap installed\nlibnss-sss not-installed\ngarbage\n", ""}},
                        {"file:/etc/nsswitch.conf", {0, FileOut(kDebianNsswitch), ""}},
                        {"file:/etc/pam.d/common-session", {0, FileOut("session required pam_unix.so\n"), ""}}};
    ModuleRun run = RunModule(inv, "directory_client", res);
    CHECK(Summaries(run) == std::vector<std::string>{
                                "packages libnss-sss libpam-sss sssd-tools (directory client)",
                                run.changes.size() > 1 ? run.changes[1].summary : "",
                                "restart sssd",
                                run.changes.size() > 3 ? run.changes[3].summary : "",
                                "pam_mkhomedir (pam-auth-update --enable mkhomedir)",
                                "sssd cache (sss_cache -E)"});
    REQUIRE(run.changes.size() == 6);
    CHECK(run.changes[0].command.find("apt-get install -y -q --no-install-recommends libnss-sss libpam-sss sssd-tools") !=
          std::string::npos);
    CHECK(run.changes[1].kind == Change::Kind::PutFile);
    CHECK(run.changes[1].file.path == "/etc/sssd/sssd.conf");
    CHECK(run.changes[1].file.mode == 0600);
    CHECK(run.changes[1].precheck == "sssctl config-check -c \"$LF_NEW\"");
    CHECK(run.changes[2].handler == "restart sssd");
    CHECK(run.changes[3].file.bytes.find("passwd:         files systemd sss\n") != std::string::npos);
    CHECK(run.changes[4].command.find("pam-auth-update --enable mkhomedir") != std::string::npos);
    CHECK(run.changes[5].command.find("sss_cache -E") != std::string::npos);

    // Converged: the digest of the inventory's directory users is on the node; a changed shell changes it.
    std::smatch m;
    const std::string cache_cmd = run.changes[5].command;
    REQUIRE(std::regex_search(cache_cmd, m, std::regex("[0-9a-f]{16}")));
    const std::string digest = m.str();
    res["file:/var/lib/labfleet/directory-client"] = {0, FileOut(digest + "\n"), ""};
    CHECK(Summaries(RunModule(inv, "directory_client", res)).back() != "sssd cache (sss_cache -E)");
    inv = Load(Lab("", "", "  alice: { uid: 2001, groups: [gpu-users], shell: /bin/zsh }\n"));
    CHECK(Summaries(RunModule(inv, "directory_client", res)).back() == "sssd cache (sss_cache -E)");
  }

  TEST_CASE("user_groups: a group only directory users are in is not made locally (it would shadow the directory's)") {
    Inventory inv = Load(Lab());
    CHECK(Summaries(RunModule(inv, "user_groups", {})).empty());
    inv = Load(Lab("", "", "  alice: { uid: 2001, groups: [gpu-users] }\n"
                           "  bob: { uid: 2002, accounts: local, groups: [gpu-users] }\n"));
    CHECK(Summaries(RunModule(inv, "user_groups", {})) ==
          std::vector<std::string>{"group gpu-users (gid 3000)", "group bob (gid 2002)"});
  }

  TEST_CASE("sshd: a client's drop-in takes keys from sss_ssh_authorizedkeys; the map may not set them") {
    Inventory inv = Load(Lab());
    ModuleRun run = RunModule(inv, "sshd", {});
    REQUIRE(run.changes.size() == 2);
    CHECK(run.changes[0].file.bytes ==
          "# Managed by labfleet from the inventory; edits here are overwritten.\n"
          "AuthorizedKeysCommand /usr/bin/sss_ssh_authorizedkeys\nAuthorizedKeysCommandUser nobody\n");
    CHECK(run.changes[0].verify == "sshd -t");
    CHECK(run.changes[0].reconnect_check);
    Findings f;
    Load(Lab("", ", sshd: { AuthorizedKeysCommand: /bin/true }"), &f);
    CHECK(All(f).find("AuthorizedKeysCommand is set by labfleet on directory clients") != std::string::npos);
  }

  TEST_CASE("directory ssh_keys: openssh-lpk schema added when missing; ldapPublicKey + sshPublicKey for keys") {
    std::string users = std::string("  alice: { uid: 2001, groups: [gpu-users], ssh_keys: [\"") + kKey + "\"] }\n";
    Inventory inv = Load(Lab(", ssh_keys: true", "", users, true));  // the server's view: ldap1 first
    const std::string entry =
        "dn: uid=alice,ou=people,dc=lab,dc=example\nobjectClass: account\nobjectClass: posixAccount\n"
        "objectClass: shadowAccount\nuid: alice\ncn: alice\nuidNumber: 2001\ngidNumber: 2001\n"
        "homeDirectory: /home/alice\nloginShell: /bin/bash\n\n# labfleet: ldapsearch exit 0\n";
    ModuleRun run = RunModule(inv, "directory",
                              {{"directory:ldapsearch", {0, entry, ""}},
                               {"directory:lpk-schema", {0, "# labfleet: ldapsearch exit 0\n", ""}}});
    CHECK(run.probe_keys == std::vector<std::string>{"directory:lpk-schema", "directory:ldapsearch"});
    REQUIRE(!run.changes.empty());
    CHECK(run.changes[0].summary == "ldap schema openssh-lpk (cn=config)");
    CHECK(run.changes[0].command.find("ldapadd -Q -Y EXTERNAL -H ldapi:///") != std::string::npos);
    CHECK(run.changes[0].command.find("ldapPublicKey") != std::string::npos);
    CHECK(run.changes[0].command.find("SUP top AUXILIARY") != std::string::npos);
    bool user = false;
    for (const auto& c : run.changes)
      if (c.summary == "ldap user alice (+objectClass, sshPublicKey)") {
        user = true;
        CHECK(c.diff == std::string("dn: uid=alice,ou=people,dc=lab,dc=example\n+ objectClass: ldapPublicKey\n"
                                    "+ sshPublicKey: ") + kKey + "\n");
      }
    CHECK(user);
    // schema present, key in place: the user entry is converged
    run = RunModule(inv, "directory",
                    {{"directory:ldapsearch",
                      {0, entry.substr(0, entry.find("\n\n")) + "\nobjectClass: ldapPublicKey\nsshPublicKey: " + kKey +
                              "\n\n# labfleet: ldapsearch exit 0\n", ""}},
                     {"directory:lpk-schema", {0, "dn: cn={4}openssh-lpk,cn=schema,cn=config\n\n# labfleet: ldapsearch exit 0\n", ""}}});
    for (const auto& c : run.changes) CHECK(c.summary.find("ldap user alice") == std::string::npos);
    for (const auto& c : run.changes) CHECK(c.summary.find("schema") == std::string::npos);
    // a failing schema probe fails the node, never adds the schema blindly
    run = RunModule(inv, "directory",
                    {{"directory:ldapsearch", {0, entry, ""}},
                     {"directory:lpk-schema", {0, "# labfleet: ldapsearch exit 50\n", "Insufficient access"}}});
    REQUIRE(!run.errors.empty());
    CHECK(run.errors[0].find("cannot tell whether cn=config holds the openssh-lpk schema") != std::string::npos);
  }
}
