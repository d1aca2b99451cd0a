// Git awareness on a real node: apply refuses uncommitted inventory changes, records the commit on the node,
// and `status` says how many commits a node is behind HEAD and whether it drifted.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

namespace fs = std::filesystem;
using namespace labfleet::testing;

namespace {

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
    TempInventory tmp(sbx, "labfleet-git");
    const fs::path& repo = tmp.root;
    std::ofstream(repo / "inventory/lab.yaml")
        << "lab:\n  name: t\n  defaults:\n    files:\n      - { path: /etc/lab-version, content: \"v1\\n\" }\n";
    Git(repo, "init -q && git add -A && git commit -qm one");
    const std::string inv = tmp.dir();
    auto head = RunCommand("git -C " + labfleet::ShellQuote(repo.string()) + " rev-parse HEAD").out;
    head.pop_back();

    auto r = Cli(sbx, inv, {"apply", "--yes"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    auto state = nlohmann::json::parse(sbx.exec("node1", "cat /var/lib/labfleet/state.json").out);
    CHECK(state["commit"] == head);
    CHECK(state["dirty"] == false);

    // An uncommitted change is refused, and nothing reaches the node.
    std::ofstream(repo / "inventory/lab.yaml")
        << "lab:\n  name: t\n  defaults:\n    files:\n      - { path: /etc/lab-version, content: \"v2\\n\" }\n";
    r = Cli(sbx, inv, {"apply", "--yes"});
    CHECK(r.rc == 1);
    CHECK(r.err.find("uncommitted changes") != std::string::npos);
    CHECK(sbx.exec("node1", "cat /etc/lab-version").out == "v1\n");

    // Committed: the node is now one commit behind and has drifted (its plan is not empty).
    Git(repo, "commit -qam two");
    r = Cli(sbx, inv, {"status", "--format", "json"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    auto j = nlohmann::json::parse(r.out);
    REQUIRE(j["nodes"].size() == 1);
    CHECK(j["nodes"][0]["behind"] == 1);
    CHECK(j["nodes"][0]["drift"] == true);
    CHECK(j["nodes"][0]["commit"] == head);

    r = Cli(sbx, inv, {"apply", "--yes"});
    CHECK(r.rc == 0);
    r = Cli(sbx, inv, {"status", "--format", "json"});
    j = nlohmann::json::parse(r.out);
    CHECK(j["nodes"][0]["behind"] == 0);
    CHECK(j["nodes"][0]["drift"] == false);
    CHECK(sbx.exec("node1", "cat /etc/lab-version").out == "v2\n");

    // A template outside the inventory directory (templates_dir: ../templates) counts too: the commit a node
    // records must describe everything it got.
    std::ofstream(repo / "inventory/lab.yaml")
        << "lab:\n  name: t\n  templates_dir: ../templates\n  defaults:\n    files:\n"
           "      - { path: /etc/lab-version, content: \"v2\\n\" }\n"
           "      - { path: /etc/lab-motd, template: motd.mustache }\n";
    fs::create_directories(repo / "templates");
    std::ofstream(repo / "templates/motd.mustache") << "welcome to {{node}}\n";
    Git(repo, "add -A && git commit -qm three");
    r = Cli(sbx, inv, {"apply", "--yes"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    std::ofstream(repo / "templates/motd.mustache") << "goodbye from {{node}}\n";
    r = Cli(sbx, inv, {"apply", "--yes"});
    CHECK(r.rc == 1);
    CHECK(r.err.find("uncommitted changes") != std::string::npos);
    CHECK(sbx.exec("node1", "cat /etc/lab-motd").out == "welcome to node1\n");
  }
}
