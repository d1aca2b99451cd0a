#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "engine/shell.h"

using namespace labfleet;

// Runs a command through /bin/sh and returns its stdout: quoting is tested by a real shell.
static std::string ShOut(const std::string& cmd) {
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

TEST_CASE("ShellQuote survives a real shell for hostile values") {
  const char* hostile[] = {"plain", "", "it's", "$(touch /tmp/pwned)", "`id`", "a\nb", "\"q\" 'r'", "*", "-n",
                           "x=y", "tab\there", "back\\slash", "~root", "semi;colon", "&&", "!"};
  for (const char* h : hostile) {
    CAPTURE(h);
    CHECK(ShOut(Cmd("printf").arg("%s").arg(h).str()) == h);
  }
}

TEST_CASE("Cmd joins words and raw syntax") {
  CHECK(Cmd("echo").arg("a b").raw("|").then(Cmd("wc").arg("-c")).str() == "echo 'a b' | wc -c");
  CHECK(ShOut(Cmd("echo").arg("a b").raw("|").then(Cmd("tr").arg("a").arg("x")).str()) == "x b\n");
}

TEST_CASE("Base64 round trip") {
  std::string all;
  for (int i = 0; i < 256; ++i) all += char(i);
  for (size_t len : {0, 1, 2, 3, 4, 5, 255, 256}) {
    std::string s = all.substr(0, len);
    bool ok = false;
    CHECK(Base64Decode(Base64Encode(s), &ok) == s);
    CHECK(ok);
  }
  CHECK(Base64Encode("foobar") == "Zm9vYmFy");
  bool ok = true;
  Base64Decode("Zm9v!mFy", &ok);
  CHECK_FALSE(ok);
  // The node decodes what we encode.
  CHECK(ShOut("printf %s " + ShellQuote(Base64Encode("héllo\n$x")) + " | base64 -d") == "héllo\n$x");
}

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include "engine/local_transport.h"

TEST_CASE("CatBuiltin gives a file's bytes as cat does, and fails when there is no file") {
  using namespace labfleet;
  const std::string dir = std::filesystem::temp_directory_path() / ("lf-catb-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const std::string f = dir + "/it's $(x)";
  LocalTransport local("here", 60);
  for (const std::string& content : {std::string("a\nb"), std::string("a\n\n"), std::string(""),
                                    std::string("  lead \\t back\\slash $(touch pwned) `x` *\n-n\n-e\n")}) {
    std::ofstream(f, std::ios::binary | std::ios::trunc) << content;
    RunResult r = local.run(Cmd("sh").arg("-c").arg(CatBuiltin(f)).str());
    CHECK(r.exit_code == 0);
    CHECK(r.out == content);
  }
  std::filesystem::remove(f);
  CHECK(local.run(Cmd("sh").arg("-c").arg(CatBuiltin(f)).str()).exit_code != 0);
  CHECK(!std::filesystem::exists("pwned"));
  std::filesystem::remove_all(dir);
}
