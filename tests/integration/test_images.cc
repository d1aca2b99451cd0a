// Root images on real btrfs (issue 12): sandbox nodes whose btrfs (the sandbox's --btrfs: a loop-mounted image in
// each node's own mount namespace, detached with the node also when this test fails) is laid out like a disk: a
// top level holding @ (a small root tree with hostname, machine-id, fstab subvol=@, ssh host keys, binaries) and
// @home, with @ mounted by subvol=@ at /srv/root — images.root points at that mount, as it points at / on a real
// machine. Checked with btrfs itself (`btrfs subvolume show/list/get-default`), never with labfleet's parsers.
#include <doctest/doctest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "engine/image.h"
#include "engine/shell.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet;
using namespace labfleet::testing;
namespace fs = std::filesystem;

namespace {

// The layout of a real disk inside the node's btrfs, and @ mounted at /srv/root by subvol=@.
void MakeDiskLayout(const Sandbox& sbx, const std::string& node) {
  MustExec(sbx, node,
           "set -e; cd /srv/btrfs; btrfs subvolume create @ >/dev/null; btrfs subvolume create @home >/dev/null; "
           "mkdir -p @/etc/ssh @/usr/bin @/var/lib /srv/root; echo " + node + " > @/etc/hostname; "
           "echo machine-" + node + " > @/etc/machine-id; "
           "echo 'LABEL=sbx / btrfs subvol=@,compress=zstd 0 0' > @/etc/fstab; "
           "echo key-" + node + " > @/etc/ssh/ssh_host_ed25519_key; "
           "cp /bin/sh /usr/bin/env /usr/bin/cat @/usr/bin/; "
           "mount -o subvol=@ \"$(findmnt -n -o SOURCE /srv/btrfs | sed 's/\\[.*//')\" /srv/root");
}

// `btrfs subvolume show PATH` field (an independent read with btrfs itself).
std::string Field(const Sandbox& sbx, const std::string& node, const std::string& path, const std::string& key) {
  return MustExec(sbx, node, "btrfs subvolume show " + ShellQuote(path) + " | sed -n 's/^[[:space:]]*" + key +
                                 ":[[:space:]]*//p' | head -n 1 | tr -d '\\n'");
}

}  // namespace

TEST_SUITE("integration-images") {
  TEST_CASE("images: capture, full + incremental fan-out, disk full alone, cut stream, flipped export, activate, rollback") {
    Sandbox sbx({.nodes = 4, .btrfs_mb = 200});
    for (const auto& n : sbx.nodes()) MakeDiskLayout(sbx, n.name);
    // node1 is the golden node: some bulk that does not compress (so a full stream is large and a delta is not)
    MustExec(sbx, "node1", "head -c 8000000 /dev/urandom > /srv/root/usr/bin/bulk");
    // node4's disk is nearly full: the full image cannot land there
    MustExec(sbx, "node4", "a=$(df --output=avail -B1M /srv/btrfs | tail -n 1); "
                         "fallocate -l $((a - 3))M /srv/btrfs/@home/filler && sync && df -B1M /srv/btrfs >&2");
    TempInventory inv(sbx);
    inv.defaults("    images: { root: /srv/root, snapshot_dir: /srv/root/.labfleet-images }\n"
                 "    busy: { command: \"cat /run/lf-busy 2>/dev/null || true\" }\n");
    auto v = Cli({"--inventory", inv.dir(), "validate"});
    INFO(v.out << v.err);
    REQUIRE(v.rc == 0);
    const std::string d = "/srv/root/.labfleet-images";

    // capture
    auto c = Cli(sbx, inv.dir(), {"image", "capture", "node1", "--name", "v1", "--format", "json"});
    INFO(c.out << c.err);
    REQUIRE(c.rc == 0);
    const std::string v1_uuid = Field(sbx, "node1", d + "/v1", "UUID");
    CHECK(c.json()["image"]["uuid"] == v1_uuid);
    CHECK(Field(sbx, "node1", d + "/v1", "Flags") == "readonly");
    CHECK(Field(sbx, "node1", d, "Name") == ".labfleet-images");  // the snapshot dir is a subvolume of its own
    CHECK(MustExec(sbx, "node1", "cat " + d + "/v1/etc/hostname") == "node1\n");

    // full ship to three nodes: node4 fails alone (disk full), nothing of it left; the others finish
    auto s1 = Cli(sbx, inv.dir(), {"image", "ship", "v1", "--from", "node1", "--to", "node2,node3,node4", "--format", "json"});
    INFO(s1.out << s1.err);
    CHECK(s1.rc == 4);
    auto j1 = s1.json();
    REQUIRE(j1["streams"].size() == 1);
    const long long full_bytes = j1["streams"][0]["bytes"];
    CHECK(full_bytes > 7000000);  // the random bulk does not compress
    std::map<std::string, std::string> st;
    for (const auto& t : j1["targets"]) st[t["node"]] = t["status"];
    CHECK(st["node2"] == "done");
    CHECK(st["node3"] == "done");
    CHECK(st["node4"] == "failed");
    for (const char* n : {"node2", "node3"}) {
      CHECK(Field(sbx, n, d + "/v1", "Received UUID") == v1_uuid);
      CHECK(Field(sbx, n, d + "/v1", "Flags") == "readonly");
      CHECK(MustExec(sbx, n, "sha256sum < " + d + "/v1/usr/bin/bulk") ==
            MustExec(sbx, "node1", "sha256sum < " + d + "/v1/usr/bin/bulk"));
    }
    CHECK(MustExec(sbx, "node4", "ls -A " + d) == "");  // no half snapshot, no marker, no stream files
    CHECK(MustExec(sbx, "node4", "btrfs subvolume list -o /srv/root | wc -l") == "1\n");  // only the snapshot dir

    // disk freed: the rerun ships what is missing (node4 only)
    MustExec(sbx, "node4", "rm /srv/btrfs/@home/filler && sync");
    // ... and a storage node keeps the same stream as a file (--store), in the same single read
    MustExec(sbx, "node1", "mkdir /srv/btrfs/store");
    auto s2 = Cli(sbx, inv.dir(), {"image", "ship", "v1", "--from", "node1", "--to", "node2,node3,node4",
                                   "--store", "node1:/srv/btrfs/store", "--format", "json"});
    INFO(s2.out << s2.err);
    CHECK(s2.rc == 0);
    CHECK(s2.json()["streams"].size() == 1);
    for (const auto& t : s2.json()["targets"])
      CHECK(t["status"] == (t["node"] == "node2" || t["node"] == "node3" ? "skipped" : "done"));
    CHECK(MustExec(sbx, "node1", "cd /srv/btrfs/store && sha256sum -c v1.zst.sha256 >/dev/null && "
                                 "zstd -dc v1.zst | btrfs receive --dump | head -n 1 | cut -d' ' -f1") == "subvol\n");
    CHECK(MustExec(sbx, "node1", "ls -A /srv/btrfs/store") == "v1.zst\nv1.zst.manifest.json\nv1.zst.sha256\n");
    CHECK(Field(sbx, "node4", d + "/v1", "Received UUID") == v1_uuid);

    // one file changes on the golden node: the incremental stream is small and lands on all three
    MustExec(sbx, "node1", "echo 'welcome to v2' > /srv/root/etc/motd");
    REQUIRE(Cli(sbx, inv.dir(), {"image", "capture", "node1", "--name", "v2"}).rc == 0);
    const std::string v2_uuid = Field(sbx, "node1", d + "/v2", "UUID");
    auto s3 = Cli(sbx, inv.dir(), {"image", "ship", "v2", "--from", "node1", "--to", "node2,node3,node4", "--format", "json"});
    INFO(s3.out << s3.err);
    CHECK(s3.rc == 0);
    auto j3 = s3.json();
    REQUIRE(j3["streams"].size() == 1);
    const long long delta = j3["streams"][0]["bytes"];
    MESSAGE("bytes on the wire: full " << full_bytes << ", one-file delta " << delta);
    CHECK(j3["streams"][0]["parent"] == "v1");
    CHECK(delta < 16384);
    for (const char* n : {"node2", "node3", "node4"}) {
      CHECK(Field(sbx, n, d + "/v2", "Received UUID") == v2_uuid);
      CHECK(MustExec(sbx, n, "cat " + d + "/v2/etc/motd") == "welcome to v2\n");
      CHECK(MustExec(sbx, n, "cat " + d + "/v2.manifest.json").find("\"parent\":\"v1\"") != std::string::npos);
    }

    // a stream cut halfway: the receiving node keeps no subvolume, and a rerun completes
    auto e = Cli(sbx, inv.dir(), {"image", "export", "v1", "--from", "node1", "-o", (inv.root / "v1.zst").string()});
    INFO(e.out << e.err);
    REQUIRE(e.rc == 0);
    {
      std::string whole = ReadFile(inv.root / "v1.zst");
      REQUIRE(whole.size() > 1000000);
      MustExec(sbx, "node3", "btrfs subvolume delete " + d + "/v2 " + d + "/v1 >/dev/null");
      SshTransport t(Target(sbx, "node3", sbx.known_hosts()));
      ImageSettings s;
      s.root = "/srv/root";
      s.snapshot_dir = d;
      StringSource half(std::string_view(whole).substr(0, whole.size() / 2));
      RunResult r = t.stream(ReceiveScript(s, "v1", "cut"), half);
      CHECK(r.exit_code != 0);
      // only the manifests of the subvolumes deleted above are left: no v1, no marker, no stream files
      CHECK(MustExec(sbx, "node3", "ls -A " + d + " | grep -v '\\.manifest\\.json$' | wc -l") == "0\n");
      CHECK(MustExec(sbx, "node3", "btrfs subvolume list -o /srv/root | wc -l") == "1\n");
      // a whole stream whose hash is not the one labfleet saw pass: the node deletes what it received
      StringSource all(whole);
      RunResult got = t.stream(ReceiveScript(s, "v1", "bad"), all);
      REQUIRE(got.exit_code == 0);
      CHECK(got.out.find("sha256 ") == 0);
      CHECK(MustExec(sbx, "node3", "ls -A " + d + " | grep -c pending") == "1\n");  // not held until verified
      RunResult fin = t.run(FinalizeScript(s, "bad", "v1", std::string(64, '0'), "{}"));
      CHECK(fin.exit_code == 4);
      CHECK(fin.err.find("SHA-256 mismatch") != std::string::npos);
      CHECK(MustExec(sbx, "node3", "ls -A " + d + " | grep -v '\\.manifest\\.json$' | wc -l") == "0\n");
    }
    auto s4 = Cli(sbx, inv.dir(), {"image", "ship", "v2", "--from", "node1", "--to", "node3", "--format", "json"});
    INFO(s4.out << s4.err);
    CHECK(s4.rc == 0);
    CHECK(s4.json()["streams"][0]["parent"] == "");  // node3 holds nothing shared now: the whole image
    CHECK(Field(sbx, "node3", d + "/v2", "Received UUID") == v2_uuid);

    // an export with one byte flipped is refused before any node receives it
    {
      fs::copy_file(inv.root / "v1.zst", inv.root / "bad.zst");
      fs::copy_file(inv.root / "v1.zst.sha256", inv.root / "bad.zst.sha256");
      fs::copy_file(inv.root / "v1.zst.manifest.json", inv.root / "bad.zst.manifest.json");
      std::fstream f(inv.root / "bad.zst", std::ios::in | std::ios::out | std::ios::binary);
      f.seekg(4096);
      char b = 0;
      f.read(&b, 1);
      f.seekp(4096);
      b ^= 0x20;
      f.write(&b, 1);
    }
    MustExec(sbx, "node3", "btrfs subvolume delete " + d + "/v2 >/dev/null; rm -f " + d + "/*.manifest.json");
    auto imp_bad = Cli(sbx, inv.dir(), {"image", "import", (inv.root / "bad.zst").string(), "--to", "node3"});
    INFO(imp_bad.out << imp_bad.err);
    CHECK(imp_bad.rc == 1);
    CHECK(imp_bad.err.find("SHA-256") != std::string::npos);
    CHECK(MustExec(sbx, "node3", "ls -A " + d) == "");
    auto imp = Cli(sbx, inv.dir(), {"image", "import", (inv.root / "v1.zst").string(), "--to", "node3"});
    INFO(imp.out << imp.err);
    CHECK(imp.rc == 0);
    CHECK(Field(sbx, "node3", d + "/v1", "Received UUID") == v1_uuid);

    // activate v2 on node2: names swapped, identity kept, fstab untouched; then roll back
    const std::string old_root = Field(sbx, "node2", "/srv/btrfs/@", "UUID");
    const std::string node2_v2 = Field(sbx, "node2", d + "/v2", "UUID");
    // a busy node's activation is deferred: nothing changes on it
    MustExec(sbx, "node2", "echo 'train.py (alice)' > /run/lf-busy");
    auto busy = Cli(sbx, inv.dir(), {"image", "activate", "v2", "--on", "node2", "--format", "json"});
    INFO(busy.out << busy.err);
    CHECK(busy.json()["targets"][0]["status"] == "deferred");
    CHECK(busy.json()["targets"][0]["detail"].get<std::string>().find("train.py (alice)") != std::string::npos);
    CHECK(Field(sbx, "node2", "/srv/btrfs/@", "UUID") == old_root);
    MustExec(sbx, "node2", "rm /run/lf-busy");
    auto act = Cli(sbx, inv.dir(), {"image", "activate", "v2", "--on", "node2"});
    INFO(act.out << act.err);
    CHECK(act.rc == 0);
    CHECK(Field(sbx, "node2", "/srv/btrfs/@", "Parent UUID") == node2_v2);  // @ is now a snapshot of the image
    CHECK(MustExec(sbx, "node2", "cat /srv/btrfs/@/etc/motd") == "welcome to v2\n");
    CHECK(MustExec(sbx, "node2", "cat /srv/btrfs/@/etc/hostname /srv/btrfs/@/etc/machine-id /srv/btrfs/@/etc/ssh/ssh_host_ed25519_key") ==
          "node2\nmachine-node2\nkey-node2\n");
    CHECK(MustExec(sbx, "node2", "cat /srv/btrfs/@/etc/fstab") == "LABEL=sbx / btrfs subvol=@,compress=zstd 0 0\n");
    CHECK(MustExec(sbx, "node2", "btrfs subvolume list /srv/btrfs | sed 's/.* path //' | grep -c '^@.prev-'") == "1\n");
    CHECK(Field(sbx, "node2", "/srv/btrfs/@/.labfleet-images/v2", "UUID") == node2_v2);  // the images moved along
    CHECK(MustExec(sbx, "node2", "btrfs subvolume get-default /srv/btrfs") == "ID 5 (FS_TREE)\n");
    auto rb = Cli(sbx, inv.dir(), {"image", "rollback", "node2"});
    INFO(rb.out << rb.err);
    CHECK(rb.rc == 0);
    CHECK(Field(sbx, "node2", "/srv/btrfs/@", "UUID") == old_root);
    CHECK(MustExec(sbx, "node2", "test -e /srv/btrfs/@/etc/motd || echo absent") == "absent\n");
    CHECK(Field(sbx, "node2", "/srv/btrfs/@/.labfleet-images/v2", "UUID") == node2_v2);
    CHECK(MustExec(sbx, "node2", "btrfs subvolume list /srv/btrfs | sed 's/.* path //' | grep -c '^@.rolledback-'") == "1\n");

    // list: what each node holds, as JSON
    auto ls = Cli(sbx, inv.dir(), {"image", "list", "node2", "--format", "json"});
    INFO(ls.out << ls.err);
    CHECK(ls.rc == 0);
    CHECK(ls.json()["nodes"][0]["images"].size() == 2);

    // prune --keep 1 on node2: v2 stays (newest, and @.rolledback-* was made from it), v1 goes with its manifest
    auto pr = Cli(sbx, inv.dir(), {"image", "prune", "node2", "--keep", "1", "--format", "json"});
    INFO(pr.out << pr.err);
    CHECK(pr.rc == 0);
    CHECK(pr.json()["nodes"][0]["removed"] == nlohmann::json::array({"v1"}));
    CHECK(MustExec(sbx, "node2", "ls -A " + d) == "v2\nv2.manifest.json\n");
  }
}

TEST_SUITE("integration-images") {
  TEST_CASE("SshTransport::run_to: stdout streamed in bounded memory; a sink that stops ends the command on the node") {
    Sandbox sbx({.nodes = 1});
    SshTransport t(Target(sbx, "node1", sbx.known_hosts()));
    struct Count : ByteSink {
      uint64_t n = 0, stop_at = ~uint64_t(0);
      bool write(const char*, size_t k) override {
        n += k;
        return n < stop_at;
      }
    } all;
    t.set_max_output(1 << 20);  // stdout is not kept, so not bounded by it
    RunResult r = t.run_to("head -c 100000000 /dev/zero; echo done >&2; exit 7", all);
    CHECK(all.n == 100000000);
    CHECK(r.exit_code == 7);
    CHECK(r.out.empty());
    CHECK(r.err == "done\n");
    Count some;
    some.stop_at = 1 << 20;
    RunResult s = t.run_to("exec yes labfleet-run-to-marker", some);
    CHECK(s.exit_code == 141);
    // the node-side command is gone (its stdout vanished with the channel), within a few seconds
    std::string left;
    for (int i = 0; i < 50; ++i) {
      left = MustExec(sbx, "node1", "pgrep -f 'labfleet-run-to-marke[r]' || true");
      if (left.empty()) break;
      usleep(100000);
    }
    CHECK(left == "");
    // the session is still usable
    CHECK(t.run("echo ok").out == "ok\n");
  }
}

TEST_SUITE("integration-images") {
  TEST_CASE("read-only root (root.readonly_btrfs): writable during apply, read-only after it, also after a failed apply") {
    Sandbox sbx({.nodes = 1, .btrfs_mb = 128});
    MakeDiskLayout(sbx, "node1");
    // /srv/root/etc/locked is immutable: a write below it passes the plan and fails at apply
    MustExec(sbx, "node1", "echo 'old motd' > /srv/root/etc/motd && mkdir /srv/root/etc/locked && "
                           "chattr +i /srv/root/etc/locked && btrfs property set -ts /srv/root ro true");
    auto ro = [&] { return MustExec(sbx, "node1", "btrfs property get -ts /srv/root ro"); };
    REQUIRE(ro() == "ro=true\n");
    CHECK(sbx.exec("node1", "echo x > /srv/root/etc/motd").exit_code != 0);  // really read-only
    TempInventory inv(sbx);
    inv.defaults("    images: { root: /srv/root }\n"
                 "    root: { readonly_btrfs: true }\n"
                 "    files:\n"
                 "      - { path: /srv/root/etc/motd, content: \"managed motd\\n\", mode: \"0644\" }\n");
    auto v = Cli({"--inventory", inv.dir(), "validate"});
    INFO(v.out << v.err);
    REQUIRE(v.rc == 0);
    auto plan = Cli(sbx, inv.dir(), {"plan", "--format", "json"});
    INFO(plan.out << plan.err);
    CHECK(plan.out.find("is a read-only btrfs subvolume (root.readonly_btrfs): apply makes it writable") !=
          std::string::npos);  // plan says so
    auto a = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(a.out << a.err);
    CHECK(a.rc == 0);
    CHECK(MustExec(sbx, "node1", "cat /srv/root/etc/motd") == "managed motd\n");
    CHECK(ro() == "ro=true\n");
    // a failing change: the root is read-only again afterwards all the same
    inv.defaults("    images: { root: /srv/root }\n"
                 "    root: { readonly_btrfs: true }\n"
                 "    files:\n"
                 "      - { path: /srv/root/etc/locked/file, content: \"x\\n\", mode: \"0644\" }\n");
    auto f = Cli(sbx, inv.dir(), {"apply", "--yes", "--allow-dirty"});
    INFO(f.out << f.err);
    CHECK(f.rc != 0);
    CHECK(f.out.find("failed") != std::string::npos);
    CHECK(ro() == "ro=true\n");
    MustExec(sbx, "node1", "btrfs property set -ts /srv/root ro false && chattr -i /srv/root/etc/locked && "
                           "btrfs property set -ts /srv/root ro true");
    CHECK(MustExec(sbx, "node1", "cat /srv/root/etc/motd") == "managed motd\n");
    // a bad value is refused offline
    inv.defaults("    root: { readonly_btrfs: maybe }\n");
    CHECK(Cli({"--inventory", inv.dir(), "validate"}).rc != 0);
  }
}

TEST_SUITE("integration-images") {
  TEST_CASE("labfleet interrupted (SIGINT) or killed (SIGKILL) mid-ship: the target holds no half image, and a rerun completes it") {
    Sandbox sbx({.nodes = 2, .btrfs_mb = 700});
    for (const auto& n : sbx.nodes()) MakeDiskLayout(sbx, n.name);
    MustExec(sbx, "node1", "head -c 250000000 /dev/urandom > /srv/root/usr/bin/bulk");
    TempInventory inv(sbx);
    inv.defaults("    images: { root: /srv/root, snapshot_dir: /srv/root/.labfleet-images }\n");
    const std::string d = "/srv/root/.labfleet-images";
    REQUIRE(Cli(sbx, inv.dir(), {"image", "capture", "node1", "--name", "v1"}).rc == 0);
    auto receiving_on_node2 = [&] {
      for (int i = 0; i < 300; ++i) {
        if (sbx.exec("node2", "test -d " + d + "/.pending-v1 && test -d " + d + "/v1").exit_code == 0) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      return false;
    };
    {
      // SIGINT (Ctrl-C) mid-ship: labfleet stops the transfer, has node2 delete what it received, and says so
      Child child(sbx, {"--inventory", inv.dir(), "image", "ship", "v1", "--from", "node1", "--to", "node2"}, inv.root);
      REQUIRE_MESSAGE(receiving_on_node2(), child.output());
      ::kill(child.pid, SIGINT);
      int rc = child.wait(std::chrono::seconds(60));
      INFO(child.output());
      CHECK(rc == 130);
      CHECK(child.output().find("interrupted by SIGINT: stopped; nodes that did not finish keep nothing") != std::string::npos);
      CHECK(child.output().find("node2: failed (") != std::string::npos);
      CHECK(MustExec(sbx, "node2", "ls -A " + d) == "");  // no half snapshot, no pending marker
      CHECK(MustExec(sbx, "node2", "btrfs subvolume list -o /srv/root | wc -l") == "1\n");  // only the snapshot dir
    }
    {
      // the ship as a child process, killed (SIGKILL: no cleanup possible) once node2 is receiving
      Child child(sbx, {"--inventory", inv.dir(), "image", "ship", "v1", "--from", "node1", "--to", "node2"}, inv.root);
      REQUIRE_MESSAGE(receiving_on_node2(), child.output());
      ::kill(child.pid, SIGKILL);
      REQUIRE(child.wait(std::chrono::seconds(60)) == 128 + SIGKILL);  // killed mid-transfer, not finished
    }
    // whatever the node-side pipeline leaves, the image is not held (no complete v1 without its marker)
    std::this_thread::sleep_for(std::chrono::seconds(1));
    auto ls = Cli(sbx, inv.dir(), {"image", "list", "node2", "--format", "json"});
    INFO(ls.out << ls.err);
    CHECK(ls.json()["nodes"][0]["images"].empty());
    auto again = Cli(sbx, inv.dir(), {"image", "ship", "v1", "--from", "node1", "--to", "node2", "--format", "json"});
    INFO(again.out << again.err);
    CHECK(again.rc == 0);
    CHECK(again.json()["targets"][0]["status"] == "done");
    CHECK(Field(sbx, "node2", d + "/v1", "Received UUID") == Field(sbx, "node1", d + "/v1", "UUID"));
    CHECK(MustExec(sbx, "node2", "ls -A " + d) == "v1\nv1.manifest.json\n");  // no marker left
  }
}

TEST_SUITE("integration-images") {
  // Sandbox nodes share the host's kernel and cannot reboot (the reboot double only records the call), so the boot
  // id never changes: this covers the failure path of --reboot (no new boot id in time: the node is rolled back,
  // the rollout stops); a successful reboot into the image needs a real machine.
  TEST_CASE("activate --reboot --batch 1: a node that does not come back is rolled back and the rollout stops") {
    Sandbox sbx({.nodes = 3, .btrfs_mb = 128});
    for (const auto& n : sbx.nodes()) MakeDiskLayout(sbx, n.name);
    for (const char* n : {"node2", "node3"}) InstallDoubles(sbx, n, {"reboot"});
    TempInventory inv(sbx);
    inv.defaults("    images: { root: /srv/root, snapshot_dir: /srv/root/.labfleet-images }\n");
    REQUIRE(Cli(sbx, inv.dir(), {"image", "capture", "node1", "--name", "v1"}).rc == 0);
    REQUIRE(Cli(sbx, inv.dir(), {"image", "ship", "v1", "--from", "node1", "--to", "node2,node3"}).rc == 0);
    const std::string root2 = Field(sbx, "node2", "/srv/btrfs/@", "UUID");
    const std::string root3 = Field(sbx, "node3", "/srv/btrfs/@", "UUID");
    auto r = Cli(sbx, inv.dir(), {"image", "activate", "v1", "--on", "node2,node3", "--reboot", "--batch", "1",
                                  "--reboot-timeout", "3", "--format", "json"});
    INFO(r.out << r.err);
    CHECK(r.rc == 4);
    auto j = r.json();
    REQUIRE(j["targets"].size() == 2);
    CHECK(j["targets"][0]["status"] == "failed");
    const std::string detail = j["targets"][0]["detail"];
    CHECK(detail.find("did not come back with a new boot id") != std::string::npos);
    CHECK(detail.find("rolled back") != std::string::npos);
    CHECK(j["targets"][1]["status"] == "skipped");
    // node2: back on its own root (the activated one set aside), asked to reboot twice (into v1, then back)
    CHECK(Field(sbx, "node2", "/srv/btrfs/@", "UUID") == root2);
    CHECK(MustExec(sbx, "node2", "btrfs subvolume list /srv/btrfs | sed 's/.* path //' | grep -c '^@.rolledback-'") == "1\n");
    int reboots = 0;  // the reboot runs detached, a second after the command returned
    for (int i = 0; i < 50 && reboots < 2; ++i) {
      reboots = CountCalls(DoubleCalls(sbx, "node2"), "reboot");
      if (reboots < 2) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(reboots == 2);
    // node3: untouched
    CHECK(Field(sbx, "node3", "/srv/btrfs/@", "UUID") == root3);
    CHECK(DoubleCalls(sbx, "node3").empty());
    CHECK(MustExec(sbx, "node3", "btrfs subvolume list /srv/btrfs | sed 's/.* path //' | grep -c '^@\\.' || true") == "0\n");
  }
}

namespace {

// `ssh -F <the sandbox's ssh_config> NODE CMD` (strict host key checking against the sandbox's known_hosts, which
// a restart does not rewrite); CHECKs exit 0 and returns stdout.
std::string Ssh(const Sandbox& sbx, const std::string& node, const std::string& cmd) {
  auto r = RunCommand(Cmd("ssh").arg("-F").arg(sbx.ssh_config()).arg(node).arg(cmd).str());
  INFO("ssh " << node << " " << cmd << ": " << r.err);
  CHECK(r.exit_code == 0);
  return r.out;
}

// `btrfs subvolume show /` over SSH, one field ("UUID", "Parent UUID", ...) or, for "", its first line (the
// path of the running root subvolume from the top level).
std::string RootField(const Sandbox& sbx, const std::string& node, const std::string& key) {
  if (key.empty()) return Ssh(sbx, node, "btrfs subvolume show / | head -n 1 | tr -d '\\n'");
  return Ssh(sbx, node, "btrfs subvolume show / | sed -n 's/^[[:space:]]*" + key +
                            ":[[:space:]]*//p' | head -n 1 | tr -d '\\n'");
}

std::string StatusValue(const std::string& status_file, const std::string& key) {
  std::istringstream in(ReadFile(status_file));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + " ", 0) == 0) return line.substr(key.size() + 1);
  return "";
}

bool ProcessAlive(pid_t pid) {
  std::string st = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  return !st.empty() && st.find(") Z ") == std::string::npos && st.find(") X ") == std::string::npos;
}

}  // namespace

TEST_SUITE("integration-images") {
  // The sandbox's --btrfs-root nodes run on the subvolume @ of their own btrfs (mounted by subvol=@ as a real
  // initramfs mounts rootflags=subvol=@), so images.root is / here, with the same discovery as on a real machine
  // (findmnt /, /etc/fstab naming subvol=@), and Sandbox::restart is the reboot: it mounts whatever is named @ then.
  TEST_CASE("boot from @: an activated image is what the node runs after a restart, and a rollback + restart brings the old root back") {
    std::string dir;
    std::vector<pid_t> pids;          // every node init and holder this sandbox ever had
    std::vector<std::string> loops;   // every loop device its nodes ever had
    {
      Sandbox sbx({.nodes = 2, .btrfs_mb = 160, .btrfs_root = true});
      dir = sbx.dir();
      auto record = [&](const std::string& node) {
        const std::string st = sbx.dir() + "/.rt/" + node + ".status";
        pids.push_back(std::atoi(StatusValue(st, "pid").c_str()));
        pids.push_back(std::atoi(ReadFile(sbx.dir() + "/.rt/" + node + ".holder").c_str()));
        loops.push_back(StatusValue(st, "loop"));
        REQUIRE(loops.back().rfind("/dev/loop", 0) == 0);
      };
      for (const auto& n : sbx.nodes()) record(n.name);
      // the node really runs on @: its root mount is the subvolume, its fstab names it
      CHECK(Ssh(sbx, "node2", "findmnt -n -o FSTYPE,OPTIONS /").find("btrfs ") == 0);
      CHECK(Ssh(sbx, "node2", "findmnt -n -o OPTIONS / | tr , '\\n' | grep '^subvol='") == "subvol=/@\n");
      CHECK(RootField(sbx, "node2", "") == "@");
      CHECK(Ssh(sbx, "node2", "grep -c ' / btrfs subvol=@ ' /etc/fstab") == "1\n");

      TempInventory inv(sbx);
      inv.defaults("    images: { root: /, snapshot_dir: /.labfleet-images }\n");
      auto v = Cli({"--inventory", inv.dir(), "validate"});
      INFO(v.out << v.err);
      REQUIRE(v.rc == 0);

      // the golden node gets a release marker, is captured, and the image shipped to node2
      Ssh(sbx, "node1", "echo 'golden v1' > /etc/lf-release");
      auto c = Cli(sbx, inv.dir(), {"image", "capture", "node1", "--name", "v1", "--format", "json"});
      INFO(c.out << c.err);
      REQUIRE(c.rc == 0);
      auto s = Cli(sbx, inv.dir(), {"image", "ship", "v1", "--from", "node1", "--to", "node2"});
      INFO(s.out << s.err);
      REQUIRE(s.rc == 0);
      const std::string image_uuid = Field(sbx, "node2", "/.labfleet-images/v1", "UUID");

      // node2's identity and root before activation
      const std::string old_root = RootField(sbx, "node2", "UUID");
      const std::string machine_id = Ssh(sbx, "node2", "cat /etc/machine-id");
      const std::string hostkey = Ssh(sbx, "node2", "ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub");
      REQUIRE(machine_id.size() == 33);
      CHECK(machine_id != Ssh(sbx, "node1", "cat /etc/machine-id"));
      CHECK(Ssh(sbx, "node2", "test -e /etc/lf-release || echo absent") == "absent\n");

      auto act = Cli(sbx, inv.dir(), {"image", "activate", "v1", "--on", "node2"});
      INFO(act.out << act.err);
      REQUIRE(act.rc == 0);
      const std::string new_root = Field(sbx, "node2", "/srv/btrfs/@", "UUID");
      CHECK(new_root != old_root);
      CHECK(Field(sbx, "node2", "/srv/btrfs/@", "Parent UUID") == image_uuid);
      // not rebooted yet: the node still runs its old root, now named @.prev-*
      CHECK(RootField(sbx, "node2", "UUID") == old_root);
      CHECK(RootField(sbx, "node2", "").rfind("@.prev-", 0) == 0);

      const pid_t before = std::atoi(StatusValue(sbx.dir() + "/.rt/node2.status", "pid").c_str());
      sbx.restart("node2");
      record("node2");
      CHECK_FALSE(ProcessAlive(before));  // a new node, not the old one
      CHECK(RunCommand(Cmd("losetup").arg("-n").arg("-O").arg("NAME").arg("-j").arg(sbx.dir() + "/.rt/node2.btrfs.img").str()).out ==
            loops.back() + "\n");  // exactly one loop device on its image

      // the restarted node2 runs the activated root: the golden node's tree with node2's own identity
      CHECK(RootField(sbx, "node2", "UUID") == new_root);
      CHECK(RootField(sbx, "node2", "") == "@");
      CHECK(RootField(sbx, "node2", "Parent UUID") == image_uuid);
      CHECK(Ssh(sbx, "node2", "findmnt -n -o OPTIONS / | tr , '\\n' | grep '^subvol='") == "subvol=/@\n");
      CHECK(Ssh(sbx, "node2", "cat /etc/lf-release") == "golden v1\n");
      CHECK(Ssh(sbx, "node2", "hostname; cat /etc/hostname") == "node2\nnode2\n");
      CHECK(Ssh(sbx, "node2", "cat /etc/machine-id") == machine_id);
      CHECK(Ssh(sbx, "node2", "ssh-keygen -l -f /etc/ssh/ssh_host_ed25519_key.pub") == hostkey);  // (ssh checked it too)
      CHECK(Ssh(sbx, "node2", "grep -c ' / btrfs subvol=@ ' /etc/fstab") == "1\n");
      CHECK(Field(sbx, "node2", "/.labfleet-images/v1", "UUID") == image_uuid);  // the images moved along
      auto ls = Cli(sbx, inv.dir(), {"image", "list", "node2", "--format", "json"});
      INFO(ls.out << ls.err);
      CHECK(ls.rc == 0);
      CHECK(ls.json()["nodes"][0]["root"]["uuid"] == new_root);  // labfleet's own view agrees
      CHECK(ls.json()["nodes"][0]["runs_image"] == "v1");

      // roll back and restart: the previous root is back
      auto rb = Cli(sbx, inv.dir(), {"image", "rollback", "node2"});
      INFO(rb.out << rb.err);
      REQUIRE(rb.rc == 0);
      sbx.restart("node2");
      record("node2");
      CHECK(RootField(sbx, "node2", "UUID") == old_root);
      CHECK(RootField(sbx, "node2", "") == "@");
      CHECK(Ssh(sbx, "node2", "test -e /etc/lf-release || echo absent") == "absent\n");
      CHECK(Ssh(sbx, "node2", "hostname; cat /etc/machine-id") == "node2\n" + machine_id);
      CHECK(MustExec(sbx, "node2", "btrfs subvolume list /srv/btrfs | sed 's/.* path //' | grep -c '^@.rolledback-'") == "1\n");

      // by hand, as docs/images.md "Recovering by hand" says (the top level is at /srv/btrfs in the sandbox):
      // the rolled-back root becomes @ again, and the restart runs it
      MustExec(sbx, "node2", "cd /srv/btrfs && mv -T @ @.broken && mv -T @.rolledback-* @");
      sbx.restart("node2");
      record("node2");
      CHECK(RootField(sbx, "node2", "UUID") == new_root);
      CHECK(Ssh(sbx, "node2", "cat /etc/lf-release; hostname") == "golden v1\nnode2\n");

      // a node whose @ is gone does not boot: restart fails with the reason, the node stays down, and the
      // teardown below still removes everything
      MustExec(sbx, "node1", "mv -T /srv/btrfs/@ /srv/btrfs/@.gone");
      try {
        sbx.restart("node1");
        FAIL("restart of a node without @ succeeded");
      } catch (const std::runtime_error& e) {
        CHECK(std::string(e.what()).find("has no subvolume @ at its top level") != std::string::npos);
      }
      CHECK(sbx.exec("node1", "true").exit_code == 125);
      pids.push_back(std::atoi(ReadFile(sbx.dir() + "/.rt/node1.holder").c_str()));
    }
    // cleanup is exact: no init or holder of any boot, no loop device, no mount, no directory
    CAPTURE(dir);
    for (pid_t p : pids) {
      CAPTURE(p);
      CHECK(p > 1);
      CHECK_FALSE(ProcessAlive(p));
    }
    CHECK(RunCommand("losetup -a").out.find(dir) == std::string::npos);
    for (const auto& dev : loops) {
      CAPTURE(dev);
      CHECK(RunCommand(Cmd("losetup").arg("-n").arg("-O").arg("BACK-FILE").arg(dev).str()).out.find(dir) == std::string::npos);
    }
    CHECK(ReadFile("/proc/self/mountinfo").find(dir) == std::string::npos);
    CHECK_FALSE(fs::exists(dir));
  }
}
