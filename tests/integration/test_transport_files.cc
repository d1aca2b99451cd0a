// Transport::put_file / get_file over a real SSH session to a sandbox node: atomic (temp file in the same
// directory, renamed), mode and owner set, bytes exact (NUL, no final newline, quotes), the directory made,
// nothing left behind on failure. Checked inside the node with stat and cmp, not over labfleet's transport.
#include <doctest/doctest.h>

#include <string>

#include "engine/ssh_transport.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/sandbox.h"

using namespace labfleet;
using namespace labfleet::testing;

TEST_SUITE("integration-ssh") {
  TEST_CASE("put_file and get_file over SSH: exact bytes, mode, owner, atomic rename, no leftovers") {
    Sandbox sbx({.nodes = 1});
    SshTarget t;
    t.name = "node1";
    t.host = sbx.node("node1").address;
    t.port = sbx.node("node1").port;
    t.identity = sbx.identity();
    t.known_hosts = sbx.known_hosts();
    t.connect_timeout_s = 5;
    SshTransport ssh(t);

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
}
