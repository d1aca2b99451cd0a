// `labfleet facts`: what a node is, gathered in ONE round trip. Each fact is a Fact (engine/module.h): a
// read-only command and one pure parser of its raw output; FactsProbes() are run by the planner's own probe
// script (BuildProbeScript / ParseProbeOutput, engine/planner.h) and FactsFromResults() reads the typed facts.
// The busy verdict is the planner's BusyFact, so facts shows what apply decided on. Parsers never throw and skip
// lines they do not understand (tests keep a garbage line in every fixture).
#pragma once
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/busy.h"
#include "engine/module.h"
#include "engine/transport.h"

namespace labfleet {

struct OsRelease {
  std::string id, id_like, name, version_id, version_codename, pretty_name;
};
struct CpuInfo {
  std::string model;
  int logical = 0;   // processors the kernel sees
  int cores = 0;     // physical cores (unique physical id/core id pairs), else `cpu cores` x sockets, else logical
  int sockets = 0;   // unique physical ids (0 = unknown)
};
struct LoadAvg {
  double load1 = 0, load5 = 0, load15 = 0;
};
struct MemInfo {
  long long total_kib = -1, available_kib = -1, swap_total_kib = -1, swap_free_kib = -1;
};
struct DfRow {
  std::string filesystem, mount;
  long long size_kib = -1, used_kib = -1, avail_kib = -1;
};
struct GpuInfo {
  int index = -1;
  std::string name, uuid, driver;
  long long memory_total_mib = -1, memory_used_mib = -1;  // -1 = [N/A]
  int utilization_pct = -1;
  int temperature_c = -1;  // -1 = [N/A] or not reported
};
struct PsEntry {
  long long pid = -1;
  std::string user;
  long long elapsed_s = -1;
};
struct PciDevice {
  std::string slot, class_name, class_id, vendor_id, device_id, description;
  bool nvidia() const { return vendor_id == "10de"; }
};
struct Container {
  std::string id, image, name, status;
};

// --- pure parsers, one per source ---
OsRelease ParseOsRelease(std::string_view text);                // /etc/os-release
CpuInfo ParseCpuinfo(std::string_view text);                    // /proc/cpuinfo
MemInfo ParseMeminfo(std::string_view text);                    // /proc/meminfo
std::optional<double> ParseUptime(std::string_view text);       // /proc/uptime
std::optional<LoadAvg> ParseLoadavg(std::string_view text);     // /proc/loadavg: "0.52 0.58 0.59 1/467 12345"
std::optional<DfRow> ParseDf(std::string_view text);            // df -Pk / (first data row)
std::vector<GpuInfo> ParseNvidiaSmiGpus(std::string_view text);  // --query-gpu=index,name,uuid,driver_version,
                                                                 //   memory.total,memory.used,utilization.gpu
std::vector<PsEntry> ParsePs(std::string_view text);             // ps -o pid=,user=,etimes= -p PIDS
std::vector<PciDevice> ParseLspci(std::string_view text);        // lspci -nn; display controllers only
std::vector<PciDevice> ParseSysfsPci(std::string_view text);     // the script's /sys/bus/pci fallback
std::vector<Container> ParseDockerPs(std::string_view text);     // docker ps --format '{{json .}}'
std::string FirstLine(std::string_view text);                    // trimmed first non-empty line
// The compute apps (nvidia-smi --query-compute-apps lines) and their owners (ps -o pid=,user=,etimes= lines)
// of one probe: a line is one or the other (an app line starts with "GPU-" and is comma-separated).
struct GpuApps {
  std::vector<GpuProcess> apps;
  std::vector<PsEntry> ps;
};
GpuApps ParseGpuApps(std::string_view text);
std::vector<PciDevice> ParsePciDisplay(std::string_view text);  // lspci -nn lines or the sysfs fallback's
std::optional<nlohmann::json> ParseJson(std::string_view text);  // nullopt when not JSON

// --- the facts (names are the probe keys) ---
extern const Fact<std::string> kHostname;                  // "hostname"
extern const Fact<OsRelease> kOsRelease;                   // "os-release"
extern const Fact<std::string> kKernel;                    // "kernel": uname -r
extern const Fact<std::string> kArch;                      // "arch": uname -m
extern const Fact<std::optional<double>> kUptime;          // "uptime"
extern const Fact<std::optional<LoadAvg>> kLoadavg;        // "loadavg": /proc/loadavg
extern const Fact<bool> kRebootRequired;                   // "reboot-required": /var/run/reboot-required exists
extern const Fact<CpuInfo> kCpuinfo;                       // "cpuinfo"
extern const Fact<MemInfo> kMeminfo;                       // "meminfo"
extern const Fact<std::string> kRootFsType;                // "root-fs-type": stat -f -c %T /
extern const Fact<std::optional<DfRow>> kRootDf;           // "root-df": df -Pk /
extern const Fact<std::vector<GpuInfo>> kNvidiaGpus;       // "nvidia-gpus": exit 127 = no nvidia-smi
extern const Fact<GpuApps> kGpuApps;                       // "gpu-apps"
extern const Fact<std::vector<PciDevice>> kPciDisplay;     // "pci-display"
extern const Fact<std::string> kDockerVersion;             // "docker-version": exit 127 = no docker
extern const Fact<std::vector<Container>> kDockerPs;       // "docker-ps"
extern const Fact<std::optional<nlohmann::json>> kLabfleetState;  // "labfleet-state": empty output = absent

struct NodeFacts {
  std::string node;
  bool reachable = false;
  std::string error;       // why the node could not be reached or the script failed
  std::string error_kind;  // connect|host-key|auth|timeout|lost|other|script
  int gpus_expected = -1;  // inventory `gpus:`, -1 = not declared

  std::string hostname;
  OsRelease os;
  std::string kernel, arch;
  std::optional<double> uptime_s;
  std::optional<LoadAvg> load;
  bool reboot_required = false;  // Debian/Ubuntu's /var/run/reboot-required (a kernel or libc upgrade)
  CpuInfo cpu;
  MemInfo mem;
  std::string root_fs_type;  // stat -f -c %T / ("btrfs", "ext2/ext3", "xfs", "overlayfs", ...)
  std::optional<DfRow> root_df;

  std::string gpu_source;  // "nvidia-smi", "lspci" or "none"
  std::string nvidia_smi_error;  // nvidia-smi present but failed (driver not loaded, ...)
  std::vector<GpuInfo> gpus;
  std::vector<GpuProcess> gpu_processes;
  std::vector<PciDevice> pci_display;  // display controllers seen on the PCI bus (any vendor)

  bool docker_installed = false;
  std::string docker_version;  // server version; "" when the daemon did not answer
  std::string docker_error;
  std::vector<Container> containers;

  // The busy verdict from the same probe and parser the planner uses (engine/busy.h): what apply decides on.
  BusyInfo busy;
  bool busy_probed = false;  // the busy probe came back

  std::optional<nlohmann::json> state;  // /var/lib/labfleet/state.json
  std::string state_error;

  // GPUs the node has: nvidia-smi's list when it worked, else NVIDIA display controllers on the PCI bus.
  int gpu_count() const;
  int pci_nvidia_count() const;
  bool gpu_count_mismatch() const { return reachable && gpus_expected >= 0 && gpu_count() != gpus_expected; }
  std::string gpu_model() const;   // "NVIDIA A100-SXM4-80GB" or "mixed" or ""
  std::string gpu_driver() const;
  nlohmann::json ToJson() const;
};

// The probes of `labfleet facts` (every fact above and BusyFact(busy)), for the planner's probe script.
std::vector<Probe> FactsProbes(const BusySettings& busy = {});
// Typed facts from the probe results (reachable = true); a probe absent from `results` leaves its facts empty.
NodeFacts FactsFromResults(const ProbeResults& results, const BusySettings& busy = {});
// Runs FactsProbes on `t` (one round trip) and parses them; TransportError propagates. Output cut short is
// NodeFacts::error (error_kind "script").
NodeFacts GatherFacts(Transport& t, const BusySettings& busy = {});
// NodeFacts::error_kind of a TransportError: connect|host-key|auth|timeout|lost|other.
std::string KindName(TransportError::Kind k);

}  // namespace labfleet
