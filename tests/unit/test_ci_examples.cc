// docs/ci: the pre-commit hook run for real in a git repository (it validates what is staged, not the working
// tree), and the CI example files are YAML that parses.
#include <doctest/doctest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "engine/shell.h"
#include "engine/yaml_load.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;
using labfleet::testing::TempDir;

namespace {

const std::string kDocs = std::string(LABFLEET_SOURCE_DIR) + "/docs/ci/";

int Sh(const TempDir& d, const std::string& cmd, std::string* out = nullptr) {
  std::string full = "cd " + ShellQuote(d.str()) + " && export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@t " +
                     "GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@t LABFLEET=" + ShellQuote(LABFLEET_BINARY) +
                     " && ( " + cmd + " ) > out.log 2>&1";
  int rc = std::system(full.c_str());
  if (out) {
    std::ifstream in(d.str("out.log"));
    std::stringstream ss;
    ss << in.rdbuf();
    *out = ss.str();
  }
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

}  // namespace

TEST_SUITE("ci-examples") {
  TEST_CASE("pre-commit hook: the staged inventory is validated, not the working tree") {
    TempDir d("labfleet-hook");
    d.write("inventory/lab.yaml", "lab: { name: t }\nnodes:\n  n1: { address: 10.9.0.1 }\n");
    REQUIRE(Sh(d, "git init -q && echo out.log > .gitignore && git add -A && git -c commit.gpgsign=false commit -qm one") == 0);
    std::string hook = ShellQuote(kDocs + "pre-commit");
    std::string out;
    CHECK(Sh(d, hook, &out) == 0);  // nothing staged

    d.write("inventory/lab.yaml", "lab: { name: t }\nnodes:\n  n1: { adress: 10.9.0.1 }\n");
    CHECK(Sh(d, hook, &out) == 0);  // broken, but only in the working tree
    REQUIRE(Sh(d, "git add inventory/lab.yaml") == 0);
    CHECK(Sh(d, hook, &out) == 1);  // now staged
    CHECK(out.find("adress") != std::string::npos);
    CHECK(out.find("the staged inventory does not validate") != std::string::npos);

    d.write("inventory/lab.yaml", "lab: { name: t }\nnodes:\n  n1: { address: 10.9.0.2 }\n");
    REQUIRE(Sh(d, "git add inventory/lab.yaml") == 0);
    d.write("inventory/lab.yaml", "lab: [ broken\n");  // the working tree is broken again; the index is fine
    CHECK(Sh(d, hook, &out) == 0);

    // A staged playbook that does not fit the inventory stops the commit too, even with the inventory unchanged.
    REQUIRE(Sh(d, "git checkout -q -- inventory && git -c commit.gpgsign=false commit -qm two") == 0);
    d.write("playbooks/roll.yaml", "steps:\n  - { name: a, apply: [dockr] }\n");
    REQUIRE(Sh(d, "git add playbooks/roll.yaml") == 0);
    CHECK(Sh(d, hook, &out) == 1);
    CHECK(out.find("playbooks/roll.yaml:2:5: error: step 'a' applies the module 'dockr'") != std::string::npos);
  }

  TEST_CASE("CI example files are YAML that parses") {
    for (const char* f : {"github-actions.yml", "gitlab-ci.yml", "pre-commit-hooks.yaml"}) {
      CAPTURE(f);
      std::ifstream in(kDocs + f);
      REQUIRE(in);
      std::stringstream ss;
      ss << in.rdbuf();
      Findings findings;
      Value v = ParseYaml(ss.str(), f, findings);
      CHECK_FALSE(findings.has_errors());
      CHECK((v.is_map() || v.is_seq()));
    }
  }
}
