// apt_repos and packages `state: latest`: the OpenPGP key check and dearmoring against gpg's own output, the
// apt-cache policy parser on captured output, offline validation (deb822 words, keys), and the diffs.
#include <doctest/doctest.h>

#include "engine/file_probe.h"
#include "engine/sha256.h"
#include "modules/facts/apt_facts.h"
#include "modules/facts/package_facts.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

// An inventory whose key files are the fixtures; validated.
Inventory LoadWithKeys(const std::string& yaml, Findings& f) {
  Inventory inv = LoadUnvalidated(yaml);
  inv.read_file = [](const std::string& p) -> std::optional<std::string> {
    if (p == "files/lab.asc") return Fixture("apt/repo_key.asc");
    if (p == "files/lab.gpg") return Fixture("apt/repo_key.gpg");
    if (p == "files/secret.asc")
      return std::string("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQ==\n-----END PGP PRIVATE KEY BLOCK-----\n");
    if (p == "files/cert.pem") return std::string("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    return std::nullopt;
  };
  ValidateInventory(inv, f);
  return inv;
}

const char* kRepo =
    "apt_repos:\n"
    "  - name: lab\n"
    "    uris: [\"https://apt.lab.example/debian\", \"https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)\"]\n"
    "    suites: [bookworm]\n"
    "    components: [main, contrib]\n"
    "    architectures: [amd64]\n"
    "    key: files/lab.asc\n";

const std::string kSources =
    "# Managed by labfleet (apt_repos: lab); edits here are overwritten.\n"
    "Types: deb\n"
    "URIs: https://apt.lab.example/debian https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH)\n"
    "Suites: bookworm\n"
    "Components: main contrib\n"
    "Architectures: amd64\n"
    "Signed-By: /etc/apt/keyrings/labfleet-lab.gpg\n";

}  // namespace

TEST_SUITE("apt_repos") {
  TEST_CASE("an armored key (with a garbage line before it) dearmors to the bytes gpg --export wrote") {
    std::string err;
    auto bin = DearmorPublicKey(Fixture("apt/repo_key.asc"), &err);
    INFO(err);
    REQUIRE(bin);
    CHECK(*bin == Fixture("apt/repo_key.gpg"));
    // The binary form is accepted as it is.
    auto same = DearmorPublicKey(Fixture("apt/repo_key.gpg"), &err);
    REQUIRE(same);
    CHECK(*same == *bin);
  }

  TEST_CASE("keys that are not public keys are refused, saying why") {
    std::string err;
    CHECK_FALSE(DearmorPublicKey("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQ==\n-----END PGP PRIVATE KEY BLOCK-----\n", &err));
    CHECK(err.find("PRIVATE key block") != std::string::npos);
    // A binary secret key packet (old format, tag 5).
    CHECK_FALSE(DearmorPublicKey(std::string("\x94\x02\x04\x00", 4), &err));
    CHECK(err.find("SECRET key") != std::string::npos);
    // Cut short: the last byte of gpg's export missing.
    std::string gpg = Fixture("apt/repo_key.gpg");
    CHECK_FALSE(DearmorPublicKey(gpg.substr(0, gpg.size() - 1), &err));
    CHECK(err.find("cut short") != std::string::npos);
    // A damaged armored body: its CRC24 no longer matches.
    std::string asc = Fixture("apt/repo_key.asc");
    size_t body = asc.find("\n\n") + 2;
    asc[body + 10] = asc[body + 10] == 'A' ? 'B' : 'A';
    CHECK_FALSE(DearmorPublicKey(asc, &err));
    CHECK(err.find("checksum") != std::string::npos);
    CHECK_FALSE(DearmorPublicKey("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", &err));
    CHECK(err.find("neither an ASCII-armored public key") != std::string::npos);
    CHECK_FALSE(DearmorPublicKey("", &err));
    CHECK_FALSE(DearmorPublicKey(std::string(kMaxKeyBytes + 1, '\x99'), &err));
    CHECK(err.find("1 MiB") != std::string::npos);
  }

  TEST_CASE("apt-cache policy, captured on Debian 12, garbage skipped") {
    AptPolicy p = ParseAptCachePolicy(Fixture("apt/apt_cache_policy.txt"));
    CHECK(p.skipped == 1);  // the garbage line
    REQUIRE(p.by_name.size() == 3);
    CHECK(p.by_name["bash"].installed == "5.2.15-2+b8");
    CHECK(p.by_name["bash"].candidate == "5.2.15-2+b13");
    CHECK(p.by_name["coreutils"].installed == p.by_name["coreutils"].candidate);
    CHECK(p.by_name["hello"].installed.empty());
    CHECK(p.by_name["hello"].candidate == "2.10-3");
    // Hostile lines: a forged package header with a bad name, a version with a blank.
    AptPolicy h = ParseAptCachePolicy("Evil Name:\n  Installed: 1\n  Candidate: 2\nx:\n  Installed: 1 2\n  Candidate: 3\n");
    CHECK(h.by_name.count("x") == 0);  // its Installed line was not understood
    CHECK(h.skipped == 2);
  }

  TEST_CASE("validate: the deb822 file and the key, offline") {
    Findings f;
    LoadWithKeys(Inv(kRepo), f);
    INFO(All(f));
    CHECK_FALSE(f.has_errors());

    Findings g;
    LoadWithKeys(Inv("apt_repos:\n"
                     "  - { name: Lab, uris: \"https://a.example/x\", suites: [bookworm], components: [main], key: files/lab.asc }\n"
                     "  - { name: b, uris: \"https://a.example/x\", suites: [\"bookworm\\nSigned-By: /tmp/k\"], components: [main], key: files/lab.asc }\n"
                     "  - { name: c, uris: \"https://a.example/x x\", suites: [./], components: [main], key: files/lab.gpg }\n"
                     "  - { name: d, uris: \"ftp://a.example/x\", suites: [bookworm], key: files/secret.asc }\n"
                     "  - { name: e, uris: \"https://a.example/x\", suites: [bookworm], components: [main], key: files/none.asc }\n"
                     "  - { name: f, uris: \"https://a.example/x\", suites: [bookworm], components: [main], key: files/cert.pem, arch: [amd64] }\n"
                     "  - { name: b, uris: \"https://a.example/x\", suites: [bookworm], components: [main], key: files/lab.gpg }\n"),
                 g);
    std::string all = All(g);
    INFO(all);
    CHECK(all.find("test.yaml:6:17: apt-repo-name: apt repository name 'Lab' must be lower case") != std::string::npos);
    CHECK(all.find("control-character: suite 'bookworm\\nSigned-By: /tmp/k' of apt repository b is not one deb822 word") !=
          std::string::npos);
    CHECK(all.find("apt-repo-uri: uri 'https://a.example/x x' of apt repository c must be an http://, https:// or file:/ URL") !=
          std::string::npos);
    CHECK(all.find("apt-repo-components: apt repository c has a flat suite (ending in /): it takes no components") !=
          std::string::npos);
    CHECK(all.find("apt-repo-uri: uri 'ftp://a.example/x' of apt repository d") != std::string::npos);
    CHECK(all.find("apt-repo-components: apt repository d needs components") != std::string::npos);
    CHECK(all.find("apt-repo-key: key file 'files/secret.asc' of apt repository d is a PRIVATE key block") != std::string::npos);
    CHECK(all.find("apt-repo-key-missing: key file 'files/none.asc' of apt repository e not found") != std::string::npos);
    CHECK(all.find("apt-repo-key: key file 'files/cert.pem' of apt repository f is neither an ASCII-armored") != std::string::npos);
    CHECK(all.find("arch") != std::string::npos);  // unknown key
    CHECK(all.find("test.yaml:12:17: apt-repo-duplicate: apt repository b is listed twice (first at") != std::string::npos);
  }

  TEST_CASE("diff: key (dearmored), deb822 source, then one apt-get update; converged when the record matches") {
    Findings f;
    Inventory inv = LoadWithKeys(Inv(kRepo), f);
    REQUIRE_FALSE(f.has_errors());
    ProbeResults r{{"pkg-manager", {0, "apt\n"}}, {"apt-repos-files", {0, "garbage line\n"}}};
    ModuleRun run = RunModule(inv, "apt_repos", r);
    INFO(run.all_notes());
    REQUIRE(run.lines() == std::vector<std::string>{"+ apt key /etc/apt/keyrings/labfleet-lab.gpg",
                                                    "+ apt source /etc/apt/sources.list.d/labfleet-lab.sources",
                                                    "~ apt-get update (apt_repos changed)"});
    CHECK(run.changes[0].file.bytes == Fixture("apt/repo_key.gpg"));
    CHECK(run.changes[0].diff.find("PGP") == std::string::npos);  // a binary key is never printed as a diff
    CHECK(run.changes[1].file.bytes == kSources);
    CHECK(run.changes[2].reason ==
          "changed: /etc/apt/sources.list.d/labfleet-lab.sources, /etc/apt/keyrings/labfleet-lab.gpg");
    CHECK(run.changes[2].command.find("apt-get update -y -q") != std::string::npos);
    CHECK(run.changes[2].command.find("'--error-on=any'") != std::string::npos);
    // The record written after the update is the hash the converged plan expects.
    std::string cmd = run.changes[2].command;
    size_t q = cmd.find("'%s\\n' ") + 7;
    std::string hash = cmd.substr(q, 64);

    ProbeResults done = r;
    done["file:/etc/apt/keyrings/labfleet-lab.gpg"] = {0, FileOut(Fixture("apt/repo_key.gpg"))};
    done["file:/etc/apt/sources.list.d/labfleet-lab.sources"] = {0, FileOut(kSources)};
    done["apt-repos-files"] = {0, "/etc/apt/sources.list.d/labfleet-lab.sources\n/etc/apt/keyrings/labfleet-lab.gpg\n"};
    // Files in place but no record (an earlier update failed): the update is still owed.
    ModuleRun owed = RunModule(inv, "apt_repos", done);
    REQUIRE(owed.lines() == std::vector<std::string>{"~ apt-get update (apt_repos changed)"});
    CHECK(owed.changes[0].reason.find("no successful apt-get update is recorded") == 0);
    done["file:/var/lib/labfleet/apt-repos.sha256"] = {0, FileOut(hash + "\n")};
    ModuleRun conv = RunModule(inv, "apt_repos", done);
    CHECK(conv.changes.empty());
    CHECK(conv.all_notes().find("the package lists were updated after the apt repositories last changed") !=
          std::string::npos);

    // A labfleet file of a repository no longer declared is removed (and the lists follow).
    done["apt-repos-files"].out += "/etc/apt/sources.list.d/labfleet-old.sources\n/etc/apt/sources.list.d/other.list\n";
    ModuleRun stale = RunModule(inv, "apt_repos", done);
    CHECK(stale.lines() == std::vector<std::string>{"- apt: remove /etc/apt/sources.list.d/labfleet-old.sources",
                                                    "~ apt-get update (apt_repos changed)"});
    // Not an apt node: nothing.
    ModuleRun pac = RunModule(inv, "apt_repos", {{"pkg-manager", {0, "pacman\n"}}});
    CHECK(pac.changes.empty());
  }
}

TEST_SUITE("packages") {
  TEST_CASE("state latest: upgraded when apt-cache policy shows another candidate, noted when none") {
    Inventory inv = Load(Inv("packages: { bash: latest, coreutils: latest, lf-gone: latest, htop: installed }"));
    const std::string dpkg = "bash\tinstall ok installed\t5.2.15-2+b8\ncoreutils\thold ok installed\t9.1-1\n"
                             "lf-gone\tinstall ok installed\t1.0\nhtop\tinstall ok installed\t3.2.2-2\n";
    ProbeResults r{{"pkg-manager", {0, "apt\n"}},
                   {"dpkg-query:bash coreutils lf-gone htop", {0, dpkg}},
                   {"apt-mark-showhold", {0, "coreutils\n"}},
                   {"apt-cache-policy:bash coreutils lf-gone", {0, Fixture("apt/apt_cache_policy.txt")}}};
    ModuleRun run = RunModule(inv, "packages", r);
    INFO(run.all_notes());
    REQUIRE(run.lines() == std::vector<std::string>{"~ packages: upgrade bash", "~ packages: unhold coreutils"});
    CHECK(run.changes[0].reason == "bash: 5.2.15-2+b8 installed, 5.2.15-2+b13 available (state latest)");
    CHECK(run.changes[0].command.find("apt-get install -y -q") != std::string::npos);
    CHECK(run.changes[0].command.find("--no-install-recommends --only-upgrade -- bash") != std::string::npos);
    // Converged: candidates equal; lf-gone has no candidate at all (no repository offers it).
    r["apt-cache-policy:bash coreutils lf-gone"].out = "bash:\n  Installed: 5.2.15-2+b13\n  Candidate: 5.2.15-2+b13\n";
    r["apt-mark-showhold"].out = "";
    ModuleRun conv = RunModule(inv, "packages", r);
    CHECK(conv.changes.empty());
    CHECK(conv.all_notes().find("(1 installed, 3 latest, 0 held, 0 absent); note: no repository offers coreutils, lf-gone") !=
          std::string::npos);
    // apt-cache failing is no answer.
    r["apt-cache-policy:bash coreutils lf-gone"] = {100, "", "E: cache broken\n"};
    CHECK(RunModule(inv, "packages", r).errors.size() == 1);
  }

  TEST_CASE("package_mirror.apt: apt_repos moves the distribution's sources aside (kept once in /var/lib/labfleet/apt-orig)") {
    Inventory inv = Load(Inv("package_mirror: { apt: { url: \"http://mirror.lab/debian\", suites: [bookworm], components: [main] } }"));
    ProbeResults r{{"pkg-manager", {0, "apt\n"}},
                   {"file:/etc/apt/sources.list", {0, FileOut("# deb http://deb.debian.org/debian bookworm main\n\n")}},
                   {"file:/etc/apt/sources.list.d/debian.sources", {0, FileOut("Types: deb\nURIs: http://deb.debian.org/debian\n")}},
                   {"file:/etc/apt/sources.list.d/labfleet-mirror.list",
                    {0, FileOut("# Managed by labfleet (package_mirror.apt); edits here are overwritten.\n"
                                "deb http://mirror.lab/debian bookworm main\n")}}};
    // apt_repos (order 4) moves them, before any apt-get update of its own; packages (5) runs the update.
    ModuleRun run = RunModule(inv, "apt_repos", r);
    INFO(run.all_notes());
    REQUIRE(run.lines() == std::vector<std::string>{
                               "- apt: move the distribution's sources aside to /var/lib/labfleet/apt-orig: "
                               "/etc/apt/sources.list.d/debian.sources"});  // sources.list: comments only
    CHECK(RunModule(inv, "packages", r).lines() ==
          std::vector<std::string>{"~ apt-get update (package lists from the new mirror)"});
    CHECK(run.changes[0].command.find("[ -e /var/lib/labfleet/apt-orig/debian.sources ] || cp -p -- "
                                      "/etc/apt/sources.list.d/debian.sources /var/lib/labfleet/apt-orig/debian.sources") !=
          std::string::npos);
    r.erase("file:/etc/apt/sources.list.d/debian.sources");
    CHECK(RunModule(inv, "packages", r).changes.empty());
    CHECK(RunModule(inv, "apt_repos", r).changes.empty());
  }
}
