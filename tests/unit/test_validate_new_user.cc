// Issue 11 §5, "what a new user tripped over": one test per trap, each asserting the code, the place and the
// words that say what to do.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/cli.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/node_vars.h"
#include "engine/reporter.h"
#include "engine/text.h"
#include "tests/unit/module_helpers.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;

namespace {

namespace fs = std::filesystem;
using labfleet::testing::TempDir;

const char* kLab =
    "lab:\n"
    "  name: t\n"
    "  reserved_networks: [172.20.0.0/16, 10.0.1.0/24]\n";

Findings Check(std::vector<SourceFile> files) {
  Findings f;
  Inventory inv = LoadInventory(files, f);
  ValidateInventory(inv, f);
  f.sort();
  return f;
}

Findings CheckWith(const std::string& text) { return Check({{"inventory/lab.yaml", kLab}, {"inventory/x.yaml", text}}); }

std::string All(const Findings& f) {
  std::string out;
  for (const auto& x : f.items()) out += FindingToText(x) + "\n";
  return out;
}

std::vector<Finding> WithCode(const Findings& f, const std::string& code) {
  std::vector<Finding> out;
  for (const auto& x : f.items())
    if (x.code == code) out.push_back(x);
  return out;
}

bool Has(const std::string& hay, const std::string& needle) { return hay.find(needle) != std::string::npos; }

struct CliResult {
  int rc;
  std::string out, err;
};

CliResult Cli(std::vector<std::string> args) {
  std::vector<const char*> argv = {"labfleet"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int rc = RunCli(int(argv.size()), argv.data(), out, err);
  return {rc, out.str(), err.str()};
}

// Sets an environment variable for one scope and puts the old value back.
struct ScopedEnv {
  std::string name;
  std::optional<std::string> old;
  ScopedEnv(std::string n, const std::string& value) : name(std::move(n)) {
    if (const char* o = std::getenv(name.c_str())) old = o;
    setenv(name.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old)
      setenv(name.c_str(), old->c_str(), 1);
    else
      unsetenv(name.c_str());
  }
};

}  // namespace

TEST_SUITE("validate-new-user") {
  TEST_CASE("a files: entry for a file a module writes on that node is an error naming the module") {
    Findings f = CheckWith(
        "groups:\n"
        "  gpu:\n"
        "    hosts: { 10.0.1.60: [login] }\n"
        "    mounts: [{ source: \"nas:/h\", target: /home }]\n"
        "    docker: { data_root: /local/.docker, address_pools: [{ base: 172.28.0.0/16, size: 24 }] }\n"
        "    sshd: { X11Forwarding: \"no\" }\n"
        "nodes:\n"
        "  a:\n"
        "    address: 10.0.1.71\n"
        "    groups: [gpu]\n"
        "    files:\n"
        "      - { path: /etc/hosts, content: \"x\\n\" }\n"
        "      - { path: /etc/fstab, content: \"x\\n\" }\n"
        "      - { path: /etc/docker//daemon.json, content: \"{}\\n\" }\n"
        "      - { path: /etc/ssh/sshd_config.d/50-labfleet.conf, content: \"x\\n\" }\n"
        "      - { path: /etc/subuid, content: \"x\\n\" }\n"
        "      - { path: /etc/motd, content: \"hi\\n\" }\n"
        "  b:\n"
        "    address: 10.0.1.72\n"
        "    files: [{ path: /etc/hosts, content: \"x\\n\" }]\n");
    auto hits = WithCode(f, "file-owned-by-module");
    INFO(All(f));
    REQUIRE(hits.size() == 5);
    CHECK(hits[0].where.str() == "inventory/x.yaml:12:17");
    CHECK(hits[0].message ==
          "file /etc/hosts is written by the hosts module on node 'a' (from `hosts:`); with this entry too, every "
          "apply would write it twice, each undoing the other. Remove this entry and set what it should say through "
          "`hosts:`");
    CHECK(Has(hits[1].message, "file /etc/fstab is written by the mounts module on node 'a'"));
    CHECK(Has(hits[2].message, "file /etc/docker/daemon.json is written by the docker module on node 'a' (from `docker:`)"));
    CHECK(Has(hits[3].message, "file /etc/ssh/sshd_config.d/50-labfleet.conf is written by the sshd module"));
    CHECK(Has(hits[4].message, "file /etc/subuid is written by the subids module on node 'a'"));
    // Node b has no hosts: settings, so /etc/hosts is its own files: entry to manage.
    for (const auto& h : hits) CHECK(h.where.line < 18);
  }

  TEST_CASE("owned files come from every module, only where it is active on the node") {
    Inventory inv = labfleet::testing::Load(labfleet::testing::Inv(
        "package_mirror: { apt: \"http://mirror.lab/debian\" }\n"
        "sysctl: { vm.swappiness: 10 }\n"
        "nvidia: { driver: \"535.183.01\", hold: true, container_toolkit: true }"));
    Value settings = inv.settings(inv.nodes[0]);
    NodeContext ctx{inv, inv.nodes[0], settings};
    std::map<std::string, std::string> owned;
    for (const auto& m : Modules())
      for (const auto& o : m->owned_files(ctx)) owned[o.path] = m->name();
    CHECK(owned["/etc/apt/sources.list.d/labfleet-mirror.list"] == "packages");
    CHECK(owned["/etc/sysctl.d/90-labfleet.conf"] == "services");
    CHECK(owned["/etc/docker/daemon.json"] == "docker");  // the nvidia runtime, from container_toolkit
    CHECK(owned["/etc/subuid"] == "subids");
    CHECK(owned.count("/etc/hosts") == 0);
    CHECK(owned.count("/etc/fstab") == 0);
    CHECK(owned.count("/etc/ssh/sshd_config.d/50-labfleet.conf") == 0);
  }

  TEST_CASE("docker pools and bip in public address space are a warning naming the range") {
    Findings f = CheckWith(
        "groups:\n"
        "  gpu:\n"
        "    docker:\n"
        "      address_pools: [{ base: 172.240.0.0/16, size: 24 }, { base: 172.28.0.0/16, size: 24 }]\n"
        "      bip: 172.239.0.1/24\n"
        "  cpu:\n"
        "    docker: { address_pools: [{ base: 10.200.0.0/16, size: 24 }, { base: 192.168.128.0/17, size: 24 }], "
        "bip: 172.31.0.1/24 }\n");
    auto hits = WithCode(f, "docker-public-range");
    INFO(All(f));
    REQUIRE(hits.size() == 2);
    CHECK(hits[0].where.str() == "inventory/x.yaml:4:23");
    CHECK(hits[0].severity == Severity::Warning);
    CHECK(hits[0].message ==
          "docker address pool 172.240.0.0/16 is public address space (172.240.0.0/16 is not inside 10.0.0.0/8, "
          "172.16.0.0/12 or 192.168.0.0/16): containers could not reach the real hosts in 172.240.0.0/16. Pick a "
          "private range, e.g. 172.28.0.0/16 for pools and 172.29.0.1/24 for bip, clear of lab.reserved_networks");
    CHECK(hits[1].where.str() == "inventory/x.yaml:5:12");
    CHECK(Has(hits[1].message, "docker bip 172.239.0.1/24 is public address space (172.239.0.0/24 is not inside"));
    // A network reaching outside 172.16.0.0/12 (172.0.0.0-172.63.255.255) is public too.
    Findings g = CheckWith("groups:\n  gpu:\n    docker: { address_pools: [{ base: 172.0.0.0/10, size: 24 }] }\n");
    CHECK_MESSAGE(WithCode(g, "docker-public-range").size() == 1, All(g));
  }

  TEST_CASE("Docker's own key names get 'did you mean' and no warning that the pools are unset") {
    Findings f = CheckWith(
        "groups:\n"
        "  gpu:\n"
        "    docker:\n"
        "      default-address-pools: [{ base: 172.28.0.0/16, size: 24 }]\n"
        "      data-root: /local/.docker\n"
        "      log_opts: { max-size: 10m }\n"
        "      log-opts: { max-size: 10m }\n"
        "      exec-opts: [native.cgroupdriver=systemd]\n"
        "nodes:\n"
        "  a: { address: 10.0.1.71, groups: [gpu] }\n");
    auto hits = WithCode(f, "unknown-key");
    INFO(All(f));
    REQUIRE(hits.size() == 4);
    CHECK(hits[0].where.str() == "inventory/x.yaml:4:7");
    CHECK(hits[0].message ==
          "unknown key 'default-address-pools' in docker settings: that is Docker's name in daemon.json; did you "
          "mean 'address_pools'? (labfleet's settings use '_' and write daemon.json's names)");
    CHECK(Has(hits[1].message, "'data-root' in docker settings: that is Docker's name in daemon.json; did you mean 'data_root'?"));
    CHECK(Has(hits[2].message, "'log-opts' in docker settings: that is Docker's name in daemon.json; did you mean 'log_opts'?"));
    CHECK(Has(hits[3].message, "unknown key 'exec-opts' in docker settings; a daemon.json key that labfleet has no "
                               "setting for goes under `extra:`"));
    // Docker's default pools overlap the reserved 172.20.0.0/16, but the pools were written (under Docker's name).
    CHECK(WithCode(f, "docker-default-pools").empty());
    CHECK(f.items().size() == 4);

    // Without the misspelled key the warning is still there.
    Findings g = CheckWith("groups:\n  gpu:\n    docker: { data_root: /local/.docker }\n"
                           "nodes:\n  a: { address: 10.0.1.71, groups: [gpu] }\n");
    CHECK_MESSAGE(WithCode(g, "docker-default-pools").size() == 1, All(g));
  }

  TEST_CASE("the same finding on many nodes is reported once, naming the nodes, at its place") {
    std::string nodes;
    for (int i = 1; i <= 39; ++i)
      nodes += "  n" + std::to_string(i) + ": { address: 10.0.2." + std::to_string(i) + ", groups: [gpu] }\n";
    Findings f = CheckWith("groups:\n  gpu:\n    sshd: { Port: 2222 }\nnodes:\n" + nodes +
                           "  solo: { address: 10.0.3.1, sshd: { Port: 2200 } }\n");
    auto hits = WithCode(f, "sshd-port");
    INFO(All(f));
    REQUIRE(hits.size() == 2);
    CHECK(hits[0].where.str() == "inventory/x.yaml:3:19");
    std::string list;
    for (int i = 1; i <= 39; ++i) list += std::string(i > 1 ? ", " : "") + "'n" + std::to_string(i) + "'";
    CHECK(hits[0].message == "sshd Port of nodes " + list +
                                 " does not include 22, the ssh.port labfleet connects to; set ssh.port to the new "
                                 "port too, so labfleet follows it (and ssh.fallback_ports to the old port for the "
                                 "run that moves it)");
    CHECK(Has(hits[1].message, "sshd Port of node 'solo' does not include 22"));
    CHECK(hits[1].where.str() == "inventory/x.yaml:44:44");

    // Checks that used to stop at the first node of a group name them all.
    Findings g = CheckWith(
        "groups:\n  gpu:\n    files: [{ path: /etc/nsswitch.conf, content: \"x\\n\" }]\n"
        "nodes:\n  a: { address: 10.0.1.71, groups: [gpu] }\n  b: { address: 10.0.1.72, groups: [gpu] }\n");
    auto risk = WithCode(g, "lockout-risk-file");
    INFO(All(g));
    REQUIRE(risk.size() == 1);
    CHECK(Has(risk[0].message, "file /etc/nsswitch.conf decides who may log in (or use sudo) on nodes 'a', 'b'; "));
  }

  TEST_CASE("show GROUP says it is a group and lists its nodes; show never cuts a value") {
    TempDir d("labfleet-nu");
    std::string nodes;
    for (int i = 1; i <= 30; ++i)
      nodes += "  gpunode" + std::to_string(i) + ": { address: 10.0.2." + std::to_string(i) + ", groups: [gpu] }\n";
    d.write("inventory/lab.yaml", kLab);
    d.write("inventory/nodes.yaml",
            "groups:\n  gpu:\n    packages: [htop, tmux, vim, rsync, nvtop, git, build-essential, python3-venv, "
            "python3-pip, ncdu, iotop, sysstat, lsof, strace]\nnodes:\n" + nodes);
    auto r = Cli({"--inventory", d.str("inventory"), "show", "gpu"});
    INFO(r.out, r.err);
    CHECK(r.rc == kExitOk);
    CHECK(Has(r.out, "'gpu' is a group, not a node (" + d.str("inventory") + "/nodes.yaml:2:3); its 30 nodes:\n"));
    for (int i = 1; i <= 30; ++i) CHECK(Has(r.out, "gpunode" + std::to_string(i) + (i < 30 ? "," : "\n")));
    CHECK(!Has(r.out, "..."));
    for (const auto& line : labfleet::SplitWords(r.out, "\n"))
      if (line.rfind("  gpunode", 0) == 0) CHECK(line.size() <= 78);
    auto j = Cli({"--inventory", d.str("inventory"), "--format", "json", "show", "gpu"});
    CHECK(j.rc == kExitOk);
    CHECK(nlohmann::json::parse(j.out)["nodes"].size() == 30);

    auto n = Cli({"--inventory", d.str("inventory"), "show", "gpunode1"});
    INFO(n.out);
    CHECK(n.rc == kExitOk);
    CHECK(!Has(n.out, "..."));
    CHECK(Has(n.out, "strace]"));  // the end of the long list, on a continuation line
    CHECK(Has(n.out, "python3-pip,"));
    CHECK(Cli({"--inventory", d.str("inventory"), "show", "nosuch"}).rc == kExitUsage);
  }

  TEST_CASE("nvidia-docker2 as a package beside docker: settings is an error saying what to do") {
    Findings f = CheckWith(
        "groups:\n"
        "  gpu:\n"
        "    docker: { address_pools: [{ base: 172.28.0.0/16, size: 24 }] }\n"
        "    packages: [htop, nvidia-docker2]\n"
        "nodes:\n"
        "  a: { address: 10.0.1.71, groups: [gpu] }\n"
        "  b: { address: 10.0.1.72, groups: [gpu] }\n"
        "  c: { address: 10.0.1.73, packages: [nvidia-docker2] }\n");
    auto hits = WithCode(f, "package-nvidia-docker2");
    INFO(All(f));
    REQUIRE(hits.size() == 1);  // c has no docker: settings; a and b share one finding
    CHECK(hits[0].where.str() == "inventory/x.yaml:4:22");
    CHECK(Has(hits[0].message, "package nvidia-docker2 on nodes 'a', 'b' registers the nvidia runtime in "
                               "/etc/docker/daemon.json, which labfleet writes from the node's docker: settings"));
    CHECK(Has(hits[0].message, "Remove nvidia-docker2 from packages and set `nvidia: { container_toolkit: true }`"));
  }

  TEST_CASE("sudoers files are checked with visudo at validate time (LABFLEET_VISUDO)") {
    TempDir d("labfleet-nu");
    // A stand-in visudo: rejects a file holding "BAD" the way visudo does (FILE:LINE:COL: syntax error).
    d.write("visudo", "#!/bin/sh\n[ \"$1\" = -c ] && [ \"$2\" = -f ] || exit 2\n"
                      "if grep -q BAD \"$3\"; then echo \"$3:1:5: syntax error\" >&2; exit 1; fi\n"
                      "echo \"$3: parsed OK\"\n");
    chmod(d.str("visudo").c_str(), 0755);
    const std::string inv =
        "nodes:\n"
        "  a:\n"
        "    address: 10.0.1.71\n"
        "    files:\n"
        "      - { path: /etc/sudoers.d/lab, content: \"%lab BAD\\n\" }\n"
        "      - { path: /etc/sudoers.d/ok, content: \"%lab ALL=(ALL) ALL\\n\" }\n"
        "      - { path: /etc/lab-notes, content: \"BAD\\n\" }\n";
    {
      ScopedEnv env("LABFLEET_VISUDO", d.str("visudo"));
      Findings f = CheckWith(inv);
      auto hits = WithCode(f, "sudoers-syntax");
      INFO(All(f));
      REQUIRE(hits.size() == 1);
      CHECK(hits[0].where.str() == "inventory/x.yaml:5:9");
      CHECK(hits[0].message ==
            "visudo rejects sudoers file /etc/sudoers.d/lab for node 'a': /etc/sudoers.d/lab:1:5: syntax error; with "
            "it in place sudo refuses everyone on the node. Fix it (check with `visudo -cf FILE`); apply would "
            "refuse to install it");
    }
    {
      // One entry of a group: one finding, naming each node that gets it.
      ScopedEnv env("LABFLEET_VISUDO", d.str("visudo"));
      Findings f = CheckWith("groups:\n  gpu:\n    files: [{ path: /etc/sudoers.d/lab, content: \"BAD\\n\" }]\n"
                             "nodes:\n  a: { address: 10.0.1.71, groups: [gpu] }\n"
                             "  b: { address: 10.0.1.72, groups: [gpu] }\n");
      auto hits = WithCode(f, "sudoers-syntax");
      INFO(All(f));
      REQUIRE(hits.size() == 1);
      CHECK(hits[0].where.str() == "inventory/x.yaml:3:13");
      CHECK(Has(hits[0].message, "visudo rejects sudoers file /etc/sudoers.d/lab for nodes 'a', 'b': "));
    }
    {
      ScopedEnv env("LABFLEET_VISUDO", d.str("no-such-visudo"));  // no visudo on the controller: not checked
      CHECK(WithCode(CheckWith(inv), "sudoers-syntax").empty());
    }
  }

  TEST_CASE("apply checks a sudoers file with visudo on the node before it is put in place") {
    ScopedEnv env("LABFLEET_VISUDO", "/nonexistent");
    Inventory inv = labfleet::testing::Load(labfleet::testing::Inv(
        "files:\n  - { path: /etc/sudoers.d/lab, content: \"%lab ALL=(ALL) ALL\\n\", mode: \"0440\" }\n"
        "  - { path: /etc/motd, content: \"hi\\n\" }"));
    auto run = labfleet::testing::RunModule(inv, "files", {});
    REQUIRE(run.changes.size() == 2);
    const Change* sudoers = nullptr;
    const Change* motd = nullptr;
    for (const auto& c : run.changes) (c.file.path == "/etc/motd" ? motd : sudoers) = &c;
    REQUIRE(sudoers);
    REQUIRE(motd);
    CHECK(sudoers->file.path == "/etc/sudoers.d/lab");
    CHECK(Has(sudoers->precheck, "-c -f \"$LF_NEW\""));
    CHECK(motd->precheck.empty());
  }

  TEST_CASE("top-level x-* keys are a home for anchors; other unknown top-level keys are still errors") {
    Findings f = CheckWith(
        "x-gpu-docker: &gpu-docker\n"
        "  data_root: /local/.docker\n"
        "  address_pools: [{ base: 172.28.0.0/16, size: 24 }]\n"
        "groups:\n"
        "  gpu: { docker: *gpu-docker }\n"
        "  gpu2: { docker: *gpu-docker }\n");
    CHECK_MESSAGE(f.items().empty(), All(f));
    Findings inv_f;
    Inventory inv = LoadInventory({{"inventory/lab.yaml", kLab},
                                   {"inventory/x.yaml", "x-d: &d { data_root: /x }\ngroups:\n  gpu: { docker: *d }\n"}},
                                  inv_f);
    REQUIRE(inv.group("gpu"));
    CHECK(inv.group("gpu")->raw.find("docker")->find("data_root")->str() == "/x");

    Findings g = CheckWith("xgpu: 1\nextra: { a: 1 }\n");
    auto hits = WithCode(g, "unknown-key");
    INFO(All(g));
    REQUIRE(hits.size() == 2);
    CHECK(Has(hits[0].message, "unknown section 'xgpu'"));
    CHECK(Has(hits[0].message, "keys starting with 'x-' are ignored"));
  }

  TEST_CASE("templates: inventory/templates/ first, then templates/ beside the inventory, without templates_dir") {
    TempDir d("labfleet-nu");
    d.write("inventory/lab.yaml", "lab: { name: t }\n");
    d.write("inventory/nodes.yaml",
            "nodes:\n  a:\n    address: 10.0.1.71\n    files:\n"
            "      - { path: /etc/motd, template: motd.mustache }\n"
            "      - { path: /etc/issue, template: issue.mustache }\n");
    d.write("templates/motd.mustache", "beside {{node}}\n");
    d.write("templates/issue.mustache", "issue beside\n");
    d.write("inventory/templates/issue.mustache", "issue inside\n");
    const std::string inv = d.str("inventory");
    auto v = Cli({"--inventory", inv, "validate"});
    CHECK_MESSAGE(v.rc == kExitOk, v.err);
    CHECK(v.err == "");
    auto motd = Cli({"--inventory", inv, "render", "motd.mustache", "--node", "a"});
    CHECK(motd.rc == kExitOk);
    CHECK(motd.out == "beside a\n");
    auto issue = Cli({"--inventory", inv, "render", "issue.mustache", "--node", "a"});
    CHECK(issue.out == "issue inside\n");
    // The same, named with a trailing '/' or as '.' from inside it: templates/ beside it is still in the repository.
    CHECK(Cli({"--inventory", inv + "/", "render", "motd.mustache", "--node", "a"}).out == "beside a\n");
    {
      fs::path old = fs::current_path();
      fs::current_path(inv);
      auto here = Cli({"--inventory", ".", "validate"});
      fs::current_path(old);
      CHECK_MESSAGE(here.rc == kExitOk, here.err);
    }

    d.write("inventory/nodes.yaml",
            "nodes:\n  a:\n    address: 10.0.1.71\n    files: [{ path: /etc/motd, template: nosuch.mustache }]\n");
    auto bad = Cli({"--inventory", inv, "validate"});
    CHECK(bad.rc == kExitErrors);
    CHECK(Has(bad.err, "template 'nosuch.mustache' not found in " + inv + "/templates/ nor in " + d.str("templates") +
                           "/ (the templates/ inside the inventory directory, then the one beside it; or set "
                           "lab.templates_dir) [template-missing]"));
  }
}
