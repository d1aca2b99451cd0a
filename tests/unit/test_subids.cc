// subids: /etc/subuid as shadow-utils wrote it on a sandbox node (useradd's own ranges, `usermod --add-subuids`,
// a uid-keyed line; plus one garbage line): a uid-keyed line of an inventory user is that user's (replaced by
// labfleet's line), other lines are kept byte for byte, and every kept line overlapping labfleet's ranges is a
// warning naming the line.
#include <doctest/doctest.h>

#include <set>

#include "engine/file_probe.h"
#include "engine/inventory.h"
#include "tests/unit/module_helpers.h"

namespace labfleet {
struct SubIdPlan {
  std::string content;
  std::vector<std::string> warnings;
};
SubIdPlan PlanSubIds(const std::string& path, std::string_view live, const std::set<std::string>& owned,
                     const std::vector<std::pair<std::string, SubIdRange>>& ranges);
}  // namespace labfleet

using namespace labfleet;
namespace lt = labfleet::testing;

TEST_SUITE("subids") {
  TEST_CASE("pure: uid-keyed lines are the user's, the rest kept, overlaps with every kept line named") {
    const std::string live = lt::Fixture("rootless/subuid.txt");
    // alice is uid 2001 and gets 165536-231071 from labfleet; bob is not in the inventory.
    SubIdPlan p = PlanSubIds("/etc/subuid", live, {"alice", "2001"}, {{"alice", SubIdRange{165536, 65536}}});
    CHECK(p.content ==
          "bob:165536:65536\nbob:300000:65536\ngarbage line without colons\nalice:165536:65536\n");
    REQUIRE(p.warnings.size() == 1);
    CHECK(p.warnings[0] ==
          "subids: /etc/subuid range 165536-231071 of alice (labfleet) overlaps line 2 'bob:165536:65536' "
          "(165536-231071); containers of one could read the other's files: remove or move that line, or set "
          "subids: { start, count } for alice");
    // No overlap: no warning; ranges that only touch do not overlap.
    p = PlanSubIds("/etc/subuid", live, {"alice", "2001", "bob", "2002"}, {{"alice", SubIdRange{231072, 65536}}});
    CHECK(p.content == "garbage line without colons\nalice:231072:65536\n");
    CHECK(p.warnings.empty());
  }

  TEST_CASE("module: a uid-keyed line of an inventory user is replaced, an overlapping foreign line warned about") {
    Inventory inv = lt::Load("lab: { name: t }\nnodes:\n  n1: { address: 10.9.0.1 }\n"
                             "users:\n  alice: { uid: 2001, rootless_docker: true, subids: { start: 300000, count: 65536 } }\n");
    ProbeResults r;
    r["file:/etc/subuid"] = {0, lt::FileOut("bob:100000:65536\n2001:165536:65536\ncarol:330000:1000\n")};
    r["file:/etc/subgid"] = {0, lt::FileOut("bob:100000:65536\nalice:300000:65536\n")};
    r["passwd-file"] = {0, "root:x:0:0:root:/root:/bin/bash\n"};
    auto run = lt::RunModule(inv, "subids", r);
    INFO(run.all_notes());
    REQUIRE(run.changes.size() == 1);
    CHECK(run.changes[0].file.path == "/etc/subuid");
    CHECK(run.changes[0].file.bytes == "bob:100000:65536\ncarol:330000:1000\nalice:300000:65536\n");
    CHECK(run.changes[0].diff.find("-2001:165536:65536") != std::string::npos);
    REQUIRE(run.warnings.size() == 1);
    CHECK(run.warnings[0].find("range 300000-365535 of alice (labfleet) overlaps line 3 'carol:330000:1000'") !=
          std::string::npos);
  }
}
