// The inventory model: YAML loading with locations, typed sections, merging with provenance, selection,
// sub-ID allocation, loading from a directory and from git, CIDR helpers.
#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "engine/cidr.h"
#include "engine/git_repo.h"
#include "engine/inventory.h"
#include "engine/yaml_load.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;

namespace {

namespace fs = std::filesystem;

Inventory Load(std::vector<SourceFile> files, Findings& f) { return LoadInventory(files, f); }

std::string AllFindings(const Findings& f) {
  std::string out;
  for (const auto& x : f.items()) out += x.where.str() + ": " + x.code + ": " + x.message + "\n";
  return out;
}

using labfleet::testing::TempDir;

const char* kLab = "lab:\n  name: t\n";

}  // namespace

TEST_SUITE("inventory") {
  TEST_CASE("ParseYaml keeps the location of every key and value") {
    Findings f;
    Value v = ParseYaml("users:\n  yseong:\n    uid: 2001\n    name: \"x\"\n    list: [a, 'b']\n", "u.yaml", f);
    REQUIRE(f.items().empty());
    REQUIRE(v.is_map());
    CHECK(v.entries()[0].key_loc.str() == "u.yaml:1:1");
    const Value* y = v.find("users")->find("yseong");
    REQUIRE(y);
    CHECK(v.find("users")->entries()[0].key_loc.str() == "u.yaml:2:3");
    CHECK(KeyLoc(*y, "uid").str() == "u.yaml:3:5");
    CHECK(y->find("uid")->loc().str() == "u.yaml:3:10");
    CHECK(y->find("uid")->as_int() == 2001);
    CHECK_FALSE(y->find("uid")->quoted());
    CHECK(y->find("name")->quoted());
    const Value* list = y->find("list");
    REQUIRE(list->is_seq());
    CHECK(list->items()[1].str() == "b");
    CHECK(list->items()[1].quoted());
    CHECK(list->items()[1].loc().str() == "u.yaml:5:15");
  }

  TEST_CASE("ParseYaml: nulls, quoting of booleans, empty files") {
    Findings f;
    Value v = ParseYaml("a:\nb: ~\nc: null\nd: \"no\"\ne: no\n", "x.yaml", f);
    CHECK(f.items().empty());
    CHECK(v.find("a")->is_null());
    CHECK(v.find("b")->is_null());
    CHECK(v.find("c")->is_null());
    CHECK(v.find("d")->is_scalar());
    CHECK_FALSE(v.find("d")->as_bool().has_value());
    CHECK(v.find("e")->as_bool() == false);
    CHECK(ParseYaml("", "e.yaml", f).is_null());
    CHECK(ParseYaml("# only a comment\n", "e.yaml", f).is_null());
    CHECK(f.items().empty());
  }

  TEST_CASE("ParseYaml reports duplicate keys with both places and keeps the first") {
    Findings f;
    Value v = ParseYaml("a: 1\nb:\n  c: 2\n  c: 3\n", "d.yaml", f);
    REQUIRE(f.items().size() == 1);
    CHECK(f.items()[0].code == "duplicate-key");
    CHECK(f.items()[0].where.str() == "d.yaml:4:3");
    CHECK(f.items()[0].message ==
          "duplicate key 'c', first written at d.yaml:3:3; remove one of them (YAML would silently keep only one)");
    CHECK(v.find("b")->find("c")->str() == "2");
  }

  TEST_CASE("ParseYaml: a quoted string never closed before the end of the file is a syntax error") {
    // yaml-cpp itself accepts these (the scalar silently ends at the end of the text).
    for (const char* text : {"a: 1\nname: \"cvgl\n", "a: 1\nname: 'cvgl\n",
                             "a: 1\nname: 'it''s\n", "a: 1\nname: \"x\\\"\n", "a: 1\r\nname: \"cvgl\r\n"}) {
      CAPTURE(text);
      Findings f;
      Value v = ParseYaml(text, "q.yaml", f);
      CHECK(v.is_null());  // the file contributes nothing, like any syntax error
      REQUIRE(f.items().size() == 1);
      CHECK(f.items()[0].code == "yaml-syntax");
      CHECK(f.items()[0].where.str() == "q.yaml:2:7");
      CHECK(f.items()[0].message.find("this quoted string is never closed; add the closing") != std::string::npos);
    }
    // Without the last newline yaml-cpp finds it itself.
    Findings g;
    CHECK(ParseYaml("a: 1\nname: \"cvgl", "q.yaml", g).is_null());
    REQUIRE(g.items().size() == 1);
    CHECK(g.items()[0].code == "yaml-syntax");
    // Closed strings, whatever comes before them or inside them, are not flagged.
    struct Ok {
      const char* text;
      const char* name;
    };
    for (const Ok& ok : {Ok{"a: \"\xc3\xbc\xe6\x97\xa5\"\nname: \"x\\\\\"\n", "x\\"},
                         Ok{"a: 1\r\nname: \"q\\\"q\"\r\nb: 'c'\r\n", "q\"q"},
                         Ok{"a: { b: '\xc3\xbc', c: 'it''s' }\nname: 'it''s'\n", "it's"},
                         Ok{"a: |\n  \"not a quote\nname: !!str \"t\"\n", "t"},
                         Ok{"\xef\xbb\xbf" "a: 1\nname: \"bom\"\n", "bom"}}) {
      CAPTURE(ok.text);
      Findings f;
      Value v = ParseYaml(ok.text, "ok.yaml", f);
      CHECK(f.items().empty());
      REQUIRE(v.find("name"));
      CHECK(v.find("name")->str() == ok.name);
    }
  }

  TEST_CASE("ParseYaml: syntax errors carry the parser's position") {
    Findings f;
    Value v = ParseYaml("a: b\nc: [d\n", "s.yaml", f);
    CHECK(v.is_null());
    REQUIRE(f.items().size() == 1);
    CHECK(f.items()[0].code == "yaml-syntax");
    CHECK(f.items()[0].where.str() == "s.yaml:3:1");
    CHECK(f.items()[0].message == "YAML syntax error: end of sequence flow not found");
    Findings g;
    ParseYaml("a: 1\n\tb: 2\n", "t.yaml", g);
    REQUIRE(g.items().size() == 1);
    CHECK(g.items()[0].where.str() == "t.yaml:2:1");
  }

  TEST_CASE("ParseYaml: anchors, aliases and merge keys") {
    Findings f;
    Value v = ParseYaml(
        "base: &b { x: 1, y: 2 }\n"
        "copy: *b\n"
        "merged:\n"
        "  <<: *b\n"
        "  y: 3\n",
        "a.yaml", f);
    REQUIRE(f.items().empty());
    CHECK(v.find("copy")->find("x")->str() == "1");
    CHECK(v.find("copy")->find("x")->loc().str() == "a.yaml:1:15");  // provenance: where the anchor was written
    CHECK(v.find("merged")->find("x")->str() == "1");
    CHECK(v.find("merged")->find("y")->str() == "3");  // explicit keys win over merged ones
    CHECK(v.find("merged")->find("<<") == nullptr);
  }

  TEST_CASE("ParseYaml: recursive and undefined aliases are errors") {
    Findings f;
    ParseYaml("a: &x [ *x ]\n", "r.yaml", f);
    REQUIRE(f.items().size() == 1);
    CHECK(f.items()[0].code == "yaml-alias");
    CHECK(f.items()[0].where.str() == "r.yaml:1:9");
    CHECK(f.items()[0].message == "an alias may not refer to the node that contains it (recursive YAML is not supported)");
    Findings g;
    ParseYaml("a: *nope\n", "u.yaml", g);
    REQUIRE(g.items().size() == 1);
    CHECK(g.items()[0].code == "yaml-syntax");
    CHECK(g.items()[0].message == "YAML syntax error: the referenced anchor is not defined");
  }

  TEST_CASE("ParseYaml: a second document is an error") {
    Findings f;
    ParseYaml("a: 1\n---\nb: 2\n", "m.yaml", f);
    REQUIRE(f.items().size() == 1);
    CHECK(f.items()[0].code == "yaml-multiple-documents");
    CHECK(f.items()[0].where.str() == "m.yaml:2:1");
  }

  TEST_CASE("sections may be spread over files; typed fields are read") {
    Findings f;
    Inventory inv = Load({{"inventory/lab.yaml", "lab:\n  name: cvgl\n  reserved_networks: [10.0.1.0/24]\n"},
                          {"inventory/nodes.yaml", "nodes:\n  asahi: { address: 10.0.1.71, groups: [gpu], gpus: 4 }\n"},
                          {"inventory/groups.yaml", "groups:\n  gpu: {}\n"},
                          {"inventory/users/a.yaml",
                           "users:\n  yseong:\n    uid: 2001\n    full_name: Yeon Seong\n    groups: [gpu-users]\n"
                           "    ssh_keys: [\"ssh-ed25519 AAAA x\"]\n    shell: /bin/zsh\n    expires: 2027-02-28\n"
                           "    rootless_docker: true\n    on: [gpu]\n"},
                          {"inventory/users/b.yaml",
                           "users:\n  bob: { uid: 2002, remove: true }\nuser_groups:\n  gpu-users: { gid: 3000 }\n"
                           "  docker: { system: true }\n"}},
                         f);
    CHECK_MESSAGE(f.items().empty(), AllFindings(f));
    CHECK(inv.lab.find("name")->str() == "cvgl");
    REQUIRE(inv.nodes.size() == 1);
    CHECK(inv.nodes[0].address == "10.0.1.71");
    CHECK(inv.nodes[0].gpus == 4);
    CHECK(inv.nodes[0].connection == "ssh");
    CHECK(inv.nodes[0].where.str() == "inventory/nodes.yaml:2:3");
    REQUIRE(inv.users.size() == 2);
    const UserDef* y = inv.user("yseong");
    REQUIRE(y);
    CHECK(y->uid == 2001);
    CHECK(y->full_name == "Yeon Seong");
    CHECK(y->groups == std::vector<std::string>{"gpu-users"});
    CHECK(y->shell == "/bin/zsh");
    CHECK(y->expires == "2027-02-28");
    CHECK(y->rootless_docker);
    CHECK(y->on == std::vector<std::string>{"gpu"});
    CHECK(y->where.str() == "inventory/users/a.yaml:2:3");
    CHECK(inv.user("bob")->remove);
    CHECK(inv.user("bob")->shell == "/bin/bash");
    REQUIRE(inv.user_group("gpu-users"));
    CHECK(inv.user_group("gpu-users")->gid == 3000);
    CHECK(inv.user_group("docker")->system);
    CHECK(inv.user_group("docker")->gid == -1);
  }

  TEST_CASE("the same name defined in two files is an error naming both places") {
    Findings f;
    Load({{"inventory/lab.yaml", kLab},
          {"inventory/users/a.yaml", "users:\n  bob: { uid: 2001 }\n"},
          {"inventory/users/b.yaml", "# b\nusers:\n  bob: { uid: 2002 }\n"}},
         f);
    REQUIRE(f.items().size() == 1);
    CHECK(f.items()[0].code == "duplicate-user");
    CHECK(f.items()[0].where.str() == "inventory/users/b.yaml:3:3");
    CHECK(f.items()[0].message ==
          "user 'bob' is already defined at inventory/users/a.yaml:2:3; define it once (merge the two definitions)");
  }

  TEST_CASE("settings merge defaults, then groups in order, then the node; lists replace") {
    Findings f;
    Inventory inv = Load(
        {{"inventory/lab.yaml",
          "lab:\n"
          "  name: t\n"
          "  defaults:\n"
          "    vars: { a: defaults, b: defaults, c: defaults, d: defaults }\n"
          "    hosts: { 10.0.0.1: [x] }\n"},
         {"inventory/groups.yaml",
          "groups:\n"
          "  one:\n"
          "    vars: { b: one, c: one, d: one }\n"
          "    mounts: [{ source: \"nas:/a\", target: /a }]\n"
          "  two:\n"
          "    vars: { c: two, d: two }\n"
          "    mounts: [{ source: \"nas:/b\", target: /b }]\n"},
         {"inventory/nodes.yaml",
          "nodes:\n"
          "  n1:\n"
          "    address: 10.0.1.1\n"
          "    groups: [one, two]\n"
          "    vars: { d: node }\n"}},
        f);
    CHECK_MESSAGE(f.items().empty(), AllFindings(f));
    Value s = inv.settings(inv.nodes[0]);
    const Value* vars = s.find("vars");
    REQUIRE(vars);
    CHECK(vars->find("a")->str() == "defaults");
    CHECK(vars->find("b")->str() == "one");
    CHECK(vars->find("c")->str() == "two");
    CHECK(vars->find("d")->str() == "node");
    // Provenance: each value keeps the place it was written.
    CHECK(vars->find("a")->loc().str() == "inventory/lab.yaml:4:16");
    CHECK(vars->find("b")->loc().str() == "inventory/groups.yaml:3:16");
    CHECK(vars->find("c")->loc().str() == "inventory/groups.yaml:6:16");
    CHECK(vars->find("d")->loc().str() == "inventory/nodes.yaml:5:16");
    // Lists replace: the later group's mounts only.
    REQUIRE(s.find("mounts")->items().size() == 1);
    CHECK(s.find("mounts")->items()[0].find("target")->str() == "/b");
    // Node-only keys are not settings.
    CHECK(s.find("address") == nullptr);
    CHECK(s.find("groups") == nullptr);
    CHECK(s.find("hosts")->find("10.0.0.1"));
  }

  TEST_CASE("ssh settings: lab, then merged settings, then host_key") {
    Findings f;
    Inventory inv = Load({{"inventory/lab.yaml",
                           "lab:\n  name: t\n  ssh: { user: admin, port: 22332, identity: ~/.ssh/id, jump: login }\n"},
                          {"inventory/groups.yaml", "groups:\n  storage:\n    ssh: { port: 22 }\n"},
                          {"inventory/nodes.yaml",
                           "nodes:\n  nas: { address: 10.0.1.70, groups: [storage], host_key: \"ssh-ed25519 AAAA\" }\n"
                           "  login: { address: 10.0.1.60, ssh: { jump: \"\", become: sudo } }\n"}},
                         f);
    CHECK_MESSAGE(f.items().empty(), AllFindings(f));
    SshSettings nas = inv.ssh(*inv.node("nas"));
    CHECK(nas.user == "admin");
    CHECK(nas.port == 22);
    CHECK(nas.identity == "~/.ssh/id");
    CHECK(nas.jump == "login");
    CHECK(nas.host_key == "ssh-ed25519 AAAA");
    SshSettings login = inv.ssh(*inv.node("login"));
    CHECK(login.port == 22332);
    CHECK(login.jump == "");
    CHECK(login.become == "sudo");
  }

  TEST_CASE("user_on_node and select") {
    Findings f;
    Inventory inv = Load({{"inventory/lab.yaml", kLab},
                          {"inventory/groups.yaml", "groups:\n  gpu: {}\n  login: {}\n"},
                          {"inventory/nodes.yaml",
                           "nodes:\n  a: { address: 10.0.0.1, groups: [gpu] }\n  b: { address: 10.0.0.2, groups: [gpu] }\n"
                           "  l: { address: 10.0.0.3, groups: [login] }\n"},
                          {"inventory/users.yaml",
                           "users:\n  u1: { uid: 2001 }\n  u2: { uid: 2002, on: [gpu] }\n  u3: { uid: 2003, on: [l] }\n"}},
                         f);
    CHECK_MESSAGE(f.items().empty(), AllFindings(f));
    CHECK(inv.user_on_node(*inv.user("u1"), *inv.node("l")));
    CHECK(inv.user_on_node(*inv.user("u2"), *inv.node("a")));
    CHECK_FALSE(inv.user_on_node(*inv.user("u2"), *inv.node("l")));
    CHECK(inv.user_on_node(*inv.user("u3"), *inv.node("l")));
    CHECK_FALSE(inv.user_on_node(*inv.user("u3"), *inv.node("b")));
    CHECK(inv.select({}).size() == 3);
    CHECK(inv.select({"all"}).size() == 3);
    auto sel = inv.select({"gpu"});
    REQUIRE(sel.size() == 2);
    CHECK(sel[0]->name == "a");
    CHECK(inv.select({"l", "a"}).size() == 2);
    Findings unknown;
    CHECK(inv.select({"gpux"}, &unknown).empty());
    REQUIRE(unknown.items().size() == 1);
    CHECK(unknown.items()[0].code == "unknown-target");
    CHECK(unknown.items()[0].message == "'gpux' is neither a node nor a group of the inventory; did you mean 'gpu'?");
  }

  TEST_CASE("sub-ID ranges: allocated from the uid, or explicit") {
    UserDef u;
    u.uid = 2001;
    CHECK(SubIds(u).start == 100000 + 1001LL * 65536);
    CHECK(SubIds(u).count == 65536);
    u.uid = 1000;
    CHECK(SubIds(u).start == 100000);
    Findings f;
    Inventory inv = Load({{"inventory/lab.yaml", kLab},
                          {"inventory/users.yaml",
                           "users:\n  a: { uid: 2001, rootless_docker: true, subids: { start: 300000, count: 1000 } }\n"}},
                         f);
    CHECK_MESSAGE(f.items().empty(), AllFindings(f));
    CHECK(SubIds(*inv.user("a")).start == 300000);
    CHECK(SubIds(*inv.user("a")).count == 1000);
  }

  TEST_CASE("Suggest finds close names only") {
    std::vector<std::string> c = {"address", "groups", "gpus", "connection"};
    CHECK(Suggest("adress", c) == "address");
    CHECK(Suggest("group", c) == "groups");
    CHECK(Suggest("Address", c) == "address");
    CHECK_FALSE(Suggest("zzz", c).has_value());
    CHECK_FALSE(Suggest("", c).has_value());
  }

  TEST_CASE("LoadInventoryDir reads every *.yaml/*.yml below the directory, sorted, and skips hidden ones") {
    TempDir d("labfleet-inv");
    d.write("inventory/lab.yaml", kLab);
    d.write("inventory/users/b.yml", "users:\n  b: { uid: 2002 }\n");
    d.write("inventory/users/a.yaml", "users:\n  a: { uid: 2001 }\n");
    d.write("inventory/.hidden/x.yaml", "users:\n  h: { uid: 2003 }\n");
    d.write("inventory/notes.txt", "not yaml");
    d.write("templates/motd.mustache", "hi {{node}}\n");
    d.write("secret.txt", "outside");
    fs::path old = fs::current_path();
    fs::current_path(d.path);
    Findings f;
    Inventory inv = LoadInventoryDir("inventory", f);
    fs::current_path(old);
    CHECK_MESSAGE(f.items().empty(), AllFindings(f));
    REQUIRE(inv.users.size() == 2);
    CHECK(inv.users[0].name == "a");
    CHECK(inv.users[0].where.str() == "inventory/users/a.yaml:2:3");
    CHECK(inv.users[1].where.str() == "inventory/users/b.yml:2:3");
    CHECK(inv.root == "inventory");
    REQUIRE(inv.read_file);
    fs::current_path(d.path);
    CHECK(inv.read_file("../templates/motd.mustache") == std::optional<std::string>("hi {{node}}\n"));
    CHECK(inv.read_file("lab.yaml") == std::optional<std::string>(kLab));
    CHECK_FALSE(inv.read_file("../../etc/passwd").has_value());
    CHECK_FALSE(inv.read_file("missing").has_value());
    fs::current_path(old);
  }

  TEST_CASE("LoadInventoryDir: a missing directory is a finding") {
    Findings f;
    LoadInventoryDir("/nonexistent/labfleet/inventory", f);
    REQUIRE(f.items().size() == 1);
    CHECK(f.items()[0].code == "inventory-missing");
  }

  TEST_CASE("GitRepo reads a subdirectory at a revision, resolves, counts and sees dirt") {
    TempDir d("labfleet-inv");
    auto git = [&](const std::string& args) {
      std::string cmd = "cd '" + d.path.string() +
                        "' && git -c user.name=t -c user.email=t@example.org -c init.defaultBranch=main "
                        "-c commit.gpgsign=false " + args + " >/dev/null 2>&1";
      REQUIRE(std::system(cmd.c_str()) == 0);
    };
    git("init -q");
    d.write("inventory/lab.yaml", "lab:\n  name: one\n");
    d.write("templates/motd.mustache", "v1\n");
    git("add -A");
    git("commit -q -m one");
    d.write("inventory/lab.yaml", "lab:\n  name: two\n");
    git("commit -q -am two");
    GitRepo repo = GitRepo::Open((d.path / "inventory").string());
    CHECK(repo.relative_path((d.path / "inventory").string()) == "inventory");
    std::string head = repo.head();
    CHECK(head.size() == 40);
    CHECK(repo.resolve("HEAD~1") != head);
    CHECK(repo.commits_between("HEAD~1", "HEAD") == 1);
    CHECK(repo.commits_between("HEAD", "HEAD~1") == 0);
    auto files = repo.read_tree("HEAD~1", "inventory");
    REQUIRE(files.size() == 1);
    CHECK(files[0].first == "lab.yaml");
    CHECK(files[0].second == "lab:\n  name: one\n");
    CHECK(repo.read_file("HEAD", "templates/motd.mustache") == std::optional<std::string>("v1\n"));
    CHECK_FALSE(repo.read_file("HEAD", "nope").has_value());
    CHECK_FALSE(repo.dirty("inventory"));
    d.write("inventory/new.yaml", "users: {}\n");
    CHECK(repo.dirty("inventory"));
    CHECK_FALSE(repo.dirty("templates"));
    CHECK_THROWS_WITH_AS(repo.resolve("nope"), doctest::Contains("unknown git revision 'nope'"), std::runtime_error);
    CHECK_THROWS_AS(repo.read_tree("HEAD", "missing"), std::runtime_error);
    CHECK_THROWS_WITH_AS(GitRepo::Open("/"), doctest::Contains("is not inside a git repository"),
                         std::runtime_error);

    // The inventory at a revision: same locations as from the working tree; read_file reads that revision.
    fs::path old = fs::current_path();
    fs::current_path(d.path);
    Findings f;
    Inventory inv = LoadInventoryRev("inventory", "HEAD~1", f);
    fs::current_path(old);
    CHECK(f.items().empty());
    CHECK(inv.lab.find("name")->str() == "one");
    CHECK(inv.lab.find("name")->loc().str() == "inventory/lab.yaml:2:9");
    CHECK(inv.revision == repo.resolve("HEAD~1"));
    REQUIRE(inv.read_file);
    CHECK(inv.read_file("../templates/motd.mustache") == std::optional<std::string>("v1\n"));
    CHECK_FALSE(inv.read_file("../../x").has_value());
  }

  TEST_CASE("CIDR parsing and overlap") {
    std::string err;
    auto a = ParseCidr("172.20.0.0/16", &err);
    REQUIRE(a);
    CHECK(a->prefix == 16);
    CHECK(a->str() == "172.20.0.0/16");
    CHECK_FALSE(a->host_bits_set());
    auto b = ParseCidr("172.20.5.1/24");
    REQUIRE(b);
    CHECK(b->host_bits_set());
    CHECK(b->network_str() == "172.20.5.0/24");
    CHECK(Overlaps(*a, *b));
    CHECK_FALSE(Overlaps(*a, *ParseCidr("172.21.0.0/16")));
    CHECK(Overlaps(*ParseCidr("172.16.0.0/12"), *a));
    CHECK(Contains(*a, *ParseIp("172.20.255.255")));
    CHECK_FALSE(Contains(*a, *ParseIp("172.21.0.0")));
    CHECK_FALSE(ParseCidr("172.20.0.0", &err));
    CHECK(err == "'172.20.0.0' has no prefix length (write it as address/prefix, e.g. 10.0.0.0/24)");
    CHECK_FALSE(ParseCidr("172.20.0.0/33", &err));
    CHECK(err == "'172.20.0.0/33' has an invalid prefix length (0-32)");
    CHECK_FALSE(ParseCidr("256.1.1.1/8", &err));
    CHECK(err == "'256.1.1.1' has a part above 255");
    CHECK_FALSE(ParseIp("10.0.1", &err));
    CHECK_FALSE(ParseIp("10.0.01.1", &err));
    CHECK_FALSE(ParseIp("10.0.1.1.1", &err));
    auto v6 = ParseCidr("fd00:1::/64");
    REQUIRE(v6);
    CHECK(v6->addr.family == 6);
    CHECK(Overlaps(*v6, *ParseCidr("fd00:1::1/128")));
    CHECK_FALSE(Overlaps(*v6, *a));  // families never overlap
    CHECK_FALSE(ParseCidr("fd00::g/64", &err));
    CHECK(err == "'fd00::g' is not an IPv6 address");
  }

  TEST_CASE("a large inventory (parsed on several threads) merges files in order, as a serial parse would") {
    // 24 files of ~20 KiB each (over the size from which files are parsed in parallel); file 7 has a syntax
    // error, file 15 redefines a user of file 2, and file 20 has an error of its own.
    std::vector<SourceFile> files{{"inventory/lab.yaml", kLab}};
    for (int fi = 0; fi < 24; ++fi) {
      std::string text = "users:\n";
      for (int u = 0; u < 200; ++u) {
        const int uid = 10000 + fi * 1000 + u;
        text += "  u" + std::to_string(uid) + ": { uid: " + std::to_string(uid) + ", full_name: \"User " +
                std::to_string(uid) + "\", groups: [], shell: /bin/bash, expires: 2030-01-01 }\n";
      }
      if (fi == 7) text += "  broken: [\n";
      if (fi == 15) text += "  u12003: { uid: 99999 }\n";
      if (fi == 20) text += "  u-bad: { uid: seven }\n";
      files.push_back({"inventory/users/u" + std::to_string(fi) + ".yaml", text});
    }
    size_t bytes = 0;
    for (const auto& f : files) bytes += f.text.size();
    REQUIRE(bytes > (256u << 10));

    for (int round = 0; round < 3; ++round) {  // the same result every time
      CAPTURE(round);
      Findings f;
      Inventory inv = Load(files, f);
      const std::string all = AllFindings(f);
      INFO(all);
      REQUIRE(f.items().size() == 3);
      CHECK(f.items()[0].where.file == "inventory/users/u7.yaml");
      CHECK(f.items()[0].code == "yaml-syntax");
      CHECK(f.items()[1].where.str() == "inventory/users/u15.yaml:202:3");
      CHECK(f.items()[1].code == "duplicate-user");
      CHECK(f.items()[1].message.find("inventory/users/u2.yaml:5:3") != std::string::npos);
      CHECK(f.items()[2].where.file == "inventory/users/u20.yaml");
      // every user of every file but the broken one, in file order
      REQUIRE(inv.users.size() == 23 * 200 + 1);
      CHECK(inv.users.front().name == "u10000");
      CHECK(inv.users[7 * 200].name == "u18000");
      CHECK(inv.users[20 * 200].name == "u-bad");  // after the users of files 0-6 and 8-20
      CHECK(inv.users.back().name == "u33199");
      CHECK(inv.users[12 * 200 + 5].where.str() == "inventory/users/u13.yaml:7:3");
    }
  }
}
