// timers on a sandbox node: the node runs no systemd (no PID 1 manager), so systemctl is the recording double
// (tests/doubles/systemctl); the unit files are real and are checked inside the node with systemd-analyze
// verify, which runs without a manager (labfleet's precheck runs it before install; the test runs it again on
// the installed files as the independent check). Asserted: the exact systemctl calls and their order (one
// daemon-reload per apply, before enable --now), empty re-plans, a unit the verifier refuses is not installed,
// and state: absent disables and removes.
#include <doctest/doctest.h>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

std::string Actions(const Sandbox& sbx) {
  std::string out;
  for (const auto& l : DoubleActions(sbx, "node1")) out += l + "\n";
  return out;
}

std::string Timers(const std::string& du_calendar, const std::string& backup_state) {
  return "    timers:\n"
         "      - { name: du-index, on_calendar: \"" + du_calendar + "\", command: [du, -s, /home] }\n"
         "      - name: backup\n"
         "        state: " + backup_state + "\n"
         "        on_calendar: \"Mon..Fri *-*-* 02:30\"\n"
         "        command: [/bin/tar, czf, \"/var/backups/etc-%Y.tgz\", \"/etc/a dir\"]\n"
         "        description: nightly backup of /etc\n";
}

}  // namespace

TEST_SUITE("integration-timers") {
  TEST_CASE("timers: installed, verified, one daemon-reload before enable --now; re-plan empty; refused; removed") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl"});
    TempInventory inv(sbx);
    inv.defaults(Timers("daily", "present"));

    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply.out << apply.err);
    REQUIRE(apply.rc == 0);
    CHECK(Summaries(apply) ==
          "timer service /etc/systemd/system/labfleet-du-index.service | timer /etc/systemd/system/labfleet-du-index.timer | "
          "systemctl daemon-reload | enable --now labfleet-du-index.timer (after daemon-reload) | "
          "timer service /etc/systemd/system/labfleet-backup.service | timer /etc/systemd/system/labfleet-backup.timer | "
          "enable --now labfleet-backup.timer (after daemon-reload)");
    // Exactly one reload, before the enables.
    CHECK(Actions(sbx) ==
          "systemctl daemon-reload\nsystemctl enable --now labfleet-du-index.timer\n"
          "systemctl enable --now labfleet-backup.timer\n");
    // Independent checks: systemd's own verifier on the installed files, the files' text, the double's state.
    auto verify = sbx.exec("node1", "cd /etc/systemd/system && systemd-analyze verify --man=no labfleet-du-index.timer "
                                    "labfleet-du-index.service labfleet-backup.timer labfleet-backup.service");
    INFO(verify.out << verify.err);
    CHECK(verify.exit_code == 0);
    CHECK(Exec(sbx, "grep ^ExecStart= /etc/systemd/system/labfleet-backup.service") ==
          "ExecStart=/bin/tar czf /var/backups/etc-%%Y.tgz \"/etc/a dir\"\n");
    CHECK(Exec(sbx, "grep -h ^OnCalendar= /etc/systemd/system/labfleet-du-index.timer /etc/systemd/system/labfleet-backup.timer") ==
          "OnCalendar=daily\nOnCalendar=Mon..Fri *-*-* 02:30\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/systemd/system/labfleet-backup.timer") == "644 root root\n");
    CHECK(UnitState(sbx, "node1", "labfleet-du-index.timer").find("file=enabled") != std::string::npos);
    CHECK(UnitState(sbx, "node1", "labfleet-backup.timer").find("active=active") != std::string::npos);

    ClearDoubleCalls(sbx, "node1");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
    CHECK(Actions(sbx).empty());

    // A changed calendar: the timer file, one reload, no enable (already enabled and active).
    ClearDoubleCalls(sbx, "node1");
    inv.defaults(Timers("hourly", "present"));
    auto apply2 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply2.out << apply2.err);
    REQUIRE(apply2.rc == 0);
    CHECK(Summaries(apply2) == "timer /etc/systemd/system/labfleet-du-index.timer | systemctl daemon-reload");
    CHECK(Actions(sbx) == "systemctl daemon-reload\n");
    CHECK(Exec(sbx, "grep ^OnCalendar= /etc/systemd/system/labfleet-du-index.timer") == "OnCalendar=hourly\n");

    // state: absent: disabled and stopped, files removed, reloaded; then nothing to do.
    ClearDoubleCalls(sbx, "node1");
    inv.defaults(Timers("hourly", "absent"));
    auto apply3 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(apply3.out << apply3.err);
    REQUIRE(apply3.rc == 0);
    CHECK(Actions(sbx) == "systemctl disable --now labfleet-backup.timer\nsystemctl daemon-reload\n");
    CHECK(sbx.exec("node1", "test -e /etc/systemd/system/labfleet-backup.timer").exit_code != 0);
    CHECK(sbx.exec("node1", "test -e /etc/systemd/system/labfleet-backup.service").exit_code != 0);
    CHECK(Exec(sbx, "test -e /etc/systemd/system/labfleet-du-index.timer && echo kept") == "kept\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // A unit the node's verifier refuses (a program that does not exist there): the apply fails with the
    // verifier's message and nothing of that timer is installed.
    ClearDoubleCalls(sbx, "node1");
    inv.defaults(Timers("hourly", "absent") + "      - { name: broken, on_calendar: daily, command: [/opt/none/run] }\n");
    auto bad = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(bad.out << bad.err);
    CHECK(bad.rc != 0);
    CHECK((bad.out + bad.err).find("labfleet-broken.service: Command /opt/none/run is not executable") != std::string::npos);
    CHECK((bad.out + bad.err).find("/tmp/tmp.") == std::string::npos);  // the temporary copy's directory left out
    CHECK((bad.out + bad.err).find("was not put in place") != std::string::npos);
    CHECK(sbx.exec("node1", "test -e /etc/systemd/system/labfleet-broken.service").exit_code != 0);
    CHECK(sbx.exec("node1", "test -e /etc/systemd/system/labfleet-broken.timer").exit_code != 0);
    CHECK(Actions(sbx).empty());
  }
}
