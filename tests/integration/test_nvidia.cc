// nvidia on a sandbox node: no GPU and no systemd here, so the node gets the recording test doubles of
// nvidia-smi, systemctl and update-initramfs (tests/doubles/), fake driver packages (tiny .debs named like
// Ubuntu's, in a local apt repository inside the node; installed and held by the real apt/dpkg), and a fake
// /proc/driver/nvidia/version (a tmpfs mounted in the node's own mount namespace) for the LOADED module.
// apply → dpkg/apt-mark inside the node → re-plan empty → a new driver version is exactly one disruptive
// change, deferred while a GPU job runs → "reboot pending" until the module version follows.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

struct Inv : TempInventory {
  using TempInventory::TempInventory;
  void nvidia(const std::string& map) const { defaults("    nvidia: " + map + "\n"); }
};

std::string Actions(const Sandbox& sbx) {
  std::string out;
  for (const auto& l : labfleet::testing::DoubleActions(sbx, "node1")) out += l + "\n";
  return out;
}

std::string Notes(const nlohmann::json& j) {
  std::string out;
  for (const auto& node : j["plan"])
    for (const auto& n : node["notes"]) out += n["resource"].get<std::string>() + ": " + n["note"].get<std::string>() + "\n";
  return out;
}

std::string DriverPackages(const Sandbox& sbx) {
  return sbx
      .exec("node1",
            "dpkg-query -W -f='${Package} ${Status} ${Version}\\n' 'nvidia-*' 'libnvidia-*' 2>/dev/null | grep ' installed '")
      .out;
}

// The loaded kernel module, as the driver would show it.
void LoadedModule(const Sandbox& sbx, const std::string& version) {
  labfleet::testing::MustExec(
      sbx, "node1",
      "{ mountpoint -q /proc/driver || mount -t tmpfs labfleet-test-fake-nvidia /proc/driver; } && "
      "mkdir -p /proc/driver/nvidia && " +
          labfleet::Cmd("printf").arg("NVRM version: NVIDIA UNIX x86_64 Kernel Module  %s  Sat Aug 19 01:15:15 UTC 2023\\n")
              .arg(version)
              .raw("> /proc/driver/nvidia/version")
              .str());
}

}  // namespace

TEST_SUITE("integration-nvidia") {
  TEST_CASE("driver installed, held, nouveau blacklisted, persistence on; upgrade deferred while busy; reboot pending") {
    Sandbox sbx({.nodes = 1});
    labfleet::testing::InstallDoubles(sbx, "node1", {"systemctl", "nvidia-smi", "update-initramfs"});
    std::vector<labfleet::testing::FakeDeb> debs;
    for (std::string v : {"535.104.05-0ubuntu1", "535.183.01-0ubuntu1"}) {
      debs.push_back({"libnvidia-compute-535-server", v, ""});
      debs.push_back({"nvidia-utils-535-server", v, "libnvidia-compute-535-server (= " + v + ")"});
      debs.push_back({"nvidia-headless-535-server", v, "libnvidia-compute-535-server (= " + v + ")"});
    }
    debs.push_back({"nvidia-container-toolkit", "1.15.0-1", ""});
    labfleet::testing::BuildLocalAptRepo(sbx, "node1", debs);
    labfleet::testing::UseLocalAptRepo(sbx, "node1");
    labfleet::testing::SeedUnit(sbx, "node1", "nvidia-persistenced.service", "disabled", "inactive");
    labfleet::testing::SeedGpus(sbx, "node1",
                                "index,name,uuid,driver_version,persistence_mode,pci.bus_id\n"
                                "0,NVIDIA A100-SXM4-80GB,GPU-aaaa,535.104.05,Disabled,00000000:07:00.0\n"
                                "1,NVIDIA A100-SXM4-80GB,GPU-bbbb,535.104.05,Enabled,00000000:0F:00.0\n");
    labfleet::testing::SeedGpuApps(sbx, "node1", "gpu_uuid,pid,used_memory,process_name\n");
    LoadedModule(sbx, "535.104.05");
    Inv inv(sbx);
    inv.nvidia("{ driver: \"535.104.05\", container_toolkit: true }");

    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(apply.out << apply.err);
    REQUIRE(apply.rc == 0);
    CHECK(apply.out.find("+ nvidia driver 535.104.05 (install nvidia-utils-535-server, nvidia-headless-535-server; "
                         "reboot needed)") != std::string::npos);
    // Independent checks: dpkg and apt-mark in the node, the doubles' records.
    CHECK(DriverPackages(sbx) ==
          "libnvidia-compute-535-server install ok installed 535.104.05-0ubuntu1\n"
          "nvidia-container-toolkit install ok installed 1.15.0-1\n"
          "nvidia-headless-535-server hold ok installed 535.104.05-0ubuntu1\n"
          "nvidia-utils-535-server hold ok installed 535.104.05-0ubuntu1\n");
    CHECK(Exec(sbx, "apt-mark showhold") == "nvidia-headless-535-server\nnvidia-utils-535-server\n");
    CHECK(Exec(sbx, "apt-cache policy libnvidia-compute-535-server | grep Candidate") ==
          "  Candidate: 535.104.05-0ubuntu1\n");  // the pin, though 535.183.01 is in the repository
    CHECK(Exec(sbx, "grep -c '\"nvidia-\";' /etc/apt/apt.conf.d/51labfleet-nvidia") == "1\n");
    CHECK(Exec(sbx, "grep -x 'blacklist nouveau' /etc/modprobe.d/blacklist-nouveau.conf") == "blacklist nouveau\n");
    CHECK(Actions(sbx) == "systemctl enable --now nvidia-persistenced.service\nnvidia-smi -pm 1\nupdate-initramfs -u\n");
    CHECK(Exec(sbx, "nvidia-smi --query-gpu=persistence_mode --format=csv,noheader") == "Enabled\nEnabled\n");

    labfleet::testing::ClearDoubleCalls(sbx, "node1");
    auto plan1 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode", "--format", "json"});
    INFO(plan1.out << plan1.err);
    CHECK(plan1.rc == 0);
    CHECK(Notes(plan1.json()).find("nvidia:driver: nothing to do because nvidia driver 535.104.05 (535.104.05) is installed\n") !=
          std::string::npos);
    CHECK(Actions(sbx).empty());

    // A new version: exactly one change, disruptive; held back while a GPU job runs.
    inv.nvidia("{ driver: \"535.183.01\", container_toolkit: true }");
    labfleet::testing::SeedGpuApps(sbx, "node1", "gpu_uuid,pid,used_memory,process_name\nGPU-aaaa,1,30000,python\n");
    const std::string upgrade =
        "nvidia driver 535.104.05 -> 535.183.01 (upgrade; replaces nvidia-utils-535-server 535.104.05-0ubuntu1, "
        "nvidia-headless-535-server 535.104.05-0ubuntu1; reboot needed)";
    auto busy = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(busy.out << busy.err);
    CHECK(busy.rc == 0);
    CHECK(Summaries(busy.json()) == "");
    CHECK(Summaries(busy.json(), "deferred") == upgrade);
    CHECK(busy.json()["plan"][0]["deferred"][0]["disruptive"] == true);
    CHECK(busy.json()["apply"][0]["deferred"][0].get<std::string>().find("deferred: " + upgrade) == 0);
    CHECK(DriverPackages(sbx).find("nvidia-utils-535-server hold ok installed 535.104.05-0ubuntu1\n") != std::string::npos);

    // The job ended: the upgrade goes through (the only change), the packages stay held.
    labfleet::testing::SeedGpuApps(sbx, "node1", "gpu_uuid,pid,used_memory,process_name\n");
    auto apply3 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply3.out << apply3.err);
    REQUIRE(apply3.rc == 0);
    CHECK(Summaries(apply3.json()) == upgrade);
    CHECK(apply3.json()["plan"][0]["changes"][0]["disruptive"] == true);
    CHECK(DriverPackages(sbx) ==
          "libnvidia-compute-535-server install ok installed 535.183.01-0ubuntu1\n"
          "nvidia-container-toolkit install ok installed 1.15.0-1\n"
          "nvidia-headless-535-server hold ok installed 535.183.01-0ubuntu1\n"
          "nvidia-utils-535-server hold ok installed 535.183.01-0ubuntu1\n");
    CHECK(Exec(sbx, "grep ^Pin: /etc/apt/preferences.d/labfleet-nvidia") == "Pin: version 535.183.01-*\n");
    // Converged, and the plan says plainly that the loaded module is the old one.
    auto plan4 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode", "--format", "json"});
    INFO(plan4.out << plan4.err);
    CHECK(plan4.rc == 0);
    CHECK(Notes(plan4.json()).find("reboot pending: kernel module 535.104.05 loaded, userspace 535.183.01 installed") !=
          std::string::npos);
    // After the "reboot" the module matches: no note any more.
    LoadedModule(sbx, "535.183.01");
    auto plan5 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode", "--format", "json"});
    CHECK(plan5.rc == 0);
    CHECK(Notes(plan5.json()).find("reboot pending") == std::string::npos);

    // hold: false is exactly one change (the unattended-upgrades file is left as it is).
    inv.nvidia("{ driver: \"535.183.01\", container_toolkit: true, hold: false }");
    auto apply6 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply6.out << apply6.err);
    REQUIRE(apply6.rc == 0);
    CHECK(Summaries(apply6.json()) == "nvidia driver packages unheld (nvidia-utils-535-server, nvidia-headless-535-server)");
    CHECK(apply6.json()["apply"][0]["status"] == "changed");  // its re-plan was empty
    CHECK(Exec(sbx, "apt-mark showhold").empty());
  }
}
