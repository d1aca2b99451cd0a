// Busy nodes on a real sandbox node: running containers (the docker CLI test double answers `docker ps`) hold
// back the disruptive docker restart; `plan` says so, `apply` writes everything else and owes the restart,
// `--force` does it at once, `--drain` waits for the containers to end and then does it. The systemctl test
// double records exactly which restarts happened.
// Fail safe (issue 17): an nvidia-smi stand-in that fails with NVML's version mismatch or hangs makes the node's
// busy state unknown, which defers the restart with the reason; a process holding a device file open (under a
// configurable device glob, created in the node) is a GPU job with its user whatever nvidia-smi says; the lab's
// own `busy.command` defers when it prints a job and not when it prints nothing; `--force` in each case; `--drain`
// waits while the state is unknown.
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

// The loaded NVIDIA kernel module, as the driver shows it: a tmpfs over /proc/driver in the node's own mount
// namespace (as in test_nvidia.cc). With no module loaded a failing nvidia-smi cannot hide a GPU job.
void LoadedModule(const Sandbox& sbx) {
  MustExec(sbx, "node1",
           "{ mountpoint -q /proc/driver || mount -t tmpfs labfleet-test-fake-nvidia /proc/driver; } && "
           "mkdir -p /proc/driver/nvidia && printf 'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  "
           "580.159.04  Release Build\\n' > /proc/driver/nvidia/version");
}

// The plan's first deferred change and why, as JSON.
nlohmann::json Deferred(const CliResult& r) {
  auto plan = r.json()["plan"][0];
  return plan["deferred"].empty() ? nlohmann::json::object() : plan["deferred"][0];
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

  TEST_CASE("fail safe: NVML mismatch and a hung nvidia-smi defer; a held device file and busy.command are jobs") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl", "docker", "nvidia-smi"});
    SeedUnit(sbx, "node1", "docker.service", "enabled", "active");
    SeedGpuApps(sbx, "node1", "gpu_uuid,pid,used_memory,process_name\n");
    LoadedModule(sbx);
    TempInventory inv(sbx);
    int step = 0;
    // A new docker data_root each time: one file change plus the disruptive restart it notifies.
    auto settings = [&](const std::string& busy) {
      ++step;
      inv.defaults("    docker: { data_root: /local/docker-" + std::to_string(step) + " }\n" +
                   (busy.empty() ? "" : "    busy: " + busy + "\n"));
    };
    auto apply = [&](std::vector<std::string> extra = {}) {
      std::vector<std::string> args = {"apply", "--yes", "--allow-dirty", "--format", "json"};
      args.insert(args.end(), extra.begin(), extra.end());
      return Cli(sbx, inv.dir(), args);
    };
    // Every case: the plan defers the restart because `why`, apply writes the file and owes the restart, and
    // apply --force restarts docker once.
    // `exact`: `why` is the whole reason, else its beginning (a job's age grows while the test runs).
    auto deferred_then_forced = [&](const std::string& why, bool exact = true) {
      ClearDoubleCalls(sbx, "node1");
      auto plan = Cli(sbx, inv.dir(), {"plan"});
      INFO(plan.out << plan.err);
      CHECK(plan.out.find("deferred: restart docker on node1 \u2014 " + why + (exact ? " (--force overrides" : "")) !=
            std::string::npos);
      CHECK(plan.out.find("daemon.json") != std::string::npos);  // the rest of the plan is still there
      auto r = apply();
      INFO(r.out << r.err);
      CHECK(r.rc == 0);
      std::string because = Deferred(r).value("deferred_because", "");
      CHECK((exact ? because == why : because.rfind(why, 0) == 0));
      CHECK(Restarts(sbx) == 0);
      CHECK(nlohmann::json::parse(Exec(sbx, "cat /etc/docker/daemon.json"))["data-root"] ==
            "/local/docker-" + std::to_string(step));
      r = apply({"--force"});
      INFO(r.out << r.err);
      CHECK(r.rc == 0);
      CHECK(Restarts(sbx) == 1);
      return plan;
    };

    settings("");
    auto r = apply();
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Restarts(sbx) == 1);  // idle: nvidia-smi answers, nothing runs

    // 1. After a driver upgrade NVML cannot answer while jobs still run on the loaded module.
    MustExec(sbx, "node1",
             "printf 'Failed to initialize NVML: Driver/library version mismatch\\nNVML library version: 580.200\\n' "
             "> /var/lib/labfleet-doubles/nvidia-smi.fail && echo 18 > /var/lib/labfleet-doubles/nvidia-smi.exit");
    settings("");
    deferred_then_forced("GPU use unknown: nvidia-smi failed (exit 18): Failed to initialize NVML: Driver/library "
                         "version mismatch");
    // facts says what apply decided on.
    auto facts_text = Cli(sbx, inv.dir(), {"facts"});
    INFO(facts_text.out << facts_text.err);
    CHECK(facts_text.out.find("busy nodes:\n  node1: unknown \u2014 GPU use unknown: nvidia-smi failed (exit 18): "
                              "Failed to initialize NVML: Driver/library version mismatch (disruptive changes wait)\n") !=
          std::string::npos);

    // 2. nvidia-smi hangs: the probe's own timeout (2 s here) ends it; the plan is still complete.
    MustExec(sbx, "node1", "rm /var/lib/labfleet-doubles/nvidia-smi.fail && touch /var/lib/labfleet-doubles/nvidia-smi.hang");
    settings("{ timeout: 2s }");
    auto t0 = std::chrono::steady_clock::now();
    deferred_then_forced("GPU use unknown: nvidia-smi did not answer within 2 s");
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(60));
    // --drain: nvidia-smi answers again after about 2 s; apply waits, re-checks (every 5 s) and then restarts.
    settings("{ timeout: 2s }");
    ClearDoubleCalls(sbx, "node1");
    std::thread healer([&] {
      std::this_thread::sleep_for(std::chrono::seconds(2));
      sbx.exec("node1", "rm -f /var/lib/labfleet-doubles/nvidia-smi.hang");
    });
    auto drain_t0 = std::chrono::steady_clock::now();
    r = apply({"--drain", "30"});
    double drained = std::chrono::duration<double>(std::chrono::steady_clock::now() - drain_t0).count();
    healer.join();
    INFO(r.out << r.err);
    CHECK(drained >= 2.0);  // it waited while the state was unknown
    CHECK(r.rc == 0);
    CHECK(r.json()["apply"][0]["status"] == "changed");
    CHECK(r.json()["apply"][0]["deferred"].empty());
    CHECK(Restarts(sbx) == 1);

    // 3. A user's process holds a "GPU" device file open (a file under the configured glob, made in the node):
    // a GPU job with its user, found from /proc/PID/fd although nvidia-smi lists nothing.
    MustExec(sbx, "node1",
             "useradd -u 2050 -M -s /bin/sh trainee && : > /dev/shm/lf-gpu0 && "
             "setsid setpriv --reuid 2050 --regid 2050 --clear-groups sleep 600 3</dev/shm/lf-gpu0 "
             ">/dev/null 2>&1 </dev/null &");
    std::string pid = MustExec(sbx, "node1", "for i in 1 2 3 4 5 6 7 8 9 10; do pgrep -u 2050 -x sleep && break; sleep 0.2; done");
    pid = pid.substr(0, pid.find('\n'));
    REQUIRE_FALSE(pid.empty());
    settings("{ device_glob: \"/dev/shm/lf-gpu[0-9]*\" }");
    deferred_then_forced("1 GPU job running (trainee: pid " + pid + ", ", false);
    // What facts shows is what apply decided on: the same probe and parser.
    auto facts = Cli(sbx, inv.dir(), {"facts", "--format", "json"});
    INFO(facts.out << facts.err);
    auto busy = facts.json()["nodes"][0]["busy"];
    CHECK(busy["state"] == "busy");
    REQUIRE(busy["gpu_jobs"].size() == 1);
    CHECK(busy["gpu_jobs"][0]["user"] == "trainee");
    CHECK(busy["gpu_jobs"][0]["devices"] == nlohmann::json::array({"/dev/shm/lf-gpu0"}));
    facts_text = Cli(sbx, inv.dir(), {"facts"});
    INFO(facts_text.out << facts_text.err);
    CHECK(facts_text.out.find("  node1: busy \u2014 1 GPU job running (trainee: pid " + pid + ", ") != std::string::npos);
    MustExec(sbx, "node1", "kill " + pid);

    // 4. The lab's own signal: a job printed defers; nothing printed does not.
    settings("{ command: \"printf '4121 gpu train yseong R 3:00:01\\\\n'\" }");
    deferred_then_forced("busy.command reports work: 4121 gpu train yseong R 3:00:01");
    settings("{ command: \"true\" }");
    ClearDoubleCalls(sbx, "node1");
    r = apply();
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(Deferred(r).empty());
    CHECK(Restarts(sbx) == 1);
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }
}
