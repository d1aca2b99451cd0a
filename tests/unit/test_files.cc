// files: a file that is up to date by name while this run renumbers its owner or group (usermod -u, groupmod -g
// leave files outside the home with the old id) is chown-ed again; the account probes only when needed.
#include <doctest/doctest.h>

#include <algorithm>

#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

const std::string kAccounts = "users:\n  alice: { uid: 2201 }\nuser_groups:\n  gpu-users: { gid: 3110 }\n";

bool Probes(const ModuleRun& run, const std::string& key) {
  return std::find(run.probe_keys.begin(), run.probe_keys.end(), key) != run.probe_keys.end();
}

}  // namespace

TEST_SUITE("files") {
  TEST_CASE("an owner or group renumbered in this run is chown-ed again; matching ids are no change") {
    Inventory inv = Load(Inv("files:\n  - { path: /etc/x, content: \"x\\n\", owner: alice, group: gpu-users }") +
                         kAccounts);
    ProbeResults res = {{"file:/etc/x", {0, "present 644 alice gpu-users regular file\nx\n"}},
                        {"passwd-file", {0, "root:x:0:0:root:/root:/bin/bash\nalice:x:2101:2101::/home/alice:/bin/bash\n"}},
                        {"group-file", {0, "root:x:0:\ngpu-users:x:3100:alice\n"}}};
    ModuleRun run = RunModule(inv, "files", res);
    CHECK(Probes(run, "passwd-file"));
    CHECK(Probes(run, "group-file"));
    CHECK(run.lines() ==
          std::vector<std::string>{"~ file /etc/x (owner alice: uid 2101 -> 2201, group gpu-users: gid 3100 -> 3110)"});
    REQUIRE(run.changes.size() == 1);
    CHECK(run.changes[0].command == "lf_fixmeta /etc/x 0644 alice gpu-users");

    res["passwd-file"].out = "alice:x:2201:2201::/home/alice:/bin/bash\n";
    res["group-file"].out = "gpu-users:x:3110:alice\n";
    run = RunModule(inv, "files", res);
    CHECK(run.changes.empty());
    CHECK(run.all_notes() == "file:/etc/x: nothing to do because file /etc/x is up to date (0644 alice:gpu-users)\n");

    // Content differs: the write chowns by name after the accounts modules ran; no second change.
    res["group-file"].out = "gpu-users:x:3100:alice\n";
    res["file:/etc/x"].out = "present 644 alice gpu-users regular file\nold\n";
    run = RunModule(inv, "files", res);
    REQUIRE(run.changes.size() == 1);
    CHECK(run.lines()[0] == "~ file /etc/x");
  }

  TEST_CASE("a personal group is renumbered with its user; root-owned files probe no accounts") {
    Inventory inv = Load(Inv("files:\n  - { path: /etc/y, content: \"y\\n\", owner: root, group: alice }") + kAccounts);
    ModuleRun run = RunModule(inv, "files", {{"file:/etc/y", {0, "present 644 root alice regular file\ny\n"}},
                                             {"group-file", {0, "alice:x:2101:\n"}}});
    CHECK(run.lines() == std::vector<std::string>{"~ file /etc/y (group alice: gid 2101 -> 2201)"});

    Inventory plain = Load(Inv("files:\n  - { path: /etc/z, content: \"z\\n\" }") + kAccounts);
    run = RunModule(plain, "files", {{"file:/etc/z", {0, FileOut("z\n")}}});
    CHECK_FALSE(Probes(run, "passwd-file"));
    CHECK_FALSE(Probes(run, "group-file"));
    CHECK(run.changes.empty());
  }
}
