// apt_repos, package_mirror.apt replacing the distribution's sources, and packages `state: latest`, on a real
// sandbox node with real apt: a signed flat repository (dpkg-deb, apt-ftparchive, gpg --clearsign with a key
// generated here) served as file:/srv/labrepo inside the node. Independent checks inside the node: `apt-get
// update`, `apt-cache policy`, dpkg-query, and `gpg --dearmor` of the same key compared with what labfleet wrote.
// Everything apt does here writes the node's overlay (/etc/apt, /var/lib/apt, /var/lib/dpkg of the node); the
// test checks that the host's /etc/apt/sources.list.d is untouched. Nothing is fetched from the network.
#include <doctest/doctest.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

const char* kGpg = "env GNUPGHOME=/srv/gnupg gpg --batch --quiet --no-tty";

// A tiny package PKG VERSION into the flat repository REPO, then its index and Release; InRelease signed with the
// key 'lab repo' when `sign`.
void Publish(const Sandbox& sbx, const std::string& version, const std::string& pkg = "lf-tool",
             const std::string& repo = "/srv/labrepo", bool sign = true) {
  std::string dir = "/srv/build/" + pkg + "_" + version;
  MustExec(sbx, "node1",
           "set -e; mkdir -p " + dir + "/DEBIAN " + repo + "; printf '%s\\n' 'Package: " + pkg + "' 'Version: " + version +
               "' 'Architecture: all' 'Maintainer: labfleet tests <t@labfleet.invalid>' "
               "'Description: labfleet apt_repos test package' > " + dir + "/DEBIAN/control; "
               "dpkg-deb --build -Zgzip " + dir + " " + repo + "/" + pkg + "_" + version + "_all.deb >/dev/null; "
               "cd " + repo + " && apt-ftparchive packages . > Packages && rm -f Release InRelease && "
               "apt-ftparchive release . > Release.new && mv Release.new Release" +
               (sign ? " && " + std::string(kGpg) + " --local-user 'lab repo' --clearsign -o InRelease Release" : ""));
}

std::string Dpkg(const Sandbox& sbx) {
  return sbx.exec("node1", "dpkg-query -W -f='${Package} ${Status} ${Version}\\n' lf-tool 2>/dev/null").out;
}

std::string ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// The host's apt sources and keyrings: names and contents (the node's apt must never change them).
std::string HostApt() {
  std::string out;
  for (const char* dir : {"/etc/apt/sources.list.d", "/etc/apt/keyrings"}) {
    std::error_code ec;
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) names.push_back(e.path().string());
    std::sort(names.begin(), names.end());
    for (const auto& n : names) out += n + "\n" + ReadAll(n) + "\n";
  }
  return out + ReadAll("/etc/apt/sources.list");
}

struct Inv : TempInventory {
  using TempInventory::TempInventory;
  void lab(const std::string& extra) const {
    defaults("    package_mirror:\n"
             "      apt: { url: \"file:/srv/mirror\", suites: [./], trusted: true }\n" +
             extra);
  }
  void repo(const std::string& key, const std::string& packages = "{ lf-tool: latest }") const {
    lab("    apt_repos:\n"
        "      - { name: lab, uris: \"file:/srv/labrepo\", suites: [./], key: " + key + " }\n"
        "    packages: " + packages + "\n");
  }
};

}  // namespace

TEST_SUITE("integration-apt") {
  TEST_CASE("a signed repository with its key, the mirror replacing the distribution's sources, state latest") {
    const std::string host_before = HostApt();
    Sandbox sbx({.nodes = 1});
    // The repository key (and a wrong one), generated inside the node.
    MustExec(sbx, "node1",
             "set -e; mkdir -p -m 0700 /srv/gnupg; " + std::string(kGpg) +
                 " --passphrase '' --quick-gen-key 'lab repo' ed25519 sign never; " + kGpg +
                 " --passphrase '' --quick-gen-key 'wrong key' ed25519 sign never");
    Publish(sbx, "1.0-1");
    Publish(sbx, "1.0", "lf-mirrored", "/srv/mirror", /*sign=*/false);  // the "mirror": unsigned, trusted=yes
    Inv inv(sbx);
    inv.write("inventory/files/lab.asc", Exec(sbx, std::string(kGpg) + " --armor --export 'lab repo'"));
    inv.write("inventory/files/wrong.gpg", Exec(sbx, std::string(kGpg) + " --export 'wrong key' | base64 -w0"));
    // A binary (not armored) key file: what came back as base64, decoded.
    inv.write("inventory/files/wrong.gpg", Base64Decode(ReadAll(inv.root / "inventory/files/wrong.gpg")));

    // 1. The mirror alone: the distribution's sources (copied from the host into the node's overlay) move aside.
    REQUIRE(Exec(sbx, "ls /etc/apt/sources.list.d/").find("debian.sources") != std::string::npos);
    inv.lab("");
    auto a1 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(a1.out << a1.err);
    REQUIRE(a1.rc == 0);
    CHECK(Summaries(a1) ==
          "apt: move the distribution's sources aside to /var/lib/labfleet/apt-orig: "
          "/etc/apt/sources.list.d/debian.sources | apt mirror /etc/apt/sources.list.d/labfleet-mirror.list | "
          "apt-get update (package lists from the new mirror)");
    // (The host's *.disabled-by-farm files, which apt ignores, are no distribution sources and stay.)
    CHECK(Exec(sbx, "ls /etc/apt/sources.list.d/ | grep -v '[.]disabled-by-farm$'") == "labfleet-mirror.list\n");
    CHECK(Exec(sbx, "cat /var/lib/labfleet/apt-orig/debian.sources") ==
          ReadAll("/etc/apt/sources.list.d/debian.sources"));  // the host's file, kept whole

    // 2. The signed repository and a package of it, in one apply: key, source, update, then the install.
    inv.repo("files/lab.asc");
    auto a2 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(a2.out << a2.err);
    REQUIRE(a2.rc == 0);
    CHECK(Summaries(a2) ==
          "apt key /etc/apt/keyrings/labfleet-lab.gpg | apt source /etc/apt/sources.list.d/labfleet-lab.sources | "
          "apt-get update (apt_repos changed) | packages: install lf-tool");
    CHECK(a2.json()["apply"][0]["status"] == "changed");  // its re-plan was empty
    CHECK(Dpkg(sbx) == "lf-tool install ok installed 1.0-1\n");
    // Independent: apt itself verifies the repository with the key labfleet wrote; gpg dearmors the same key to
    // the same bytes; apt-cache policy shows the repository.
    CHECK(sbx.exec("node1", "apt-get update --error-on=any -q >/dev/null 2>&1").exit_code == 0);
    CHECK(sbx.exec("node1", std::string(kGpg) + " --armor --export 'lab repo' | gpg --dearmor | "
                                                "cmp - /etc/apt/keyrings/labfleet-lab.gpg").exit_code == 0);
    CHECK(Exec(sbx, "apt-cache policy lf-tool").find("file:/srv/labrepo ./ Packages") != std::string::npos);
    CHECK(Exec(sbx, "cat /etc/apt/sources.list.d/labfleet-lab.sources") ==
          "# Managed by labfleet (apt_repos: lab); edits here are overwritten.\nTypes: deb\nURIs: file:/srv/labrepo\n"
          "Suites: ./\nSigned-By: /etc/apt/keyrings/labfleet-lab.gpg\n");
    auto p2 = Cli(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(p2.out << p2.err);
    CHECK(p2.rc == 0);

    // 3. state latest: a newer version is published and the node's lists learn it (as apt's daily timer
    // would): exactly the upgrade.
    Publish(sbx, "1.1-1");
    Exec(sbx, "apt-get update -q >/dev/null 2>&1");
    auto a3 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(a3.out << a3.err);
    REQUIRE(a3.rc == 0);
    CHECK(Summaries(a3) == "packages: upgrade lf-tool");
    CHECK(Dpkg(sbx) == "lf-tool install ok installed 1.1-1\n");
    CHECK(Exec(sbx, "apt-cache policy lf-tool | sed -n 2,3p") == "  Installed: 1.1-1\n  Candidate: 1.1-1\n");

    // 4. A wrong key (binary file this time): apt-get update fails, labfleet says so, and the update stays owed.
    inv.repo("files/wrong.gpg");
    auto a4 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(a4.out << a4.err);
    CHECK(a4.rc != 0);
    CHECK(a4.json()["apply"][0]["status"] == "failed");
    CHECK(a4.out.find("apt-get update (apt_repos changed)") != std::string::npos);
    CHECK(a4.json()["apply"][0]["error"].get<std::string>().find("NO_PUBKEY") != std::string::npos);  // apt's why
    CHECK(sbx.exec("node1", "apt-get update --error-on=any -q >/dev/null 2>&1").exit_code != 0);  // apt agrees
    auto p4 = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(p4.out << p4.err);
    CHECK(Summaries(p4) == "apt-get update (apt_repos changed)");

    // 5. The right key again converges. Meanwhile a distribution source came back (an upgrade reinstalled it),
    // one the node cannot reach (as behind a mirror): it is moved aside BEFORE apt_repos' update, which would fail
    // on it (--error-on=any); the first copy kept in apt-orig stays the host's.
    Exec(sbx, "printf 'Types: deb\\nURIs: file:/srv/unreachable\\nSuites: ./\\n' > /etc/apt/sources.list.d/debian.sources");
    inv.repo("files/lab.asc");
    auto a5 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(a5.out << a5.err);
    REQUIRE(a5.rc == 0);
    CHECK(Summaries(a5) ==
          "apt: move the distribution's sources aside to /var/lib/labfleet/apt-orig: /etc/apt/sources.list.d/debian.sources"
          " | apt key /etc/apt/keyrings/labfleet-lab.gpg | apt-get update (apt_repos changed) | apt-get update (package "
          "lists from the new mirror)");
    CHECK(Exec(sbx, "cat /var/lib/labfleet/apt-orig/debian.sources") == ReadAll("/etc/apt/sources.list.d/debian.sources"));
    // Then the repository is dropped: its files go, the lists follow.
    inv.lab("    apt_repos: []\n    packages: { lf-tool: installed }\n");
    auto a6 = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(a6.out << a6.err);
    REQUIRE(a6.rc == 0);
    CHECK(Summaries(a6) == "apt: remove /etc/apt/keyrings/labfleet-lab.gpg | apt: remove "
                           "/etc/apt/sources.list.d/labfleet-lab.sources | apt-get update (apt_repos changed)");
    CHECK(Exec(sbx, "ls /etc/apt/sources.list.d/ /etc/apt/keyrings/ | grep labfleet") == "labfleet-mirror.list\n");
    CHECK(Exec(sbx, "apt-cache policy lf-tool").find("labrepo") == std::string::npos);

    // The host's apt configuration never changed.
    CHECK(HostApt() == host_before);
    std::error_code ec;  // and the host's package lists never saw the node's repositories
    for (const auto& e : std::filesystem::directory_iterator("/var/lib/apt/lists", ec))
      CHECK(e.path().filename().string().find("_srv_") == std::string::npos);
  }
}
