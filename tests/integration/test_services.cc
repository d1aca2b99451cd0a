// services on a sandbox node: sandbox nodes run no systemd and share the host's kernel, so the node gets the
// recording test doubles of systemctl, update-grub and sysctl (tests/doubles/). The files (config files,
// /etc/default/grub, /etc/sysctl.d) are real. The tests assert exactly which systemctl actions, restarts and
// handlers ran, that a handler runs once per apply however many of its inputs changed, and that re-plans are empty;
// on a busy node (a GPU job through the nvidia-smi double) a disruptive restart and stop wait until it is free.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

// The doubles' recorded actions (queries left out), one a line.
std::string Actions(const Sandbox& sbx) {
  std::string out;
  for (const auto& l : DoubleActions(sbx, "node1")) out += l + "\n";
  return out;
}

std::string Settings(const std::string& conf, const std::string& defaults_file, const std::string& kernel_args) {
  return R"(    services:
      cachefilesd:
        enabled: true
        state: running
        config:
          - { path: /etc/cachefilesd.conf, content: ")" + conf + R"(" }
          - { path: /etc/default/cachefilesd, content: ")" + defaults_file + R"(" }
      snapd: { masked: true }
      trainer: { enabled: true, state: running }
    default_target: multi-user.target
    disable_wait_online: true
    kernel_args: )" + kernel_args + R"(
    sysctl: { vm.swappiness: "10", net.core.somaxconn: "4096" }
)";
}

const char* kGrub =
    "GRUB_DEFAULT=0\n"
    "GRUB_TIMEOUT=5\n"
    "GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n"
    "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n"
    "GRUB_CMDLINE_LINUX=\"\"\n";

}  // namespace

TEST_SUITE("integration-services") {
  TEST_CASE("units, default target, wait-online, kernel args and sysctl converge; restarts run once") {
    Sandbox sbx({.nodes = 1});
    labfleet::testing::InstallDoubles(sbx, "node1", {"systemctl", "update-grub", "sysctl", "reboot"});
    labfleet::testing::SeedUnit(sbx, "node1", "cachefilesd.service", "disabled", "inactive");
    labfleet::testing::SeedUnit(sbx, "node1", "snapd.service", "enabled", "active");
    labfleet::testing::SeedUnit(sbx, "node1", "trainer.service", "enabled", "active");
    labfleet::testing::SeedUnit(sbx, "node1", "systemd-networkd-wait-online.service", "enabled", "active");
    labfleet::testing::MustExec(sbx, "node1", std::string("printf '%s' '") + kGrub + "' > /etc/default/grub");
    TempInventory inv(sbx);
    inv.defaults(Settings("dir /var/cache/fscache\\n", "RUN=yes\\n", "[pci=realloc]"));

    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(apply.out << apply.err);
    REQUIRE(apply.rc == 0);
    CHECK(apply.out.find("reboot needed") != std::string::npos);
    // Exactly these actions, in plan order, handlers last; no restart: cachefilesd was stopped and starts
    // with its new configuration.
    CHECK(Actions(sbx) == "systemctl enable cachefilesd.service\nsystemctl start cachefilesd.service\nsystemctl mask --now snapd.service\nsystemctl set-default multi-user.target\nsystemctl disable systemd-networkd-wait-online.service\nupdate-grub\nsysctl -p /etc/sysctl.d/90-labfleet.conf\n");
    // Independent checks: the doubles' unit state, the files.
    CHECK(labfleet::testing::UnitState(sbx, "node1", "cachefilesd.service").find("file=enabled") != std::string::npos);
    CHECK(labfleet::testing::UnitState(sbx, "node1", "cachefilesd.service").find("active=active") != std::string::npos);
    CHECK(labfleet::testing::UnitState(sbx, "node1", "snapd.service").find("file=masked") != std::string::npos);
    CHECK(labfleet::testing::UnitState(sbx, "node1", "snapd.service").find("active=inactive") != std::string::npos);
    CHECK(Exec(sbx, "cat /var/lib/labfleet-doubles/default.target") == "multi-user.target\n");
    CHECK(Exec(sbx, "cat /etc/cachefilesd.conf") == "dir /var/cache/fscache\n");
    CHECK(Exec(sbx, "grep ^GRUB_CMDLINE_LINUX_DEFAULT= /etc/default/grub") ==
          "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet pci=realloc\"\n");
    CHECK(Exec(sbx, "grep -c '^GRUB_DISTRIBUTOR=`lsb_release' /etc/default/grub") == "1\n");  // rest kept
    CHECK(Exec(sbx, "sed 1d /etc/sysctl.d/90-labfleet.conf") == "vm.swappiness = 10\nnet.core.somaxconn = 4096\n");

    ClearDoubleCalls(sbx, "node1");
    auto plan1 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode", "--format", "json"});
    INFO(plan1.out << plan1.err);
    CHECK(plan1.rc == 0);
    CHECK(Actions(sbx).empty());  // planning only asks
    // The running kernel still lacks the argument: said in the plan's notes.
    CHECK(plan1.out.find("reboot pending: the running kernel lacks pci=realloc") != std::string::npos);

    // One config file changes: that file and one restart of its unit (apply's JSON carries the plan it ran;
    // the node is "changed" only when the executor's own re-plan afterwards is empty).
    inv.defaults(Settings("dir /var/cache/fscache\\ntag lab\\n", "RUN=yes\\n", "[pci=realloc]"));
    auto apply2 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply2.out << apply2.err);
    REQUIRE(apply2.rc == 0);
    CHECK(Summaries(apply2) == "config /etc/cachefilesd.conf of cachefilesd.service | restart cachefilesd.service");
    CHECK(apply2.json()["apply"][0]["status"] == "changed");
    CHECK(Actions(sbx) == "systemctl restart cachefilesd.service\n");
    CHECK(Exec(sbx, "cat /etc/cachefilesd.conf") == "dir /var/cache/fscache\ntag lab\n");

    // Both config files and the kernel args change: one restart, one update-grub.
    ClearDoubleCalls(sbx, "node1");
    inv.defaults(Settings("dir /srv/fscache\\n", "RUN=no\\n", "[pci=realloc, iommu=pt]"));
    auto apply3 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply3.out << apply3.err);
    REQUIRE(apply3.rc == 0);
    CHECK(Summaries(apply3) ==
          "config /etc/cachefilesd.conf of cachefilesd.service | restart cachefilesd.service | "
          "config /etc/default/cachefilesd of cachefilesd.service | "
          "kernel args +iommu=pt in /etc/default/grub (reboot needed) | "
          "update-grub (reboot needed for the new kernel command line)");
    CHECK(Actions(sbx) == "systemctl restart cachefilesd.service\nupdate-grub\n");
    CHECK(Exec(sbx, "grep ^GRUB_CMDLINE_LINUX_DEFAULT= /etc/default/grub") ==
          "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet pci=realloc iommu=pt\"\n");

    // Drift made by hand: the masked unit unmasked and started, the trainer stopped.
    Exec(sbx, "systemctl unmask snapd.service 2>/dev/null; systemctl start snapd.service; systemctl stop trainer");
    ClearDoubleCalls(sbx, "node1");
    auto apply4 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply4.out << apply4.err);
    REQUIRE(apply4.rc == 0);
    CHECK(Summaries(apply4) == "service snapd.service (mask, stop) | service trainer.service (start)");
    CHECK(Actions(sbx) == "systemctl mask --now snapd.service\nsystemctl start trainer.service\n");
    CHECK(apply4.json()["apply"][0]["status"] == "changed");
  }

  TEST_CASE("unit files: verified on the node, installed, one daemon-reload before the restart and the start") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl"});
    SeedUnit(sbx, "node1", "trainer.service", "enabled", "active");
    TempInventory inv(sbx);
    auto settings = [](const std::string& nice, const std::string& labjob_exec) {
      return "    services:\n"
             "      trainer:\n"
             "        state: running\n"
             "        dropin: \"[Service]\\nNice=" + nice + "\\n\"\n"
             "      labjob:\n"
             "        enabled: true\n"
             "        state: running\n"
             "        unit: \"[Unit]\\nDescription=lab job\\n[Service]\\nExecStart=" + labjob_exec +
             "\\n[Install]\\nWantedBy=multi-user.target\\n\"\n";
    };
    inv.defaults(settings("5", "/bin/sleep infinity"));
    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply.out << apply.err);
    REQUIRE(apply.rc == 0);
    CHECK(Summaries(apply) ==
          "unit file /etc/systemd/system/labjob.service | systemctl daemon-reload | "
          "drop-in /etc/systemd/system/trainer.service.d/labfleet.conf | restart trainer.service | "
          "service labjob.service (enable) | start labjob.service (after daemon-reload)");
    // One reload, first; the new unit is enabled by a change and started by a handler after the reload.
    CHECK(Actions(sbx) ==
          "systemctl enable labjob.service\nsystemctl daemon-reload\nsystemctl restart trainer.service\n"
          "systemctl start labjob.service\n");
    auto verify = sbx.exec("node1", "systemd-analyze verify --man=no /etc/systemd/system/labjob.service");
    INFO(verify.out << verify.err);
    CHECK(verify.exit_code == 0);  // independent: systemd's verifier on the installed file
    CHECK(UnitState(sbx, "node1", "labjob.service").find("active=active") != std::string::npos);
    ClearDoubleCalls(sbx, "node1");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // Both unit texts change: still one reload, before the restarts.
    ClearDoubleCalls(sbx, "node1");
    inv.defaults(settings("7", "/bin/sleep 1000000"));
    auto apply2 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(apply2.out << apply2.err);
    REQUIRE(apply2.rc == 0);
    CHECK(Actions(sbx) ==
          "systemctl daemon-reload\nsystemctl restart labjob.service\nsystemctl restart trainer.service\n");

    // A unit the verifier refuses (relative ExecStart path): refused with its message, the old file kept.
    ClearDoubleCalls(sbx, "node1");
    inv.defaults(settings("7", "bin/none"));
    auto bad = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(bad.out << bad.err);
    CHECK(bad.rc != 0);
    CHECK((bad.out + bad.err).find("labjob.service") != std::string::npos);
    CHECK((bad.out + bad.err).find("was not put in place") != std::string::npos);
    CHECK(Exec(sbx, "grep ^ExecStart= /etc/systemd/system/labjob.service") == "ExecStart=/bin/sleep 1000000\n");
    CHECK(Actions(sbx).empty());
  }

  TEST_CASE("a disruptive restart and stop wait while a GPU job runs, and happen once the node is free") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl", "nvidia-smi"});
    SeedUnit(sbx, "node1", "jupyterhub.service", "enabled", "active");
    SeedUnit(sbx, "node1", "trainer-agent.service", "enabled", "active");
    SeedUnit(sbx, "node1", "monitor.service", "enabled", "inactive");
    SeedUnit(sbx, "node1", "cachefilesd.service", "enabled", "active");
    TempInventory inv(sbx);
    // jupyterhub, trainer-agent and monitor are disruptive (stopping them kills work); cachefilesd is not.
    auto write = [&](const std::string& hub_conf, const std::string& agent_state, const std::string& cache_conf) {
      inv.defaults("    services:\n"
                   "      jupyterhub:\n"
                   "        state: running\n"
                   "        disruptive: true\n"
                   "        config: [{ path: /etc/jupyterhub/config.py, content: \"" + hub_conf + "\" }]\n"
                   "      trainer-agent: { state: " + agent_state + ", disruptive: true }\n"
                   "      monitor: { state: running, disruptive: true }\n"
                   "      cachefilesd:\n"
                   "        state: running\n"
                   "        config: [{ path: /etc/cachefilesd.conf, content: \"" + cache_conf + "\" }]\n");
    };
    // Converged first, on an idle node, with the files the units run with now.
    MustExec(sbx, "node1", "mkdir -p /etc/jupyterhub && printf 'c.port = 8000\\n' > /etc/jupyterhub/config.py && "
                           "printf 'dir /var/cache/fscache\\n' > /etc/cachefilesd.conf");
    write("c.port = 8000\\n", "running", "dir /var/cache/fscache\\n");
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) == "service monitor.service (start)");
    CHECK(Actions(sbx) == "systemctl start monitor.service\n");

    // A student's training job holds a GPU. The hub's config changes (a disruptive restart), the agent is to
    // stop (a disruptive stop), cachefilesd's config changes (a restart that is not disruptive), and the
    // monitor is stopped by hand (a start is never disruptive).
    SeedGpuApps(sbx, "node1", "gpu_uuid,pid,used_memory,process_name\nGPU-1,1,1000,python train.py\n");
    Exec(sbx, "systemctl stop monitor.service");
    ClearDoubleCalls(sbx, "node1");
    write("c.port = 8001\\n", "stopped", "dir /srv/fscache\\n");
    auto plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(plan.out.find("deferred: restart jupyterhub.service on node1") != std::string::npos);
    CHECK(plan.out.find("deferred: service trainer-agent.service (stop) on node1") != std::string::npos);
    CHECK(plan.out.find("1 GPU job running") != std::string::npos);
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) ==
          "config /etc/jupyterhub/config.py of jupyterhub.service | config /etc/cachefilesd.conf of cachefilesd.service | "
          "restart cachefilesd.service | service monitor.service (start)");
    CHECK(Summaries(r.json(), "deferred") == "restart jupyterhub.service | service trainer-agent.service (stop)");
    // Exactly what is not disruptive happened; the hub kept running with its old config, the agent runs on.
    CHECK(Actions(sbx) == "systemctl start monitor.service\nsystemctl restart cachefilesd.service\n");
    CHECK(Exec(sbx, "cat /etc/jupyterhub/config.py /etc/cachefilesd.conf") == "c.port = 8001\ndir /srv/fscache\n");
    CHECK(UnitState(sbx, "node1", "trainer-agent.service").find("active=active") != std::string::npos);
    // Still owed on the next run, though the hub's file matches now: the restart from pending-handlers.
    ClearDoubleCalls(sbx, "node1");
    plan = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(plan.out << plan.err);
    CHECK(Summaries(plan).empty());
    CHECK(Summaries(plan.json(), "deferred") == "service trainer-agent.service (stop) | restart jupyterhub.service");
    CHECK(Actions(sbx).empty());

    // The job ends: the stop and the owed restart happen, each once, and nothing else.
    SeedGpuApps(sbx, "node1", "gpu_uuid,pid,used_memory,process_name\n");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) == "service trainer-agent.service (stop) | restart jupyterhub.service");
    CHECK(Summaries(r.json(), "deferred").empty());
    CHECK(r.json()["apply"][0]["status"] == "changed");  // the executor's re-plan was empty
    CHECK(Actions(sbx) == "systemctl stop trainer-agent.service\nsystemctl restart jupyterhub.service\n");
    CHECK(UnitState(sbx, "node1", "trainer-agent.service").find("active=inactive") != std::string::npos);
    CHECK(sbx.exec("node1", "test -e /var/lib/labfleet/pending-handlers").exit_code != 0);
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }
}
