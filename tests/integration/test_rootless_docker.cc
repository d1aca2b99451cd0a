// rootless Docker end to end on a real sandbox node: students alice and bob get the distro packages (a local apt
// repository of stand-in .debs for docker.io, rootlesskit and slirp4netns; uidmap is the real one), linger, a
// data root on local scratch, ~/.config/docker/daemon.json and the user unit written as themselves, the user
// service enabled, and subuid/subgid ranges; the re-plan is empty. Checked with independent tools: stat, jq and
// python3's json.tool, getsubids (shadow-utils, reads /etc/subuid as newuidmap does), dpkg-query, readlink.
// An existing uid-keyed /etc/subuid line of alice is replaced, and a foreign line overlapping her range is
// reported at plan with the line named. mallory, whose ~/.config is a link to /etc, is refused: nothing is
// written for her, in /etc or anywhere else.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet::testing;

namespace {

// alice 2061 -> 100000 + 1061 * 65536 = 69633696; bob 2062 -> 69699232.
std::string Inventory(bool mallory_rootless) {
  return "lab:\n  name: t\n  defaults:\n"
         "    docker:\n"
         "      address_pools: [{ base: 172.28.0.0/16, size: 24 }]\n"
         "      registry_mirrors: [\"https://mirror.lab:5000\"]\n"
         "      proxy: { http: \"http://10.0.1.68:8889\", no_proxy: [localhost, .lab] }\n"
         "    rootless_docker: { data_root: \"/local/docker-rootless/{{user}}\" }\n"
         "user_groups:\n  students: { gid: 3100 }\n"
         "users:\n"
         "  alice: { uid: 2061, groups: [students], rootless_docker: true }\n"
         "  bob: { uid: 2062, groups: [students], rootless_docker: true }\n"
         "  mallory: { uid: 2063, groups: [students], rootless_docker: " +
         std::string(mallory_rootless ? "true" : "false") + " }\n";
}

}  // namespace

TEST_SUITE("integration-rootless") {
  TEST_CASE("rootless docker for students: apply, re-plan empty, independent checks, uid-keyed subuid, refused link") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl"});  // the system daemon's restart finds no docker.service
    BuildLocalAptRepo(sbx, "node1",
                      {{"docker.io", "20.10.24+dfsg1-1", ""}, {"rootlesskit", "1.1.0-1", ""}, {"slirp4netns", "1.2.0-1", ""}});
    UseLocalAptRepo(sbx, "node1");
    // Local scratch, root's; /etc/subuid as an admin left it: alice's old range keyed by her uid, and carol (not in
    // the inventory) on a range that overlaps the one labfleet gives alice.
    // bob's user manager "runs": its socket exists, so labfleet calls `systemctl --user` as bob (the double keeps
    // bob's units in a directory of his and logs the call with the uid and XDG_RUNTIME_DIR it ran with).
    MustExec(sbx, "node1",
             "mkdir -p /run/user/2062/systemd && python3 -c 'import socket; "
             "socket.socket(socket.AF_UNIX).bind(\"/run/user/2062/systemd/private\")' && "
             "mkdir -p /var/lib/labfleet-doubles/user/2062/units && "
             "echo file=disabled > /var/lib/labfleet-doubles/user/2062/units/docker.service && "
             "chown -R 2062 /var/lib/labfleet-doubles/user/2062 && chmod 0666 /var/log/labfleet-doubles.log");
    MustExec(sbx, "node1",
             "mkdir -p /local && chmod 0755 /local && "
             "printf '%s\\n' '2061:5000000:65536' 'carol:69640000:65536' > /etc/subuid && "
             "printf '%s\\n' 'carol:69640000:65536' > /etc/subgid");
    TempInventory inv(sbx);
    inv.write("inventory/lab.yaml", Inventory(false));
    auto v = Cli({"--inventory", inv.dir(), "validate"});
    INFO(v.out << v.err);
    REQUIRE(v.rc == 0);

    auto plan = Cli(sbx, inv.dir(), {"plan"});
    INFO(plan.out << plan.err);
    // The overlap, at plan, naming the line.
    CHECK(plan.out.find("/etc/subuid range 69633696-69699231 of alice (labfleet) overlaps line 2 "
                        "'carol:69640000:65536' (69640000-69705535)") != std::string::npos);
    CHECK(plan.out.find("/etc/subgid range 69633696-69699231 of alice (labfleet) overlaps line 1 "
                        "'carol:69640000:65536'") != std::string::npos);

    auto apply = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(apply.out << apply.err);
    REQUIRE(apply.rc == 0);
    CHECK(apply.json()["apply"][0]["status"] == "changed");  // the executor's re-plan was empty
    std::string s = Summaries(apply);
    CHECK(s.find("rootless docker packages: install docker.io, rootlesskit, slirp4netns") != std::string::npos);
    CHECK(s.find("linger for alice (loginctl enable-linger)") != std::string::npos);
    CHECK(s.find("rootless docker service of bob (systemctl --user enable)") != std::string::npos);
    CHECK(s.find("of mallory") == std::string::npos);  // her account only

    // Independent checks.
    CHECK(Exec(sbx, "dpkg-query -W -f='${Package} ${Status}\\n' docker.io rootlesskit slirp4netns uidmap") ==
          "docker.io install ok installed\nrootlesskit install ok installed\nslirp4netns install ok installed\n"
          "uidmap install ok installed\n");
    for (const char* u : {"alice", "bob"}) {
      CAPTURE(u);
      const std::string user = u;
      CHECK(Exec(sbx, "stat -c '%U %G %a %F' /local/docker-rootless/" + user) == user + " " + user + " 700 directory\n");
      CHECK(Exec(sbx, "stat -c '%U %G %a' /home/" + user + "/.config/docker/daemon.json /home/" + user +
                          "/.config/docker /home/" + user + "/.config/systemd/user/docker.service") ==
            user + " " + user + " 644\n" + user + " " + user + " 755\n" + user + " " + user + " 644\n");
      CHECK(sbx.exec("node1", "python3 -m json.tool /home/" + user + "/.config/docker/daemon.json >/dev/null").exit_code == 0);
      auto j = nlohmann::json::parse(Exec(sbx, "jq -c . /home/" + user + "/.config/docker/daemon.json"));
      CHECK(j["data-root"] == "/local/docker-rootless/" + user);
      CHECK(j["default-address-pools"] == nlohmann::json::parse(R"([{"base":"172.28.0.0/16","size":24}])"));
      CHECK(j["registry-mirrors"] == nlohmann::json::parse(R"(["https://mirror.lab:5000"])"));
      CHECK(Exec(sbx, "grep -c '^Environment=\"HTTP_PROXY=http://10.0.1.68:8889\"$' /home/" + user +
                          "/.config/systemd/user/docker.service") == "1\n");
      CHECK(Exec(sbx, "stat -c '%U' /var/lib/systemd/linger/" + user) == "root\n");
      // alice: no user manager, the link enable makes; bob: made by (the double's) systemctl --user enable.
      CHECK(Exec(sbx, "readlink /home/" + user + "/.config/systemd/user/default.target.wants/docker.service") ==
            (user == "alice" ? "../docker.service\n" : "/home/bob/.config/systemd/user/docker.service\n"));
      CHECK(Exec(sbx, "stat -c '%U' /home/" + user + "/.config/systemd/user/default.target.wants") == user + "\n");
    }
    // getsubids reads /etc/subuid (and -g /etc/subgid) as newuidmap does: alice's uid-keyed line is gone (it would
    // have been listed as hers), her labfleet range is there; carol's line is kept as it was.
    CHECK(Exec(sbx, "getsubids alice") == "0: alice 69633696 65536\n");
    CHECK(Exec(sbx, "getsubids -g alice") == "0: alice 69633696 65536\n");
    CHECK(Exec(sbx, "getsubids bob") == "0: bob 69699232 65536\n");
    CHECK(Exec(sbx, "getsubids carol") == "0: carol 69640000 65536\n");
    // loginctl was not asked (no systemd in the node): the linger files were written instead.
    // For bob (his manager runs) systemctl --user ran once, as bob, with his XDG_RUNTIME_DIR; never for alice.
    int user_calls = 0;
    for (const auto& c : DoubleCalls(sbx, "node1"))
      if (c.find("--user") != std::string::npos) {
        ++user_calls;
        CHECK(c == "systemctl --user enable --now docker.service [uid=2062 XDG_RUNTIME_DIR=/run/user/2062]");
      }
    CHECK(user_calls == 1);
    CHECK(Exec(sbx, "cat /var/lib/labfleet-doubles/user/2062/units/docker.service") == "file=enabled\nactive=active\n");

    auto replan = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(replan.out << replan.err);
    CHECK(replan.rc == 0);
    CHECK(replan.out.find("overlaps line") != std::string::npos);  // still reported: the overlap is still there

    // mallory replaces ~/.config with a link to /etc, then gets rootless Docker: refused, nothing written.
    MustExec(sbx, "node1", "runuser -u mallory -- sh -c 'rm -rf /home/mallory/.config && ln -s /etc /home/mallory/.config'");
    inv.write("inventory/lab.yaml", Inventory(true));
    auto r = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.out.find("refused: rootless docker daemon.json of mallory") != std::string::npos);
    // /etc/docker/daemon.json is the system daemon's (the docker module's); none of mallory's settings reached it.
    CHECK(sbx.exec("node1", "grep -q mallory /etc/docker/daemon.json || test -e /etc/systemd/user/docker.service || "
                            "test -e /etc/systemd/user/default.target.wants").exit_code != 0);
    CHECK(sbx.exec("node1", "test -e /local/docker-rootless/mallory").exit_code != 0);
    CHECK(sbx.exec("node1", "test -e /var/lib/systemd/linger/mallory").exit_code != 0);
  }
}
