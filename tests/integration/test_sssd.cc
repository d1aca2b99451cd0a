// directory clients with a real slapd and a real sssd: node1 runs slapd (tests/integration/test_directory_slapd.h,
// listening on ldapi:/// and on ldap://127.0.0.1:PORT, which node2 reaches: the nodes share the host's network),
// node2 is a directory client. labfleet loads the openssh-lpk schema and writes alice's entry with her key on
// node1, and on node2 writes sssd.conf, nsswitch.conf, pam_mkhomedir and the sshd drop-in; the test then starts
// `sssd -D` in node2 (no systemd there: the systemctl double records the "restart sssd" handler) and checks with
// the node's own tools: getent and id through sss, sss_ssh_authorizedkeys, an ssh login with her key (and a
// refused one with another key), a shell change seen at once, empty re-plans, and no local account for alice.
// Second case (issue 13 §5): a directory user in the local docker group by name, her home made on the node
// (a planted link for another one not followed), her subuid/subgid lines.
#include <doctest/doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"
#include "tests/integration/test_directory_slapd.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

// A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  close(fd);
  return ntohs(a.sin_port);
}

std::string Inventory(int port, const std::string& shell, const std::string& key) {
  return "lab:\n  name: t\n  accounts: directory\n"
         "  directory: { server: node1, base: \"dc=lab,dc=example\", uri: \"ldap://127.0.0.1:" + std::to_string(port) +
         "\", ssh_keys: true }\n"
         "user_groups:\n  gpu-users: { gid: 3000 }\n"
         "users:\n"
         "  alice: { uid: 2001, shell: " + shell + ", groups: [gpu-users], ssh_keys: [\"" + key + "\"] }\n";
}

// Issue 13 §5: directory users with local things on node2. alice is in the local system group docker (and in
// gpu-users, a directory-only group) and has rootless Docker ranges; mallory's home is a symbolic link planted on
// the node. `docker_for_alice`: false takes her out of docker again.
std::string LocalThingsInventory(int port, bool docker_for_alice) {
  return "lab:\n  name: t\n  accounts: directory\n"
         "  directory: { server: node1, base: \"dc=lab,dc=example\", uri: \"ldap://127.0.0.1:" + std::to_string(port) +
         "\" }\n"
         "user_groups:\n  gpu-users: { gid: 3000 }\n  docker: { system: true }\n"
         "users:\n"
         "  alice: { uid: 2001, groups: [gpu-users" + std::string(docker_for_alice ? ", docker" : "") +
         "], rootless_docker: true }\n"
         "  mallory: { uid: 2002 }\n";
}

// `ssh alice@node2 id -un` from this host with `key`, nothing of the host's ssh configuration used.
Sandbox::ExecResult SshAs(const Sandbox& sbx, const std::string& user, const std::string& key) {
  const SandboxNode& n = sbx.node("node2");
  return RunCommand(Cmd("ssh").arg("-F").arg("/dev/null").arg("-i").arg(key).arg("-o").arg("IdentitiesOnly=yes")
                        .arg("-o").arg("BatchMode=yes").arg("-o").arg("UserKnownHostsFile=" + sbx.known_hosts())
                        .arg("-o").arg("StrictHostKeyChecking=yes").arg("-o").arg("ConnectTimeout=5")
                        .arg("-p").arg(std::to_string(n.port)).arg(user + "@" + n.address).arg("id").arg("-un")
                        .str());
}

// getent through sss, retried while sssd comes up (it answers "not found" until its LDAP connection is up).
std::string GetentPasswd(const Sandbox& sbx, const std::string& name) {
  for (int i = 0; i < 100; ++i) {
    auto r = sbx.exec("node2", "getent passwd " + ShellQuote(name));
    if (r.exit_code == 0) return r.out;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return "";
}

}  // namespace

TEST_SUITE("integration-sssd") {
  TEST_CASE("directory client: sssd.conf, nsswitch, mkhomedir, keys from LDAP; getent, id, ssh login; shell change") {
    Sandbox sbx({.nodes = 2});
    const int port = FreePort();
    MustExec(sbx, "node1", SlapdSetup("ldapi:/// ldap://127.0.0.1:" + std::to_string(port) + "/"));
    InstallDoubles(sbx, "node2", {"systemctl"});
    SeedUnit(sbx, "node2", "sssd.service", "enabled", "active");  // what the sssd package installs
    TempInventory inv(sbx);
    const std::string alice_key = (inv.root / "alice").string(), other_key = (inv.root / "other").string();
    for (const auto& k : {alice_key, other_key})
      REQUIRE(RunCommand(Cmd("ssh-keygen").arg("-q").arg("-t").arg("ed25519").arg("-N").arg("").arg("-C").arg("alice@lab")
                             .arg("-f").arg(k).str()).exit_code == 0);
    std::string pub = ReadFile(alice_key + ".pub");
    pub.erase(pub.find_last_not_of('\n') + 1);

    inv.write("inventory/lab.yaml", Inventory(port, "/bin/bash", pub));
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    const std::string applied = Summaries(r);
    CHECK(applied.find("ldap schema openssh-lpk (cn=config)") != std::string::npos);
    CHECK(applied.find("sssd.conf /etc/sssd/sssd.conf") != std::string::npos);
    CHECK(applied.find("pam_mkhomedir (pam-auth-update --enable mkhomedir)") != std::string::npos);
    CHECK(applied.find("sshd drop-in /etc/ssh/sshd_config.d/50-labfleet.conf") != std::string::npos);

    // node1 (the server) holds her key; node2 has the client files, and restarted sssd once (the double)
    CHECK(Exec(sbx, "node1", "ldapsearch -Q -Y EXTERNAL -H ldapi:/// -LLL -o ldif-wrap=no -s base -b "
                             "uid=alice,ou=people,dc=lab,dc=example sshPublicKey") ==
          "dn: uid=alice,ou=people,dc=lab,dc=example\nsshPublicKey: " + pub + "\n\n");
    CHECK(Exec(sbx, "node2", "stat -c '%a %U:%G' /etc/sssd/sssd.conf") == "600 root:root\n");
    CHECK(Exec(sbx, "node2", "grep -E '^(passwd|group|shadow):' /etc/nsswitch.conf") ==
          "passwd:         files systemd sss\ngroup:          files systemd sss\nshadow:         files systemd sss\n");
    CHECK(Exec(sbx, "node2", "grep -c pam_mkhomedir.so /etc/pam.d/common-session") == "1\n");
    CHECK(Exec(sbx, "node2", "grep AuthorizedKeysCommand /etc/ssh/sshd_config.d/50-labfleet.conf") ==
          "AuthorizedKeysCommand /usr/bin/sss_ssh_authorizedkeys\nAuthorizedKeysCommandUser nobody\n");
    auto calls = DoubleActions(sbx, "node2");
    CHECK(CountCalls(calls, "systemctl restart sssd") == 1);
    CHECK(sbx.exec("node1", "test -e /etc/sssd/sssd.conf").exit_code != 0);  // the server is no client

    // sssd as the restart would have started it; then the node's own tools through sss
    MustExec(sbx, "node2", "sssd -D");
    CHECK(GetentPasswd(sbx, "alice") == "alice:*:2001:2001:alice:/home/alice:/bin/bash\n");
    CHECK(Exec(sbx, "node2", "id -Gn alice").find("gpu-users") != std::string::npos);
    CHECK(Exec(sbx, "node2", "getent group gpu-users") == "gpu-users:*:3000:alice\n");
    CHECK(Exec(sbx, "node2", "sss_ssh_authorizedkeys alice") == pub + "\n");
    // never a local account for her (users module), nor an authorized_keys file (ssh_keys module)
    CHECK(Exec(sbx, "node2", "grep -c -e '^alice:' -e '^gpu-users:' /etc/passwd /etc/group || true") ==
          "/etc/passwd:0\n/etc/group:0\n");
    CHECK(sbx.exec("node2", "test -e /home/alice/.ssh/authorized_keys").exit_code != 0);

    // ssh: her key from LDAP logs in, another key is refused
    auto in = SshAs(sbx, "alice", alice_key);
    INFO(in.out << in.err);
    CHECK(in.exit_code == 0);
    CHECK(in.out == "alice\n");
    auto refused = SshAs(sbx, "alice", other_key);
    CHECK(refused.exit_code == 255);
    CHECK(refused.err.find("Permission denied (publickey") != std::string::npos);

    // she resolves on node2 now: labfleet makes her home there (homes are local; issue 13 §5, next case)
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) == "home /home/alice of directory user alice (0700 2001:2001, from /etc/skel)");
    auto plan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 0);

    // a shell change: the entry on node1, sss_cache -E on node2, seen at once (no cache timeout)
    inv.write("inventory/lab.yaml", Inventory(port, "/bin/sh", pub));
    ClearDoubleCalls(sbx, "node2");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) == "ldap user alice (loginShell) | sssd cache (sss_cache -E)");
    CHECK(Exec(sbx, "node2", "getent passwd alice") == "alice:*:2001:2001:alice:/home/alice:/bin/sh\n");
    CHECK(DoubleActions(sbx, "node2").empty());  // sssd.conf unchanged: no restart
    plan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 0);
  }

  TEST_CASE("directory client: a directory user in the local docker group by name, her home made, subuid/subgid") {
    Sandbox sbx({.nodes = 2});
    const int port = FreePort();
    MustExec(sbx, "node1", SlapdSetup("ldapi:/// ldap://127.0.0.1:" + std::to_string(port) + "/"));
    InstallDoubles(sbx, "node2", {"systemctl"});
    SeedUnit(sbx, "node2", "sssd.service", "enabled", "active");
    // the node's own docker group (a package made it) with a local member labfleet must keep; a link where
    // mallory's home goes, planted by someone who hopes root chowns /etc for her
    MustExec(sbx, "node2", "groupadd --system docker && gpasswd -a daemon docker >/dev/null && ln -s /etc /home/mallory");
    const std::string etc_owner = Exec(sbx, "node2", "stat -c '%u:%g %a' /etc");
    TempInventory inv(sbx);
    inv.write("inventory/lab.yaml", LocalThingsInventory(port, true));

    // sssd is not running yet: alice does not resolve on node2, so neither her membership nor her home is planned
    auto plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(plan.out.find("directory user alice is not added to the local group docker yet") != std::string::npos);
    CHECK(plan.out.find("home /home/alice of directory user alice is not made: alice does not resolve") != std::string::npos);
    // The node's "restart sssd" starts sssd and returns once it answers, as systemd would with sssd's
    // Type=notify unit (the systemctl double only records it; the stand-in waits for a lookup): ONE apply
    // configures the client, sssd starts, alice resolves, and the second pass (Change::reprobe) adds her to the
    // local group and makes her home before the re-probe proves the node converged.
    MustExec(sbx, "node2",
             "mv /usr/local/sbin/systemctl /usr/local/sbin/systemctl-double && printf '%s\\n' '#!/bin/sh' "
             "'case \"$*\" in \"restart sssd\"|\"restart sssd.service\") pgrep -x sssd >/dev/null || sssd -D; "
             "i=0; until getent passwd alice >/dev/null || [ $i -ge 100 ]; do sleep 0.1; i=$((i+1)); done;; esac' "
             "'exec /usr/local/sbin/systemctl-double \"$@\"' >/usr/local/sbin/systemctl && chmod 755 /usr/local/sbin/systemctl");
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r).find("sssd.conf /etc/sssd/sssd.conf") != std::string::npos);
    std::string note;
    const auto applied = r.json();
    for (const auto& n : applied["apply"])
      if (n["node"] == "node2" && n.contains("notes")) note = n["notes"].dump();
    CHECK(note.find("a second pass applied 2 change(s) that the first one made visible to the probe: ") != std::string::npos);
    CHECK(note.find("group docker members +alice (directory users, by name in /etc/group)") != std::string::npos);
    CHECK(note.find("home /home/alice of directory user alice (0700 2001:2001, from /etc/skel)") != std::string::npos);
    REQUIRE(GetentPasswd(sbx, "alice") == "alice:*:2001:2001:alice:/home/alice:/bin/bash\n");
    REQUIRE(GetentPasswd(sbx, "mallory") == "mallory:*:2002:2002:mallory:/home/mallory:/bin/bash\n");
    plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(plan.out.find("/home/mallory is a symbolic link, not a directory: labfleet never follows or replaces it") !=
          std::string::npos);

    // independent tools on node2: the local line lists her by name (daemon kept), id through sss has both groups
    const std::string docker = Exec(sbx, "node2", "getent group docker");
    CHECK(docker.substr(docker.rfind(':')) == ":daemon,alice\n");
    const std::string groups = Exec(sbx, "node2", "id -Gn alice");
    CHECK(groups.find("docker") != std::string::npos);
    CHECK(groups.find("gpu-users") != std::string::npos);
    // never a local account: no passwd or shadow line, no local gpu-users (it lives in the directory)
    CHECK(Exec(sbx, "node2", "grep -c -e '^alice:' -e '^mallory:' /etc/passwd /etc/shadow || true") ==
          "/etc/passwd:0\n/etc/shadow:0\n");
    CHECK(Exec(sbx, "node2", "grep -c '^gpu-users:' /etc/group || true") == "0\n");
    // her home: uid, gid, mode from the inventory, /etc/skel's files hers too
    CHECK(Exec(sbx, "node2", "stat -c '%u %g %a %F' /home/alice") == "2001 2001 700 directory\n");
    CHECK(Exec(sbx, "node2", "find /home/alice -mindepth 1 ! -uid 2001 | wc -l") == "0\n");
    CHECK(Exec(sbx, "node2", "ls -A /etc/skel | wc -l") == Exec(sbx, "node2", "ls -A /home/alice | wc -l"));
    // mallory's link neither followed nor replaced
    CHECK(Exec(sbx, "node2", "stat -c %F /home/mallory") == "symbolic link\n");
    CHECK(Exec(sbx, "node2", "stat -c '%u:%g %a' /etc") == etc_owner);
    // her subordinate ids, by name
    // (the allocation docs/inventory.md gives: 100000 + (uid - 1000) * 65536, 65536 ids)
    const std::string line = "alice:" + std::to_string(100000 + (2001 - 1000) * 65536LL) + ":65536\n";
    CHECK(Exec(sbx, "node2", "grep '^alice:' /etc/subuid") == line);
    CHECK(Exec(sbx, "node2", "grep '^alice:' /etc/subgid") == line);
    plan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 0);

    // out of docker in the inventory: taken out of the local line, daemon kept
    inv.write("inventory/lab.yaml", LocalThingsInventory(port, false));
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r).find("group docker members -alice (directory users, by name in /etc/group)") != std::string::npos);
    CHECK(Exec(sbx, "node2", "getent group docker | cut -d: -f1,4") == "docker:daemon\n");
    plan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 0);
  }
}
