// packages on a real sandbox node with real apt/dpkg: a local repository of tiny .deb files built inside the
// node, reached through package_mirror.apt; apply → dpkg-query/apt-mark inside the node → re-plan empty →
// one inventory value changes → exactly that change. The host's apt is never touched.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

// lab.yaml: the local repository as apt mirror, a pip mirror, and `packages`.
struct Inv : TempInventory {
  using TempInventory::TempInventory;
  void lab(const std::string& packages) const {
    defaults("    package_mirror:\n"
             "      apt: { url: \"file:/srv/repo\", suites: [./], trusted: true }\n"
             "      pip: http://pypi.lab:3141/root/pypi/+simple/\n"
             "    packages: " +
             packages + "\n");
  }
};

// Status of the test packages, by dpkg itself, inside the node.
std::string Dpkg(const Sandbox& sbx) {
  return sbx.exec("node1", "dpkg-query -W -f='${Package} ${Status} ${Version}\\n' lf-hello lf-world lf-extra 2>/dev/null")
      .out;
}

}  // namespace

TEST_SUITE("integration-packages") {
  TEST_CASE("install, hold, remove and unhold from a local apt repository; mirrors for apt and pip") {
    Sandbox sbx({.nodes = 1});
    labfleet::testing::BuildLocalAptRepo(
        sbx, "node1", {{"lf-hello", "1.0-1", ""}, {"lf-world", "2.0-1", "lf-hello"}, {"lf-extra", "0.1-1", ""}});
    Inv inv(sbx);
    inv.lab("{ lf-hello: installed, lf-world: held }");

    // `apply --format json` carries the plan it applied: each step below is one round of plan + apply + the
    // executor's own re-plan (the node is "changed" only when that re-plan is empty).
    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply.out << apply.err);
    REQUIRE(apply.rc == 0);
    CHECK(Summaries(apply) ==
          "apt mirror /etc/apt/sources.list.d/labfleet-mirror.list | apt-get update (package lists from the new mirror) | "
          "pip mirror /etc/pip.conf | packages: install lf-hello, lf-world (held: lf-world)");
    CHECK(apply.json()["apply"][0]["status"] == "changed");
    CHECK(apply.json()["apply"][0]["handlers"] == nlohmann::json::array({"apt-get update"}));
    // Independent checks, with dpkg and apt-mark inside the node.
    CHECK(Dpkg(sbx) == "lf-hello install ok installed 1.0-1\nlf-world hold ok installed 2.0-1\n");
    CHECK(Exec(sbx, "apt-mark showhold") == "lf-world\n");
    CHECK(Exec(sbx, "cat /etc/apt/sources.list.d/labfleet-mirror.list") ==
          "# Managed by labfleet (package_mirror.apt); edits here are overwritten.\n"
          "deb [trusted=yes] file:/srv/repo ./\n");
    CHECK(Exec(sbx, "cat /etc/pip.conf").find("index-url = http://pypi.lab:3141/root/pypi/+simple/\n"
                                               "trusted-host = pypi.lab\n") != std::string::npos);
    CHECK(Exec(sbx, "apt-cache policy lf-extra | sed -n 3p").find("0.1-1") != std::string::npos);  // lists updated

    auto plan1 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan1.out << plan1.err);
    CHECK(plan1.rc == 0);

    // One value at a time: exactly that change.
    inv.lab("{ lf-hello: installed, lf-world: installed }");
    auto apply2 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply2.out << apply2.err);
    REQUIRE(apply2.rc == 0);
    CHECK(Summaries(apply2) == "packages: unhold lf-world");
    CHECK(Exec(sbx, "apt-mark showhold").empty());

    inv.lab("{ lf-hello: installed, lf-world: absent, lf-extra: held }");
    auto apply3 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply3.out << apply3.err);
    REQUIRE(apply3.rc == 0);
    CHECK(Summaries(apply3) == "packages: install lf-extra (held: lf-extra) | packages: remove lf-world");
    CHECK(Dpkg(sbx) == "lf-extra hold ok installed 0.1-1\nlf-hello install ok installed 1.0-1\n");
    CHECK(Exec(sbx, "apt-mark showhold") == "lf-extra\n");

    // Drift by hand on the node: a removed package comes back, a hold set by hand is released.
    Exec(sbx, "apt-mark hold lf-hello >/dev/null && env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q lf-extra "
              "--allow-change-held-packages >/dev/null 2>&1");
    auto apply4 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply4.out << apply4.err);
    REQUIRE(apply4.rc == 0);
    CHECK(Summaries(apply4) == "packages: install lf-extra (held: lf-extra) | packages: unhold lf-hello");
    CHECK(Dpkg(sbx) == "lf-extra hold ok installed 0.1-1\nlf-hello install ok installed 1.0-1\n");
    CHECK(apply4.json()["apply"][0]["status"] == "changed");  // its re-plan was empty
  }
}
