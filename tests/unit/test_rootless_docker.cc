// rootless_docker: settings validated offline with file:line:col, the per-user plan from raw captured probe
// output (dpkg-query of this build machine, `ls -1A` of a linger directory; one garbage line in each), the
// daemon.json built from the lab's docker settings, refusals below a user's planted link, an empty plan when
// everything is in place.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include "engine/file_probe.h"
#include "modules/docker_lab.h"
#include "tests/unit/module_helpers.h"

namespace labfleet {
std::set<std::string> ParseLingerList(std::string_view text);
}  // namespace labfleet

using namespace labfleet;
namespace lt = labfleet::testing;

namespace {

const std::string kPkgKey = "dpkg-query:docker-ce docker-ce-rootless-extras uidmap docker.io rootlesskit slirp4netns";

std::string Lab(const std::string& rootless, const std::string& docker = "") {
  return "lab: { name: t }\nnodes:\n  n1:\n    address: 10.9.0.1\n" +
         (docker.empty() ? std::string() : "    docker: " + docker + "\n") +
         (rootless.empty() ? std::string() : "    rootless_docker: " + rootless + "\n") +
         "users:\n  alice: { uid: 2001, rootless_docker: true }\n  bob: { uid: 2002 }\n";
}

const std::string kDocker =
    "{ data_root: /local/.docker, address_pools: [{ base: 172.28.0.0/16, size: 24 }], "
    "registry_mirrors: [\"https://mirror.lab:5000\"], proxy: { http: \"http://10.0.1.68:8889\", no_proxy: [localhost, .lab] } }";

// A directory as the batched file probe reports it.
std::string Dir(const std::string& owner, const std::string& group, const std::string& mode = "700") {
  return "present " + mode + " " + owner + " " + group + " directory\n";
}
std::string UserFile(const std::string& content) { return "present 644 alice alice regular file\n" + content; }

ProbeResults Base(const std::string& dpkg_fixture = "rootless/dpkg-query-distro.txt") {
  ProbeResults r;
  r["pkg-manager"] = {0, "apt\n"};
  r[kPkgKey] = {1, lt::Fixture(dpkg_fixture)};
  r["rootless-docker:linger"] = {0, lt::Fixture("rootless/linger-ls.txt")};
  return r;
}

}  // namespace

TEST_SUITE("rootless_docker") {
  TEST_CASE("linger listing: names, garbage skipped") {
    auto names = ParseLingerList(lt::Fixture("rootless/linger-ls.txt"));
    CHECK(names == std::set<std::string>{"alice", "bob"});
  }

  TEST_CASE("validate: data_root needs {{user}}, is absolute, outside the system daemon's; packages choice") {
    Findings f;
    lt::Load(Lab("{ data_root: /local/docker, packages: snap }"), &f);
    std::string all = lt::All(f);
    CHECK(all.find("test.yaml:5:35: rootless-data-root-user: rootless_docker data_root '/local/docker' must contain "
                   "{{user}}") != std::string::npos);
    CHECK(all.find("invalid-value") != std::string::npos);
    CHECK(all.find("snap") != std::string::npos);

    Findings g;
    lt::Load(Lab("{ data_root: \"local/{{user}}\" }"), &g);
    CHECK(lt::All(g).find("test.yaml:5:35:") != std::string::npos);

    Findings h;
    lt::Load(Lab("{ data_root: \"/local/.docker/{{user}}\" }", kDocker), &h);
    CHECK(lt::All(h).find("test.yaml:6:35: rootless-data-root-in-docker: rootless_docker data_root "
                          "'/local/.docker/{{user}}' lies inside the system Docker daemon's data_root '/local/.docker' "
                          "(inventory/test.yaml:5:26) on node 'n1'") != std::string::npos);

    Findings ok;
    lt::Load(Lab("{ data_root: \"/local/docker-rootless/{{user}}\", packages: distro }", kDocker), &ok);
    CHECK_MESSAGE(!ok.has_errors(), lt::All(ok));
  }

  TEST_CASE("daemon.json from the lab's docker settings (the docker module's builder)") {
    Inventory inv = lt::Load(Lab("{}", kDocker));
    Value eff = inv.settings(inv.nodes[0]);
    DockerForUsers lab = DockerSettingsForUsers(*eff.find("docker"));
    CHECK(lab.daemon_json.dump() ==
          R"({"default-address-pools":[{"base":"172.28.0.0/16","size":24}],"registry-mirrors":["https://mirror.lab:5000"]})");
    CHECK(lab.http_proxy == "http://10.0.1.68:8889");
    CHECK(lab.no_proxy == "localhost,.lab");
  }

  TEST_CASE("a node without rootless_docker settings gets nothing from this module") {
    Inventory inv = lt::Load(Lab(""));
    auto run = lt::RunModule(inv, "rootless_docker", Base());
    CHECK(run.changes.empty());
    CHECK(run.probe_keys.empty());
  }

  TEST_CASE("first apply: packages (distro flavor), linger, data root, daemon.json and unit as alice, enable") {
    Inventory inv = lt::Load(Lab("{ data_root: \"/local/docker-rootless/{{user}}\" }", kDocker));
    ProbeResults r = Base();
    r["rootless-docker:linger"] = {0, "bob\nnot a user name!\n"};
    auto run = lt::RunModule(inv, "rootless_docker", r);
    INFO(run.all_notes());
    REQUIRE(run.changes.size() == 6);
    CHECK(run.changes[0].summary == "rootless docker packages: install docker.io, rootlesskit, slirp4netns");
    CHECK(run.changes[0].command.find("apt-get install -y -q --no-install-recommends -o 'Dpkg::Options::=--force-confold' -- docker.io rootlesskit slirp4netns || { apt-get update -q &&") != std::string::npos);
    CHECK(run.changes[1].summary == "linger for alice (loginctl enable-linger)");
    CHECK(run.changes[1].command.find("then loginctl enable-linger -- alice; else lf_where /var/lib/systemd/linger/alice root root || exit 1;") != std::string::npos);
    CHECK(run.changes[1].command.find(": > /var/lib/systemd/linger/alice") != std::string::npos);
    CHECK(run.changes[2].command == "lf_mkdir /local/docker-rootless/alice 0700 alice alice");
    // daemon.json: written by alice (owner alice: lf_where makes it her write below her home)
    REQUIRE(run.changes[3].kind == Change::Kind::PutFile);
    CHECK(run.changes[3].file.path == "/home/alice/.config/docker/daemon.json");
    CHECK(run.changes[3].file.owner == "alice");
    auto j = nlohmann::json::parse(run.changes[3].file.bytes);
    CHECK(j["data-root"] == "/local/docker-rootless/alice");
    CHECK(j["default-address-pools"][0]["base"] == "172.28.0.0/16");
    CHECK(j["registry-mirrors"][0] == "https://mirror.lab:5000");
    CHECK(!j.contains("proxies"));  // distro dockerd 20.10 has no such key: the proxy is in the unit
    CHECK(run.changes[4].file.path == "/home/alice/.config/systemd/user/docker.service");
    CHECK(run.changes[4].file.bytes.find("ExecStart=/usr/share/docker.io/contrib/dockerd-rootless.sh\n") != std::string::npos);
    CHECK(run.changes[4].file.bytes.find("Environment=\"HTTP_PROXY=http://10.0.1.68:8889\"\n") != std::string::npos);
    CHECK(run.changes[4].file.bytes.find("Environment=\"NO_PROXY=localhost,.lab\"\n") != std::string::npos);
    CHECK(run.changes[5].summary == "rootless docker service of alice (systemctl --user enable)");
    CHECK(run.changes[5].command.find("then setpriv '--reuid=alice' '--regid=alice' --init-groups -- env "
                                      "'HOME=/home/alice' \"XDG_RUNTIME_DIR=/run/user/$lf_uid\" systemctl --user "
                                      "enable --now docker.service; else setpriv") != std::string::npos);
    // bob (no rootless_docker) is not set up
    for (const auto& c : run.changes) CHECK(c.summary.find("bob") == std::string::npos);
  }

  TEST_CASE("docker-ce flavor: its packages, its dockerd-rootless.sh, the proxy as daemon.json proxies") {
    Inventory inv = lt::Load(Lab("{ data_root: \"/local/docker-rootless/{{user}}\" }", kDocker));
    ProbeResults r = Base();
    // dpkg-query's line for an installed docker-ce (the format of the captured fixture's uidmap line)
    r[kPkgKey].out = "docker-ce\tinstall ok installed\t5:24.0.7-1~debian.12~bookworm\n" + r[kPkgKey].out;
    auto run = lt::RunModule(inv, "rootless_docker", r);
    REQUIRE(!run.changes.empty());
    CHECK(run.changes[0].summary == "rootless docker packages: install docker-ce-rootless-extras");
    bool unit = false, json = false;
    for (const auto& c : run.changes) {
      if (c.file.path == "/home/alice/.config/systemd/user/docker.service") {
        unit = true;
        CHECK(c.file.bytes.find("ExecStart=/usr/bin/dockerd-rootless.sh\n") != std::string::npos);
        CHECK(c.file.bytes.find("HTTP_PROXY") == std::string::npos);
      }
      if (c.file.path == "/home/alice/.config/docker/daemon.json") {
        json = true;
        auto j = nlohmann::json::parse(c.file.bytes);
        CHECK(j["proxies"]["http-proxy"] == "http://10.0.1.68:8889");
        CHECK(j["proxies"]["no-proxy"] == "localhost,.lab");
      }
    }
    CHECK(unit);
    CHECK(json);
  }

  TEST_CASE("converged: nothing to do; a changed daemon.json try-restarts alice's daemon (disruptive)") {
    Inventory inv = lt::Load(Lab("{ data_root: \"/local/docker-rootless/{{user}}\", packages: none }", kDocker));
    ProbeResults r = Base();
    // First run's files, taken from a plan on an empty node.
    ProbeResults empty = Base();
    auto first = lt::RunModule(inv, "rootless_docker", empty);
    std::string json, unit;
    for (const auto& c : first.changes) {
      if (c.file.path.ends_with("daemon.json")) json = c.file.bytes;
      if (c.file.path.ends_with("docker.service")) unit = c.file.bytes;
    }
    REQUIRE(!json.empty());
    r["file:/local/docker-rootless/alice"] = {0, Dir("alice", "alice")};
    // same JSON, other formatting: not a change
    r["file:/home/alice/.config/docker/daemon.json"] = {0, UserFile(nlohmann::json::parse(json).dump() + "\n")};
    r["file:/home/alice/.config/systemd/user/docker.service"] = {0, UserFile(unit)};
    r["rootless-docker:enabled:alice"] = {0, "/home/alice/.config/systemd/user/docker.service\n"};
    auto run = lt::RunModule(inv, "rootless_docker", r);
    INFO(run.all_notes());
    CHECK(run.changes.empty());
    CHECK(run.all_notes().find("nothing to do because rootless Docker of alice is set up (distro, linger, "
                               "/local/docker-rootless/alice, enabled)") != std::string::npos);

    r["file:/home/alice/.config/docker/daemon.json"] = {0, UserFile("{\"data-root\": \"/old\"}\n")};
    run = lt::RunModule(inv, "rootless_docker", r);
    REQUIRE(run.changes.size() == 2);
    CHECK(run.changes[0].file.path == "/home/alice/.config/docker/daemon.json");
    CHECK(run.changes[1].kind == Change::Kind::Notify);
    CHECK(run.changes[1].handler == "restart rootless docker of alice");
    CHECK(run.changes[1].disruptive);
  }

  TEST_CASE("refused: ~/.config a link, a data root of another user, a data root that is a link") {
    Inventory inv = lt::Load(Lab("{ data_root: \"/local/docker-rootless/{{user}}\", packages: none }"));
    ProbeResults r = Base();
    // ~/.config is alice's link to /etc: the probe reports it above both files
    const std::string unsafe = "\tunsafe=link:alice:/home/alice/.config\n";
    r["file:/home/alice/.config/docker/daemon.json"] = {0, "absent" + unsafe};
    r["file:/home/alice/.config/systemd/user/docker.service"] = {0, "absent" + unsafe};
    auto run = lt::RunModule(inv, "rootless_docker", r);
    INFO(run.all_notes());
    CHECK(run.changes.empty());
    REQUIRE(!run.warnings.empty());
    CHECK(run.warnings[0].find("refused") != std::string::npos);
    CHECK(run.warnings[0].find("/home/alice/.config") != std::string::npos);

    ProbeResults s = Base();
    s["file:/local/docker-rootless/alice"] = {0, Dir("bob", "bob")};
    run = lt::RunModule(inv, "rootless_docker", s);
    CHECK(run.changes.empty());
    REQUIRE(run.warnings.size() == 1);
    CHECK(run.warnings[0].find("/local/docker-rootless/alice belongs to bob, not alice") != std::string::npos);

    s["file:/local/docker-rootless/alice"] = {0, "present 777 alice alice symbolic link\n"};
    run = lt::RunModule(inv, "rootless_docker", s);
    CHECK(run.changes.empty());
    REQUIRE(run.warnings.size() == 1);
    CHECK(run.warnings[0].find("is a symbolic link, not a directory") != std::string::npos);
  }

  TEST_CASE("packages on a pacman node: the node fails with what to do") {
    Inventory inv = lt::Load(Lab("{}"));
    ProbeResults r = Base();
    r["pkg-manager"] = {0, "pacman\n"};
    auto run = lt::RunModule(inv, "rootless_docker", r);
    REQUIRE(!run.errors.empty());
    CHECK(run.errors[0].find("set rootless_docker.packages: none") != std::string::npos);
  }
}
