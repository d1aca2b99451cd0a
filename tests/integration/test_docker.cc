// docker module on a real sandbox node: daemon.json checked with a JSON parser (jq), a reformatted file is not
// a change, the proxy drop-in, and the disruptive restart: deferred while a GPU job runs (nvidia-smi test
// double), owed across runs, done once the node is free; the proxy drop-in and registry certificates removed
// when they leave the inventory (and only labfleet's); the nvidia runtime on a node with the toolkit and no
// docker: settings; registry mirrors, insecure registries, log driver and rotation in daemon.json, registry CA
// files with their content and mode. systemctl is the recording test double.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

namespace fs = std::filesystem;
using namespace labfleet::testing;

TEST_SUITE("integration-docker") {
  TEST_CASE("daemon.json and proxy drop-in converge; the restart waits for the GPU job") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl", "nvidia-smi"});
    SeedUnit(sbx, "node1", "docker.service", "enabled", "active");
    TempInventory tmp(sbx);
    const fs::path& root = tmp.root;
    auto write_lab = [&](const std::string& pools, const std::string& proxy =
                                                       "      proxy: { http: \"http://10.0.1.68:8889\", https: "
                                                       "\"http://10.0.1.68:8889\", no_proxy: [localhost, cvgl.lab] }\n") {
      std::ofstream(root / "inventory/lab.yaml")
          << "lab:\n  name: t\n  reserved_networks: [172.20.0.0/16]\n  defaults:\n    docker:\n"
             "      data_root: /local/.docker\n      address_pools: "
          << pools << "\n      default_runtime: nvidia\n" << proxy;
    };
    write_lab("[{ base: 172.28.0.0/16, size: 24 }]");
    const std::string inv = tmp.dir();

    auto r = Cli(sbx, inv, {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    // Independent checks: a JSON parser and the files themselves.
    auto j = nlohmann::json::parse(sbx.exec("node1", "jq -c . /etc/docker/daemon.json").out);
    CHECK(j["data-root"] == "/local/.docker");
    CHECK(j["default-address-pools"] == nlohmann::json::parse(R"([{"base":"172.28.0.0/16","size":24}])"));
    CHECK(j["default-runtime"] == "nvidia");
    CHECK(j["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime");
    CHECK(sbx.exec("node1", "grep -c '^Environment=' /etc/systemd/system/docker.service.d/proxy.conf").out == "3\n");
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 1);
    CHECK(Cli(sbx, inv, {"plan", "--detailed-exitcode"}).rc == 0);

    // Same JSON, other formatting and key order: not a change.
    CHECK(sbx.exec("node1", "jq -S . /etc/docker/daemon.json > /tmp/d && mv /tmp/d /etc/docker/daemon.json").exit_code == 0);
    CHECK(Cli(sbx, inv, {"plan", "--detailed-exitcode"}).rc == 0);

    // A student's training job holds a GPU: the new pool is written, the restart is deferred and owed.
    SeedGpuApps(sbx, "node1", "gpu_uuid,pid,used_memory,process_name\nGPU-1,1,1000,python train.py\n");
    ClearDoubleCalls(sbx, "node1");
    write_lab("[{ base: 172.30.0.0/16, size: 24 }]");
    r = Cli(sbx, inv, {"plan"});
    CHECK(r.out.find("deferred: restart docker on node1") != std::string::npos);
    CHECK(r.out.find("1 GPU job running") != std::string::npos);
    r = Cli(sbx, inv, {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(r.out.find("deferred: restart docker on node1") != std::string::npos);
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 0);
    CHECK(nlohmann::json::parse(sbx.exec("node1", "cat /etc/docker/daemon.json").out)["default-address-pools"][0]["base"] ==
          "172.30.0.0/16");
    // Still owed on the next run although the files match now.
    r = Cli(sbx, inv, {"plan", "--format", "json"});
    CHECK(nlohmann::json::parse(r.out)["plan"][0]["deferred"][0]["summary"] == "restart docker");

    // The job ends: the owed restart happens, once, and the node is converged.
    SeedGpuApps(sbx, "node1", "gpu_uuid,pid,used_memory,process_name\n");
    r = Cli(sbx, inv, {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 1);
    CHECK(Cli(sbx, inv, {"plan", "--detailed-exitcode"}).rc == 0);
    CHECK(sbx.exec("node1", "test -e /var/lib/labfleet/pending-handlers").exit_code != 0);

    // The proxy leaves the inventory: labfleet's drop-in leaves the node, with one restart (daemon-reload first).
    ClearDoubleCalls(sbx, "node1");
    write_lab("[{ base: 172.30.0.0/16, size: 24 }]", "");
    r = Cli(sbx, inv, {"plan", "--format", "json"});
    CHECK(Summaries(r) == "docker /etc/systemd/system/docker.service.d/proxy.conf | restart docker");
    CHECK(r.json()["plan"][0]["changes"][0]["action"] == "remove");
    r = Cli(sbx, inv, {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(sbx.exec("node1", "test -e /etc/systemd/system/docker.service.d/proxy.conf").exit_code == 1);
    auto calls = DoubleCalls(sbx, "node1");
    CHECK(CountCalls(calls, "systemctl restart docker") == 1);
    CHECK(CountCalls(calls, "systemctl daemon-reload") == 1);
    auto reload = std::find(calls.begin(), calls.end(), "systemctl daemon-reload");
    CHECK(reload < std::find(calls.begin(), calls.end(), "systemctl restart docker"));
    CHECK(Cli(sbx, inv, {"plan", "--detailed-exitcode"}).rc == 0);
    // An admin's own drop-in at that path (no labfleet first line) is not labfleet's to remove.
    CHECK(sbx.exec("node1", "printf '[Service]\\nEnvironment=HTTP_PROXY=http://proxy:3128\\n' > "
                            "/etc/systemd/system/docker.service.d/proxy.conf").exit_code == 0);
    CHECK(Cli(sbx, inv, {"plan", "--detailed-exitcode"}).rc == 0);
    CHECK(sbx.exec("node1", "rm /etc/systemd/system/docker.service.d/proxy.conf").exit_code == 0);
  }

  TEST_CASE("registry certificates: written and listed; removed from the inventory, removed from the node") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl"});
    SeedUnit(sbx, "node1", "docker.service", "enabled", "active");
    TempInventory tmp(sbx);
    tmp.write("inventory/files/harbor.crt", "HARBOR CA\n");
    tmp.write("inventory/files/mirror.crt", "MIRROR CA\n");
    auto write = [&](const std::string& certs) {
      tmp.defaults("    docker: { data_root: /local/.docker, registry_certs: { " + certs + " } }\n");
    };
    write("harbor.cvgl.lab: files/harbor.crt, \"mirror.cvgl.lab:5000\": files/mirror.crt");
    // A certificate the admin put there by hand, for a registry the inventory never named.
    MustExec(sbx, "node1", "mkdir -p /etc/docker/certs.d/own.cvgl.lab && echo OWN > /etc/docker/certs.d/own.cvgl.lab/ca.crt");
    auto r = Cli(sbx, tmp.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Exec(sbx, "cat /etc/docker/certs.d/harbor.cvgl.lab/ca.crt /etc/docker/certs.d/mirror.cvgl.lab:5000/ca.crt") ==
          "HARBOR CA\nMIRROR CA\n");
    CHECK(Exec(sbx, "grep -v '^#' /var/lib/labfleet/docker-registry-certs") == "harbor.cvgl.lab\nmirror.cvgl.lab:5000\n");
    CHECK(Cli(sbx, tmp.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // The mirror leaves the inventory: its ca.crt goes, one restart, and nothing else is touched.
    ClearDoubleCalls(sbx, "node1");
    write("harbor.cvgl.lab: files/harbor.crt");
    r = Cli(sbx, tmp.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) ==
          "docker registry certificate /etc/docker/certs.d/mirror.cvgl.lab:5000/ca.crt | list of labfleet's docker "
          "registry certificates /var/lib/labfleet/docker-registry-certs | restart docker");
    CHECK(r.json()["apply"][0]["status"] == "changed");  // its re-plan was empty
    CHECK(sbx.exec("node1", "test -e /etc/docker/certs.d/mirror.cvgl.lab:5000/ca.crt").exit_code == 1);
    CHECK(Exec(sbx, "cat /etc/docker/certs.d/harbor.cvgl.lab/ca.crt /etc/docker/certs.d/own.cvgl.lab/ca.crt") ==
          "HARBOR CA\nOWN\n");
    CHECK(Exec(sbx, "grep -v '^#' /var/lib/labfleet/docker-registry-certs") == "harbor.cvgl.lab\n");
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 1);

    // The whole docker: map goes: the last listed certificate and the list go too; the admin's stays.
    ClearDoubleCalls(sbx, "node1");
    tmp.defaults("    vars: { a: 1 }\n");
    r = Cli(sbx, tmp.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(sbx.exec("node1", "test -e /etc/docker/certs.d/harbor.cvgl.lab/ca.crt").exit_code == 1);
    CHECK(sbx.exec("node1", "test -e /var/lib/labfleet/docker-registry-certs").exit_code == 1);
    CHECK(Exec(sbx, "cat /etc/docker/certs.d/own.cvgl.lab/ca.crt") == "OWN\n");
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 1);
    CHECK(Cli(sbx, tmp.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }

  TEST_CASE("registry mirrors, insecure registries, log driver and rotation; registry CA files with their mode") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl"});
    SeedUnit(sbx, "node1", "docker.service", "enabled", "active");
    TempInventory tmp(sbx);
    tmp.write("inventory/files/harbor.crt", "-----BEGIN CERTIFICATE-----\nHARBOR\n-----END CERTIFICATE-----\n");
    tmp.write("inventory/files/mirror.crt", "MIRROR CA\n");
    auto write = [&](const std::string& max_size) {
      tmp.defaults(
          "    docker:\n"
          "      registry_certs: { harbor.cvgl.lab: files/harbor.crt, \"10.0.1.68:5000\": files/mirror.crt }\n"
          "      registry_mirrors: [\"https://mirror.cvgl.lab\", \"http://10.0.1.68:5000\"]\n"
          "      insecure_registries: [\"10.0.1.68:5000\", 10.0.2.0/24]\n"
          "      log_driver: json-file\n"
          "      log_opts: { max-size: " + max_size + ", max-file: 3 }\n");
    };
    write("10m");
    auto r = Cli(sbx, tmp.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(r.json()["apply"][0]["status"] == "changed");  // the executor's re-plan was empty
    // Independent checks in the node: jq for daemon.json, cat and stat for the CA files.
    auto j = nlohmann::json::parse(Exec(sbx, "jq -c . /etc/docker/daemon.json"));
    CHECK(j["registry-mirrors"] == nlohmann::json::parse(R"(["https://mirror.cvgl.lab","http://10.0.1.68:5000"])"));
    CHECK(j["insecure-registries"] == nlohmann::json::parse(R"(["10.0.1.68:5000","10.0.2.0/24"])"));
    CHECK(j["log-driver"] == "json-file");
    // dockerd takes log-opts values as strings only: an unquoted YAML 3 is written as "3".
    CHECK(j["log-opts"] == nlohmann::json::parse(R"({"max-size":"10m","max-file":"3"})"));
    CHECK(Exec(sbx, "jq -r '.\"log-opts\".\"max-file\" | type' /etc/docker/daemon.json") == "string\n");
    CHECK(Exec(sbx, "cat /etc/docker/certs.d/harbor.cvgl.lab/ca.crt") ==
          "-----BEGIN CERTIFICATE-----\nHARBOR\n-----END CERTIFICATE-----\n");
    CHECK(Exec(sbx, "cat /etc/docker/certs.d/10.0.1.68:5000/ca.crt") == "MIRROR CA\n");
    CHECK(Exec(sbx, "stat -c '%a %U:%G %F' /etc/docker/certs.d/harbor.cvgl.lab/ca.crt "
                    "/etc/docker/certs.d/10.0.1.68:5000/ca.crt /etc/docker/daemon.json") ==
          "644 root:root regular file\n644 root:root regular file\n644 root:root regular file\n");
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 1);
    CHECK(Cli(sbx, tmp.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // A CA file's mode drifts: fixed with chmod, and no restart (dockerd reads it as root anyway).
    MustExec(sbx, "node1", "chmod 0600 /etc/docker/certs.d/harbor.cvgl.lab/ca.crt");
    ClearDoubleCalls(sbx, "node1");
    r = Cli(sbx, tmp.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) == "docker /etc/docker/certs.d/harbor.cvgl.lab/ca.crt (mode 0600 -> 0644)");
    CHECK(Exec(sbx, "stat -c '%a %U:%G' /etc/docker/certs.d/harbor.cvgl.lab/ca.crt") == "644 root:root\n");
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 0);

    // One rotation option changes: daemon.json and one restart, nothing else.
    write("50m");
    r = Cli(sbx, tmp.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Summaries(r) == "docker /etc/docker/daemon.json | restart docker");
    CHECK(nlohmann::json::parse(Exec(sbx, "jq -c '.\"log-opts\"' /etc/docker/daemon.json")) ==
          nlohmann::json::parse(R"({"max-size":"50m","max-file":"3"})"));
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 1);
    CHECK(Cli(sbx, tmp.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }

  TEST_CASE("nvidia.container_toolkit without docker: settings registers the runtime, keeping the admin's keys") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl"});
    TempInventory tmp(sbx);
    tmp.defaults("    nvidia: { driver: \"535.183.01\", container_toolkit: true }\n");
    // The nvidia module is left out (it would install a driver); the docker module reads its settings.
    const std::vector<std::string> apply = {"apply", "--yes", "--allow-dirty", "--only", "docker"};
    const nlohmann::json runtime = {{"path", "nvidia-container-runtime"}, {"runtimeArgs", nlohmann::json::array()}};

    // Docker not installed (no docker.service): the file is written, nothing is restarted, the apply succeeds.
    auto r = Cli(sbx, tmp.dir(), apply);
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(nlohmann::json::parse(Exec(sbx, "jq -c . /etc/docker/daemon.json")) ==
          nlohmann::json{{"runtimes", {{"nvidia", runtime}}}});
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 0);
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl daemon-reload") == 0);
    CHECK(Cli(sbx, tmp.dir(), {"plan", "--detailed-exitcode", "--only", "docker"}).rc == 0);

    // Docker installed, with the admin's own daemon.json: the runtime is added, the admin's keys stay.
    SeedUnit(sbx, "node1", "docker.service", "enabled", "active");
    MustExec(sbx, "node1", "printf '{\"data-root\": \"/srv/docker\", \"log-level\": \"warn\"}\\n' > /etc/docker/daemon.json");
    ClearDoubleCalls(sbx, "node1");
    r = Cli(sbx, tmp.dir(), {"plan", "--format", "json", "--only", "docker"});
    CHECK(Summaries(r) == "docker /etc/docker/daemon.json (nvidia runtime) | restart docker");
    r = Cli(sbx, tmp.dir(), apply);
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    auto j = nlohmann::json::parse(Exec(sbx, "jq -c . /etc/docker/daemon.json"));
    CHECK(j == nlohmann::json{{"data-root", "/srv/docker"}, {"log-level", "warn"}, {"runtimes", {{"nvidia", runtime}}}});
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 1);
    CHECK(Cli(sbx, tmp.dir(), {"plan", "--detailed-exitcode", "--only", "docker"}).rc == 0);
  }

  TEST_CASE("the docker group through user_groups; the nvidia runtime from nvidia.container_toolkit; extra keys") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl"});
    SeedUnit(sbx, "node1", "docker.service", "enabled", "active");
    TempInventory tmp(sbx);
    auto write = [&](const std::string& members) {
      tmp.write("inventory/lab.yaml",
                "lab:\n  name: t\n  defaults:\n"
                "    docker: { data_root: /local/.docker, extra: { max-concurrent-downloads: 6, features: { buildkit: true } } }\n"
                "    nvidia: { driver: \"535.183.01\", container_toolkit: true }\n"
                "user_groups:\n  docker: { system: true }\n"
                "users:\n"
                "  yseong: { uid: 2001, groups: [" + members + "] }\n"
                "  mkim: { uid: 2002 }\n");
    };
    write("docker");
    // The nvidia module itself is left out here (it would install a driver); its settings still shape daemon.json.
    const std::vector<std::string> apply = {"apply", "--yes", "--allow-dirty", "--only", "user_groups,users,docker"};
    auto r = Cli(sbx, tmp.dir(), apply);
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    // Independent checks: getent and grpck for the group, jq for daemon.json.
    auto g = Exec(sbx, "getent group docker");
    CHECK(g.find(":yseong") != std::string::npos);
    CHECK(g.find("mkim") == std::string::npos);
    CHECK(std::stoi(g.substr(g.find(':', g.find(':') + 1) + 1)) < 1000);  // a system group
    CHECK(sbx.exec("node1", "grpck -r").exit_code == 0);
    auto j = nlohmann::json::parse(Exec(sbx, "jq -c . /etc/docker/daemon.json"));
    CHECK(j["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime");
    CHECK_FALSE(j.contains("default-runtime"));
    CHECK(j["max-concurrent-downloads"] == 6);
    CHECK(j["features"]["buildkit"] == true);
    CHECK(Cli(sbx, tmp.dir(), {"plan", "--detailed-exitcode", "--only", "user_groups,users,docker"}).rc == 0);
    // yseong leaves the docker group: exactly one change, and no docker restart for a membership.
    write("");
    ClearDoubleCalls(sbx, "node1");
    r = Cli(sbx, tmp.dir(), {"plan", "--format", "json", "--only", "user_groups,users,docker"});
    CHECK(Summaries(r) == "user yseong (-group docker)");
    r = Cli(sbx, tmp.dir(), apply);
    CHECK(r.rc == 0);
    CHECK(Exec(sbx, "getent group docker").find("yseong") == std::string::npos);
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "systemctl restart docker") == 0);
  }

  TEST_CASE("networks: overlaps with reserved networks warned; remove_networks removes an unused one, refuses a used one") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl", "docker"});
    SeedUnit(sbx, "node1", "docker.service", "enabled", "active");
    MustExec(sbx, "node1",
             "mkdir -p /var/lib/labfleet-doubles/networks && cd /var/lib/labfleet-doubles/networks && "
             "printf 'id=%064d\nsubnet=172.17.0.0/16\n' 1 > bridge && "
             "printf 'id=%064d\nsubnet=10.0.1.0/24\ncontainers=web\n' 2 > vpn-clash && "
             "printf 'id=%064d\nsubnet=172.20.5.0/24\n' 3 > old-pool");
    TempInventory tmp(sbx);
    tmp.write("inventory/lab.yaml",
              "lab:\n  name: t\n  reserved_networks: [172.20.0.0/16, 10.0.1.0/24]\n  defaults:\n    docker:\n"
              "      address_pools: [{ base: 172.28.0.0/16, size: 24 }]\n"
              "      remove_networks: [old-pool, vpn-clash]\n");
    auto plan = Cli(sbx, tmp.dir(), {"plan"});
    INFO(plan.out << plan.err);
    CHECK(plan.out.find("docker network 'vpn-clash' (subnet '10.0.1.0/24') overlaps reserved network 10.0.1.0/24") !=
          std::string::npos);
    CHECK(plan.out.find("docker network 'old-pool' (subnet '172.20.5.0/24') overlaps reserved network 172.20.0.0/16") !=
          std::string::npos);
    CHECK(plan.out.find("refused: docker network vpn-clash (10.0.1.0/24) is used by container 'web'") != std::string::npos);
    CHECK(plan.out.find("docker network old-pool (172.20.5.0/24)") != std::string::npos);

    ClearDoubleCalls(sbx, "node1");
    auto r = Cli(sbx, tmp.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "docker network rm old-pool") == 1);
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "docker network rm vpn-clash") == 0);
    // Independent check: the docker CLI (double) no longer lists it; the used one stays.
    CHECK(Exec(sbx, "docker network inspect $(docker network ls -q) | jq -r '.[].Name' | sort") == "bridge\nvpn-clash\n");

    // The container goes: the next apply removes the network; then nothing to do (the warning for it is gone).
    MustExec(sbx, "node1", "sed -i '/^containers=/d' /var/lib/labfleet-doubles/networks/vpn-clash");
    r = Cli(sbx, tmp.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(CountCalls(DoubleCalls(sbx, "node1"), "docker network rm vpn-clash") == 1);
    auto again = Cli(sbx, tmp.dir(), {"plan", "--detailed-exitcode"});
    INFO(again.out << again.err);
    CHECK(again.rc == 0);
    CHECK(again.out.find("overlaps reserved network") == std::string::npos);
  }
}
