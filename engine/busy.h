// Busy nodes: whether running work would be killed by a disruptive change (docker restart, driver change,
// unmount, disruptive unit restarts, reboots). One probe text (BusyProbeCommand) and one pure parser
// (ParseBusy) serve both `plan`/`apply` (the planner's built-in "labfleet:busy" probe) and `labfleet facts`
// (its "busy" section), so what the admin sees in facts is what apply decided on.
//
// The verdict is one of three states:
//   busy     work is seen running: a GPU compute process (nvidia-smi's list, or any process holding a device
//            file matching `busy.device_glob` open, found from /proc/*/fd: a second witness that needs no NVML),
//            a running container, `busy.command` saying so, or a long CPU job when `busy.cpu_jobs` asks;
//   unknown  a busy source is present but could not answer: nvidia-smi failed (NVML version mismatch after a
//            driver upgrade, the GPU fell off the bus), timed out, or printed something not understood; docker
//            ps failed while container processes may run; busy.command failed; the probe output was cut short;
//   idle     every source present answered and none saw work.
// Both busy and unknown hold disruptive changes back (fail safe); --force overrides, --drain waits and re-checks.
//
// The probe reads only: nvidia-smi (under `timeout`), `find /proc/[0-9]*/fd -lname GLOB` (readlink of the
// kernel's fd links, never following them), ps, /proc/PID/cgroup of the jobs it found, docker ps, and runs
// `busy.command` when the inventory sets one. Every line a node sends back is tagged by the probe ("smi| ...",
// "fd| ...") so no output can forge a status line, and every source is bounded (lines and line length).
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "engine/finding.h"
#include "engine/module.h"
#include "engine/value.h"

namespace labfleet {

// The `busy:` settings of a node (lab.defaults -> groups -> node, merged like every setting):
//   busy:
//     command: "squeue -h -w $(hostname -s)"  # TRUSTED inventory text, run as root by `sh -c` on the node;
//                                             # "" turns off one inherited from the defaults or a group
//     busy_if: output                         # output (default): non-empty output = busy, a failure = unknown;
//                                             # exit: a non-zero exit = busy (124/126/127 = unknown)
//     device_glob: "/dev/nvidia[0-9]*"        # or a list; processes holding a match open are GPU jobs
//     timeout: 10s                            # each source's own limit (nvidia-smi, docker ps, command)
//     cpu_jobs: { min_age: 30m, min_cpu: 50 } # processes of uid >= 1000 running that long at that %CPU
struct BusySettings {
  std::string command;
  bool busy_if_exit = false;
  std::vector<std::string> device_globs = {"/dev/nvidia[0-9]*"};
  int timeout_s = 10;
  bool cpu_jobs = false;
  long long cpu_min_age_s = 1800;
  double cpu_min_pct = 50;
};

// Reads and validates one `busy:` value; problems go to `f` (file:line:col) when given, and the defaults stay
// in place of a bad value.
BusySettings ParseBusySettings(const Value& busy, Findings* f = nullptr);
// The effective settings of a node from its merged settings map (Inventory::settings); defaults when absent.
BusySettings BusySettingsOf(const Value& node_settings);
// "30m", "2h", "90s", "1d", "45" (seconds); nullopt when not a duration.
std::optional<long long> ParseDurationSeconds(const std::string& text);

// The probe's shell text (POSIX sh, read-only). Inventory values enter only as quoted words.
std::string BusyProbeCommand(const BusySettings& s);
inline constexpr const char* kBusyProbeKey = "labfleet:busy";

// A job seen running.
struct BusyJob {
  long pid = 0;
  std::string user;              // "?" when ps could not say
  std::string name;              // command line (bounded)
  long long seconds = 0;         // elapsed
  std::string container;         // container id (12 hex) or name when the process is in one, else ""
  std::vector<std::string> devices;  // device files it holds open (device witness), e.g. /dev/nvidia0
  bool nvidia_smi = false;       // listed by nvidia-smi --query-compute-apps
  double cpu_pct = -1;           // cpu jobs: ps %CPU
};
using GpuJob = BusyJob;

struct BusyInfo {
  std::vector<BusyJob> gpu_jobs;
  std::vector<std::string> containers;  // names (or ids) of running containers
  std::vector<BusyJob> cpu_jobs;        // long CPU jobs of non-system users (busy.cpu_jobs)
  bool command_busy = false;            // busy.command said busy
  std::string command_output;           // its output, first lines, control characters escaped
  std::vector<std::string> unknown;     // why the busy state cannot be known ("GPU use unknown: ...")
  std::vector<std::string> notes;       // what was checked and is fine to ignore (shown by facts)

  bool busy() const { return !gpu_jobs.empty() || !containers.empty() || !cpu_jobs.empty() || command_busy; }
  // Disruptive changes wait: work runs, or whether it does cannot be known.
  bool holds() const { return busy() || !unknown.empty(); }
  std::string state() const { return busy() ? "busy" : !unknown.empty() ? "unknown" : "idle"; }
  // "1 GPU job running (yseong: pid 4121, 3 h); GPU use unknown: nvidia-smi failed (exit 9): ..."
  std::string describe() const;
  nlohmann::json ToJson() const;
};

// Pure: the probe's output as the node printed it. Never throws; unknown lines are skipped, but a source whose
// output is not understood, and output without the final "end=" line, make the verdict unknown.
BusyInfo ParseBusy(const std::string& probe_output, const BusySettings& s = {});
// The fact both `plan` and `facts` read: BusyProbeCommand(s) parsed by ParseBusy(.., s); key kBusyProbeKey.
// Not required: a source that fails makes the verdict unknown instead.
Fact<BusyInfo> BusyFact(const BusySettings& s);
std::string HumanDuration(long long seconds);  // "3 h", "20 min", "45 s"
// Printable text: control characters escaped (\t, \x1b, \\), cut after `max` bytes with "...".
std::string EscapeControl(const std::string& s, size_t max = 200);

// One process nvidia-smi lists (`--query-compute-apps`); the facts command fills gpu_index, user and age.
struct GpuProcess {
  std::string gpu_uuid;
  int gpu_index = -1;  // resolved from the uuid
  long long pid = -1;
  long long used_memory_mib = -1;
  std::string process_name;
  std::string user;        // from ps, "" when unknown (e.g. a process in another PID namespace)
  long long elapsed_s = -1;
};
std::vector<GpuProcess> ParseNvidiaSmiApps(std::string_view text);  // --query-compute-apps=gpu_uuid,pid,
                                                                    //   used_memory,process_name

}  // namespace labfleet
