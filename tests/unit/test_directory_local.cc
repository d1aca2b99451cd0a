// Local things for directory users on a client (issue 13 §5): membership of local groups by name (user_groups,
// PlanDirectoryMembers), the per-node home (users, ParseHomeChains on the probe's raw output from a real
// machine with one garbage line, PlanDirectoryHome), subuid/subgid ranges (subids), and never a local account.
#include <doctest/doctest.h>

#include "modules/user_groups.h"
#include "modules/users.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

// n2 (node 0: the one RunModule looks at) is a directory client; ldap1 is the server. alice and old live in the
// directory, carol is local (so gpu-users, with a gid, is also made locally on n2).
std::string Lab(const std::string& n2 = "", const std::string& alice_extra = "") {
  return "lab:\n  name: t\n  accounts: directory\n"
         "  directory: { server: ldap1, base: \"dc=lab,dc=example\", uri: \"ldap://127.0.0.1:3899\" }\n"
         "nodes:\n  n2: { address: 10.9.0.2" + n2 + " }\n  ldap1: { address: 10.9.0.1 }\n"
         "user_groups:\n  gpu-users: { gid: 3000 }\n  docker: { system: true }\n  students: { gid: 3100 }\n"
         "users:\n"
         "  alice: { uid: 2001, groups: [docker, gpu-users, students], rootless_docker: true" + alice_extra + " }\n"
         "  old: { uid: 2009, remove: true }\n"
         "  carol: { uid: 1500, accounts: local, groups: [gpu-users] }\n";
}

const char* kAliceNss = "alice:*:2001:2001:alice:/home/alice:/bin/bash\n";

// user_groups on n2 of `inv`, with this /etc/group and what NSS resolves.
ModuleRun Groups(const Inventory& inv, const std::string& group_file, const std::string& nss = kAliceNss) {
  ProbeResults r;
  r["group-file"] = {0, group_file};
  r["nss-passwd-directory"] = {0, nss};
  return RunModule(inv, "user_groups", r);
}

}  // namespace

TEST_SUITE("directory_local") {
  TEST_CASE("pure: directory members of a local group: added when they resolve, taken out when they left, others kept") {
    MembersPlan p = PlanDirectoryMembers("docker", {"bob", "old", "alice"}, {"alice", "dave"},
                                         {"alice", "dave", "old", "erin"}, {"alice", "bob"});
    CHECK(p.add.empty());                                   // alice is in already
    CHECK(p.remove == std::vector<std::string>{"old"});     // an inventory directory user who left; bob is not ours
    REQUIRE(p.waiting.size() == 1);                         // dave does not resolve: gpasswd -a would refuse
    CHECK(p.waiting[0].find("directory user dave is not added to the local group docker yet") == 0);
    p = PlanDirectoryMembers("docker", {}, {"alice", "dave"}, {"alice", "dave"}, {"alice", "dave"});
    CHECK(p.add == std::vector<std::string>{"alice", "dave"});
    CHECK(p.remove.empty());
    CHECK(p.waiting.empty());
  }

  TEST_CASE("user_groups: a directory user joins the node's local groups by name; a directory-only group stays in LDAP") {
    Inventory inv = Load(Lab());
    auto run = Groups(inv, "root:x:0:\ndocker:x:998:bob,old\ngpu-users:x:3000:carol\ncarol:x:1500:\n");
    INFO(run.all_notes());
    // students (gid, only directory users in it) is not made locally, so no local membership: memberUid in LDAP
    CHECK(std::find(run.probe_keys.begin(), run.probe_keys.end(), "nss-passwd-directory") != run.probe_keys.end());
    CHECK(run.summaries() == std::vector<std::string>{
                                "group gpu-users members +alice (directory users, by name in /etc/group)",
                                "group docker members +alice,-old (directory users, by name in /etc/group)"});
    REQUIRE(run.changes.size() == 2);
    CHECK(run.changes[0].command == "gpasswd -a alice gpu-users >/dev/null");
    CHECK(run.changes[1].command == "gpasswd -a alice docker >/dev/null\ngpasswd -d old docker >/dev/null");
    CHECK(run.changes[1].reason ==
          "the inventory puts directory user alice in the local group docker (no local account: the name resolves "
          "through NSS); old no longer in it in the inventory");
    for (const auto& c : run.changes) CHECK(c.command.find("useradd") == std::string::npos);

    // She does not resolve yet (sssd not up): not added, and the plan says why.
    run = Groups(inv, "root:x:0:\ndocker:x:998:\ngpu-users:x:3000:carol\ncarol:x:1500:\n", "");
    CHECK(run.changes.empty());
    REQUIRE(run.warnings.size() == 2);
    CHECK(run.warnings[1].find("directory user alice is not added to the local group docker yet: the name does not "
                               "resolve through NSS") != std::string::npos);

    // Converged: nothing to do.
    run = Groups(inv, "root:x:0:\ndocker:x:998:alice\ngpu-users:x:3000:carol,alice\ncarol:x:1500:\n");
    CHECK(run.changes.empty());
    CHECK(run.warnings.empty());
    CHECK(run.all_notes().find("nothing to do because the local group docker lists its directory users (alice)") !=
          std::string::npos);
  }

  TEST_CASE("user_groups: the group made in this run gets its members after groupadd; no members on a non-client") {
    const std::string no_docker = "root:x:0:\ngpu-users:x:3000:carol\ncarol:x:1500:\n";
    auto run = Groups(Load(Lab()), no_docker);
    CHECK(run.summaries() == std::vector<std::string>{
                                "group docker (system group)",
                                "group gpu-users members +alice (directory users, by name in /etc/group)",
                                "group docker members +alice (directory users, by name in /etc/group)"});
    // A node that is no directory client: no member resources, no NSS probe.
    Inventory off = Load(Lab(", directory_client: false"));
    run = Groups(off, no_docker);
    CHECK(std::find(run.probe_keys.begin(), run.probe_keys.end(), "nss-passwd-directory") == run.probe_keys.end());
    CHECK(run.summaries() == std::vector<std::string>{"group docker (system group)"});
  }

  TEST_CASE("validate: a directory user in a local group where no node she is on is a client is a warning") {
    Findings f;
    Load(Lab(", directory_client: false"), &f);
    CHECK(All(f).find("directory-local-group: directory user 'alice' is in the local group 'docker' (no gid: it "
                      "lives in each node's /etc/group, not in the directory), but no node she is on is a directory "
                      "client") != std::string::npos);
    CHECK(All(f).find("'gpu-users'") == std::string::npos);  // a group with a gid lives in the directory
    Findings ok;
    Load(Lab(), &ok);
    CHECK(All(ok).find("directory-local-group") == std::string::npos);  // n2 is a client
  }

  TEST_CASE("validate: a directory user's group must be an inventory user group, as any user's") {
    Findings f;
    Load("lab:\n  name: t\n  accounts: directory\n"
         "  directory: { server: ldap1, base: \"dc=lab,dc=example\", uri: \"ldap://127.0.0.1:3899\" }\n"
         "nodes:\n  ldap1: { address: 10.9.0.1 }\n"
         "users:\n  alice: { uid: 2001, groups: [docker] }\n",
         &f);
    CHECK(All(f).find("unknown-user-group: group 'docker' of user 'alice' is not a user group (define it under "
                      "`user_groups:`; for a group that already exists on the nodes, like docker or sudo, write "
                      "`docker: { system: true }`)") != std::string::npos);
  }

  TEST_CASE("pure: the home probe's raw output; a home is made only below directories that are root's alone") {
    auto chains = ParseHomeChains(Fixture("directory/homes_probe.txt"));
    REQUIRE(chains.size() == 3);  // the garbage line is skipped
    REQUIRE(chains["alice"].size() == 3);
    CHECK(!chains["alice"][0].exists);
    CHECK(chains["alice"][1].path == "/home");
    CHECK(chains["alice"][1].mode == 0755);
    CHECK(chains["alice"][1].type == "directory");
    CHECK(chains["mallory"][0].type == "symbolic link");
    CHECK(chains["mallory"][3].mode == 01777);

    HomePlan p = PlanDirectoryHome("/home/alice", 2001, chains["alice"]);
    CHECK(p.what == HomePlan::What::Create);
    p = PlanDirectoryHome("/tmp/dlh/homes/mallory", 2002, chains["mallory"]);
    CHECK(p.what == HomePlan::What::Refuse);
    CHECK(p.why == "/tmp/dlh/homes/mallory is a symbolic link, not a directory: labfleet never follows or replaces it");
    // absent below a world-writable (sticky) directory: a user could make the name first
    std::vector<PathState> tmp = {{"/tmp/alice", false, -1, -1, -1, ""}, {"/tmp", true, 0, 0, 01777, "directory"}, {"/", true, 0, 0, 0755, "directory"}};
    p = PlanDirectoryHome("/tmp/alice", 2001, tmp);
    CHECK(p.what == HomePlan::What::Refuse);
    CHECK(p.why == "its parent /tmp is not root's alone (owner uid 0, mode 1777): a user could swap the path; "
                   "labfleet never makes a home through it");
    // below a directory a user owns
    std::vector<PathState> owned = {{"/srv/bob/alice", false, -1, -1, -1, ""}, {"/srv/bob", true, 2002, 2002, 0755, "directory"},
                                    {"/srv", true, 0, 0, 0755, "directory"}, {"/", true, 0, 0, 0755, "directory"}};
    CHECK(PlanDirectoryHome("/srv/bob/alice", 2001, owned).what == HomePlan::What::Refuse);
    // exists: hers is fine, another owner's is never chowned
    std::vector<PathState> root_home = chains["root"];
    CHECK(PlanDirectoryHome("/root", 0, root_home).what == HomePlan::What::Exists);
    p = PlanDirectoryHome("/root", 2001, root_home);
    CHECK(p.what == HomePlan::What::Refuse);
    CHECK(p.why.find("labfleet never chowns an existing home") != std::string::npos);
    CHECK(PlanDirectoryHome("/home/alice", 2001, {}).what == HomePlan::What::Refuse);
  }

  TEST_CASE("users: a directory user's home on a client with local homes; never a local account") {
    Inventory inv = Load(Lab(", directory_client: { homes: local, home_mode: \"0750\" }"));
    ProbeResults r;
    r["passwd-file"] = {0, "root:x:0:0:root:/root:/bin/bash\ncarol:x:1500:1500::/home/carol:/bin/bash\n"};
    r["group-file"] = {0, "root:x:0:\ncarol:x:1500:\n"};
    r["nss-passwd-directory"] = {0, kAliceNss};
    r["directory-homes"] = {0, "alice\t/home/alice\t-\nalice\t/home\t0 0 755 directory\nalice\t/\t0 0 755 directory\n"};
    auto run = RunModule(inv, "users", r);
    INFO(run.all_notes());
    std::vector<const Change*> homes;
    for (const auto& c : run.changes) {
      CHECK(!c.summary.starts_with("user alice"));  // no useradd/usermod for her
      CHECK(c.command.find("useradd") == std::string::npos);
      if (c.summary.starts_with("home /home/alice")) homes.push_back(&c);
    }
    REQUIRE(homes.size() == 1);
    CHECK(homes[0]->summary == "home /home/alice of directory user alice (0750 2001:2001, from /etc/skel)");
    CHECK(homes[0]->command ==
          "lf_rootonly /home || { echo 'labfleet: a user can change the directories above /home/alice: '"
          "\"$LF_WHY\" >&2; exit 1; }\n"
          "mkdir -m 0700 -- /home/alice\n"
          "if [ -d /etc/skel ]; then cp -R -- /etc/skel/. /home/alice; fi\n"
          "chown -R -h -- 2001:2001 /home/alice\n"
          "chmod -- 0750 /home/alice\n");

    // made: nothing to do
    r["directory-homes"] = {0, "alice\t/home/alice\t2001 2001 750 directory\nalice\t/home\t0 0 755 directory\nalice\t/\t0 0 755 directory\n"};
    run = RunModule(inv, "users", r);
    for (const auto& c : run.changes) CHECK(!c.summary.starts_with("home "));
    CHECK(run.all_notes().find("home:alice: nothing to do because /home/alice exists (owner uid 2001)") != std::string::npos);

    // not resolving, or to another uid: not made, said why
    r["directory-homes"] = {0, "alice\t/home/alice\t-\nalice\t/home\t0 0 755 directory\nalice\t/\t0 0 755 directory\n"};
    r["nss-passwd-directory"] = {0, ""};
    run = RunModule(inv, "users", r);
    for (const auto& c : run.changes) CHECK(!c.summary.starts_with("home "));
    REQUIRE(run.warnings.size() == 1);
    CHECK(run.warnings[0].find("home /home/alice of directory user alice is not made: alice does not resolve through "
                               "NSS on this node yet") != std::string::npos);
    r["nss-passwd-directory"] = {0, "alice:*:2005:2005:alice:/home/alice:/bin/bash\n"};
    run = RunModule(inv, "users", r);
    REQUIRE(run.warnings.size() == 1);
    CHECK(run.warnings[0].find("resolves through NSS to uid 2005, not the inventory's 2001") != std::string::npos);

    // shared homes: labfleet makes none (and asks NSS nothing)
    Inventory shared = Load(Lab(", directory_client: { homes: shared }"));
    run = RunModule(shared, "users", r);
    for (const auto& c : run.changes) CHECK(!c.summary.starts_with("home "));
    CHECK(std::find(run.probe_keys.begin(), run.probe_keys.end(), "directory-homes") == run.probe_keys.end());
  }

  TEST_CASE("validate: directory_client.home_mode") {
    Findings f;
    Load(Lab(", directory_client: { home_mode: \"4755\" }"), &f);
    CHECK(All(f).find("directory_client.home_mode must be an octal mode") != std::string::npos);
    Findings ok;
    Load(Lab(", directory_client: { home_mode: \"750\" }"), &ok);
    CHECK(All(ok).find("home_mode") == std::string::npos);
  }

  TEST_CASE("subids: a directory user with rootless_docker gets her range by name, without a local account") {
    Inventory inv = Load(Lab());
    ProbeResults r;
    r["file:/etc/subuid"] = {0, FileOut("bob:100000:65536\n")};
    r["file:/etc/subgid"] = {0, FileOut("bob:100000:65536\n")};
    r["passwd-file"] = {0, "root:x:0:0:root:/root:/bin/bash\ncarol:x:1500:1500::/home/carol:/bin/bash\n"};
    auto run = RunModule(inv, "subids", r);
    INFO(run.all_notes());
    REQUIRE(run.changes.size() == 2);
    const SubIdRange want = SubIds(inv.users[0]);
    const std::string line = "alice:" + std::to_string(want.start) + ":" + std::to_string(want.count) + "\n";
    CHECK(run.changes[0].file.bytes == "bob:100000:65536\n" + line);
    CHECK(run.changes[1].file.bytes == "bob:100000:65536\n" + line);
  }
}
