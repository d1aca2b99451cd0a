// pip on a real sandbox node, offline: two versions of a one-file wheel built by hand inside the node (a zip with
// the module, METADATA, WHEEL and RECORD), installed from a local wheel directory (--no-index --find-links) into
// a venv labfleet creates and system-wide (the node's overlay of /usr/local: the host's Python is untouched).
// Independent checks: the venv's and the system's python import the module and print its version.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

// /srv/wheels/lf_demo-VERSION-py3-none-any.whl, whose module lf_demo has VERSION.
void BuildWheel(const Sandbox& sbx, const std::string& version) {
  MustExec(sbx, "node1",
           "set -e; mkdir -p /srv/wheels; cd /srv/wheels; /usr/bin/python3 - <<'PY'\n"
           "import zipfile\n"
           "v = '" + version + "'\n"
           "di = 'lf_demo-%s.dist-info' % v\n"
           "files = {'lf_demo.py': 'VERSION = %r\\n' % v,\n"
           "         di + '/METADATA': 'Metadata-Version: 2.1\\nName: lf-demo\\nVersion: %s\\n' % v,\n"
           "         di + '/WHEEL': 'Wheel-Version: 1.0\\nGenerator: labfleet-tests\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n'}\n"
           "with zipfile.ZipFile('lf_demo-%s-py3-none-any.whl' % v, 'w') as z:\n"
           "    for n, t in files.items(): z.writestr(n, t)\n"
           "    z.writestr(di + '/RECORD', ''.join('%s,,\\n' % n for n in list(files) + [di + '/RECORD']))\n"
           "PY");
}

struct Inv : TempInventory {
  using TempInventory::TempInventory;
  void lab(const std::string& venv_version, const std::string& system_version = "1.0") const {
    defaults("    pip:\n"
             "      - { venv: /opt/lfvenv, packages: [lf-demo==" + venv_version +
             "], find_links: /srv/wheels, index: false }\n"
             "      - { packages: [\"lf_demo==" + system_version + "\"], find_links: /srv/wheels, index: false }\n");
  }
};

}  // namespace

TEST_SUITE("integration-apt") {
  TEST_CASE("pip: a venv created and filled, system-wide packages, from a local wheel directory; versions follow") {
    Sandbox sbx({.nodes = 1});
    BuildWheel(sbx, "1.0");
    BuildWheel(sbx, "2.0");
    Inv inv(sbx);
    inv.lab("1.0");
    auto a1 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(a1.out << a1.err);
    REQUIRE(a1.rc == 0);
    CHECK(Summaries(a1) == "pip system-wide: install lf_demo==1.0 | pip venv /opt/lfvenv: create the venv, install lf-demo==1.0");
    CHECK(a1.json()["apply"][0]["status"] == "changed");  // its re-plan was empty
    CHECK(Exec(sbx, "/opt/lfvenv/bin/python -c 'import lf_demo; print(lf_demo.VERSION)'") == "1.0\n");
    CHECK(Exec(sbx, "cd / && /usr/bin/python3 -c 'import lf_demo; print(lf_demo.VERSION, lf_demo.__file__)'") ==
          "1.0 /usr/local/lib/python3.11/dist-packages/lf_demo.py\n");
    CHECK(Exec(sbx, "stat -c '%U %a' /opt/lfvenv") == "root 755\n");

    auto p1 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(p1.out << p1.err);
    CHECK(p1.rc == 0);

    // One version changes: exactly that upgrade.
    inv.lab("2.0");
    auto a2 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(a2.out << a2.err);
    REQUIRE(a2.rc == 0);
    CHECK(Summaries(a2) == "pip venv /opt/lfvenv: install lf-demo==2.0");
    CHECK(a2.json()["plan"][0]["changes"][0]["reason"] == "lf-demo: 1.0 installed");
    CHECK(Exec(sbx, "/opt/lfvenv/bin/python -c 'import lf_demo; print(lf_demo.VERSION)'") == "2.0\n");

    // A venv a user could write into is refused: root would run code that user controls.
    Exec(sbx, "chmod o+w /opt/lfvenv/lib");
    inv.lab("1.0");
    auto p3 = Cli(sbx, inv.dir(), {"plan"});
    INFO(p3.out << p3.err);
    CHECK(p3.rc != 0);
    CHECK(p3.out.find("/opt/lfvenv/lib is not root's alone") != std::string::npos);
    CHECK(Exec(sbx, "/opt/lfvenv/bin/python -c 'import lf_demo; print(lf_demo.VERSION)'") == "2.0\n");
  }
}
