#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>

#include "engine/local_transport.h"
#include "engine/planner.h"
#include "modules/facts/accounts.h"
#include "modules/facts/accounts_probe.h"

using namespace labfleet;

static std::string Fixture(const std::string& name) {
  std::ifstream f(std::string(LABFLEET_SOURCE_DIR) + "/tests/fixtures/accounts/" + name);
  REQUIRE(f);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST_SUITE("accounts") {
  TEST_CASE("an account file is read whole or fails, at the limit and past it (trailing newlines too)") {
    const std::string dir = std::filesystem::temp_directory_path() / ("lf-acct-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir);
    const std::string f = dir + "/passwd";
    LocalTransport local("here", 60);
    auto read = [&](const std::string& content, RunResult* r) {
      std::ofstream(f, std::ios::binary | std::ios::trunc) << content;
      const std::vector<Probe> probes{{"passwd-file", ReadAccountFileCommand(f, 10), true}};
      const std::string nonce = "0123456789abcdef";
      *r = local.run(ScriptRunner(), BuildProbeScript(probes, nonce));
      REQUIRE(r->ok());
      return ParseProbeOutput(r->out, probes, nonce)["passwd-file"];
    };
    RunResult r;
    ProbeOutput o = read("a:x:1:1::\n", &r);  // 10 bytes: the limit, read whole
    CHECK(o.exit_code == 0);
    CHECK(o.out == "a:x:1:1::\n");
    o = read("a\n\n\n\n", &r);  // trailing newlines kept
    CHECK(o.exit_code == 0);
    CHECK(o.out == "a\n\n\n\n");
    o = read("", &r);
    CHECK(o.exit_code == 0);
    CHECK(o.out.empty());
    o = read("a:x:1:1::\nb:x:2:2::\n", &r);  // over the limit: fails, nothing used
    CHECK(o.exit_code == 3);
    o = read("abcdefghi\n\n\n\nzz\n", &r);  // the bytes past the limit are newlines: still over, still fails
    CHECK(o.exit_code == 3);
    std::filesystem::remove(f);  // a file that cannot be read fails
    const std::vector<Probe> probes{{"passwd-file", ReadAccountFileCommand(f, 10), true}};
    r = local.run(ScriptRunner(), BuildProbeScript(probes, "0123456789abcdef"));
    CHECK(ParseProbeOutput(r.out, probes, "0123456789abcdef")["passwd-file"].exit_code != 0);
    std::filesystem::remove_all(dir);
  }
  TEST_CASE("getent passwd, with a garbage line") {
    auto p = ParsePasswd(Fixture("getent_passwd.txt"));
    CHECK(p.skipped == 1);
    CHECK(p.in_order.size() == 5);
    REQUIRE(p.by_name.count("yseong"));
    CHECK(p.by_name["yseong"].uid == 2001);
    CHECK(p.by_name["yseong"].gecos == "Yeon Seong,,,");
    CHECK(p.by_name["kpark"].shell == "/usr/bin/zsh");
    CHECK(p.by_name["sshd"].gecos.empty());
  }
  TEST_CASE("getent group") {
    auto g = ParseGroup(Fixture("getent_group.txt"));
    CHECK(g.skipped == 1);
    CHECK(g.by_name["gpu-users"].gid == 3000);
    CHECK(g.by_name["gpu-users"].members == std::vector<std::string>{"yseong", "kpark"});
    CHECK(g.by_name["root"].members.empty());
  }
  TEST_CASE("getent shadow") {
    auto s = ParseShadow(Fixture("getent_shadow.txt"));
    CHECK(s.skipped == 1);
    CHECK(s.by_name["root"].expire == -1);
    CHECK(s.by_name["yseong"].expire == 20512);
    CHECK(s.by_name["kpark"].hash == "$y$j9T$abc$def");
  }
  TEST_CASE("the account facts: one parser each on captured output (garbage skipped), file ones required") {
    ProbeResults r;
    r[kPasswd.name] = {0, Fixture("getent_passwd.txt")};
    r[kGroup.name] = {0, Fixture("getent_group.txt")};
    r[kShadow.name] = {0, Fixture("getent_shadow.txt")};
    r[kManagedUsers.name] = {0, "yseong\n\nkpark\n"};
    CHECK(r.fact(kPasswd).skipped == 1);
    CHECK(r.fact(kPasswd).by_name.at("kpark").uid == 2002);
    CHECK(r.fact(kGroup).by_name.at("gpu-users").gid == 3000);
    CHECK(r.fact(kShadow).by_name.at("yseong").expire == 20512);
    CHECK(r.fact(kManagedUsers) == std::set<std::string>{"yseong", "kpark"});
    CHECK(&r.fact(kPasswd) == &r.fact(kPasswd));  // one parsed value, shared by every reader
    CHECK(kPasswd.required);
    CHECK(kGroup.required);
    CHECK(kShadow.required);
    CHECK_FALSE(kManagedUsers.required);  // absent until labfleet writes it: cat fails, and that is an answer
    // the local files, never NSS (a directory user is not a local account), bounded in size
    const std::string cmd = kPasswd.probe().command;
    CHECK(cmd.find("/etc/passwd") != std::string::npos);
    CHECK(cmd.find("getent") == std::string::npos);
    CHECK(cmd.find(std::to_string(kMaxAccountFileBytes)) != std::string::npos);
    CHECK(kShadow.probe().command.find("/etc/shadow") != std::string::npos);
    // NSS is asked only of the inventory's names, quoted, and never fails the node
    const Probe nss = NssPasswdProbe({"yseong", "a'b"});
    CHECK(nss.key == "nss-passwd");
    CHECK(nss.command.find("getent passwd yseong 'a'\\''b'") == 0);
    CHECK(nss.command.find("exit 0") != std::string::npos);
  }
  TEST_CASE("subuid") {
    auto s = ParseSubIds("yseong:165536:65536\nbad\nk:1:x\n");
    CHECK(s.skipped == 2);
    CHECK(s.by_name["yseong"].start == 165536);
  }
  TEST_CASE("dates") {
    CHECK(DaysSinceEpoch("1970-01-02") == 1);
    CHECK(DaysSinceEpoch("2027-02-28") == 20877);
    CHECK(DaysSinceEpoch("2027-02-30") == -1);
    CHECK(DaysSinceEpoch("27-02-28") == -1);
    CHECK(DateFromDays(20877) == "2027-02-28");
  }
}
