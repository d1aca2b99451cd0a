// NVIDIA driver facts: the `nvidia:` settings (typed, shared with the docker module, which registers the
// container runtime), pure parsers of the driver's live state, and package naming.
//
//   nvidia-smi --query-gpu=index,uuid,driver_version,persistence_mode --format=csv,noheader
//       "0, GPU-5c3e..., 535.183.01, Enabled" a GPU a line (nvidia-smi --help-query-gpu); on failure one
//       message instead ("Failed to initialize NVML: Driver/library version mismatch", "NVIDIA-SMI has failed
//       because it couldn't communicate with the NVIDIA driver. ...")
//   /proc/driver/nvidia/version
//       "NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023": the version
//       of the LOADED kernel module, which differs from the installed userspace until a reboot/reload.
//
// Parsers never throw and skip lines they do not understand.
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/finding.h"
#include "engine/module.h"
#include "engine/value.h"

namespace labfleet {

struct NvidiaSettings {
  Location where;
  std::string driver;  // exact: "535.183.01" (any Debian revision) or "535.183.01-0ubuntu1"; "" = any of the branch
  std::string branch;  // "535"; derived from `driver` when not written
  std::string flavor = "server";  // apt: server (nvidia-headless-B-server + nvidia-utils-B-server),
                                  //      headless (nvidia-headless-B + nvidia-utils-B), desktop (nvidia-driver-B)
  bool hold = true;               // apt-mark hold / IgnorePkg, and unattended-upgrades kept away (apt)
  bool persistence = true;        // persistence mode on every GPU (nvidia-persistenced when present)
  bool container_toolkit = false;  // nvidia-container-toolkit installed (the docker module registers the runtime)
  bool blacklist_nouveau = true;
  std::string packages;  // "apt" | "pacman" | "" = the node's package manager
};

extern const std::vector<std::string> kNvidiaKeys;
// Parses a `nvidia:` value (findings to `f` when given). nullopt when it cannot be used.
std::optional<NvidiaSettings> ParseNvidiaSettings(const Value& v, Findings* f);
// The node's effective nvidia settings (nullopt when the node has no `nvidia:`); for other modules.
std::optional<NvidiaSettings> NodeNvidia(const Value& node_settings);

// The driver packages for a package manager ("apt" or "pacman"): apt by flavor and branch; pacman
// nvidia + nvidia-utils. The first one carries the userspace version labfleet compares.
std::vector<std::string> NvidiaDriverPackages(const NvidiaSettings& s, const std::string& manager);
// The version argument apt-get gets for a pinned driver: "535.183.01" -> "535.183.01-*" (apt matches the
// prefix), a full Debian version as is.
std::string AptVersionPattern(const std::string& driver);
// apt preferences (/etc/apt/preferences.d/labfleet-nvidia) that make the pinned driver version the candidate of
// every nvidia-* / libnvidia-* package, priority 1001 (downgrades allowed). The driver packages depend on each
// other at exact versions, and apt's resolver satisfies that only when the candidates agree: installing an
// older driver while a newer one is in the archive fails without it.
extern const char* const kNvidiaAptPreferencesFile;
std::string NvidiaAptPreferences(const std::string& driver);
// Does an installed Debian/pacman version satisfy the desired driver?
bool DriverVersionMatches(const std::string& installed, const std::string& driver);

// The Docker runtime entry for daemon.json's "runtimes" when container_toolkit is on (for the docker module):
// {"nvidia": {"path": "nvidia-container-runtime", "runtimeArgs": []}}.
nlohmann::json NvidiaDockerRuntime();

struct NvidiaGpuState {
  int index = -1;
  std::string uuid, driver_version, persistence_mode;  // persistence_mode: Enabled | Disabled | [N/A]
};
struct NvidiaSmiState {
  std::vector<NvidiaGpuState> gpus;
  std::string error;  // when no GPU line was printed: the other lines joined (why nvidia-smi failed)
  int skipped = 0;    // lines that are not a GPU
  bool version_mismatch() const { return error.find("version mismatch") != std::string::npos; }
};
NvidiaSmiState ParseNvidiaSmiDriverQuery(std::string_view text);
// "535.104.05" from /proc/driver/nvidia/version; nullopt when absent (module not loaded).
std::optional<std::string> ParseProcDriverVersion(std::string_view text);

// Probes (keys "nvidia-smi-driver", "proc-driver-nvidia-version").
Probe NvidiaSmiDriverProbe();
Probe ProcDriverVersionProbe();

// Driver version syntax: "535", "535.183", "535.183.01", optionally "-<debian revision>".
bool IsDriverVersion(std::string_view v);

}  // namespace labfleet
