// users: `remove: true` and `remove: archive` on fake probe output: when the home is archived and deleted,
// every reason it is kept instead (shown in the plan), the command's order, and the offline checks.
#include <doctest/doctest.h>

#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

const char* kPasswd =
    "root:x:0:0:root:/root:/bin/bash\n"
    "erin:x:2005:2005:Erin:/home/erin:/bin/bash\n"
    "not a passwd line\n"
    "frank:x:2006:2006::/home/frank:/bin/bash\n";

std::string Lab(const std::string& users, const std::string& archive = "  home_archive: /var/backups/homes\n") {
  return "lab:\n  name: t\n" + archive + "nodes:\n  n1: { address: 10.9.0.1 }\nusers:\n" + users;
}

ModuleRun Remove(const std::string& homes, const std::string& passwd = kPasswd,
                 const std::string& erin = "erin: { uid: 2005, remove: archive }") {
  Inventory inv = Load(Lab("  " + erin + "\n  frank: { uid: 2006 }\n"));
  return RunModule(inv, "users",
                   {{"passwd-file", {0, passwd}},
                    {"group-file", {0, ""}},
                    {"shadow-file", {0, ""}},
                    {"managed-users", {0, "erin\nfrank\n"}},
                    {"user-homes", {0, homes}}});
}

std::string Summary(const ModuleRun& run) {
  REQUIRE(run.changes.size() == 1);
  return run.changes[0].summary;
}

}  // namespace

TEST_SUITE("users-remove") {
  TEST_CASE("remove: archive on a local home: archive, verify, userdel, then rm, in that order") {
    // The probe's raw output, with a garbage line.
    ModuleRun run = Remove("erin\ttmpfs\t2005 directory\ngarbage without tabs\n");
    CHECK(Summary(run) ==
          "user erin (deleted: remove: archive; home /home/erin archived to "
          "/var/backups/homes/erin-2005-<UTC time>.tar.gz, then deleted)");
    CHECK(run.changes[0].sign == '-');
    const std::string& cmd = run.changes[0].command;
    INFO(cmd);
    size_t tar = cmd.find("tar -C /home -czf \"$lf_archive.part\" -- erin");
    size_t verify = cmd.find("tar -tzf \"$lf_archive.part\" >/dev/null");
    size_t mv = cmd.find("mv -f \"$lf_archive.part\" \"$lf_archive\"");
    size_t userdel = cmd.find("userdel erin");
    size_t rm = cmd.find("rm -rf -- /home/erin");
    REQUIRE(tar != std::string::npos);
    REQUIRE(rm != std::string::npos);
    CHECK(tar < verify);
    CHECK(verify < mv);
    CHECK(mv < userdel);
    CHECK(userdel < rm);
    CHECK(cmd.find("mkdir -p -m 0700 /var/backups/homes") < tar);
    // The probe asks about erin's home only (frank stays).
    std::string probe;
    for (const auto& p : run.probes)
      if (p.key == "user-homes") probe = p.command;
    CHECK(probe.find("home-probe erin /home/erin") != std::string::npos);
    CHECK(probe.find("frank") == std::string::npos);
  }

  TEST_CASE("remove: archive keeps the home, and says why, when deleting it is not this node's job or not safe") {
    struct Case {
      const char* homes;
      const char* why;
    };
    for (const Case& c : {
             Case{"erin\tnfs\t2005 directory\n", "it is on nfs here; it is archived on the node where that filesystem is local"},
             Case{"erin\tautofs\t2005 directory\n", "it is on autofs here"},
             Case{"erin\t-\t-\n", "it does not exist"},
             Case{"", "it does not exist"},
             Case{"erin\text2/ext3\t0 directory\n", "it is not a directory owned by uid 2005 (0 directory)"},
             Case{"erin\text2/ext3\t2005 symbolic link\n", "it is not a directory owned by uid 2005 (2005 symbolic link)"},
         }) {
      CAPTURE(c.homes);
      ModuleRun run = Remove(c.homes);
      const std::string s = Summary(run);
      CHECK(s.find("user erin (deleted: remove: archive; home /home/erin kept: ") == 0);
      CHECK(s.find(c.why) != std::string::npos);
      CHECK(run.changes[0].command.find("rm -rf") == std::string::npos);
      CHECK(run.changes[0].command.find("tar ") == std::string::npos);
      CHECK(run.changes[0].command.find("userdel erin") != std::string::npos);  // the account still goes
    }
    // Another account's home inside it.
    ModuleRun shared = Remove("erin\text2/ext3\t2005 directory\n",
                              std::string(kPasswd) + "guest:x:2007:2007::/home/erin/guest:/bin/sh\n");
    CHECK(Summary(shared).find("kept: user guest's home /home/erin/guest is inside it") != std::string::npos);
    // The node's home is not the inventory's.
    ModuleRun moved = Remove("erin\text2/ext3\t2005 directory\n",
                             "erin:x:2005:2005:Erin:/data/erin:/bin/bash\nfrank:x:2006:2006::/home/frank:/bin/bash\n");
    CHECK(Summary(moved).find("kept: it is /data/erin on this node, not /home/erin as the inventory says") !=
          std::string::npos);
  }

  TEST_CASE("remove: true deletes the account and keeps the home; an absent account is nothing to do") {
    ModuleRun run = Remove("", kPasswd, "erin: { uid: 2005, remove: true }");
    CHECK(Summary(run) == "user erin (deleted: remove: true; home /home/erin kept)");
    CHECK(run.changes[0].command.find("rm -rf") == std::string::npos);
    CHECK(KeyWithPrefix(run, "passwd-file") == "passwd-file");
    for (const auto& k : run.probe_keys) CHECK(k != "user-homes");  // nothing archived: no home probe

    ModuleRun gone = Remove("", "frank:x:2006:2006::/home/frank:/bin/bash\n");
    CHECK(gone.changes.empty());
    CHECK(gone.all_notes().find("nothing to do because user erin is absent (remove: archive)") != std::string::npos);
  }

  TEST_CASE("remove: archive offline checks: home_archive required and safe, values spelled out") {
    auto findings = [](const std::string& yaml) {
      Findings f;
      Load(yaml, &f);
      return All(f);
    };
    std::string none = findings(Lab("  erin: { uid: 2005, remove: archive }\n", ""));
    CHECK(none.find("inventory/test.yaml:6:22: missing-required: user 'erin' has remove: archive but the lab has "
                    "no home_archive") != std::string::npos);
    CHECK(findings(Lab("  erin: { uid: 2005, remove: archive }\n", "  home_archive: var/backups\n"))
              .find("wrong-type: lab.home_archive is not an absolute path") != std::string::npos);
    CHECK(findings(Lab("  erin: { uid: 2005, remove: archive }\n", "  home_archive: /home/erin/old\n"))
              .find("unsafe-home: lab.home_archive /home/erin/old and the home /home/erin of user 'erin' contain "
                    "one another") != std::string::npos);
    CHECK(findings(Lab("  erin: { uid: 2005, remove: archive, home: /srv }\n"))
              .find("unsafe-home: the home /srv of user 'erin' is a top-level directory") != std::string::npos);
    CHECK(findings(Lab("  erin: { uid: 2005, remove: archive, home: /home/../etc }\n"))
              .find("is not a plain path") != std::string::npos);
    CHECK(findings(Lab("  erin: { uid: 2005, remove: maybe }\n"))
              .find("wrong-type: 'remove' of user 'erin' must be true, false or archive, got 'maybe'") !=
          std::string::npos);
    CHECK(findings(Lab("  erin: { uid: 2005, remove: \"archive\" }\n")).find("must be true, false or archive") !=
          std::string::npos);
    CHECK(findings(Lab("  erin: { uid: 2005, remove: archive }\n")).empty());
  }
}
