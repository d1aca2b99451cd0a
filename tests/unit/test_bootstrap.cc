// Bootstrap's pure parts: the minimal inventory edit that pins a host key (comments and layout kept, read back
// by the loader), the password file's refusals, the public key check and the setup script's refusals.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/bootstrap.h"
#include "engine/inventory.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;
using labfleet::testing::TempDir;

namespace {
const std::string kKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH+isieJXxFzXMOaUUSxwb48VywtHUiyc3lFiiEXKBVm";

// The host key the loader reads for `node` from a nodes.yaml text.
std::string PinnedAfterLoad(const std::string& text, const std::string& node) {
  Findings f;
  Inventory inv = LoadInventory({{"inventory/lab.yaml", "lab:\n  name: t\n"}, {"inventory/nodes.yaml", text}}, f);
  INFO(text);
  REQUIRE_FALSE(f.has_errors());
  const NodeDef* n = inv.node(node);
  REQUIRE(n);
  return inv.ssh(*n).host_key;
}
}  // namespace

TEST_CASE("InsertHostKey: a block map gets a line at its children's indentation; comments kept") {
  const std::string text =
      "nodes:\n  # the new one\n  fresh:   # installed today\n    # address first\n    address: 10.0.0.9\n"
      "    groups: [gpu]\n  other: { address: 10.0.0.8 }\n";
  std::string why;
  auto out = InsertHostKey(text, 3, kKey, &why);
  REQUIRE_MESSAGE(out, why);
  CHECK(*out == "nodes:\n  # the new one\n  fresh:   # installed today\n    host_key: \"" + kKey +
                    "\"\n    # address first\n    address: 10.0.0.9\n    groups: [gpu]\n  other: { address: 10.0.0.8 }\n");
  CHECK(PinnedAfterLoad(*out, "fresh") == kKey);
  CHECK(PinnedAfterLoad(*out, "other").empty());
}

TEST_CASE("InsertHostKey: a one-line flow map gets the key before its closing brace; a trailing comment stays") {
  const std::string text = "nodes:\n  fresh: { address: \"10.0.0.9\", ssh: { port: 2222, user: \"a#b\" } }  # new\n";
  std::string why;
  auto out = InsertHostKey(text, 2, kKey, &why);
  REQUIRE_MESSAGE(out, why);
  CHECK(*out == "nodes:\n  fresh: { address: \"10.0.0.9\", ssh: { port: 2222, user: \"a#b\" }, host_key: \"" + kKey +
                    "\" }  # new\n");
  CHECK(PinnedAfterLoad(*out, "fresh") == kKey);
  auto empty = InsertHostKey("nodes:\n  n: {}\n", 2, kKey, &why);
  REQUIRE(empty);
  CHECK(*empty == "nodes:\n  n: { host_key: \"" + kKey + "\" }\n");
}

TEST_CASE("InsertHostKey: layouts it cannot edit safely are refused with a reason") {
  std::string why;
  CHECK_FALSE(InsertHostKey("nodes:\n  n: {\n    address: x }\n", 2, kKey, &why));
  CHECK(why.find("several lines") != std::string::npos);
  CHECK_FALSE(InsertHostKey("nodes:\n  n: &a { address: x }\n", 2, kKey, &why));
  CHECK_FALSE(InsertHostKey("nodes:\n  n:\nother: 1\n", 2, kKey, &why));
  CHECK(why.find("no map") != std::string::npos);
  CHECK_FALSE(InsertHostKey("nodes:\n  n: { address: x }\n", 2, "ssh-ed25519 AAAA\"; evil", &why));
  CHECK_FALSE(InsertHostKey("nodes:\n  n: { address: x }\n", 9, kKey, &why));
}

TEST_CASE("ReadPasswordFile: only a regular file of this user that nobody else can read") {
  TempDir d("labfleet-pw");
  const std::string p = (d.path / "pw").string();
  d.write("pw", "s3cret pass\nsecond line\n");
  chmod(p.c_str(), 0600);
  CHECK(ReadPasswordFile(p) == "s3cret pass");
  chmod(p.c_str(), 0640);
  CHECK_THROWS_WITH_AS(ReadPasswordFile(p), doctest::Contains("readable only by its owner"), std::runtime_error);
  chmod(p.c_str(), 0604);
  CHECK_THROWS_AS(ReadPasswordFile(p), std::runtime_error);
  chmod(p.c_str(), 0600);
  const std::string link = (d.path / "link").string();
  REQUIRE(symlink(p.c_str(), link.c_str()) == 0);
  CHECK_THROWS_WITH_AS(ReadPasswordFile(link), doctest::Contains("symlink"), std::runtime_error);
  d.write("empty", "\n");
  chmod((d.path / "empty").c_str(), 0600);
  CHECK_THROWS_WITH_AS(ReadPasswordFile((d.path / "empty").string()), doctest::Contains("empty"), std::runtime_error);
  CHECK_THROWS_AS(ReadPasswordFile(d.path.string()), std::runtime_error);  // a directory
}

TEST_CASE("CheckPublicKeyLine and the setup script's refusals") {
  CHECK(CheckPublicKeyLine(kKey).empty());
  CHECK(CheckPublicKeyLine(kKey + " admin@laptop").empty());
  CHECK_FALSE(CheckPublicKeyLine(kKey + " x'y").empty());
  CHECK_FALSE(CheckPublicKeyLine(kKey + "\nssh-ed25519 AAAA").empty());
  CHECK_FALSE(CheckPublicKeyLine("from=\"x\" " + kKey).empty());
  CHECK_THROWS_AS(BootstrapSetupScript("a;b", kKey, true), std::invalid_argument);
  CHECK_THROWS_AS(BootstrapSetupScript("ops", "ssh-ed25519 AAAA'", true), std::invalid_argument);
  const std::string s = BootstrapSetupScript("ops", kKey + " admin@laptop", true);
  CHECK(s.find("exec </dev/null") == 0);  // the password left on sudo's stdin is never read
  CHECK(s.find("ops ALL=(ALL:ALL) NOPASSWD: ALL") != std::string::npos);
  CHECK(BootstrapSetupScript("root", kKey, false).find("sudoers") == std::string::npos);
}
