// Busy detection (engine/busy.h): the pure parser on the probe's tagged output built from raw captures (an
// NVIDIA H200 with a torch job: nvidia-smi's compute apps, the /proc/*/fd links, ps, the job's cgroup; each
// fixture with a garbage line), the fail-safe verdicts (NVML mismatch, timeout, docker not answering, output
// cut short), busy.command and cpu_jobs, the `busy:` settings' validation, and the probe text itself run
// through a real /bin/sh with stand-in tools.
#include <doctest/doctest.h>

#include <chrono>

#include "engine/busy.h"
#include "modules/facts/facts.h"
#include "engine/local_transport.h"
#include "engine/plan_report.h"
#include "engine/planner.h"
#include "engine/shell.h"
#include "tests/unit/module_helpers.h"
#include "tests/unit/temp_dir.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

// The fixture without its first line (the "# Captured on ..." header), garbage line included.
std::string Raw(const std::string& name) {
  std::string t = Fixture("nvidia/h200/" + name);
  return t.substr(t.find('\n') + 1);
}

// `text` as the probe tags a source: each line "TAG| line"; then "TAG= STATUS" unless status is empty.
std::string Tagged(const std::string& tag, const std::string& text, const std::string& status = "0") {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    out += tag + "| " + text.substr(pos, nl - pos) + "\n";
    pos = nl + 1;
  }
  return status.empty() ? out : out + tag + "= " + status + "\n";
}

// Lines of `text` not containing `needle`.
std::string Without(const std::string& text, const std::string& needle) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (line.find(needle) == std::string::npos) out += line + "\n";
    pos = nl + 1;
  }
  return out;
}

// ps and cgroup as the probe prints them for the pids it found ("cgroup| PID LINE").
std::string H200PsAndCgroup() {
  return Tagged("ps", Raw("ps_all.txt"), "") + Tagged("cgroup", "456 " + Raw("cgroup_job.txt"), "");
}

const std::string kQuiet = "module= loaded\nfd= 0\ndocker= absent\nend=\n";

}  // namespace

TEST_SUITE("busy") {
  TEST_CASE("H200 captures: nvidia-smi and the device witness both see the torch job; a garbage line is unknown") {
    std::string smi_busy = Raw("smi_apps_busy.txt");
    std::string fd = Tagged("fd", Raw("fd_find.txt"));
    // As captured (garbage line included): the job is seen AND the state cannot be trusted.
    BusyInfo b = ParseBusy(Tagged("smi", smi_busy) + fd + H200PsAndCgroup() + kQuiet);
    REQUIRE(b.gpu_jobs.size() == 1);
    REQUIRE(b.unknown.size() == 1);
    CHECK(b.unknown[0] == "GPU use unknown: nvidia-smi printed a line labfleet does not understand: garbage, not an app");
    CHECK(b.state() == "busy");

    b = ParseBusy(Tagged("smi", Without(smi_busy, "garbage")) + fd + H200PsAndCgroup() + kQuiet);
    CHECK(b.unknown.empty());
    REQUIRE(b.gpu_jobs.size() == 1);
    const BusyJob& j = b.gpu_jobs[0];
    CHECK(j.pid == 456);
    CHECK(j.user == "root");
    CHECK(j.seconds == 71);
    CHECK(j.name == "python3");
    CHECK(j.nvidia_smi);
    CHECK(j.devices == std::vector<std::string>{"/dev/nvidia0"});  // nvidiactl, nvidia-uvm, caps: not the glob
    CHECK(j.container.empty());  // /process_api/<32 hex> is the VM's own cgroup, not a container
    CHECK(b.state() == "busy");
    CHECK(b.describe() == "1 GPU job running (root: pid 456, 1 min)");

    // Without NVML (nvidia-smi failing), the device witness alone still finds the job, with its user and age.
    b = ParseBusy(Tagged("smi", "Failed to initialize NVML: Driver/library version mismatch", "18") + fd +
                  H200PsAndCgroup() + kQuiet);
    REQUIRE(b.gpu_jobs.size() == 1);
    CHECK(b.gpu_jobs[0].user == "root");
    CHECK_FALSE(b.gpu_jobs[0].nvidia_smi);
    CHECK(b.describe() ==
          "1 GPU job running (root: pid 456, 1 min); GPU use unknown: nvidia-smi failed (exit 18): Failed to initialize "
          "NVML: Driver/library version mismatch");
  }

  TEST_CASE("H200 idle capture: nothing running is idle; its garbage line makes it unknown") {
    std::string idle = Raw("smi_apps_idle.txt");
    CHECK(ParseBusy(Tagged("smi", idle) + kQuiet).state() == "unknown");
    BusyInfo b = ParseBusy(Tagged("smi", Without(idle, "garbage")) + kQuiet);
    CHECK(b.state() == "idle");
    CHECK_FALSE(b.holds());
    CHECK(b.describe().empty());
  }

  TEST_CASE("NVML version mismatch after a driver upgrade: unknown, with nvidia-smi's reason") {
    std::string mismatch = Fixture("nvidia/nvidia_smi_mismatch.txt");
    mismatch = mismatch.substr(mismatch.find('\n') + 1);
    BusyInfo b = ParseBusy(Tagged("smi", mismatch, "9") + kQuiet);
    CHECK(b.state() == "unknown");
    CHECK(b.holds());
    CHECK_FALSE(b.busy());
    CHECK(b.describe() ==
          "GPU use unknown: nvidia-smi failed (exit 9): Failed to initialize NVML: Driver/library version mismatch");
    // No NVIDIA kernel module loaded at all: nothing can run on an NVIDIA GPU; a note, not unknown.
    b = ParseBusy(Tagged("smi", mismatch, "9") + "module= absent\nfd= 0\ndocker= absent\nend=\n");
    CHECK(b.state() == "idle");
    REQUIRE(b.notes.size() == 1);
    CHECK(b.notes[0].find("no NVIDIA kernel module is loaded") != std::string::npos);
  }

  TEST_CASE("a hung nvidia-smi (timeout's exit 124) and output cut short are unknown") {
    BusySettings s;
    s.timeout_s = 2;
    CHECK(ParseBusy(Tagged("smi", "", "124") + kQuiet, s).describe() ==
          "GPU use unknown: nvidia-smi did not answer within 2 s");
    std::string all = Tagged("smi", "") + kQuiet;
    BusyInfo cut = ParseBusy(all.substr(0, all.find("end=")));
    CHECK(cut.state() == "unknown");
    CHECK(cut.describe() == "the busy probe's output was cut short");
    CHECK(ParseBusy("").state() == "unknown");
    CHECK(ParseBusy("garbage\n" + Tagged("smi", "") + "smi| forged\n" + kQuiet).state() == "unknown");
  }

  TEST_CASE("device witness: the configured glob, system holders ignored, users' processes counted") {
    BusySettings s;
    s.device_globs = {"/dev/dri/renderD*"};
    std::string out = "smi= absent\nmodule= absent\n"
                      "fd| /proc/900/fd/5 /dev/dri/renderD128\n"
                      "fd| /proc/900/fd/6 /dev/dri/renderD128\n"
                      "fd| /proc/901/fd/3 /dev/dri/card0\n"
                      "fd| /proc/12/fd/3 /dev/nvidia0\n"
                      "fd| garbage\n"
                      "fd= 0\n"
                      "ps| 900 2001 yseong 7200 98.0 python3 train.py --lr 3e-4\n"
                      "ps| 12 0 root 9000 0.0 /usr/bin/Xorg :0\n"
                      "cgroup| 900 0::/system.slice/docker-3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd.scope\n"
                      "docker| 3f2a9c1b7d4e lab-train\n"
                      "docker= 0\nend=\n";
    BusyInfo b = ParseBusy(out, s);
    REQUIRE(b.gpu_jobs.size() == 1);
    CHECK(b.gpu_jobs[0].pid == 900);
    CHECK(b.gpu_jobs[0].user == "yseong");
    CHECK(b.gpu_jobs[0].name == "python3 train.py --lr 3e-4");
    CHECK(b.gpu_jobs[0].container == "lab-train");
    CHECK(b.gpu_jobs[0].devices == std::vector<std::string>{"/dev/dri/renderD128"});
    CHECK(b.describe() ==
          "1 GPU job running (yseong: pid 900 in container lab-train, 2 h); 1 container running (lab-train)");

    // The default glob: the persistence daemon (a system user) is not a job; a user's process of that name is.
    std::string nv = "smi= 0\nmodule= loaded\n"
                     "fd| /proc/700/fd/3 /dev/nvidia0\n"
                     "fd| /proc/701/fd/3 /dev/nvidia1\n"
                     "fd= 0\n"
                     "ps| 700 113 nvidia-persistenced 90000 0.0 /usr/bin/nvidia-persistenced --user nvidia-persistenced\n"
                     "ps| 701 2002 kpark 30 1.0 /home/kpark/nvidia-persistenced\n"
                     "docker= absent\nend=\n";
    b = ParseBusy(nv);
    REQUIRE(b.gpu_jobs.size() == 1);
    CHECK(b.gpu_jobs[0].user == "kpark");
  }

  TEST_CASE("docker: names from docker ps; a daemon that is down is idle only when no process is in a container") {
    BusySettings s;
    s.timeout_s = 10;
    auto run = [&](const std::string& docker) { return ParseBusy("smi= absent\nmodule= absent\nfd= 0\n" + docker + "end=\n", s); };
    CHECK(run(Tagged("docker", "abc123 train-job\ndef456 jupyter")).describe() ==
          "2 containers running (train-job, jupyter)");
    const std::string down =
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?";
    BusyInfo b = run(Tagged("docker", down, "1") + "ctr= 0\n");
    CHECK(b.state() == "idle");
    CHECK(b.notes.size() == 1);
    b = run(Tagged("docker", down, "1") +
            Tagged("ctr", "docker-3f2a9c1b7d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd"));
    CHECK(b.containers == std::vector<std::string>{"3f2a9c1b7d4e"});
    CHECK(b.state() == "busy");
    CHECK(run(Tagged("docker", "", "124") + "ctr= 0\n").describe() ==
          "containers unknown: docker ps did not answer within 10 s");
    CHECK(run(Tagged("docker", "permission denied while trying to connect", "1") + "ctr= 0\n").state() == "unknown");
  }

  TEST_CASE("busy.command: output means busy (escaped, bounded), nothing means idle, a failure is unknown") {
    BusySettings s;
    s.command = "squeue -h -w $(hostname -s)";
    auto run = [&](const std::string& cmd) { return ParseBusy("smi= absent\nmodule= absent\nfd= 0\ndocker= absent\n" + cmd + "end=\n", s); };
    BusyInfo b = run(Tagged("cmd", "  4121 gpu train yseong R 3:00:01 1 asahi\n\x1b[31mred\tjob"));
    CHECK(b.state() == "busy");
    CHECK(b.command_output == "  4121 gpu train yseong R 3:00:01 1 asahi | \\x1b[31mred\\tjob");
    CHECK(b.describe() == "busy.command reports work:   4121 gpu train yseong R 3:00:01 1 asahi | \\x1b[31mred\\tjob");
    CHECK(run(Tagged("cmd", "")).state() == "idle");
    CHECK(run(Tagged("cmd", "squeue: error: Unable to contact slurm controller", "1")).describe() ==
          "busy.command unknown: busy.command failed (exit 1): squeue: error: Unable to contact slurm controller");
    CHECK(run("").describe() == "busy.command did not report");
    // busy_if: exit: a non-zero exit is busy; 0 is idle whatever it prints; 127 (not found) is unknown.
    s.busy_if_exit = true;
    CHECK(run(Tagged("cmd", "agent has 2 tasks", "1")).state() == "busy");
    CHECK(run(Tagged("cmd", "ok")).state() == "idle");
    CHECK(run(Tagged("cmd", "sh: 1: det: not found", "127")).state() == "unknown");
  }

  TEST_CASE("cpu_jobs: long, hungry processes of non-system users (H200 ps capture: only root, so none)") {
    BusySettings s;
    s.cpu_jobs = true;
    s.cpu_min_age_s = 1800;
    s.cpu_min_pct = 50;
    auto run = [&](const std::string& cpu) { return ParseBusy("smi= absent\nmodule= absent\nfd= 0\ndocker= absent\n" + cpu + "end=\n", s); };
    s.cpu_min_age_s = 0;
    s.cpu_min_pct = 0;
    CHECK(run(Tagged("cpu", Raw("ps_all.txt"))).state() == "idle");  // uid 0 only
    s.cpu_min_age_s = 1800;
    s.cpu_min_pct = 50;
    BusyInfo b = run(Tagged("cpu", "  5120  2001 yseong  7200 390.0 python3 preprocess.py\n"
                                   "  5121  2002 kpark     60 100.0 make -j8\n"
                                   "  5122  2003 jkim    9000  3.0 vim notes\n"
                                   "  5123 65534 nobody  9000 99.0 spin\n"
                                   "garbage\n"));
    REQUIRE(b.cpu_jobs.size() == 1);
    CHECK(b.cpu_jobs[0].name == "python3 preprocess.py");
    CHECK(b.describe() == "1 long CPU job running (yseong: pid 5120, 2 h)");
    CHECK(run("").state() == "unknown");  // ps did not report
  }

  TEST_CASE("busy: settings are validated offline with file:line:col") {
    Findings f;
    Load(Inv("busy:\n  command: \"squeue -h -w $(hostname -s)\"\n  device_glob: [\"/dev/dri/renderD*\", \"/tmp/x*\"]\n"
             "  timeout: 10 min\n  cpu_jobs: { min_age: 30 minutes, min_cpu: lots, max: 3 }\n  busy_if: sometimes\n"
             "  comand: x\n"),
         &f);
    std::string all = All(f);
    INFO(all);
    CHECK(all.find("inventory/test.yaml:7:42: busy-device-glob: busy.device_glob '/tmp/x*' must be a glob of "
                   "device files under /dev/") != std::string::npos);
    CHECK(all.find("inventory/test.yaml:8:16: busy-timeout: busy.timeout must be a duration between 1s and 300s (e.g. 10s), got '10 min'") !=
          std::string::npos);
    CHECK(all.find("busy-duration: busy.cpu_jobs.min_age must be a duration such as 30m") != std::string::npos);
    CHECK(all.find("busy-cpu-percent") != std::string::npos);
    CHECK(all.find("unknown key 'max' in busy.cpu_jobs") != std::string::npos);
    CHECK(all.find("unknown key 'comand' in busy settings") != std::string::npos);
    CHECK(all.find("'busy_if' of busy settings must be one of") != std::string::npos);

    Findings ok;
    Inventory inv = Load(Inv("busy: { command: \"squeue -h\", busy_if: exit, device_glob: \"/dev/dri/renderD*\", "
                             "timeout: 2s, cpu_jobs: { min_age: 30m, min_cpu: 50% } }\n"),
                         &ok);
    CHECK(All(ok).empty());
    BusySettings s = BusySettingsOf(inv.settings(inv.nodes[0]));
    CHECK(s.command == "squeue -h");
    CHECK(s.busy_if_exit);
    CHECK(s.device_globs == std::vector<std::string>{"/dev/dri/renderD*"});
    CHECK(s.timeout_s == 2);
    CHECK(s.cpu_jobs);
    CHECK(s.cpu_min_age_s == 1800);
    CHECK(s.cpu_min_pct == 50);
    Findings off;
    Inventory inv_off = Load(Inv("busy: { command: \"\" }\n"), &off);
    CHECK(All(off).empty());
    CHECK(BusySettingsOf(inv_off.settings(inv_off.nodes[0])).command.empty());  // "" turns an inherited one off
    CHECK(ParseDurationSeconds("1d") == 86400);
    CHECK_FALSE(ParseDurationSeconds("m").has_value());
  }

  TEST_CASE("the probe through a real /bin/sh: NVML mismatch, a hang cut by its own timeout, a held device file") {
    TempDir d("labfleet-busy");
    auto write = [&](const std::string& name, const std::string& text) {
      d.write(name, text);
      std::filesystem::permissions(d.path / name, std::filesystem::perms::owner_all);
    };
    write("bin/nvidia-smi", "#!/bin/sh\necho 'Failed to initialize NVML: Driver/library version mismatch'\n"
                            "echo 'NVML library version: 580.159'\nexit 18\n");
    write("bin/docker", "#!/bin/sh\necho 'abc123def456 train-job'\n");
    write("gpu7", "");
    BusySettings s;
    s.timeout_s = 1;
    s.device_globs = {(d.path / "gpu[0-9]*").string()};
    s.command = "echo \"job of $(echo yseong)\"";
    // A process holding the "device" open for the probe's whole run, then the probe with the stand-ins first.
    std::string script = "PATH=" + ShellQuote((d.path / "bin").string()) + ":$PATH\n" + "sleep 20 3<" +
                         ShellQuote((d.path / "gpu7").string()) + " & lf_holder=$!\n( " + BusyProbeCommand(s) +
                         "\n) </dev/null 2>/dev/null\nkill $lf_holder\n";
    LocalTransport local;
    RunResult r = local.run(ScriptRunner(), script);
    INFO(r.out << r.err);
    BusyInfo b = ParseBusy(r.out, s);
    REQUIRE(b.gpu_jobs.size() == 1);
    CHECK(b.gpu_jobs[0].name.find("sleep 20") == 0);
    CHECK(b.gpu_jobs[0].devices == std::vector<std::string>{(d.path / "gpu7").string()});
    CHECK(b.containers == std::vector<std::string>{"train-job"});
    CHECK(b.command_output == "job of yseong");
    // No /proc/driver/nvidia/version on this machine: the module is not loaded, so the failure is a note.
    REQUIRE(b.notes.size() == 1);
    CHECK(b.notes[0].find("nvidia-smi failed (exit 18): Failed to initialize NVML: Driver/library version mismatch") == 0);

    // A hang: the probe's own timeout (1 s) cuts it, the rest of the probe still reports.
    write("bin/nvidia-smi", "#!/bin/sh\nexec sleep 60\n");
    write("bin/docker", "#!/bin/sh\nexec sleep 60\n");
    r = local.run(ScriptRunner(), script);
    INFO(r.out << r.err);
    b = ParseBusy(r.out, s);
    CHECK(b.state() == "busy");  // the held file and the command still count
    CHECK(b.describe().find("containers unknown: docker ps did not answer within 1 s") != std::string::npos);
    CHECK(r.out.find("smi= 124") != std::string::npos);  // the event: timeout(1) cut it (exit 124)
  }
}

TEST_SUITE("busy") {
  TEST_CASE("planner: a node whose busy state is unknown defers disruptive changes with the reason; --force overrides") {
    Inventory inv = LoadUnvalidated("lab: { name: t }\nnodes:\n  asahi: { address: 10.9.0.1 }\n");
    ProbeResults res;
    res[kBusyProbeKey] = {0, "smi| Failed to initialize NVML: Driver/library version mismatch\nsmi= 9\n" + kQuiet};
    res["labfleet:pending"] = {0, PendingHandlersFile({{"restart docker", "systemctl restart docker", true},
                                                       {"reload sshd", "true", false}})};
    NodePlan p = DiffNode(inv, inv.nodes[0], res);
    REQUIRE(p.changes.size() == 1);
    REQUIRE(p.deferred.size() == 1);
    CHECK(DeferredLine(p, p.deferred[0]) ==
          "deferred: restart docker on asahi \u2014 GPU use unknown: nvidia-smi failed (exit 9): Failed to initialize "
          "NVML: Driver/library version mismatch");
    auto j = NodePlanToJson(p);
    CHECK(j["busy"]["state"] == "unknown");
    CHECK(j["deferred"][0]["deferred_because"] ==
          "GPU use unknown: nvidia-smi failed (exit 9): Failed to initialize NVML: Driver/library version mismatch");
    NodePlan forced = DiffNode(inv, inv.nodes[0], res, PlanOptions{.force = true, .only = {}});
    CHECK(forced.changes.size() == 2);
    CHECK(forced.deferred.empty());
    // The same node answering: nothing held back.
    res[kBusyProbeKey] = {0, "smi= 0\n" + kQuiet};
    CHECK(DiffNode(inv, inv.nodes[0], res).deferred.empty());
  }
}

TEST_SUITE("busy") {
  TEST_CASE("the probe's own output captured on an H200: busy, NVML failing, nvidia-smi hung, idle after the job") {
    BusySettings s;  // the settings the capture ran with (see each fixture's first line)
    s.command = "printf 'job 77 yseong R\\n'";
    s.timeout_s = 3;
    s.cpu_jobs = true;
    s.cpu_min_age_s = 0;
    s.cpu_min_pct = 0;
    BusyInfo b = ParseBusy(Fixture("nvidia/h200/probe_busy.txt"), s);
    CHECK(b.unknown.empty());
    REQUIRE(b.gpu_jobs.size() == 1);
    CHECK(b.gpu_jobs[0].pid == 517);
    CHECK(b.gpu_jobs[0].user == "root");
    CHECK(b.gpu_jobs[0].name == "python3 /tmp/j.py");
    CHECK(b.gpu_jobs[0].nvidia_smi);
    CHECK(b.gpu_jobs[0].devices == std::vector<std::string>{"/dev/nvidia0"});
    CHECK(b.cpu_jobs.empty());  // only root runs there
    CHECK(b.describe() == "1 GPU job running (root: pid 517, 0 s); busy.command reports work: job 77 yseong R");

    b = ParseBusy(Fixture("nvidia/h200/probe_nvml.txt"), s);
    REQUIRE(b.gpu_jobs.size() == 1);  // the /proc/*/fd witness, without NVML
    CHECK_FALSE(b.gpu_jobs[0].nvidia_smi);
    CHECK(b.gpu_jobs[0].user == "root");
    CHECK(b.unknown == std::vector<std::string>{
                           "GPU use unknown: nvidia-smi failed (exit 18): Failed to initialize NVML: Driver/library "
                           "version mismatch"});

    b = ParseBusy(Fixture("nvidia/h200/probe_hang.txt"), s);
    REQUIRE(b.gpu_jobs.size() == 1);
    CHECK(b.gpu_jobs[0].seconds == 3);
    CHECK(b.unknown == std::vector<std::string>{"GPU use unknown: nvidia-smi did not answer within 3 s"});

    b = ParseBusy(Fixture("nvidia/h200/probe_idle.txt"), s);
    CHECK(b.gpu_jobs.empty());
    CHECK(b.unknown.empty());
    CHECK(b.state() == "busy");  // busy.command still prints a job
    BusySettings no_command = s;
    no_command.command.clear();
    CHECK(ParseBusy(Fixture("nvidia/h200/probe_idle.txt"), no_command).state() == "idle");
  }
}

TEST_SUITE("busy") {
  TEST_CASE("facts runs the planner's busy probe and parser: same text, same verdict") {
    BusySettings s;
    s.command = "squeue -h -w \"$(hostname -s)\"";
    s.device_globs = {"/dev/dri/renderD*"};
    bool same_probe = false;
    for (const auto& p : FactsProbes(s)) same_probe |= p.key == kBusyProbeKey && p.command == BusyProbeCommand(s);
    CHECK(same_probe);
    ProbeResults results;
    results[kBusyProbeKey] = {0, Fixture("nvidia/h200/probe_nvml.txt")};
    BusySettings h200;
    h200.timeout_s = 3;
    NodeFacts f = FactsFromResults(results, h200);
    CHECK(f.busy_probed);
    CHECK(f.busy.describe() == ParseBusy(Fixture("nvidia/h200/probe_nvml.txt"), h200).describe());
    auto j = f.ToJson();
    CHECK(j["busy"]["state"] == "busy");
    CHECK(j["busy"]["gpu_jobs"][0]["pid"] == 517);
    CHECK(j["busy"]["unknown"][0] ==
          "GPU use unknown: nvidia-smi failed (exit 18): Failed to initialize NVML: Driver/library version mismatch");
    CHECK(FactsFromResults({}).ToJson()["busy"].is_null());  // the script stopped before the busy probe
  }
}
