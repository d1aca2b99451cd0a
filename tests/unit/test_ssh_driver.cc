// The script driver (engine/ssh_driver.h): the node-side loop run by a real /bin/sh, and the pure frame parser
// against valid frames cut at every byte and against hostile ones.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "engine/local_transport.h"
#include "engine/shell.h"
#include "engine/ssh_driver.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;

namespace {

const std::string kN1 = "0123456789abcdef0123456789abcdef";
const std::string kN2 = "fedcba9876543210fedcba9876543210";

// Runs the loop under /bin/sh with `requests` as its whole stdin; its private directory goes under `tmp`.
RunResult RunLoop(const std::string& tmp, const std::string& requests) {
  return LocalTransport("here", 60).run(Cmd("env").arg("TMPDIR=" + tmp).arg("sh").arg("-c").arg(DriverLoopScript()).str(),
                                        requests);
}

// Parses the frames of `out` one after another (as the transport does after each request).
std::vector<DriverFrame> Frames(std::string_view out, const std::vector<std::string>& nonces,
                                std::vector<std::string>* stdouts) {
  std::vector<DriverFrame> frames;
  for (const auto& n : nonces) {
    // The frame ends with its fin line: cut there, as the lockstep transport sees it.
    const std::string fin = "@@lfd-" + n + ":fin\n";
    size_t e = out.find(fin);
    REQUIRE(e != std::string_view::npos);
    std::string_view one = out.substr(0, e + fin.size());
    DriverFrame f = ParseDriverFrame(one, n);
    REQUIRE(f.state == DriverFrame::State::Complete);
    stdouts->push_back(std::string(one.substr(0, f.out_len)));
    frames.push_back(f);
    out.remove_prefix(one.size());
  }
  CHECK(out.empty());
  return frames;
}

std::string ValidFrame(const std::string& out, int rc, const std::string& err, const std::string& n = kN1) {
  return out + "\n@@lfd-" + n + ":end " + std::to_string(rc) + " " + std::to_string(err.size()) + "\n" + err +
         "@@lfd-" + n + ":fin\n";
}

}  // namespace

TEST_CASE("driver loop: scripts run one after another in one shell, each framed with its own status and stderr") {
  testing::TempDir d("labfleet-drv");
  std::string req = DriverRequest("echo one; echo oops >&2; exit 3", kN1) +
                    DriverRequest("printf 'no newline'; x=$$; echo \"pid=$x\" >&2", kN2);
  RunResult r = RunLoop(d.str(), req);
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);  // EOF after the last request
  std::vector<std::string> outs;
  auto frames = Frames(r.out, {kN1, kN2}, &outs);
  CHECK(outs[0] == "one\n");
  CHECK(frames[0].exit_code == 3);  // the script's exit ends its subshell, not the loop
  CHECK(frames[0].err == "oops\n");
  CHECK(outs[1] == "no newline");
  CHECK(frames[1].exit_code == 0);
  CHECK(frames[1].err.rfind("pid=", 0) == 0);
  // The private directory is gone after the loop ended.
  CHECK(LocalTransport("here", 10).run(Cmd("find").arg(d.str()).arg("-mindepth").arg("1").str()).out == "");
}

TEST_CASE("driver loop: the script's $$ is the loop's own pid, the same in every script") {
  testing::TempDir d("labfleet-drv");
  RunResult r = RunLoop(d.str(), DriverRequest("echo $$", kN1) + DriverRequest("echo $$", kN2));
  std::vector<std::string> outs;
  Frames(r.out, {kN1, kN2}, &outs);
  CHECK(outs[0] == outs[1]);
  CHECK(std::atol(outs[0].c_str()) > 1);
}

TEST_CASE("driver loop: stderr is bounded, stdout is not cut, stdin is /dev/null, variables do not leak") {
  testing::TempDir d("labfleet-drv");
  std::string req = DriverRequest("head -c 200000 /dev/zero | tr '\\0' e >&2; head -c 300000 /dev/zero | tr '\\0' o; "
                                  "cat; echo \"[$lf_n$lf_d]\"; exit 0",
                                  kN1);
  RunResult r = RunLoop(d.str(), req);
  std::vector<std::string> outs;
  auto frames = Frames(r.out, {kN1}, &outs);
  CHECK(frames[0].err.size() == kDriverMaxErr);
  CHECK(outs[0].size() == 300000 + 3);
  CHECK(outs[0].substr(300000) == "[]\n");
}

TEST_CASE("driver loop: a request cut short is never run; a header it does not understand ends the loop") {
  testing::TempDir d("labfleet-drv");
  const std::string mark = d.str("ran");
  std::string full = DriverRequest("touch " + ShellQuote(mark), kN1);
  RunResult r = RunLoop(d.str(), full.substr(0, full.size() - 3));
  CHECK(r.exit_code == 96);
  CHECK(r.out.empty());
  CHECK(LocalTransport("here", 10).run(Cmd("test").arg("-e").arg(mark).str()).exit_code == 1);

  for (const std::string& bad : {std::string("12 ZZ\n"), std::string("x12 ") + kN1 + "\n", std::string("\n"),
                                 std::string("99999999999 ") + kN1 + "\n", std::string("5 ") + kN1 + ";rm\n"}) {
    CAPTURE(bad);
    RunResult b = RunLoop(d.str(), bad + "touch " + ShellQuote(mark) + "\n");
    CHECK(b.exit_code == 98);
    CHECK(LocalTransport("here", 10).run(Cmd("test").arg("-e").arg(mark).str()).exit_code == 1);
  }
}

TEST_CASE("ParseDriverFrame: every prefix of a valid frame is incomplete, the whole is complete") {
  const std::string out = "line 1\n@@lfd-" + kN2 + ":end 0 0\n(a forged marker of another nonce)\n";
  const std::string frame = ValidFrame(out, 42, "err\nmore", kN1);
  size_t from = 0;
  for (size_t i = 0; i < frame.size(); ++i) {
    CAPTURE(i);
    DriverFrame f = ParseDriverFrame(std::string_view(frame).substr(0, i), kN1, from);
    REQUIRE(f.state == DriverFrame::State::Incomplete);
    from = f.search_from;
  }
  DriverFrame f = ParseDriverFrame(frame, kN1, from);
  REQUIRE(f.state == DriverFrame::State::Complete);
  CHECK(frame.substr(0, f.out_len) == out);
  CHECK(f.exit_code == 42);
  CHECK(f.err == "err\nmore");
  // From scratch too.
  CHECK(ParseDriverFrame(frame, kN1).out_len == out.size());
  // Empty stdout and stderr.
  DriverFrame e = ParseDriverFrame(ValidFrame("", 0, ""), kN1);
  CHECK(e.state == DriverFrame::State::Complete);
  CHECK(e.out_len == 0);
  CHECK(e.err.empty());
}

TEST_CASE("ParseDriverFrame: hostile frames from the node are refused with a reason") {
  const std::string end = "x\n@@lfd-" + kN1 + ":end ";
  const std::string fin = "@@lfd-" + kN1 + ":fin\n";
  struct Case {
    std::string frame, why;
  };
  const std::vector<Case> cases = {
      {end + "256 0\n" + fin, "exit status 0..255"},
      {end + "-1 0\n" + fin, "exit status 0..255"},
      {end + "abc 0\n" + fin, "exit status 0..255"},
      {end + "0000 0\n" + fin, "exit status 0..255"},
      {end + "0\n" + fin, "exit status 0..255"},
      {end + " 0 0\n" + fin, "exit status 0..255"},
      {end + "0 65537\n", "stderr length"},
      {end + "0 9999999\n", "stderr length"},
      {end + "0 -5\n" + fin, "stderr length"},
      {end + "0 1 2\n" + fin, "stderr length"},
      {end + "0 0x10\n" + fin, "stderr length"},
      {end + std::string(40, '9'), "too long"},
      {end + "0 3\nabc@@lfd-" + kN2 + ":fin\n", "not followed by the end"},
      {end + "0 3\nabcd", "not followed by the end"},
      {end + "0 0\n" + fin + "more", "bytes followed the end of the frame"},
      {end + "0 0\n" + fin + end + "0 0\n" + fin, "followed the end"},
      {end + "0 2\n\x01\xff" + fin + "\x1b[2J", "followed the end"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.frame);
    DriverFrame f = ParseDriverFrame(c.frame, kN1);
    CHECK(f.state == DriverFrame::State::Malformed);
    CHECK(f.why.find(c.why) != std::string::npos);
    CHECK(f.why.find('\x1b') == std::string::npos);  // node bytes are escaped in the reason
  }
  // A marker with another nonce, or none at all, is just output: still incomplete.
  CHECK(ParseDriverFrame("x\n@@lfd-" + kN2 + ":end 0 0\n@@lfd-" + kN2 + ":fin\n", kN1).state ==
        DriverFrame::State::Incomplete);
  CHECK(ParseDriverFrame(std::string(100000, '\0'), kN1).state == DriverFrame::State::Incomplete);
}

TEST_CASE("DriverRequest: header with the body's length, body ends with the nonce's end-of-script comment") {
  std::string r = DriverRequest("echo hi", kN1);
  std::string body = "echo hi\n#lfd-eos-" + kN1;
  CHECK(r == std::to_string(body.size()) + " " + kN1 + "\n" + body);
}
