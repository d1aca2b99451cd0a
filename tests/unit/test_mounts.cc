// mounts: the parsers on raw captured output (tests/fixtures/mounts: findmnt inside a sandbox node, the node's
// /etc/fstab after an apply, the module's own probes, Debian 12's /etc/default/cachefilesd), the probes and the
// fstab verification through a real shell with this machine's findmnt, and the module's diffs from probe results.
#include <doctest/doctest.h>

#include <unistd.h>

#include <fstream>
#include <map>
#include <optional>

#include "engine/local_transport.h"
#include "engine/module.h"
#include "engine/planner.h"
#include "engine/shell.h"
#include "modules/facts/mounts_facts.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;

namespace {

// One node n1 whose own settings are `mounts: [...]` (YAML flow items, one a line) plus `extra` lines.
Inventory Load(const std::vector<std::string>& items, const std::string& extra = "") {
  std::string yaml = "lab: { name: t }\nnodes:\n  n1:\n    address: 10.9.0.1\n" + extra + "    mounts:\n";
  for (const auto& i : items) yaml += "      - " + i + "\n";
  if (items.empty()) yaml += "      []\n";
  return testing::Load(yaml);
}

struct Out {
  std::vector<Change> changes;
  std::vector<std::string> notes, warnings, errors, probe_keys;
  std::vector<std::string> lines() const {
    std::vector<std::string> v;
    for (const auto& c : changes) v.push_back(ChangeLine(c));
    return v;
  }
  std::vector<Probe> probes;
};

Out Run(const Inventory& inv, const ProbeResults& res) {
  const Module* m = FindModule("mounts");
  REQUIRE(m);
  Value settings = inv.settings(inv.nodes[0]);
  NodeContext ctx{inv, inv.nodes[0], settings};
  Out o;
  auto rs = m->resources(ctx);
  o.probes = m->probes(ctx, rs);
  for (const auto& p : o.probes) o.probe_keys.push_back(p.key);
  for (const auto& r : rs) {
    DiffResult d = m->diff(ctx, r, res);
    if (!d.error.empty()) o.errors.push_back(r.id + ": " + d.error);
    if (d.changes.empty()) o.notes.push_back(r.id + ": " + d.noop);
    for (auto& w : d.warnings) o.warnings.push_back(r.id + ": " + w);
    for (auto& c : d.changes) o.changes.push_back(std::move(c));
  }
  return o;
}

ProbeOutput FileOut(const std::string& content) { return {0, "present 644 root root regular file\n" + content}; }

// Probe results of a node where every mount point exists (`n` of them) and nothing is mounted.
ProbeResults Node(const std::string& fstab, size_t n, const std::string& findmnt = "/ sbx-node1 overlay rw\n") {
  ProbeResults res;
  res["file:/etc/fstab"] = FileOut(fstab);
  std::string points;
  for (size_t i = 0; i < n; ++i) points += std::to_string(i) + " dir\n";
  res["mounts:points"] = {0, points};
  res["mounts:findmnt"] = {0, findmnt};
  res["mounts:mount-now"] = {0, ""};
  return res;
}

const std::string kAdmin =
    "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"
    "tmpfs\t/srv/user-scratch   tmpfs  size=8m,mode=1777   0 0\n";
const std::string kHome = "{ source: \"nas:/export/home\", target: /home, options: [vers=4.2, hard], automount: true }";
const std::string kScratch = "{ target: /scratch, type: tmpfs, options: size=64m }";
const std::string kBlock =
    "# BEGIN labfleet mounts: edits inside are overwritten\n"
    "nas:/export/home /home nfs vers=4.2,hard,noauto,x-systemd.automount,x-systemd.idle-timeout=600,_netdev 0 0\n"
    "tmpfs /scratch tmpfs size=64m 0 0\n"
    "# END labfleet mounts\n";

}  // namespace

TEST_SUITE("mounts") {
  TEST_CASE("mounts: ParseFindmnt reads findmnt -rn output, unescapes \\x20 and skips the garbage line") {
    FindmntTable t = ParseFindmnt(testing::Fixture("mounts/findmnt-sandbox-node.txt"));
    CHECK(t.skipped == 2);  // the fixture's comment line and the garbage line
    CHECK(t.mounts.size() == 20);
    const LiveMount* sp = t.at("/mnt/with space");
    REQUIRE(sp);
    CHECK(sp->source == "my src");
    CHECK(sp->fstype == "tmpfs");
    CHECK(sp->options == "rw,relatime,size=1024k");
    const LiveMount* shm = t.at("/dev/shm");  // mounted three times: the last one is on top
    REQUIRE(shm);
    CHECK(shm->source == "shm");
    CHECK(t.at("/mnt/t")->options == "rw,relatime,size=16384k");
    CHECK(t.at("/mnt/nothing") == nullptr);
    CHECK(t.at("/")->fstype == "overlay");
  }

  TEST_CASE("mounts: ParseFstab splits a node's fstab into labfleet's block and the admin's lines") {
    const std::string text = testing::Fixture("mounts/fstab-with-block.txt");
    FstabView v = ParseFstab(text);
    CHECK(v.error.empty());
    REQUIRE(v.has_block);
    CHECK(v.begin_line == 4);
    REQUIRE(v.block.size() == 3);
    CHECK(v.block[0] == FstabEntry{"nas.invalid:/export/home", "/mnt/home", "nfs",
                                   "vers=4.2,hard,noauto,x-systemd.automount,x-systemd.idle-timeout=600,_netdev"});
    CHECK(v.block[1].target == "/mnt/with space");  // \040 decoded
    CHECK(v.block[2].options == "vers=4.2,fsc");
    CHECK(v.block_garbage == 0);
    REQUIRE(v.outside.size() == 1);  // the admin's tmpfs line; the garbage line is not an entry
    CHECK(v.outside[0].line == 2);
    CHECK(v.outside[0].entry.target == "/srv/user-scratch");
    CHECK(v.outside[0].entry.options == "size=8m,mode=1777");
    // Writing the same entries back reproduces the file byte for byte.
    CHECK(FstabWithBlock(text, v, v.block) == text);
    // Dropping every entry removes the block and nothing else.
    CHECK(FstabWithBlock(text, v, {}) == text.substr(0, text.find("# BEGIN")));
  }

  TEST_CASE("mounts: fstab lines, escapes and broken markers") {
    CHECK(FstabEscape("/mnt/a b\\c\td") == "/mnt/a\\040b\\134c\\011d");
    CHECK(FstabUnescape("/mnt/a\\040b\\134c\\011d") == "/mnt/a b\\c\td");
    CHECK(FstabUnescape("\\04") == "\\04");  // too short to be an escape
    CHECK_FALSE(ParseFstabLine("# a comment"));
    CHECK_FALSE(ParseFstabLine("   "));
    CHECK_FALSE(ParseFstabLine("only two"));
    CHECK_FALSE(ParseFstabLine("one two three four five six seven"));
    auto e = ParseFstabLine("  proc /proc proc");
    REQUIRE(e);
    CHECK(*e == FstabEntry{"proc", "/proc", "proc", "defaults", "0", "0"});
    CHECK(FstabLine(FstabEntry{"my src", "/mnt/x y", "tmpfs", "size=1m"}) == "my\\040src /mnt/x\\040y tmpfs size=1m 0 0");

    CHECK(ParseFstab("# BEGIN labfleet mounts: x\nproc /proc proc defaults 0 0\n").error.find("no \"# END labfleet mounts\"") !=
          std::string::npos);
    CHECK(ParseFstab("# END labfleet mounts\n").error.find("without a BEGIN marker") != std::string::npos);
    CHECK(ParseFstab(kBlock + kBlock).error.find("second") != std::string::npos);
    FstabView g = ParseFstab("# BEGIN labfleet mounts\ngarbage\n# END labfleet mounts\n");
    CHECK(g.block_garbage == 1);
    // No final newline on the admin's last line: the block starts on a line of its own.
    FstabView none = ParseFstab("proc /proc proc defaults 0 0");
    CHECK(FstabWithBlock("proc /proc proc defaults 0 0", none, {FstabEntry{"tmpfs", "/t", "tmpfs", "defaults"}}) ==
          "proc /proc proc defaults 0 0\n# BEGIN labfleet mounts: edits inside are overwritten\ntmpfs /t tmpfs defaults 0 0\n"
          "# END labfleet mounts\n");
  }

  TEST_CASE("mounts: the mount-point and mount_now probes' output") {
    MountPoints p = ParseMountPoints(testing::Fixture("mounts/mount-points-probe.txt"));
    CHECK(p.skipped == 2);
    CHECK(p.state == std::map<size_t, std::string>{
                         {0, "dir"}, {1, "dir"}, {2, "dir"}, {3, "other: regular file"}, {4, "missing"}});
    CHECK_FALSE(p.systemd);
    CHECK(ParseMountPoints("0 dir\nsystemd\n").systemd);
    CHECK(ParseMountPoints("99999999999999999999 dir\n1 maybe\n").skipped == 2);  // never throws

    MountNowRecords r = ParseMountNowRecords(testing::Fixture("mounts/mount-now-probe.txt"));
    CHECK(r.skipped == 2);
    REQUIRE(r.by_target_hash.size() == 1);
    CHECK(r.by_target_hash.begin()->first == "9e26c3f85e73899b");  // FNV-1a of "/mnt/broken"
    const MountNowRecord& rec = r.by_target_hash.begin()->second;
    CHECK(rec.entry_hash == "5e6f0fe8c67fbfbd");  // of "nosuchhost.invalid:/export /mnt/broken nfs vers=4.2,fsc 0 0"
    CHECK(rec.at == 1795462018);
    CHECK(rec.message.find("exit 32: mount: /mnt/broken: unknown filesystem type 'nfs'.") == 0);
    CHECK(ParseMountNowRecords("44bd8ad473cd9906 44bd89d473cd9753 99999999999999999999999 x\n").skipped == 1);
  }

  TEST_CASE("mounts: RUN=yes in Debian 12's /etc/default/cachefilesd") {
    const std::string deb = testing::Fixture("mounts/default-cachefilesd-debian12.txt");
    std::string out = CachefilesdRunYes(deb);
    std::string expect = deb;
    expect.replace(expect.find("#RUN=yes"), 8, "RUN=yes");
    CHECK(out == expect);  // every other line, the garbage one included, as it was
    CHECK(CachefilesdRunYes(out) == out);
    CHECK(CachefilesdRunYes("RUN=no\nDAEMON_OPTS=\"\"\n") == "RUN=yes\nDAEMON_OPTS=\"\"\n");
    CHECK(CachefilesdRunYes("RUN=\"yes\"\n") == "RUN=\"yes\"\n");
    CHECK(CachefilesdRunYes("RUN=yes\nRUN=no\n") == "RUN=yes\nRUN=yes\n");
    CHECK(CachefilesdRunYes("") == "RUN=yes\n");
    CHECK(CachefilesdRunYes("DAEMON_OPTS=\"\"") == "DAEMON_OPTS=\"\"\nRUN=yes\n");
  }

  TEST_CASE("mounts: the mount-point probe and the block-only fstab verification through a real shell") {
    char dir[] = "/tmp/labfleet-mounts-XXXXXX";
    REQUIRE(mkdtemp(dir));
    const std::string d = dir;
    std::ofstream(d + "/file") << "x";
    Inventory inv = Load({"{ target: " + d + ", type: tmpfs }", "{ target: " + d + "/file, type: tmpfs }",
                          "{ target: \"" + d + "/no such dir\", type: tmpfs }"});
    Out o = Run(inv, {});
    std::vector<Probe> probes;
    for (const auto& p : o.probes)
      if (p.key == "mounts:points") probes.push_back(p);
    REQUIRE(probes.size() == 1);
    LocalTransport local("here", 60);
    std::string nonce = NewNonce();
    RunResult r = local.run(ScriptRunner(), BuildProbeScript(probes, nonce));
    REQUIRE(r.ok());
    MountPoints p = ParseMountPoints(ParseProbeOutput(r.out, probes, nonce)["mounts:points"].out);
    CHECK(p.skipped == 0);
    CHECK(p.state == std::map<size_t, std::string>{{0, "dir"}, {1, "other: regular file"}, {2, "missing"}});

    // The verify command checks labfleet's block only: an admin's broken line (its mount point is missing, an
    // error for findmnt --verify of the whole file) does not fail it; a broken entry in the block does.
    std::string cmd = FstabVerifyCommand();
    CHECK(cmd.find("findmnt --verify --tab-file") != std::string::npos);
    const std::string tab = d + "/fstab";
    cmd.replace(cmd.find("/etc/fstab"), 10, tab);
    const std::string broken_admin = "/dev/labfleet-nonexistent " + d + "/not-there ext4 defaults 0 2\n";
    const std::string good_block = "# BEGIN labfleet mounts: edits inside are overwritten\n"
                                   "nosuchhost.invalid:/export " + d + " nfs vers=4.2,fsc 0 0\n"
                                   "# END labfleet mounts\n";
    std::ofstream(tab) << broken_admin << good_block;
    CHECK(local.run("findmnt --verify --tab-file " + ShellQuote(tab)).exit_code != 0);
    RunResult ok = local.run(cmd);
    INFO(ok.out << ok.err);
    CHECK(ok.exit_code == 0);  // and the unresolvable NFS host is not checked by findmnt at all
    std::ofstream(tab) << broken_admin << "# BEGIN labfleet mounts: edits inside are overwritten\n"
                       << "tmpfs " << d << "/not-there tmpfs defaults 0 0\n# END labfleet mounts\n";
    CHECK(local.run(cmd).exit_code != 0);
    CHECK(local.run("rm -rf " + ShellQuote(d)).ok());
  }

  TEST_CASE("mounts: no block yet: the admin's lines are kept byte for byte and the block is appended") {
    Inventory inv = Load({kHome, kScratch});
    Out o = Run(inv, Node(kAdmin + "proc /proc proc defaults 0 0", 2));  // no final newline
    CHECK(o.errors.empty());
    REQUIRE(o.changes.size() == 1);
    const Change& c = o.changes[0];
    CHECK(ChangeLine(c) == "~ fstab block in /etc/fstab (2 mounts)");
    CHECK(c.kind == Change::Kind::PutFile);
    CHECK(c.reason == "no labfleet block yet; new: /home, /scratch");
    CHECK(c.file.bytes == kAdmin + "proc /proc proc defaults 0 0\n" + kBlock);
    CHECK(c.file.mode == 0644);
    CHECK(c.verify == FstabVerifyCommand());

    // No /etc/fstab at all: created with the block only.
    ProbeResults res = Node("", 2);
    res["file:/etc/fstab"] = {0, "absent\n"};
    Out created = Run(inv, res);
    REQUIRE(created.changes.size() == 1);
    CHECK(created.changes[0].sign == '+');
    CHECK(created.changes[0].file.bytes == kBlock);
  }

  TEST_CASE("mounts: the block equal but written with other whitespace is not a change") {
    Inventory inv = Load({kHome, kScratch});
    std::string spaced = kBlock;
    const std::string line = "tmpfs /scratch tmpfs size=64m 0 0";
    spaced.replace(spaced.find(line), line.size(), "tmpfs\t/scratch\t\ttmpfs   size=64m  0   0  ");
    Out o = Run(inv, Node(kAdmin + spaced, 2));
    CHECK(o.errors.empty());
    CHECK(o.changes.empty());
    CHECK(o.notes.back() ==
          "mounts:/etc/fstab: nothing to do because fstab block in /etc/fstab (2 mounts) is up to date (0644 root:root)");
  }

  TEST_CASE("mounts: one option changed is exactly one change; lines around the block stay") {
    Inventory inv = Load({"{ source: \"nas:/export/home\", target: /home, options: [vers=4.1, hard], automount: true }",
                          kScratch});
    const std::string after = "# the admin's own comment after the block\nproc /proc proc defaults 0 0\n";
    Out o = Run(inv, Node(kAdmin + kBlock + after, 2));
    CHECK(o.errors.empty());
    REQUIRE(o.changes.size() == 1);
    CHECK(o.changes[0].reason == "changed: /home");
    std::string want = kBlock;
    want.replace(want.find("vers=4.2"), 8, "vers=4.1");
    CHECK(o.changes[0].file.bytes == kAdmin + want + after);
    CHECK(o.changes[0].diff.find("-nas:/export/home /home nfs vers=4.2") != std::string::npos);
  }

  TEST_CASE("mounts: remove drops the entry, and unmounts only what is mounted") {
    Inventory inv = Load({kHome, "{ target: /scratch, type: tmpfs, remove: true }"});
    std::string block_without = kBlock;
    block_without.erase(block_without.find("tmpfs /scratch"), std::string("tmpfs /scratch tmpfs size=64m 0 0\n").size());
    // Not mounted: the block loses the line, nothing else.
    Out o = Run(inv, Node(kAdmin + kBlock, 1));
    CHECK(o.errors.empty());
    REQUIRE(o.changes.size() == 1);
    CHECK(o.changes[0].reason == "dropped: /scratch");
    CHECK(o.changes[0].file.bytes == kAdmin + block_without);
    CHECK(o.notes.back() == "mount:/scratch: nothing to do because /scratch is not mounted (remove: true)");
    // Mounted: also a disruptive unmount, after the fstab change.
    Out m = Run(inv, Node(kAdmin + kBlock, 1, "/ sbx-node1 overlay rw\n/scratch tmpfs tmpfs rw,relatime,size=65536k\n"));
    REQUIRE(m.changes.size() == 2);
    CHECK(ChangeLine(m.changes[1]) == "- unmount /scratch (remove: true; mounted from tmpfs, tmpfs)");
    CHECK(m.changes[1].disruptive);
    CHECK(m.changes[1].command.find("then umount /scratch; fi") != std::string::npos);
    CHECK(m.changes[1].command.find("systemctl") == std::string::npos);  // not a systemd node
    // Converged: nothing left.
    Out done = Run(inv, Node(kAdmin + block_without, 1));
    CHECK(done.changes.empty());
    // Removing the last entry removes the block.
    Inventory none = Load({"{ source: \"nas:/export/home\", target: /home, remove: true }",
                           "{ target: /scratch, type: tmpfs, remove: true }"});
    Out gone = Run(none, Node(kAdmin + kBlock, 0));
    REQUIRE(gone.changes.size() == 1);
    CHECK(gone.changes[0].file.bytes == kAdmin);
  }

  TEST_CASE("mounts: the same entry written by hand outside the block is adopted into it, the rest untouched") {
    Inventory inv = Load({kHome, kScratch});
    const std::string by_hand =
        "nas:/export/home  /home/  nfs  vers=4.2,hard,noauto,x-systemd.automount,x-systemd.idle-timeout=600,_netdev  0 0\n";
    Out o = Run(inv, Node(kAdmin + by_hand + "proc /proc proc defaults 0 0\n", 2));
    CHECK(o.errors.empty());
    REQUIRE(o.changes.size() == 1);
    CHECK(o.changes[0].summary.find("adopted into labfleet's block, as written by hand: line 3 /home") != std::string::npos);
    // The admin's other lines stay as they were, byte for byte; the adopted line now lives in the block.
    CHECK(o.changes[0].file.bytes == kAdmin + "proc /proc proc defaults 0 0\n" + kBlock);
    // Once adopted: converged.
    CHECK(Run(inv, Node(kAdmin + "proc /proc proc defaults 0 0\n" + kBlock, 2)).changes.empty());
  }

  TEST_CASE("mounts: conflicts are errors, not guesses") {
    Inventory inv = Load({kHome, kScratch});
    Out dup = Run(inv, Node(kAdmin + "nas:/old /home nfs defaults 0 0\n", 2));
    REQUIRE(dup.errors.size() == 1);
    CHECK(dup.errors[0].find("line 3 of /etc/fstab (outside labfleet's block) already mounts /home") != std::string::npos);
    Out open = Run(inv, Node(kAdmin + "# BEGIN labfleet mounts: x\nproc /proc proc defaults 0 0\n", 2));
    REQUIRE(open.errors.size() == 1);
    CHECK(open.errors[0].find("labfleet will not guess where its block ends") != std::string::npos);
    ProbeResults res = Node(kAdmin + kBlock, 2);
    res["mounts:points"] = {0, "0 dir\n1 other regular file\n"};
    Out file = Run(inv, res);
    REQUIRE(file.errors.size() == 1);
    CHECK(file.errors[0] ==
          "mount-point:/scratch: mount point /scratch exists but is not a directory (regular file); move it out of "
          "the way on the node or choose another target");
  }

  TEST_CASE("mounts: missing mount points are created before fstab is written; systemd reloads after") {
    Inventory inv = Load({kHome, kScratch});
    ProbeResults res = Node(kAdmin, 2);
    res["mounts:points"] = {0, "0 missing\n1 dir\nsystemd\n"};
    Out o = Run(inv, res);
    CHECK(o.lines() == std::vector<std::string>{"+ mount point /home (mkdir, 0755)", "~ fstab block in /etc/fstab (2 mounts)",
                                                "~ systemctl daemon-reload"});
    CHECK(o.changes[0].command == "mkdir -p -m 0755 -- /home");
    CHECK(o.changes[2].kind == Change::Kind::Notify);
    CHECK(o.changes[2].handler == "systemd daemon-reload");
  }

  TEST_CASE("mounts: mount_now is tried once per entry; a recorded failure is a warning, not a change") {
    const std::string item = "{ target: /scratch, type: tmpfs, options: size=64m, mount_now: true }";
    Inventory inv = Load({item});
    const std::string block = "# BEGIN labfleet mounts: edits inside are overwritten\ntmpfs /scratch tmpfs size=64m 0 0\n"
                              "# END labfleet mounts\n";
    Out o = Run(inv, Node(kAdmin + block, 1));
    CHECK(o.probe_keys == std::vector<std::string>{"file:/etc/fstab", "mounts:points", "mounts:findmnt", "mounts:mount-now"});
    REQUIRE(o.changes.size() == 1);
    CHECK(ChangeLine(o.changes[0]) == "+ mount /scratch now (mount_now; a failure is reported, fstab stays)");
    CHECK(o.changes[0].command.find("$lf_to mount /scratch;") != std::string::npos);
    CHECK(o.changes[0].command.find("rm -f /var/lib/labfleet/mount-now/ae776c7cf3aa37de\n") != std::string::npos);

    // The attempt failed for this very entry: reported under the node, nothing to do.
    ProbeResults res = Node(kAdmin + block, 1);
    // Record names: FNV-1a of "/scratch" and of the fstab line "tmpfs /scratch tmpfs size=64m 0 0".
    res["mounts:mount-now"] = {0, "ae776c7cf3aa37de 139cfb6de7a05453 1795462018 exit 32: mount: /scratch: permission "
                                  "denied. \n"};
    Out failed = Run(inv, res);
    CHECK(failed.changes.empty());
    REQUIRE(failed.warnings.size() == 1);
    CHECK(failed.warnings[0].find("mount:/scratch: /scratch is not mounted: mount_now failed at 2026-11-23 ") == 0);
    CHECK(failed.warnings[0].find("(exit 32: mount: /scratch: permission denied.)") != std::string::npos);

    // A record for an older entry: the new entry is tried.
    res["mounts:mount-now"] = {0, "ae776c7cf3aa37de d033e52a290d8ace 1 old\n"};  // "... size=32m 0 0"
    CHECK(Run(inv, res).changes.size() == 1);

    // Mounted: nothing to do; mounted from something else: a warning, and labfleet does not unmount it.
    Out mounted = Run(inv, Node(kAdmin + block, 1, "/scratch tmpfs tmpfs rw,size=65536k\n"));
    CHECK(mounted.changes.empty());
    CHECK(mounted.warnings.empty());
    Out other = Run(inv, Node(kAdmin + block, 1, "/scratch /dev/sdb1 ext4 rw\n"));
    CHECK(other.changes.empty());
    REQUIRE(other.warnings.size() == 1);
    CHECK(other.warnings[0].find("/scratch is mounted from /dev/sdb1 (ext4), not from tmpfs (tmpfs)") != std::string::npos);

    // An automount entry on a systemd node: its automount unit is started.
    Inventory am = Load({"{ source: \"nas:/export/home\", target: /home, automount: true, mount_now: true }"});
    ProbeResults sres = Node(kAdmin + "# BEGIN labfleet mounts\nnas:/export/home /home nfs "
                                      "noauto,x-systemd.automount,x-systemd.idle-timeout=600,_netdev 0 0\n"
                                      "# END labfleet mounts\n", 1);
    sres["mounts:points"] = {0, "0 dir\nsystemd\n"};
    Out a = Run(am, sres);
    REQUIRE(a.changes.size() == 1);
    CAPTURE(a.changes[0].command);
    CHECK(a.changes[0].command.find("systemctl daemon-reload && $lf_to systemctl start \"$( systemd-escape --path "
                                    "'--suffix=automount' /home )\"") != std::string::npos);
    // findmnt missing: the node cannot be planned for mount_now.
    sres["mounts:findmnt"] = {127, ""};
    CHECK(Run(am, sres).errors.size() == 1);
  }

  TEST_CASE("mounts: fsc brings cachefilesd: install, RUN=yes, enable and start; nothing once it runs") {
    Inventory inv = Load({"{ source: \"nas:/export/data\", target: /data, options: [ro, fsc] }"});
    const std::string block = "# BEGIN labfleet mounts\nnas:/export/data /data nfs ro,fsc 0 0\n# END labfleet mounts\n";
    ProbeResults res = Node(kAdmin + block, 1);
    res["pkg-manager"] = {0, "apt\n"};
    res["dpkg-query:cachefilesd"] = {1, ""};
    res["file:/etc/default/cachefilesd"] = {0, "absent\n"};
    res["systemctl-show:cachefilesd.service"] = {0, ""};
    Out o = Run(inv, res);
    CHECK(o.errors.empty());
    CHECK(o.lines() == std::vector<std::string>{
                           "+ cachefilesd package (install; fsc on /data)",
                           "+ cachefilesd RUN=yes in /etc/default/cachefilesd",
                           "~ service cachefilesd.service (enable, start; fsc on /data)"});
    CHECK(o.changes[0].command.find("apt-get install -y -q") != std::string::npos);
    CHECK(o.changes[1].file.bytes == "# Written by labfleet (mounts: fsc needs cachefilesd running).\nRUN=yes\n");
    CHECK(o.changes[2].command == "systemctl enable cachefilesd.service\nsystemctl start cachefilesd.service\n");

    // Installed with Debian's file (RUN=yes commented out), the unit generated from the init script, stopped.
    res["dpkg-query:cachefilesd"] = {0, "cachefilesd\tinstall ok installed\t0.10.10-0.3\n"};
    res["file:/etc/default/cachefilesd"] = FileOut(testing::Fixture("mounts/default-cachefilesd-debian12.txt"));
    res["systemctl-show:cachefilesd.service"] = {
        0, "Id=cachefilesd.service\nNames=cachefilesd.service\nLoadState=loaded\nActiveState=inactive\n"
           "SubState=dead\nUnitFileState=generated\n"};
    Out deb = Run(inv, res);
    CHECK(deb.lines() == std::vector<std::string>{"~ cachefilesd RUN=yes in /etc/default/cachefilesd",
                                                  "~ service cachefilesd.service (start; fsc on /data)"});

    // Running: nothing to do.
    res["file:/etc/default/cachefilesd"] = FileOut(CachefilesdRunYes(testing::Fixture("mounts/default-cachefilesd-debian12.txt")));
    res["systemctl-show:cachefilesd.service"] = {
        0, "Id=cachefilesd.service\nNames=cachefilesd.service\nLoadState=loaded\nActiveState=active\n"
           "SubState=running\nUnitFileState=generated\n"};
    Out ok = Run(inv, res);
    CHECK(ok.changes.empty());
    CHECK(ok.notes[0] == "mounts:cachefilesd: nothing to do because cachefilesd is installed, enabled and running "
                         "(fsc on /data)");

    // The node's `packages` installs it: no second install here.
    Inventory pk = Load({"{ source: \"nas:/export/data\", target: /data, options: [ro, fsc] }"}, "    packages: [cachefilesd]\n");
    res["dpkg-query:cachefilesd"] = {1, ""};
    Out p = Run(pk, res);
    for (const auto& l : p.lines()) CHECK(l.find("cachefilesd package") == std::string::npos);
  }
}
