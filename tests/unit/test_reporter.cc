// Colour in text output: only for a terminal (NO_COLOR, TERM=dumb and --color respected), only on lines the
// renderer marks, and always after escaping, so a node's own escape sequences stay visible text.
#include <doctest/doctest.h>

#include <sstream>

#include "engine/cli.h"
#include "engine/fleet.h"
#include "engine/plan_report.h"
#include "engine/reporter.h"

using namespace labfleet;

namespace {
size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

std::vector<NodeRun> OnePlan() {
  NodePlan p;
  p.node = "asahi";
  p.reachable = true;
  p.resources = 3;
  Change add, mod, rm;
  add.sign = '+', add.summary = "user yseong (uid 2001)", add.resource = "user:yseong";
  mod.sign = '~', mod.summary = "file /etc/motd \x1b]0;pwned\x07", mod.resource = "file:/etc/motd";
  mod.diff = "--- /etc/motd\n+++ /etc/motd\n@@ -1 +1 @@\n-old\n+new \x1b[2J\n";
  rm.sign = '-', rm.summary = "user olduser", rm.resource = "user:olduser";
  p.changes = {add, mod, rm};
  p.warnings.push_back({"mounts", "reboot pending"});
  std::vector<NodeRun> runs(1);
  runs[0].plan = p;
  return runs;
}
}  // namespace

TEST_SUITE("reporter") {
  TEST_CASE("colour is wanted on a terminal only, and never with NO_COLOR or TERM=dumb unless forced") {
    CHECK(ColorWanted(ColorMode::Auto, true, nullptr, "xterm-256color"));
    CHECK_FALSE(ColorWanted(ColorMode::Auto, false, nullptr, "xterm-256color"));
    CHECK_FALSE(ColorWanted(ColorMode::Auto, true, "1", "xterm"));
    CHECK(ColorWanted(ColorMode::Auto, true, "", "xterm"));  // no-color.org: set and non-empty
    CHECK_FALSE(ColorWanted(ColorMode::Auto, true, nullptr, "dumb"));
    CHECK(ColorWanted(ColorMode::Always, false, "1", "dumb"));
    CHECK_FALSE(ColorWanted(ColorMode::Never, true, nullptr, "xterm"));
  }

  TEST_CASE("a coloured plan: + green, - red, ~ yellow, diff lines by sign; a node's escapes stay escaped") {
    auto runs = OnePlan();
    std::ostringstream plain_out, err, out;
    Reporter plain(OutputFormat::Text, plain_out, err);
    ReportPlan(plain, runs);
    CHECK(plain_out.str().find('\x1b') == std::string::npos);
    CHECK(plain_out.str().find("  ~ file /etc/motd \\x1b]0;pwned\\x07\n") != std::string::npos);

    Reporter rep(OutputFormat::Text, out, err);
    rep.set_color(true, true);
    ReportPlan(rep, runs);
    const std::string o = out.str();
    INFO(o);
    CHECK(o.find("\x1b[32m  + user yseong (uid 2001)\x1b[0m\n") != std::string::npos);
    CHECK(o.find("\x1b[33m  ~ file /etc/motd \\x1b]0;pwned\\x07\x1b[0m\n") != std::string::npos);
    CHECK(o.find("\x1b[31m  - user olduser\x1b[0m\n") != std::string::npos);
    CHECK(o.find("\n      --- /etc/motd\n") != std::string::npos);  // headers stay plain
    CHECK(o.find("\x1b[31m      -old\x1b[0m\n") != std::string::npos);
    CHECK(o.find("\x1b[32m      +new \\x1b[2J\x1b[0m\n") != std::string::npos);
    CHECK(o.find("\x1b[33m  ! reboot pending (mounts)\x1b[0m\n") != std::string::npos);
    // Every raw ESC is one of ours: 6 coloured lines, each opened and reset.
    CHECK(Count(o, "\x1b") == 12);
    CHECK(Count(o, "\x1b[0m") == 6);
    // With colour, stripping our codes gives the plain text back byte for byte.
    std::string stripped = o;
    for (const char* code : {"\x1b[32m", "\x1b[31m", "\x1b[33m", "\x1b[0m"})
      for (size_t p; (p = stripped.find(code)) != std::string::npos;) stripped.erase(p, std::string(code).size());
    CHECK(stripped == plain_out.str());
  }

  TEST_CASE("--color: never by default into streams that are not a terminal; always when asked") {
    std::ostringstream out, err;
    const char* never_argv[] = {"labfleet", "-i", "/nonexistent-inventory", "validate"};
    RunCli(4, never_argv, out, err);
    CHECK(err.str().find('\x1b') == std::string::npos);
    CHECK_FALSE(err.str().empty());
    std::ostringstream out1, err1;
    const char* always_argv[] = {"labfleet", "--color", "always", "-i", "/nonexistent-inventory", "validate"};
    RunCli(6, always_argv, out1, err1);
    CHECK(err1.str().find("\x1b[1;31m") != std::string::npos);
    std::ostringstream out2, err2;
    const char* bad_argv[] = {"labfleet", "--color", "sometimes", "validate"};
    CHECK(RunCli(4, bad_argv, out2, err2) == kExitUsage);
  }
}
