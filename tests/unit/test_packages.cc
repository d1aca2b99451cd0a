// packages: the parsers on raw captured output (tests/fixtures/packages), the probes through a real shell on
// this (Debian) machine, the module's diffs from typed probe results, and its offline validation.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "engine/local_transport.h"
#include "engine/module.h"
#include "modules/facts/package_facts.h"
#include "engine/planner.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

TEST_SUITE("packages") {
  TEST_CASE("dpkg-query output, captured on a Debian node, garbage skipped") {
    DpkgStatus d = ParseDpkgQuery(Fixture("packages/dpkg_query.txt"));
    CHECK(d.skipped == 2);  // the source comment and dpkg-query's stderr line
    CHECK(d.by_name.size() == 7);
    CHECK(d.by_name["bash"].installed());
    CHECK(d.by_name["bash"].version == "5.2.15-2+b8");
    CHECK_FALSE(d.by_name["bash"].held());
    CHECK(d.by_name["lf-hello"].installed());
    CHECK(d.by_name["lf-hello"].held());
    CHECK_FALSE(d.by_name["lf-extra"].installed());  // held but never installed
    CHECK(d.by_name["lf-extra"].held());
    CHECK(d.by_name["lf-extra"].version.empty());
    CHECK_FALSE(d.by_name["lf-conf"].installed());  // removed, config files left
    CHECK(d.by_name["lf-conf"].status == "config-files");
    CHECK_FALSE(d.by_name["libssl-doc"].installed());
    CHECK(d.by_name["libssl-doc"].want == "unknown");
  }

  TEST_CASE("dpkg-query: several architectures of one package, an installed one wins") {
    DpkgStatus d = ParseDpkgQuery("libc6\tinstall ok installed\t2.36-9\nlibc6:i386\tunknown ok not-installed\t\n");
    CHECK(d.by_name.size() == 1);
    CHECK(d.by_name["libc6"].installed());
    DpkgStatus e = ParseDpkgQuery("x\tdeinstall ok config-files\t1\nx\tinstall ok half-configured\t1\n");
    CHECK_FALSE(e.by_name["x"].installed());  // half-configured is broken, not installed
    CHECK(e.skipped == 0);
  }

  TEST_CASE("apt-mark showhold, captured, garbage skipped") {
    NameSet h = ParseAptMarkShowhold(Fixture("packages/apt_mark_showhold.txt"));
    CHECK(h.skipped == 2);
    CHECK(h.names == std::set<std::string>{"lf-extra", "lf-hello"});
    CHECK(ParseAptMarkShowhold("libfoo:i386\n").names == std::set<std::string>{"libfoo"});
    // The same parser behind the shared facts that packages and nvidia read.
    ProbeResults r;
    r[kAptHolds.name] = {0, Fixture("packages/apt_mark_showhold.txt")};
    r[kPackageManager.name] = {0, "garbage\n"};
    CHECK(r.fact(kAptHolds).names == h.names);
    CHECK(r.fact(kPackageManager) == "none");
    r[kPackageManager.name] = {0, "pacman\n"};
    CHECK(PackageManagerOf(r) == "pacman");
  }

  TEST_CASE("pacman -Q sample, garbage skipped") {
    PacmanQ q = ParsePacmanQ(Fixture("packages/pacman_q.txt"));
    CHECK(q.skipped == 2);
    CHECK(q.version.size() == 5);
    CHECK(q.version["nvidia-utils"] == "550.90.07-4");
    CHECK(q.version["linux"] == "6.9.7.arch1-1");
    CHECK(UpstreamVersion(q.version["nvidia"]) == "550.90.07");
  }

  TEST_CASE("pacman.conf IgnorePkg: effective ones in [options], labfleet's own by tag") {
    std::string conf = Fixture("packages/pacman_conf.txt");
    PacmanIgnore p = ParsePacmanConfIgnore(conf, "packages");
    CHECK(p.managed == std::set<std::string>{"htop"});
    CHECK(p.effective == std::set<std::string>{"nvidia", "nvidia-utils", "htop", "linux", "linux-headers"});
    CHECK(ParsePacmanConfIgnore(conf, "nvidia").managed == std::set<std::string>{"nvidia", "nvidia-utils"});
  }

  TEST_CASE("pacman IgnorePkg edit, run with real sed on a copy of the fixture") {
    char tmpl[] = "/tmp/labfleet-pacman-XXXXXX";
    int fd = mkstemp(tmpl);
    REQUIRE(fd >= 0);
    close(fd);
    std::string conf = Fixture("packages/pacman_conf.txt");
    { std::ofstream(tmpl) << conf; }
    std::string cmd = PacmanIgnoreCommand("packages", {"htop", "tmux"});
    // Point the command at the copy (the path is fixed text in the command).
    for (size_t p; (p = cmd.find("/etc/pacman.conf")) != std::string::npos;) cmd.replace(p, 16, tmpl);
    LocalTransport local;
    REQUIRE(local.run(cmd).ok());
    std::ifstream f(tmpl);
    std::stringstream ss;
    ss << f.rdbuf();
    PacmanIgnore p = ParsePacmanConfIgnore(ss.str(), "packages");
    CHECK(p.managed == std::set<std::string>{"htop", "tmux"});
    CHECK(ParsePacmanConfIgnore(ss.str(), "nvidia").managed == std::set<std::string>{"nvidia", "nvidia-utils"});
    CHECK(ss.str().find("IgnorePkg   = linux linux-headers") != std::string::npos);  // the admin's line is kept
    CHECK(ss.str().find("[options]\nIgnorePkg = htop tmux # labfleet-packages\n") != std::string::npos);
    unlink(tmpl);
  }

  TEST_CASE("names and versions") {
    CHECK(IsPackageName("libstdc++6"));
    CHECK(IsPackageName("nvidia-utils-535-server"));
    CHECK_FALSE(IsPackageName("Foo"));
    CHECK_FALSE(IsPackageName("-rf"));
    CHECK_FALSE(IsPackageName("a b"));
    CHECK_FALSE(IsPackageName("x;rm"));
    CHECK(UpstreamVersion("1:535.183.01-0ubuntu0.22.04.1") == "535.183.01");
    CHECK(UpstreamVersion("550.90.07-4") == "550.90.07");
    CHECK(UpstreamVersion("5.2") == "5.2");
  }

  TEST_CASE("the probes, through a real shell on this Debian machine") {
    LocalTransport local;
    std::vector<Probe> probes = {PackageManagerProbe(), DpkgQueryProbe({"bash", "labfleet-no-such-package"}),
                                 AptMarkShowholdProbe()};
    std::string nonce = NewNonce();
    RunResult r = local.run(ScriptRunner(), BuildProbeScript(probes, nonce));
    REQUIRE(r.ok());
    ProbeResults res = ParseProbeOutput(r.out, probes, nonce);
    CHECK(PackageManagerOf(res) == "apt");
    const ProbeOutput& q = res[probes[1].key];
    CHECK(q.exit_code == 0);  // an unknown name is an answer, not a failure
    DpkgStatus d = ParseDpkgQuery(q.out);
    CHECK(d.by_name["bash"].installed());
    CHECK(d.by_name.count("labfleet-no-such-package") == 0);
    CHECK(d.skipped == 0);
  }

  TEST_CASE("apt diff: one install for all missing, one removal, one hold, one unhold") {
    Inventory inv = Load(Inv("packages: { bash: installed, lf-hello: installed, lf-extra: held, lf-conf: installed, "
                             "libssl3: held, libssl-dev: absent, htop: installed }"));
    ProbeResults res;
    ModuleRun first = RunModule(inv, "packages", res);
    res["pkg-manager"] = {0, "apt\n"};
    res[KeyWithPrefix(first, "dpkg-query:")] = {0, Fixture("packages/dpkg_query.txt")};
    res["apt-mark-showhold"] = {0, Fixture("packages/apt_mark_showhold.txt")};
    ModuleRun run = RunModule(inv, "packages", res);
    CHECK(run.errors.empty());
    auto lines = run.lines();
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == "+ packages: install lf-extra, lf-conf, htop (held: lf-extra)");
    CHECK(lines[1] == "- packages: remove libssl-dev");
    CHECK(lines[2] == "~ packages: hold libssl3");
    CHECK(lines[3] == "~ packages: unhold lf-hello");
    const std::string& install = run.changes[0].command;
    CAPTURE(install);
    // lf-extra is held though not installed: apt would refuse it, so it is unheld first and held after.
    CHECK(install.find("apt-mark unhold -- lf-extra\n") == 0);
    CHECK(install.find("env 'DEBIAN_FRONTEND=noninteractive' apt-get install -y -q") != std::string::npos);
    CHECK(install.find("--no-install-recommends -- lf-extra lf-conf htop || {") != std::string::npos);
    CHECK(install.find("apt-get update") != std::string::npos);  // stale lists: update and retry once
    CHECK(install.find("}\napt-mark hold -- lf-extra") != std::string::npos);
    CHECK(run.changes[1].command.find("apt-get remove") != std::string::npos);
    CHECK(run.changes[2].command == "apt-mark hold -- libssl3");
    CHECK(run.changes[3].command == "apt-mark unhold -- lf-hello");
    for (const auto& c : run.changes) CHECK_FALSE(c.disruptive);
  }

  TEST_CASE("apt diff: converged is a noop that says so; a list means installed") {
    Inventory inv = Load(Inv("packages: [bash, libssl3]"));
    ProbeResults res;
    ModuleRun first = RunModule(inv, "packages", res);
    res["pkg-manager"] = {0, "apt\n"};
    res[KeyWithPrefix(first, "dpkg-query:")] = {0, Fixture("packages/dpkg_query.txt")};
    res["apt-mark-showhold"] = {0, ""};
    ModuleRun run = RunModule(inv, "packages", res);
    CHECK(run.changes.empty());
    REQUIRE(run.notes.size() == 1);
    CHECK(run.notes[0] == "packages: nothing to do because all 2 packages match (2 installed, 0 held, 0 absent)");
  }

  TEST_CASE("apt diff: dpkg-query failing is a conflict; no package manager is one too") {
    Inventory inv = Load(Inv("packages: [bash]"));
    ProbeResults res;
    res["pkg-manager"] = {0, "none\n"};
    ModuleRun run = RunModule(inv, "packages", res);
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("no supported package manager") != std::string::npos);
    res["pkg-manager"] = {0, "apt\n"};
    res[KeyWithPrefix(run, "dpkg-query:")] = {2, ""};
    run = RunModule(inv, "packages", res);
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("dpkg-query failed") != std::string::npos);
  }

  TEST_CASE("pacman diff: install, remove and labfleet's own IgnorePkg line") {
    Inventory inv = Load(Inv("packages: { htop: installed, tmux: held, linux: absent }"));
    ProbeResults res;
    ModuleRun first = RunModule(inv, "packages", res);
    res["pkg-manager"] = {0, "pacman\n"};
    res[KeyWithPrefix(first, "pacman-q:")] = {0, Fixture("packages/pacman_q.txt")};
    res["file:/etc/pacman.conf"] = {0, FileOut(Fixture("packages/pacman_conf.txt"))};
    ModuleRun run = RunModule(inv, "packages", res);
    CHECK(run.errors.empty());
    auto lines = run.lines();
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "+ packages: install tmux");
    CHECK(run.changes[0].command == "pacman -S --noconfirm --needed -- tmux");
    CHECK(lines[1] == "- packages: remove linux");
    CHECK(lines[2] == "~ packages: IgnorePkg in /etc/pacman.conf = tmux");
    CHECK(run.changes[2].command.find("IgnorePkg = tmux # labfleet-packages") != std::string::npos);
  }

  TEST_CASE("mirrors: apt sources from os-release, pip.conf, apt-get update once") {
    Inventory inv = Load(Inv("package_mirror: { apt: http://mirror.lab/ubuntu, pip: http://mirror.lab:3141/root/pypi/+simple/ }"));
    ProbeResults res;
    res["pkg-manager"] = {0, "apt\n"};
    res["file:/etc/os-release"] = {0, FileOut(Fixture("facts/os-release-ubuntu2204.txt"))};
    res["file:/etc/apt/sources.list.d/labfleet-mirror.list"] = {0, "absent\n"};
    res["file:/etc/pip.conf"] = {0, "absent\n"};
    ModuleRun run = RunModule(inv, "packages", res);
    CHECK(run.errors.empty());
    REQUIRE(run.changes.size() == 3);
    CHECK(run.changes[0].kind == Change::Kind::PutFile);
    CHECK(run.changes[0].file.bytes ==
          "# Managed by labfleet (package_mirror.apt); edits here are overwritten.\n"
          "deb http://mirror.lab/ubuntu jammy main restricted universe multiverse\n"
          "deb http://mirror.lab/ubuntu jammy-updates main restricted universe multiverse\n"
          "deb http://mirror.lab/ubuntu jammy-security main restricted universe multiverse\n");
    CHECK(run.changes[1].kind == Change::Kind::Notify);
    CHECK(run.changes[1].handler == "apt-get update");
    CHECK(run.changes[2].file.path == "/etc/pip.conf");
    CHECK(run.changes[2].file.bytes ==
          "# Managed by labfleet (package_mirror.pip); edits here are overwritten.\n[global]\n"
          "index-url = http://mirror.lab:3141/root/pypi/+simple/\ntrusted-host = mirror.lab\n");
    // Converged: no change, no handler.
    res["file:/etc/apt/sources.list.d/labfleet-mirror.list"] = {0, FileOut(run.changes[0].file.bytes)};
    res["file:/etc/pip.conf"] = {0, FileOut(run.changes[2].file.bytes)};
    CHECK(RunModule(inv, "packages", res).changes.empty());
  }

  TEST_CASE("mirrors: a flat local repository with explicit suites; pacman nodes ignore the apt mirror") {
    Inventory inv = Load(Inv("package_mirror: { apt: { url: \"file:/srv/repo\", suites: [./], trusted: true } }"));
    ProbeResults res;
    res["pkg-manager"] = {0, "apt\n"};
    res["file:/etc/os-release"] = {0, "absent\n"};
    ModuleRun run = RunModule(inv, "packages", res);
    REQUIRE(run.changes.size() == 2);
    CHECK(run.changes[0].file.bytes ==
          "# Managed by labfleet (package_mirror.apt); edits here are overwritten.\n"
          "deb [trusted=yes] file:/srv/repo ./\n");
    res["pkg-manager"] = {0, "pacman\n"};
    run = RunModule(inv, "packages", res);
    CHECK(run.changes.empty());
    REQUIRE(run.notes.size() == 1);
    CHECK(run.notes[0].find("does not use apt") != std::string::npos);
  }

  TEST_CASE("validation: states, names, duplicates, mirrors, and packages the nvidia settings own") {
    Findings f;
    Load(Inv("packages: { htop: hled, Bad_Name: installed, tmux: [x] }\n"
             "package_mirror: { aptt: http://x, pip: ftp://x }"),
         &f);
    std::string all = All(f);
    CAPTURE(all);
    CHECK(all.find("the state of package htop must be installed, latest, absent or held, got 'hled'; did you mean 'held'?") !=
          std::string::npos);
    CHECK(all.find("'Bad_Name' is not a package name") != std::string::npos);
    CHECK(all.find("the state of package tmux must be installed, latest, absent or held, got a list") != std::string::npos);
    CHECK(all.find("unknown key 'aptt' in package_mirror; did you mean 'apt'?") != std::string::npos);
    CHECK(all.find("package_mirror.pip must be an http:// or https:// URL") != std::string::npos);
    CHECK(all.find("inventory/test.yaml:5:") != std::string::npos);  // findings carry locations

    Findings g;
    Load(Inv("packages: [htop, htop, \"x; rm -rf /\"]"), &g);
    all = All(g);
    CHECK(all.find("package htop is listed twice") != std::string::npos);
    CHECK(all.find("'x; rm -rf /' is not a package name") != std::string::npos);

    Findings h;
    Load(Inv("nvidia: { branch: \"535\" }\npackages: [nvidia-utils-535-server, htop]"), &h);
    all = All(h);
    CHECK(all.find("package nvidia-utils-535-server is managed by the nvidia settings of node n1") != std::string::npos);
    CHECK(all.find("htop") == std::string::npos);
  }
}
