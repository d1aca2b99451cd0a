// labfleet init, the pure parts: the YAML writer against hostile values (through the inventory's own YAML reader),
// the factoring of accounts and settings into an inventory, the disagreements and their fixes, determinism, the
// parser of the probe output, and the classification of the check plan.
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "engine/cli.h"
#include "engine/finding.h"
#include "modules/facts/init_build.h"
#include "modules/facts/init_scan.h"
#include "modules/facts/init_yaml.h"
#include "engine/inventory.h"
#include "engine/reporter.h"
#include "engine/shell.h"
#include "engine/yaml_load.h"

using namespace labfleet;

namespace {

const char* kKeyA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB4XfzBjbhLT8kuNKAnbnTmasdRStS7JwTXIfn8TkewI alice@laptop";
const char* kKeyB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMnnoX5Pie762G+b9mPQa4Pf8qSoPb+l1fZYVfW6q2wH bob@laptop";

std::string Hosts(const std::string& block) {
  return "127.0.0.1 localhost\n# BEGIN labfleet managed block: edits inside are overwritten\n" + block +
         "# END labfleet managed block\n";
}

NodeScan Node(const std::string& name, int port, const std::string& passwd, const std::string& group) {
  NodeScan s;
  s.name = name;
  s.address = "127.0.0.1";
  s.port = port;
  s.identity = "/keys/id";
  s.passwd = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" + passwd;
  s.group = "root:x:0:\nsudo:x:27:alice\n" + group;
  s.shadow = "alice:!:19000:0:99999:7:::\n";
  return s;
}

std::vector<NodeScan> Lab() {
  // alice everywhere; bob 2002 on n1, n2 and 2012 on n3; carol on n1, n2 only; gpu-users lacks bob on n3.
  const std::string common = "alice:x:2001:2001:Alice \"A\" admin # lead, {x}:/home/alice:/bin/bash\n";
  auto a = Node("n1", 2201, common + "bob:x:2002:2002:Bob:/home/bob:/usr/bin/zsh\ncarol:x:2003:3000:Carol:/home/carol:/bin/bash\n",
                "alice:x:2001:\nbob:x:2002:\ngpu-users:x:3000:alice,bob\n");
  auto b = Node("n2", 2202, common + "bob:x:2002:2002:Bob:/home/bob:/usr/bin/zsh\ncarol:x:2003:3000:Carol:/home/carol:/bin/bash\n",
                "alice:x:2001:\nbob:x:2002:\ngpu-users:x:3000:alice,bob\n");
  auto c = Node("n3", 2203, common + "bob:x:2012:2012:Bob:/home/bob:/usr/bin/zsh\n",
                "alice:x:2001:\nbob:x:2012:\ngpu-users:x:3000:alice\n");
  for (auto* s : {&a, &b, &c}) {
    s->keys["alice"] = {0, std::string(kKeyA) + "\n", "600 alice alice regular file", "700 alice alice directory"};
    s->keys["bob"] = {0, "# bob's keys\n" + std::string(kKeyB) + "\n", "600 bob bob regular file", "700 bob bob directory"};
    s->keys["carol"] = {3, "", "", ""};
    s->files["/etc/hosts"] = Hosts("10.0.1.70 nas nas.lab\n");
    s->files["/etc/subuid"] = s->files["/etc/subgid"] = "alice:65701536:65536\n";
  }
  a.files["/etc/docker/daemon.json"] = b.files["/etc/docker/daemon.json"] =
      R"({"default-address-pools": [{"base": "172.28.0.0/16", "size": 24}], "log-driver": "json-file"})";
  c.files["/etc/docker/daemon.json"] = R"({"log-driver": "local"})";
  return {c, a, b};  // any order
}

std::string Yaml(const std::string& key, const std::string& value) {
  return EmitYaml(OneKey(key, YNode::Str(value)));
}

const Conflict* FindConflict(const InitResult& r, const std::string& subject, const std::string& field) {
  for (const auto& c : r.conflicts)
    if (c.subject == subject && c.field == field) return &c;
  return nullptr;
}

Inventory Load(const InitResult& r, Findings& f) {
  std::vector<SourceFile> files;
  for (const auto& [rel, text] : r.files)
    if (rel.size() > 5 && rel.compare(rel.size() - 5, 5, ".yaml") == 0) files.push_back({"out/" + rel, text});
  Inventory inv = LoadInventory(files, f);
  if (!f.has_errors()) ValidateInventory(inv, f);
  for (const auto& x : f.items())
    if (x.severity == Severity::Error) MESSAGE(FindingToText(x));
  return inv;
}

}  // namespace

TEST_SUITE("init") {
  TEST_CASE("hostile strings come back from the inventory's YAML reader exactly, as strings") {
    const std::vector<std::string> values = {
        "a: b", "- x", "#", "x #y", "{", "}", "[a]", "line1\nline2", "yes", "No", "null", "~", "123", "0x1F", "1.5",
        "", " lead", "trail ", "\"q\"", "'s'", "back\\slash", "&anchor", "*alias", "!tag", "%x", "@x", "`x`", "|",
        ">", "? x", "tab\there", "bell\x07", "del\x7f", "Lee, Seung-jae", "éü 한국", "x: {y: [1]}", "---", "..."};
    for (const auto& v : values) {
      CAPTURE(v);
      std::string text = Yaml("k", v) + Yaml("other", "plain");
      Findings f;
      Value doc = ParseYaml(text, "t.yaml", f);
      REQUIRE_MESSAGE(f.items().empty(), text);
      REQUIRE(doc.is_map());
      REQUIRE(doc.entries().size() == 2);  // no value added a key or a document
      const Value* k = doc.find("k");
      REQUIRE(k);
      REQUIRE(k->is_scalar());
      CHECK(k->str() == v);
      // Words YAML 1.1 reads as booleans, nulls or numbers stay strings: quoted.
      if (v == "yes" || v == "No" || v == "123" || v == "null" || v == "~" || v.empty()) CHECK(k->quoted());
      // The same values as keys.
      Value doc2 = ParseYaml(Yaml(v, "x"), "t.yaml", f);
      REQUIRE(f.items().empty());
      REQUIRE(doc2.entries().size() == 1);
      CHECK(doc2.entries()[0].key == v);
    }
    CHECK(YamlScalar("plain/path-1.2_x") == "plain/path-1.2_x");
    CHECK(YamlScalar("a: b") == "\"a: b\"");
    CHECK(YamlScalar("x\ny").find('\n') == std::string::npos);
  }

  TEST_CASE("non-UTF-8 and control characters are refused before writing; the emitter still stays one line") {
    CHECK(YamlTextProblem("plain text, é").empty());
    CHECK(YamlTextProblem("bad \xc3\x28 byte").find("not valid UTF-8") != std::string::npos);
    CHECK(YamlTextProblem("\xed\xa0\x80").find("UTF-8") != std::string::npos);  // a surrogate
    CHECK(YamlTextProblem("a\nb").find("control character") != std::string::npos);
    CHECK(YamlTextProblem("c1 \xc2\x85").find("control character") != std::string::npos);
    std::string out = YamlScalar("bad \xc3\x28 byte\n");
    CHECK(out == "\"bad \\xC3( byte\\n\"");
    CHECK(YamlTextProblem(out).empty());
  }

  TEST_CASE("nested maps and lists, with comments, read back as written") {
    YNode root = YNode::Map();
    YNode& lab = root.set("lab", YNode::Map(), "the lab\nsecond line");
    lab.set("name", YNode::Str("t"));
    YNode pools = YNode::Seq();
    YNode p = YNode::Map(true);
    p.set("base", YNode::Str("172.28.0.0/16"));
    p.set("size", YNode::Int(24));
    pools.push(p);
    YNode block = YNode::Map();
    block.set("a: b", YNode::Str("- x"));
    block.set("n", YNode::Int(7));
    YNode list = YNode::Seq();
    list.push(block);
    lab.set("pools", pools);
    lab.set("list", list);
    lab.set("empty", YNode::Seq());
    lab.set("flag", YNode::Bool(false));
    lab.set("commented", YNode::Int(1), "a comment with a carriage return\r\x1b[2Jkey: injected");
    std::string text = EmitYaml(root, "header # x");
    CHECK(text.rfind("# header # x\n", 0) == 0);
    CHECK(text.find('\r') == std::string::npos);
    CHECK(text.find('\x1b') == std::string::npos);
    Findings f;
    Value doc = ParseYaml(text, "t.yaml", f);
    REQUIRE_MESSAGE(f.items().empty(), text);
    const Value* l = doc.find("lab");
    REQUIRE(l);
    CHECK(l->find("name")->str() == "t");
    CHECK(l->find("pools")->items()[0].find("size")->as_int() == 24);
    CHECK(l->find("list")->items()[0].find("a: b")->str() == "- x");
    CHECK(l->find("list")->items()[0].find("n")->as_int() == 7);
    CHECK(l->find("empty")->items().empty());
    CHECK(l->find("flag")->as_bool() == false);
    CHECK(!l->find("key"));  // the comment added no key
    CHECK(l->find("commented")->as_int() == 1);
  }

  TEST_CASE("accounts: majority values, on: for a subset, groups, and every disagreement with its fix") {
    InitResult r = BuildInventory(Lab(), {});
    // bob: uid 2002 on n1, n2 (written) against 2012 on n3.
    const Conflict* uid = FindConflict(r, "user bob", "uid");
    REQUIRE(uid);
    REQUIRE(uid->sides.size() == 2);
    CHECK(uid->sides[0].value == "2002");
    CHECK(uid->sides[0].nodes == std::vector<std::string>{"n1", "n2"});
    CHECK(uid->sides[1].value == "2012");
    CHECK(uid->sides[1].nodes == std::vector<std::string>{"n3"});
    REQUIRE(uid->fix.size() == 1);
    CHECK(uid->fix[0].rfind("on n3: usermod -u 2002 bob && find / -xdev -uid 2012 -exec chown -h 2002 {} +", 0) == 0);
    CHECK(uid->fix[0].find("groupmod -g 2002 bob") != std::string::npos);  // the personal group follows
    // gpu-users lacks bob on n3.
    const Conflict* mem = FindConflict(r, "group gpu-users", "membership of bob");
    REQUIRE(mem);
    CHECK(mem->sides[0].value == "member");
    CHECK(mem->sides[1].nodes == std::vector<std::string>{"n3"});
    CHECK(mem->fix[0] == "on n3: gpasswd -a bob gpu-users");
    // docker: two variants; the majority is written to every node.
    const Conflict* dk = FindConflict(r, "docker", "docker settings");
    REQUIRE(dk);
    CHECK(dk->sides[0].nodes == std::vector<std::string>{"n1", "n2"});
    CHECK(dk->sides[1].nodes == std::vector<std::string>{"n3"});
    CHECK(r.conflicts.size() == 3);
    // bob's authorized_keys has a comment line: found, not managed.
    bool bob_keys = false;
    for (const auto& u : r.unmanaged) bob_keys |= u.find("authorized_keys of bob") != std::string::npos;
    CHECK(bob_keys);

    Findings f;
    Inventory inv = Load(r, f);
    INFO(r.files["users/users.yaml"] << r.files["lab.yaml"]);
    REQUIRE(!f.has_errors());
    const UserDef* alice = inv.user("alice");
    REQUIRE(alice);
    CHECK(alice->uid == 2001);
    CHECK(alice->full_name == "Alice \"A\" admin # lead, {x}");
    CHECK(alice->groups == std::vector<std::string>{"gpu-users", "sudo"});
    CHECK(alice->ssh_keys == std::vector<std::string>{kKeyA});
    CHECK(alice->rootless_docker);  // 65701536 = the range derived from 2001
    CHECK(alice->subid_start == -1);
    CHECK(alice->on.empty());
    CHECK(alice->expires.empty());
    const UserDef* bob = inv.user("bob");
    REQUIRE(bob);
    CHECK(bob->uid == 2002);
    CHECK(bob->shell == "/usr/bin/zsh");
    CHECK(bob->groups == std::vector<std::string>{"gpu-users"});
    CHECK(!bob->raw.find("ssh_keys"));
    const UserDef* carol = inv.user("carol");
    REQUIRE(carol);
    CHECK(carol->on == std::vector<std::string>{"n1", "n2"});
    CHECK(carol->primary_group == "gpu-users");
    CHECK(!carol->raw.find("ssh_keys"));  // absent everywhere: not managed
    CHECK(inv.user_group("gpu-users")->gid == 3000);
    CHECK(inv.user_group("sudo")->system);
    CHECK(inv.user_group("sudo")->gid == -1);  // membership only
    CHECK(!inv.user("nobody"));
    CHECK(!inv.user("root"));
    // Connection: user root and the identity are shared (lab.ssh), ports differ (each node).
    CHECK(inv.ssh(*inv.node("n2")).port == 2202);
    CHECK(inv.ssh(*inv.node("n2")).identity == "/keys/id");
    // Same hosts block everywhere: lab.defaults; docker on every node: the majority in lab.defaults.
    const Value* defaults = inv.lab.find("defaults");
    REQUIRE(defaults);
    CHECK(defaults->find("hosts")->find("10.0.1.70")->items().size() == 2);
    CHECK(defaults->find("docker")->find("log_driver")->str() == "json-file");
    CHECK(r.files.count("CONFLICTS.md"));
    CHECK(r.files["CONFLICTS.md"].find("usermod -u 2002 bob") != std::string::npos);
  }

  TEST_CASE("the same nodes in any order give byte-identical files") {
    auto scans = Lab();
    InitResult a = BuildInventory(scans, {});
    std::reverse(scans.begin(), scans.end());
    InitResult b = BuildInventory(scans, {});
    CHECK(a.files == b.files);
  }

  TEST_CASE("ties go to the node first by name; a value that would break a file is not written") {
    auto a = Node("b-node", 22, "dave:x:2004:2004:Dave:/home/dave:/bin/bash\n", "dave:x:2004:\n");
    auto b = Node("a-node", 22, "dave:x:2014:2014:Dave:/home/dave:/bin/bash\n", "dave:x:2014:\n");
    InitResult r = BuildInventory({a, b}, {});
    const Conflict* uid = FindConflict(r, "user dave", "uid");
    REQUIRE(uid);
    CHECK(uid->sides[0].value == "2014");  // a-node's
    CHECK(r.files["users/users.yaml"].find("uid: 2014") != std::string::npos);

    // A full name with a newline (impossible through chfn, possible by editing /etc/passwd) and a name the
    // inventory refuses: neither is written, both say why.
    auto c = Node("n1", 22, "eve:x:2005:2005:Eve\x1b[31m:/home/eve:/bin/bash\nBad.Name:x:2006:2006::/home/b:/bin/sh\n",
                  "eve:x:2005:\n");
    InitResult r2 = BuildInventory({c}, {});
    CHECK(r2.users == 0);
    REQUIRE(r2.skipped.size() == 2);
    CHECK(r2.files["CONFLICTS.md"].find("\x1b") == std::string::npos);
    CHECK(!r2.files.count("users/users.yaml"));
  }

  TEST_CASE("--uid-range decides which accounts are human") {
    auto a = Node("n1", 22, "svc:x:900:900:Service:/srv:/usr/sbin/nologin\nfrank:x:70000:70000::/home/frank:/bin/bash\n",
                  "svc:x:900:\nfrank:x:70000:\n");
    CHECK(BuildInventory({a}, {}).users == 0);
    InitOptions o;
    o.uid_min = 500;
    o.uid_max = 80000;
    CHECK(BuildInventory({a}, o).users == 2);
  }

  TEST_CASE("fstab: labfleet's block and hand-written NFS lines become mounts:; an fsc line is found, not managed") {
    auto a = Node("n1", 22, "", "");
    a.files["/etc/fstab"] =
        "UUID=1 / ext4 defaults 0 1\nnas:/mnt/HDD/home /home nfs vers=4.2,hard 0 0\n"
        "# BEGIN labfleet mounts: edits inside are overwritten\nnas:/scratch /data\\040x nfs4 ro,fsc 0 0\n"
        "# END labfleet mounts\n";
    InitResult r = BuildInventory({a}, {});
    Findings f;
    Inventory inv = Load(r, f);
    REQUIRE(!f.has_errors());
    const Value* m = inv.lab.find("defaults")->find("mounts");
    REQUIRE(m);
    REQUIRE(m->items().size() == 2);
    CHECK(m->items()[0].find("target")->str() == "/data x");
    CHECK(m->items()[0].find("options")->items().size() == 2);
    CHECK(m->items()[1].find("target")->str() == "/home");  // the hand-written line, adopted
    CHECK(m->items()[1].find("source")->str() == "nas:/mnt/HDD/home");
    REQUIRE(r.unmanaged.size() == 1);  // says the first apply moves it into the block
    CHECK(r.unmanaged[0].find("`nas:/mnt/HDD/home /home nfs vers=4.2,hard 0 0` written by hand outside labfleet's "
                              "block became mounts:") != std::string::npos);
    // With fsc, labfleet would manage cachefilesd too: found and not managed.
    a.files["/etc/fstab"] = "nas:/p /media/public nfs ro,fsc 0 0\n";
    InitResult p = BuildInventory({a}, {});
    REQUIRE(p.unmanaged.size() == 1);
    CHECK(p.unmanaged[0].find("its fsc option makes labfleet manage cachefilesd") != std::string::npos);
    CHECK(p.files["lab.yaml"].find("mounts") == std::string::npos);
  }

  TEST_CASE("a personal group whose gid is not the uid is declared; the same finding on two nodes is told once") {
    auto a = Node("n1", 22, "hana:x:2010:2020:Hana:/home/hana:/bin/bash\n", "hana:x:2020:\n");
    auto b = Node("n2", 2222, "hana:x:2010:2020:Hana:/home/hana:/bin/bash\n", "hana:x:2020:\n");
    for (auto* s : {&a, &b}) {
      s->files["/etc/fstab"] = "nas:/x /x nfs4 ro 0 0\n";
      s->keys["hana"] = {3, "", "", ""};
    }
    InitResult r = BuildInventory({a, b}, {});
    Findings f;
    Inventory inv = Load(r, f);
    REQUIRE(!f.has_errors());
    CHECK(inv.user("hana")->primary_group == "hana");
    CHECK(inv.user_group("hana")->gid == 2020);
    REQUIRE(r.unmanaged.size() == 1);
    CHECK(r.unmanaged[0].find("/etc/fstab on n1, n2: `nas:/x /x nfs4 ro 0 0`") != std::string::npos);
    CHECK(r.files["lab.yaml"].find("- { source: \"nas:/x\", target: /x, type: nfs4, options: [ro] }") != std::string::npos);
  }

  TEST_CASE("held packages become packages: held (same everywhere: lab.defaults); the NVIDIA driver is reported") {
    auto a = Node("n1", 22, "", ""), b = Node("n2", 2222, "", "");
    a.held = b.held = {"linux-image-amd64", "nvidia-driver"};
    a.nvidia_driver = "535.183.01";
    a.gpus = 4;
    InitResult r = BuildInventory({a, b}, {});
    Findings f;
    Inventory inv = Load(r, f);
    REQUIRE(!f.has_errors());
    const Value* p = inv.lab.find("defaults")->find("packages");
    REQUIRE(p);
    CHECK(p->find("linux-image-amd64")->str() == "held");
    CHECK(p->find("nvidia-driver")->str() == "held");
    CHECK(inv.node("n1")->gpus == 4);
    CHECK(inv.node("n1")->groups == std::vector<std::string>{"gpu"});
    CHECK(inv.node("n2")->gpus == -1);
    REQUIRE(r.unmanaged.size() == 1);
    CHECK(r.unmanaged[0].rfind("NVIDIA kernel module 535.183.01 loaded on n1:", 0) == 0);
  }

  TEST_CASE("docker: labfleet's proxy drop-in joins daemon.json's settings; a hand-written drop-in is reported") {
    auto a = Node("n1", 22, "", ""), b = Node("n2", 2222, "", "");
    for (auto* s : {&a, &b}) s->files["/etc/docker/daemon.json"] = R"({"data-root": "/local/docker", "mtu": 1450, "live-restore": true, "features": {"buildkit": true}})";
    a.files["/etc/docker/daemon.json"] = R"({"data-root": "/local/docker", "mtu": 1450, "live-restore": true, "debug": true})";
    a.files["/etc/systemd/system/docker.service.d/proxy.conf"] =
        "# Managed by labfleet from the inventory; edits here are overwritten.\n[Service]\n"
        "Environment=\"HTTP_PROXY=http://10.0.1.68:8889\"\nEnvironment=\"NO_PROXY=localhost,lab.local\"\n";
    b.files["/etc/systemd/system/docker.service.d/http-proxy.conf"] = "[Service]\nEnvironment=HTTP_PROXY=http://p:3128\n";
    InitResult r = BuildInventory({a, b}, {});
    Findings f;
    Inventory inv = Load(r, f);
    REQUIRE(!f.has_errors());
    const Value* d = inv.node("n1")->raw.find("docker");
    REQUIRE(d);
    CHECK(d->find("data_root")->str() == "/local/docker");
    CHECK(d->find("mtu")->as_int() == 1450);
    CHECK(d->find("live_restore")->as_bool() == true);
    CHECK(d->find("extra")->find("debug")->as_bool() == true);
    CHECK(d->find("proxy")->find("http")->str() == "http://10.0.1.68:8889");
    CHECK(d->find("proxy")->find("no_proxy")->items().size() == 2);
    CHECK(!inv.node("n2")->raw.find("docker"));  // "features" is an object: not written under extra
    REQUIRE(r.unmanaged.size() == 2);
    CHECK(r.unmanaged[0].find("daemon.json on n2") != std::string::npos);
    CHECK(r.unmanaged[1].find("http-proxy.conf on n2") != std::string::npos);
  }

  TEST_CASE("one uid for two accounts on different nodes: the one on more nodes is written, the clash listed") {
    auto a = Node("n1", 22, "ivan:x:2300:2300::/home/ivan:/bin/bash\n", "ivan:x:2300:\n");
    auto b = Node("n2", 2222, "ivan:x:2300:2300::/home/ivan:/bin/bash\n", "ivan:x:2300:\n");
    auto c = Node("n3", 2223, "judy:x:2300:2300::/home/judy:/bin/bash\n", "judy:x:2300:\n");
    for (auto* s : {&a, &b, &c}) s->keys["ivan"] = s->keys["judy"] = {3, "", "", ""};
    InitResult r = BuildInventory({a, b, c}, {});
    Findings f;
    Inventory inv = Load(r, f);
    REQUIRE(!f.has_errors());
    CHECK(inv.user("ivan"));
    CHECK(!inv.user("judy"));
    const Conflict* clash = FindConflict(r, "uid 2300", "used by two accounts");
    REQUIRE(clash);
    CHECK(clash->sides[0].value == "ivan");
    CHECK(clash->sides[1].nodes == std::vector<std::string>{"n3"});
    REQUIRE(r.skipped.size() == 2);  // judy, and her personal group (gid 2300 is ivan's personal group's)
    CHECK(r.skipped[0].rfind("user judy", 0) == 0);
    CHECK(r.skipped[1].rfind("group judy: gid 2300 is also the personal group of ivan", 0) == 0);
  }

  TEST_CASE("a personal group with other members is declared and named as the user's primary group") {
    auto a = Node("n1", 22, "kim:x:2400:2400::/home/kim:/bin/bash\nlee:x:2401:2401::/home/lee:/bin/bash\n",
                  "kim:x:2400:lee\nlee:x:2401:\n");
    a.keys["kim"] = a.keys["lee"] = {3, "", "", ""};
    InitResult r = BuildInventory({a}, {});
    Findings f;
    Inventory inv = Load(r, f);
    REQUIRE(!f.has_errors());
    CHECK(inv.user("kim")->primary_group == "kim");
    CHECK(inv.user_group("kim")->gid == 2400);
    CHECK(inv.user("lee")->groups == std::vector<std::string>{"kim"});
    CHECK(inv.user("lee")->primary_group.empty());
  }

  TEST_CASE("authorized_keys whose mode or owner is not labfleet's is found, not managed (apply would change it)") {
    auto a = Node("n1", 22, "mia:x:2500:2500::/home/mia:/bin/bash\n", "mia:x:2500:\n");
    a.keys["mia"] = {0, std::string(kKeyA) + "\n", "644 mia mia regular file", "700 mia mia directory"};
    InitResult r = BuildInventory({a}, {});
    CHECK(r.files["users/users.yaml"].find("ssh_keys") == std::string::npos);
    REQUIRE(r.unmanaged.size() == 1);
    CHECK(r.unmanaged[0].find("authorized_keys of mia is 644 mia mia regular file on n1") == 0);
    a.keys["mia"] = {0, std::string(kKeyA) + "\n", "600 mia mia regular file", "777 mia mia symbolic link"};
    r = BuildInventory({a}, {});
    REQUIRE(r.unmanaged.size() == 1);
    CHECK(r.unmanaged[0].find("symbolic link") != std::string::npos);
    a.keys["mia"] = {0, std::string(kKeyA) + "\n", "600 mia mia regular file", "700 mia mia directory"};
    r = BuildInventory({a}, {});
    CHECK(r.unmanaged.empty());
    CHECK(r.files["users/users.yaml"].find("ssh_keys") != std::string::npos);
  }

  TEST_CASE("what the GPU nodes share (and the others lack) goes to the group gpu") {
    auto a = Node("g1", 22, "", ""), b = Node("g2", 2222, "", ""), c = Node("login", 2223, "", "");
    a.gpus = b.gpus = 8;
    for (auto* s : {&a, &b}) s->files["/etc/docker/daemon.json"] = R"({"data-root": "/local/docker"})";
    for (auto* s : {&a, &b, &c}) s->files["/etc/hosts"] = Hosts("10.0.1.70 nas\n");
    InitResult r = BuildInventory({a, b, c}, {});
    Findings f;
    Inventory inv = Load(r, f);
    REQUIRE(!f.has_errors());
    const GroupDef* gpu = inv.group("gpu");
    REQUIRE(gpu);
    CHECK(gpu->raw.find("docker")->find("data_root")->str() == "/local/docker");
    CHECK(!inv.node("g1")->raw.find("docker"));
    CHECK(!inv.node("login")->raw.find("docker"));
    CHECK(inv.settings(*inv.node("g2")).find("docker"));
    CHECK(!inv.settings(*inv.node("login")).find("docker"));
    CHECK(inv.lab.find("defaults")->find("hosts"));
  }

  TEST_CASE("sshd: a drop-in in labfleet's form is managed, a hand-written one is found and not managed") {
    auto a = Node("n1", 22, "", ""), b = Node("n2", 2222, "", "");
    a.files["/etc/ssh/sshd_config.d/60-lab.conf"] = b.files["/etc/ssh/sshd_config.d/60-lab.conf"] =
        "# Managed by labfleet from the inventory; edits here are overwritten.\nPasswordAuthentication no\n"
        "ClientAliveInterval 30\n";
    b.files["/etc/ssh/sshd_config.d/10-own.conf"] = "# ours\nX11Forwarding no\n";
    InitResult r = BuildInventory({a, b}, {});
    Findings f;
    Inventory inv = Load(r, f);
    REQUIRE(!f.has_errors());
    const Value* d = inv.lab.find("defaults");
    REQUIRE(d);
    CHECK(d->find("sshd")->find("PasswordAuthentication")->str() == "no");
    CHECK(d->find("sshd")->find("PasswordAuthentication")->quoted());
    CHECK(d->find("sshd_dropin")->str() == "/etc/ssh/sshd_config.d/60-lab.conf");
    REQUIRE(r.unmanaged.size() == 1);
    CHECK(r.unmanaged[0].find("10-own.conf on n2") != std::string::npos);
  }

  TEST_CASE("the check plan: adoption, listed disagreements and problems") {
    InitResult r = BuildInventory(Lab(), {});
    auto change = [](std::string resource, std::string summary) {
      Change c;
      c.resource = std::move(resource);
      c.summary = std::move(summary);
      return c;
    };
    InitCheck check;
    ClassifyPlan(r, "n1", {change("user:alice", "user alice (adopted: now managed by labfleet)")}, "", check);
    ClassifyPlan(r, "n3",
                 {change("user:bob", "user bob (uid 2012 -> 2002, +group gpu-users, adopted: now managed by labfleet)"),
                  change("docker:/etc/docker/daemon.json", "docker /etc/docker/daemon.json")},
                 "", check);
    ClassifyPlan(r, "n1", {change("user:bob", "user bob (uid 2012 -> 2002)")}, "", check);  // bob's n1 is the majority
    ClassifyPlan(r, "n2", {change("hosts:/etc/hosts", "hosts block in /etc/hosts (1 entry)")}, "", check);
    CHECK(check.adoptions == std::vector<std::string>{"n1: alice"});
    CHECK(check.listed.size() == 2);
    REQUIRE(check.problems.size() == 2);
    CHECK(check.problems[0] == "n1: ~ user bob (uid 2012 -> 2002)");
    CHECK(check.problems[1].find("hosts block") != std::string::npos);
  }

  TEST_CASE("probe output: records are base64 on tagged lines; anything else is a problem, not data") {
    NodeScan s;
    ProbeResults pr;
    pr["passwd-file"] = {0, "alice:x:2001:2001::/home/alice:/bin/bash\n"};
    pr["group-file"] = {0, ""};
    pr["shadow-file"] = {0, ""};
    pr["init:hostname"] = {0, "node1\n"};
    pr["init:gpus"] = {0, "2\n"};
    pr["init:keys"] = {0, "K 2001 " + Base64Encode("alice") + " 0 " + Base64Encode(std::string(kKeyA) + "\n") + " " +
                              Base64Encode("600 alice alice regular file\n700 alice alice directory\n") +
                              "\nK 2002 " + Base64Encode("bob") + " 3  \nF forged line\n"};
    pr["init:files"] = {0, "F " + Base64Encode("/etc/hosts") + " " + Base64Encode("x\nF y z\n") + "\nF " +
                               Base64Encode("/root/secret") + " " + Base64Encode("s") + "\n"};
    ParseInitResults(pr, s);
    CHECK(s.hostname == "node1");
    CHECK(s.gpus == 2);
    CHECK(s.keys["alice"].rc == 0);
    CHECK(s.keys["alice"].content == std::string(kKeyA) + "\n");
    CHECK(s.keys["alice"].file_meta == "600 alice alice regular file");
    CHECK(s.keys["alice"].dir_meta == "700 alice alice directory");
    CHECK(s.keys["bob"].rc == 3);
    CHECK(s.files.size() == 1);
    CHECK(s.files["/etc/hosts"] == "x\nF y z\n");
    CHECK(s.problems.size() == 2);  // the forged key line, the path outside /etc
    auto probes = InitProbes(1000, 60000);
    CHECK(probes.size() == 9);
    for (const auto& p : probes) CHECK((p.command.find("60000") == std::string::npos || p.key == "init:keys"));
  }
}

namespace {
struct Run {
  int rc;
  std::string out, err;
};
Run Init(std::vector<std::string> args) {
  args.insert(args.begin(), {"labfleet", "init"});
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out, err;
  int rc = RunCli(int(argv.size()), argv.data(), out, err);
  return {rc, out.str(), err.str()};
}
}  // namespace

TEST_SUITE("init") {
  TEST_CASE("init refuses bad options before it contacts any node, saying what to give") {
    const std::string dir = "/nonexistent-labfleet-init-test/out";
    auto none = Init({"-o", dir});
    CHECK(none.rc == 3);
    CHECK(none.err.find("--nodes HOST[:PORT],... or --from nodes.yaml") != std::string::npos);
    auto both = Init({"-o", dir, "--nodes", "a", "--from", "x.yaml"});
    CHECK(both.rc == 3);
    auto range = Init({"-o", dir, "--nodes", "a", "--uid-range", "5"});
    CHECK(range.rc == 3);
    CHECK(range.err.find("MIN-MAX") != std::string::npos);
    auto host = Init({"-o", dir, "--nodes", "a b:22"});
    CHECK(host.rc == 3);
    CHECK(host.err.find("is not HOST or HOST:PORT") != std::string::npos);
    auto port = Init({"-o", dir, "--nodes", "a:99999"});
    CHECK(port.rc == 3);
    auto name = Init({"-o", dir, "--nodes", "a", "--lab-name", "a: b"});
    CHECK(name.rc == 3);
    CHECK(Init({"-o", "", "--nodes", "a"}).rc == 3);
    auto from = Init({"-o", dir, "--from", "/nonexistent-labfleet-init-test/nodes.yaml"});
    CHECK(from.rc == 3);
    CHECK(from.err.find("cannot read --from") != std::string::npos);
    CHECK(!std::filesystem::exists("/nonexistent-labfleet-init-test"));
  }
}
