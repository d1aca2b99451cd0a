// docker networks: the `docker network inspect` parser on the fixture (one garbage line) and on hostile output,
// overlap warnings against lab.reserved_networks naming network and subnet, remove_networks removing only a
// network no container uses (a refusal line otherwise), and its validation.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "engine/local_transport.h"
#include "engine/shell.h"
#include "engine/text.h"

#include "engine/module.h"
#include "modules/facts/docker_networks.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;


namespace {

std::string Lab(const std::string& docker) {
  return "lab: { name: t, reserved_networks: [10.0.1.0/24, 172.20.0.0/16] }\nnodes:\n  n1:\n    address: 10.9.0.1\n"
         "    docker: " + docker + "\n";
}

}  // namespace

TEST_SUITE("docker") {
  TEST_CASE("docker network inspect: names, subnets, attached containers; the garbage line skipped") {
    DockerNetworks n = ParseDockerNetworks(Fixture("docker/network_inspect.txt"));
    CHECK(n.error.empty());
    CHECK(n.skipped == 2);  // the fixture's header comment and the WARNING line
    REQUIRE(n.networks.size() == 4);
    CHECK(n.networks[0].name == "bridge");
    CHECK(n.networks[0].subnets == std::vector<std::string>{"172.17.0.0/16"});
    CHECK(n.networks[1].name == "vpn-clash");
    CHECK(n.networks[1].containers == std::vector<std::string>{"web"});
    CHECK(n.networks[2].subnets == std::vector<std::string>{"172.20.5.0/24"});
    CHECK(n.networks[2].containers.empty());
    CHECK(n.networks[3].subnets.empty());
    CHECK(ParseDockerNetworks("no-docker\n").no_docker);
    // Hostile or cut-short output: an error, never a guess.
    CHECK(!ParseDockerNetworks("[{\"Name\": \"x\", \"IPAM\": ").error.empty());
    CHECK(!ParseDockerNetworks("junk only\n").error.empty());
    DockerNetworks odd = ParseDockerNetworks(
        R"([{"Name": 5}, {"Name": "n\u001b[31m", "IPAM": {"Config": "x"}, "Containers": []}, "str"])");
    CHECK(odd.error.empty());
    REQUIRE(odd.networks.size() == 1);  // the entries without a string Name are skipped
    CHECK(odd.networks[0].subnets.empty());
    CHECK(odd.skipped == 2);
  }

  TEST_CASE("networks overlapping reserved networks are warned; a listed unused one is removed, a used one refused") {
    Inventory inv = Load(Lab("{ address_pools: [{ base: 172.28.0.0/16, size: 24 }], remove_networks: [vpn-clash, old-pool, gone] }"));
    ProbeResults res;
    ModuleRun first = RunModule(inv, "docker", res);
    CHECK(std::find(first.probe_keys.begin(), first.probe_keys.end(), "docker:networks") != first.probe_keys.end());
    res["docker:networks"] = {0, Fixture("docker/network_inspect.txt")};
    ModuleRun run = RunModule(inv, "docker", res);
    std::string warnings;
    for (const auto& w : run.warnings) warnings += w + "\n";
    CAPTURE(warnings);
    CHECK(warnings.find("docker network 'vpn-clash' (subnet '10.0.1.0/24') overlaps reserved network 10.0.1.0/24") !=
          std::string::npos);
    CHECK(warnings.find("docker network 'old-pool' (subnet '172.20.5.0/24') overlaps reserved network 172.20.0.0/16") !=
          std::string::npos);
    CHECK(warnings.find("'bridge'") == std::string::npos);  // 172.17.0.0/16 overlaps nothing reserved
    CHECK(warnings.find("refused: docker network vpn-clash (10.0.1.0/24) is used by container 'web'") != std::string::npos);
    const Change* rm = nullptr;
    int rms = 0;
    for (const auto& c : run.changes)
      if (c.command.rfind("docker network rm", 0) == 0) rm = &c, ++rms;
    REQUIRE(rm);
    CHECK(rms == 1);
    CHECK(rm->command == "docker network rm old-pool");
    CHECK(rm->summary == "docker network old-pool (172.20.5.0/24)");
    CHECK(rm->sign == '-');

    // Unreadable output: a warning, nothing removed.
    res["docker:networks"] = {0, "[{\"Name\": \"old-pool\""};
    run = RunModule(inv, "docker", res);
    for (const auto& c : run.changes) CHECK(c.command.find("docker network rm") == std::string::npos);
    bool said = false;
    for (const auto& w : run.warnings) said |= w.find("docker networks not checked") != std::string::npos;
    CHECK(said);
  }

  TEST_CASE("remove_networks validation: names only, not Docker's predefined networks") {
    Findings f;
    Load(Lab("{ remove_networks: [bridge, \"a b\", ok-net] }"), &f);
    std::string all = All(f);
    CAPTURE(all);
    CHECK(all.find("docker-network-name: docker remove_networks cannot remove Docker's predefined network 'bridge'") !=
          std::string::npos);
    CHECK(all.find("'a b' is not a Docker network name") != std::string::npos);
    CHECK(all.find("ok-net") == std::string::npos);
  }

  TEST_CASE("the networks probe checks ids are hex before they become words, and bounds the output") {
    Probe p = DockerNetworksProbe();
    CHECK(p.key == "docker:networks");
    CHECK(p.command.find("head -c 4194304") != std::string::npos);
    // Run for real under /bin/sh with a docker double that prints a hostile list and, for inspect, its arguments.
    const std::string dir = std::filesystem::temp_directory_path() / ("lf-dnet-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const std::string hex64(64, 'a');
    std::string list = "0123456789ab\n" + hex64 + "\nABCDEF012345\n0123456789a\n$(touch " + dir + "/pwned)\n*\n" +
                       std::string(65, 'b') + "\nfedcba987654 junk\n";
    for (int i = 0; i < 600; ++i) list += "1234567890" + std::string(2 + i % 3, 'c') + "\n";
    std::ofstream(dir + "/list") << list;
    std::ofstream(dir + "/docker") << "#!/bin/sh\nif [ \"$2\" = ls ]; then cat " + dir + "/list; else shift 2; "
                                      "for a in \"$@\"; do echo \"$a\"; done; fi\n";
    std::filesystem::permissions(dir + "/docker", std::filesystem::perms::owner_all);
    LocalTransport local("here", 60);
    RunResult r = local.run(Cmd("env").arg("PATH=" + dir + ":/usr/bin:/bin").arg("DOCKER_HOST=unix://" + dir + "/d.sock").arg("sh").arg("-c").arg(p.command).str());
    REQUIRE(r.ok());
    std::vector<std::string> ids;
    for (auto& l : SplitLines(r.out))
      if (!l.empty()) ids.push_back(l);
    REQUIRE(ids.size() == 512);
    CHECK(ids[0] == "0123456789ab");
    CHECK(ids[1] == hex64);
    CHECK(ids[2] == "fedcba987654");  // a word of a line, checked like every word
    CHECK(ids[3] == "1234567890cc");
    CHECK(!std::filesystem::exists(dir + "/pwned"));
    // a list past 64 KiB: the word cut at the bound is dropped, not sent
    std::string big;
    for (int i = 0; big.size() < 70000; ++i) big += std::string(63, 'd') + "\n";
    std::ofstream(dir + "/list") << big.substr(0, 65536 - 10) + std::string(40, 'e') + "\n";
    r = local.run(Cmd("env").arg("PATH=" + dir + ":/usr/bin:/bin").arg("DOCKER_HOST=unix://" + dir + "/d.sock").arg("sh").arg("-c").arg(p.command).str());
    REQUIRE(r.ok());
    for (auto& l : SplitLines(r.out)) CHECK((l.empty() || l == std::string(63, 'd')));
    // a docker whose daemon does not answer (ls prints a line, then fails): "no-daemon", never an empty list
    std::ofstream(dir + "/docker") << "#!/bin/sh\necho 0123456789ab\necho 'Cannot connect to the Docker daemon' >&2\n"
                                      "exit 1\n";
    r = local.run(Cmd("env").arg("PATH=" + dir + ":/usr/bin:/bin").arg("DOCKER_HOST=unix://" + dir + "/d.sock").arg("sh").arg("-c").arg(p.command).str());
    REQUIRE(r.ok());
    CHECK(r.out == "no-daemon\n");
    CHECK(ParseDockerNetworks(r.out).no_daemon);
    // no daemon to answer: no DOCKER_HOST, no socket at Docker's default path, no CLI contexts: "no-daemon"
    // without starting the CLI at all (on a host with Docker's socket this part cannot run)
    if (std::filesystem::exists("/var/run/docker.sock") || std::filesystem::exists("/run/docker.sock")) {
      MESSAGE("this host has /run/docker.sock: the no-socket case is not checked here");
      std::filesystem::remove_all(dir);
      return;
    }
    std::ofstream(dir + "/docker") << "#!/bin/sh\ntouch " + dir + "/started\necho 0123456789ab\n";
    r = local.run(Cmd("env").arg("-u").arg("DOCKER_HOST").arg("PATH=" + dir + ":/usr/bin:/bin")
                      .arg("DOCKER_CONFIG=" + dir + "/cfg").arg("sh").arg("-c").arg(p.command).str());
    REQUIRE(r.ok());
    CHECK(r.out == "no-daemon\n");
    CHECK(!std::filesystem::exists(dir + "/started"));
    // with CLI contexts (a context may name another daemon): the CLI is asked
    std::filesystem::create_directories(dir + "/cfg/contexts");
    r = local.run(Cmd("env").arg("-u").arg("DOCKER_HOST").arg("PATH=" + dir + ":/usr/bin:/bin")
                      .arg("DOCKER_CONFIG=" + dir + "/cfg").arg("sh").arg("-c").arg(p.command).str());
    REQUIRE(r.ok());
    CHECK(std::filesystem::exists(dir + "/started"));
    std::filesystem::remove_all(dir);
  }

  TEST_CASE("no daemon answering: nothing removed, a note; a warning only when remove_networks asks for a removal") {
    ProbeResults res;
    res["docker:networks"] = {0, "no-daemon\n"};
    ModuleRun quiet = RunModule(Load(Lab("{ address_pools: [{ base: 172.28.0.0/16, size: 24 }] }")), "docker", res);
    for (const auto& w : quiet.warnings) CHECK(w.find("not checked") == std::string::npos);
    CHECK(quiet.all_notes().find("nothing to do because no docker daemon answers here (no /run/docker.sock, or "
                                 "`docker network ls` failed)") != std::string::npos);
    ModuleRun asked = RunModule(Load(Lab("{ remove_networks: [old-pool] }")), "docker", res);
    for (const auto& c : asked.changes) CHECK(c.command.find("docker network rm") == std::string::npos);
    std::string warnings;
    for (const auto& w : asked.warnings) warnings += w + "\n";
    CHECK(warnings.find("docker.remove_networks (old-pool) not checked: no docker daemon answers here") !=
          std::string::npos);
  }
}
