// Busy nodes on a real sandbox node: running containers (the docker CLI test double answers `docker ps`) hold
// back the disruptive docker restart; `plan` says so, `apply` writes everything else and owes the restart,
// `--force` does it at once, `--drain` waits for the containers to end and then does it. The systemctl test
// double records exactly which restarts happened.
#include <doctest/doctest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

int Restarts(const Sandbox& sbx) { return CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker"); }

void Containers(const Sandbox& sbx, const std::string& lines) {
  MustExec(sbx, "node1", "printf '" + lines + "' > /var/lib/labfleet-doubles/containers");
}

}  // namespace

TEST_SUITE("integration-docker") {
  TEST_CASE("running containers defer the docker restart; --force does it; --drain waits for them to end") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl", "docker"});
    SeedUnit(sbx, "node1", "docker.service", "enabled", "active");
    TempInventory inv(sbx);
    auto data_root = [&](const std::string& dir) {
      inv.defaults("    docker: { data_root: " + dir + " }\n");
    };
    data_root("/local/.docker");
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Restarts(sbx) == 1);

    // Two containers run: the restart is shown as deferred, with who is running.
    Containers(sbx, "abc123 train-job\\ndef456 jupyter\\n");
    ClearDoubleCalls(sbx, "node1");
    data_root("/local/docker-2");
    r = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(r.out << r.err);
    auto plan = r.json()["plan"][0];
    REQUIRE(plan["deferred"].size() == 1);
    CHECK(plan["deferred"][0]["summary"] == "restart docker");
    CHECK(plan["deferred"][0]["deferred_because"] == "2 containers running (train-job, jupyter)");
    CHECK(plan["busy"]["containers"] == nlohmann::json::array({"train-job", "jupyter"}));
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(r.out.find("deferred: restart docker on node1 \u2014 2 containers running (train-job, jupyter)") !=
          std::string::npos);
    CHECK(Restarts(sbx) == 0);
    CHECK(nlohmann::json::parse(Exec(sbx, "cat /etc/docker/daemon.json"))["data-root"] == "/local/docker-2");

    // --force: the owed restart happens although the containers still run.
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--force"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(Restarts(sbx) == 1);
    CHECK(sbx.exec("node1", "test -e /var/lib/labfleet/pending-handlers").exit_code != 0);

    // --drain: another change while busy; the containers end after about 2 s, and the apply, which re-plans every
    // 5 s, then restarts docker once, well within its 30 s.
    ClearDoubleCalls(sbx, "node1");
    data_root("/local/docker-3");
    std::thread ender([&] {
      std::this_thread::sleep_for(std::chrono::seconds(2));
      Containers(sbx, "");
    });
    auto t0 = std::chrono::steady_clock::now();
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--drain", "30", "--format", "json"});
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ender.join();
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    auto applied = r.json()["apply"][0];
    CHECK(applied["status"] == "changed");
    CHECK(applied["deferred"].empty());
    CHECK(applied["handlers"] == nlohmann::json::array({"restart docker"}));
    CHECK(Restarts(sbx) == 1);
    CHECK(took >= 2.0);  // it did wait for the containers
    CHECK(took < 30.0);  // and no longer than it had to (re-plans every 5 s)
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }
}
