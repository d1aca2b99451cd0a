// Git awareness on a real node: apply refuses uncommitted inventory changes, records the commit on the node,
// and `status` says how many commits a node is behind HEAD and whether it drifted.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/cli.h"
#include "engine/shell.h"
#include "tests/integration/sandbox.h"

namespace fs = std::filesystem;
using labfleet::testing::RunCommand;
using labfleet::testing::Sandbox;

namespace {

struct R {
  int rc;
  std::string out, err;
};

R Cli(std::vector<std::string> args) {
  std::vector<const char*> argv{"labfleet"};
  for (auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int rc = labfleet::RunCli(int(argv.size()), argv.data(), out, err);
  return {rc, out.str(), err.str()};
}

void Git(const fs::path& repo, const std::string& args) {
  auto r = RunCommand("cd " + labfleet::ShellQuote(repo.string()) +
                      " && git -c user.name=t -c user.email=t@t -c commit.gpgsign=false " + args);
  INFO(args << ": " << r.err);
  REQUIRE(r.exit_code == 0);
}

}  // namespace

TEST_SUITE("integration-git") {
  TEST_CASE("apply records the commit; dirty inventories are refused; status shows behind and drift") {
    Sandbox sbx({.nodes = 1});
    char tmpl[] = "/var/tmp/labfleet-git-XXXXXX";
    fs::path repo = mkdtemp(tmpl);
    struct Cleanup {
      fs::path p;
      ~Cleanup() { fs::remove_all(p); }
    } cleanup{repo};
    fs::create_directories(repo / "inventory");
    std::ofstream(repo / "inventory/nodes.yaml") << sbx.nodes_yaml();
    std::ofstream(repo / "inventory/lab.yaml")
        << "lab:\n  name: t\n  defaults:\n    files:\n      - { path: /etc/lab-version, content: \"v1\\n\" }\n";
    Git(repo, "init -q && git add -A && git commit -qm one");
    const std::string inv = (repo / "inventory").string();
    auto common = [&](std::vector<std::string> a) {
      std::vector<std::string> all{"--inventory", inv};
      all.insert(all.end(), a.begin(), a.end());
      all.push_back("--known-hosts");
      all.push_back(sbx.known_hosts());
      return all;
    };
    auto head = RunCommand("git -C " + labfleet::ShellQuote(repo.string()) + " rev-parse HEAD").out;
    head.pop_back();

    auto r = Cli(common({"apply", "--yes"}));
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    auto state = nlohmann::json::parse(sbx.exec("node1", "cat /var/lib/labfleet/state.json").out);
    CHECK(state["commit"] == head);
    CHECK(state["dirty"] == false);

    // An uncommitted change is refused, and nothing reaches the node.
    std::ofstream(repo / "inventory/lab.yaml")
        << "lab:\n  name: t\n  defaults:\n    files:\n      - { path: /etc/lab-version, content: \"v2\\n\" }\n";
    r = Cli(common({"apply", "--yes"}));
    CHECK(r.rc == 1);
    CHECK(r.err.find("uncommitted changes") != std::string::npos);
    CHECK(sbx.exec("node1", "cat /etc/lab-version").out == "v1\n");

    // Committed: the node is now one commit behind and has drifted (its plan is not empty).
    Git(repo, "commit -qam two");
    r = Cli(common({"status", "--format", "json"}));
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["nodes"].size() == 1);
    CHECK(j["nodes"][0]["behind"] == 1);
    CHECK(j["nodes"][0]["drift"] == true);
    CHECK(j["nodes"][0]["commit"] == head);

    r = Cli(common({"apply", "--yes"}));
    CHECK(r.rc == 0);
    r = Cli(common({"status", "--format", "json"}));
    j = nlohmann::json::parse(r.out);
    CHECK(j["nodes"][0]["behind"] == 0);
    CHECK(j["nodes"][0]["drift"] == false);
    CHECK(sbx.exec("node1", "cat /etc/lab-version").out == "v2\n");
  }
}
