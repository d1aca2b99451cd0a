// lines: validation for the file's own syntax and against files others own, the edit semantics (replace the
// first match, drop later ones, append, remove, keep the rest byte for byte), and no edit of a file read in part.
#include <doctest/doctest.h>

#include "engine/file_probe.h"
#include "tests/unit/module_helpers.h"

namespace labfleet {
struct LineEntry {
  std::string path, line, match;
  bool absent = false, create = false;
  unsigned mode = 0644;
  Location where;
};
std::string ApplyLineEntries(const std::string& text, const std::vector<LineEntry>& entries);
}  // namespace labfleet

using namespace labfleet;
namespace lt = labfleet::testing;

namespace {
LineEntry Present(std::string line, std::string match = "") {
  LineEntry e;
  e.path = "/etc/environment", e.line = std::move(line), e.match = std::move(match);
  return e;
}
LineEntry Absent(std::string match) {
  LineEntry e = Present("", std::move(match));
  e.absent = true;
  return e;
}

ProbeResults File(const std::string& path, const std::string& out) {
  ProbeResults r;
  r["file:" + path] = {0, out};
  return r;
}
}  // namespace

TEST_SUITE("lines") {
  TEST_CASE("edits: replace the first match and drop later ones, append when absent, remove, keep the rest") {
    const std::string env = "PATH=\"/usr/local/bin:/usr/bin\"\nDET_MASTER=old:8080\n# a comment\nDET_MASTER=dup\n";
    CHECK(ApplyLineEntries(env, {Present("DET_MASTER=10.0.1.66:8080", "^DET_MASTER=")}) ==
          "PATH=\"/usr/local/bin:/usr/bin\"\nDET_MASTER=10.0.1.66:8080\n# a comment\n");
    CHECK(ApplyLineEntries(env, {Present("LANG=C.UTF-8", "^LANG=")}) == env + "LANG=C.UTF-8\n");
    CHECK(ApplyLineEntries(env, {Absent("^DET_MASTER=")}) == "PATH=\"/usr/local/bin:/usr/bin\"\n# a comment\n");
    // Converged: the same text back, byte for byte (also without a final newline).
    CHECK(ApplyLineEntries("A=1\nB=2", {Present("B=2", "^B=")}) == "A=1\nB=2");
    CHECK(ApplyLineEntries("A=1\nB=2", {Present("C=3", "^C=")}) == "A=1\nB=2\nC=3\n");
    // Without match, the line itself is the key: present once.
    CHECK(ApplyLineEntries("x\n", {Present("y")}) == "x\ny\n");
    CHECK(ApplyLineEntries("x\ny\n", {Present("y")}) == "x\ny\n");
    // In order: a later entry sees the earlier one's result.
    CHECK(ApplyLineEntries("", {Present("A=1", "^A="), Present("A=2", "^A=")}) == "A=2\n");
    // A very long line from the node is searched without recursion (glibc regexec).
    std::string big(900000, 'x');
    CHECK(ApplyLineEntries(big + "\n", {Present("K=v", "^K=(.*)+$")}) == big + "\nK=v\n");
  }

  TEST_CASE("validate: the file's syntax, its own match, regexes, and files other settings own") {
    Findings f;
    lt::Load(lt::Inv("lines:\n"
                     "  - { path: /etc/environment, line: \"export DET_MASTER=x\", match: \"DET_MASTER=\" }\n"
                     "  - { path: /etc/sysctl.d/90-lab.conf, line: \"vm.swappiness\", match: \"^vm.swappiness\" }\n"
                     "  - { path: /etc/default/x, line: \"A=1\", match: \"^B=\" }\n"
                     "  - { path: /etc/default/y, line: \"A=1\", match: \"^(A=\" }\n"
                     "  - { path: etc/default/z, line: \"A=1\" }\n"
                     "  - { path: /etc/default/w, line: \"A=1\\nB=2\" }\n"
                     "  - { path: /etc/passwd, line: \"x:x:0:0::/:/bin/sh\" }\n"
                     "  - { path: /etc/sudoers.d/lab, line: \"ALL ALL=(ALL) NOPASSWD: ALL\" }\n"
                     "  - { path: /etc/hosts, line: \"10.0.0.1 x\" }\n"
                     "  - { path: /etc/motd, line: \"hello\" }\n"
                     "  - { path: /etc/default/v, state: absent }\n"
                     "  - { path: /etc/default/u, line: \"A=1\", mach: \"^A=\" }\n"
                     "hosts: { 10.0.0.2: [nas] }\n"
                     "files:\n"
                     "  - { path: /etc/motd, content: \"hi\\n\" }\n"),
             &f);
    std::string all = lt::All(f);
    INFO(all);
    CHECK(all.find("line-syntax: line 'export DET_MASTER=x' for /etc/environment is not NAME=VALUE") != std::string::npos);
    CHECK(all.find("line-syntax: line 'vm.swappiness' for /etc/sysctl.d/90-lab.conf is not `key = value`") != std::string::npos);
    CHECK(all.find("line-not-matching: line 'A=1' does not match its own match '^B='") != std::string::npos);
    CHECK(all.find("line-regex: match '^(A=' is not a POSIX extended regular expression") != std::string::npos);
    CHECK(all.find("line-path: lines path 'etc/default/z' is not an absolute path") != std::string::npos);
    CHECK(all.find("control-character: line 'A=1\\nB=2' contains a newline") != std::string::npos);
    CHECK(all.find("line-path-owned: lines may not edit /etc/passwd: its lines are managed through `users:`") != std::string::npos);
    CHECK(all.find("line-path-owned: lines may not edit /etc/sudoers.d/lab") != std::string::npos);
    CHECK(all.find("file-owned-by-module: lines edits /etc/hosts, which `hosts:` writes on node 'n1'") != std::string::npos);
    CHECK(all.find("file-owned-by-module: lines edits /etc/motd, which `files:` writes on node 'n1'") != std::string::npos);
    CHECK(all.find("missing-required: a lines entry with `state: absent` needs `match:` or `line:`") != std::string::npos);
    CHECK(all.find("unknown-key: unknown key 'mach'") != std::string::npos);
  }

  TEST_CASE("plan: one change per file with its diff; owner and mode kept; a missing file; converged") {
    Inventory inv = lt::Load(lt::Inv("lines:\n"
                                     "  - { path: /etc/environment, line: \"DET_MASTER=10.0.1.66:8080\", match: \"^DET_MASTER=\" }\n"
                                     "  - { path: /etc/environment, match: \"^OLD=\", state: absent }\n"
                                     "  - { path: /etc/default/lab, line: \"X=1\", create: true, mode: \"0640\" }\n"
                                     "  - { path: /etc/default/none, line: \"Y=1\" }\n"));
    ProbeResults r;
    r["file:/etc/environment"] = {0, "present 640 root adm regular file\nPATH=/usr/bin\nOLD=1\nDET_MASTER=old\n"};
    r["file:/etc/default/lab"] = {0, "absent\n"};
    r["file:/etc/default/none"] = {0, "absent\n"};
    auto run = lt::RunModule(inv, "lines", r);
    INFO(run.all_notes());
    REQUIRE(run.changes.size() == 2);
    CHECK(run.changes[0].summary.find("lines in /etc/environment (2 entries)") == 0);
    CHECK(run.changes[0].file.bytes == "PATH=/usr/bin\nDET_MASTER=10.0.1.66:8080\n");
    CHECK(run.changes[0].file.mode == 0640);
    CHECK(run.changes[0].file.group == "adm");
    CHECK(run.changes[0].diff.find("-DET_MASTER=old\n+DET_MASTER=10.0.1.66:8080") != std::string::npos);
    CHECK(run.changes[1].file.path == "/etc/default/lab");
    CHECK(run.changes[1].file.mode == 0640);
    CHECK(run.changes[1].file.bytes == "X=1\n");
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("/etc/default/none does not exist; lines edits an existing file (set `create: true`") != std::string::npos);

    ProbeResults done;
    done["file:/etc/environment"] = {0, "present 640 root adm regular file\nPATH=/usr/bin\nDET_MASTER=10.0.1.66:8080\n"};
    done["file:/etc/default/lab"] = {0, "present 640 root root regular file\nX=1\n"};
    done["file:/etc/default/none"] = {0, "present 644 root root regular file\nY=1\n"};
    auto again = lt::RunModule(inv, "lines", done);
    CHECK(again.changes.empty());
    CHECK(again.errors.empty());
  }

  TEST_CASE("a file the probe read only in part is never edited (lines and hosts)") {
    const std::string big = "present 644 root root regular file\tsize=2000000\tunread=too large to diff: 2000000 bytes\tsha256=ab\n";
    Inventory inv = lt::Load(lt::Inv("lines:\n  - { path: /etc/environment, line: \"A=1\", match: \"^A=\" }\n"));
    auto run = lt::RunModule(inv, "lines", File("/etc/environment", big));
    CHECK(run.changes.empty());
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("could not be read whole (too large to diff: 2000000 bytes)") != std::string::npos);

    Inventory hinv = lt::Load(lt::Inv("hosts: { 10.0.0.2: [nas] }\n"));
    auto hosts = lt::RunModule(hinv, "hosts", File("/etc/hosts", big));
    CHECK(hosts.changes.empty());
    REQUIRE(hosts.errors.size() == 1);
    CHECK(hosts.errors[0].find("/etc/hosts could not be read whole") != std::string::npos);
  }
}
