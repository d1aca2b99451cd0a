// Root images: the parsers of what btrfs prints (real output captured on a sandbox node's btrfs, btrfs-progs
// v6.2, one garbage line in each fixture), the choice of the parent for an incremental send, the manifest and
// the images settings.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "engine/image.h"
#include "engine/local_transport.h"
#include "engine/yaml_load.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;

TEST_SUITE("image") {
  TEST_CASE("ParseSubvolumeShow / ParseHeldImages: real `btrfs subvolume show` output, a garbage line skipped") {
    std::vector<std::string> skipped;
    auto held = ParseHeldImages(testing::Fixture("images/subvolume_show.txt"), &skipped);
    REQUIRE(held.size() == 3);
    CHECK(held[0].name == "base");
    CHECK(held[0].path == ".labfleet-images/base");
    CHECK(held[0].uuid == "3398c4f0-3971-8148-a47d-bfe377e75856");
    CHECK(held[0].parent_uuid == "592757f7-9f8f-914c-9212-a16fbb26cae1");
    CHECK(held[0].received_uuid == "");
    CHECK(held[0].readonly);
    CHECK(held[0].id == 257);
    CHECK(held[0].generation == 7);
    CHECK(held[1].name == "v2");
    CHECK(held[1].generation == 8);
    // the received copy: its identity is the uuid it was sent from
    CHECK(held[2].name == "base");
    CHECK(held[2].received_uuid == "3398c4f0-3971-8148-a47d-bfe377e75856");
    CHECK(held[2].origin_uuid() == held[0].uuid);
    REQUIRE(skipped.size() == 1);
    CHECK(skipped[0] == "this line is garbage: no colon here");
  }

  TEST_CASE("ParseSubvolumeShow: no UUID line is no subvolume; a writable one is not read-only") {
    CHECK_FALSE(ParseSubvolumeShow("ERROR: not a subvolume: /x\n"));
    auto sv = ParseSubvolumeShow("@\n\tName: \t\t\t@\n\tUUID: \t\t\t592757f7-9f8f-914c-9212-a16fbb26cae1\n\tFlags: \t\t\t-\n");
    REQUIRE(sv);
    CHECK_FALSE(sv->readonly);
    CHECK(sv->name == "@");
    // a forged uuid is not a uuid
    auto bad = ParseSubvolumeShow("x\n\tUUID: \t../../etc\n");
    CHECK_FALSE(bad);
  }

  TEST_CASE("ParseHeldImages: an entry name that is not an image name is skipped") {
    std::vector<std::string> skipped;
    auto held = ParseHeldImages("@@sv ../evil\n\tUUID: 592757f7-9f8f-914c-9212-a16fbb26cae1\n", &skipped);
    CHECK(held.empty());
    CHECK(skipped.size() >= 1);
  }

  TEST_CASE("ParseSubvolumeList: real `btrfs subvolume list -a -u -q -R -g` output, a garbage line skipped") {
    std::vector<std::string> skipped;
    auto l = ParseSubvolumeList(testing::Fixture("images/subvolume_list.txt"), &skipped);
    REQUIRE(l.size() == 4);
    CHECK(l[0].path == "@");
    CHECK(l[0].parent_uuid == "");
    CHECK(l[1].name == "base");
    CHECK(l[1].path == ".labfleet-images/base");
    CHECK(l[3].received_uuid == l[1].uuid);
    CHECK(l[3].id == 259);
    REQUIRE(skipped.size() == 1);
    CHECK(skipped[0] == "WARNING: garbage line from a confused tool");
  }

  TEST_CASE("ParseAllSubvolumes: the -r list marks the read-only ones") {
    std::string list = testing::Fixture("images/subvolume_list.txt");
    std::string ro = list.substr(list.find("ID 257"));
    auto all = ParseAllSubvolumes(list + "@@readonly\n" + ro);
    REQUIRE(all.size() == 4);
    CHECK_FALSE(all[0].readonly);
    CHECK(all[1].readonly);
    CHECK(all[3].readonly);
  }

  Subvolume Sv(std::string name, std::string uuid, std::string received, long long gen, bool ro = true) {
    Subvolume s;
    s.name = std::move(name);
    s.uuid = std::move(uuid);
    s.received_uuid = std::move(received);
    s.generation = gen;
    s.readonly = ro;
    return s;
  }

  TEST_CASE("PickParent: the newest image both sides share, by received uuid; none shared: full") {
    const std::string a = "aaaaaaaa-0000-0000-0000-000000000001", b = "aaaaaaaa-0000-0000-0000-000000000002",
                      c = "aaaaaaaa-0000-0000-0000-000000000003", x = "bbbbbbbb-0000-0000-0000-000000000001",
                      y = "bbbbbbbb-0000-0000-0000-000000000002", z = "bbbbbbbb-0000-0000-0000-000000000003";
    std::vector<Subvolume> src = {Sv("v1", a, "", 10), Sv("v2", b, "", 20), Sv("v3", c, "", 30)};
    // the target holds v1 and v2 as received copies (their own uuids differ)
    std::vector<Subvolume> tgt = {Sv("v1", x, a, 5), Sv("v2", y, b, 6)};
    auto p = PickParent(src[2], src, tgt);
    REQUIRE(p);
    CHECK(p->name == "v2");
    CHECK_FALSE(TargetHolds(src[2], tgt));
    CHECK(TargetHolds(src[1], tgt));
    // a half-received copy (not read-only) is not shared
    std::vector<Subvolume> half = {Sv("v1", x, a, 5), Sv("v2", y, b, 6, /*ro=*/false)};
    CHECK(PickParent(src[2], src, half)->name == "v1");
    // nothing shared: send it whole
    CHECK_FALSE(PickParent(src[2], src, {Sv("other", z, "", 1)}));
    CHECK_FALSE(PickParent(src[2], src, {}));
    // a source that itself received its images (a storage node) matches by origin
    std::vector<Subvolume> relay = {Sv("v1", z, a, 3), Sv("v3", y, c, 4)};
    CHECK(PickParent(relay[1], relay, tgt)->name == "v1");
  }

  TEST_CASE("PlanPrune: the K newest stay, and every image a writable root was made from") {
    const std::string a = "aaaaaaaa-0000-0000-0000-000000000001", b = "aaaaaaaa-0000-0000-0000-000000000002",
                      c = "aaaaaaaa-0000-0000-0000-000000000003";
    std::vector<Subvolume> held = {Sv("v1", a, "", 10), Sv("v2", b, "", 20), Sv("v3", c, "", 30),
                                   Sv("half", "aaaaaaaa-0000-0000-0000-000000000009", "", 40, /*ro=*/false)};
    Subvolume root = Sv("@", "cccccccc-0000-0000-0000-000000000001", "", 50, /*ro=*/false);
    root.parent_uuid = a;  // the running root was made from v1
    root.path = "@";
    Subvolume received = Sv("v4", "cccccccc-0000-0000-0000-000000000002", "", 60);
    received.parent_uuid = b;  // a read-only incremental copy made from v2 does not hold v2
    PruneDecision d = PlanPrune(held, {root, received}, 1);
    CHECK(d.remove == std::vector<std::string>{"v2"});
    REQUIRE(d.keep.size() == 2);
    CHECK(d.keep[0].first == "v3");
    CHECK(d.keep[1].first == "v1");
    CHECK(d.keep[1].second.find("@") != std::string::npos);
    CHECK(PlanPrune(held, {}, 0).remove.empty());
  }

  TEST_CASE("ImageManifest: round trip; node text that is not a manifest is refused") {
    ImageManifest m{"v2", "golden", "3398c4f0-3971-8148-a47d-bfe377e75856", "v1",
                    "592757f7-9f8f-914c-9212-a16fbb26cae1", 9, "2026-12-05T16:00:00Z"};
    auto back = ImageManifest::FromJson(m.ToJson().dump());
    REQUIRE(back);
    CHECK(back->name == "v2");
    CHECK(back->parent == "v1");
    CHECK(back->generation == 9);
    std::string why;
    CHECK_FALSE(ImageManifest::FromJson("not json", &why));
    auto j = m.ToJson();
    j["name"] = "../../etc/passwd";
    CHECK_FALSE(ImageManifest::FromJson(j.dump(), &why));
    CHECK(why.find("name") != std::string::npos);
    j = m.ToJson();
    j["uuid"] = "x";
    CHECK_FALSE(ImageManifest::FromJson(j.dump()));
    CHECK_FALSE(ImageManifest::FromJson(std::string(70000, ' ')));
  }

  TEST_CASE("ImageNameProblem") {
    CHECK(ImageNameProblem("ubuntu-22.04_2026-12") == "");
    CHECK(ImageNameProblem("") != "");
    CHECK(ImageNameProblem(".hidden") != "");
    CHECK(ImageNameProblem("a/b") != "");
    CHECK(ImageNameProblem("a b") != "");
    CHECK(ImageNameProblem("x.manifest.json") != "");
    CHECK(ImageNameProblem(std::string(101, 'a')) != "");
  }

  TEST_CASE("images settings: defaults, paths validated") {
    Findings f;
    ImageSettings d = ParseImageSettings(nullptr, &f);
    CHECK(d.root == "/");
    CHECK(d.snapshot_dir == "/.labfleet-images");
    Findings pf;
    Value v = ParseYaml("images: { root: /srv/root/, snapshot_dir: /srv/root//imgs, preserve: [/etc/netplan] }\n", "t.yaml", pf);
    ImageSettings s = ParseImageSettings(v.find("images"), &f);
    CHECK_FALSE(f.has_errors());
    CHECK(s.root == "/srv/root");
    CHECK(s.snapshot_dir == "/srv/root/imgs");
    CHECK(s.preserve == std::vector<std::string>{"/etc/netplan"});
    Findings bad;
    Value b = ParseYaml("images: { root: relative, snapshot_dir: /, preserve: [/a/../etc], typo: 1 }\n", "t.yaml", pf);
    ParseImageSettings(b.find("images"), &bad);
    CHECK(bad.items().size() >= 4);
  }
  TEST_CASE("image scripts write as root only below directories no user can change (run by a real /bin/sh)") {
    if (geteuid() != 0) {
      MESSAGE("skipped: needs root (the check is on root-owned directories)");
      return;
    }
    namespace fs = std::filesystem;
    // below /run (root's, 0755): /tmp itself is world-writable and would refuse every case
    char tmpl[] = "/run/labfleet-imgdir-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    const std::string base = tmpl;
    LocalTransport local;
    auto capture_into = [&](const std::string& dir) {
      ImageSettings s;
      s.snapshot_dir = dir;
      return local.run(CaptureScript(s, "v1"));
    };
    // a world-writable parent (a user could rename it away and plant a link): refused, nothing created
    fs::create_directory(base + "/open");
    ::chmod((base + "/open").c_str(), 0777);
    RunResult r = capture_into(base + "/open/images");
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("a user can change " + base + "/open (d, owner root, mode 777)") != std::string::npos);
    CHECK_FALSE(fs::exists(base + "/open/images"));
    // a parent that is a symbolic link (to a root-only directory): refused too
    fs::create_directory(base + "/real");
    fs::create_directory_symlink(base + "/real", base + "/link");
    r = capture_into(base + "/link/images");
    CHECK(r.exit_code == 3);
    CHECK(r.err.find(base + "/link (l,") != std::string::npos);
    CHECK_FALSE(fs::exists(base + "/real/images"));
    // root-only parents: the directory is made (0700), and the script goes on to its btrfs checks
    ::chmod((base + "/open").c_str(), 0755);
    r = capture_into(base + "/open/images");
    CHECK(r.err.find("a user can change") == std::string::npos);
    CHECK(fs::is_directory(base + "/open/images"));
    CHECK((fs::status(base + "/open/images").permissions() & fs::perms::all) == fs::perms::owner_all);
    fs::remove_all(base);
  }
}
