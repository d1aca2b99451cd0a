// timers and the unit-file helpers they share with services: systemd's ExecStart= quoting, unit-file value
// checks, the offline OnCalendar pattern, the module's diffs on the captured-format `systemctl show` fixture (one
// garbage line), its validation with file:line:col, and the node-side verify precheck run through a real /bin/sh
// with this machine's systemd-analyze.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "engine/module.h"
#include "engine/shell.h"
#include "modules/facts/systemd_facts.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace labfleet {
std::string TimerServiceText(const std::string& name, const std::vector<std::string>& command, const std::string& user,
                             const std::string& description);
std::string TimerTimerText(const std::string& name, const std::string& on_calendar, const std::string& description);
}  // namespace labfleet

namespace {

const char* kTimers = R"(timers:
  - { name: duc-index, on_calendar: daily, command: [duc, index, /home] }
  - name: backup
    on_calendar: "Mon..Fri *-*-* 02:30"
    command: [/usr/local/sbin/backup, --to, "nas:/b/%H", "$HOME dir"]
    description: nightly backup
  - { name: old, state: absent })";

struct ShellRun {
  int rc;
  std::string out;
};
// `script` run by /bin/sh with stdout and stderr together.
ShellRun Sh(const std::string& script) {
  std::string cmd = "/bin/sh -c " + ShellQuote(script) + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace

TEST_SUITE("timers") {
  TEST_CASE("ExecStart= quoting: plain words stay, others are double-quoted with \\\\ and \\\" escaped; % and $ doubled") {
    CHECK(SystemdQuoteWord("duc") == "duc");
    CHECK(SystemdQuoteWord("/home") == "/home");
    CHECK(SystemdQuoteWord("--to=nas:/b,c+d@e") == "--to=nas:/b,c+d@e");
    CHECK(SystemdQuoteWord("a b") == "\"a b\"");
    CHECK(SystemdQuoteWord("50%") == "50%%");
    CHECK(SystemdQuoteWord("$HOME") == "$$HOME");
    CHECK(SystemdQuoteWord("${X}%n") == "\"$${X}%%n\"");
    CHECK(SystemdQuoteWord("say \"hi\"") == "\"say \\\"hi\\\"\"");
    CHECK(SystemdQuoteWord("C:\\x") == "\"C:\\\\x\"");
    CHECK(SystemdQuoteWord("x\\") == "\"x\\\\\"");  // never a trailing backslash on the line
    CHECK(SystemdQuoteWord(";") == "\";\"");          // a quoted ; is an argument, not a separator
    CHECK(SystemdQuoteWord("") == "\"\"");
    CHECK(SystemdQuoteWord("it's") == "\"it's\"");
    CHECK(SystemdQuoteWord("*.log") == "\"*.log\"");
    CHECK(ExecStartValue({"duc", "index", "/home"}) == "duc index /home");
    CHECK(ExecStartValue({"/bin/sh", "-c", "tar czf /b/$(date +%F).tgz /etc"}) ==
          "/bin/sh -c \"tar czf /b/$$(date +%%F).tgz /etc\"");
  }

  TEST_CASE("argv, unit-file values and specifiers") {
    CHECK(ArgvProblem({"duc", "index", "/home"}).empty());
    CHECK(ArgvProblem({"/usr/bin/duc"}).empty());
    CHECK(ArgvProblem({"rsync", "a\tb"}).find("control character") != std::string::npos);
    CHECK(ArgvProblem({"rsync", "a\nb"}).find("word 2") != std::string::npos);
    CHECK(ArgvProblem({}).find("empty") != std::string::npos);
    CHECK(!ArgvProblem({"-rm"}).empty());   // systemd's "ignore failure" prefix
    CHECK(!ArgvProblem({"@duc"}).empty());  // argv[0] override prefix
    CHECK(!ArgvProblem({"+duc"}).empty());
    CHECK(!ArgvProblem({"bin/duc"}).empty());  // relative path
    CHECK(!ArgvProblem({"/usr/bin/../sbin/x"}).empty());
    CHECK(!ArgvProblem({"du c"}).empty());
    CHECK(!ArgvProblem({"$X"}).empty());
    CHECK(UnitValueProblem("nightly backup").empty());
    CHECK(UnitValueProblem("a\nExecStart=/bin/evil").find("control character") != std::string::npos);
    CHECK(UnitValueProblem("continued \\").find("backslash") != std::string::npos);
    CHECK(UnitValueProblem(" padded").find("blank") != std::string::npos);
    CHECK(EscapeSpecifiers("100% of %H") == "100%% of %%H");
  }

  TEST_CASE("OnCalendar: shorthands and the strict pattern") {
    for (const char* ok : {"daily", "hourly", "weekly", "monthly", "minutely", "yearly", "annually", "quarterly",
                           "semiannually", "Mon..Fri *-*-* 02:30", "*:0/15", "Sat,Sun 03:00", "2026-12-24 18:00:00",
                           "*-*-01 04:00 UTC", "Mon 9:00", "12-24", "*-*-* 00/2:00", "monday,Wednesday 1,13:30",
                           "*-1..6-1 0:0"}) {
      CAPTURE(ok);
      CHECK(CalendarProblem(ok).empty());
    }
    for (const char* bad : {"dayly", "25:00", "*-13-01", "daily\n", "Mon..Fri *-*-* 02:30 extra", "", "daily\\",
                            " daily", "%H:00", "Mon..Fry 02:00", "*:0/0", "1:60", "*-*-32 00:00", "UTC", "6..2:00",
                            "02:30 Mon", "Daily" /* systemd takes it; the pattern is stricter */}) {
      CAPTURE(bad);
      CHECK(!CalendarProblem(bad).empty());
    }
    CHECK(CalendarProblem("dayly").find("Mon..Fri") != std::string::npos);  // the message says what to write
  }

  TEST_CASE("unit texts: oneshot service with quoted ExecStart, timer with OnCalendar and WantedBy") {
    CHECK(TimerServiceText("backup", {"/usr/local/sbin/backup", "--to", "nas:/b/%H"}, "root", "50% backup") ==
          "# Managed by labfleet (timers: backup); changes here are overwritten\n[Unit]\nDescription=50%% backup\n\n"
          "[Service]\nType=oneshot\nUser=root\nExecStart=/usr/local/sbin/backup --to nas:/b/%%H\n");
    CHECK(TimerTimerText("duc-index", "daily", "") ==
          "# Managed by labfleet (timers: duc-index); changes here are overwritten\n[Unit]\nDescription=labfleet timer "
          "duc-index\n\n[Timer]\nOnCalendar=daily\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n");
  }

  TEST_CASE("diffs: new timers are written, verified, reloaded once and enabled after it; absent ones removed") {
    Inventory inv = Load(Inv(kTimers));
    ProbeResults res;
    std::string key = KeyWithPrefix(RunModule(inv, "timers", res), "systemctl-show:");
    CHECK(key ==
          "systemctl-show:labfleet-duc-index.timer labfleet-backup.timer labfleet-old.timer");
    res[key] = {0, Fixture("systemd/systemctl_show_timers.txt")};
    std::string old_svc = TimerServiceText("old", {"true"}, "root", "");
    std::string old_tmr = TimerTimerText("old", "daily", "");
    res["file:/etc/systemd/system/labfleet-old.service"] = {0, FileOut(old_svc)};
    res["file:/etc/systemd/system/labfleet-old.timer"] = {0, FileOut(old_tmr)};
    ModuleRun run = RunModule(inv, "timers", res);
    CHECK(run.errors.empty());
    auto lines = run.lines();
    for (auto& l : lines) CAPTURE(l);
    REQUIRE(run.changes.size() == 10);
    // duc-index: both files (each verified on the node beside the other's new text), reload, enable after it.
    CHECK(lines[0] == "+ timer service /etc/systemd/system/labfleet-duc-index.service");
    CHECK(run.changes[0].kind == Change::Kind::PutFile);
    CHECK(run.changes[0].file.bytes == TimerServiceText("duc-index", {"duc", "index", "/home"}, "root", ""));
    CHECK(run.changes[0].precheck.find("systemd-analyze verify --man=no") != std::string::npos);
    CHECK(run.changes[0].precheck.find("labfleet-duc-index.timer") != std::string::npos);
    CHECK(lines[1] == "+ timer /etc/systemd/system/labfleet-duc-index.timer");
    CHECK(run.changes[2].handler == "systemd daemon-reload");
    CHECK(run.changes[3].handler == "enable --now labfleet-duc-index.timer");
    CHECK(run.changes[3].command ==
          "if [ -f /etc/systemd/system/labfleet-duc-index.timer ]; then systemctl enable --now labfleet-duc-index.timer; fi");
    // backup: the same; its ExecStart keeps % and $ literal.
    CHECK(run.changes[4].file.bytes.find("ExecStart=/usr/local/sbin/backup --to nas:/b/%%H \"$$HOME dir\"\n") !=
          std::string::npos);
    CHECK(run.changes[5].file.bytes.find("OnCalendar=Mon..Fri *-*-* 02:30\n") != std::string::npos);
    CHECK(run.changes[6].handler == "enable --now labfleet-backup.timer");  // the reload is in the plan once
    // old: disabled and stopped first, then its files removed (the reload notified above covers it).
    CHECK(run.changes[7].command == "systemctl disable --now labfleet-old.timer");
    CHECK(run.changes[8].kind == Change::Kind::Remove);
    CHECK(run.changes[8].path == "/etc/systemd/system/labfleet-old.timer");
    CHECK(run.changes[9].path == "/etc/systemd/system/labfleet-old.service");
    int reloads = 0;
    for (const auto& c : run.changes) reloads += c.handler == "systemd daemon-reload";
    CHECK(reloads == 1);

    // Converged: files equal, timers enabled and active, old gone.
    res["file:/etc/systemd/system/labfleet-duc-index.service"] = {0, run.changes[0].file.bytes};
    res["file:/etc/systemd/system/labfleet-duc-index.service"] = {0, FileOut(run.changes[0].file.bytes)};
    res["file:/etc/systemd/system/labfleet-duc-index.timer"] = {0, FileOut(run.changes[1].file.bytes)};
    res["file:/etc/systemd/system/labfleet-backup.service"] = {0, FileOut(run.changes[4].file.bytes)};
    res["file:/etc/systemd/system/labfleet-backup.timer"] = {0, FileOut(run.changes[5].file.bytes)};
    res.erase("file:/etc/systemd/system/labfleet-old.service");
    res.erase("file:/etc/systemd/system/labfleet-old.timer");
    std::string active;
    for (const char* t : {"labfleet-duc-index.timer", "labfleet-backup.timer"})
      active += std::string("Id=") + t + "\nNames=" + t +
                "\nLoadState=loaded\nActiveState=active\nSubState=waiting\nUnitFileState=enabled\n\n";
    res[key] = {0, active + "Id=labfleet-old.timer\nNames=labfleet-old.timer\nLoadState=not-found\nActiveState=inactive\n"};
    run = RunModule(inv, "timers", res);
    CHECK(run.changes.empty());
    CHECK(run.all_notes().find("labfleet-old.timer is not installed") != std::string::npos);

    // Files unchanged but the timer was disabled by hand: enabled directly, no reload.
    res[key] = {0, active.substr(0, active.find("\n\n") + 2) +
                       "Id=labfleet-backup.timer\nNames=labfleet-backup.timer\nLoadState=loaded\nActiveState=inactive\n"
                       "SubState=dead\nUnitFileState=disabled\n\nId=labfleet-old.timer\nLoadState=not-found\n"};
    run = RunModule(inv, "timers", res);
    REQUIRE(run.changes.size() == 1);
    CHECK(run.changes[0].kind == Change::Kind::Exec);
    CHECK(run.changes[0].command == "systemctl enable --now labfleet-backup.timer");
  }

  TEST_CASE("an absent timer's files without labfleet's header are left alone, with a warning") {
    Inventory inv = Load(Inv("timers: [{ name: old, state: absent }]"));
    ProbeResults res;
    res["file:/etc/systemd/system/labfleet-old.timer"] = {0, FileOut("[Timer]\nOnCalendar=daily\n")};
    ModuleRun run = RunModule(inv, "timers", res);
    CHECK(run.changes.empty());
    REQUIRE(run.warnings.size() == 1);
    CHECK(run.warnings[0].find("not written by labfleet") != std::string::npos);
    // With labfleet's header: removed, and the reload notified by this (the first changed) timer.
    res["file:/etc/systemd/system/labfleet-old.timer"] = {0, FileOut(TimerTimerText("old", "daily", ""))};
    ModuleRun gone = RunModule(inv, "timers", res);
    REQUIRE(gone.changes.size() == 2);
    CHECK(gone.changes[0].kind == Change::Kind::Remove);
    CHECK(gone.changes[1].handler == "systemd daemon-reload");
    CHECK(run.warnings[0].find("not written by labfleet") != std::string::npos);
  }

  TEST_CASE("validation: names, calendar, command, user, description, duplicates; file:line:col") {
    Findings f;
    Load(Inv(R"(timers:
  - { name: Bad Name, on_calendar: daily, command: [x] }
  - { name: a, on_calendar: dayly, command: [x] }
  - { name: b, on_calendar: daily, command: [-rm, x] }
  - { name: c, on_calendar: daily, command: [x], user: "ro ot" }
  - { name: d, on_calendar: daily, command: [x], description: "two\nlines" }
  - { name: e, on_calendar: daily }
  - { name: f, on_calendar: daily, command: [x], colour: red }
  - { name: g, on_calendar: daily, command: [x] }
  - { name: g, on_calendar: hourly, command: [y] }
  - { name: h, state: absent })"),
         &f);
    std::string all = All(f);
    CAPTURE(all);
    CHECK(all.find("test.yaml:6:17: timer-name:") != std::string::npos);
    CHECK(all.find("test.yaml:7:33: timer-calendar: on_calendar 'dayly' of timer a") != std::string::npos);
    CHECK(all.find("test.yaml:8:49: timer-command: command of timer b: the program '-rm'") != std::string::npos);
    CHECK(all.find("timer c") != std::string::npos);
    CHECK(all.find("timer-description") != std::string::npos);
    CHECK(all.find("command") != std::string::npos);
    CHECK(all.find("colour") != std::string::npos);
    CHECK(all.find("timer-duplicate: timer g is listed twice") != std::string::npos);
    CHECK(all.find("timer h") == std::string::npos);
  }

  TEST_CASE("a timers file and a files: entry for the same path is refused") {
    Findings f;
    Load(Inv(R"(timers: [{ name: a, on_calendar: daily, command: [x] }]
files: [{ path: /etc/systemd/system/labfleet-a.timer, content: "x" }])"),
         &f);
    CHECK(All(f).find("timers: a") != std::string::npos);
  }

  TEST_CASE("the verify precheck through a real /bin/sh and this machine's systemd-analyze") {
    if (Sh("command -v systemd-analyze").rc != 0) {
      MESSAGE("systemd-analyze is not installed here (.ci/install-deps installs systemd); skipped");
      return;
    }
    namespace fs = std::filesystem;
    fs::path dir = fs::temp_directory_path() / ("lf-verify-" + std::to_string(getpid()));
    fs::create_directories(dir);
    std::string svc = TimerServiceText("t", {"/bin/true", "a b", "50%"}, "root", "");
    auto run = [&](const std::string& timer_text) {
      std::ofstream(dir / "new") << svc;
      return Sh("LF_NEW=" + ShellQuote((dir / "new").string()) + "\n" +
                VerifyUnitPrecheck("labfleet-t.service", {{"labfleet-t.timer", timer_text}}));
    };
    ShellRun good = run(TimerTimerText("t", "Mon..Fri *-*-* 02:30", ""));
    CHECK(good.rc == 0);
    ShellRun bad = run(TimerTimerText("t", "dayly", ""));
    CHECK(bad.rc != 0);
    CHECK(bad.out.find("labfleet-t.timer:") != std::string::npos);  // the verifier's message, file named
    CHECK(bad.out.find("dayly") != std::string::npos);
    CHECK(bad.out.find("/tmp/tmp.") == std::string::npos);  // the temporary directory left out
    svc = "[Service]\nExecStart=/nonexistent/prog\n";
    ShellRun missing = run(TimerTimerText("t", "daily", ""));
    CHECK(missing.rc != 0);
    CHECK(missing.out.find("/nonexistent/prog") != std::string::npos);
    fs::remove_all(dir);
    // What the offline pattern accepts, systemd's own parser accepts too.
    for (const char* ok : {"daily", "Mon..Fri *-*-* 02:30", "*:0/15", "Sat,Sun 03:00", "2026-12-24 18:00:00",
                           "*-*-01 04:00 UTC", "monday,Wednesday 1,13:30", "*-1..6-1 0:0", "*-*-* 00/2:00"}) {
      CAPTURE(ok);
      REQUIRE(CalendarProblem(ok).empty());
      CHECK(Sh("systemd-analyze calendar " + ShellQuote(ok) + " >/dev/null").rc == 0);
    }
  }
}
