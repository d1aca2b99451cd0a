#include "modules/facts/nvidia_facts.h"

#include "modules/facts/accounts.h"
#include "engine/inventory.h"
#include "modules/facts/package_facts.h"
#include "engine/shell.h"

namespace labfleet {

namespace {

std::string Trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && isspace((unsigned char)s[b])) ++b;
  while (e > b && isspace((unsigned char)s[e - 1])) --e;
  return std::string(s.substr(b, e - b));
}

bool AllDigits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!isdigit((unsigned char)c)) return false;
  return true;
}

// "535.104.05" / "550.54": digits and dots, starting and ending with a digit.
bool IsDottedVersion(std::string_view s) {
  if (s.empty() || !isdigit((unsigned char)s.front()) || !isdigit((unsigned char)s.back())) return false;
  bool dot = false;
  for (char c : s) {
    if (c == '.') dot = true;
    else if (!isdigit((unsigned char)c)) return false;
  }
  return dot;
}

}  // namespace

const std::vector<std::string> kNvidiaKeys = {"driver",      "branch",            "flavor",
                                              "hold",        "persistence",       "container_toolkit",
                                              "blacklist_nouveau", "packages"};

bool IsDriverVersion(std::string_view v) {
  std::string_view up = v.substr(0, v.find('-'));
  if (up.empty()) return false;
  size_t parts = 1;
  for (size_t i = 0; i < up.size(); ++i) {
    if (up[i] == '.') {
      if (i == 0 || i + 1 == up.size() || up[i - 1] == '.') return false;
      ++parts;
    } else if (!isdigit((unsigned char)up[i])) {
      return false;
    }
  }
  if (parts > 3) return false;
  if (v.size() > up.size()) {
    std::string_view rev = v.substr(up.size() + 1);
    if (rev.empty()) return false;
    for (char c : rev)
      if (!isalnum((unsigned char)c) && std::string_view(".+~").find(c) == std::string_view::npos) return false;
  }
  return true;
}

std::optional<NvidiaSettings> ParseNvidiaSettings(const Value& v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  size_t errors_before = out.count(Severity::Error);
  NvidiaSettings s;
  s.where = v.loc();
  MapReader r(v, "nvidia settings", v.loc(), out, kNvidiaKeys);
  if (!r.is_map()) return std::nullopt;
  if (auto d = r.str("driver")) {
    if (!IsDriverVersion(*d))
      out.error(r.get("driver")->loc(), "nvidia-driver-version",
                "nvidia driver must be a version like \"535.183.01\" (quote it), got '" + *d + "'");
    else
      s.driver = *d;
  }
  if (auto b = r.str("branch")) {
    if (!AllDigits(*b))
      out.error(r.get("branch")->loc(), "nvidia-branch",
                "nvidia branch must be the driver's major version like \"535\", got '" + *b + "'");
    else
      s.branch = *b;
  }
  std::string major = s.driver.substr(0, s.driver.find('.'));
  if (!s.driver.empty() && !s.branch.empty() && major != s.branch)
    out.error(r.get("branch")->loc(), "nvidia-branch-mismatch",
              "nvidia branch " + s.branch + " does not match driver " + s.driver + "; write only one of them");
  if (s.branch.empty()) s.branch = s.driver.empty() ? "" : major;
  if (auto fl = r.one_of("flavor", {"server", "headless", "desktop"})) s.flavor = *fl;
  if (auto b = r.boolean("hold")) s.hold = *b;
  if (auto b = r.boolean("persistence")) s.persistence = *b;
  if (auto b = r.boolean("container_toolkit")) s.container_toolkit = *b;
  if (auto b = r.boolean("blacklist_nouveau")) s.blacklist_nouveau = *b;
  if (auto p = r.one_of("packages", {"apt", "pacman"})) s.packages = *p;
  if (s.packages == "apt" && s.branch.empty())
    out.error(v.loc(), "nvidia-driver-missing",
              "nvidia settings for apt need 'branch' (e.g. \"535\") or an exact 'driver' version");
  if (out.count(Severity::Error) > errors_before) return std::nullopt;
  return s;
}

std::optional<NvidiaSettings> NodeNvidia(const Value& node_settings) {
  const Value* v = node_settings.find("nvidia");
  if (!v || v->is_null()) return std::nullopt;
  return ParseNvidiaSettings(*v, nullptr);
}

std::vector<std::string> NvidiaDriverPackages(const NvidiaSettings& s, const std::string& manager) {
  if (manager == "pacman") return {"nvidia-utils", "nvidia"};
  if (s.branch.empty()) return {};
  if (s.flavor == "desktop") return {"nvidia-driver-" + s.branch};
  if (s.flavor == "headless") return {"nvidia-utils-" + s.branch, "nvidia-headless-" + s.branch};
  return {"nvidia-utils-" + s.branch + "-server", "nvidia-headless-" + s.branch + "-server"};
}

std::string AptVersionPattern(const std::string& driver) {
  return driver.find('-') == std::string::npos ? driver + "-*" : driver;
}

const char* const kNvidiaAptPreferencesFile = "/etc/apt/preferences.d/labfleet-nvidia";

std::string NvidiaAptPreferences(const std::string& driver) {
  return "# Managed by labfleet (nvidia.driver): the NVIDIA driver packages at the inventory's version.\n"
         "Package: nvidia-* libnvidia-*\n"
         "Pin: version " + AptVersionPattern(driver) + "\n"
         "Pin-Priority: 1001\n";
}

bool DriverVersionMatches(const std::string& installed, const std::string& driver) {
  if (driver.empty()) return true;
  if (driver.find('-') != std::string::npos) {
    std::string v = installed;
    if (auto colon = v.find(':'); colon != std::string::npos) v = v.substr(colon + 1);
    return v == driver;
  }
  return UpstreamVersion(installed) == driver;
}

nlohmann::json NvidiaDockerRuntime() {
  return {{"nvidia", {{"path", "nvidia-container-runtime"}, {"runtimeArgs", nlohmann::json::array()}}}};
}

NvidiaSmiState ParseNvidiaSmiDriverQuery(std::string_view text) {
  NvidiaSmiState out;
  std::vector<std::string> other;
  for (const auto& raw : SplitLines(text)) {
    std::string line = Trim(raw);
    if (line.empty()) continue;
    // Fields are separated by ", " (nvidia-smi's CSV).
    std::vector<std::string> f;
    size_t start = 0;
    for (size_t p; (p = line.find(", ", start)) != std::string::npos; start = p + 2) f.push_back(line.substr(start, p - start));
    f.push_back(line.substr(start));
    if (f.size() == 4 && AllDigits(f[0]) && IsDottedVersion(f[2])) {
      out.gpus.push_back({std::stoi(f[0]), f[1], f[2], f[3]});
      continue;
    }
    ++out.skipped;
    other.push_back(line);
  }
  if (out.gpus.empty()) {
    for (const auto& l : other) out.error += (out.error.empty() ? "" : " ") + l;
  }
  return out;
}

std::optional<std::string> ParseProcDriverVersion(std::string_view text) {
  for (const auto& line : SplitLines(text)) {
    if (line.rfind("NVRM version:", 0) != 0) continue;
    std::string word;
    std::string_view rest = std::string_view(line).substr(13);
    size_t i = 0;
    while (i <= rest.size()) {
      if (i == rest.size() || isspace((unsigned char)rest[i])) {
        if (IsDottedVersion(word)) return word;
        word.clear();
      } else {
        word += rest[i];
      }
      ++i;
    }
  }
  return std::nullopt;
}

Probe NvidiaSmiDriverProbe() {
  // stderr joins stdout: the message says why nvidia-smi failed (driver not loaded, version mismatch).
  return {"nvidia-smi-driver",
          "command -v nvidia-smi >/dev/null 2>&1 || exit 127\n"
          "nvidia-smi --query-gpu=index,uuid,driver_version,persistence_mode --format=csv,noheader 2>&1"};
}

Probe ProcDriverVersionProbe() { return {"proc-driver-nvidia-version", "cat /proc/driver/nvidia/version"}; }

}  // namespace labfleet
