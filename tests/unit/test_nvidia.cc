// nvidia: parsers of nvidia-smi and /proc/driver/nvidia/version (documented formats; no GPU on this machine),
// the settings, and the module's diffs from typed state: fresh install, upgrade (disruptive), branch change,
// reboot pending, holds, pacman.
#include <doctest/doctest.h>

#include "engine/module.h"
#include "modules/facts/nvidia_facts.h"
#include "engine/planner.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

const char* kDpkgKey = "dpkg-query:nvidia-* libnvidia-*";

// An apt node: dpkg lines, holds, the loaded module, nvidia-smi's answer, and the managed files in place.
ProbeResults AptNode(const std::string& dpkg, const std::string& holds, const std::string& proc_version,
                     const ProbeOutput& smi) {
  ProbeResults r;
  r["pkg-manager"] = {0, "apt\n"};
  r[kDpkgKey] = {0, dpkg};
  r["apt-mark-showhold"] = {0, holds};
  if (proc_version.empty())
    r["proc-driver-nvidia-version"] = {1, ""};
  else
    r["proc-driver-nvidia-version"] = {0, "NVRM version: NVIDIA UNIX x86_64 Kernel Module  " + proc_version +
                                              "  Sat Aug 19 01:15:15 UTC 2023\n"};
  r["nvidia-smi-driver"] = smi;
  return r;
}

std::string Dpkg(const std::string& version, const std::string& branch = "535", const std::string& want = "install") {
  return "nvidia-utils-" + branch + "-server\t" + want + " ok installed\t" + version + "\n" + "nvidia-headless-" + branch +
         "-server\t" + want + " ok installed\t" + version + "\n" + "libnvidia-compute-" + branch + "-server\t" + want +
         " ok installed\t" + version + "\nnvidia-driver-" + branch + "\tunknown ok not-installed\t\n";
}

}  // namespace

TEST_SUITE("nvidia") {
  TEST_CASE("nvidia-smi query: GPUs, garbage skipped; failures keep their message") {
    NvidiaSmiState s = ParseNvidiaSmiDriverQuery(Fixture("nvidia/nvidia_smi_query.txt"));
    REQUIRE(s.gpus.size() == 4);
    CHECK(s.skipped == 2);  // the source comment and the infoROM warning
    CHECK(s.error.empty());
    CHECK(s.gpus[1].index == 1);
    CHECK(s.gpus[1].uuid == "GPU-7f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b");
    CHECK(s.gpus[1].driver_version == "535.183.01");
    CHECK(s.gpus[1].persistence_mode == "Disabled");
    CHECK(s.gpus[3].persistence_mode == "Enabled");
    NvidiaSmiState m = ParseNvidiaSmiDriverQuery(Fixture("nvidia/nvidia_smi_mismatch.txt"));
    CHECK(m.gpus.empty());
    CHECK(m.version_mismatch());
    CHECK(m.error.find("Failed to initialize NVML: Driver/library version mismatch") != std::string::npos);
    NvidiaSmiState n = ParseNvidiaSmiDriverQuery(Fixture("nvidia/nvidia_smi_not_loaded.txt"));
    CHECK(n.gpus.empty());
    CHECK_FALSE(n.version_mismatch());
    CHECK(n.error.find("couldn't communicate with the NVIDIA driver") != std::string::npos);
  }

  TEST_CASE("/proc/driver/nvidia/version: proprietary and open modules; garbage skipped") {
    CHECK(ParseProcDriverVersion(Fixture("nvidia/proc_driver_version.txt")) == "535.104.05");
    CHECK(ParseProcDriverVersion(Fixture("nvidia/proc_driver_version_open.txt")) == "535.183.01");
    CHECK_FALSE(ParseProcDriverVersion("").has_value());
    CHECK_FALSE(ParseProcDriverVersion("NVRM version: (unknown)\n").has_value());
  }

  TEST_CASE("settings, packages and versions") {
    Findings f;
    auto yaml = [](const std::string& s) {
      Findings g;
      Inventory inv = LoadInventory({{"inventory/t.yaml", Inv("nvidia: " + s)}}, g);
      return inv.settings(inv.nodes[0]);
    };
    auto s = ParseNvidiaSettings(*yaml("{ driver: \"535.183.01\" }").find("nvidia"), &f);
    REQUIRE(s);
    CHECK(s->branch == "535");
    CHECK(s->flavor == "server");
    CHECK(s->hold);
    CHECK(s->persistence);
    CHECK_FALSE(s->container_toolkit);
    CHECK(NvidiaDriverPackages(*s, "apt") == std::vector<std::string>{"nvidia-utils-535-server", "nvidia-headless-535-server"});
    CHECK(NvidiaDriverPackages(*s, "pacman") == std::vector<std::string>{"nvidia-utils", "nvidia"});
    s->flavor = "desktop";
    CHECK(NvidiaDriverPackages(*s, "apt") == std::vector<std::string>{"nvidia-driver-535"});
    s->flavor = "headless";
    CHECK(NvidiaDriverPackages(*s, "apt") == std::vector<std::string>{"nvidia-utils-535", "nvidia-headless-535"});
    CHECK(AptVersionPattern("535.183.01") == "535.183.01-*");
    CHECK(AptVersionPattern("535.183.01-0ubuntu1") == "535.183.01-0ubuntu1");
    CHECK(DriverVersionMatches("535.183.01-0ubuntu0.22.04.1", "535.183.01"));
    CHECK_FALSE(DriverVersionMatches("535.183.01-0ubuntu0.22.04.1", "535.183"));
    CHECK(DriverVersionMatches("1:535.183.01-0ubuntu1", "535.183.01-0ubuntu1"));
    CHECK(IsDriverVersion("550.54"));
    CHECK_FALSE(IsDriverVersion("535..1"));
    CHECK_FALSE(IsDriverVersion("latest"));
    CHECK(NvidiaAptPreferences("535.183.01") ==
          "# Managed by labfleet (nvidia.driver): the NVIDIA driver packages at the inventory's version.\n"
          "Package: nvidia-* libnvidia-*\nPin: version 535.183.01-*\nPin-Priority: 1001\n");
    CHECK(NvidiaDockerRuntime().dump() == R"({"nvidia":{"path":"nvidia-container-runtime","runtimeArgs":[]}})");
    CHECK(f.items().empty());
  }

  TEST_CASE("validation: versions, branch mismatch across layers, keys with suggestions") {
    Findings f;
    Load(R"(lab:
  name: t
  defaults:
    nvidia: { branch: "525" }
nodes:
  n1:
    address: 10.9.0.1
    nvidia: { driver: "535.183.01", persistance: true, flavor: sever }
  n2:
    address: 10.9.0.2
    nvidia: { driver: latest, packages: apt }
  n3:
    address: 10.9.0.3
    nvidia: { hold: true }
)",
         &f);
    std::string all = All(f);
    CAPTURE(all);
    CHECK(all.find("unknown key 'persistance' in nvidia settings; did you mean 'persistence'?") != std::string::npos);
    CHECK(all.find("did you mean 'server'?") != std::string::npos);
    CHECK(all.find("nvidia branch 525 does not match driver 535.183.01; write only one of them (node n1)") != std::string::npos);
    CHECK(all.find("nvidia driver must be a version like \"535.183.01\" (quote it), got 'latest'") != std::string::npos);
    CHECK(all.find("inventory/test.yaml:8:") != std::string::npos);
    // n3 inherits branch 525 from the defaults: fine. Without it, a warning.
    CHECK(all.find("nvidia settings of node n3") == std::string::npos);
    Findings g;
    Load(Inv("nvidia: { hold: true }"), &g);
    CHECK(All(g).find("nvidia-driver-missing: nvidia settings of node n1 name no 'branch' or 'driver'") != std::string::npos);
    CHECK_FALSE(g.has_errors());
  }

  TEST_CASE("fresh apt node: install (disruptive) and hold, unattended-upgrades, nouveau + initramfs, toolkit") {
    Inventory inv = Load(Inv("nvidia: { driver: \"535.183.01\", container_toolkit: true }"));
    ProbeResults res = AptNode("", "", "", {127, ""});
    res["file:/etc/apt/apt.conf.d/51labfleet-nvidia"] = {0, "absent\n"};
    res["file:/etc/modprobe.d/blacklist-nouveau.conf"] = {0, "absent\n"};
    ModuleRun run = RunModule(inv, "nvidia", res);
    CHECK(run.errors.empty());
    auto lines = run.lines();
    for (auto& l : lines) CAPTURE(l);
    REQUIRE(lines.size() == 5);
    CHECK(lines[0] ==
          "+ nvidia driver 535.183.01 (install nvidia-utils-535-server, nvidia-headless-535-server; reboot needed)");
    CHECK(run.changes[0].disruptive);
    const std::string& cmd = run.changes[0].command;
    CAPTURE(cmd);
    CHECK(cmd.find("--allow-change-held-packages -- 'nvidia-utils-535-server=535.183.01-*' "
                   "'nvidia-headless-535-server=535.183.01-*' || {") != std::string::npos);
    CHECK(cmd.find("}\napt-mark hold -- nvidia-utils-535-server nvidia-headless-535-server\n") != std::string::npos);
    CHECK(lines[1] == "+ nvidia-container-toolkit (install; the docker module registers the nvidia runtime)");
    CHECK_FALSE(run.changes[1].disruptive);
    CHECK(lines[2] == "+ unattended-upgrades blacklist /etc/apt/apt.conf.d/51labfleet-nvidia");
    CHECK(run.changes[2].file.bytes.find("Unattended-Upgrade::Package-Blacklist {\n    \"nvidia-\";\n    \"libnvidia-\";\n"
                                         "    \"cuda-\";\n};\n") != std::string::npos);
    CHECK(lines[3] == "+ nouveau blacklisted in /etc/modprobe.d/blacklist-nouveau.conf");
    CHECK(run.changes[4].kind == Change::Kind::Notify);
    CHECK(run.changes[4].handler == "update-initramfs");
    CHECK(run.changes[4].command == "update-initramfs -u");
    CHECK(run.all_notes().find("nvidia:persistence: nothing to do now: nvidia-smi is not installed") != std::string::npos);
  }

  TEST_CASE("upgrade: one disruptive change that unholds, installs the pinned version and holds; persistence") {
    Inventory inv = Load(Inv("nvidia: { driver: \"535.183.01\", blacklist_nouveau: false }"));
    ProbeResults res = AptNode(Dpkg("535.104.05-0ubuntu1"), "nvidia-utils-535-server\nnvidia-headless-535-server\n",
                               "535.104.05", {0, "0, GPU-a, 535.104.05, Enabled\n1, GPU-b, 535.104.05, Disabled\n"});
    res["file:/etc/apt/apt.conf.d/51labfleet-nvidia"] = {0, "present 644 root root regular file\n" + std::string()};
    ModuleRun run = RunModule(inv, "nvidia", res);
    auto lines = run.lines();
    for (auto& l : lines) CAPTURE(l);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] ==
          "~ nvidia driver 535.104.05 -> 535.183.01 (upgrade; replaces nvidia-utils-535-server 535.104.05-0ubuntu1, "
          "nvidia-headless-535-server 535.104.05-0ubuntu1; reboot needed)");
    CHECK(run.changes[0].disruptive);
    // The pin first (so apt resolves the exact-version dependencies), then unhold, install, hold.
    const std::string& up = run.changes[0].command;
    CAPTURE(up);
    CHECK(up.find("mkdir -p /etc/apt/preferences.d\nprintf %s ") == 0);
    CHECK(up.find("| base64 -d > /etc/apt/preferences.d/labfleet-nvidia.labfleet-new\n"
                  "mv -f /etc/apt/preferences.d/labfleet-nvidia.labfleet-new /etc/apt/preferences.d/labfleet-nvidia\n"
                  "apt-mark unhold -- nvidia-utils-535-server nvidia-headless-535-server\n") != std::string::npos);
    CHECK(lines[1] == "~ unattended-upgrades blacklist /etc/apt/apt.conf.d/51labfleet-nvidia");
    CHECK(lines[2] == "~ nvidia persistence mode (nvidia-smi -pm 1 (GPU 1 off))");
    CHECK(run.changes[2].command == "nvidia-smi -pm 1\n");
    CHECK_FALSE(run.changes[2].disruptive);
    CHECK(run.all_notes().find("nvidia:hold: nothing to do because nvidia-utils-535-server, nvidia-headless-535-server held") !=
          std::string::npos);
  }

  TEST_CASE("downgrade is named so; a missing package alone is an install") {
    Inventory inv = Load(Inv("nvidia: { driver: \"535.104.05\", blacklist_nouveau: false, persistence: false, hold: false }"));
    ProbeResults res = AptNode(Dpkg("535.183.01-0ubuntu1"), "", "535.183.01", {0, "0, GPU-a, 535.183.01, Enabled\n"});
    ModuleRun run = RunModule(inv, "nvidia", res);
    REQUIRE(run.changes.size() == 1);
    CHECK(ChangeLine(run.changes[0]) ==
          "~ nvidia driver 535.183.01 -> 535.104.05 (downgrade; replaces nvidia-utils-535-server 535.183.01-0ubuntu1, "
          "nvidia-headless-535-server 535.183.01-0ubuntu1; reboot needed)");
    CHECK(run.changes[0].command.find("--allow-downgrades") != std::string::npos);
    res[kDpkgKey] = {0, "nvidia-utils-535-server\tinstall ok installed\t535.104.05-0ubuntu1\n"};
    run = RunModule(inv, "nvidia", res);
    REQUIRE(run.changes.size() == 1);
    CHECK(ChangeLine(run.changes[0]) == "+ nvidia driver 535.104.05 (install nvidia-headless-535-server; reboot needed)");
    CHECK(run.changes[0].disruptive);
  }

  TEST_CASE("installed but not loaded yet: the plan says reboot pending, plainly") {
    Inventory inv = Load(Inv("nvidia: { driver: \"535.183.01\", blacklist_nouveau: false, hold: false, persistence: false }"));
    ProbeResults res = AptNode(Dpkg("535.183.01-0ubuntu1"), "", "535.104.05",
                               {18, Fixture("nvidia/nvidia_smi_mismatch.txt")});
    ModuleRun run = RunModule(inv, "nvidia", res);
    // The apt pin is missing: the packages are right, so that file is the only change.
    REQUIRE(run.changes.size() == 1);
    CHECK(ChangeLine(run.changes[0]) == "+ apt pin of the nvidia driver /etc/apt/preferences.d/labfleet-nvidia");
    CHECK(run.changes[0].file.bytes == NvidiaAptPreferences("535.183.01"));
    CHECK_FALSE(run.changes[0].disruptive);
    res["file:/etc/apt/preferences.d/labfleet-nvidia"] = {0, FileOut(NvidiaAptPreferences("535.183.01"))};
    run = RunModule(inv, "nvidia", res);
    CHECK(run.changes.empty());
    CHECK(run.all_notes().find("nvidia:driver: nothing to do because nvidia driver 535.183.01 (535.183.01) is installed; "
                               "reboot pending: kernel module 535.104.05 loaded, userspace 535.183.01 installed") !=
          std::string::npos);
    // The kernel module unknown but nvidia-smi reports the mismatch: still said.
    res["proc-driver-nvidia-version"] = {1, ""};
    run = RunModule(inv, "nvidia", res);
    CHECK(run.all_notes().find("reboot pending: nvidia-smi reports a driver/library version mismatch") != std::string::npos);
    // An upgrade planned on such a node carries it in its reason.
    res["proc-driver-nvidia-version"] = {0, Fixture("nvidia/proc_driver_version.txt")};
    res[kDpkgKey] = {0, Dpkg("535.154.05-0ubuntu1")};
    run = RunModule(inv, "nvidia", res);
    REQUIRE(run.changes.size() == 1);
    CHECK(run.changes[0].reason.find("reboot pending: kernel module 535.104.05 loaded, userspace 535.154.05 installed") !=
          std::string::npos);
  }

  TEST_CASE("hold: false unholds (one change); branch change replaces the other branch") {
    Inventory inv = Load(Inv("nvidia: { branch: \"535\", hold: false, blacklist_nouveau: false, persistence: false }"));
    ProbeResults res = AptNode(Dpkg("535.183.01-0ubuntu1", "535", "hold"), "nvidia-utils-535-server\nnvidia-headless-535-server\n",
                               "535.183.01", {0, "0, GPU-a, 535.183.01, Enabled\n"});
    ModuleRun run = RunModule(inv, "nvidia", res);
    auto lines = run.lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] == "~ nvidia driver packages unheld (nvidia-utils-535-server, nvidia-headless-535-server)");
    CHECK(run.changes[0].command == "apt-mark unhold -- nvidia-utils-535-server nvidia-headless-535-server");

    Inventory inv2 = Load(Inv("nvidia: { branch: \"535\", blacklist_nouveau: false, persistence: false }"));
    res = AptNode(Dpkg("525.147.05-0ubuntu1", "525", "hold"), "nvidia-utils-525-server\nnvidia-headless-525-server\n",
                  "525.147.05", {0, "0, GPU-a, 525.147.05, Enabled\n"});
    res["file:/etc/apt/apt.conf.d/51labfleet-nvidia"] = {0, FileOut(
        "// Managed by labfleet (nvidia.hold): the NVIDIA driver, its libraries and CUDA change only through the\n"
        "// inventory, never by unattended-upgrades (the entries are Python regular expressions matched at the start).\n"
        "Unattended-Upgrade::Package-Blacklist {\n    \"nvidia-\";\n    \"libnvidia-\";\n    \"cuda-\";\n};\n")};
    run = RunModule(inv2, "nvidia", res);
    lines = run.lines();
    for (auto& l : lines) CAPTURE(l);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0] ==
          "~ nvidia driver libnvidia-compute-525-server, nvidia-headless-525-server, nvidia-utils-525-server -> branch 535 "
          "(upgrade; replaces libnvidia-compute-525-server, nvidia-headless-525-server, nvidia-utils-525-server; reboot "
          "needed)");
    CHECK(run.changes[0].disruptive);
    const std::string& cmd = run.changes[0].command;
    CAPTURE(cmd);
    CHECK(cmd.find("rm -f /etc/apt/preferences.d/labfleet-nvidia\n"
                   "apt-mark unhold -- nvidia-headless-525-server nvidia-utils-525-server\n") == 0);
    CHECK(cmd.find("-- nvidia-utils-535-server nvidia-headless-535-server || {") != std::string::npos);  // any version
  }

  TEST_CASE("pacman: install what is missing; a pinned version pacman cannot give is a conflict; IgnorePkg") {
    Inventory inv = Load(Inv("nvidia: { driver: \"550.90.07\", blacklist_nouveau: false, persistence: false }"));
    ProbeResults res;
    res["pkg-manager"] = {0, "pacman\n"};
    res["pacman-q:nvidia-utils nvidia nvidia-container-toolkit"] = {0, ""};
    res["file:/etc/pacman.conf"] = {0, FileOut("[options]\nHoldPkg = pacman\n")};
    ModuleRun run = RunModule(inv, "nvidia", res);
    auto lines = run.lines();
    for (auto& l : lines) CAPTURE(l);
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "+ nvidia driver (install nvidia-utils, nvidia; reboot needed)");
    CHECK(run.changes[0].command == "pacman -S --noconfirm --needed -- nvidia-utils nvidia");
    CHECK(run.changes[0].disruptive);
    CHECK(lines[1] == "~ nvidia driver held (IgnorePkg nvidia-utils nvidia)");
    CHECK(run.changes[1].command.find("IgnorePkg = nvidia-utils nvidia # labfleet-nvidia") != std::string::npos);
    CHECK(run.all_notes().find("unattended-upgrades is an apt tool") != std::string::npos);
    res["pacman-q:nvidia-utils nvidia nvidia-container-toolkit"] = {0, Fixture("packages/pacman_q.txt")};
    res["file:/etc/pacman.conf"] = {0, FileOut(Fixture("packages/pacman_conf.txt"))};
    run = RunModule(inv, "nvidia", res);
    CHECK(run.changes.empty());
    Inventory old = Load(Inv("nvidia: { driver: \"535.183.01\", packages: pacman }"));
    run = RunModule(old, "nvidia", res);
    REQUIRE_FALSE(run.errors.empty());
    CHECK(run.errors[0].find("pacman installs only the repository's current version") != std::string::npos);
  }
}
