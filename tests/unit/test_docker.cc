// docker: daemon.json from the typed settings (the nvidia runtime follows nvidia.container_toolkit, `extra:`
// keys pass through, typed keys are refused there), its validation, and the planner's warnings (a
// "reboot pending" said even when nothing changes); what leaves the inventory leaves the node (labfleet's
// proxy drop-in, the registry certificates it listed), on probe results and through a real shell; no restart
// for a mode or owner change; the nvidia runtime on a node with the toolkit and no docker: settings.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/executor.h"
#include "engine/local_transport.h"
#include "engine/module.h"
#include "modules/facts/nvidia_facts.h"
#include "engine/planner.h"
#include "engine/shell.h"
#include "tests/unit/module_helpers.h"
#include "tests/unit/temp_dir.h"

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
const char* kList = "/var/lib/labfleet/docker-registry-certs";
const char* kListHeader =
    "# Managed by labfleet: the registries whose /etc/docker/certs.d/REGISTRY/ca.crt it wrote (docker module).\n";
const char* kLabfleetProxy =
    "# Managed by labfleet from the inventory; edits here are overwritten.\n[Service]\n"
    "Environment=\"HTTP_PROXY=http://10.0.1.68:8889\"\n";

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

// How many times the apply script of node n1 with these probe results restarts docker.
int RestartsInApplyScript(const Inventory& inv, const ProbeResults& r) {
  NodePlan p = DiffNode(inv, inv.nodes[0], r, {});
  INFO(p.error);
  ApplyOptions o;
  o.run_id = "t";
  std::string script = BuildApplyScript(p, o, "{}", "nonce");
  int n = 0;
  for (size_t pos = 0; (pos = script.find("systemctl restart docker", pos)) != std::string::npos; ++pos) ++n;
  return n;
}

}  // namespace

TEST_SUITE("docker") {
  TEST_CASE("proxy removed from the inventory: labfleet's drop-in is removed and docker restarts; others are left") {
    Inventory inv = lt::Load(lt::Inv("docker: { data_root: /local/.docker }"));
    auto run = lt::RunModule(inv, "docker", Node(inv, {{std::string("file:") + kProxy, {0, lt::FileOut(kLabfleetProxy)}}}));
    CHECK(run.errors.empty());
    REQUIRE(run.lines() == std::vector<std::string>{"- docker /etc/systemd/system/docker.service.d/proxy.conf",
                                                    "~ restart docker"});
    CHECK(run.changes[0].kind == Change::Kind::Remove);
    CHECK(run.changes[0].path == kProxy);
    CHECK(run.changes[0].reason == "labfleet wrote it and the inventory sets no docker proxy any more");
    CHECK(run.changes[0].diff.find("-Environment=\"HTTP_PROXY=http://10.0.1.68:8889\"") != std::string::npos);
    CHECK(run.changes[1].disruptive);
    CHECK(run.changes[1].command.find("systemctl daemon-reload && systemctl restart docker") != std::string::npos);

    // Not labfleet's: an admin's drop-in (no labfleet first line), a directory. Absent: nothing either.
    for (const std::string& other :
         {lt::FileOut("[Service]\nEnvironment=\"HTTP_PROXY=http://proxy:3128\"\n"),
          std::string("present 755 root root directory\n"), std::string("absent\n")}) {
      auto left = lt::RunModule(inv, "docker", Node(inv, {{std::string("file:") + kProxy, {0, other}}}));
      INFO(other);
      CHECK(left.changes.empty());
      CHECK(left.errors.empty());
    }
    auto admin = lt::RunModule(inv, "docker", Node(inv, {{std::string("file:") + kProxy, {0, lt::FileOut("[Service]\n")}}}));
    CHECK(admin.all_notes().find("docker:/etc/systemd/system/docker.service.d/proxy.conf: nothing to do because no docker "
                                 "proxy is set; /etc/systemd/system/docker.service.d/proxy.conf was not written by "
                                 "labfleet (its first line is not labfleet's), so it is left as it is\n") !=
          std::string::npos);

    // The whole docker: map gone: the drop-in goes too (daemon.json is left: labfleet cannot tell its own).
    Inventory none = lt::Load(lt::Inv("vars: { a: 1 }"));
    ProbeResults r;
    r[std::string("file:") + kProxy] = {0, lt::FileOut(kLabfleetProxy)};
    r["docker:registry-certs"] = {0, "none\n"};
    auto gone = lt::RunModule(none, "docker", r);
    CHECK(gone.lines() == std::vector<std::string>{"- docker /etc/systemd/system/docker.service.d/proxy.conf",
                                                   "~ restart docker"});
    CHECK(std::find(gone.probe_keys.begin(), gone.probe_keys.end(), "file:/etc/docker/daemon.json") == gone.probe_keys.end());
  }

  TEST_CASE("a registry removed from registry_certs: its listed ca.crt is removed, the list rewritten, one restart") {
    Inventory inv = lt::Load(lt::Inv("docker: { registry_certs: { harbor.cvgl.lab: files/harbor.crt } }"));
    inv.read_file = [](const std::string& p) -> std::optional<std::string> {
      if (p == "files/harbor.crt") return std::string("HARBOR PEM\n");
      return std::nullopt;
    };
    ProbeResults r = Node(inv, {{"file:/etc/docker/certs.d/harbor.cvgl.lab/ca.crt", {0, lt::FileOut("HARBOR PEM\n")}},
                                {"docker:registry-certs",
                                 {0, "list\npresent harbor.cvgl.lab\npresent old.cvgl.lab:5000\nabsent gone.cvgl.lab\n"
                                     "present ../../etc\n"}}});
    auto run = lt::RunModule(inv, "docker", r);
    CHECK(run.errors.empty());
    REQUIRE(run.lines() ==
            std::vector<std::string>{"- docker registry certificate /etc/docker/certs.d/old.cvgl.lab:5000/ca.crt",
                                     "~ list of labfleet's docker registry certificates " + std::string(kList),
                                     "~ restart docker"});
    CHECK(run.changes[0].kind == Change::Kind::Remove);
    CHECK(run.changes[0].path == "/etc/docker/certs.d/old.cvgl.lab:5000/ca.crt");
    CHECK(run.changes[0].reason == "labfleet wrote it and registry_certs no longer has old.cvgl.lab:5000");
    CHECK(run.changes[1].kind == Change::Kind::PutFile);
    CHECK(run.changes[1].file.path == kList);
    CHECK(run.changes[1].file.bytes == std::string(kListHeader) + "harbor.cvgl.lab\n");
    // A name that is not a registry host is never turned into a path to remove; the admin is told.
    REQUIRE(run.warnings.size() == 1);
    CHECK(run.warnings[0] == "docker:registry-certs: docker: ignored '../../etc' in " + std::string(kList) +
                                 ": not a registry host name");
    // The certificate removal and the proxy-less node restart docker once in the apply script.
    CHECK(RestartsInApplyScript(inv, r) == 1);

    // Converged: the list names exactly what the inventory gives.
    ProbeResults done = r;
    done["docker:registry-certs"] = {0, "list\npresent harbor.cvgl.lab\n"};
    auto quiet = lt::RunModule(inv, "docker", done);
    CHECK(quiet.changes.empty());
    CHECK(quiet.warnings.empty());
    CHECK(quiet.all_notes().find("docker:registry-certs: nothing to do because " + std::string(kList) +
                                 " lists harbor.cvgl.lab\n") != std::string::npos);

    // A listed certificate the admin already deleted: only the list changes, no restart.
    ProbeResults deleted = done;
    deleted["docker:registry-certs"] = {0, "list\npresent harbor.cvgl.lab\nabsent old.cvgl.lab\n"};
    auto relist = lt::RunModule(inv, "docker", deleted);
    CHECK(relist.lines() ==
          std::vector<std::string>{"~ list of labfleet's docker registry certificates " + std::string(kList)});
  }

  TEST_CASE("registry certificates: no list yet (an older labfleet wrote them) is recorded, nothing removed") {
    Inventory inv = lt::Load(lt::Inv("docker: { registry_certs: { harbor.cvgl.lab: files/harbor.crt } }"));
    inv.read_file = [](const std::string&) -> std::optional<std::string> { return std::string("PEM\n"); };
    auto run = lt::RunModule(inv, "docker",
                             Node(inv, {{"file:/etc/docker/certs.d/harbor.cvgl.lab/ca.crt", {0, lt::FileOut("PEM\n")}}}));
    REQUIRE(run.lines() ==
            std::vector<std::string>{"+ list of labfleet's docker registry certificates " + std::string(kList)});
    CHECK(run.changes[0].file.bytes == std::string(kListHeader) + "harbor.cvgl.lab\n");
    CHECK(Restarts(run.changes) == 0);

    // Every registry gone (here with the whole docker: map): the listed certificate, then the list, one restart.
    Inventory none = lt::Load(lt::Inv("vars: { a: 1 }"));
    ProbeResults r;
    r[std::string("file:") + kProxy] = {0, lt::FileOut(kLabfleetProxy)};
    r["docker:registry-certs"] = {0, "list\npresent harbor.cvgl.lab\n"};
    auto gone = lt::RunModule(none, "docker", r);
    REQUIRE(gone.lines() == std::vector<std::string>{"- docker /etc/systemd/system/docker.service.d/proxy.conf",
                                                      "~ restart docker",
                                                      "- docker registry certificate /etc/docker/certs.d/harbor.cvgl.lab/ca.crt",
                                                      "- list of labfleet's docker registry certificates " + std::string(kList),
                                                      "~ restart docker"});
    CHECK(gone.changes[3].kind == Change::Kind::Remove);
    CHECK(gone.changes[3].path == kList);
    CHECK(RestartsInApplyScript(none, r) == 1);  // two notifications, one handler run
    // Nothing listed, nothing there: no change at all on a node that never had docker settings.
    ProbeResults clean;
    clean[std::string("file:") + kProxy] = {0, "absent\n"};
    clean["docker:registry-certs"] = {0, "none\n"};
    CHECK(lt::RunModule(none, "docker", clean).changes.empty());
  }

  TEST_CASE("registry certificate list probe through a real shell") {
    Inventory inv = lt::Load(lt::Inv("vars: { a: 1 }"));
    auto run = lt::RunModule(inv, "docker", {});
    std::vector<Probe> probes;
    for (const auto& p : run.probes)
      if (p.key == "docker:registry-certs") probes.push_back(p);
    REQUIRE(probes.size() == 1);
    lt::TempDir d("labfleet-docker");
    auto relocate = [&](std::string cmd) {
      for (auto [from, to] : {std::pair<std::string, std::string>{kList, d.str("list")},
                              {"/etc/docker/certs.d/", d.str("certs.d") + "/"}}) {
        size_t at = cmd.find(from);
        REQUIRE(at != std::string::npos);
        for (; at != std::string::npos; at = cmd.find(from, at + to.size())) cmd.replace(at, from.size(), to);
      }
      return cmd;
    };
    probes[0].command = relocate(probes[0].command);
    LocalTransport local("here", 60);
    auto probe = [&] {
      std::string nonce = NewNonce();
      RunResult r = local.run(ScriptRunner(), BuildProbeScript(probes, nonce));
      REQUIRE(r.ok());
      return ParseProbeOutput(r.out, probes, nonce)["docker:registry-certs"].out;
    };
    CHECK(probe() == "none\n");
    d.write("certs.d/harbor.cvgl.lab/ca.crt", "PEM\n");
    d.write("certs.d/$(touch pwned)/ca.crt", "PEM\n");
    // Comments and blank lines skipped; a last line without a newline still read; a name is data, never code.
    d.write("list", std::string(kListHeader) + "harbor.cvgl.lab\n\nold.cvgl.lab\n$(touch pwned)");
    CHECK(probe() == "list\npresent harbor.cvgl.lab\nabsent old.cvgl.lab\npresent $(touch pwned)\n");
    CHECK_FALSE(std::filesystem::exists("pwned"));
    CHECK_FALSE(std::filesystem::exists(d.str("pwned")));
  }

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

  TEST_CASE("the toolkit without docker: settings: the nvidia runtime is added to daemon.json, its other keys kept") {
    Inventory inv = lt::Load(lt::Inv("nvidia: { driver: \"535.183.01\", container_toolkit: true }"));
    const nlohmann::json runtime = {{"path", "nvidia-container-runtime"}, {"runtimeArgs", nlohmann::json::array()}};
    auto with_daemon = [&](const std::string& probe_out) {
      ProbeResults r;
      r["file:/etc/docker/daemon.json"] = {0, probe_out};
      r[std::string("file:") + kProxy] = {0, "absent\n"};
      r["docker:registry-certs"] = {0, "none\n"};
      return lt::RunModule(inv, "docker", r);
    };
    // No daemon.json: one holding just the runtime.
    auto fresh = with_daemon("absent\n");
    REQUIRE(fresh.lines() == std::vector<std::string>{"+ docker /etc/docker/daemon.json (nvidia runtime)", "~ restart docker"});
    CHECK(nlohmann::json::parse(fresh.changes[0].file.bytes) == nlohmann::json{{"runtimes", {{"nvidia", runtime}}}});
    CHECK(fresh.changes[0].reason ==
          "nvidia.container_toolkit is true; the node has no docker: settings, so the file holds only the nvidia runtime");
    // The admin's daemon.json: every key kept, runtimes merged.
    auto merged = with_daemon(lt::FileOut(R"({"data-root": "/srv/docker", "runtimes": {"crun": {"path": "/usr/bin/crun"}}})"));
    REQUIRE(merged.lines() == std::vector<std::string>{"~ docker /etc/docker/daemon.json (nvidia runtime)", "~ restart docker"});
    CHECK(nlohmann::json::parse(merged.changes[0].file.bytes) ==
          nlohmann::json{{"data-root", "/srv/docker"},
                         {"runtimes", {{"crun", {{"path", "/usr/bin/crun"}}}, {"nvidia", runtime}}}});
    // Registered already (here as nvidia-ctk writes it): nothing to do.
    auto ctk = with_daemon(lt::FileOut(R"({"runtimes": {"nvidia": {"args": [], "path": "nvidia-container-runtime"}}})"));
    CHECK(ctk.changes.empty());
    CHECK(ctk.all_notes().find("docker:/etc/docker/daemon.json: nothing to do because the nvidia runtime is registered in "
                               "/etc/docker/daemon.json (no docker: settings, so its other keys are left as they are)\n") !=
          std::string::npos);
    // Not JSON: the node is not applied, and the message says what to do.
    auto broken = with_daemon(lt::FileOut("{ data-root: /srv }\n"));
    CHECK(broken.changes.empty());
    REQUIRE(broken.errors.size() == 1);
    CHECK(broken.errors[0].find("is not a JSON object, so the nvidia runtime (nvidia.container_toolkit) cannot be added") !=
          std::string::npos);
    // Toolkit off and no docker: settings: daemon.json is not looked at.
    Inventory off = lt::Load(lt::Inv("nvidia: { driver: \"535.183.01\" }"));
    auto none = lt::RunModule(off, "docker", {});
    CHECK(std::find(none.probe_keys.begin(), none.probe_keys.end(), "file:/etc/docker/daemon.json") == none.probe_keys.end());
  }

  TEST_CASE("the restart handler through a real shell: restarts an installed docker, skips a node without it") {
    Inventory inv = lt::Load(lt::Inv("docker: { data_root: /local/.docker }"));
    ProbeResults r;
    r["file:/etc/docker/daemon.json"] = {0, "absent\n"};
    auto run = lt::RunModule(inv, "docker", r);
    REQUIRE(Restarts(run.changes) == 1);
    std::string cmd = run.changes.back().command;
    lt::TempDir d("labfleet-docker");
    // A systemctl stand-in first on PATH: records its arguments; `show` answers with $LOAD_STATE.
    d.write("bin/systemctl",
            "#!/bin/sh\necho \"$*\" >> \"$LOG\"\n[ \"$1\" = show ] && echo \"LoadState=$LOAD_STATE\"\nexit 0\n");
    REQUIRE(std::system(("chmod +x " + ShellQuote(d.str("bin/systemctl"))).c_str()) == 0);
    LocalTransport local("here", 60);
    auto calls = [&](const std::string& state) {
      std::string log = d.str("log-" + state);
      RunResult res = local.run("PATH=" + ShellQuote(d.str("bin")) + ":$PATH LOG=" + ShellQuote(log) +
                                " LOAD_STATE=" + state + " sh -c " + ShellQuote(cmd));
      CHECK(res.exit_code == 0);
      std::ifstream in(log);
      std::stringstream ss;
      ss << in.rdbuf();
      return ss.str();
    };
    CHECK(calls("loaded") == "show -p LoadState docker.service\ndaemon-reload\nrestart docker\n");
    CHECK(calls("not-found") == "show -p LoadState docker.service\n");
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
