#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "modules/facts/facts.h"
#include "engine/fake_transport.h"
#include "engine/local_transport.h"
#include "engine/planner.h"

using namespace labfleet;

namespace {

// A fixture's raw text; its first line ("# where this came from") is not part of the output.
std::string Fixture(const std::string& name) {
  std::ifstream in(std::string(LABFLEET_SOURCE_DIR) + "/tests/fixtures/facts/" + name);
  REQUIRE_MESSAGE(in.good(), "missing fixture " << name);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  REQUIRE(s.rfind("# ", 0) == 0);
  return s.substr(s.find('\n') + 1);
}

}  // namespace

TEST_SUITE("facts") {
  TEST_CASE("ParseOsRelease: Debian and Ubuntu, quoted and unquoted, garbage skipped") {
    OsRelease d = ParseOsRelease(Fixture("os-release-debian12.txt"));
    CHECK(d.id == "debian");
    CHECK(d.version_id == "12");
    CHECK(d.version_codename == "bookworm");
    CHECK(d.pretty_name == "Debian GNU/Linux 12 (bookworm)");
    OsRelease u = ParseOsRelease(Fixture("os-release-ubuntu2204.txt"));
    CHECK(u.id == "ubuntu");
    CHECK(u.id_like == "debian");  // the line after the garbage line is still read
    CHECK(u.version_id == "22.04");
    CHECK(u.pretty_name == "Ubuntu 22.04.4 LTS");
    OsRelease e = ParseOsRelease("NAME=\"Fedora \\\"X\\\"\"\nID='fedora'\nVERSION_ID=40\nBAD KEY=1\nPRETTY_NAME=\"unterminated\n");
    CHECK(e.name == "Fedora \"X\"");
    CHECK(e.id == "fedora");
    CHECK(e.version_id == "40");
    CHECK(e.pretty_name.empty());
  }

  TEST_CASE("ParseCpuinfo: captured VM cpuinfo and a dual-socket hyperthreaded layout") {
    CpuInfo c = ParseCpuinfo(Fixture("cpuinfo-vm.txt"));
    CHECK(c.model == "AMD EPYC");
    CHECK(c.logical == 2);
    CHECK(c.cores == 2);
    CHECK(c.sockets == 1);
    std::string two_sockets;
    for (int p = 0; p < 8; ++p)
      two_sockets += "processor\t: " + std::to_string(p) + "\nmodel name\t: Intel(R) Xeon(R) Gold 6248R CPU @ 3.00GHz\n" +
                     "physical id\t: " + std::to_string(p / 4) + "\ncore id\t\t: " + std::to_string(p % 2) +
                     "\ncpu cores\t: 2\n\n";
    c = ParseCpuinfo(two_sockets);
    CHECK(c.logical == 8);
    CHECK(c.sockets == 2);
    CHECK(c.cores == 4);
    // ARM: no model name, no topology lines
    c = ParseCpuinfo("processor\t: 0\nBogoMIPS\t: 50.00\nprocessor\t: 1\nModel\t: Raspberry Pi 4 Model B Rev 1.4\n");
    CHECK(c.logical == 2);
    CHECK(c.cores == 2);
    CHECK(c.model == "Raspberry Pi 4 Model B Rev 1.4");
  }

  TEST_CASE("ParseMeminfo, ParseUptime, ParseDf on captured output") {
    MemInfo m = ParseMeminfo(Fixture("meminfo-vm.txt"));
    CHECK(m.total_kib > 0);
    CHECK(m.available_kib > 0);
    CHECK(m.available_kib <= m.total_kib);
    CHECK(m.swap_total_kib >= 0);
    CHECK(ParseMeminfo("MemTotal: lots kB\n").total_kib == -1);

    auto up = ParseUptime(Fixture("uptime-vm.txt"));
    REQUIRE(up);
    CHECK(*up > 0);
    CHECK_FALSE(ParseUptime("garbage\n"));

    auto load = ParseLoadavg(Fixture("loadavg-vm.txt"));  // the garbage line first is skipped
    REQUIRE(load);
    CHECK(load->load1 > 0);
    CHECK(load->load15 > 0);
    CHECK_FALSE(ParseLoadavg("0.5 lots 0.1 1/2 3\n"));

    auto df = ParseDf(Fixture("df-vm.txt"));
    REQUIRE(df);
    CHECK(df->filesystem == "/dev/vda");  // not the garbage row after the header
    CHECK(df->mount == "/");
    CHECK(df->size_kib > df->avail_kib);
    CHECK(df->used_kib > 0);
    auto spaced = ParseDf("Filesystem 1024-blocks Used Available Capacity Mounted on\n"
                          "/dev/sdb1 100 40 60 40% /mnt/my disk\n");
    REQUIRE(spaced);
    CHECK(spaced->mount == "/mnt/my disk");
    CHECK_FALSE(ParseDf("Filesystem 1024-blocks Used Available Capacity Mounted on\n"));
  }

  TEST_CASE("ParseNvidiaSmiGpus: 8 GPUs, [N/A] values, the error line skipped") {
    auto gpus = ParseNvidiaSmiGpus(Fixture("nvidia-smi-gpus-a100x8.txt"));
    REQUIRE(gpus.size() == 8);
    CHECK(gpus[0].index == 0);
    CHECK(gpus[0].name == "NVIDIA A100-SXM4-80GB");
    CHECK(gpus[0].uuid == "GPU-4f3c2a1e-7b9d-4e21-9c7a-1d2e3f4a5b60");
    CHECK(gpus[0].driver == "535.104.05");
    CHECK(gpus[0].memory_total_mib == 81920);
    CHECK(gpus[0].memory_used_mib == 74115);
    CHECK(gpus[0].utilization_pct == 97);
    CHECK(gpus[4].index == 4);  // after the garbage line
    CHECK(gpus[6].memory_used_mib == -1);
    CHECK(gpus[6].utilization_pct == -1);
    CHECK(ParseNvidiaSmiGpus(Fixture("nvidia-smi-failed.txt")).empty());
    CHECK(gpus[0].temperature_c == -1);  // a 7-field capture has no temperature

    // With temperature.gpu (the query `facts` sends now): 8 fields, [N/A] kept as unknown. Written by hand in
    // nvidia-smi's csv,noheader,nounits form (no GPU machine was lent to capture one).
    auto t = ParseNvidiaSmiGpus("0, NVIDIA H100 80GB HBM3, GPU-0a0a0a0a-1111-2222-3333-444455556666, 550.54.15, 81559, 40960, 97, 71\n"
                                "1, NVIDIA H100 80GB HBM3, GPU-1b1b1b1b-1111-2222-3333-444455556666, 550.54.15, 81559, 0, 0, [N/A]\n"
                                "garbage, line\n");
    REQUIRE(t.size() == 2);
    CHECK(t[0].temperature_c == 71);
    CHECK(t[1].temperature_c == -1);
  }

  TEST_CASE("ParseNvidiaSmiApps and ParsePs") {
    auto apps = ParseNvidiaSmiApps(Fixture("nvidia-smi-apps.txt"));
    REQUIRE(apps.size() == 4);  // "No running processes found" skipped
    CHECK(apps[0].gpu_uuid == "GPU-4f3c2a1e-7b9d-4e21-9c7a-1d2e3f4a5b60");
    CHECK(apps[0].pid == 183021);
    CHECK(apps[0].used_memory_mib == 74102);
    CHECK(apps[0].process_name == "/home/yseong/.venv/bin/python");
    CHECK(apps[2].process_name == "python3 train.py --name a,b");  // a comma inside a name is not a separator
    CHECK(apps[3].used_memory_mib == -1);
    auto ps = ParsePs(Fixture("ps-gpu-users.txt"));
    REQUIRE(ps.size() == 3);
    CHECK(ps[0].pid == 183021);
    CHECK(ps[0].user == "yseong");
    CHECK(ps[0].elapsed_s == 86412);
    CHECK(ps[2].user == "jkim");
  }

  TEST_CASE("ParseLspci keeps display controllers only; ParseSysfsPci the same from sysfs") {
    auto pci = ParseLspci(Fixture("lspci-gpu-server.txt"));
    REQUIRE(pci.size() == 6);  // ASPEED + 4x A100 + RTX 3090; the audio function and the garbage line are not
    CHECK(pci[0].vendor_id == "1a03");
    CHECK_FALSE(pci[0].nvidia());
    CHECK(pci[1].slot == "17:00.0");
    CHECK(pci[1].class_id == "0302");
    CHECK(pci[1].class_name == "3D controller");
    CHECK(pci[1].vendor_id == "10de");
    CHECK(pci[1].device_id == "20b5");
    CHECK(pci[1].description == "NVIDIA Corporation GA100 [A100 PCIe 80GB]");
    CHECK(pci[5].description == "NVIDIA Corporation GA102 [GeForce RTX 3090]");
    auto sys = ParseSysfsPci(Fixture("pci-sysfs.txt"));
    REQUIRE(sys.size() == 3);
    CHECK(sys[1].nvidia());
    CHECK(sys[1].class_id == "0302");
    CHECK(sys[1].device_id == "20b5");
  }

  TEST_CASE("ParseDockerPs reads JSON lines and skips the warning line") {
    auto cs = ParseDockerPs(Fixture("docker-ps.txt"));
    REQUIRE(cs.size() == 2);
    CHECK(cs[0].id == "4b1d6a3c1f2e");
    CHECK(cs[0].name == "web");
    CHECK(cs[0].image == "nginx:1.25");
    CHECK(cs[0].status == "Up 2 hours");
    CHECK(cs[1].image == "nvcr.io/nvidia/pytorch:24.03-py3");
  }

  TEST_CASE("each fact's parser on its captured output (a garbage line in each), read through ProbeResults") {
    ProbeResults r;
    r["os-release"] = {0, Fixture("os-release-debian12.txt")};
    r["cpuinfo"] = {0, Fixture("cpuinfo-vm.txt")};
    r["meminfo"] = {0, Fixture("meminfo-vm.txt")};
    r["uptime"] = {0, Fixture("uptime-vm.txt")};
    r["root-df"] = {0, Fixture("df-vm.txt")};
    r["nvidia-gpus"] = {0, Fixture("nvidia-smi-gpus-a100x8.txt")};
    r["gpu-apps"] = {0, Fixture("nvidia-smi-apps.txt") + Fixture("ps-gpu-users.txt")};
    r["pci-display"] = {0, Fixture("lspci-gpu-server.txt") + Fixture("pci-sysfs.txt")};
    r["docker-ps"] = {0, Fixture("docker-ps.txt")};
    r["labfleet-state"] = {0, "{\"applied\": \"abc\"}\n"};
    CHECK(r.fact(kOsRelease).id == ParseOsRelease(Fixture("os-release-debian12.txt")).id);
    CHECK(r.fact(kOsRelease).id == "debian");
    CHECK(r.fact(kCpuinfo).logical == ParseCpuinfo(Fixture("cpuinfo-vm.txt")).logical);
    CHECK(r.fact(kCpuinfo).logical > 0);
    CHECK(r.fact(kMeminfo).total_kib > 0);
    CHECK(r.fact(kUptime).has_value());
    CHECK(r.fact(kRootDf).has_value());
    CHECK(r.fact(kNvidiaGpus).size() == 8);
    CHECK(r.fact(kGpuApps).apps.size() == ParseNvidiaSmiApps(Fixture("nvidia-smi-apps.txt")).size());
    CHECK(r.fact(kGpuApps).ps.size() == ParsePs(Fixture("ps-gpu-users.txt")).size());
    CHECK_FALSE(r.fact(kGpuApps).ps.empty());
    CHECK(r.fact(kPciDisplay).size() ==
          ParseLspci(Fixture("lspci-gpu-server.txt")).size() + ParseSysfsPci(Fixture("pci-sysfs.txt")).size());
    CHECK(r.fact(kDockerPs).size() == 2);
    REQUIRE(r.fact(kLabfleetState).has_value());
    CHECK((*r.fact(kLabfleetState))["applied"] == "abc");
    ProbeResults bad;
    bad["labfleet-state"] = {0, "{not json\n"};
    CHECK_FALSE(bad.fact(kLabfleetState).has_value());
    CHECK(FactsFromResults(bad).state_error == "/var/lib/labfleet/state.json is not valid JSON");
  }

  TEST_CASE("FactsFromResults: GPUs from nvidia-smi with users; count mismatch against the inventory") {
    ProbeResults s;
    s["hostname"] = {0, "gpu07\n"};
    s["nvidia-gpus"] = {0, Fixture("nvidia-smi-gpus-a100x8.txt")};
    s["gpu-apps"] = {0, Fixture("nvidia-smi-apps.txt") + Fixture("ps-gpu-users.txt")};
    s["pci-display"] = {0, Fixture("lspci-gpu-server.txt")};
    s["docker-version"] = {0, "24.0.7\n"};
    s["docker-ps"] = {0, Fixture("docker-ps.txt")};
    s["labfleet-state"] = {0, "{\"applied\": \"abc\"}\n"};
    NodeFacts f = FactsFromResults(s);
    f.node = "gpu07";
    CHECK(f.hostname == "gpu07");
    CHECK(f.gpu_source == "nvidia-smi");
    CHECK(f.gpu_count() == 8);
    CHECK(f.gpu_model() == "NVIDIA A100-SXM4-80GB");
    CHECK(f.gpu_driver() == "535.104.05");
    REQUIRE(f.gpu_processes.size() == 4);
    CHECK(f.gpu_processes[0].gpu_index == 0);
    CHECK(f.gpu_processes[0].user == "yseong");
    CHECK(f.gpu_processes[0].elapsed_s == 86412);
    CHECK(f.gpu_processes[2].gpu_index == 4);
    CHECK(f.gpu_processes[3].gpu_index == -1);  // a uuid nvidia-smi did not list
    CHECK(f.gpu_processes[3].user.empty());
    CHECK(f.docker_installed);
    CHECK(f.docker_version == "24.0.7");
    CHECK(f.containers.size() == 2);
    REQUIRE(f.state);
    CHECK((*f.state)["applied"] == "abc");
    f.gpus_expected = 8;
    CHECK_FALSE(f.gpu_count_mismatch());
    f.gpus_expected = 4;
    CHECK(f.gpu_count_mismatch());
    auto j = f.ToJson();
    CHECK(j["gpus"]["count"] == 8);
    CHECK(j["gpus"]["count_mismatch"] == true);
    CHECK(j["gpus"]["devices"].size() == 8);
    CHECK(j["gpus"]["processes"][0]["user"] == "yseong");
    CHECK(j["gpus"]["devices"][6]["memory_used_mib"].is_null());
    CHECK(j["docker"]["containers"][1]["name"] == "yseong-train");
    CHECK(j["labfleet_state"]["applied"] == "abc");
  }

  TEST_CASE("FactsFromResults: driver broken falls back to PCI; no docker; no GPU at all") {
    ProbeResults s;
    s["nvidia-gpus"] = {9, Fixture("nvidia-smi-failed.txt")};
    s["pci-display"] = {0, Fixture("lspci-gpu-server.txt")};
    s["docker-version"] = {127, ""};
    NodeFacts f = FactsFromResults(s);
    CHECK(f.gpu_source == "lspci");
    CHECK(f.gpu_count() == 5);  // 4x A100 + the RTX 3090 on the bus
    CHECK(f.gpu_model() == "mixed");
    CHECK(f.nvidia_smi_error.find("couldn't communicate with the NVIDIA driver") != std::string::npos);
    CHECK_FALSE(f.docker_installed);
    ProbeResults none;
    none["nvidia-gpus"] = {127, ""};
    none["pci-display"] = {0, "0000:00:02.0 0x030000 0x1234 0x1111\n"};
    NodeFacts n = FactsFromResults(none);
    CHECK(n.gpu_source == "lspci");
    CHECK(n.gpu_count() == 0);
    CHECK(n.nvidia_smi_error.empty());
    n.reachable = false;
    n.gpus_expected = 2;
    CHECK_FALSE(n.gpu_count_mismatch());  // unreachable nodes are reported as such, not as a mismatch
  }

  TEST_CASE("GatherFacts: one round trip of the planner's probe script; the script runs on this machine") {
    FakeTransport fake("n1");
    fake.set_default({0, "", ""});
    NodeFacts f = GatherFacts(fake);
    CHECK(fake.calls().size() == 1);
    CHECK(f.error_kind == "script");  // the fake's empty output has no probe markers
    CHECK(f.error.find("cut short") != std::string::npos);
    CHECK(fake.calls()[0].command == ScriptRunner());
    CHECK(fake.calls()[0].stdin_data.find(kNvidiaGpus.command) != std::string::npos);

    LocalTransport local("here", 60);
    NodeFacts l = GatherFacts(local);
    CHECK(l.error.empty());
    CHECK_FALSE(l.hostname.empty());
    CHECK_FALSE(l.kernel.empty());
    CHECK(l.cpu.logical >= 1);
    CHECK(l.mem.total_kib > 0);
    CHECK_FALSE(l.root_fs_type.empty());
    CHECK(l.root_df.has_value());
    CHECK(l.uptime_s.has_value());
    CHECK_FALSE(l.os.id.empty());
    CHECK(l.busy_probed);
  }

  TEST_CASE("the facts probe script is plain POSIX sh") {
    LocalTransport sh("here", 30);
    CHECK(sh.run("sh -n", BuildProbeScript(FactsProbes(), NewNonce())).exit_code == 0);  // parses
  }
}
