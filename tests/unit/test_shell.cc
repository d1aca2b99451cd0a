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
