// lines on a real node: /etc/environment edited line by line (its other lines, mode and group kept), read back
// by PAM (su's pam_env, the reader students' logins use); a created sysctl-style file; a re-plan with nothing to
// do; and a user's symlinked directory that root's create would have followed is refused.
#include <doctest/doctest.h>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet;
using namespace labfleet::testing;

TEST_SUITE("integration-lines") {
  TEST_CASE("lines: edit /etc/environment in place, create a file, re-plan empty, refuse a user's symlink") {
    Sandbox sbx({.nodes = 1});
    MustExec(sbx, "node1",
             "printf '%s\\n' 'PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"' 'DET_MASTER=old:8080' "
             "'# site settings, kept' 'OLD_PROXY=http://10.0.0.9:3128' 'DET_MASTER=duplicate' > /etc/environment && "
             "chgrp adm /etc/environment && chmod 0640 /etc/environment && "
             "useradd -m -u 2060 -s /bin/sh alice && "
             "runuser -u alice -- ln -s /etc/cron.d /home/alice/.config");
    TempInventory inv(sbx);
    inv.defaults("    lines:\n"
                 "      - { path: /etc/environment, line: \"DET_MASTER=10.0.1.66:8080\", match: \"^DET_MASTER=\" }\n"
                 "      - { path: /etc/environment, match: \"^OLD_PROXY=\", state: absent }\n"
                 "      - { path: /etc/sysctl.d/90-lab.conf, line: \"vm.swappiness = 10\", match: \"^vm\\\\.swappiness\", create: true }\n");
    auto v = Cli({"--inventory", inv.dir(), "validate"});
    INFO(v.out << v.err);
    REQUIRE(v.rc == 0);

    auto plan = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(plan.out << plan.err);
    CHECK(Summaries(plan) == "lines in /etc/environment (2 entries) | lines in /etc/sysctl.d/90-lab.conf (1 entry)");

    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(Exec(sbx, "cat /etc/environment") ==
          "PATH=\"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\"\nDET_MASTER=10.0.1.66:8080\n"
          "# site settings, kept\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/environment") == "640 root adm\n");
    CHECK(Exec(sbx, "cat /etc/sysctl.d/90-lab.conf") == "vm.swappiness = 10\n");
    CHECK(Exec(sbx, "stat -c '%a %U %G' /etc/sysctl.d/90-lab.conf") == "644 root root\n");
    // An independent reader: PAM's pam_env, through su, as a login reads it. (`sysctl -p` is not run: the node
    // shares the host's kernel.)
    auto su = sbx.exec("node1", "su -s /bin/sh -c 'printenv DET_MASTER' alice");
    INFO(su.err);
    CHECK(su.out == "10.0.1.66:8080\n");
    CHECK(Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // alice's ~/.config is a link to /etc/cron.d: creating a file there as root would plant a root cron job.
    inv.defaults("    lines:\n"
                 "      - { path: /home/alice/.config/lab.env, line: \"X=1\", create: true }\n");
    r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.out.find("refused: lines in /home/alice/.config/lab.env (1 entry): /home/alice belongs to alice") != std::string::npos);
    CHECK(sbx.exec("node1", "test -e /etc/cron.d/lab.env").exit_code != 0);
  }
}
