// The batched file probe against FileProbe's own per-path command, both through a real /bin/sh on real files:
// the split results must be byte for byte what each path's own probe printed.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "engine/file_probe.h"
#include "engine/local_transport.h"
#include "engine/planner.h"
#include "engine/sha256.h"
#include "engine/shell.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {
// The probe's results for `paths`, through a real /bin/sh on this machine.
ProbeResults ProbeHere(const std::vector<std::string>& paths) {
  std::vector<Probe> probes = {BatchedFileProbe(paths)};
  std::string nonce = NewNonce();
  LocalTransport local;
  RunResult r = local.run(ScriptRunner(), BuildProbeScript(probes, nonce));
  REQUIRE(r.ok());
  ProbeResults each = ParseProbeOutput(r.out, probes, nonce);
  ProbeResults split;
  REQUIRE(SplitBatchedFileProbe(each["labfleet:files"].out, paths, split));
  CHECK(split.size() == paths.size());
  return split;
}
}  // namespace

TEST_SUITE("file probe") {
  TEST_CASE("batched probe through a real shell: regular, empty, binary, odd names, dir, symlink, fifo, absent, large") {
    REQUIRE(geteuid() == 0);
    TempDir d("labfleet-fprobe", "/run");  // /run: every directory above is root's, so root reads
    d.write("plain", "one\ntwo");           // no final newline
    d.write("empty", "");
    std::ofstream(d.str("binary"), std::ios::binary) << std::string("a\0b\n\0", 5) << "@@lf-0000:end:0:0\n";
    d.write("it's a $(name) with spaces", "odd\n");
    std::filesystem::create_directory(d.str("dir"));
    std::filesystem::create_symlink(d.str("plain"), d.str("link"));
    REQUIRE(mkfifo(d.str("fifo").c_str(), 0600) == 0);  // must not be read (it would block)
    chmod(d.str("plain").c_str(), 0640);
    std::string big(kMaxProbedFileBytes + 7, 'x');
    d.write("big", big);
    std::vector<std::string> paths = {d.str("plain"), d.str("missing"), d.str("empty"), d.str("binary"),
                                      d.str("it's a $(name) with spaces"), d.str("dir"), d.str("link"),
                                      d.str("fifo"), d.str("dir/missing-too"), d.str("big"), "relative/path",
                                      d.str("new\nline")};
    Probe one = FileProbe(paths[0]);
    std::string back;
    CHECK(IsFileProbe(one, &back));
    CHECK(back == paths[0]);
    CHECK_FALSE(IsFileProbe(BatchedFileProbe(paths)));
    CHECK_FALSE(IsFileProbe({"file:/etc/motd", "cat /etc/motd"}));  // only FileProbe's own command counts

    ProbeResults split = ProbeHere(paths);
    FileState plain = ParseFileProbe(split, d.str("plain"));
    CHECK(plain.exists);
    CHECK(plain.regular);
    CHECK(plain.mode == 0640);
    CHECK(plain.content == "one\ntwo");
    CHECK(plain.unsafe_dirs.empty());
    CHECK(ParseFileProbe(split, d.str("binary")).content == std::string("a\0b\n\0", 5) + "@@lf-0000:end:0:0\n");
    CHECK(ParseFileProbe(split, d.str("it's a $(name) with spaces")).content == "odd\n");
    CHECK(ParseFileProbe(split, d.str("empty")).exists);
    CHECK_FALSE(ParseFileProbe(split, d.str("missing")).exists);
    CHECK_FALSE(ParseFileProbe(split, d.str("dir/missing-too")).exists);
    FileState link = ParseFileProbe(split, d.str("link"));
    CHECK(link.exists);
    CHECK_FALSE(link.regular);
    CHECK(link.content.empty());
    FileState fifo = ParseFileProbe(split, d.str("fifo"));
    CHECK(fifo.exists);
    CHECK_FALSE(fifo.regular);
    // Larger than the bound: not held, hashed.
    FileState large = ParseFileProbe(split, d.str("big"));
    CHECK(large.exists);
    CHECK(large.size == big.size());
    CHECK_FALSE(large.content_read);
    CHECK(large.content.empty());
    CHECK(large.unread_reason == "too large to diff: " + std::to_string(big.size()) + " bytes");
    CHECK(large.sha256 == Sha256Hex(big));
    // Never put in the command: refused as unsafe.
    for (const char* bad : {"relative/path", "new\nline"}) {
      std::string p = bad[0] == 'r' ? std::string(bad) : d.str(bad);
      FileState s = ParseFileProbe(split, p);
      CHECK_FALSE(s.exists);
      CHECK_FALSE(UnsafeWriteReason({p, "", 0644, "root", "root"}, s).empty());
    }
  }

  TEST_CASE("a user's directory: files read as that user, links there never followed by root, writes refused for root") {
    REQUIRE(geteuid() == 0);
    TempDir d("labfleet-fprobe-user", "/run");
    REQUIRE(chmod(d.str().c_str(), 0755) == 0);  // mkdtemp makes it 0700: nobody could not look inside
    d.write("root-only", "root's secret\n");
    chmod(d.str("root-only").c_str(), 0600);
    d.write("home/own", "mine\n");
    d.write("home/sub/deep", "deep\n");
    REQUIRE(chown(d.str("home").c_str(), 65534, 65534) == 0);  // nobody
    REQUIRE(chown(d.str("home/own").c_str(), 65534, 65534) == 0);
    REQUIRE(chown(d.str("home/sub").c_str(), 65534, 65534) == 0);
    REQUIRE(chown(d.str("home/sub/deep").c_str(), 65534, 65534) == 0);
    std::filesystem::create_symlink(d.str("root-only"), d.str("home/planted"));  // a file link
    std::filesystem::create_symlink(d.str(""), d.str("home/dirlink"));           // a directory link
    REQUIRE(lchown(d.str("home/planted").c_str(), 65534, 65534) == 0);
    std::vector<std::string> paths = {d.str("home/own"), d.str("home/planted"), d.str("home/dirlink/root-only"),
                                      d.str("home/sub/deep")};
    ProbeResults split = ProbeHere(paths);
    FileState own = ParseFileProbe(split, d.str("home/own"));
    CHECK(own.content == "mine\n");
    REQUIRE(own.unsafe_dirs.size() == 1);
    CHECK(own.unsafe_dirs[0].kind == "user");
    CHECK(own.unsafe_dirs[0].path == d.str("home"));
    CHECK(ParseFileProbe(split, d.str("home/sub/deep")).content == "deep\n");
    // The planted link is not a regular file: nothing read. Through the directory link: nothing read either.
    for (const auto& p : {d.str("home/planted"), d.str("home/dirlink/root-only")}) {
      CAPTURE(p);
      CHECK(ParseFileProbe(split, p).content.empty());
    }
    CHECK(split["file:" + d.str("home/dirlink/root-only")].out.find("root's secret") == std::string::npos);
    FileState via_link = ParseFileProbe(split, d.str("home/dirlink/root-only"));
    CHECK(UnsafeWriteReason({d.str("home/dirlink/root-only"), "", 0600, "nobody", "nogroup"}, via_link) ==
          d.str("home/dirlink") + " is a symbolic link (owned by root)");
    // Root's file below nobody's directory: refused. nobody's own file: written as nobody.
    CHECK(UnsafeWriteReason({d.str("home/own"), "", 0644, "root", "root"}, own) ==
          d.str("home") + " belongs to nobody, and labfleet writes root's files only below directories that only root can change");
    CHECK(UnsafeWriteReason({d.str("home/own"), "", 0644, "nobody", "nogroup"}, own) == "");
    DiffResult refused = DiffFile({d.str("home/own"), "x\n", 0644, "root", "root"}, own, "file own");
    CHECK(refused.changes.empty());
    REQUIRE(refused.warnings.size() == 1);
    CHECK(refused.warnings[0].rfind("refused: file own: " + d.str("home") + " belongs to nobody", 0) == 0);
  }

  TEST_CASE("a user's directory: only regular files are read as the user (no setpriv for its directories or absent files)") {
    REQUIRE(geteuid() == 0);
    TempDir d("labfleet-fprobe-user", "/run");
    REQUIRE(chmod(d.str().c_str(), 0755) == 0);
    d.write("home/own", "mine\n");
    d.write("home/.ssh/keys", "k\n");
    for (const char* p : {"home", "home/own", "home/.ssh", "home/.ssh/keys"})
      REQUIRE(chown(d.str(p).c_str(), 65534, 65534) == 0);
    // A setpriv that logs its arguments, then runs the real one: a shell function (the probe sets its own PATH).
    const std::string runner = "setpriv() { printf '%s\\n' \"$*\" >> " + ShellQuote(d.str("setpriv.log")) +
                               "; command setpriv \"$@\"; }; eval \"$(cat)\"";
    const std::vector<std::string> paths = {d.str("home/own"), d.str("home/.ssh"), d.str("home/.ssh/keys"),
                                            d.str("home/absent")};
    std::vector<Probe> probes = {BatchedFileProbe(paths)};
    std::string nonce = NewNonce();
    RunResult r = LocalTransport().run(Cmd("sh").arg("-c").arg(runner).str(), BuildProbeScript(probes, nonce));
    REQUIRE(r.ok());
    ProbeResults each = ParseProbeOutput(r.out, probes, nonce);
    ProbeResults split;
    REQUIRE(SplitBatchedFileProbe(each["labfleet:files"].out, paths, split));
    CHECK(ParseFileProbe(split, d.str("home/own")).content == "mine\n");
    CHECK(ParseFileProbe(split, d.str("home/.ssh/keys")).content == "k\n");
    CHECK(ParseFileProbe(split, d.str("home/.ssh")).content.empty());
    CHECK_FALSE(ParseFileProbe(split, d.str("home/absent")).exists);
    const std::string log = LocalTransport().run(Cmd("cat").arg(d.str("setpriv.log")).str()).out;
    INFO(log);
    CHECK(log.find(d.str("home/own")) != std::string::npos);
    CHECK(log.find(d.str("home/.ssh/keys")) != std::string::npos);
    CHECK(log.find(d.str("home/.ssh") + " ") == std::string::npos);  // the directory itself: never
    CHECK(log.find(d.str("home/absent")) == std::string::npos);
    CHECK(std::count(log.begin(), log.end(), '\n') == 2);
  }

  TEST_CASE("DiffFile: too large by sha256, secrets by sha256 only, owner fixed by rewriting in a user's directory") {
    FileState big;
    big.exists = true;
    big.mode = 0644;
    big.owner = big.group = "root";
    big.content_read = false;
    big.size = 5000000;
    big.unread_reason = "too large to diff: 5000000 bytes";
    std::string want(5000000, 'y');
    big.sha256 = Sha256Hex(want);
    CHECK(DiffFile({"/etc/big", want, 0644, "root", "root"}, big, "file /etc/big").changes.empty());
    big.sha256 = Sha256Hex("other");
    DiffResult d = DiffFile({"/etc/big", want, 0644, "root", "root"}, big, "file /etc/big");
    REQUIRE(d.changes.size() == 1);
    CHECK(d.changes[0].reason == "content differs (too large to diff: 5000000 bytes, sha256 " + Sha256Hex("other").substr(0, 12) +
                                     "... -> " + Sha256Hex(want).substr(0, 12) + "...)");
    CHECK(d.changes[0].diff.empty());

    FileState sec;
    sec.exists = true;
    sec.mode = 0600;
    sec.owner = sec.group = "root";
    sec.content = "PrivateKey = old\n";
    DiffResult s = DiffFile({"/etc/wireguard/wg0.conf", "PrivateKey = new\n", 0600, "root", "root"}, sec, "file wg0", false);
    REQUIRE(s.changes.size() == 1);
    CHECK(s.changes[0].secret);
    CHECK(s.changes[0].diff.empty());
    CHECK(s.changes[0].reason == "content differs, secret: sha256 " + Sha256Hex("PrivateKey = old\n").substr(0, 12) +
                                     "... -> " + Sha256Hex("PrivateKey = new\n").substr(0, 12) + "...");
    CHECK(LooksSecret("/etc/wireguard/wg0.conf", ""));
    CHECK(LooksSecret("/etc/ssh/ssh_host_ed25519_key", ""));
    CHECK_FALSE(LooksSecret("/etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA"));
    CHECK(LooksSecret("/etc/lab/x.conf", "-----BEGIN OPENSSH PRIVATE KEY-----\n"));
    CHECK(LooksSecret("/etc/shadow", ""));
    CHECK_FALSE(LooksSecret("/etc/motd", "hello\n"));

    FileState home;
    home.exists = true;
    home.mode = 0600;
    home.owner = "root";
    home.group = "root";
    home.content = "k\n";
    home.unsafe_dirs = {{"user", "alice", "/home/alice"}};
    DiffResult o = DiffFile({"/home/alice/.ssh/authorized_keys", "k\n", 0600, "alice", "alice"}, home, "keys");
    REQUIRE(o.changes.size() == 1);
    CHECK(o.changes[0].kind == Change::Kind::PutFile);  // rewritten as alice, never chown-ed by root
    home.owner = home.group = "alice";
    home.mode = 0644;
    DiffResult m = DiffFile({"/home/alice/.ssh/authorized_keys", "k\n", 0600, "alice", "alice"}, home, "keys");
    REQUIRE(m.changes.size() == 1);
    CHECK(m.changes[0].command == "lf_fixmeta /home/alice/.ssh/authorized_keys 0600 alice alice");
  }

  TEST_CASE("split: a file that changed between the two stats, short contents, user reads, garbage") {
    std::vector<std::string> paths = {"/a", "/b", "/c", "/h/u"};
    auto rec = [](const std::string& name, const std::string& meta) { return name + std::string(1, '\0') + meta + std::string(1, '\0'); };
    const std::string nul(1, '\0');
    const std::string dirs = std::string("/\tR\n/h\tU\td\tann\t1001\t1001\t755") + nul;
    std::string first = rec("/a", "644 root root 11 3 1.5 regular file") + rec("/c", "755 root root 12 4096 1.5 directory") +
                        rec("/h/u", "600 ann ann 13 5 1.5 regular file") + nul;
    auto probe = [&](const std::string& stat1, const std::string& contents, const std::string& stat2) {
      return stat1 + dirs + "0 " + nul + contents + nul + stat2 + "3\t" + Base64Encode("hello") + "\t\n";
    };
    ProbeResults out;
    REQUIRE(SplitBatchedFileProbe(probe(first, "abc", first), paths, out));
    CHECK(out["file:/a"].out == "present 644 root root regular file\tsize=3\nabc");
    CHECK(out["file:/b"].out == "absent\n");
    CHECK(out["file:/c"].out == "present 755 root root directory\tsize=4096\n");
    CHECK(out["file:/h/u"].out == "present 600 ann ann regular file\tsize=5\tunsafe=user:ann:/h\nhello");
    FileState u = ParseFileProbe(out, "/h/u");
    CHECK(u.content == "hello");
    REQUIRE(u.unsafe_dirs.size() == 1);
    CHECK(u.unsafe_dirs[0].owner == "ann");
    // Rewritten in between (new inode and size in the second stat): read again.
    std::string second = rec("/a", "644 root root 13 4 2.5 regular file") + rec("/c", "755 root root 12 4096 1.5 directory") +
                         rec("/h/u", "600 ann ann 13 5 1.5 regular file") + nul;
    CHECK_FALSE(SplitBatchedFileProbe(probe(first, "abc", second), paths, out));
    // head read less than the first stat said.
    CHECK_FALSE(SplitBatchedFileProbe(probe(first, "ab", first), paths, out));
    // Not what the command prints at all.
    CHECK_THROWS_AS(SplitBatchedFileProbe("garbage without a terminator", paths, out), std::runtime_error);
    CHECK_THROWS_AS(SplitBatchedFileProbe(rec("/zzz", "644 root root 1 0 1.5 regular empty file") + nul, paths, out),
                    std::runtime_error);
    CHECK_THROWS_AS(SplitBatchedFileProbe(rec("/a", "not a stat line") + nul, paths, out), std::runtime_error);
    CHECK_THROWS_AS(SplitBatchedFileProbe(first + "/h\tQ\tgarbage" + nul, paths, out), std::runtime_error);
  }
}
