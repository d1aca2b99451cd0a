#include "modules/facts/facts.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <set>

#include "engine/planner.h"
#include "engine/shell.h"
#include "engine/text.h"

namespace labfleet {
namespace {

std::string_view Trim(std::string_view s) { return TrimView(s); }
std::vector<std::string_view> Lines(std::string_view text) { return LineViews(text); }
std::optional<long long> Int(std::string_view s) { return ParseInteger(s); }

std::optional<double> Double(std::string_view s) {
  std::string t(Trim(s));
  if (t.empty()) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size()) return std::nullopt;
  return v;
}

std::vector<std::string> SplitCsv(std::string_view line) { return SplitNvidiaCsv(line); }

long long IntOr(std::string_view s, long long fallback = -1) { return Int(s).value_or(fallback); }

bool IsHex(std::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (!std::isxdigit((unsigned char)c)) return false;
  return true;
}

}  // namespace

std::string FirstLine(std::string_view text) {
  for (auto line : Lines(text)) {
    auto t = Trim(line);
    if (!t.empty()) return std::string(t);
  }
  return "";
}

OsRelease ParseOsRelease(std::string_view text) {
  OsRelease os;
  for (auto raw : Lines(text)) {
    auto line = Trim(raw);
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos || eq == 0) continue;
    std::string_view key = line.substr(0, eq);
    bool valid_key = std::all_of(key.begin(), key.end(), [](char c) { return std::isupper((unsigned char)c) || std::isdigit((unsigned char)c) || c == '_'; });
    if (!valid_key) continue;
    std::string_view v = line.substr(eq + 1);
    std::string value;
    if (!v.empty() && (v[0] == '"' || v[0] == '\'')) {
      char q = v[0];
      size_t i = 1;
      bool closed = false;
      for (; i < v.size(); ++i) {
        if (v[i] == q) {
          closed = true;
          break;
        }
        if (q == '"' && v[i] == '\\' && i + 1 < v.size()) ++i;
        value += v[i];
      }
      if (!closed) continue;
    } else {
      if (v.find_first_of(" \t\"'`$") != std::string_view::npos) continue;  // not a valid unquoted value
      value = std::string(v);
    }
    if (key == "ID") os.id = value;
    else if (key == "ID_LIKE") os.id_like = value;
    else if (key == "NAME") os.name = value;
    else if (key == "VERSION_ID") os.version_id = value;
    else if (key == "VERSION_CODENAME") os.version_codename = value;
    else if (key == "PRETTY_NAME") os.pretty_name = value;
  }
  return os;
}

CpuInfo ParseCpuinfo(std::string_view text) {
  CpuInfo cpu;
  std::set<std::string> sockets;
  std::set<std::pair<std::string, std::string>> cores;
  std::string phys;
  int cpu_cores = 0;
  std::string fallback_model;
  for (auto raw : Lines(text)) {
    size_t colon = raw.find(':');
    if (colon == std::string_view::npos) continue;
    auto key = Trim(raw.substr(0, colon));
    auto val = Trim(raw.substr(colon + 1));
    if (key == "processor") {
      if (Int(val)) ++cpu.logical;
    } else if (key == "model name" || key == "cpu model") {
      if (cpu.model.empty()) cpu.model = std::string(val);
    } else if (key == "Hardware" || key == "Model") {
      if (fallback_model.empty()) fallback_model = std::string(val);
    } else if (key == "physical id") {
      phys = std::string(val);
      sockets.insert(phys);
    } else if (key == "core id") {
      cores.insert({phys, std::string(val)});
    } else if (key == "cpu cores") {
      if (auto n = Int(val)) cpu_cores = int(*n);
    }
  }
  if (cpu.model.empty()) cpu.model = fallback_model;
  cpu.sockets = int(sockets.size());
  if (!cores.empty())
    cpu.cores = int(cores.size());
  else if (cpu_cores > 0)
    cpu.cores = cpu_cores * std::max(1, cpu.sockets);
  else
    cpu.cores = cpu.logical;
  return cpu;
}

MemInfo ParseMeminfo(std::string_view text) {
  MemInfo m;
  for (auto raw : Lines(text)) {
    size_t colon = raw.find(':');
    if (colon == std::string_view::npos) continue;
    auto key = Trim(raw.substr(0, colon));
    auto val = Trim(raw.substr(colon + 1));
    long long mult = 1;
    if (val.ends_with(" kB")) {
      val.remove_suffix(3);
    } else if (!val.empty() && !std::isdigit((unsigned char)val.back())) {
      continue;  // unknown unit
    }
    auto n = Int(val);
    if (!n) continue;
    long long v = *n * mult;
    if (key == "MemTotal") m.total_kib = v;
    else if (key == "MemAvailable") m.available_kib = v;
    else if (key == "SwapTotal") m.swap_total_kib = v;
    else if (key == "SwapFree") m.swap_free_kib = v;
  }
  return m;
}

std::optional<double> ParseUptime(std::string_view text) {
  for (auto raw : Lines(text)) {
    auto line = Trim(raw);
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) continue;
    auto up = Double(line.substr(0, sp));
    auto idle = Double(line.substr(sp + 1));
    if (up && idle && *up >= 0) return up;
  }
  return std::nullopt;
}

std::optional<DfRow> ParseDf(std::string_view text) {
  for (auto raw : Lines(text)) {
    std::vector<std::string> f = SplitWords(raw, " \t");
    // Filesystem 1024-blocks Used Available Capacity Mounted-on (mount point may contain spaces: join the tail)
    if (f.size() < 6) continue;
    auto size = Int(f[1]), used = Int(f[2]), avail = Int(f[3]);
    if (!size || !used || !avail || f[4].empty() || f[4].back() != '%') continue;
    DfRow r;
    r.filesystem = f[0];
    r.size_kib = *size;
    r.used_kib = *used;
    r.avail_kib = *avail;
    r.mount = f[5];
    for (size_t i = 6; i < f.size(); ++i) r.mount += " " + f[i];
    return r;
  }
  return std::nullopt;
}

std::vector<GpuInfo> ParseNvidiaSmiGpus(std::string_view text) {
  std::vector<GpuInfo> out;
  for (auto raw : Lines(text)) {
    auto f = SplitCsv(raw);
    // 7 fields, or 8 with temperature.gpu (older captures and queries have 7).
    if (f.size() != 7 && f.size() != 8) continue;
    auto index = Int(f[0]);
    if (!index || *index < 0 || f[2].rfind("GPU-", 0) != 0) continue;
    GpuInfo g;
    g.index = int(*index);
    g.name = f[1];
    g.uuid = f[2];
    g.driver = f[3];
    g.memory_total_mib = IntOr(f[4]);
    g.memory_used_mib = IntOr(f[5]);
    g.utilization_pct = int(IntOr(f[6]));
    if (f.size() == 8) g.temperature_c = int(IntOr(f[7]));
    out.push_back(std::move(g));
  }
  return out;
}

std::optional<LoadAvg> ParseLoadavg(std::string_view text) {
  for (auto raw : Lines(text)) {
    std::vector<std::string> f = SplitWords(raw, " \t");
    if (f.size() < 3) continue;
    auto a = Double(f[0]), b = Double(f[1]), c = Double(f[2]);
    if (a && b && c && *a >= 0 && *b >= 0 && *c >= 0) return LoadAvg{*a, *b, *c};
  }
  return std::nullopt;
}

std::vector<PsEntry> ParsePs(std::string_view text) {
  std::vector<PsEntry> out;
  for (auto raw : Lines(text)) {
    std::vector<std::string> f = SplitWords(raw, " \t");
    if (f.size() != 3) continue;
    auto pid = Int(f[0]), et = Int(f[2]);
    if (!pid || !et) continue;
    out.push_back({*pid, f[1], *et});
  }
  return out;
}

std::vector<PciDevice> ParseLspci(std::string_view text) {
  // 01:00.0 VGA compatible controller [0300]: NVIDIA Corporation GA102 [GeForce RTX 3090] [10de:2204] (rev a1)
  std::vector<PciDevice> out;
  for (auto raw : Lines(text)) {
    auto line = Trim(raw);
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) continue;
    std::string_view slot = line.substr(0, sp);
    if (slot.find(':') == std::string_view::npos || slot.find('.') == std::string_view::npos) continue;
    size_t cls_end = line.find("]: ", sp);
    if (cls_end == std::string_view::npos || cls_end < sp + 6) continue;
    size_t cls_open = line.rfind('[', cls_end);
    if (cls_open == std::string_view::npos || cls_open <= sp) continue;
    std::string_view class_id = line.substr(cls_open + 1, cls_end - cls_open - 1);
    if (!IsHex(class_id, 4)) continue;
    std::string_view rest = line.substr(cls_end + 3);
    // strip " (rev xx)" / " (prog-if ...)" suffixes
    while (!rest.empty() && rest.back() == ')') {
      size_t p = rest.rfind(" (");
      if (p == std::string_view::npos) break;
      rest = rest.substr(0, p);
    }
    if (rest.size() < 11 || rest.back() != ']') continue;
    std::string_view ids = rest.substr(rest.size() - 11);  // [vvvv:dddd]
    if (ids[0] != '[' || ids[5] != ':' || !IsHex(ids.substr(1, 4), 4) || !IsHex(ids.substr(6, 4), 4)) continue;
    // display controllers: 0300 VGA, 0302 3D, 0380 other display
    if (!class_id.starts_with("03")) continue;
    PciDevice d;
    d.slot = std::string(slot);
    d.class_name = std::string(Trim(line.substr(sp + 1, cls_open - sp - 1)));
    d.class_id = std::string(class_id);
    d.vendor_id = std::string(ids.substr(1, 4));
    d.device_id = std::string(ids.substr(6, 4));
    std::transform(d.vendor_id.begin(), d.vendor_id.end(), d.vendor_id.begin(), ::tolower);
    std::transform(d.device_id.begin(), d.device_id.end(), d.device_id.begin(), ::tolower);
    d.description = std::string(Trim(rest.substr(0, rest.size() - 11)));
    out.push_back(std::move(d));
  }
  return out;
}

// The sysfs fallback when lspci is not installed: "0000:01:00.0 0x030200 0x10de 0x2204" per display controller.
std::vector<PciDevice> ParseSysfsPci(std::string_view text) {
  std::vector<PciDevice> out;
  for (auto raw : Lines(text)) {
    std::vector<std::string> f;
    std::string cur;
    for (char c : raw) {
      if (c == ' ') {
        if (!cur.empty()) f.push_back(std::move(cur));
        cur.clear();
      } else {
        cur += c;
      }
    }
    if (!cur.empty()) f.push_back(std::move(cur));
    if (f.size() != 4 || f[1].size() != 8 || f[2].size() != 6 || f[3].size() != 6) continue;
    if (f[1].rfind("0x03", 0) != 0 || !IsHex(f[1].substr(2), 6) || !IsHex(f[2].substr(2), 4) || !IsHex(f[3].substr(2), 4))
      continue;
    PciDevice d;
    d.slot = f[0];
    d.class_id = f[1].substr(2, 4);
    d.class_name = d.class_id == "0300" ? "VGA compatible controller" : d.class_id == "0302" ? "3D controller" : "Display controller";
    d.vendor_id = f[2].substr(2);
    d.device_id = f[3].substr(2);
    d.description = d.vendor_id == "10de" ? "NVIDIA Corporation device " + d.device_id : "";
    out.push_back(std::move(d));
  }
  return out;
}

std::vector<Container> ParseDockerPs(std::string_view text) {
  // docker ps --format '{{json .}}': one JSON object per line
  std::vector<Container> out;
  for (auto raw : Lines(text)) {
    auto line = Trim(raw);
    if (line.empty() || line[0] != '{') continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object() || !j.contains("ID") || !j["ID"].is_string()) continue;
    auto str = [&](const char* k) { return j.contains(k) && j[k].is_string() ? j[k].get<std::string>() : std::string(); };
    out.push_back({str("ID"), str("Image"), str("Names"), str("Status")});
  }
  return out;
}

GpuApps ParseGpuApps(std::string_view text) { return {ParseNvidiaSmiApps(text), ParsePs(text)}; }

std::vector<PciDevice> ParsePciDisplay(std::string_view text) {
  std::vector<PciDevice> out = ParseLspci(text);
  for (auto& d : ParseSysfsPci(text)) out.push_back(std::move(d));
  return out;
}

std::optional<nlohmann::json> ParseJson(std::string_view text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

namespace {

// Sources that can hang (a wedged driver, a docker daemon that does not answer) run under `timeout` when the
// node has it.
const std::string kTimeout = "T=; command -v timeout >/dev/null 2>&1 && T='timeout 20'\n";

std::string FirstLineOf(std::string_view text) { return FirstLine(text); }

}  // namespace

const Fact<std::string> kHostname{"hostname", "hostname 2>/dev/null || cat /proc/sys/kernel/hostname", FirstLineOf};
const Fact<OsRelease> kOsRelease{"os-release", "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release",
                                 ParseOsRelease};
const Fact<std::string> kKernel{"kernel", Cmd("uname").arg("-r").str(), FirstLineOf};
const Fact<std::string> kArch{"arch", Cmd("uname").arg("-m").str(), FirstLineOf};
const Fact<std::optional<double>> kUptime{"uptime", Cmd("cat").arg("/proc/uptime").str(), ParseUptime};
const Fact<std::optional<LoadAvg>> kLoadavg{"loadavg", Cmd("cat").arg("/proc/loadavg").str(), ParseLoadavg};
const Fact<bool> kRebootRequired{"reboot-required",
                                 "if [ -e /var/run/reboot-required ]; then echo yes; else echo no; fi",
                                 [](std::string_view t) { return Trim(t) == "yes"; }};
const Fact<CpuInfo> kCpuinfo{
    "cpuinfo",
    Cmd("grep").arg("-E").arg("^(processor|model name|cpu model|Hardware|Model|physical id|core id|cpu cores)[[:space:]]*:")
        .arg("/proc/cpuinfo").str(),
    ParseCpuinfo};
const Fact<MemInfo> kMeminfo{
    "meminfo", Cmd("grep").arg("-E").arg("^(MemTotal|MemAvailable|SwapTotal|SwapFree):").arg("/proc/meminfo").str(),
    ParseMeminfo};
const Fact<std::string> kRootFsType{"root-fs-type", Cmd("stat").arg("-f").arg("-c").arg("%T").arg("/").str(),
                                    FirstLineOf};
const Fact<std::optional<DfRow>> kRootDf{"root-df", Cmd("df").arg("-Pk").arg("/").str(), ParseDf};
// nvidia-smi prints its failures ("couldn't communicate with the NVIDIA driver") on stdout: kept with 2>&1 so
// the first line says why; the parsers skip it.
const Fact<std::vector<GpuInfo>> kNvidiaGpus{
    "nvidia-gpus",
    "command -v nvidia-smi >/dev/null 2>&1 || exit 127\n" + kTimeout +
        "$T nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total,memory.used,utilization.gpu,"
        "temperature.gpu "
        "--format=csv,noheader,nounits 2>&1",
    ParseNvidiaSmiGpus};
// The apps (at most 400 lines), then who runs them: ps of their pids; exit = nvidia-smi's.
const Fact<GpuApps> kGpuApps{
    "gpu-apps",
    "command -v nvidia-smi >/dev/null 2>&1 || exit 127\n" + kTimeout +
        "apps=$($T nvidia-smi --query-compute-apps=gpu_uuid,pid,used_memory,process_name "
        "--format=csv,noheader,nounits 2>&1); rc=$?\n"
        "printf '%s\\n' \"$apps\" | head -n 400\n"
        "pids=$(printf '%s\\n' \"$apps\" | head -n 400 | awk -F', *' '$2 ~ /^[0-9]+$/ { printf \"%s%s\", s, $2; s = \",\" }')\n"
        "[ -z \"$pids\" ] || ps -o pid=,user=,etimes= -p \"$pids\"\n"
        "exit $rc",
    ParseGpuApps};
const Fact<std::vector<PciDevice>> kPciDisplay{
    "pci-display",
    "if command -v lspci >/dev/null 2>&1; then lspci -nn 2>&1 | grep -E '\\[03[0-9a-fA-F]{2}\\]: '\n"
    "else for d in /sys/bus/pci/devices/*; do [ -r \"$d/class\" ] || continue; read c < \"$d/class\"; "
    "case $c in 0x03*) read v < \"$d/vendor\"; read i < \"$d/device\"; printf '%s %s %s %s\\n' \"${d##*/}\" "
    "\"$c\" \"$v\" \"$i\";; esac; done; fi\nexit 0",
    ParsePciDisplay};
const Fact<std::string> kDockerVersion{
    "docker-version",
    "command -v docker >/dev/null 2>&1 || exit 127\n" + kTimeout + "$T docker version --format '{{.Server.Version}}' 2>&1",
    FirstLineOf};
const Fact<std::vector<Container>> kDockerPs{
    "docker-ps", "command -v docker >/dev/null 2>&1 || exit 127\n" + kTimeout + "$T docker ps --format '{{json .}}' 2>&1",
    ParseDockerPs};
const Fact<std::optional<nlohmann::json>> kLabfleetState{
    "labfleet-state",
    "[ -e /var/lib/labfleet/state.json ] || exit 0\n" + Cmd("cat").arg("/var/lib/labfleet/state.json").str(),
    ParseJson};

std::vector<Probe> FactsProbes(const BusySettings& busy) {
  return {kHostname.probe(),    kOsRelease.probe(),  kKernel.probe(),        kArch.probe(),
          kUptime.probe(),      kLoadavg.probe(),    kRebootRequired.probe(),
          kCpuinfo.probe(),     kMeminfo.probe(),    kRootFsType.probe(),
          kRootDf.probe(),      kNvidiaGpus.probe(), kGpuApps.probe(),       kPciDisplay.probe(),
          kDockerVersion.probe(), kDockerPs.probe(), BusyFact(busy).probe(), kLabfleetState.probe()};
}

NodeFacts FactsFromResults(const ProbeResults& r, const BusySettings& busy) {
  NodeFacts f;
  f.reachable = true;
  auto first_words = [](const ProbeOutput& o) {
    std::string why = FirstLine(o.out);
    return why.empty() ? FirstLine(o.err) : why;
  };
  f.hostname = r.fact(kHostname);
  f.os = r.fact(kOsRelease);
  f.kernel = r.fact(kKernel);
  f.arch = r.fact(kArch);
  f.uptime_s = r.fact(kUptime);
  f.load = r.fact(kLoadavg);
  f.reboot_required = r.fact(kRebootRequired);
  f.cpu = r.fact(kCpuinfo);
  f.mem = r.fact(kMeminfo);
  f.root_fs_type = r.fact(kRootFsType);
  f.root_df = r.fact(kRootDf);
  f.pci_display = r.fact(kPciDisplay);
  const ProbeOutput* smi = FindProbe(r, kNvidiaGpus.name);
  if (smi && smi->exit_code == 0) {
    f.gpu_source = "nvidia-smi";
    f.gpus = r.fact(kNvidiaGpus);
    if (const ProbeOutput* apps = FindProbe(r, kGpuApps.name); apps && apps->exit_code == 0) {
      const GpuApps& ga = r.fact(kGpuApps);
      f.gpu_processes = ga.apps;
      for (auto& proc : f.gpu_processes) {
        for (const auto& g : f.gpus)
          if (g.uuid == proc.gpu_uuid) proc.gpu_index = g.index;
        for (const auto& e : ga.ps)
          if (e.pid == proc.pid) {
            proc.user = e.user;
            proc.elapsed_s = e.elapsed_s;
          }
      }
    }
  } else {
    if (smi && smi->exit_code != 127)
      f.nvidia_smi_error = first_words(*smi) + " (exit " + std::to_string(smi->exit_code) + ")";
    f.gpu_source = f.pci_display.empty() ? "none" : "lspci";
  }
  if (const ProbeOutput* dv = FindProbe(r, kDockerVersion.name); dv && dv->exit_code != 127) {
    f.docker_installed = true;
    if (dv->exit_code == 0)
      f.docker_version = r.fact(kDockerVersion);
    else
      f.docker_error = first_words(*dv);
    if (const ProbeOutput* ps = FindProbe(r, kDockerPs.name); ps && ps->exit_code == 0) f.containers = r.fact(kDockerPs);
  }
  if (FindProbe(r, kBusyProbeKey)) {
    f.busy = r.fact(BusyFact(busy));
    f.busy_probed = true;
  }
  if (const ProbeOutput* st = FindProbe(r, kLabfleetState.name)) {
    if (st->exit_code != 0) {
      f.state_error = FirstLine(st->err);
      if (f.state_error.empty()) f.state_error = "cannot read /var/lib/labfleet/state.json";
    } else if (!FirstLine(st->out).empty()) {
      if (const auto& j = r.fact(kLabfleetState))
        f.state = *j;
      else
        f.state_error = "/var/lib/labfleet/state.json is not valid JSON";
    }
  }
  return f;
}

NodeFacts GatherFacts(Transport& t, const BusySettings& busy) {
  const std::vector<Probe> probes = FactsProbes(busy);
  const std::string nonce = NewNonce();
  RunResult r = t.run_script(BuildProbeScript(probes, nonce));
  try {
    return FactsFromResults(ParseProbeOutput(r.out, probes, nonce), busy);
  } catch (const std::exception& e) {
    NodeFacts f = FactsFromResults({}, busy);
    f.error_kind = "script";
    f.error = "the facts script stopped early: " + std::string(e.what()) + " (exit " + std::to_string(r.exit_code) +
              (r.err.empty() ? std::string() : ": " + FirstLine(r.err)) + "); run `labfleet facts` again";
    return f;
  }
}

int NodeFacts::pci_nvidia_count() const {
  return int(std::count_if(pci_display.begin(), pci_display.end(), [](const PciDevice& d) { return d.nvidia(); }));
}

int NodeFacts::gpu_count() const {
  if (gpu_source == "nvidia-smi") return int(gpus.size());
  return pci_nvidia_count();
}

std::string NodeFacts::gpu_model() const {
  std::set<std::string> names;
  if (gpu_source == "nvidia-smi") {
    for (const auto& g : gpus) names.insert(g.name);
  } else {
    for (const auto& d : pci_display)
      if (d.nvidia()) names.insert(d.description);
  }
  if (names.empty()) return "";
  if (names.size() == 1) return *names.begin();
  return "mixed";
}

std::string NodeFacts::gpu_driver() const {
  std::set<std::string> d;
  for (const auto& g : gpus) d.insert(g.driver);
  if (d.empty()) return "";
  std::string out;
  for (const auto& x : d) out += (out.empty() ? "" : ",") + x;
  return out;
}

nlohmann::json NodeFacts::ToJson() const {
  using nlohmann::json;
  auto opt = [](long long v) -> json { return v < 0 ? json(nullptr) : json(v); };
  json j;
  j["node"] = node;
  j["reachable"] = reachable;
  j["ok"] = reachable && error.empty();
  if (!error.empty()) {
    j["error"] = error;
    j["error_kind"] = error_kind;
  }
  if (!reachable) return j;
  j["hostname"] = hostname;
  j["os"] = {{"id", os.id}, {"id_like", os.id_like}, {"name", os.name}, {"version_id", os.version_id},
             {"version_codename", os.version_codename}, {"pretty_name", os.pretty_name}};
  j["kernel"] = kernel;
  j["arch"] = arch;
  j["uptime_s"] = uptime_s ? json(*uptime_s) : json(nullptr);
  j["load"] = load ? json{{"load1", load->load1}, {"load5", load->load5}, {"load15", load->load15}} : json(nullptr);
  j["reboot_required"] = reboot_required;
  j["cpu"] = {{"model", cpu.model}, {"logical", cpu.logical}, {"cores", cpu.cores}, {"sockets", cpu.sockets}};
  j["memory"] = {{"total_kib", opt(mem.total_kib)}, {"available_kib", opt(mem.available_kib)},
                 {"swap_total_kib", opt(mem.swap_total_kib)}, {"swap_free_kib", opt(mem.swap_free_kib)}};
  json root = {{"type", root_fs_type}, {"btrfs", root_fs_type == "btrfs"}};
  if (root_df) {
    root["device"] = root_df->filesystem;
    root["size_kib"] = root_df->size_kib;
    root["used_kib"] = root_df->used_kib;
    root["avail_kib"] = root_df->avail_kib;
  }
  j["root_fs"] = root;
  json g = json::object();
  g["source"] = gpu_source;
  g["count"] = gpu_count();
  g["expected"] = gpus_expected < 0 ? json(nullptr) : json(gpus_expected);
  g["count_mismatch"] = gpu_count_mismatch();
  g["model"] = gpu_model();
  g["driver"] = gpu_driver();
  if (!nvidia_smi_error.empty()) g["nvidia_smi_error"] = nvidia_smi_error;
  g["devices"] = json::array();
  for (const auto& x : gpus)
    g["devices"].push_back({{"index", x.index}, {"name", x.name}, {"uuid", x.uuid}, {"driver", x.driver},
                            {"memory_total_mib", opt(x.memory_total_mib)}, {"memory_used_mib", opt(x.memory_used_mib)},
                            {"utilization_pct", opt(x.utilization_pct)}, {"temperature_c", opt(x.temperature_c)}});
  g["processes"] = json::array();
  for (const auto& p : gpu_processes)
    g["processes"].push_back({{"gpu_index", p.gpu_index < 0 ? json(nullptr) : json(p.gpu_index)},
                              {"gpu_uuid", p.gpu_uuid}, {"pid", p.pid}, {"used_memory_mib", opt(p.used_memory_mib)},
                              {"process_name", p.process_name}, {"user", p.user}, {"elapsed_s", opt(p.elapsed_s)}});
  g["pci_display"] = json::array();
  for (const auto& d : pci_display)
    g["pci_display"].push_back({{"slot", d.slot}, {"class", d.class_name}, {"class_id", d.class_id},
                                {"vendor_id", d.vendor_id}, {"device_id", d.device_id}, {"description", d.description}});
  g["pci_nvidia_count"] = pci_nvidia_count();
  j["gpus"] = g;
  json d = {{"installed", docker_installed}, {"version", docker_version}};
  if (!docker_error.empty()) d["error"] = docker_error;
  d["containers"] = json::array();
  for (const auto& c : containers)
    d["containers"].push_back({{"id", c.id}, {"image", c.image}, {"name", c.name}, {"status", c.status}});
  j["docker"] = d;
  j["busy"] = busy_probed ? busy.ToJson() : json(nullptr);
  j["labfleet_state"] = state ? *state : json(nullptr);
  if (!state_error.empty()) j["labfleet_state_error"] = state_error;
  return j;
}

std::string KindName(TransportError::Kind k) {
  switch (k) {
    case TransportError::Kind::Connect: return "connect";
    case TransportError::Kind::HostKey: return "host-key";
    case TransportError::Kind::Auth: return "auth";
    case TransportError::Kind::Timeout: return "timeout";
    case TransportError::Kind::Lost: return "lost";
    default: return "other";
  }
}

}  // namespace labfleet
