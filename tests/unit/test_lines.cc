// lines: validation for the file's own syntax and against files others own, the edit semantics (replace the
// first match, drop later ones, append, remove, keep the rest byte for byte), and no edit of a file read in part.
// yaml_key: the text editor on raw netplan files (cloud-init's and the installer's, comments and a garbage line
// in each), its refusals, inventory values that try to inject YAML, and the plan with its netplan precheck.
#include <doctest/doctest.h>

#include "engine/file_probe.h"
#include "tests/unit/module_helpers.h"

#include "modules/lines.h"

using namespace labfleet;
namespace lt = labfleet::testing;

namespace {
LineEntry Present(std::string line, std::string match = "") {
  LineEntry e;
  e.path = "/etc/environment", e.line = std::move(line), e.match = std::move(match);
  return e;
}
LineEntry Absent(std::string match) {
  LineEntry e = Present("", std::move(match));
  e.absent = true;
  return e;
}

ProbeResults File(const std::string& path, const std::string& out) {
  ProbeResults r;
  r["file:" + path] = {0, out};
  return r;
}
}  // namespace

TEST_SUITE("lines") {
  TEST_CASE("edits: replace the first match and drop later ones, append when absent, remove, keep the rest") {
    const std::string env = "PATH=\"/usr/local/bin:/usr/bin\"\nDET_MASTER=old:8080\n# a comment\nDET_MASTER=dup\n";
    CHECK(ApplyLineEntries(env, {Present("DET_MASTER=10.0.1.66:8080", "^DET_MASTER=")}) ==
          "PATH=\"/usr/local/bin:/usr/bin\"\nDET_MASTER=10.0.1.66:8080\n# a comment\n");
    CHECK(ApplyLineEntries(env, {Present("LANG=C.UTF-8", "^LANG=")}) == env + "LANG=C.UTF-8\n");
    CHECK(ApplyLineEntries(env, {Absent("^DET_MASTER=")}) == "PATH=\"/usr/local/bin:/usr/bin\"\n# a comment\n");
    // Converged: the same text back, byte for byte (also without a final newline).
    CHECK(ApplyLineEntries("A=1\nB=2", {Present("B=2", "^B=")}) == "A=1\nB=2");
    CHECK(ApplyLineEntries("A=1\nB=2", {Present("C=3", "^C=")}) == "A=1\nB=2\nC=3\n");
    // Without match, the line itself is the key: present once.
    CHECK(ApplyLineEntries("x\n", {Present("y")}) == "x\ny\n");
    CHECK(ApplyLineEntries("x\ny\n", {Present("y")}) == "x\ny\n");
    // In order: a later entry sees the earlier one's result.
    CHECK(ApplyLineEntries("", {Present("A=1", "^A="), Present("A=2", "^A=")}) == "A=2\n");
    // A very long line from the node is searched without recursion (glibc regexec).
    std::string big(900000, 'x');
    CHECK(ApplyLineEntries(big + "\n", {Present("K=v", "^K=(.*)+$")}) == big + "\nK=v\n");
  }

  TEST_CASE("validate: the file's syntax, its own match, regexes, and files other settings own") {
    Findings f;
    lt::Load(lt::Inv("lines:\n"
                     "  - { path: /etc/environment, line: \"export DET_MASTER=x\", match: \"DET_MASTER=\" }\n"
                     "  - { path: /etc/sysctl.d/90-lab.conf, line: \"vm.swappiness\", match: \"^vm.swappiness\" }\n"
                     "  - { path: /etc/default/x, line: \"A=1\", match: \"^B=\" }\n"
                     "  - { path: /etc/default/y, line: \"A=1\", match: \"^(A=\" }\n"
                     "  - { path: etc/default/z, line: \"A=1\" }\n"
                     "  - { path: /etc/default/w, line: \"A=1\\nB=2\" }\n"
                     "  - { path: /etc/passwd, line: \"x:x:0:0::/:/bin/sh\" }\n"
                     "  - { path: /etc/sudoers.d/lab, line: \"ALL ALL=(ALL) NOPASSWD: ALL\" }\n"
                     "  - { path: /etc/hosts, line: \"10.0.0.1 x\" }\n"
                     "  - { path: /etc/motd, line: \"hello\" }\n"
                     "  - { path: /etc/default/v, state: absent }\n"
                     "  - { path: /etc/default/u, line: \"A=1\", mach: \"^A=\" }\n"
                     "hosts: { 10.0.0.2: [nas] }\n"
                     "files:\n"
                     "  - { path: /etc/motd, content: \"hi\\n\" }\n"),
             &f);
    std::string all = lt::All(f);
    INFO(all);
    CHECK(all.find("line-syntax: line 'export DET_MASTER=x' for /etc/environment is not NAME=VALUE") != std::string::npos);
    CHECK(all.find("line-syntax: line 'vm.swappiness' for /etc/sysctl.d/90-lab.conf is not `key = value`") != std::string::npos);
    CHECK(all.find("line-not-matching: line 'A=1' does not match its own match '^B='") != std::string::npos);
    CHECK(all.find("line-regex: match '^(A=' is not a POSIX extended regular expression") != std::string::npos);
    CHECK(all.find("line-path: lines path 'etc/default/z' is not an absolute path") != std::string::npos);
    CHECK(all.find("control-character: line 'A=1\\nB=2' contains a newline") != std::string::npos);
    CHECK(all.find("line-path-owned: lines may not edit /etc/passwd: its lines are managed through `users:`") != std::string::npos);
    CHECK(all.find("line-path-owned: lines may not edit /etc/sudoers.d/lab") != std::string::npos);
    CHECK(all.find("file-owned-by-module: lines edits /etc/hosts, which `hosts:` writes on node 'n1'") != std::string::npos);
    CHECK(all.find("file-owned-by-module: lines edits /etc/motd, which `files:` writes on node 'n1'") != std::string::npos);
    CHECK(all.find("missing-required: a lines entry with `state: absent` needs `match:` or `line:`") != std::string::npos);
    CHECK(all.find("unknown-key: unknown key 'mach'") != std::string::npos);
  }

  TEST_CASE("plan: one change per file with its diff; owner and mode kept; a missing file; converged") {
    Inventory inv = lt::Load(lt::Inv("lines:\n"
                                     "  - { path: /etc/environment, line: \"DET_MASTER=10.0.1.66:8080\", match: \"^DET_MASTER=\" }\n"
                                     "  - { path: /etc/environment, match: \"^OLD=\", state: absent }\n"
                                     "  - { path: /etc/default/lab, line: \"X=1\", create: true, mode: \"0640\" }\n"
                                     "  - { path: /etc/default/none, line: \"Y=1\" }\n"));
    ProbeResults r;
    r["file:/etc/environment"] = {0, "present 640 root adm regular file\nPATH=/usr/bin\nOLD=1\nDET_MASTER=old\n"};
    r["file:/etc/default/lab"] = {0, "absent\n"};
    r["file:/etc/default/none"] = {0, "absent\n"};
    auto run = lt::RunModule(inv, "lines", r);
    INFO(run.all_notes());
    REQUIRE(run.changes.size() == 2);
    CHECK(run.changes[0].summary.find("lines in /etc/environment (2 entries)") == 0);
    CHECK(run.changes[0].file.bytes == "PATH=/usr/bin\nDET_MASTER=10.0.1.66:8080\n");
    CHECK(run.changes[0].file.mode == 0640);
    CHECK(run.changes[0].file.group == "adm");
    CHECK(run.changes[0].diff.find("-DET_MASTER=old\n+DET_MASTER=10.0.1.66:8080") != std::string::npos);
    CHECK(run.changes[1].file.path == "/etc/default/lab");
    CHECK(run.changes[1].file.mode == 0640);
    CHECK(run.changes[1].file.bytes == "X=1\n");
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("/etc/default/none does not exist; lines edits an existing file (set `create: true`") != std::string::npos);

    ProbeResults done;
    done["file:/etc/environment"] = {0, "present 640 root adm regular file\nPATH=/usr/bin\nDET_MASTER=10.0.1.66:8080\n"};
    done["file:/etc/default/lab"] = {0, "present 640 root root regular file\nX=1\n"};
    done["file:/etc/default/none"] = {0, "present 644 root root regular file\nY=1\n"};
    auto again = lt::RunModule(inv, "lines", done);
    CHECK(again.changes.empty());
    CHECK(again.errors.empty());
  }

  TEST_CASE("a file the probe read only in part is never edited (lines and hosts)") {
    const std::string big = "present 644 root root regular file\tsize=2000000\tunread=too large to diff: 2000000 bytes\tsha256=ab\n";
    Inventory inv = lt::Load(lt::Inv("lines:\n  - { path: /etc/environment, line: \"A=1\", match: \"^A=\" }\n"));
    auto run = lt::RunModule(inv, "lines", File("/etc/environment", big));
    CHECK(run.changes.empty());
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("could not be read whole (too large to diff: 2000000 bytes)") != std::string::npos);

    Inventory hinv = lt::Load(lt::Inv("hosts: { 10.0.0.2: [nas] }\n"));
    auto hosts = lt::RunModule(hinv, "hosts", File("/etc/hosts", big));
    CHECK(hosts.changes.empty());
    REQUIRE(hosts.errors.size() == 1);
    CHECK(hosts.errors[0].find("/etc/hosts could not be read whole") != std::string::npos);
  }
}

namespace {
YamlKeySet Key(const std::string& dotted, const std::string& value) {
  YamlKeySet k;
  for (size_t pos = 0;;) {
    size_t dot = dotted.find('.', pos);
    k.key.push_back(dotted.substr(pos, dot == std::string::npos ? std::string::npos : dot - pos));
    if (dot == std::string::npos) break;
    pos = dot + 1;
  }
  k.value = value;
  return k;
}
// Sets one key; FAILs (with the editor's reason) when the editor refuses.
std::string Set(const std::string& text, const std::string& key, const std::string& value) {
  YamlEditResult r = SetYamlKeys(text, {Key(key, value)});
  INFO(key);
  CHECK(r.error == "");
  return r.text;
}
std::string Refusal(const std::string& text, const std::string& key, const std::string& value = "true") {
  YamlEditResult r = SetYamlKeys(text, {Key(key, value)});
  CHECK(r.text == text);
  return r.error;
}
std::string Replace(std::string s, const std::string& from, const std::string& to) {
  size_t at = s.find(from);
  REQUIRE(at != std::string::npos);
  return s.replace(at, from.size(), to);
}
}  // namespace

TEST_SUITE("lines") {
  TEST_CASE("yaml_key: cloud-init's netplan file, one line changed or added, every other byte kept") {
    const std::string ci = lt::Fixture("netplan/50-cloud-init.yaml");
    // An existing scalar: only the value changes; the key, its spacing and its trailing comment stay.
    std::string out = Set(ci, "network.ethernets.enp65s0f1.optional", "true");
    CHECK(out == Replace(ci, "optional: false   # 25G", "optional: true   # 25G"));
    CHECK(Set(out, "network.ethernets.enp65s0f1.optional", "true") == out);  // converged: the same bytes
    // A missing key: after the last line of its mapping (below the nested match: block with its garbage line),
    // indented like its siblings (4-space file).
    CHECK(Set(ci, "network.ethernets.eno1.optional", "true") ==
          Replace(ci, "            set-name: eno1\n", "            set-name: eno1\n            optional: true\n"));
    // Missing parents: created with the file's own indentation step, after the last key of `network`.
    CHECK(Set(ci, "network.bonds.bond0.mtu", "9000") ==
          ci + "    bonds:\n        bond0:\n            mtu: 9000\n");
    // A quoted string value, and yes rewritten to the exact value asked for.
    CHECK(Set(ci, "network.ethernets.eno1.set-name", "\"lan0\"") == Replace(ci, "set-name: eno1", "set-name: \"lan0\""));
    CHECK(Set(Replace(ci, "dhcp4: true", "dhcp4: yes"), "network.ethernets.eno1.dhcp4", "true") == ci);
    // Several keys of one file, in order.
    YamlEditResult two = SetYamlKeys(ci, {Key("network.ethernets.enp65s0f1.optional", "true"), Key("network.ethernets.eno1.mtu", "9000")});
    CHECK(two.error == "");
    CHECK(two.text == Replace(Replace(ci, "optional: false", "optional: true"), "            set-name: eno1\n",
                              "            set-name: eno1\n            mtu: 9000\n"));
    // The garbage line is in the mapping the key would be in: refused, nothing changed.
    CHECK(Refusal(ci, "network.ethernets.eno1.match.name") ==
          "cannot set network.ethernets.eno1.match.name: line 12 is not `key: value` (in the mapping that should hold "
          "`network.ethernets.eno1.match.name`)");
  }

  TEST_CASE("yaml_key: the installer's netplan file (2-space, lists at the key's indentation, a blank line)") {
    const std::string inst = lt::Fixture("netplan/00-installer-config.yaml");
    CHECK(Set(inst, "network.ethernets.eno2.optional", "true") ==
          Replace(inst, "      dhcp4: true\n", "      dhcp4: true\n      optional: true\n"));
    // eno1's last entry is a list written at its key's indentation: the new key goes after the list.
    CHECK(Set(inst, "network.ethernets.eno1.optional", "true") ==
          Replace(inst, "        via: 10.0.1.1\n", "        via: 10.0.1.1\n      optional: true\n"));
    CHECK(Set(inst, "network.ethernets.eno3.mtu", "9000") ==
          Replace(inst, "      dhcp4: true\n", "      dhcp4: true\n    eno3:\n      mtu: 9000\n"));
    CHECK(Set(inst, "network.renderer", "\"networkd\"") == Replace(inst, "  version: 2\n", "  version: 2\n  renderer: \"networkd\"\n"));
    // An empty file (or one of comments only) gets the whole path, 2-space.
    CHECK(Set("", "network.ethernets.eno1.optional", "true") == "network:\n  ethernets:\n    eno1:\n      optional: true\n");
    CHECK(Set("# empty\n---\n", "network.version", "2") == "# empty\n---\nnetwork:\n  version: 2\n");
    // A key with nothing below it (null) gets its children; a null leaf gets its value, its comment kept.
    CHECK(Set("network:\n  ethernets:\n  version: 2\n", "network.ethernets.eno1.optional", "true") ==
          "network:\n  ethernets:\n    eno1:\n      optional: true\n  version: 2\n");
    CHECK(Set("network:\n  version:   # later\n", "network.version", "2") == "network:\n  version: 2   # later\n");
    // No final newline: kept that way.
    CHECK(Set("network:\n  version: 1", "network.version", "2") == "network:\n  version: 2");
    CHECK(Refusal(inst, "network.ethernets.eno1.nameservers.search") ==
          "cannot set network.ethernets.eno1.nameservers.search: line 11 is not `key: value` (in the mapping that "
          "should hold `network.ethernets.eno1.nameservers.search`)");
  }

  TEST_CASE("yaml_key: what cannot be edited safely is refused with the reason, the file left as it is") {
    const std::string inst = lt::Fixture("netplan/00-installer-config.yaml");
    CHECK(Refusal("network: {version: 2, ethernets: {eno1: {dhcp4: true}}}\n", "network.ethernets.eno1.optional")
              .find("`network` (line 1) is written in flow style") != std::string::npos);
    CHECK(Refusal("network:\n  ethernets:\n    eno1: {dhcp4: true}\n", "network.ethernets.eno1.optional") ==
          "cannot set network.ethernets.eno1.optional: `network.ethernets.eno1` (line 3) is written in flow style ({...} "
          "or [...]); labfleet edits block style only: rewrite it in block style once (one key per line)");
    CHECK(Refusal("network:\n  ethernets:\n    eno1:\n      nameservers:\n        search: []\n",
                  "network.ethernets.eno1.nameservers.search.x").find("is written in flow style") != std::string::npos);
    CHECK(Refusal(inst, "network.ethernets.eno1.addresses.x") ==
          "cannot set network.ethernets.eno1.addresses.x: `network.ethernets.eno1.addresses` is a list (line 6), not a mapping");
    CHECK(Refusal(inst, "network.ethernets.eno1") ==
          "cannot set network.ethernets.eno1: `network.ethernets.eno1` (line 4) is a mapping or list; yaml_key sets a single value");
    CHECK(Refusal(inst, "network.version.x") ==
          "cannot set network.version.x: `network.version` (line 18) has a value, not a mapping of keys below it");
    CHECK(Refusal("network:\r\n  version: 2\r\n", "network.version", "2").find("CR (DOS) line endings") != std::string::npos);
    CHECK(Refusal("network:\n\tversion: 2\n", "network.version", "2").find("line 2 has a tab in its indentation") != std::string::npos);
    CHECK(Refusal("network:\n  version: 2\n---\nnetwork: {}\n", "network.version", "2").find("only a file of one document") != std::string::npos);
    CHECK(Refusal("%YAML 1.1\n---\nnetwork:\n  version: 2\n", "network.version", "2").find("is a YAML directive") != std::string::npos);
    CHECK(Refusal("base: &b\n  mtu: 1500\nnetwork:\n  ethernets:\n    eno1: *b\n", "network.ethernets.eno1.mtu")
              .find("holds an anchor, alias, tag") != std::string::npos);
    CHECK(Refusal("network:\n  <<: *base\n  version: 2\n", "network.version", "2").find("is a merge key") != std::string::npos);
    CHECK(Refusal("network:\n  version: 2\n  version: 3\n", "network.version", "2").find("is there twice (line 2 and line 3)") != std::string::npos);
    CHECK(Refusal("network:\n  ethernets:\n    eno1:\n      set-name: >\n        eno1\n", "network.ethernets.eno1.set-name", "\"a\"")
              .find("is a text block") != std::string::npos);
    CHECK(Refusal("network:\n  ethernets:\n    eno1:\n      set-name: a\n        b\n", "network.ethernets.eno1.set-name", "\"a\"")
              .find("is a text over several lines") != std::string::npos);
    CHECK(Refusal("network:\n  ethernets:\n    eno1:\n      set-name: \"a\n        b\"\n", "network.ethernets.eno1.set-name", "\"a\"")
              .find("quoted text over several lines") != std::string::npos);
    CHECK(Refusal("network:\n  ? complex\n  : 1\n", "network.version", "2").find("complex key") != std::string::npos);
    CHECK(Refusal("- network\n", "network.version", "2").find("line 1 is a list item") != std::string::npos);
  }

  TEST_CASE("yaml_key: inventory values and key segments cannot inject YAML") {
    CHECK(YamlScalarText("true", false).text == "true");
    CHECK(YamlScalarText("yes", false).text == "true");
    CHECK(YamlScalarText("off", false).text == "false");
    CHECK(YamlScalarText("9000", false).text == "9000");
    CHECK(YamlScalarText("-1", false).text == "-1");
    CHECK(YamlScalarText("0755", false).problem != "");  // YAML 1.1 octal: ambiguous
    CHECK(YamlScalarText("networkd", false).problem.find("quote it") != std::string::npos);
    CHECK(YamlScalarText("{dhcp4: true}", false).problem != "");
    CHECK(YamlScalarText("true\n      dhcp4: false", true).problem.find("control character") != std::string::npos);
    // A quoted value is one double-quoted scalar whatever it holds: the file keeps one line for it.
    const std::string evil = "x\" # }\n  dhcp4: [\\";
    CHECK(YamlScalarText("x\" # }: [a, \\", true).text == "\"x\\\" # }: [a, \\\\\"");
    std::string out = Set("network:\n  ethernets:\n    eno1:\n      dhcp4: true\n", "network.ethernets.eno1.set-name",
                          YamlScalarText("x\" # }: [a, \\", true).text);
    CHECK(out == "network:\n  ethernets:\n    eno1:\n      dhcp4: true\n      set-name: \"x\\\" # }: [a, \\\\\"\n");
    CHECK(YamlScalarText(evil, true).problem != "");
    CHECK(YamlKeySegmentProblem("eno1") == "");
    CHECK(YamlKeySegmentProblem("eno1.100") == "");  // a VLAN, in the list form of yaml_key
    CHECK(YamlKeySegmentProblem("eno1: {}") != "");
    CHECK(YamlKeySegmentProblem("#x") != "");
    CHECK(YamlKeySegmentProblem("-x") != "");
    CHECK(YamlKeySegmentProblem("") != "");
    CHECK(YamlKeySegmentProblem(std::string(65, 'a')) != "");
  }

  TEST_CASE("yaml_key: validate the key, the value, the check, and conflicts in one file") {
    Findings f;
    lt::Load(lt::Inv("lines:\n"
                     "  - { path: /etc/netplan/50-cloud-init.yaml, yaml_key: network.ethernets.eno1.optional, value: true, check: netplan }\n"
                     "  - { path: /etc/netplan/50-cloud-init.yaml, yaml_key: network.ethernets.eno1.optional, value: false }\n"
                     "  - { path: /etc/netplan/50-cloud-init.yaml, yaml_key: network.ethernets.eno1, value: 1 }\n"
                     "  - { path: /etc/netplan/50-cloud-init.yaml, yaml_key: [network, vlans, eno1.100, mtu], value: 9000 }\n"
                     "  - { path: /etc/netplan/60-x.yaml, yaml_key: \"network.ethernets.eno1: {}.x\", value: true }\n"
                     "  - { path: /etc/netplan/61-x.yaml, yaml_key: network.ethernets.eno1.set-name, value: lan0 }\n"
                     "  - { path: /etc/netplan/62-x.yaml, yaml_key: ethernets.eno1.optional, value: true }\n"
                     "  - { path: /etc/netplan/63-x.yml, yaml_key: network.version, value: 2 }\n"
                     "  - { path: /etc/netplan/64-x.yaml, line: \"network: {}\" }\n"
                     "  - { path: /etc/lab.yaml, yaml_key: a.b, value: 1, check: netplan }\n"
                     "  - { path: /etc/lab2.yaml, yaml_key: a.b, value: 1, line: x }\n"
                     "  - { path: /etc/lab3.yaml, yaml_key: a.b, value: { x: 1 } }\n"
                     "  - { path: /etc/lab4.yaml, yaml_key: a.b }\n"
                     "  - { path: /etc/environment, line: \"A=1\", check: netplan }\n"
                     "  - { path: /etc/lab5.yaml, yaml_key: a.b, value: 1 }\n"
                     "  - { path: /etc/lab5.yaml, line: \"c: 2\" }\n"
                     "  - { path: /etc/lab6.yaml, yaml_key: a.b, value: \"true\\n  c: {d: 1}\" }\n"),
             &f);
    std::string all = lt::All(f);
    INFO(all);
    CHECK(all.find("yaml-key-conflict: yaml_key network.ethernets.eno1.optional of /etc/netplan/50-cloud-init.yaml is set twice") != std::string::npos);
    CHECK(all.find("yaml-key-conflict: yaml_key network.ethernets.eno1 and network.ethernets.eno1.optional") != std::string::npos);
    CHECK(all.find("eno1.100") == std::string::npos);  // the list form: a segment with a dot is fine
    CHECK(all.find("yaml-key: yaml_key 'network.ethernets.eno1: {}.x': key segment 'eno1: {}' may hold only") != std::string::npos);
    CHECK(all.find("yaml-value: value 'lan0' is neither a boolean (true/false), an integer nor a quoted string") != std::string::npos);
    CHECK(all.find("yaml-key: a netplan key starts with `network.`") != std::string::npos);
    CHECK(all.find("line-path: netplan reads only /etc/netplan/*.yaml; /etc/netplan/63-x.yml would be ignored") != std::string::npos);
    CHECK(all.find("line-yaml-mixed: a netplan file is edited by key") != std::string::npos);
    CHECK(all.find("line-check: check: netplan is for files in /etc/netplan/, not /etc/lab.yaml") != std::string::npos);
    CHECK(all.find("line-yaml-mixed: a lines entry sets either `line:`/`match:` or `yaml_key:` with `value:`, not both (`line:` here)") != std::string::npos);
    CHECK(all.find("yaml-value: value of yaml_key must be a single value") != std::string::npos);
    CHECK(all.find("missing-required: a lines entry with `yaml_key:` needs `value:`") != std::string::npos);
    CHECK(all.find("line-yaml-mixed: `check:` belongs to a `yaml_key:` entry") != std::string::npos);
    CHECK(all.find("line-yaml-mixed: lines edits /etc/lab5.yaml both by line") != std::string::npos);
    // An inventory value that tries to add a key (a newline and more YAML) never reaches a file.
    CHECK(all.find("yaml-value: value 'true\\n  c: {d: 1}' contains a control character") != std::string::npos);
  }

  TEST_CASE("yaml_key: plan is one file change with its diff and the netplan precheck; converged; refused") {
    const std::string ci = lt::Fixture("netplan/50-cloud-init.yaml");
    Inventory inv = lt::Load(lt::Inv(
        "lines:\n"
        "  - { path: /etc/netplan/50-cloud-init.yaml, yaml_key: network.ethernets.enp65s0f1.optional, value: true, check: netplan }\n"));
    auto run = lt::RunModule(inv, "lines", File("/etc/netplan/50-cloud-init.yaml", "present 600 root root regular file\n" + ci));
    INFO(run.all_notes());
    REQUIRE(run.changes.size() == 1);
    const Change& c = run.changes[0];
    CHECK(c.summary.find("yaml keys in /etc/netplan/50-cloud-init.yaml (1 entry)") == 0);
    CHECK(c.file.mode == 0600);
    CHECK(c.file.bytes == Replace(ci, "optional: false", "optional: true"));
    CHECK(c.diff.find("-            optional: false   # 25G NIC, cabled only in rack B\n"
                      "+            optional: true   # 25G NIC, cabled only in rack B\n") != std::string::npos);
    CHECK(c.precheck.find("netplan generate --root-dir \"$lf_d\"") != std::string::npos);
    CHECK(c.precheck.find("\"$lf_d/etc/netplan/\"50-cloud-init.yaml") != std::string::npos);

    auto again = lt::RunModule(inv, "lines", File("/etc/netplan/50-cloud-init.yaml", "present 600 root root regular file\n" + c.file.bytes));
    CHECK(again.changes.empty());
    CHECK(again.errors.empty());

    auto flow = lt::RunModule(inv, "lines", File("/etc/netplan/50-cloud-init.yaml", "present 600 root root regular file\nnetwork: {version: 2}\n"));
    CHECK(flow.changes.empty());
    REQUIRE(flow.errors.size() == 1);
    CHECK(flow.errors[0].find("/etc/netplan/50-cloud-init.yaml: cannot set network.ethernets.enp65s0f1.optional: "
                              "`network` (line 1) is written in flow style") != std::string::npos);
  }
}
