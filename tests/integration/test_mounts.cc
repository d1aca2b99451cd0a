// mounts module on a real sandbox node: /etc/fstab's labfleet block next to an admin's own line (kept byte for
// byte), mount points, FS-Cache (cachefilesd from a local apt repository; systemctl is the recording test
// double), a tmpfs really mounted by mount_now inside the node's mount namespace, and a mount_now that cannot
// mount (NFS to a host that does not resolve; this kernel has no NFS at all) reported without undoing fstab; a
// block that fails `findmnt --verify` (a LABEL= no disk has) and the previous /etc/fstab restored byte for byte.
// Independent checks inside the node: `findmnt --verify --tab-file /etc/fstab`, `findmnt`, `stat`, dpkg-query.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/cli.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

namespace fs = std::filesystem;
using namespace labfleet::testing;

namespace {

struct Run {
  int rc;
  std::string out, err;
  nlohmann::json json() const { return nlohmann::json::parse(out); }
};

Run Lf(const Sandbox& sbx, const std::string& inv, std::vector<std::string> args) {
  std::vector<std::string> all{"--inventory", inv};
  all.insert(all.end(), args.begin(), args.end());
  all.push_back("--known-hosts");
  all.push_back(sbx.known_hosts());
  std::vector<const char*> argv{"labfleet"};
  for (auto& a : all) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int rc = labfleet::RunCli(int(argv.size()), argv.data(), out, err);
  return {rc, out.str(), err.str()};
}

// `labfleet --inventory INV validate`: its exit code (0: no errors).
int Validate(const std::string& inv) {
  const char* argv[] = {"labfleet", "--inventory", inv.c_str(), "validate"};
  std::ostringstream out, err;
  return labfleet::RunCli(4, argv, out, err);
}

// A throwaway inventory (host side) with the sandbox's nodes and `mounts:` in lab.defaults.
struct MountsInv {
  fs::path root;
  explicit MountsInv(const Sandbox& sbx) {
    char tmpl[] = "/var/tmp/labfleet-inv-XXXXXX";
    root = mkdtemp(tmpl);
    fs::create_directories(root / "inventory");
    std::ofstream(root / "inventory/nodes.yaml") << sbx.nodes_yaml();
  }
  ~MountsInv() { fs::remove_all(root); }
  std::string dir() const { return (root / "inventory").string(); }
  void mounts(const std::string& items) const {
    std::ofstream(root / "inventory/lab.yaml") << "lab:\n  name: t\n  defaults:\n    mounts:\n" << items;
  }
};

std::string In(const Sandbox& sbx, const std::string& cmd) {
  auto r = sbx.exec("node1", cmd);
  INFO(cmd << " -> exit " << r.exit_code << ": " << r.out << r.err);
  CHECK(r.exit_code == 0);
  return r.out;
}

std::string Summaries(const nlohmann::json& doc) {
  std::string out;
  for (const auto& node : doc["plan"])
    for (const auto& c : node["changes"]) out += (out.empty() ? "" : " | ") + c["summary"].get<std::string>();
  return out;
}

size_t Changes(const nlohmann::json& doc) {
  size_t n = 0;
  for (const auto& node : doc["plan"]) n += node["changes"].size();
  return n;
}

// The admin's own fstab before labfleet: odd spacing on purpose, and a mount point that exists.
const std::string kUserFstab =
    "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"
    "tmpfs\t/srv/user-scratch   tmpfs  size=8m,mode=1777   0 0\n";

const std::string kHome =
    "      - { source: \"nas.invalid:/export/home\", target: /mnt/home, type: nfs, options: [VERS, hard], automount: true }\n";
const std::string kScratch =
    "      - { target: /mnt/scratch, type: tmpfs, options: [size=64m, mode=1777], mount_now: true }\n";
const std::string kData = "      - { source: \"nas.invalid:/export/data\", target: /mnt/data, type: nfs, options: [ro, fsc] }\n";

std::string Home(const std::string& vers) {
  std::string s = kHome;
  s.replace(s.find("VERS"), 4, vers);
  return s;
}

}  // namespace

TEST_SUITE("integration-mounts") {
  TEST_CASE("fstab block beside the admin's line, mount points, cachefilesd for fsc, mount_now of a tmpfs") {
    Sandbox sbx({.nodes = 1});
    InstallDoubles(sbx, "node1", {"systemctl"});
    SeedUnit(sbx, "node1", "cachefilesd.service", "disabled", "inactive");
    BuildLocalAptRepo(sbx, "node1", {{"cachefilesd", "0.10.10-0.2", ""}});
    UseLocalAptRepo(sbx, "node1");
    MustExec(sbx, "node1", "mkdir -p /srv/user-scratch && printf '%s' '" + kUserFstab + "' > /etc/fstab");
    ClearDoubleCalls(sbx, "node1");
    MountsInv inv(sbx);
    inv.mounts(Home("vers=4.2") + kScratch + kData);

    auto r = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(r.json()["apply"][0]["status"] == "changed");
    CHECK(Summaries(r.json()) ==
          "cachefilesd package (install; fsc on /mnt/data) | cachefilesd RUN=yes in /etc/default/cachefilesd | "
          "service cachefilesd.service (enable, start; fsc on /mnt/data) | mount point /mnt/home (mkdir, 0755) | "
          "mount point /mnt/scratch (mkdir, 0755) | mount point /mnt/data (mkdir, 0755) | "
          "fstab block in /etc/fstab (3 mounts) | mount /mnt/scratch now (mount_now; a failure is reported, fstab stays)");

    // Independent checks inside the node.
    const std::string fstab = In(sbx, "cat /etc/fstab");
    CHECK(fstab == kUserFstab +
                       "# BEGIN labfleet mounts: edits inside are overwritten\n"
                       "nas.invalid:/export/home /mnt/home nfs "
                       "vers=4.2,hard,noauto,x-systemd.automount,x-systemd.idle-timeout=600,_netdev 0 0\n"
                       "tmpfs /mnt/scratch tmpfs size=64m,mode=1777 0 0\n"
                       "nas.invalid:/export/data /mnt/data nfs ro,fsc 0 0\n"
                       "# END labfleet mounts\n");
    // findmnt does not check network sources at all: the unresolvable NFS host is neither an error nor a warning.
    auto verify = sbx.exec("node1", "findmnt --verify --verbose --tab-file /etc/fstab 2>&1");
    INFO(verify.out);
    CHECK(verify.exit_code == 0);
    CHECK(verify.out.find("Success, no errors or warnings detected") != std::string::npos);
    CHECK(verify.out.find("do not check nas.invalid:/export/home source (pseudo/net)") != std::string::npos);
    CHECK(In(sbx, "stat -c '%F %a %U' /mnt/home /mnt/data") == "directory 755 root\ndirectory 755 root\n");
    CHECK(In(sbx, "findmnt -rn -o FSTYPE,OPTIONS --mountpoint /mnt/scratch") == "tmpfs rw,relatime,size=65536k\n");
    CHECK(sbx.exec("node1", "findmnt -rn --mountpoint /mnt/home").exit_code != 0);  // nothing to mount it with here
    CHECK(DoubleActions(sbx, "node1") ==
          std::vector<std::string>{"systemctl enable cachefilesd.service", "systemctl start cachefilesd.service"});
    CHECK(In(sbx, "dpkg-query -W -f='${Status}' cachefilesd") == "install ok installed");
    CHECK(In(sbx, "grep -x 'RUN=yes' /etc/default/cachefilesd") == "RUN=yes\n");

    // Converged: the re-plan is empty (the executor checked it too).
    auto plan = Lf(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    INFO(plan.out << plan.err);
    CHECK(plan.rc == 0);

    // Whitespace inside the block is not a change.
    In(sbx, "sed -i 's|^tmpfs /mnt/scratch tmpfs |tmpfs\\t/mnt/scratch\\t\\ttmpfs   |' /etc/fstab");
    CHECK(In(sbx, "grep -c '/mnt/scratch\t\ttmpfs' /etc/fstab") == "1\n");
    CHECK(Lf(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);

    // One option changes: exactly one change, the block; the mounted tmpfs is left alone.
    inv.mounts(Home("vers=4.1") + kScratch + kData);
    auto plan2 = Lf(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(plan2.out << plan2.err);
    CHECK(Changes(plan2.json()) == 1);
    CHECK(Summaries(plan2.json()) == "fstab block in /etc/fstab (3 mounts)");
    CHECK(plan2.json()["plan"][0]["changes"][0]["reason"] == "changed: /mnt/home");
    ClearDoubleCalls(sbx, "node1");
    auto r2 = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r2.out << r2.err);
    CHECK(r2.rc == 0);
    CHECK(In(sbx, "grep -c 'vers=4.1,hard' /etc/fstab") == "1\n");
    CHECK(In(sbx, "head -c " + std::to_string(kUserFstab.size()) + " /etc/fstab") == kUserFstab);
    CHECK(DoubleActions(sbx, "node1").empty());
    CHECK(sbx.exec("node1", "findmnt -rn --mountpoint /mnt/scratch").exit_code == 0);

    // A broken line of the admin's (its mount point is missing: an error for findmnt --verify of the whole
    // file) does not stop labfleet: only labfleet's block is verified, and the admin's line is kept as it is.
    const std::string broken = "/dev/labfleet-test-nonexistent /srv/not-there ext4 defaults 0 2\n";
    In(sbx, "printf '%s' '" + broken + "' >> /etc/fstab");
    CHECK(sbx.exec("node1", "findmnt --verify --tab-file /etc/fstab").exit_code != 0);
    inv.mounts(Home("vers=4.2") + kScratch + kData);
    auto r3 = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r3.out << r3.err);
    CHECK(r3.rc == 0);
    CHECK(In(sbx, "tail -n 1 /etc/fstab") == broken);
    CHECK(In(sbx, "grep -c 'vers=4.2,hard' /etc/fstab") == "1\n");
    In(sbx, "sed -i '\\|^/dev/labfleet-test-nonexistent |d' /etc/fstab");
    CHECK(In(sbx, "head -c " + std::to_string(kUserFstab.size()) + " /etc/fstab") == kUserFstab);

    // remove: true drops the entry and unmounts (reported as its own change).
    inv.mounts(Home("vers=4.2") + "      - { target: /mnt/scratch, type: tmpfs, remove: true }\n" + kData);
    auto r4 = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r4.out << r4.err);
    CHECK(r4.rc == 0);
    CHECK(Summaries(r4.json()) ==
          "fstab block in /etc/fstab (2 mounts) | unmount /mnt/scratch (remove: true; mounted from tmpfs, tmpfs)");
    CHECK(sbx.exec("node1", "findmnt -rn --mountpoint /mnt/scratch").exit_code != 0);
    CHECK(In(sbx, "grep -c /mnt/scratch /etc/fstab || true") == "0\n");
    CHECK(sbx.exec("node1", "findmnt --verify --tab-file /etc/fstab").exit_code == 0);
    CHECK(Lf(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
    CHECK(In(sbx, "head -c " + std::to_string(kUserFstab.size()) + " /etc/fstab") == kUserFstab);
  }

  TEST_CASE("mount_now that cannot mount: reported as a warning, fstab written, the apply succeeds") {
    Sandbox sbx({.nodes = 1});
    MountsInv inv(sbx);
    inv.mounts("      - { source: \"nosuchhost.invalid:/export\", target: /mnt/broken, options: [vers=4.2], mount_now: true }\n");

    auto r = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    CHECK(r.json()["apply"][0]["status"] == "changed");
    CHECK(In(sbx, "grep -x 'nosuchhost.invalid:/export /mnt/broken nfs vers=4.2 0 0' /etc/fstab") ==
          "nosuchhost.invalid:/export /mnt/broken nfs vers=4.2 0 0\n");
    CHECK(sbx.exec("node1", "findmnt --verify --tab-file /etc/fstab").exit_code == 0);
    CHECK(sbx.exec("node1", "findmnt -rn --mountpoint /mnt/broken").exit_code != 0);
    CHECK(In(sbx, "cat /var/lib/labfleet/mount-now/* | wc -l") == "1\n");

    // Every later plan shows the failure as a warning under the node, and has nothing to do.
    auto plan = Lf(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(plan.out << plan.err);
    CHECK(Changes(plan.json()) == 0);
    const nlohmann::json doc = plan.json();
    const nlohmann::json& warnings = doc["plan"][0]["warnings"];
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0]["resource"] == "mount:/mnt/broken");
    const std::string w = warnings[0]["warning"];
    CHECK(w.find("/mnt/broken is not mounted: mount_now failed at ") == 0);
    // mount's own reason, carried into the warning: without nfs-common the kernel has no helper for "nfs"; with
    // it (CI installs nfs-kernel-server for integration-exports), mount.nfs fails on the name.
    const bool helper = sbx.exec("node1", "test -x /sbin/mount.nfs").exit_code == 0;
    CHECK(w.find("(exit 32: ") != std::string::npos);
    CHECK(w.find(helper ? "Failed to resolve server nosuchhost.invalid" : "unknown filesystem type 'nfs'") !=
          std::string::npos);
    auto text = Lf(sbx, inv.dir(), {"plan", "--detailed-exitcode"});
    CHECK(text.rc == 0);
    CHECK(text.out.find("  ! /mnt/broken is not mounted: mount_now failed") != std::string::npos);

    // A changed entry is tried again (and fails again, reported again).
    inv.mounts("      - { source: \"nosuchhost.invalid:/export\", target: /mnt/broken, options: [vers=4.1], mount_now: true }\n");
    auto plan2 = Lf(sbx, inv.dir(), {"plan", "--format", "json"});
    CHECK(Summaries(plan2.json()) ==
          "fstab block in /etc/fstab (1 mount) | mount /mnt/broken now (mount_now; a failure is reported, fstab stays)");
    auto r2 = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r2.out << r2.err);
    CHECK(r2.rc == 0);
    CHECK(In(sbx, "grep -c 'vers=4.1' /etc/fstab") == "1\n");
  }

  TEST_CASE("labfleet's own block fails findmnt --verify: the previous /etc/fstab comes back byte for byte") {
    // The validator checks an NFS source's form, not a local device's: an ext4 mount of a LABEL= that no disk
    // has passes `labfleet validate`, and findmnt --verify rejects it ("unreachable on boot required source",
    // an error for an entry mounted at boot). A real case: a disk's label mistyped in the inventory.
    Sandbox sbx({.nodes = 1});
    MountsInv inv(sbx);
    const std::string good = "      - { target: /mnt/scratch, type: tmpfs, options: [size=64m] }\n";
    const std::string bad = "      - { source: \"LABEL=labfleet-no-such-disk\", target: /mnt/disk, type: ext4 }\n";
    MustExec(sbx, "node1", "mkdir -p /srv/user-scratch && printf '%s' '" + kUserFstab + "' > /etc/fstab && "
                           "chmod 0640 /etc/fstab");
    inv.mounts(good);
    auto r = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    REQUIRE(r.rc == 0);
    const std::string before = In(sbx, "cat /etc/fstab");
    REQUIRE(before.find("tmpfs /mnt/scratch tmpfs size=64m 0 0\n") != std::string::npos);
    CHECK(Validate(inv.dir()) == 0);  // nothing offline stops it
    inv.mounts(good + bad);
    CHECK(Validate(inv.dir()) == 0);

    r = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    CHECK(r.rc != 0);
    const nlohmann::json doc = r.json();
    CHECK(doc["apply"][0]["status"] == "failed");
    const std::string error = doc["apply"][0].value("error", "");
    CHECK(error.find("unreachable on boot required source: LABEL=labfleet-no-such-disk") != std::string::npos);
    CHECK(error.find("verification of /etc/fstab failed; the previous version was restored") != std::string::npos);
    // Independent checks inside the node: the same bytes, mode and owner, and nothing left beside it.
    CHECK(In(sbx, "cat /etc/fstab") == before);
    CHECK(In(sbx, "stat -c '%a %U:%G' /etc/fstab") == "640 root:root\n");
    CHECK(In(sbx, "ls -a /etc | grep -c '^fstab' || true") == "1\n");
    CHECK(sbx.exec("node1", "findmnt --verify --tab-file /etc/fstab").exit_code == 0);
    // The mount point was made before fstab was written (changes run in order); it is only an empty directory.
    CHECK(In(sbx, "stat -c '%F' /mnt/disk") == "directory\n");
    // Not converged: the next plan still has the block to write.
    auto plan = Lf(sbx, inv.dir(), {"plan", "--format", "json"});
    CHECK(Summaries(plan.json()) == "fstab block in /etc/fstab (2 mounts)");

    // No /etc/fstab before: after the failed verification there is none again.
    In(sbx, "rm /etc/fstab");
    r = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty", "--format", "json"});
    INFO(r.out << r.err);
    CHECK(r.rc != 0);
    CHECK(r.json()["apply"][0]["status"] == "failed");
    CHECK(sbx.exec("node1", "test -e /etc/fstab").exit_code == 1);
    CHECK(In(sbx, "ls -a /etc | grep -c '^fstab' || true") == "0\n");

    // The label fixed out of the inventory: the good block alone is written and verified.
    inv.mounts(good);
    r = Lf(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(r.out << r.err);
    CHECK(r.rc == 0);
    CHECK(In(sbx, "cat /etc/fstab") ==
          "# BEGIN labfleet mounts: edits inside are overwritten\ntmpfs /mnt/scratch tmpfs size=64m 0 0\n"
          "# END labfleet mounts\n");
    CHECK(Lf(sbx, inv.dir(), {"plan", "--detailed-exitcode"}).rc == 0);
  }
}
