// docker: daemon.json from the typed settings (the nvidia runtime follows nvidia.container_toolkit, `extra:`
// keys pass through, typed keys are refused there), its validation, and the planner's warnings (a
// "reboot pending" said even when nothing changes).
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/module.h"
#include "engine/nvidia_facts.h"
#include "engine/planner.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;

namespace {

std::string Inv(const std::string& node_settings) {
  return "lab: { name: t }\nnodes:\n  n1: { address: 10.9.0.1, " + node_settings + " }\n";
}

Inventory Load(const std::string& yaml, Findings& f) {
  Inventory inv = LoadInventory({{"inventory/test.yaml", yaml}}, f);
  ValidateInventory(inv, f);
  return inv;
}

std::string All(const Findings& f) {
  std::string s;
  for (const auto& x : f.items()) s += x.where.str() + ": " + x.code + ": " + x.message + "\n";
  return s;
}

// The daemon.json the docker module wants on n1 for a node without one.
nlohmann::json WantedDaemonJson(const Inventory& inv) {
  const Module* m = FindModule("docker");
  REQUIRE(m);
  Value settings = inv.settings(inv.nodes[0]);
  NodeContext ctx{inv, inv.nodes[0], settings};
  for (const auto& r : m->resources(ctx)) {
    if (r.id != "docker:/etc/docker/daemon.json") continue;
    ProbeResults none;
    none["file:/etc/docker/daemon.json"] = {0, "absent\n"};
    DiffResult d = m->diff(ctx, r, none);
    for (const auto& c : d.changes)
      if (c.kind == Change::Kind::PutFile) return nlohmann::json::parse(c.file.bytes);
  }
  FAIL("no daemon.json change");
  return {};
}

namespace lt = labfleet::testing;

const char* kProxy = "/etc/systemd/system/docker.service.d/proxy.conf";

// A node whose daemon.json is what `inv` gives it, with `extra` probe results on top (proxy drop-in and the
// certificate list absent unless given).
ProbeResults Node(const Inventory& inv, ProbeResults extra) {
  ProbeResults r;
  r["file:/etc/docker/daemon.json"] = {0, lt::FileOut(WantedDaemonJson(inv).dump(2) + "\n")};
  r[std::string("file:") + kProxy] = {0, "absent\n"};
  r["docker:registry-certs"] = {0, "none\n"};
  for (auto& [k, v] : extra) r[k] = v;
  return r;
}

int Restarts(const std::vector<Change>& cs) {
  int n = 0;
  for (const auto& c : cs) n += c.kind == Change::Kind::Notify && c.handler == "restart docker";
  return n;
}

}  // namespace

TEST_SUITE("docker") {
  TEST_CASE("a mode or owner change alone does not restart docker; new content does") {
    Inventory inv = lt::Load(lt::Inv("docker: { data_root: /local/.docker, registry_certs: { harbor.cvgl.lab: files/h.crt } }"));
    inv.read_file = [](const std::string&) -> std::optional<std::string> { return std::string("PEM\n"); };
    std::string json = WantedDaemonJson(inv).dump();
    ProbeResults r = Node(inv, {{"file:/etc/docker/daemon.json", {0, "present 600 root root regular file\n" + json}},
                                {"file:/etc/docker/certs.d/harbor.cvgl.lab/ca.crt", {0, "present 644 root docker regular file\nPEM\n"}},
                                {"docker:registry-certs", {0, "list\npresent harbor.cvgl.lab\n"}}});
    auto run = lt::RunModule(inv, "docker", r);
    CHECK(run.lines() == std::vector<std::string>{"~ docker /etc/docker/daemon.json (mode 0600 -> 0644)",
                                                  "~ docker /etc/docker/certs.d/harbor.cvgl.lab/ca.crt (owner root:docker -> root:root)"});
    CHECK(Restarts(run.changes) == 0);
    // The same file with other content: written, and docker restarts.
    r["file:/etc/docker/daemon.json"] = {0, "present 600 root root regular file\n{\"data-root\": \"/var/lib/docker\"}\n"};
    auto content = lt::RunModule(inv, "docker", r);
    CHECK(content.lines() == std::vector<std::string>{"~ docker /etc/docker/daemon.json", "~ restart docker",
                                                      "~ docker /etc/docker/certs.d/harbor.cvgl.lab/ca.crt (owner root:docker -> root:root)"});
  }

  TEST_CASE("the nvidia runtime is registered when the node's nvidia.container_toolkit is on") {
    Findings f;
    Inventory inv = Load(Inv("docker: { data_root: /local/.docker }, nvidia: { driver: \"535.183.01\", container_toolkit: true }"), f);
    REQUIRE_MESSAGE(!f.has_errors(), All(f));
    auto j = WantedDaemonJson(inv);
    CHECK(j["runtimes"]["nvidia"]["path"] == "nvidia-container-runtime");
    CHECK_FALSE(j.contains("default-runtime"));
    CHECK(j["data-root"] == "/local/.docker");

    Findings g;
    Inventory off = Load(Inv("docker: { data_root: /local/.docker }, nvidia: { driver: \"535.183.01\" }"), g);
    REQUIRE_MESSAGE(!g.has_errors(), All(g));
    CHECK_FALSE(WantedDaemonJson(off).contains("runtimes"));
  }

  TEST_CASE("default_runtime nvidia without the toolkit is a warning naming the node and the fix") {
    Findings f;
    Inventory inv = Load(Inv("docker: { default_runtime: nvidia }"), f);
    CHECK_FALSE(f.has_errors());
    std::string all = All(f);
    CHECK(all.find("docker-runtime-without-toolkit") != std::string::npos);
    CHECK(all.find("node 'n1'") != std::string::npos);
    CHECK(all.find("container_toolkit: true") != std::string::npos);
    auto j = WantedDaemonJson(inv);  // still registered: default-runtime must name a known runtime
    CHECK(j["default-runtime"] == "nvidia");
    CHECK(j["runtimes"].contains("nvidia"));
  }

  TEST_CASE("extra: free daemon.json keys with their types; typed keys are refused there") {
    Findings f;
    Inventory inv = Load(Inv("docker: { extra: { max-concurrent-downloads: 10, debug: true, features: { buildkit: true }, "
                             "hosts: [\"unix:///var/run/docker.sock\"] } }"),
                         f);
    REQUIRE_MESSAGE(!f.has_errors(), All(f));
    auto j = WantedDaemonJson(inv);
    CHECK(j["max-concurrent-downloads"] == 10);
    CHECK(j["debug"] == true);
    CHECK(j["features"]["buildkit"] == true);
    CHECK(j["hosts"][0] == "unix:///var/run/docker.sock");

    Findings g;
    Load(Inv("docker: { extra: { data-root: /x } }"), g);
    CHECK(g.has_errors());
    CHECK(All(g).find("docker-extra-typed-key") != std::string::npos);
    CHECK(All(g).find("`data_root`") != std::string::npos);
  }

  TEST_CASE("plan warnings: reboot pending is said on a node with no changes, in JSON too") {
    Findings f;
    Inventory inv = Load(Inv("nvidia: { driver: \"535.183.01\", blacklist_nouveau: false, hold: false, persistence: false }"), f);
    REQUIRE_MESSAGE(!f.has_errors(), All(f));
    ProbeResults r;
    r["pkg-manager"] = {0, "apt\n"};
    r["dpkg-query:nvidia-* libnvidia-*"] = {0,
        "nvidia-utils-535-server\tinstall ok installed\t535.183.01-0ubuntu1\n"
        "nvidia-headless-535-server\tinstall ok installed\t535.183.01-0ubuntu1\n"};
    r["apt-mark-showhold"] = {0, ""};
    r["proc-driver-nvidia-version"] = {0, "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n"};
    r["nvidia-smi-driver"] = {18, "Failed to initialize NVML: Driver/library version mismatch\n"};
    r["file:/etc/apt/preferences.d/labfleet-nvidia"] = {0, "present 644 root root regular file\n" + NvidiaAptPreferences("535.183.01")};
    PlanOptions only;
    only.only = {"nvidia"};
    NodePlan p = DiffNode(inv, inv.nodes[0], r, only);
    INFO(p.error);
    CHECK(p.changes.empty());
    REQUIRE(p.warnings.size() == 1);
    CHECK(p.warnings[0].resource == "nvidia:driver");
    CHECK(p.warnings[0].text == "nvidia: reboot pending: kernel module 535.104.05 loaded, userspace 535.183.01 installed");
    auto j = NodePlanToJson(p);
    REQUIRE(j["warnings"].size() == 1);
    CHECK(j["warnings"][0]["warning"] == p.warnings[0].text);
    // Loaded module = installed userspace: nothing to warn about.
    r["proc-driver-nvidia-version"] = {0, "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sat Aug 19 01:15:15 UTC 2023\n"};
    r["nvidia-smi-driver"] = {0, "0, GPU-5c3e, 535.183.01, Disabled\n"};
    CHECK(DiffNode(inv, inv.nodes[0], r, only).warnings.empty());
  }
}
