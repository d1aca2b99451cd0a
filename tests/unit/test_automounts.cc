// automounts: the parsers on raw captured output (tests/fixtures/automounts: the module's file listing inside a
// sandbox node, Debian 12's /etc/auto.master), offline validation (map keys and locations, '&' only for "*",
// options, a static mount on the same target), and the diff: exact master and map files, autofs installed,
// enabled and started, the reload only on a change, left-over files removed.
#include <doctest/doctest.h>

#include "engine/module.h"
#include "tests/unit/module_helpers.h"

namespace labfleet {
struct AutofsFiles {
  std::vector<std::string> paths;
  int skipped = 0;
};
AutofsFiles ParseAutofsFiles(std::string_view text);
bool AutoMasterIncludesDir(std::string_view text);
}  // namespace labfleet

using namespace labfleet;
namespace lt = labfleet::testing;

namespace {
const std::string kRunning =
    "Id=autofs.service\nNames=autofs.service\nLoadState=loaded\nActiveState=active\nSubState=running\n"
    "UnitFileState=enabled\n";
const std::string kHome =
    "automounts:\n"
    "  - { mount: /home/, map: { \"*\": \"nas:/mnt/HDD/home/&\" }, options: [fstype=nfs, vers=4.2, hard], timeout: 600 }\n"
    "  - { mount: /media/public, map: { datasets: \"nas:/mnt/SSD/public/datasets\", models: \"10.0.1.70:/mnt/SSD/models\" }, options: \"ro\" }\n";
const std::string kMasterHome =
    "# Managed by labfleet (automounts: /home); changes here are overwritten.\n/home /etc/auto.labfleet-home --timeout=600\n";
const std::string kMapHome =
    "# Managed by labfleet (automounts: /home); changes here are overwritten.\n* -fstype=nfs,vers=4.2,hard nas:/mnt/HDD/home/&\n";
const std::string kMasterPublic =
    "# Managed by labfleet (automounts: /media/public); changes here are overwritten.\n/media/public /etc/auto.labfleet-media-public\n";
const std::string kMapPublic =
    "# Managed by labfleet (automounts: /media/public); changes here are overwritten.\n"
    "datasets -ro nas:/mnt/SSD/public/datasets\nmodels -ro 10.0.1.70:/mnt/SSD/models\n";
}  // namespace

TEST_SUITE("automounts") {
  TEST_CASE("parsers: labfleet's autofs files on the node, auto.master's include line (raw output, garbage line)") {
    AutofsFiles f = ParseAutofsFiles(lt::Fixture("automounts/files-probe.txt"));
    CHECK(f.paths == std::vector<std::string>{"/etc/auto.master.d/labfleet-home.autofs",
                                              "/etc/auto.master.d/labfleet-old.autofs", "/etc/auto.labfleet-home",
                                              "/etc/auto.labfleet-old"});
    CHECK(f.skipped == 2);  // another tool's file, and the garbage line
    CHECK(AutoMasterIncludesDir(lt::Fixture("automounts/auto.master-debian12.txt")));
    CHECK_FALSE(AutoMasterIncludesDir("#+dir:/etc/auto.master.d\n+auto.master\n"));
  }

  TEST_CASE("validate: keys, locations, '&' only with \"*\", options, names, and no static mount on the target") {
    Findings f;
    lt::Load(lt::Inv("mounts:\n"
                     "  - { source: \"nas:/mnt/HDD/home\", target: /home/ }\n"
                     "automounts:\n"
                     "  - { mount: /home, map: { \"*\": \"nas:/mnt/HDD/home/&\" } }\n"
                     "  - { mount: /data, map: { alice: \"nas:/d/&\", \"+auto.other\": \"nas:/x\", \"bad key\": \"nas:/y\", "
                     "k1: \"nas:/a b\", k2: \"nas:relative\", k3: \"-rw nas:/z\", k4: \"nas:/a/../b\" } }\n"
                     "  - { mount: \"/sp ace\", map: { a: \"nas:/a\" } }\n"
                     "  - { mount: /x, map: { a: \"nas:/a\" }, options: [\"ro #\", \"fstype=nfs;reboot\"] }\n"
                     "  - { mount: /y, name: Bad/Name, map: { a: \"nas:/a\" } }\n"
                     "  - { mount: /home/, name: other, map: { a: \"nas:/b\" } }\n"
                     "  - { mount: /z, map: {} }\n"),
             &f);
    std::string all = lt::All(f);
    INFO(all);
    CHECK(all.find("test.yaml:8:18: automount-mount-conflict: automount /home on node 'n1' is also a static "
                   "mount (mounts: at ") != std::string::npos);
    CHECK(all.find("automount-location: automount location 'nas:/d/&' for key 'alice' uses '&'") != std::string::npos);
    CHECK(all.find("automount-key: automount map key '+auto.other' must be") != std::string::npos);
    CHECK(all.find("automount map key 'bad key' must be") != std::string::npos);
    CHECK(all.find("blank: automount location 'nas:/a b'") != std::string::npos);
    CHECK(all.find("automount location 'nas:relative' for key 'k2' needs an absolute path") != std::string::npos);
    CHECK(all.find("blank: automount location '-rw nas:/z'") != std::string::npos);
    CHECK(all.find("automount location 'nas:/a/../b' for key 'k4' has a '..' component") != std::string::npos);
    CHECK(all.find("automount-mount: automount mount '/sp ace' must be") != std::string::npos);
    CHECK(all.find("blank: automount option 'ro #'") != std::string::npos);
    CHECK(all.find("automount-option: automount option 'fstype=nfs;reboot' may hold only") != std::string::npos);
    CHECK(all.find("automount-name: automount name 'Bad/Name'") != std::string::npos);
    CHECK(all.find("test.yaml:13:18: automount-duplicate: automount /home on node 'n1' has the same mount /home as inventory/test.yaml:8:9") != std::string::npos);
    CHECK(all.find("automount-map: map must be a non-empty map") != std::string::npos);
  }

  TEST_CASE("plan: package, service, the exact files with a reload; stale files removed; converged is empty") {
    Inventory inv = lt::Load(lt::Inv(kHome));
    ProbeResults r;
    r["pkg-manager"] = {0, "apt\n"};
    r["dpkg-query:autofs"] = {1, ""};
    r["systemctl-show:autofs.service"] = {0, ""};
    r["automounts:files"] = {0, lt::Fixture("automounts/files-probe.txt")};
    r["file:/etc/auto.master"] = {0, "absent\n"};
    for (const char* p : {"/etc/auto.master.d/labfleet-home.autofs", "/etc/auto.labfleet-home",
                          "/etc/auto.master.d/labfleet-media-public.autofs", "/etc/auto.labfleet-media-public"})
      r[std::string("file:") + p] = {0, "absent\n"};
    auto run = lt::RunModule(inv, "automounts", r);
    INFO(run.all_notes());
    CHECK(run.errors.empty());
    CHECK(run.lines() == std::vector<std::string>{
                             "+ autofs package (install; automounts /home, /media/public)",
                             "~ service autofs.service (enable, start; automounts /home, /media/public)",
                             "+ autofs master entry /etc/auto.master.d/labfleet-home.autofs (/home)",
                             "+ autofs map /etc/auto.labfleet-home (1 key)",
                             "~ systemctl try-reload-or-restart autofs.service",
                             "+ autofs master entry /etc/auto.master.d/labfleet-media-public.autofs (/media/public)",
                             "+ autofs map /etc/auto.labfleet-media-public (2 keys)",
                             "~ systemctl try-reload-or-restart autofs.service",
                             "- autofs file /etc/auto.master.d/labfleet-old.autofs (remove)",
                             "- autofs file /etc/auto.labfleet-old (remove)",
                             "~ systemctl try-reload-or-restart autofs.service"});
    REQUIRE(run.changes.size() == 11);
    CHECK(run.changes[0].command.find("apt-get install -y -q") != std::string::npos);
    CHECK(run.changes[1].command == "systemctl enable autofs.service\nsystemctl start autofs.service\n");
    CHECK(run.changes[2].file.bytes == kMasterHome);
    CHECK(run.changes[3].file.bytes == kMapHome);
    CHECK(run.changes[4].handler == "autofs reload");
    CHECK(run.changes[6].file.bytes == kMapPublic);
    CHECK(run.changes[8].path == "/etc/auto.master.d/labfleet-old.autofs");

    // Converged: installed, running, files in place, nothing left over.
    r["dpkg-query:autofs"] = {0, "autofs\tinstall ok installed\t5.1.8-2+deb12u2\n"};
    r["systemctl-show:autofs.service"] = {0, kRunning};
    r["automounts:files"] = {0, "/etc/auto.master.d/labfleet-home.autofs\n/etc/auto.labfleet-home\n"
                                "/etc/auto.master.d/labfleet-media-public.autofs\n/etc/auto.labfleet-media-public\n"};
    r["file:/etc/auto.master"] = {0, lt::FileOut(lt::Fixture("automounts/auto.master-debian12.txt"))};
    r["file:/etc/auto.master.d/labfleet-home.autofs"] = {0, lt::FileOut(kMasterHome)};
    r["file:/etc/auto.labfleet-home"] = {0, lt::FileOut(kMapHome)};
    r["file:/etc/auto.master.d/labfleet-media-public.autofs"] = {0, lt::FileOut(kMasterPublic)};
    r["file:/etc/auto.labfleet-media-public"] = {0, lt::FileOut(kMapPublic)};
    auto again = lt::RunModule(inv, "automounts", r);
    INFO(again.all_notes());
    CHECK(again.changes.empty());
    CHECK(again.errors.empty());
    CHECK(again.warnings.empty());

    // One map key changed: that file and one reload. An auto.master without the include: a warning.
    r["file:/etc/auto.labfleet-home"] = {0, lt::FileOut("* -fstype=nfs nas:/old/&\n")};
    r["file:/etc/auto.master"] = {0, lt::FileOut("+auto.master\n")};
    auto one = lt::RunModule(inv, "automounts", r);
    CHECK(one.lines() == std::vector<std::string>{"~ autofs map /etc/auto.labfleet-home (1 key)",
                                                  "~ systemctl try-reload-or-restart autofs.service"});
    REQUIRE(one.warnings.size() == 1);
    CHECK(one.warnings[0].find("/etc/auto.master has no `+dir:/etc/auto.master.d` line") != std::string::npos);

    // `packages` installs autofs and `services` manages the unit: neither is done here.
    Inventory pk = lt::Load(lt::Inv(kHome + "packages: [autofs]\nservices: { autofs: { enabled: true } }\n"));
    r["dpkg-query:autofs"] = {1, ""};
    r["systemctl-show:autofs.service"] = {0, ""};
    auto p = lt::RunModule(pk, "automounts", r);
    for (const auto& l : p.lines()) {
      CHECK(l.find("autofs package") == std::string::npos);
      CHECK(l.find("service autofs") == std::string::npos);
    }
  }
}
