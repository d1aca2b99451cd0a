// labfleet init on sandbox nodes prepared by hand the way running labs look: accounts made with useradd at
// scattered uids (one of them with another uid on one node), a group with members, authorized keys, subordinate
// ids, two hand-written NFS lines in fstab, labfleet's /etc/hosts block, a daemon.json with address pools on two of
// the three nodes, an sshd drop-in. Then: the written inventory validates, `plan` against the same nodes changes
// nothing but the listed disagreement (and records adoption), the disagreement names both uids and their nodes,
// and a second init (given --nodes instead of --from) into a new folder writes byte-identical files.
// Everything happens inside the sandbox nodes; the host's /etc, users and mounts are never touched.
#include <doctest/doctest.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <stdlib.h>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;
namespace fs = std::filesystem;

namespace {

const char* kKeyAlice = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4XfzBjbhLT8kuNKAnbnTmasdRStS7JwTXIfn8TkewI alice@laptop";
const char* kKeyBob = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMnnoX5Pie762G+b9mPQa4Pf8qSoPb+l1fZYVfW6q2wH bob@laptop";
const std::string kFrankName = "O'Brien, Frank # {lead} - \"x\" [y]";

// A scratch directory on the host (/var/tmp/labfleet-init-XXXXXX), removed with everything in it.
struct ScratchDir {
  fs::path path;
  ScratchDir() {
    char tmpl[] = "/var/tmp/labfleet-init-XXXXXX";
    if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
    path = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::map<std::string, std::string> Files(const fs::path& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out[fs::relative(e.path(), dir).string()] = ReadFile(e.path());
  return out;
}

void AddUser(const Sandbox& sbx, const std::string& node, const std::string& name, int uid, const std::string& gecos,
             const std::string& shell, const std::string& extra = "") {
  using labfleet::Cmd;
  Exec(sbx, node,
       Cmd("useradd").arg("-u").arg(std::to_string(uid)).arg("-U").arg("-m").arg("-s").arg(shell).arg("-c").arg(gecos)
               .arg("-K").arg("SUB_UID_COUNT=0").arg("-K").arg("SUB_GID_COUNT=0").str() +
           " " + extra + " " + labfleet::ShellQuote(name));
}

void AddKey(const Sandbox& sbx, const std::string& node, const std::string& user, const std::string& key) {
  using labfleet::Cmd;
  const std::string ssh = "/home/" + user + "/.ssh";
  Exec(sbx, node,
       Cmd("install").arg("-d").arg("-m").arg("0700").arg("-o").arg(user).arg("-g").arg(user).arg(ssh).str() + " && " +
           Cmd("printf").arg("%s\\n").arg(key).raw(">").arg(ssh + "/authorized_keys").str() + " && " +
           Cmd("chown").arg(user + ":" + user).arg(ssh + "/authorized_keys").str() + " && " +
           Cmd("chmod").arg("0600").arg(ssh + "/authorized_keys").str());
}

void PrepareLab(const Sandbox& sbx) {
  for (const std::string n : {"node1", "node2", "node3"}) {
    Exec(sbx, n, "groupadd -g 3000 gpu-users");
    AddUser(sbx, n, "alice", 2001, "Alice Kim", "/bin/bash");
    AddUser(sbx, n, "bob", 2002, "Bob Lee", "/bin/sh");
    // carol: 2003 on node1 and node2, 2013 on node3 (made there in another order, years ago).
    AddUser(sbx, n, "carol", n == "node3" ? 2013 : 2003, "Carol", "/bin/bash");
    if (n != "node3") AddUser(sbx, n, "dave", 2104, "Dave (visitor)", "/bin/bash", "-e 2027-06-30");
    AddUser(sbx, n, "frank", 3107, kFrankName, "/bin/bash");
    AddUser(sbx, n, "gina", 2450, "", "/bin/bash");
    Exec(sbx, n, "gpasswd -M alice,bob,carol gpu-users >/dev/null && gpasswd -a alice sudo >/dev/null");
    AddKey(sbx, n, "alice", kKeyAlice);
    AddKey(sbx, n, "bob", kKeyBob);
    AddKey(sbx, n, "gina", kKeyBob);
    Exec(sbx, n, "chmod 0644 /home/gina/.ssh/authorized_keys");  // common, and not labfleet's 0600
    // alice uses rootless Docker: the range labfleet derives from her uid (100000 + (2001 - 1000) * 65536).
    Exec(sbx, n, "echo alice:65701536:65536 >>/etc/subuid && echo alice:65701536:65536 >>/etc/subgid");
    Exec(sbx, n, "apt-mark hold bash >/dev/null");  // in the node's own dpkg database (its overlay)
    Exec(sbx, n,
         "printf '%s\\n' 'nas:/mnt/HDD/home /home nfs vers=4.2,hard,noatime 0 0' "
         "'nas:/mnt/SSD/public /media/public nfs ro,fsc 0 0' >>/etc/fstab && mkdir -p /media/public");
    // ... and a mount labfleet already manages (its block), whose mount point exists.
    Exec(sbx, n,
         "mkdir -p /srv/scratch && printf '%s\\n' '# BEGIN labfleet mounts: edits inside are overwritten' "
         "'nas:/mnt/SSD/scratch /srv/scratch nfs4 ro,noatime 0 0' '# END labfleet mounts' >>/etc/fstab");
    Exec(sbx, n,
         "printf '%s\\n' '# BEGIN labfleet managed block: edits inside are overwritten' '10.0.1.66 master' "
         "'10.0.1.70 nas nas.cvgl.lab' '# END labfleet managed block' >>/etc/hosts");
    Exec(sbx, n,
         "mkdir -p /etc/ssh/sshd_config.d && printf '%s\\n' '# Managed by labfleet from the inventory; edits here are "
         "overwritten.' 'PasswordAuthentication no' 'ClientAliveInterval 30' >/etc/ssh/sshd_config.d/60-lab.conf");
    if (n != "node3")
      Exec(sbx, n,
           "mkdir -p /etc/docker && printf '%s\\n' '{' '  \"default-address-pools\": [{\"base\": \"172.28.0.0/16\", "
           "\"size\": 24}],' '  \"bip\": \"172.29.0.1/24\",' '  \"log-driver\": \"json-file\"' '}' "
           ">/etc/docker/daemon.json");
    // labfleet's proxy drop-in where Docker is configured; a hand-written one elsewhere.
    Exec(sbx, n,
         n != "node3"
             ? "mkdir -p /etc/systemd/system/docker.service.d && printf '%s\\n' '# Managed by labfleet from the "
               "inventory; edits here are overwritten.' '[Service]' 'Environment=\"HTTP_PROXY=http://10.0.1.68:8889\"' "
               "'Environment=\"NO_PROXY=localhost,cvgl.lab\"' >/etc/systemd/system/docker.service.d/proxy.conf"
             : "mkdir -p /etc/systemd/system/docker.service.d && printf '[Service]\\nEnvironment=HTTP_PROXY=http://p:3128\\n' "
               ">/etc/systemd/system/docker.service.d/http-proxy.conf");
  }
}

}  // namespace

TEST_SUITE("integration-init") {
  TEST_CASE("init writes the inventory of a hand-made lab; its plan is empty but the listed conflict") {
    Sandbox sbx({.nodes = 3});
    PrepareLab(sbx);
    ScratchDir scratch;
    const std::string out1 = (scratch.path / "inv1").string(), out2 = (scratch.path / "inv2").string();

    auto r = Cli({"init", "--from", sbx.dir() + "/nodes.yaml", "-o", out1, "--lab-name", "cvgl", "--known-hosts",
                  sbx.known_hosts(), "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    auto j = r.json();
    CHECK(j["nodes"] == nlohmann::json({"node1", "node2", "node3"}));
    CHECK(j["valid"] == true);
    CHECK(j["check"]["problems"].empty());

    // The disagreement: carol's uid, with both uids and the nodes on each side, and the fix.
    nlohmann::json carol;
    for (const auto& c : j["conflicts"])
      if (c["subject"] == "user carol" && c["field"] == "uid") carol = c;
    REQUIRE(carol.is_object());
    CHECK(carol["sides"][0]["value"] == "2003");
    CHECK(carol["sides"][0]["nodes"] == nlohmann::json({"node1", "node2"}));
    CHECK(carol["sides"][1]["value"] == "2013");
    CHECK(carol["sides"][1]["nodes"] == nlohmann::json({"node3"}));
    REQUIRE(carol["fix"].size() == 1);
    CHECK(carol["fix"][0].get<std::string>().find("on node3: usermod -u 2003 carol && find / -xdev -uid 2013") == 0);
    const std::string conflicts_md = ReadFile(fs::path(out1) / "CONFLICTS.md");
    CHECK(conflicts_md.find("usermod -u 2003 carol") != std::string::npos);
    CHECK(conflicts_md.find("`2013` on node3") != std::string::npos);
    // Only that disagreement, besides the host's own accounts that every node shares (the sandbox's overlay).
    for (const auto& c : j["conflicts"]) CHECK(c["subject"] == "user carol");
    // The hand-written NFS lines become mounts:, and CONFLICTS.md says the first apply moves them into the block.
    std::string unmanaged = j["unmanaged"].dump();
    CHECK(unmanaged.find("nas:/mnt/HDD/home /home nfs vers=4.2,hard,noatime") != std::string::npos);
    CHECK(unmanaged.find("nas:/mnt/SSD/public") != std::string::npos);
    CHECK(unmanaged.find("http-proxy.conf on node3") != std::string::npos);
    CHECK(unmanaged.find("authorized_keys of gina is 644 gina gina regular file on node1") != std::string::npos);

    // The inventory says what the nodes are.
    const std::string users = ReadFile(fs::path(out1) / "users/users.yaml");
    const std::string lab = ReadFile(fs::path(out1) / "lab.yaml");
    const std::string nodes = ReadFile(fs::path(out1) / "nodes.yaml");
    INFO(lab << nodes << users << ReadFile(fs::path(out1) / "users/groups.yaml"));
    auto show = Cli({"--inventory", out1, "show", "node1", "--format", "json"});
    CHECK(show.rc == 0);
    CHECK(users.find("uid: 2003") != std::string::npos);   // carol, the majority
    CHECK(users.find("uid: 2013") == std::string::npos);
    CHECK(users.find("expires: \"2027-06-30\"") != std::string::npos);
    CHECK(users.find("\"on\": [node1, node2]") != std::string::npos);  // dave
    CHECK(users.find(kKeyAlice) != std::string::npos);
    CHECK(users.find("groups: [gpu-users, sudo]") != std::string::npos);
    CHECK(lab.find("10.0.1.70: [nas, nas.cvgl.lab]") != std::string::npos);
    CHECK(lab.find("PasswordAuthentication: \"no\"") != std::string::npos);
    CHECK(lab.find("sshd_dropin: /etc/ssh/sshd_config.d/60-lab.conf") != std::string::npos);
    CHECK(lab.find("bash: held") != std::string::npos);
    CHECK(lab.find("- { source: \"nas:/mnt/SSD/scratch\", target: /srv/scratch, type: nfs4, options: [ro, noatime] }") !=
          std::string::npos);
    CHECK(nodes.find("host_key:") != std::string::npos);
    CHECK(nodes.find("docker:") != std::string::npos);  // node1 and node2 only: each keeps its own
    CHECK(lab.find("docker:") == std::string::npos);
    CHECK(nodes.find("proxy: { http: \"http://10.0.1.68:8889\", no_proxy: [localhost, cvgl.lab] }") != std::string::npos);

    // labfleet validate accepts it.
    auto v = Cli({"--inventory", out1, "validate"});
    INFO(v.out << v.err);
    CHECK(v.rc == 0);

    // plan: nothing but carol on node3 (the listed conflict); adoption is bookkeeping, not a change.
    auto plan = Cli({"--inventory", out1, "plan", "--known-hosts", sbx.known_hosts(), "--format", "json"});
    INFO(plan.out << plan.err);
    REQUIRE((plan.rc == 0 || plan.rc == 2));
    auto pj = plan.json();
    size_t carol_changes = 0, fstab_adoptions = 0;
    for (const auto& n : pj["plan"]) {
      CHECK(n.value("error", "") == "");
      for (const auto& c : n["changes"]) {
        std::string s = c["summary"];
        INFO(n["node"] << ": " << s);
        // carol's account and her personal group, on node3 only: what CONFLICTS.md lists.
        if (n["node"] == "node3" && (c["resource"] == "user:carol" || c["resource"] == "group:carol")) {
          ++carol_changes;
          CHECK(s.find(" 2013 -> 2003") != std::string::npos);
          continue;
        }
        if (c["resource"] == "mounts:/etc/fstab" &&
            s.find("; adopted into labfleet's block, as written by hand: line ") != std::string::npos) {
          ++fstab_adoptions;  // listed: the hand-written NFS lines move, unchanged, into labfleet's block
          continue;
        }
        FAIL_CHECK("a change init's inventory should not cause: " << s);  // the promise: empty but the conflict
      }
      // Accounts made by hand that match are adopted without a change: bookkeeping the next apply records.
      CHECK(n["records"].size() > 0);
      for (const auto& rec : n["records"]) CHECK(rec.get<std::string>().find(": adopted (recorded as managed") != std::string::npos);
    }
    CHECK(carol_changes == 2);
    CHECK(fstab_adoptions == 3);  // one per node: /home; /media/public has fsc (cachefilesd): found, not managed
    CHECK(lab.find("target: /media/public") == std::string::npos);
    CHECK(lab.find("target: /home") != std::string::npos);
    // The full name made of YAML and shell punctuation came back exactly: no change for frank anywhere but adoption.
    CHECK(users.find("frank") != std::string::npos);

    // A second init, from --nodes this time, into a new folder: the same bytes.
    std::string list;
    for (const auto& n : sbx.nodes()) list += (list.empty() ? "" : ",") + n.address + ":" + std::to_string(n.port);
    auto r2 = Cli({"init", "--nodes", list, "--identity", sbx.identity(), "-o", out2, "--lab-name", "cvgl",
                   "--known-hosts", sbx.known_hosts()});
    INFO(r2.out << r2.err);
    CHECK(r2.rc == 0);
    CHECK(r2.out.find("carol: uid: 2003 on node1, node2 | 2013 on node3") != std::string::npos);
    auto f1 = Files(out1), f2 = Files(out2);
    CHECK(f1.size() >= 5);
    for (const auto& [rel, text] : f1) {
      INFO(rel);
      CHECK(f2[rel] == text);
    }
    CHECK(f1.size() == f2.size());

    // init never overwrites: the same folder again is refused before any node is read.
    auto again = Cli({"init", "--from", sbx.dir() + "/nodes.yaml", "-o", out1, "--known-hosts", sbx.known_hosts()});
    CHECK(again.rc == 3);
    CHECK(again.err.find("not an empty directory") != std::string::npos);

    // The first apply moves the hand-written fstab lines into the block and records the adopted accounts (their
    // own records: no account changes); the plan after it has nothing left.
    auto ap = Cli({"--inventory", out1, "apply", "node1", "--yes", "--known-hosts", sbx.known_hosts(), "--format", "json"});
    INFO(ap.out << ap.err);
    CHECK(ap.rc == 0);
    CHECK(ap.json()["apply"][0]["status"] == "changed");  // the fstab lines moved into the block
    CHECK(sbx.exec("node1", "grep -qx alice /var/lib/labfleet/managed-users").exit_code == 0);
    // The hand-written lines now sit in labfleet's block, once each.
    CHECK(Exec(sbx, "node1", "sed -n '/^# BEGIN labfleet mounts/,/^# END labfleet mounts/p' /etc/fstab | grep -c nas:") == "2\n");
    CHECK(Exec(sbx, "node1", "grep -c '^nas:/mnt/HDD/home' /etc/fstab") == "1\n");
    auto after = Cli({"--inventory", out1, "plan", "node1", "--known-hosts", sbx.known_hosts(), "--format", "json"});
    CHECK(after.rc == 0);
    CHECK(after.json()["plan"][0]["records"].empty());
    CHECK(after.json()["plan"][0]["changes"].empty());
  }
}

TEST_SUITE("integration-init") {
  TEST_CASE("a node that cannot be reached: nothing is written, exit 4, the node and the reason are named") {
    ScratchDir scratch;
    const std::string out = (scratch.path / "inv").string();
    // Port 1 on loopback: nothing listens there, the connection is refused at once.
    auto r = Cli({"init", "--nodes", "127.0.0.1:1", "-o", out, "--connect-timeout", "5", "--known-hosts",
                  (scratch.path / "known_hosts").string()});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    CHECK(r.err.find("127.0.0.1") != std::string::npos);
    CHECK(r.err.find("nothing written") != std::string::npos);
    CHECK(!fs::exists(out));
  }
}

TEST_SUITE("integration-init") {
  TEST_CASE("nodes behind a jump host: the written ssh settings reach them again (init's own check plans them)") {
    Sandbox sbx({.nodes = 1, .login = true});
    ScratchDir scratch;
    const std::string out = (scratch.path / "inv").string();
    auto r = Cli({"init", "--from", sbx.dir() + "/nodes.yaml", "-o", out, "--known-hosts", sbx.known_hosts(),
                  "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    auto j = r.json();
    CHECK(j["nodes"] == nlohmann::json({"login", "node1"}));
    CHECK(j["check"]["problems"].empty());
    const std::string nodes = ReadFile(fs::path(out) / "nodes.yaml");
    INFO(nodes);
    CHECK(nodes.find("jump: login") != std::string::npos);
    auto plan = Cli({"--inventory", out, "plan", "--known-hosts", sbx.known_hosts(), "--format", "json"});
    INFO(plan.out << plan.err);
    CHECK((plan.rc == 0 || plan.rc == 2));
    CHECK(plan.json()["summary"]["failed"] == 0);
  }
}
