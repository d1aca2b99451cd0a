#include <doctest/doctest.h>

#include "engine/textdiff.h"

using namespace labfleet;

TEST_SUITE("textdiff") {
  TEST_CASE("equal texts give no diff") { CHECK(UnifiedDiff("a\nb\n", "a\nb\n", "x", "y") == ""); }

  TEST_CASE("one changed line with context") {
    std::string a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
    std::string b = "1\n2\n3\n4\nFIVE\n6\n7\n8\n9\n";
    CHECK(UnifiedDiff(a, b, "/etc/motd", "/etc/motd (desired)") ==
          "--- /etc/motd\n+++ /etc/motd (desired)\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+FIVE\n 6\n 7\n 8\n");
  }

  TEST_CASE("new file and missing final newline") {
    CHECK(UnifiedDiff("", "hello\n", "a", "b") == "--- a\n+++ b\n@@ -0,0 +1 @@\n+hello\n");
    CHECK(UnifiedDiff("x\n", "x", "a", "b") ==
          "--- a\n+++ b\n@@ -1 +1 @@\n-x\n+x\n\\ No newline at end of file\n");
  }

  TEST_CASE("two distant hunks") {
    std::string a, b;
    for (int i = 1; i <= 30; ++i) {
      a += std::to_string(i) + "\n";
      b += (i == 2 ? std::string("two") : i == 28 ? std::string("twenty-eight") : std::to_string(i)) + "\n";
    }
    std::string d = UnifiedDiff(a, b, "a", "b");
    CHECK(d.find("@@ -1,5 +1,5 @@") != std::string::npos);
    CHECK(d.find("@@ -25,6 +25,6 @@") != std::string::npos);
  }
}
