// exports: the parsers on raw captured output (tests/fixtures/exports: the module's node probe inside a sandbox
// node with and without nfs-utils' exportfs, Debian 12's /etc/exports with an admin's lines), offline validation
// of every value for exports(5) syntax and of clients' NFS sources against the servers' exports, and the diff:
// the exact file, the exportfs handler only on a change, the warnings.
#include <doctest/doctest.h>

#include "engine/module.h"
#include "tests/unit/module_helpers.h"

namespace labfleet {
struct ExportLine {
  std::string path;
  std::vector<std::pair<std::string, std::string>> clients;
  size_t line = 0;
};
struct ExportsText {
  std::vector<ExportLine> lines;
  int skipped = 0;
};
ExportsText ParseExports(std::string_view text);
struct ExportsNodeState {
  bool have_exportfs = false;
  std::string exportfs;
  std::map<size_t, std::string> paths;
  int skipped = 0;
};
ExportsNodeState ParseExportsState(std::string_view text);
std::string RenderExports(const std::vector<ExportLine>& lines);
}  // namespace labfleet

using namespace labfleet;
namespace lt = labfleet::testing;

namespace {
// A storage server nas, two gpu nodes and a login node; `nas` holds `exports`, the gpu group `gpu`.
std::string Lab(const std::string& nas, const std::string& gpu = "", const std::string& login = "") {
  return "lab: { name: t }\n"
         "groups:\n  gpu:\n" + (gpu.empty() ? std::string("    vars: { x: 1 }\n") : gpu) +
         "  storage:\n    vars: { x: 1 }\n"
         "nodes:\n"
         "  nas:\n    address: 10.0.1.70\n    groups: [storage]\n" + nas +
         "  asahi:\n    address: 10.0.1.71\n    groups: [gpu]\n"
         "  bernini:\n    address: 10.0.1.72\n    groups: [gpu]\n"
         "  login:\n    address: 10.0.1.60\n" + login;
}
const std::string kNasExports =
    "    exports:\n"
    "      - { path: /mnt/HDD/home/, clients: [gpu, login], options: [rw, sync] }\n"
    "      - { path: /mnt/SSD/public, clients: [gpu, 10.0.2.0/24], options: \"ro,no_subtree_check\" }\n";
}  // namespace

TEST_SUITE("exports") {
  TEST_CASE("parsers: the node probe and exports(5) files, raw captured output with a garbage line") {
    ExportsNodeState st = ParseExportsState(lt::Fixture("exports/state-probe.txt"));
    CHECK(st.have_exportfs);
    CHECK(st.exportfs == "/usr/sbin/exportfs");
    CHECK(st.paths == std::map<size_t, std::string>{{0, "dir"}, {1, "missing"}, {2, "other"}});
    CHECK(st.skipped == 1);
    ExportsNodeState none = ParseExportsState(lt::Fixture("exports/state-probe-no-exportfs.txt"));
    CHECK_FALSE(none.have_exportfs);
    CHECK(none.paths.at(0) == "missing");
    CHECK(none.skipped == 1);

    ExportsText t = ParseExports(lt::Fixture("exports/etc-exports.txt"));
    REQUIRE(t.lines.size() == 3);
    CHECK(t.lines[0].path == "/srv/scratch");  // continued over two lines
    CHECK(t.lines[0].line == 11);
    CHECK(t.lines[0].clients ==
          std::vector<std::pair<std::string, std::string>>{{"10.0.1.0/24", "rw,sync,no_subtree_check"}, {"login", "ro"}});
    CHECK(t.lines[1].path == "/srv/with space");
    CHECK(t.lines[2].path == "/mnt/HDD/home");
    CHECK(t.lines[2].line == 14);
    CHECK(t.skipped == 1);  // relative/path

    // What labfleet writes reads back the same.
    std::vector<ExportLine> mine = {{"/a", {{"10.0.0.1", "rw,no_subtree_check"}, {"h", "ro"}}, 0}};
    ExportsText back = ParseExports(RenderExports(mine));
    REQUIRE(back.lines.size() == 1);
    CHECK(back.lines[0].clients == mine[0].clients);
    CHECK(back.skipped == 0);
  }

  TEST_CASE("validate: exports(5) syntax of every value, clients resolved, file:line:col") {
    Findings f;
    lt::Load(Lab("    exports:\n"
                 "      - { path: \"/srv/a b\", clients: [gpu] }\n"
                 "      - { path: srv/rel, clients: [gpu] }\n"
                 "      - { path: /srv/c, clients: [\"gpu(rw)\", gpuu, \"10.0.0.0/33\", \"*\"] }\n"
                 "      - { path: /srv/d, clients: [asahi], options: [rw, ro, no_root_squah, anonuid=x, \"sec=krb5p:sys\", \"rw #x\"] }\n"
                 "      - { path: \"/srv/e#x\", clients: [login] }\n"
                 "      - { path: /srv/f, clients: [] }\n"
                 "      - { path: /srv/g, clients: [gpu, asahi] }\n"),
             &f);
    std::string all = lt::All(f);
    INFO(all);
    CHECK(all.find("test.yaml:12:17: export-path: export path '/srv/a b' may hold only letters") != std::string::npos);
    CHECK(all.find("test.yaml:13:17: path-not-absolute") != std::string::npos);
    CHECK(all.find("export client 'gpu(rw)' is neither an inventory node or group") != std::string::npos);
    CHECK(all.find("export-client-unknown: export client 'gpuu' is no inventory node or group; it is written as a "
                   "host name for the server to resolve; did you mean 'gpu'?") != std::string::npos);
    CHECK(all.find("export client '10.0.0.0/33' is not a CIDR network") != std::string::npos);
    CHECK(all.find("export-everyone: export client \"*\" lets every host") != std::string::npos);
    CHECK(all.find("export-option: export option 'no_root_squah' is not an exports(5) option; did you mean "
                   "'no_root_squash'?") != std::string::npos);
    CHECK(all.find("export option 'anonuid=x' needs a number") != std::string::npos);
    CHECK(all.find("blank: export option 'rw #x'") != std::string::npos);
    CHECK(all.find("export options give both rw and ro") != std::string::npos);
    CHECK(all.find("sec=krb5p:sys") == std::string::npos);
    CHECK(all.find("export path '/srv/e#x' may hold only") != std::string::npos);
    CHECK(all.find("export-clients: clients must be a non-empty list") != std::string::npos);
    CHECK(all.find("export-client-twice: export client 'asahi' gives 10.0.1.71, which this export already lists "
                   "(from group gpu)") != std::string::npos);
  }

  TEST_CASE("validate: clients' NFS mounts and automounts against the server's exports (path, client, ro/rw)") {
    Findings ok;
    lt::Load(Lab(kNasExports,
                 "    mounts:\n"
                 "      - { source: \"nas:/mnt/SSD/public\", target: /media/public, options: [ro] }\n"
                 "    automounts:\n"
                 "      - { mount: /home, map: { \"*\": \"nas:/mnt/HDD/home/&\" } }\n",
                 "    mounts:\n      - { source: \"10.0.1.70:/mnt/HDD/home\", target: /home }\n"),
             &ok);
    CHECK(lt::All(ok) == "");

    Findings f;
    lt::Load(Lab(kNasExports,
                 "    mounts:\n"
                 "      - { source: \"nas:/mnt/SSD/public\", target: /media/public }\n"
                 "      - { source: \"nas:/mnt/SSD/other\", target: /media/other, options: [ro] }\n"
                 "      - { source: \"elsewhere:/x\", target: /media/x }\n"
                 "    automounts:\n"
                 "      - { mount: /home, map: { \"*\": \"nas:/mnt/HDD/home/&\" }, options: [ro] }\n",
                 "    mounts:\n      - { source: \"nas:/mnt/SSD/public\", target: /media/public, options: [ro] }\n"),
             &f);
    std::string all = lt::All(f);
    INFO(all);
    CHECK(all.find("test.yaml:5:19: export-mode-mismatch: mount /media/public on nodes 'asahi', 'bernini' "
                   "(nas:/mnt/SSD/public) is read-write, but export /mnt/SSD/public on 'nas'") != std::string::npos);
    CHECK(all.find("export-missing: mount /media/other on node 'asahi' (nas:/mnt/SSD/other) names no export of node "
                   "'nas'; it exports /mnt/HDD/home, /mnt/SSD/public") != std::string::npos);
    CHECK(all.find("test.yaml:9:37: export-mode-mismatch: automount /home key * on nodes 'asahi', 'bernini' (nas:/mnt/HDD/home/x) is "
                   "read-only, but export /mnt/HDD/home on 'nas'") != std::string::npos);
    CHECK(all.find("export-client-missing: mount /media/public on node 'login' (nas:/mnt/SSD/public): export "
                   "/mnt/SSD/public on 'nas'") != std::string::npos);
    CHECK(all.find("elsewhere") == std::string::npos);  // not an inventory node: not checked
    int warnings = 0;
    for (const auto& x : f.items()) warnings += x.severity == Severity::Warning;
    CHECK(warnings == 1);  // the read-only automount of a read-write export

    // A server whose exports labfleet does not manage is not checked.
    Findings none;
    lt::Load(Lab("", "    mounts:\n      - { source: \"nas:/anything\", target: /x }\n"), &none);
    CHECK(lt::All(none) == "");
  }

  TEST_CASE("plan: the exact file, exportfs -ra only on a change, warnings; converged re-plan is empty") {
    Inventory inv = lt::Load(Lab(kNasExports));
    // node 0 is nas.
    ProbeResults r;
    r["file:/etc/exports.d/labfleet.exports"] = {0, "absent\n"};
    r["file:/etc/exports"] = {0, lt::FileOut(lt::Fixture("exports/etc-exports.txt"))};
    r["exports:state"] = {0, lt::Fixture("exports/state-probe-no-exportfs.txt")};
    auto run = lt::RunModule(inv, "exports", r);
    INFO(run.all_notes());
    CHECK(run.errors.empty());
    REQUIRE(run.changes.size() == 2);
    const std::string want =
        "# Managed by labfleet (exports:); changes here are overwritten by the next apply.\n"
        "# The admin's own exports stay in /etc/exports.\n"
        "/mnt/HDD/home 10.0.1.71(rw,sync,no_subtree_check) 10.0.1.72(rw,sync,no_subtree_check) "
        "10.0.1.60(rw,sync,no_subtree_check)\n"
        "/mnt/SSD/public 10.0.1.71(ro,no_subtree_check) 10.0.1.72(ro,no_subtree_check) 10.0.2.0/24(ro,no_subtree_check)\n";
    CHECK(run.changes[0].file.path == "/etc/exports.d/labfleet.exports");
    CHECK(run.changes[0].file.bytes == want);
    CHECK(run.changes[0].file.mode == 0644);
    CHECK(run.lines() == std::vector<std::string>{"+ NFS exports in /etc/exports.d/labfleet.exports (2 exports)",
                                                  "~ exportfs -ra"});
    CHECK(run.changes[1].kind == Change::Kind::Notify);
    CHECK(run.changes[1].command.find("exportfs -ra; else echo 'note: exportfs is not installed") != std::string::npos);
    std::string warnings;
    for (const auto& w : run.warnings) warnings += w + "\n";
    CHECK(warnings.find("exportfs is not installed on this node") != std::string::npos);
    CHECK(warnings.find("export path /mnt/HDD/home does not exist on this node") != std::string::npos);
    CHECK(warnings.find("export path /mnt/HDD/home is also exported by line 14 of /etc/exports") != std::string::npos);

    // Converged: same file, exportfs present, directories there: no change, no handler, no warning.
    r["file:/etc/exports.d/labfleet.exports"] = {0, lt::FileOut(want)};
    r["file:/etc/exports"] = {0, lt::FileOut("")};
    r["exports:state"] = {0, "exportfs /usr/sbin/exportfs\n0 dir\n1 dir\n"};
    auto again = lt::RunModule(inv, "exports", r);
    CHECK(again.changes.empty());
    CHECK(again.warnings.empty());
    CHECK(again.errors.empty());

    // Only the mode differs: fixed, and no reload (the content exportfs reads is the same).
    r["file:/etc/exports.d/labfleet.exports"] = {0, "present 600 root root regular file\n" + want};
    auto meta = lt::RunModule(inv, "exports", r);
    REQUIRE(meta.changes.size() == 1);
    CHECK(meta.changes[0].kind != Change::Kind::Notify);
  }
}
