// sudoers files (`files:` below /etc/sudoers.d/) on a real sandbox node: a valid one is applied, re-plans to
// nothing and the node's own `visudo -cf` accepts it; one visudo rejects is caught by `validate` on the
// controller, and, where the controller has no visudo (LABFLEET_VISUDO pointing at nothing), refused by apply
// on the node before it is put in place: nothing is written, sudo keeps working.
#include <doctest/doctest.h>

#include <cstdlib>
#include <optional>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

// LABFLEET_VISUDO for one scope; the old value (or its absence) put back.
struct ScopedVisudo {
  std::optional<std::string> old;
  explicit ScopedVisudo(const std::string& value) {
    if (const char* o = std::getenv("LABFLEET_VISUDO")) old = o;
    setenv("LABFLEET_VISUDO", value.c_str(), 1);
  }
  ~ScopedVisudo() {
    if (old)
      setenv("LABFLEET_VISUDO", old->c_str(), 1);
    else
      unsetenv("LABFLEET_VISUDO");
  }
};

const char* kGood = "%sudo ALL=(ALL:ALL) ALL\\n";
const char* kBroken = "bob ALL=(ALL NOPASSWD ALL\\n";  // an unclosed '(': visudo says "syntax error"

std::string Files(const std::string& extra = "") {
  return std::string("    files:\n") + "      - { path: /etc/sudoers.d/lab, content: \"" + kGood +
         "\", mode: \"0440\" }\n" + extra;
}

}  // namespace

TEST_SUITE("integration-sudoers") {
  TEST_CASE("a valid sudoers file applies and re-plans to nothing; visudo rejects a broken one, nothing written") {
    Sandbox sbx({.nodes = 1});
    REQUIRE(sbx.exec("node1", "command -v visudo").exit_code == 0);
    TempInventory inv(sbx);
    inv.defaults(Files());
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Exec(sbx, "cat /etc/sudoers.d/lab") == "%sudo ALL=(ALL:ALL) ALL\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/sudoers.d/lab") == "440 root root\n");
    CHECK(sbx.exec("node1", "visudo -cf /etc/sudoers.d/lab").exit_code == 0);
    CHECK(sbx.exec("node1", "visudo -c").exit_code == 0);  // sudoers with its includes, as sudo reads it
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // A broken file: validate on the controller (which has visudo) names it, at its place, and apply stops there.
    const std::string broken = std::string("      - { path: /etc/sudoers.d/broken, content: \"") + kBroken +
                               "\", mode: \"0440\" }\n";
    inv.defaults(Files(broken));
    auto v = Cli({"--inventory", inv.dir(), "validate"});
    INFO(v.out << v.err);
    CHECK(v.rc == 1);
    CHECK(v.err.find("lab.yaml:6:9: error: visudo rejects sudoers file /etc/sudoers.d/broken for node 'node1': "
                     "/etc/sudoers.d/broken:1:") != std::string::npos);
    CHECK(v.err.find(": syntax error; with it in place sudo refuses everyone on the node. Fix it") != std::string::npos);
    CHECK(v.err.find("[sudoers-syntax]\n") != std::string::npos);
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    CHECK(r.rc == 1);
    CHECK(sbx.exec("node1", "test -e /etc/sudoers.d/broken").exit_code == 1);

    // A controller without visudo: the node's visudo checks the new version before it is moved into place.
    ScopedVisudo none("/nonexistent/visudo");
    CHECK(Cli({"--inventory", inv.dir(), "validate"}).rc == 0);
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    CHECK(r.out.find("check of the new /etc/sudoers.d/broken failed; it was not put in place") != std::string::npos);
    CHECK(r.out.find("syntax error") != std::string::npos);  // visudo's own words
    // Nothing written: no broken file, no temporary file (sudo would read one without a '.'), lab untouched.
    CHECK(sbx.exec("node1", "test -e /etc/sudoers.d/broken").exit_code == 1);
    CHECK(Exec(sbx, "ls -A /etc/sudoers.d | grep -v '^README$'") == "lab\n");
    CHECK(Exec(sbx, "cat /etc/sudoers.d/lab") == "%sudo ALL=(ALL:ALL) ALL\n");
    CHECK(sbx.exec("node1", "visudo -c").exit_code == 0);
    CHECK(sbx.exec("node1", "test -e /run/labfleet.lock").exit_code != 0);

    // Fixed: it goes in, and the node converges.
    inv.defaults(Files("      - { path: /etc/sudoers.d/broken, content: \"bob ALL=(ALL) NOPASSWD: ALL\\n\", mode: \"0440\" }\n"));
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(sbx.exec("node1", "visudo -cf /etc/sudoers.d/broken").exit_code == 0);
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }
}
