// services: `systemctl show` parsing (documented format; no systemd on this machine), the GRUB command-line
// editor, and the module's diffs and handlers from typed probe results, plus its offline validation.
#include <doctest/doctest.h>

#include "engine/module.h"
#include "engine/planner.h"
#include "modules/facts/systemd_facts.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

std::string Block(const std::string& id, const std::string& file, const std::string& active) {
  return "Id=" + id + "\nNames=" + id + "\nLoadState=" + (file == "masked" ? "masked" : "loaded") +
         "\nActiveState=" + active + "\nSubState=" + (active == "active" ? "running" : "dead") +
         "\nUnitFileState=" + file + "\n";
}

}  // namespace

TEST_SUITE("services") {
  TEST_CASE("systemctl show: blocks in argument order, aliases, masked, not-found; garbage skipped") {
    SystemctlShow s = ParseSystemctlShow(Fixture("systemd/systemctl_show.txt"));
    CHECK(s.skipped == 2);  // the source comment and the "Failed to get properties" line
    REQUIRE(s.units.size() == 7);
    std::vector<std::string> asked = {"sshd.service", "cachefilesd.service", "snapd.service", "nosuch.service",
                                      "nvidia-persistenced.service", "systemd-networkd-wait-online.service",
                                      "NetworkManager-wait-online.service"};
    const UnitState* ssh = s.find(asked, "sshd.service");
    REQUIRE(ssh);
    CHECK(ssh->id == "ssh.service");  // asked by its alias
    CHECK(ssh->enabled());
    CHECK(ssh->active());
    CHECK(ssh->sub_state == "running");
    const UnitState* c = s.find(asked, "cachefilesd.service");
    CHECK_FALSE(c->enabled());
    CHECK_FALSE(c->active());
    CHECK(s.find(asked, "snapd.service")->masked());
    const UnitState* none = s.find(asked, "nosuch.service");
    CHECK_FALSE(none->found());
    CHECK(none->unit_file_state.empty());
    const UnitState* p = s.find(asked, "nvidia-persistenced.service");
    CHECK(p->enable_not_applicable());  // static
    CHECK(p->active_state == "failed");
    CHECK(s.find(asked, "systemd-networkd-wait-online.service")->enabled());  // garbage inside the block skipped
    // Fewer blocks than names asked: found by Id/Names, not by position.
    SystemctlShow one = ParseSystemctlShow("Id=ssh.service\nNames=ssh.service sshd.service\nLoadState=loaded\n");
    CHECK(one.find({"a.service", "sshd.service"}, "sshd.service") == &one.units[0]);
    CHECK(one.find({"a.service", "sshd.service"}, "a.service") == nullptr);
  }

  TEST_CASE("unit names") {
    CHECK(UnitName("cachefilesd") == "cachefilesd.service");
    CHECK(UnitName("multi-user.target") == "multi-user.target");
    CHECK(UnitName("getty@tty1") == "getty@tty1.service");
    CHECK(IsUnitName("getty@tty1.service"));
    CHECK_FALSE(IsUnitName("a b.service"));
    CHECK_FALSE(IsUnitName("x;reboot.service"));
    CHECK_FALSE(IsUnitName("--now.service"));
  }

  TEST_CASE("GRUB command line: add, replace a KEY=, remember what labfleet added, idempotent") {
    std::string grub = Fixture("systemd/grub_default_ubuntu.txt");
    GrubEdit e = EditGrubCmdline(grub, {"pci=realloc", "iommu=pt"});
    REQUIRE(e.error.empty());
    CHECK(e.added == std::vector<std::string>{"pci=realloc", "iommu=pt"});
    CHECK(e.removed == std::vector<std::string>{"iommu=soft"});  // the admin's iommu=soft is replaced
    CHECK(e.content.find("# labfleet kernel_args: pci=realloc iommu=pt\n"
                         "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash iommu=pt pci=realloc\"\n") != std::string::npos);
    CHECK(e.content.find("GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`\n") != std::string::npos);
    CHECK(e.content.find("#GRUB_TERMINAL=console\n") != std::string::npos);
    CHECK(GrubCmdlineDefault(e.content) == "quiet splash iommu=pt pci=realloc");
    // Applying again changes nothing, byte for byte.
    GrubEdit again = EditGrubCmdline(e.content, {"pci=realloc", "iommu=pt"});
    CHECK(again.content == e.content);
    CHECK(again.added.empty());
    // Dropping an argument labfleet added removes it; the others stay.
    GrubEdit less = EditGrubCmdline(e.content, {"pci=realloc"});
    CHECK(less.removed == std::vector<std::string>{"iommu=pt"});
    CHECK(GrubCmdlineDefault(less.content) == "quiet splash pci=realloc");
    // Nothing wanted any more: labfleet's arguments and its marker go.
    GrubEdit none = EditGrubCmdline(less.content, {});
    CHECK(GrubCmdlineDefault(none.content) == "quiet splash");
    CHECK(none.content.find("labfleet") == std::string::npos);
    // Untouched files stay byte for byte, even when unquoted or oddly spaced.
    std::string odd = "GRUB_CMDLINE_LINUX_DEFAULT=quiet\n";
    CHECK(EditGrubCmdline(odd, {}).content == odd);
    CHECK(EditGrubCmdline(odd, {"quiet"}).content.find("GRUB_CMDLINE_LINUX_DEFAULT=quiet\n") != std::string::npos);
  }

  TEST_CASE("GRUB command line: no line yet is appended; shell expansion is refused") {
    GrubEdit e = EditGrubCmdline("GRUB_TIMEOUT=5\n", {"pci=realloc"});
    CHECK(e.content == "GRUB_TIMEOUT=5\n# labfleet kernel_args: pci=realloc\nGRUB_CMDLINE_LINUX_DEFAULT=\"pci=realloc\"\n");
    GrubEdit bad = EditGrubCmdline("GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT quiet\"\n", {"x=1"});
    CHECK(bad.error.find("shell expansion") != std::string::npos);
    CHECK(MissingFromCmdline("BOOT_IMAGE=/vmlinuz root=UUID=x ro quiet\n", {"quiet", "pci=realloc"}) ==
          std::vector<std::string>{"pci=realloc"});
    CHECK(IsKernelArg("pci=realloc,nocrs"));
    CHECK_FALSE(IsKernelArg("acpi_osi=\"Linux\""));
    CHECK_FALSE(IsKernelArg("a b"));
  }

  TEST_CASE("unit diffs: enable+start, mask, static, failed, alias, wait-online; one change per unit") {
    Inventory inv = Load(Inv(R"(services:
  sshd: { enabled: true, state: running }
  cachefilesd: { enabled: true, state: running }
  snapd: { masked: true }
  nosuch: { masked: true }
  nvidia-persistenced: { enabled: true, state: running }
disable_wait_online: true)"));
    ProbeResults res;
    ModuleRun first = RunModule(inv, "services", res);
    std::string key = KeyWithPrefix(first, "systemctl-show:");
    CHECK(key == "systemctl-show:sshd.service cachefilesd.service snapd.service nosuch.service "
                 "nvidia-persistenced.service systemd-networkd-wait-online.service NetworkManager-wait-online.service");
    res[key] = {0, Fixture("systemd/systemctl_show.txt")};
    ModuleRun run = RunModule(inv, "services", res);
    CHECK(run.errors.empty());
    auto lines = run.lines();
    REQUIRE(lines.size() == 4);
    CHECK(lines[0] == "~ service cachefilesd.service (enable, start)");
    CHECK(run.changes[0].command == "systemctl enable cachefilesd.service\nsystemctl start cachefilesd.service\n");
    CHECK(lines[1] == "- service nosuch.service (mask)");
    CHECK(run.changes[1].command == "systemctl mask --now nosuch.service\n");
    CHECK(lines[2] == "~ service nvidia-persistenced.service (start (was failed))");
    CHECK(lines[3] == "~ wait-online services disabled (systemd-networkd-wait-online.service)");
    CHECK(run.changes[3].command == "systemctl disable systemd-networkd-wait-online.service");
    std::string notes;
    for (const auto& n : run.notes) notes += n + "\n";
    CAPTURE(notes);
    CHECK(notes.find("service:sshd.service: nothing to do because sshd.service is enabled and active (running)") !=
          std::string::npos);
    CHECK(notes.find("snapd.service is masked") != std::string::npos);
    for (const auto& c : run.changes) CHECK_FALSE(c.disruptive);
  }

  TEST_CASE("unit diffs: stop of a disruptive unit is disruptive; unmask; not loaded yet; no systemd") {
    Inventory inv = Load(Inv(R"(services:
  trainer: { state: stopped, disruptive: true }
  snapd: { masked: false, enabled: true }
  cachefilesd: { enabled: true })"));
    ProbeResults res;
    std::string key = KeyWithPrefix(RunModule(inv, "services", res), "systemctl-show:");
    res[key] = {0, Block("trainer.service", "enabled", "active") + "\n" + Block("snapd.service", "masked", "inactive") +
                       "\nId=cachefilesd.service\nNames=cachefilesd.service\nLoadState=not-found\nActiveState=inactive\n"};
    ModuleRun run = RunModule(inv, "services", res);
    auto lines = run.lines();
    REQUIRE(lines.size() == 3);
    CHECK(lines[0] == "- service trainer.service (stop)");
    CHECK(run.changes[0].disruptive);
    CHECK(lines[1] == "~ service snapd.service (unmask, enable)");
    CHECK(lines[2] == "~ service cachefilesd.service (enable)");
    CHECK(run.changes[2].reason.find("not loaded yet") != std::string::npos);
    res[key] = {1, ""};  // systemctl answered nothing: no systemd
    run = RunModule(inv, "services", res);
    REQUIRE(run.errors.size() == 3);
    CHECK(run.errors[0].find("is systemd running on this node?") != std::string::npos);
  }

  TEST_CASE("config files and drop-ins notify one restart per unit, daemon-reload first; none for a stopped unit") {
    Inventory inv = Load(Inv(R"(services:
  cachefilesd:
    state: running
    config:
      - { path: /etc/cachefilesd.conf, content: "dir /var/cache/fscache\n" }
      - { path: /etc/default/cachefilesd, content: "RUN=yes\n" }
    dropin: "[Service]\nNice=5\n"
  idle:
    state: stopped
    config: [{ path: /etc/idle.conf, content: "x\n" }]
  reloader:
    on_change: reload
    config: [{ path: /etc/reloader.conf, content: "y\n" }])"));
    ProbeResults res;
    std::string key = KeyWithPrefix(RunModule(inv, "services", res), "systemctl-show:");
    res[key] = {0, Block("cachefilesd.service", "enabled", "active") + "\n" + Block("idle.service", "enabled", "inactive") +
                       "\n" + Block("reloader.service", "enabled", "active")};
    ModuleRun run = RunModule(inv, "services", res);
    CHECK(run.errors.empty());
    auto lines = run.lines();
    CAPTURE(lines.size());
    for (auto& l : lines) CAPTURE(l);
    REQUIRE(lines.size() == 8);
    CHECK(lines[0] == "+ drop-in /etc/systemd/system/cachefilesd.service.d/labfleet.conf");
    CHECK(run.changes[1].kind == Change::Kind::Notify);
    CHECK(run.changes[1].handler == "systemd daemon-reload");
    CHECK(run.changes[2].handler == "restart cachefilesd.service");
    CHECK(run.changes[2].command == "systemctl restart cachefilesd.service");
    CHECK(lines[3] == "+ config /etc/cachefilesd.conf of cachefilesd.service");
    CHECK(lines[4] == "+ config /etc/default/cachefilesd of cachefilesd.service");
    CHECK(lines[5] == "+ config /etc/idle.conf of idle.service");  // stopped: no restart
    CHECK(lines[6] == "+ config /etc/reloader.conf of reloader.service");
    CHECK(run.changes[7].handler == "reload reloader.service");
    // Only the second config file differs: it alone notifies the restart.
    res["file:/etc/systemd/system/cachefilesd.service.d/labfleet.conf"] = {0, FileOut("[Service]\nNice=5\n")};
    res["file:/etc/cachefilesd.conf"] = {0, FileOut("dir /var/cache/fscache\n")};
    res["file:/etc/idle.conf"] = {0, FileOut("x\n")};
    res["file:/etc/reloader.conf"] = {0, FileOut("y\n")};
    run = RunModule(inv, "services", res);
    lines = run.lines();
    REQUIRE(lines.size() == 2);
    CHECK(lines[0] == "+ config /etc/default/cachefilesd of cachefilesd.service");
    CHECK(run.changes[1].handler == "restart cachefilesd.service");
    res["file:/etc/default/cachefilesd"] = {0, FileOut("RUN=yes\n")};
    CHECK(RunModule(inv, "services", res).changes.empty());
  }

  TEST_CASE("unit files: verified before install, one daemon-reload before the restart; a start after the reload") {
    Inventory inv = Load(Inv(R"(services:
  trainer:
    enabled: true
    state: running
    unit: "[Service]\nExecStart=/usr/local/bin/trainer\n"
    dropin: "[Service]\nNice=5\n"
  fresh:
    enabled: true
    state: running
    unit: "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
  plain:
    config: [{ path: /etc/systemd/system/plain.service.d/override.conf, content: "[Unit]\nAfter=x\n" }])"));
    ProbeResults res;
    std::string key = KeyWithPrefix(RunModule(inv, "services", res), "systemctl-show:");
    res[key] = {0, Block("trainer.service", "enabled", "active") + "\n" + Block("fresh.service", "disabled", "inactive") +
                       "\n" + Block("plain.service", "enabled", "active")};
    ModuleRun run = RunModule(inv, "services", res);
    CHECK(run.errors.empty());
    auto lines = run.lines();
    for (auto& l : lines) CAPTURE(l);
    REQUIRE(run.changes.size() == 9);
    CHECK(lines[0] == "+ unit file /etc/systemd/system/trainer.service");
    CHECK(run.changes[0].precheck.find("systemd-analyze verify --man=no") != std::string::npos);
    CHECK(run.changes[0].precheck.find("\"$lf_vd\"/trainer.service") != std::string::npos);
    CHECK(run.changes[1].handler == "systemd daemon-reload");  // once in the plan, before every restart
    CHECK(run.changes[2].handler == "restart trainer.service");  // running: restarted on the new text
    CHECK(lines[3] == "+ unit file /etc/systemd/system/fresh.service");
    CHECK(lines[4] == "+ drop-in /etc/systemd/system/trainer.service.d/labfleet.conf");  // no second restart
    CHECK(run.changes[4].precheck.empty());
    // A config file below /etc/systemd/system is unit text: it restarts (not reloads) its unit.
    CHECK(lines[5] == "+ config /etc/systemd/system/plain.service.d/override.conf of plain.service");
    CHECK(run.changes[6].handler == "restart plain.service");
    // fresh: enabled now, started by a handler after the reload (its text changed in this apply); trainer and
    // plain need nothing for the units themselves (enabled, running).
    CHECK(lines[7] == "~ service fresh.service (enable)");
    CHECK(run.changes[7].command == "systemctl enable fresh.service\n");
    CHECK(run.changes[8].handler == "start fresh.service");
    CHECK(run.changes[8].command == "systemctl start fresh.service");
    int reloads = 0;
    for (const auto& c : run.changes) reloads += c.handler == "systemd daemon-reload";
    CHECK(reloads == 1);
    // Only the config-file unit text changes: it notifies the reload itself.
    res["file:/etc/systemd/system/trainer.service"] = {0, FileOut("[Service]\nExecStart=/usr/local/bin/trainer\n")};
    res["file:/etc/systemd/system/trainer.service.d/labfleet.conf"] = {0, FileOut("[Service]\nNice=5\n")};
    res["file:/etc/systemd/system/fresh.service"] = {0, FileOut("[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n")};
    run = RunModule(inv, "services", res);
    REQUIRE(run.changes.size() == 4);
    CHECK(run.changes[1].handler == "systemd daemon-reload");
    CHECK(run.changes[2].handler == "restart plain.service");
    // Converged text: the stopped unit is started directly, nothing is reloaded.
    res["file:/etc/systemd/system/plain.service.d/override.conf"] = {0, FileOut("[Unit]\nAfter=x\n")};
    run = RunModule(inv, "services", res);
    lines = run.lines();
    REQUIRE(lines.size() == 1);
    CHECK(run.changes[0].kind == Change::Kind::Exec);
    CHECK(run.changes[0].command == "systemctl enable fresh.service\nsystemctl start fresh.service\n");
  }

  TEST_CASE("a config: file that is a unit file is verified too; a config: drop-in and other files are not") {
    Inventory inv = Load(Inv(R"(services:
  helper:
    config:
      - { path: /etc/systemd/system/helper-prep.service, content: "[Service]\nExecStart=/bin/true\n" }
      - { path: /etc/systemd/system/helper.service.d/x.conf, content: "[Unit]\nAfter=y\n" }
      - { path: /etc/helper.conf, content: "z\n" })"));
    ModuleRun run = RunModule(inv, "services", {});
    std::vector<const Change*> files;
    for (const auto& c : run.changes)
      if (c.kind == Change::Kind::PutFile) files.push_back(&c);
    REQUIRE(files.size() == 3);
    CHECK(files[0]->precheck.find("\"$lf_vd\"/helper-prep.service") != std::string::npos);
    CHECK(files[1]->precheck.empty());
    CHECK(files[2]->precheck.empty());
  }

  TEST_CASE("a unit file is owned: masked with a unit file, or a files: entry for it, is refused") {
    Findings f;
    Load(Inv(R"(services:
  a: { masked: true, unit: "[Service]\nExecStart=/bin/true\n" }
  b: { unit: "[Service]\nExecStart=/bin/true\n" }
files: [{ path: /etc/systemd/system/b.service, content: "x" }])"),
         &f);
    std::string all = All(f);
    CAPTURE(all);
    CHECK(all.find("service-masked: service a cannot be masked and have a unit file") != std::string::npos);
    CHECK(all.find("services.b.service.unit") != std::string::npos);
  }

  TEST_CASE("default target, kernel args with reboot needed, sysctl with its handler") {
    Inventory inv = Load(Inv(R"(default_target: multi-user.target
kernel_args: [pci=realloc]
sysctl: { vm.swappiness: 10, net.core.somaxconn: "4096" })"));
    ProbeResults res;
    res["systemctl-get-default"] = {0, "graphical.target\n"};
    res["file:/etc/default/grub"] = {0, FileOut(Fixture("systemd/grub_default_ubuntu.txt"))};
    res["proc-cmdline"] = {0, "BOOT_IMAGE=/vmlinuz ro quiet splash\n"};
    res["file:/etc/sysctl.d/90-labfleet.conf"] = {0, "absent\n"};
    ModuleRun run = RunModule(inv, "services", res);
    CHECK(run.errors.empty());
    auto lines = run.lines();
    REQUIRE(lines.size() == 5);
    CHECK(lines[0] == "~ default target graphical.target -> multi-user.target");
    CHECK(run.changes[0].command == "systemctl set-default multi-user.target");
    CHECK(lines[1] == "~ kernel args +pci=realloc in /etc/default/grub (reboot needed)");
    CHECK(run.changes[1].kind == Change::Kind::PutFile);
    CHECK(run.changes[1].diff.find("+GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash iommu=soft pci=realloc\"") != std::string::npos);
    CHECK(run.changes[2].handler == "update-grub");
    CHECK(run.changes[2].summary.find("reboot needed") != std::string::npos);
    CHECK(run.changes[3].file.bytes ==
          "# Managed by labfleet (the inventory's sysctl: settings); edits here are overwritten.\n"
          "vm.swappiness = 10\nnet.core.somaxconn = 4096\n");
    CHECK(run.changes[4].handler == "sysctl apply");
    CHECK(run.changes[4].command == "sysctl -p /etc/sysctl.d/90-labfleet.conf");
    // Converged: nothing, but the plan notes that the running kernel still lacks the argument.
    res["systemctl-get-default"] = {0, "multi-user.target\n"};
    res["file:/etc/default/grub"] = {0, FileOut(run.changes[1].file.bytes)};
    res["file:/etc/sysctl.d/90-labfleet.conf"] = {0, FileOut(run.changes[3].file.bytes)};
    run = RunModule(inv, "services", res);
    CHECK(run.changes.empty());
    std::string notes;
    for (const auto& n : run.notes) notes += n + "\n";
    CHECK(notes.find("reboot pending: the running kernel lacks pci=realloc") != std::string::npos);
    // No GRUB on the node: a conflict, said plainly.
    res["file:/etc/default/grub"] = {0, "absent\n"};
    run = RunModule(inv, "services", res);
    REQUIRE(run.errors.size() == 1);
    CHECK(run.errors[0].find("/etc/default/grub not found") != std::string::npos);
  }

  TEST_CASE("validation: keys, states, conflicts, kernel args, sysctl, target, files twice") {
    Findings f;
    Load(Inv(R"(services:
  cachefilesd: { enabeld: true, state: runing }
  snapd: { masked: true, enabled: true }
  "bad name": {}
default_target: multi-user
kernel_args: [pci=realloc, "acpi_osi=\"Linux\""]
sysctl: { "vm swappiness": 1, kernel.x: [1] }
disable_wait_online: maybe)"),
         &f);
    std::string all = All(f);
    CAPTURE(all);
    CHECK(all.find("unknown key 'enabeld' in service cachefilesd; did you mean 'enabled'?") != std::string::npos);
    CHECK(all.find("'state' of service cachefilesd must be one of") != std::string::npos);
    CHECK(all.find("did you mean 'running'?") != std::string::npos);
    CHECK(all.find("service snapd cannot be masked and enabled or running at once") != std::string::npos);
    CHECK(all.find("'bad name' is not a systemd unit name") != std::string::npos);
    CHECK(all.find("default_target must be a target unit") != std::string::npos);
    CHECK(all.find("must be one word of letters") != std::string::npos);
    CHECK(all.find("'vm swappiness' is not a sysctl key") != std::string::npos);
    CHECK(all.find("the value of sysctl kernel.x must be one line") != std::string::npos);
    CHECK(all.find("disable_wait_online must be true or false") != std::string::npos);
    CHECK(all.find("inventory/test.yaml:7:") != std::string::npos);

    Findings g;
    Load(Inv(R"(files: [{ path: /etc/x.conf, content: "a" }]
services:
  x: { config: [{ path: /etc/x.conf, content: "b" }, { path: rel.conf, content: "c" }] })"),
         &g);
    all = All(g);
    CHECK(all.find("file /etc/x.conf is managed twice on node n1 (also by files:)") != std::string::npos);
    CHECK(all.find("a config file of service x.service needs an absolute 'path'") != std::string::npos);
  }
}
