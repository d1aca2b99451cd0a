// The batched file probe against FileProbe's own per-path command, both through a real /bin/sh on real files:
// the split results must be byte for byte what each path's own probe printed.
#include <doctest/doctest.h>
#include <fcntl.h>
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
#include "engine/text.h"
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

// The batched probe with the probe cache in `cache`, run by a real shell whose setpriv logs its arguments to
// `log` (what it logged goes to *setprivs, "" when nothing was read as a user); returns the split results.
ProbeResults ProbeLoggingSetpriv(const std::vector<std::string>& paths, const std::string& cache,
                                 const std::string& log, std::string* setprivs) {
  std::filesystem::remove(log);
  const std::string runner = "setpriv() { printf '%s\\n' \"$*\" >> " + ShellQuote(log) +
                             "; command setpriv \"$@\"; }; eval \"$(cat)\"";
  std::vector<Probe> probes = {BatchedFileProbe(paths, cache)};
  std::string nonce = NewNonce();
  RunResult r = LocalTransport().run(Cmd("sh").arg("-c").arg(runner).str(), BuildProbeScript(probes, nonce));
  REQUIRE(r.ok());
  ProbeResults each = ParseProbeOutput(r.out, probes, nonce);
  ProbeResults split;
  REQUIRE(SplitBatchedFileProbe(each["labfleet:files"].out, paths, split));
  *setprivs = std::filesystem::exists(log) ? LocalTransport().run(Cmd("cat").arg(log).str()).out : "";
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
    const std::vector<std::string> paths = {d.str("home/own"), d.str("home/.ssh"), d.str("home/.ssh/keys"),
                                            d.str("home/absent")};
    std::string log;
    ProbeResults split = ProbeLoggingSetpriv(paths, /*cache=*/"", d.str("setpriv.log"), &log);
    CHECK(ParseFileProbe(split, d.str("home/own")).content == "mine\n");
    CHECK(ParseFileProbe(split, d.str("home/.ssh/keys")).content == "k\n");
    CHECK(ParseFileProbe(split, d.str("home/.ssh")).content.empty());
    CHECK_FALSE(ParseFileProbe(split, d.str("home/absent")).exists);
    INFO(log);
    CHECK(log.find(d.str("home/own")) != std::string::npos);
    CHECK(log.find(d.str("home/.ssh/keys")) != std::string::npos);
    CHECK(log.find(d.str("home/.ssh") + " ") == std::string::npos);  // the directory itself: never
    CHECK(log.find(d.str("home/absent")) == std::string::npos);
    // Both files are nobody's: ONE setpriv reads them, as nobody.
    CHECK(std::count(log.begin(), log.end(), '\n') == 1);
    CHECK(log.rfind("--reuid=65534 --regid=65534 --clear-groups -- sh -c ", 0) == 0);
  }

  // A setpriv that logs its arguments (one line per call), then runs the real one, or for `forge_uid` prints
  // `forged` instead, as a user who ptraces the process running as them could.
  RunResult ProbeWithSetpriv(const TempDir& d, const std::vector<std::string>& paths, const std::string& nonce,
                             const std::string& forge_uid = "", const std::string& forged = "") {
    const std::string runner =
        "setpriv() { printf '%s\\n' \"$*\" >> " + ShellQuote(d.str("setpriv.log")) + "; case $1 in --reuid=" +
        (forge_uid.empty() ? "none" : forge_uid) + ") printf %s " + ShellQuote(forged) +
        ";; *) command setpriv \"$@\";; esac; }; eval \"$(cat)\"";
    return LocalTransport().run(Cmd("sh").arg("-c").arg(runner).str(), BuildProbeScript({BatchedFileProbe(paths)}, nonce));
  }

  TEST_CASE("a user's directory: one setpriv per owner, each owner's files read as that owner only") {
    REQUIRE(geteuid() == 0);
    TempDir d("labfleet-fprobe-owners", "/run");
    REQUIRE(chmod(d.str().c_str(), 0755) == 0);
    d.write("ann/.ssh/authorized_keys", "ann's key\n");
    d.write("ann/.profile", "ann's profile\n");
    d.write("bob/.ssh/authorized_keys", "bob's key\n");
    d.write("ann/own-by-root", "not root's to read\n");
    std::string big(kMaxProbedFileBytes + 5, 'z');
    d.write("bob/big", big);
    for (const char* p : {"ann", "ann/.ssh", "ann/.ssh/authorized_keys", "ann/.profile"})
      REQUIRE(chown(d.str(p).c_str(), 65534, 65534) == 0);
    for (const char* p : {"bob", "bob/.ssh", "bob/.ssh/authorized_keys", "bob/big"})
      REQUIRE(chown(d.str(p).c_str(), 65533, 65533) == 0);
    REQUIRE(chmod(d.str("ann/own-by-root").c_str(), 0600) == 0);  // root's, in ann's directory: ann cannot read it
    const std::vector<std::string> paths = {d.str("ann/.ssh/authorized_keys"), d.str("bob/.ssh/authorized_keys"),
                                            d.str("ann/.profile"), d.str("ann/own-by-root"), d.str("bob/big")};
    std::string nonce = NewNonce();
    RunResult r = ProbeWithSetpriv(d, paths, nonce);
    REQUIRE(r.ok());
    std::vector<Probe> probes = {BatchedFileProbe(paths)};
    ProbeResults each = ParseProbeOutput(r.out, probes, nonce);
    ProbeResults split;
    REQUIRE(SplitBatchedFileProbe(each["labfleet:files"].out, paths, split));
    CHECK(ParseFileProbe(split, paths[0]).content == "ann's key\n");
    CHECK(ParseFileProbe(split, paths[1]).content == "bob's key\n");
    CHECK(ParseFileProbe(split, paths[2]).content == "ann's profile\n");
    FileState root_in_ann = ParseFileProbe(split, paths[3]);
    CHECK(root_in_ann.exists);
    CHECK(root_in_ann.content.empty());  // read as ann, who may not: nothing, never root's view
    FileState large = ParseFileProbe(split, paths[4]);
    CHECK_FALSE(large.content_read);
    CHECK(large.sha256 == Sha256Hex(big));  // hashed as bob
    const std::string log = LocalTransport().run(Cmd("cat").arg(d.str("setpriv.log")).str()).out;
    INFO(log);
    std::vector<std::string> lines = SplitLines(log);
    if (!lines.empty() && lines.back().empty()) lines.pop_back();
    REQUIRE(lines.size() == 3);  // ann's read, bob's read, bob's sha256sum of the large file
    for (const auto& l : lines) {
      bool ann = l.rfind("--reuid=65534 --regid=65534 --clear-groups -- ", 0) == 0;
      bool bob = l.rfind("--reuid=65533 --regid=65533 --clear-groups -- ", 0) == 0;
      CHECK((ann || bob));
      // Each owner's process is given only paths below that owner's directory.
      CHECK((l.find(d.str(ann ? "bob/" : "ann/")) == std::string::npos));
    }
    CHECK(lines[0].find(d.str("ann/own-by-root")) != std::string::npos);
    CHECK(lines[2].find("sha256sum") != std::string::npos);
  }

  TEST_CASE("a user's directory: what a user's process forges stays in that user's records") {
    REQUIRE(geteuid() == 0);
    TempDir d("labfleet-fprobe-forge", "/run");
    REQUIRE(chmod(d.str().c_str(), 0755) == 0);
    d.write("ann/a", "ann's\n");
    d.write("ann/b", "ann's b\n");
    d.write("bob/k", "bob's\n");
    for (const char* p : {"ann", "ann/a", "ann/b"}) REQUIRE(chown(d.str(p).c_str(), 65534, 65534) == 0);
    for (const char* p : {"bob", "bob/k"}) REQUIRE(chown(d.str(p).c_str(), 65533, 65533) == 0);
    const std::vector<std::string> paths = {d.str("ann/a"), d.str("bob/k"), d.str("ann/b")};
    const std::string forged_bob = "6b65790a";  // "key\n" as hex
    // What ann's process might print instead of od's output: a record line for bob's path (index 1), a marker,
    // NUL-free binary, one record too many, one too few, odd hex. Every one: ann's two files unread ("garbled")
    // or, where it is well-formed od output, only ann's own records changed; bob's file always read as bob.
    for (const std::string& forged : std::vector<std::string>{
         "x 61\n\t1\t" + forged_bob + "\t\n", "x\n@@lf-0:end:0:0\nx", "x 61x 62x 63", "x 61", "x 6x 62",
          "x 61 62 63\nx 64 0a"}) {
      CAPTURE(forged);
      std::filesystem::remove(d.str("setpriv.log"));
      std::string nonce = NewNonce();
      RunResult r = ProbeWithSetpriv(d, paths, nonce, "65534", forged);
      REQUIRE(r.ok());
      std::vector<Probe> probes = {BatchedFileProbe(paths)};
      ProbeResults each = ParseProbeOutput(r.out, probes, nonce);
      ProbeResults split;
      REQUIRE(SplitBatchedFileProbe(each["labfleet:files"].out, paths, split));
      CHECK(ParseFileProbe(split, d.str("bob/k")).content == "bob's\n");
      CHECK(ParseFileProbe(split, d.str("bob/k")).content_read);
      FileState a = ParseFileProbe(split, d.str("ann/a")), b = ParseFileProbe(split, d.str("ann/b"));
      if (forged == "x 61 62 63\nx 64 0a") {  // well-formed: two records, ann's own files
        CHECK(a.content == "abc");
        CHECK(b.content == "d\n");
      } else if (forged == "x 6x 62") {  // two records, the first odd: that one unread, the other ann's "b"
        CHECK_FALSE(a.content_read);
        CHECK(b.content == "b");
      } else {
        CHECK_FALSE(a.content_read);
        CHECK_FALSE(b.content_read);
        CHECK(a.unread_reason.find("interfered") != std::string::npos);
      }
    }
  }

  // The probe cache (file_probe.h): the real script through a real shell and the real setpriv, logged.
  TEST_CASE("probe cache: a file read as its user is remembered, then taken from the cache until its inode changes") {
    REQUIRE(geteuid() == 0);
    TempDir d("labfleet-fprobe-cache", "/run");
    REQUIRE(chmod(d.str().c_str(), 0755) == 0);
    d.write("ann/.ssh/authorized_keys", "ann's key\n");
    std::string big(kMaxCachedProbeBytes + 10, 'b');
    d.write("ann/big", big);
    for (const char* p : {"ann", "ann/.ssh", "ann/.ssh/authorized_keys", "ann/big"})
      REQUIRE(chown(d.str(p).c_str(), 65534, 65534) == 0);
    const std::string cache = d.str("cache"), keys = d.str("ann/.ssh/authorized_keys"), log = d.str("setpriv.log");
    const std::vector<std::string> paths = {keys, d.str("ann/big"), d.str("etc-like")};
    d.write("etc-like", "root's\n");
    // One probe: the contents it gives, and the setpriv lines it logged.
    auto probe = [&](std::string* setprivs) {
      ProbeResults split = ProbeLoggingSetpriv(paths, cache, log, setprivs);
      CHECK(ParseFileProbe(split, d.str("ann/big")).content == big);
      CHECK(ParseFileProbe(split, d.str("etc-like")).content == "root's\n");
      return ParseFileProbe(split, keys);
    };
    std::string sp;
    // 1: no cache directory yet: read as ann, the directory made root's, 0700.
    CHECK(probe(&sp).content == "ann's key\n");
    CHECK(sp.find(keys) != std::string::npos);
    struct stat st {};
    REQUIRE(lstat(cache.c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK((st.st_mode & 07777) == 0700);
    CHECK(st.st_uid == 0);
    // 2: the files' ctimes are still within 2 s of the probe: read as ann again, nothing remembered.
    CHECK(probe(&sp).content == "ann's key\n");
    CHECK(sp.find(keys) != std::string::npos);
    auto entries = [&] {
      int n = 0;
      for (const auto& e : std::filesystem::directory_iterator(cache))
        if (e.path().filename().string()[0] != '.') ++n;
      return n;
    };
    CHECK(entries() == 0);
    sleep(3);
    // 3: read as ann and remembered (the small file only; the large one is never remembered).
    CHECK(probe(&sp).content == "ann's key\n");
    CHECK(sp.find(keys) != std::string::npos);
    CHECK(entries() == 1);
    // 4: a hit: ann's key file is not read again (her large file still is), same content.
    FileState hit = probe(&sp);
    CHECK(hit.content == "ann's key\n");
    CHECK(hit.content_read);
    CHECK(sp.find(keys) == std::string::npos);
    CHECK(sp.find(d.str("ann/big")) != std::string::npos);
    // 5: the file changes (same size, same mtime set back): its ctime moved, so it is read again.
    {
      struct stat before {};
      REQUIRE(stat(keys.c_str(), &before) == 0);
      std::ofstream(keys) << "ann's kez\n";
      struct timespec ts[2] = {before.st_atim, before.st_mtim};
      REQUIRE(utimensat(AT_FDCWD, keys.c_str(), ts, 0) == 0);
    }
    CHECK(probe(&sp).content == "ann's kez\n");
    CHECK(sp.find(keys) != std::string::npos);
    // 6: an entry whose remembered output is not od's (hex and spaces) is not taken.
    sleep(3);
    probe(&sp);  // remembers "kez"
    REQUIRE(entries() == 1);
    std::string entry;
    for (const auto& e : std::filesystem::directory_iterator(cache))
      if (e.path().filename().string()[0] != '.') entry = e.path().string();
    std::string first = SplitLines(LocalTransport().run(Cmd("cat").arg(entry).str()).out)[0];
    std::ofstream(entry) << first << "\nh61 62; rm -rf /\n";
    CHECK(probe(&sp).content == "ann's kez\n");
    CHECK(sp.find(keys) != std::string::npos);
    // 7: a cache directory others may write is never used (nor written).
    probe(&sp);  // remembered again
    CHECK(probe(&sp).content == "ann's kez\n");
    CHECK(sp.find(keys) == std::string::npos);
    REQUIRE(chmod(cache.c_str(), 0777) == 0);
    CHECK(probe(&sp).content == "ann's kez\n");
    CHECK(sp.find(keys) != std::string::npos);
    // 8: the same tuple read by another user (ann's .ssh, the directory the file is read through, given to someone
    // else) is not ann's record.
    REQUIRE(chmod(cache.c_str(), 0700) == 0);
    CHECK(probe(&sp).content == "ann's kez\n");
    CHECK(sp.find(keys) == std::string::npos);
    REQUIRE(chown(d.str("ann/.ssh").c_str(), 65533, 65533) == 0);
    CHECK(probe(&sp).content == "ann's kez\n");
    CHECK(sp.find("--reuid=65533 --regid=65533 --clear-groups -- sh -c ") != std::string::npos);
    CHECK(sp.find(keys) != std::string::npos);
  }

  // All of a probe's cache entries are read by ONE `head -q -n 2`: a damaged entry must not shift another path's
  // record onto it; what is out of step is read again as its user.
  TEST_CASE("probe cache: several entries at once; a damaged one is read again, and no record lands on another path") {
    REQUIRE(geteuid() == 0);
    TempDir d("labfleet-fprobe-cache2", "/run");
    REQUIRE(chmod(d.str().c_str(), 0755) == 0);
    const std::vector<std::pair<std::string, int>> users = {{"ann", 65534}, {"bob", 65533}, {"cy", 65532}};
    std::vector<std::string> paths;
    for (const auto& [u, id] : users) {
      d.write(u + "/.ssh/authorized_keys", u + "'s key\n");
      for (const std::string& p : {u, u + "/.ssh", u + "/.ssh/authorized_keys"})
        REQUIRE(chown(d.str(p).c_str(), id, id) == 0);
      paths.push_back(d.str(u + "/.ssh/authorized_keys"));
    }
    d.write("ann/empty", "");
    REQUIRE(chown(d.str("ann/empty").c_str(), 65534, 65534) == 0);
    paths.push_back(d.str("ann/empty"));
    const std::string cache = d.str("cache"), log = d.str("setpriv.log");
    auto probe = [&](std::string* setprivs) {
      ProbeResults split = ProbeLoggingSetpriv(paths, cache, log, setprivs);
      for (size_t i = 0; i < users.size(); ++i) CHECK(ParseFileProbe(split, paths[i]).content == users[i].first + "'s key\n");
      FileState empty = ParseFileProbe(split, paths[3]);
      CHECK(empty.exists);
      CHECK(empty.content_read);
      CHECK(empty.content.empty());
    };
    std::string sp;
    probe(&sp);  // makes the cache directory
    sleep(3);
    probe(&sp);  // remembers all four
    int entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(cache))
      if (e.path().filename().string()[0] != '.') ++entries;
    REQUIRE(entries == 4);
    probe(&sp);  // four hits: nobody's file is read again
    CHECK(sp.empty());
    // bob's entry loses its second line: bob's key is read as bob again, and the entries after his in the one
    // `head` are out of step (cy's hex would pair with ann's header): read again as their users, never paired.
    const std::string bob_entry = cache + "/" + Sha256Hex(paths[1]).substr(0, 40);
    REQUIRE(std::filesystem::exists(bob_entry));
    std::string bob_first = SplitLines(LocalTransport().run(Cmd("cat").arg(bob_entry).str()).out)[0];
    std::ofstream(bob_entry) << bob_first << "\n";
    probe(&sp);
    CHECK(sp.find("--reuid=65533 ") != std::string::npos);
    CHECK(sp.find(paths[1]) != std::string::npos);
    CHECK(sp.find(paths[0]) == std::string::npos);  // before the damage: still a hit
    // A record made for cy but written in bob's entry (the right header, cy's hex) is still only bob's to forge:
    // the probe reads bob's file as bob whenever the header is not his.
    std::string cy_entry = cache + "/" + Sha256Hex(paths[2]).substr(0, 40);
    std::string cy_lines = LocalTransport().run(Cmd("cat").arg(cy_entry).str()).out;
    std::ofstream(bob_entry) << cy_lines;
    probe(&sp);
    CHECK(sp.find("--reuid=65533 ") != std::string::npos);
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
    std::string first = rec("/a", "644 0 0 11 3 1.5 root root regular file") +
                        rec("/c", "755 0 0 12 4096 1.5 root root directory") +
                        rec("/h/u", "600 1001 1001 13 5 1.5 ann ann regular file") + nul;
    // The second stat: the files read as root only (/a), without names.
    const std::string again = rec("/a", "644 0 0 11 3 1.5") + nul;
    auto probe = [&](const std::string& stat1, const std::string& contents, const std::string& stat2) {
      return stat1 + dirs + "0 " + nul + contents + nul + stat2 + "3\t68656c6c6f\t\n";
    };
    ProbeResults out;
    REQUIRE(SplitBatchedFileProbe(probe(first, "abc", again), paths, out));
    CHECK(out["file:/a"].out == "present 644 root root regular file\tsize=3\nabc");
    CHECK(out["file:/b"].out == "absent\n");
    CHECK(out["file:/c"].out == "present 755 root root directory\tsize=4096\n");
    CHECK(out["file:/h/u"].out == "present 600 ann ann regular file\tsize=5\tunsafe=user:ann:/h\nhello");
    FileState u = ParseFileProbe(out, "/h/u");
    CHECK(u.content == "hello");
    REQUIRE(u.unsafe_dirs.size() == 1);
    CHECK(u.unsafe_dirs[0].owner == "ann");
    // Rewritten in between (new inode and size in the second stat): read again.
    CHECK_FALSE(SplitBatchedFileProbe(probe(first, "abc", rec("/a", "644 0 0 13 4 2.5") + nul), paths, out));
    // Given to another owner in between (same inode, size and mtime): read again.
    CHECK_FALSE(SplitBatchedFileProbe(probe(first, "abc", rec("/a", "644 1001 0 11 3 1.5") + nul), paths, out));
    // Gone in between (no second record).
    CHECK_FALSE(SplitBatchedFileProbe(probe(first, "abc", nul), paths, out));
    // head read less than the first stat said.
    CHECK_FALSE(SplitBatchedFileProbe(probe(first, "ab", again), paths, out));
    // Not what the command prints at all.
    CHECK_THROWS_AS(SplitBatchedFileProbe("garbage without a terminator", paths, out), std::runtime_error);
    CHECK_THROWS_AS(SplitBatchedFileProbe(rec("/zzz", "644 0 0 1 0 1.5 root root regular empty file") + nul, paths, out),
                    std::runtime_error);
    CHECK_THROWS_AS(SplitBatchedFileProbe(rec("/a", "not a stat line") + nul, paths, out), std::runtime_error);
    CHECK_THROWS_AS(SplitBatchedFileProbe(first + "/h\tQ\tgarbage" + nul, paths, out), std::runtime_error);
    // A user read's record (the user's process chose its bytes): odd or non-hex data is that file unread, not a
    // failure of the node; a later line for the index replaces an earlier one (the shell's "garbled" verdict).
    const std::string head = first + dirs + "0 " + nul + "abc" + nul + again;
    REQUIRE(SplitBatchedFileProbe(head + "3\t6g\t\n", paths, out));
    CHECK(ParseFileProbe(out, "/h/u").unread_reason.find("interfered") != std::string::npos);
    REQUIRE(SplitBatchedFileProbe(head + "3\t686\t\n", paths, out));
    CHECK_FALSE(ParseFileProbe(out, "/h/u").content_read);
    REQUIRE(SplitBatchedFileProbe(head + "3\t68\t\n3\t!\tgarbled\n", paths, out));
    CHECK_FALSE(ParseFileProbe(out, "/h/u").content_read);
    REQUIRE(SplitBatchedFileProbe(head + "3\t\t\n", paths, out));
    CHECK(ParseFileProbe(out, "/h/u").content == "");
    CHECK(ParseFileProbe(out, "/h/u").content_read);
  }
}
