// pip: the `pip list --format json` parser on output captured from Debian 12's pip (garbage line included),
// names and versions as PEP 503 / PEP 440 compare them, offline validation, and the diffs.
#include <doctest/doctest.h>

#include "modules/facts/apt_facts.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {
std::string ProbeOut(const std::string& head, const std::string& list, int pip_exit = 0) {
  return head + "\n" + list + "\npip-exit=" + std::to_string(pip_exit) + "\n";
}
}  // namespace

TEST_SUITE("pip") {
  TEST_CASE("pip list --format json, captured (Debian 12, pip 23.0.1), garbage skipped") {
    PipList l = ParsePipList(Fixture("apt/pip_list.txt"));
    CHECK(l.ok);
    CHECK(l.skipped == 1);  // the WARNING line
    CHECK(l.version.size() == 73);
    CHECK(l.version["pyopenssl"] == "23.0.0");  // canonical name of pyOpenSSL
    CHECK(l.version["pyyaml"] == "6.0");
    CHECK(l.version["babel"] == "2.10.3");
    // Hostile: entries of the wrong shape and names or versions with shell or newline characters are skipped.
    PipList h = ParsePipList("[{\"name\": \"ok\", \"version\": \"1\"}, {\"name\": \"a;b\", \"version\": \"1\"}, "
                             "{\"name\": \"c\", \"version\": \"1\\n2\"}, 7, {\"name\": 1}]\n[{\"name\": \"second\"}]\n");
    CHECK(h.version.size() == 1);
    CHECK(h.skipped == 5);
    CHECK_FALSE(ParsePipList("not json\n[1, 2\n").ok);
  }

  TEST_CASE("names and versions compare as pip does") {
    CHECK(PipCanonicalName("pyOpenSSL") == "pyopenssl");
    CHECK(PipCanonicalName("Foo__bar.Baz-x") == "foo-bar-baz-x");
    CHECK(PipVersionEqual("0.26", "0.26.0"));
    CHECK(PipVersionEqual("1.0RC1", "1.0rc1"));
    CHECK_FALSE(PipVersionEqual("0.26", "0.26.1"));
    CHECK_FALSE(PipVersionEqual("1", "10"));
  }

  TEST_CASE("validate: exact pins, one entry per target, safe venv paths") {
    Findings f;
    Load(Inv("pip:\n"
             "  - determined==0.26\n"
             "  - \"pyOpenSSL>=20\"\n"
             "  - \"x==1; rm -rf /\"\n"
             "  - determined==0.27\n"
             "  - { venv: /opt/det, packages: [determined==0.26] }\n"
             "  - { venv: /opt/det/, packages: [a==1] }\n"
             "  - { venv: \"/opt/$(id)\", packages: [a==1] }\n"
             "  - { venv: /opt/y, packages: [a==1], find_links: \"ftp://x\", indexx: false }\n"),
         &f);
    std::string all = All(f);
    INFO(all);
    CHECK(all.find("test.yaml:7:9: pip-requirement: pip requirement 'pyOpenSSL>=20' must be NAME==VERSION with an exact version") !=
          std::string::npos);
    CHECK(all.find("pip requirement 'x==1; rm -rf /' must be NAME==VERSION") != std::string::npos);
    CHECK(all.find("test.yaml:9:9: pip-duplicate: pip package determined is listed twice for the system") != std::string::npos);
    CHECK(all.find("pip-target-duplicate: pip packages for venv /opt/det are listed in two entries (first at inventory/test.yaml:10:9)") !=
          std::string::npos);
    CHECK(all.find("pip-venv: venv '/opt/$(id)' must be an absolute path") != std::string::npos);
    CHECK(all.find("pip-find-links: find_links 'ftp://x'") != std::string::npos);
    CHECK(all.find("unknown key 'indexx' in pip entry") != std::string::npos);
    CHECK(all.find("for the system are listed in two entries") == std::string::npos);  // a bad venv is no system entry
  }

  TEST_CASE("diff: missing and other versions installed in one command; the mirror is the index") {
    Inventory inv = Load(Inv("package_mirror: { pip: \"http://pypi.lab:3141/simple/\" }\n"
                             "pip: [determined==0.26, pyOpenSSL==23.0, PyYAML==6.0.1]\n"));
    ModuleRun run = RunModule(inv, "pip", {{"pip:system", {0, ProbeOut("system", Fixture("apt/pip_list.txt"))}}});
    INFO(run.all_notes());
    REQUIRE(run.lines() == std::vector<std::string>{"~ pip system-wide: install determined==0.26, PyYAML==6.0.1"});
    CHECK(run.changes[0].reason == "determined: not installed; PyYAML: 6.0 installed");
    CHECK(run.changes[0].command ==
          "env 'PIP_DISABLE_PIP_VERSION_CHECK=1' 'PIP_NO_INPUT=1' 'PIP_ROOT_USER_ACTION=ignore' "
          "'PIP_BREAK_SYSTEM_PACKAGES=1' python3 -m pip install -q --index-url http://pypi.lab:3141/simple/ "
          "--trusted-host pypi.lab -- 'determined==0.26' 'PyYAML==6.0.1'\n");
    // Converged.
    Inventory conv = Load(Inv("pip: [pyOpenSSL==23.0, pyyaml==6.0]\n"));
    ModuleRun c = RunModule(conv, "pip", {{"pip:system", {0, ProbeOut("system", Fixture("apt/pip_list.txt"))}}});
    CHECK(c.changes.empty());
    CHECK(c.all_notes().find("nothing to do because system-wide has all 2 packages at the listed versions") != std::string::npos);
    // Output cut short is no answer; no pip or no python3 yet (packages installs them in the same apply, before
    // pip) plans the install, which fails with pip's own message if they are still missing then.
    CHECK(RunModule(conv, "pip", {{"pip:system", {0, "system\n[{\"name\": \"a\", \"ver"}}}).errors.size() == 1);
    ModuleRun nopip = RunModule(conv, "pip", {{"pip:system", {0, ProbeOut("system", "", 1)}}});
    REQUIRE(nopip.lines() == std::vector<std::string>{"~ pip system-wide: install pyOpenSSL==23.0, pyyaml==6.0"});
    CHECK(nopip.changes[0].reason == "`python3 -m pip list` failed (pip-exit=1): pip is not installed yet?");
    CHECK(RunModule(conv, "pip", {{"pip:system", {127, ""}}}).changes.size() == 1);
    Inventory venv = Load(Inv("pip: [{ venv: /opt/det, packages: [a==1] }]\n"));
    CHECK(RunModule(venv, "pip", {{"pip:/opt/det", {127, ""}}}).lines() ==
          std::vector<std::string>{"+ pip venv /opt/det: create the venv, install a==1"});
  }

  TEST_CASE("diff: a venv is created when absent, refused when a user could write into it") {
    Inventory inv = Load(Inv("pip: [{ venv: /opt/det, packages: [determined==0.26], find_links: /srv/wheels, index: false }]\n"));
    ModuleRun run = RunModule(inv, "pip", {{"pip:/opt/det", {0, "venv absent\n"}}});
    REQUIRE(run.lines() == std::vector<std::string>{"+ pip venv /opt/det: create the venv, install determined==0.26"});
    CHECK(run.changes[0].command ==
          "python3 -m venv -- /opt/det\n"
          "env 'PIP_DISABLE_PIP_VERSION_CHECK=1' 'PIP_NO_INPUT=1' 'PIP_ROOT_USER_ACTION=ignore' /opt/det/bin/python -m "
          "pip install -q --no-index --find-links /srv/wheels -- 'determined==0.26'\n");
    ModuleRun unsafe = RunModule(inv, "pip", {{"pip:/opt/det", {0, "venv unsafe /opt/det/lib\n"}}});
    REQUIRE(unsafe.errors.size() == 1);
    CHECK(unsafe.errors[0].find("/opt/det/lib is not root's alone") != std::string::npos);
    CHECK(RunModule(inv, "pip", {{"pip:/opt/det", {0, "venv notvenv\n"}}}).errors.size() == 1);
  }
}
