// Transport::put_file / get_file over a real SSH session to a sandbox node: atomic (temp file in the same
// directory, renamed), mode and owner set, bytes exact (NUL, no final newline, quotes), the directory made,
// nothing left behind on failure. Checked inside the node with stat and cmp, not over labfleet's transport.
#include <doctest/doctest.h>

#include <string>

#include "engine/shell.h"
#include "engine/ssh_transport.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"
#include "tests/unit/pattern_source.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;
using namespace labfleet::testing;

TEST_SUITE("integration-ssh") {
  TEST_CASE("put_file and get_file over SSH: exact bytes, mode, owner, atomic rename, no leftovers") {
    Sandbox sbx({.nodes = 1});
    SshTransport ssh(Target(sbx, "node1", sbx.known_hosts()));

    Exec(sbx, "useradd -M -u 2345 -s /bin/sh filer && groupadd -g 3456 filers");
    const std::string bytes = std::string("it's \"a\" $(id)\0binary\n", 22) + "no final newline";
    ssh.put_file({"/srv/put/deep/file", bytes, 0640, "filer", "filers"});
    CHECK(Exec(sbx, "stat -c '%a %U %G %s' /srv/put/deep/file") ==
          "640 filer filers " + std::to_string(bytes.size()) + "\n");
    CHECK(ssh.get_file("/srv/put/deep/file") == bytes);

    // Replacing it is a rename, not a write in place: a hard link to the old file keeps the old bytes.
    Exec(sbx, "ln /srv/put/deep/file /srv/put/old-link");
    ssh.put_file({"/srv/put/deep/file", "second\n", 0600, "root", "root"});
    CHECK(ssh.get_file("/srv/put/old-link") == bytes);
    CHECK(Exec(sbx, "stat -c '%a %U %G %h' /srv/put/deep/file; cat /srv/put/deep/file") == "600 root root 1\nsecond\n");

    // An owner that does not exist: the write fails, the old file stays, no temp file is left.
    CHECK_THROWS_AS(ssh.put_file({"/srv/put/deep/file", "third\n", 0644, "nobody-here", "root"}), TransportError);
    CHECK(Exec(sbx, "cat /srv/put/deep/file; ls -A /srv/put/deep") == "second\nfile\n");
    CHECK_THROWS_AS(ssh.get_file("/srv/put/absent"), TransportError);
  }

  TEST_CASE("stream() over SSH: a large stream arrives intact in bounded memory; an early exit stops it") {
    Sandbox sbx({.nodes = 1});
    SshTarget t = Target(sbx, "node1", sbx.known_hosts());
    t.command_timeout_s = 120;
    SshTransport ssh(t);

    const uint64_t total = 96ull << 20;
    TempDir d("labfleet-ssh-stream");
    REQUIRE(PatternSource(total).write_to(d.str("expected")));
    const std::string expected = RunCommand(Cmd("sha256sum").arg(d.str("expected")).str()).out.substr(0, 64);
    const long rss_before = PeakRssKib();
    PatternSource src(total);
    // Written to a file in the node, then checked there by sha256sum and stat (not over this transport).
    RunResult r = ssh.stream("cat > /var/tmp/streamed", src);
    CHECK_MESSAGE(r.exit_code == 0, r.err);
    CHECK(src.taken() == total);
    CHECK(PeakRssKib() - rss_before < 48 * 1024);  // not buffered whole (96 MiB)
    CHECK(Exec(sbx, "stat -c %s /var/tmp/streamed") == std::to_string(total) + "\n");
    CHECK(Exec(sbx, "sha256sum < /var/tmp/streamed").substr(0, 64) == expected);

    // The command stops reading: the rest of a 4 GiB source is never produced, and the session stays usable.
    PatternSource endless(4ull << 30);
    r = ssh.stream("head -c 1000 >/dev/null; echo read", endless);
    CHECK(r.out == "read\n");
    CHECK(endless.taken() < (64u << 20));
    CHECK(ssh.run("echo still here").out == "still here\n");
  }
}
