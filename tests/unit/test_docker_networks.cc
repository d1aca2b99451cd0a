// docker networks: the `docker network inspect` parser on the fixture (one garbage line) and on hostile output,
// overlap warnings against lab.reserved_networks naming network and subnet, remove_networks removing only a
// network no container uses (a refusal line otherwise), and its validation.
#include <doctest/doctest.h>

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
    CHECK(p.command.find("grep -E '^[0-9a-f]{12,64}$'") != std::string::npos);
    CHECK(p.command.find("head -n 512") != std::string::npos);
    CHECK(p.command.find("head -c 4194304") != std::string::npos);
  }
}
