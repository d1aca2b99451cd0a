// The batched file probe against FileProbe's own per-path command, both through a real /bin/sh on real files:
// the split results must be byte for byte what each path's own probe printed.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "engine/file_probe.h"
#include "engine/local_transport.h"
#include "engine/planner.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;
using namespace labfleet::testing;

TEST_SUITE("file probe") {
  TEST_CASE("batched probe equals the per-path probes: regular, empty, binary, odd names, dir, symlink, fifo, absent") {
    TempDir d("labfleet-fprobe");
    d.write("plain", "one\ntwo");                      // no final newline
    d.write("empty", "");
    std::ofstream(d.str("binary"), std::ios::binary) << std::string("a\0b\n\0", 5) << "@@lf-0000:end:0:0\n";
    d.write("it's a $(name)\nwith newline", "odd\n");
    std::filesystem::create_directory(d.str("dir"));
    std::filesystem::create_symlink(d.str("plain"), d.str("link"));
    REQUIRE(mkfifo(d.str("fifo").c_str(), 0600) == 0);  // must not be read (it would block)
    chmod(d.str("plain").c_str(), 0640);
    std::vector<std::string> paths = {d.str("plain"), d.str("missing"), d.str("empty"), d.str("binary"),
                                      d.str("it's a $(name)\nwith newline"), d.str("dir"), d.str("link"),
                                      d.str("fifo"), d.str("dir/missing-too")};
    std::vector<Probe> probes;
    for (const auto& p : paths) {
      probes.push_back(FileProbe(p));
      std::string back;
      CHECK(IsFileProbe(probes.back(), &back));
      CHECK(back == p);
    }
    probes.push_back(BatchedFileProbe(paths));
    CHECK_FALSE(IsFileProbe(probes.back()));
    CHECK_FALSE(IsFileProbe({"file:/etc/motd", "cat /etc/motd"}));  // only FileProbe's own command counts

    std::string nonce = NewNonce();
    LocalTransport local;
    RunResult r = local.run(ScriptRunner(), BuildProbeScript(probes, nonce));
    REQUIRE(r.ok());
    ProbeResults each = ParseProbeOutput(r.out, probes, nonce);
    ProbeResults split;
    REQUIRE(SplitBatchedFileProbe(each["labfleet:files"].out, paths, split));
    CHECK(split.size() == paths.size());
    for (const auto& p : paths) {
      CAPTURE(p);
      CHECK(split["file:" + p].out == each["file:" + p].out);
    }
    FileState plain = ParseFileProbe(split, d.str("plain"));
    CHECK(plain.exists);
    CHECK(plain.regular);
    CHECK(plain.mode == 0640);
    CHECK(plain.content == "one\ntwo");
    CHECK(ParseFileProbe(split, d.str("binary")).content == std::string("a\0b\n\0", 5) + "@@lf-0000:end:0:0\n");
    CHECK_FALSE(ParseFileProbe(split, d.str("missing")).exists);
    FileState link = ParseFileProbe(split, d.str("link"));
    CHECK(link.exists);
    CHECK_FALSE(link.regular);
    CHECK(link.content.empty());
    FileState fifo = ParseFileProbe(split, d.str("fifo"));
    CHECK(fifo.exists);
    CHECK_FALSE(fifo.regular);
  }

  TEST_CASE("split: a file that changed between the two stats, short contents, garbage") {
    std::vector<std::string> paths = {"/a", "/b", "/c"};
    auto rec = [](const std::string& name, const std::string& meta) { return name + std::string(1, '\0') + meta + std::string(1, '\0'); };
    const std::string nul(1, '\0');
    std::string first = rec("/a", "644 root root 11 3 1.5 regular file") + rec("/c", "755 root root 12 4096 1.5 directory") + nul;
    ProbeResults out;
    REQUIRE(SplitBatchedFileProbe(first + "abc" + first, paths, out));
    CHECK(out["file:/a"].out == "present 644 root root regular file\nabc");
    CHECK(out["file:/b"].out == "absent\n");
    CHECK(out["file:/c"].out == "present 755 root root directory\n");
    // Rewritten in between (new inode and size in the second stat): read again.
    std::string second = rec("/a", "644 root root 13 4 2.5 regular file") + rec("/c", "755 root root 12 4096 1.5 directory") + nul;
    CHECK_FALSE(SplitBatchedFileProbe(first + "abc" + second, paths, out));
    // cat read more (or less) than the first stat said.
    CHECK_FALSE(SplitBatchedFileProbe(first + "abcd" + first, paths, out));
    CHECK_FALSE(SplitBatchedFileProbe(first + "ab" + first, paths, out));
    // A file that appeared between the stats.
    std::string appeared = rec("/a", "644 root root 11 3 1.5 regular file") + rec("/b", "600 root root 14 0 3.5 regular empty file") +
                           rec("/c", "755 root root 12 4096 1.5 directory") + nul;
    CHECK_FALSE(SplitBatchedFileProbe(first + "abc" + appeared, paths, out));
    // Not what the command prints at all.
    CHECK_THROWS_AS(SplitBatchedFileProbe("garbage without a terminator", paths, out), std::runtime_error);
    CHECK_THROWS_AS(SplitBatchedFileProbe(rec("/zzz", "644 root root 1 0 1.5 regular empty file") + nul, paths, out),
                    std::runtime_error);
    CHECK_THROWS_AS(SplitBatchedFileProbe(rec("/a", "not a stat line") + nul, paths, out), std::runtime_error);
  }
}
