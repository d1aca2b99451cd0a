// `labfleet diff`: the blast radius of an inventory change between two commits of a real git repository (made
// with the git CLI in a temporary directory), and the pure comparison behind it.
#include <doctest/doctest.h>

#include <cstdlib>
#include <sstream>

#include "engine/cli.h"
#include "engine/rev_diff.h"
#include "engine/shell.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;
using labfleet::testing::TempDir;

namespace {

const char* kLab = R"(lab:
  name: t
  defaults:
    files:
      - { path: /etc/motd, template: motd.mustache, mode: "0644" }
)";
const char* kNodes = R"(groups:
  gpu: { docker: { address_pools: [ { base: 172.28.0.0/16, size: 24 } ] } }
nodes:
  login: { address: 10.9.0.1 }
  asahi: { address: 10.9.0.2, groups: [gpu] }
  ayame: { address: 10.9.0.3, groups: [gpu] }
)";
const char* kUsers = R"(users:
  yseong: { uid: 2001, full_name: Yeon Seong }
  kpark: { uid: 2002, full_name: Kim Park, on: [gpu] }
)";

void Git(const TempDir& d, const std::string& args) {
  std::string cmd = "cd " + ShellQuote(d.str()) +
                    " && git -c user.name=t -c user.email=t@t -c commit.gpgsign=false " + args + " >/dev/null 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
}

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

}  // namespace

TEST_SUITE("diff") {
  TEST_CASE("between two commits: only the nodes a change reaches, each with what changes for it") {
    TempDir d("labfleet-diff");
    d.write("inventory/lab.yaml", kLab);
    d.write("inventory/nodes.yaml", kNodes);
    d.write("inventory/users.yaml", kUsers);
    d.write("templates/motd.mustache", "Welcome to {{node.name}}\n");
    Git(d, "init -q && git add -A && git commit -qm one");
    std::string inv = d.str("inventory");

    SUBCASE("a group's docker pools and a user on that group: the gpu nodes only") {
      std::string nodes = kNodes;
      nodes.replace(nodes.find("172.28.0.0/16"), 13, "172.29.0.0/16");
      d.write("inventory/nodes.yaml", nodes);
      std::string users = kUsers;
      users.replace(users.find("Kim Park"), 8, "Kim J. Park");
      d.write("inventory/users.yaml", users);
      Git(d, "commit -qam two");
      auto r = Cli({"-i", inv, "diff", "HEAD~1", "HEAD", "--detailed-exitcode"});
      INFO(r.out, r.err);
      CHECK(r.rc == 2);
      CHECK(r.out.find("login:") == std::string::npos);
      CHECK(r.out.find("asahi: 2 changes\n  ~ settings docker\n  ~ user kpark\n") != std::string::npos);
      CHECK(r.out.find("ayame: 2 changes\n") != std::string::npos);
      CHECK(r.out.find("2 of 3 nodes change, 0 added, 0 removed.") != std::string::npos);
    }
    SUBCASE("a template edit reaches every node that renders it; the working tree is the default 'to'") {
      d.write("templates/motd.mustache", "Welcome to {{node.name}}, mind the GPUs\n");
      auto r = Cli({"-i", inv, "diff", "HEAD"});
      INFO(r.out, r.err);
      CHECK(r.rc == 0);
      for (const char* n : {"login", "asahi", "ayame"})
        CHECK(r.out.find(std::string(n) + ": 1 change\n  ~ file /etc/motd (template motd.mustache)\n") != std::string::npos);
      CHECK(r.out.find("..working tree: 3 of 3 nodes change") != std::string::npos);
    }
    SUBCASE("a template that no longer renders is named as such, not shown as a change of text") {
      d.write("templates/motd.mustache", "Welcome to {{#node.name}}\n");  // unclosed section
      auto r = Cli({"-i", inv, "diff", "HEAD"});
      INFO(r.out, r.err);
      CHECK(r.out.find("  ~ file /etc/motd (template motd.mustache) (cannot be rendered: ") != std::string::npos);
    }
    SUBCASE("a node added and one removed; a user that leaves a node") {
      std::string nodes = kNodes;
      nodes.replace(nodes.find("  ayame:"), std::string("  ayame: { address: 10.9.0.3, groups: [gpu] }\n").size(),
                    "  azusa: { address: 10.9.0.4, groups: [gpu] }\n");
      d.write("inventory/nodes.yaml", nodes);
      std::string users = kUsers;
      users.replace(users.find("  kpark:"), std::string("  kpark: { uid: 2002, full_name: Kim Park, on: [gpu] }\n").size(), "");
      d.write("inventory/users.yaml", users);
      Git(d, "commit -qam three");
      auto r = Cli({"-i", inv, "--format", "json", "diff", "HEAD~1", "HEAD"});
      INFO(r.out, r.err);
      REQUIRE(r.rc == 0);
      auto j = nlohmann::json::parse(r.out);
      CHECK(j["summary"]["added"] == 1);
      CHECK(j["summary"]["removed"] == 1);
      CHECK(j["summary"]["changed"] == 1);  // asahi loses kpark
      bool asahi = false;
      for (const auto& n : j["nodes"]) {
        if (n["node"] == "asahi") {
          asahi = true;
          CHECK(n["changes"] == nlohmann::json::array({"- user kpark"}));
        }
        if (n["node"] == "azusa") CHECK(n["status"] == "added");
        if (n["node"] == "ayame") CHECK(n["status"] == "removed");
      }
      CHECK(asahi);
    }
    SUBCASE("no change: nothing listed, exit 0 even with --detailed-exitcode") {
      auto r = Cli({"-i", inv, "diff", "HEAD", "--detailed-exitcode"});
      CHECK(r.rc == 0);
      CHECK(r.out.find("0 of 3 nodes change") != std::string::npos);
    }
    SUBCASE("an unknown revision says what to name") {
      auto r = Cli({"-i", inv, "diff", "no-such-branch"});
      CHECK(r.rc == 1);
      CHECK(r.err.find("name a commit of the repository that holds") != std::string::npos);
    }
  }
}
