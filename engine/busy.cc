#include <nlohmann/json.hpp>

#include "engine/schema.h"
#include "engine/busy.h"

#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "engine/text.h"
#include "engine/inventory.h"
#include "engine/module.h"
#include "engine/settings_layers.h"
#include "engine/shell.h"
#include "engine/text.h"

namespace labfleet {
namespace {

const std::vector<std::string> kBusyKeys = {"command", "busy_if", "device_glob", "timeout", "cpu_jobs"};
constexpr size_t kLineMax = 400;  // the probe cuts every line it passes on to this many bytes

// Processes of system users (uid < 1000) with these names hold GPU device files open without being jobs:
// the persistence daemon, monitoring, the display server. A user's process of the same name is still a job.
const std::set<std::string> kSystemHolders = {"nvidia-persistenced", "nvidia-smi", "nv-hostengine", "dcgm-exporter",
                                              "Xorg", "Xwayland", "X"};

bool GlobOk(const std::string& g) {
  if (g.rfind("/dev/", 0) != 0 || g.size() > 200 || g.find("..") != std::string::npos) return false;
  for (char c : g)
    if (!std::isalnum((unsigned char)c) && std::string_view("/_.-*?[]!").find(c) == std::string_view::npos)
      return false;
  return true;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    out.push_back(std::move(line));
    pos = nl + 1;
  }
  return out;
}

std::optional<long long> Digits(const std::string& s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  for (char c : s)
    if (!std::isdigit((unsigned char)c)) return std::nullopt;
  return std::stoll(s);
}

std::optional<double> Number(std::string s) {
  if (!s.empty() && s.back() == '%') s.pop_back();
  if (s.empty() || s.size() > 20) return std::nullopt;
  bool dot = false;
  for (char c : s) {
    if (c == '.' && !dot) dot = true;
    else if (!std::isdigit((unsigned char)c)) return std::nullopt;
  }
  if (s == ".") return std::nullopt;
  return std::stod(s);
}

// `line` after its first `n` blank-separated words.
std::string Tail(const std::string& line, int n) {
  size_t pos = line.find_first_not_of(" \t");
  for (int i = 0; i < n && pos != std::string::npos; ++i) {
    pos = line.find_first_of(" \t", pos);
    if (pos != std::string::npos) pos = line.find_first_not_of(" \t", pos);
  }
  return pos == std::string::npos ? "" : line.substr(pos);
}

std::string Basename(const std::string& args) {
  std::string first = args.substr(0, args.find(' '));
  size_t slash = first.rfind('/');
  return slash == std::string::npos ? first : first.substr(slash + 1);
}

// A container id in a cgroup path: docker (cgroupfs "/docker/ID", systemd "docker-ID.scope"), containerd /
// CRI ("cri-containerd-ID.scope", "/kubepods/.../ID"), podman ("libpod-ID.scope"); the first 12 hex digits.
std::string ContainerOfCgroup(const std::string& path) {
  static const char* kinds[] = {"docker", "containerd", "libpod", "crio", "kubepods"};
  bool known = false;
  for (const char* k : kinds) known |= path.find(k) != std::string::npos;
  if (!known) return "";
  size_t run = 0;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i < path.size() && std::isxdigit((unsigned char)path[i]) && !std::isupper((unsigned char)path[i])) {
      ++run;
      continue;
    }
    if (run == 64) return path.substr(i - 64, 12);
    run = 0;
  }
  return "";
}

struct Source {
  bool present = false;  // a "TAG= ..." status line came
  std::string status;    // "0", "9", "absent"
  std::vector<std::string> lines;
  bool more = false;     // the probe cut the output ("TAG+ more lines")
  int exit_code() const { return Digits(status).has_value() ? int(*Digits(status)) : -1; }
  std::string first_line() const {
    for (const auto& l : lines)
      if (!TrimChars(l, " \t").empty()) return EscapeControl(TrimChars(l, " \t"));
    return "";
  }
};

std::string Failed(const std::string& what, const Source& s, int timeout_s) {
  int rc = s.exit_code();
  if (rc == 124 || rc == 137) return what + " did not answer within " + std::to_string(timeout_s) + " s";
  std::string msg = what + " failed (exit " + s.status + ")";
  std::string first = s.first_line();
  return first.empty() ? msg : msg + ": " + first;
}

}  // namespace

std::optional<long long> ParseDurationSeconds(const std::string& text) {
  std::string t = TrimChars(text, " ");
  if (t.empty()) return std::nullopt;
  long long mult = 1;
  switch (t.back()) {
    case 's': mult = 1; t.pop_back(); break;
    case 'm': mult = 60; t.pop_back(); break;
    case 'h': mult = 3600; t.pop_back(); break;
    case 'd': mult = 86400; t.pop_back(); break;
    default: break;
  }
  auto n = Digits(t);
  if (!n || *n > (1LL << 40)) return std::nullopt;
  return *n * mult;
}

std::string EscapeControl(const std::string& s, size_t max) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max) {
      out += "...";
      break;
    }
    if (c == '\t') out += "\\t";
    else if (c == '\\') out += "\\\\";
    else if (c < 0x20 || c == 0x7f) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

std::string HumanDuration(long long s) {
  if (s >= 2 * 86400) return std::to_string(s / 86400) + " d";
  if (s >= 3600) return std::to_string(s / 3600) + " h";
  if (s >= 60) return std::to_string(s / 60) + " min";
  return std::to_string(s) + " s";
}

BusySettings ParseBusySettings(const Value& v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  BusySettings s;
  MapReader r(v, "busy settings", v.loc(), out, kBusyKeys);
  // "" turns off a command inherited from the defaults or a group.
  if (auto c = r.str("command")) s.command = TrimChars(*c, " \t\n").empty() ? "" : *c;
  if (r.get("busy_if"))
    if (auto b = r.one_of("busy_if", {"output", "exit"})) s.busy_if_exit = *b == "exit";
  if (const Value* g = r.get("device_glob")) {
    std::vector<std::pair<std::string, Location>> globs;
    if (g->is_scalar()) {
      globs.push_back({g->str(), g->loc()});
    } else if (g->is_seq()) {
      for (const auto& item : g->items())
        if (item.is_scalar())
          globs.push_back({item.str(), item.loc()});
        else
          out.error(item.loc(), "wrong-type", "items of 'device_glob' of busy settings must be strings");
    } else {
      out.error(g->loc(), "wrong-type", "'device_glob' of busy settings must be a glob or a list of globs");
    }
    std::vector<std::string> ok;
    for (const auto& [glob, where] : globs) {
      if (GlobOk(glob))
        ok.push_back(glob);
      else
        out.error(where, "busy-device-glob",
                  "busy.device_glob '" + EscapeControl(glob) +
                      "' must be a glob of device files under /dev/ (letters, digits, / _ . - * ? [ ] !), e.g. "
                      "\"/dev/nvidia[0-9]*\" or \"/dev/dri/renderD*\"");
    }
    if (!ok.empty() || (g->is_seq() && g->items().empty())) s.device_globs = ok;
  }
  if (const Value* t = r.get("timeout")) {
    auto secs = t->is_scalar() ? ParseDurationSeconds(t->str()) : std::nullopt;
    if (!secs || *secs < 1 || *secs > 300)
      out.error(t->loc(), "busy-timeout",
                "busy.timeout must be a duration between 1s and 300s (e.g. 10s), got " + DescribeValue(*t));
    else
      s.timeout_s = int(*secs);
  }
  if (const Value* cj = r.map("cpu_jobs")) {
    s.cpu_jobs = true;
    MapReader c(*cj, "busy.cpu_jobs", r.key_loc("cpu_jobs"), out, {"min_age", "min_cpu"});
    if (const Value* a = c.get("min_age")) {
      auto secs = a->is_scalar() ? ParseDurationSeconds(a->str()) : std::nullopt;
      if (!secs)
        out.error(a->loc(), "busy-duration",
                  "busy.cpu_jobs.min_age must be a duration such as 30m, 2h, 90s or 1d, got " + DescribeValue(*a));
      else
        s.cpu_min_age_s = *secs;
    }
    if (const Value* p = c.get("min_cpu")) {
      auto pct = p->is_scalar() ? Number(p->str()) : std::nullopt;
      if (!pct || *pct > 100000)
        out.error(p->loc(), "busy-cpu-percent",
                  "busy.cpu_jobs.min_cpu must be a CPU percentage such as 50 or 50% (ps %CPU: 100 = one core), got " +
                      DescribeValue(*p));
      else
        s.cpu_min_pct = *pct;
    }
  }
  return s;
}

BusySettings BusySettingsOf(const Value& settings) {
  const Value* b = settings.is_map() ? settings.find("busy") : nullptr;
  return b && !b->is_null() ? ParseBusySettings(*b) : BusySettings{};
}

std::string BusyProbeCommand(const BusySettings& s) {
  const std::string to = std::to_string(s.timeout_s);
  Script sh;
  // lf_run TAG CMD...: CMD's output (stderr too) as "TAG| line" (200 lines of at most 400 bytes), then
  // "TAG= EXIT". The status is the last line the pipe carries, printed after CMD ended: output cannot forge it.
  sh.raw("lf_run() { lf_t=$1; shift; { \"$@\" </dev/null 2>&1; printf '\\n%s\\n' \"$?\"; } | awk -v t=\"$lf_t\" "
         "'NR > 1 && p != \"\" { if (++n <= 200) print t \"| \" substr(p, 1, 400); else if (n == 201) print t \"+ more "
         "lines\" } { p = $0 } END { print t \"= \" p }'; }");
  sh.raw("T=; command -v timeout >/dev/null 2>&1 && T='timeout -k 2 " + to + "'");
  // 1. nvidia-smi (the facts parser's query, so one parser reads both).
  sh.raw("lf_smi='smi= absent'");
  sh.raw("command -v nvidia-smi >/dev/null 2>&1 && lf_smi=$(lf_run smi $T nvidia-smi "
         "--query-compute-apps=gpu_uuid,pid,used_memory,process_name --format=csv,noheader,nounits)");
  sh.raw("printf '%s\\n' \"$lf_smi\"");
  sh.raw("if [ -e /proc/driver/nvidia/version ]; then echo 'module= loaded'; else echo 'module= absent'; fi");
  // 2. Processes holding a device file open: readlink of the kernel's /proc/PID/fd links (find -lname never
  // follows them), raw "/proc/PID/fd/N TARGET" lines.
  Cmd find("find");
  find.raw("/proc/[0-9]*/fd").arg("-maxdepth").arg("1").arg("-type").arg("l").raw("\\(");
  for (size_t i = 0; i < s.device_globs.size(); ++i) {
    if (i) find.arg("-o");
    find.arg("-lname").arg(s.device_globs[i]);
  }
  find.raw("\\)").arg("-printf").arg("%p %l\\n").raw("2>/dev/null");
  if (s.device_globs.empty()) {
    sh.raw("lf_fd='fd= none'");
  } else {
    sh.raw("if command -v find >/dev/null 2>&1; then lf_fd=$(" + find.str() +
           " | awk 'NR <= 4000 { print \"fd| \" substr($0, 1, 400) }'; echo 'fd= 0'); else lf_fd='fd= absent'; fi");
  }
  sh.raw("printf '%s\\n' \"$lf_fd\"");
  // 3. Who runs them (ps) and in which container (cgroup), for at most 64 pids.
  sh.raw("lf_pids=$(printf '%s\\n' \"$lf_smi\" \"$lf_fd\" | awk '/^smi\\| / { n = split(substr($0, 6), f, \", \"); "
         "if (n >= 2 && f[2] ~ /^[0-9]+$/) print f[2]; next } /^fd\\| \\/proc\\/[0-9]+\\/fd\\// { split($2, a, \"/\"); "
         "print a[3] }' | sort -un | head -n 64 | tr '\\n' ' ')");
  sh.raw("if [ -n \"$lf_pids\" ]; then");
  sh.raw("  ps -o pid=,uid=,user:32=,etimes=,pcpu=,args= -p \"$(echo $lf_pids | tr ' ' ',')\" 2>/dev/null | "
         "awk '{ print \"ps| \" substr($0, 1, 400) }'");
  sh.raw("  for p in $lf_pids; do awk -v p=\"$p\" 'NR <= 16 { print \"cgroup| \" p \" \" substr($0, 1, 400) }' "
         "\"/proc/$p/cgroup\" 2>/dev/null; done");
  sh.raw("fi");
  // 4. Containers: docker ps; when it fails, the cgroups of all processes say whether any container runs.
  sh.raw("if command -v docker >/dev/null 2>&1; then");
  sh.raw("  lf_d=$(lf_run docker $T docker ps --format '{{.ID}} {{.Names}}'); printf '%s\\n' \"$lf_d\"");
  sh.raw("  case $lf_d in *'docker= 0') ;; *) cat /proc/[0-9]*/cgroup 2>/dev/null | "
         "grep -o -E '(docker|containerd|libpod)[-/:][0-9a-f]{64}' | sort -u | head -n 100 | "
         "awk '{ print \"ctr| \" $0 }'; echo 'ctr= 0';; esac");
  sh.raw("else echo 'docker= absent'; fi");
  // 5. The lab's own signal: trusted inventory text, run as a shell command by design.
  if (!s.command.empty()) {
    sh.raw("lf_cmd=" + ShellQuote(s.command));
    sh.raw("lf_run cmd $T sh -c \"$lf_cmd\"");
  }
  // 6. Long CPU jobs of non-system users.
  if (s.cpu_jobs) {
    char pct[32];
    snprintf(pct, sizeof pct, "%g", s.cpu_min_pct);
    sh.raw("lf_ps=$(ps -e -o pid=,uid=,user:32=,etimes=,pcpu=,args= 2>/dev/null); lf_rc=$?");
    sh.raw("printf '%s\\n' \"$lf_ps\" | awk -v a=" + std::to_string(s.cpu_min_age_s) + " -v c=" + pct +
           " '$2 >= 1000 && $2 != 65534 && $4 >= a && $5 >= c { if (++n <= 100) print \"cpu| \" substr($0, 1, 400) }'");
    sh.raw("echo \"cpu= $lf_rc\"");
  }
  sh.raw("echo 'end='");
  return sh.str();
}

Fact<BusyInfo> BusyFact(const BusySettings& s) {
  return {kBusyProbeKey, BusyProbeCommand(s), [s](std::string_view out) { return ParseBusy(std::string(out), s); }, false};
}

std::vector<GpuProcess> ParseNvidiaSmiApps(std::string_view text) {
  std::vector<GpuProcess> out;
  for (auto raw : LineViews(text)) {
    auto f = SplitNvidiaCsv(raw);
    if (f.size() < 4 || f[0].rfind("GPU-", 0) != 0) continue;
    auto pid = ParseInteger(f[1]);
    if (!pid || *pid <= 0) continue;
    GpuProcess p;
    p.gpu_uuid = f[0];
    p.pid = *pid;
    p.used_memory_mib = ParseInteger(f[2]).value_or(-1);
    // a process name may itself contain commas
    p.process_name = f[3];
    for (size_t i = 4; i < f.size(); ++i) p.process_name += ", " + f[i];
    out.push_back(std::move(p));
  }
  return out;
}

BusyInfo ParseBusy(const std::string& text, const BusySettings& s) {
  BusyInfo b;
  std::map<std::string, Source> src;
  bool ended = false;
  for (const auto& line : Lines(text)) {
    size_t sp = line.find(' ');
    if (line == "end=") {
      ended = true;
      continue;
    }
    if (sp == std::string::npos || sp < 2) continue;
    std::string tag = line.substr(0, sp - 1);
    char kind = line[sp - 1];
    if (tag.empty() || !std::all_of(tag.begin(), tag.end(), [](char c) { return std::islower((unsigned char)c); }))
      continue;
    Source& so = src[tag];
    if (kind == '|') so.lines.push_back(line.substr(sp + 1));
    else if (kind == '=') so.present = true, so.status = line.substr(sp + 1);
    else if (kind == '+') so.more = true;
  }
  if (!ended) b.unknown.push_back("the busy probe's output was cut short");

  // Who runs which pid: "PID UID USER ETIMES PCPU ARGS".
  struct Ps {
    long long uid = -1, secs = 0;
    std::string user, args;
  };
  std::map<long, Ps> ps;
  for (const auto& l : src["ps"].lines) {
    auto w = SplitWords(l, " \t");
    if (w.size() < 6) continue;
    auto pid = Digits(w[0]), uid = Digits(w[1]), et = Digits(w[3]);
    if (!pid || !uid || !et) continue;
    ps[long(*pid)] = {*uid, *et, w[2], EscapeControl(Tail(l, 5))};
  }
  std::map<long, std::string> container_of;
  for (const auto& l : src["cgroup"].lines) {
    size_t sp = l.find(' ');
    auto pid = Digits(l.substr(0, sp));
    if (!pid || sp == std::string::npos) continue;
    std::string id = ContainerOfCgroup(l.substr(sp + 1));
    if (!id.empty()) container_of[long(*pid)] = id;
  }

  std::map<long, BusyJob> jobs;  // by pid, in pid order
  auto job = [&](long pid) -> BusyJob& {
    BusyJob& j = jobs[pid];
    j.pid = pid;
    return j;
  };

  // 1. nvidia-smi.
  const Source& smi = src["smi"];
  bool module_loaded = src["module"].status == "loaded";
  if (!smi.present) {
    if (ended) b.unknown.push_back("GPU use unknown: the busy probe printed no nvidia-smi status");
  } else if (smi.status != "absent") {
    if (smi.status == "0") {
      for (const auto& l : smi.lines) {
        std::string t = TrimChars(l, " \t");
        if (t.empty() || t == "No running processes found") continue;
        auto apps = ParseNvidiaSmiApps(t);
        if (apps.size() == 1) {
          BusyJob& j = job(long(apps[0].pid));
          j.nvidia_smi = true;
          if (j.name.empty()) j.name = EscapeControl(apps[0].process_name);
        } else if (t.rfind("WARNING", 0) == 0) {
          b.notes.push_back("nvidia-smi: " + EscapeControl(t));
        } else {
          b.unknown.push_back("GPU use unknown: nvidia-smi printed a line labfleet does not understand: " +
                              EscapeControl(t));
          break;
        }
      }
      if (smi.more) b.unknown.push_back("GPU use unknown: nvidia-smi printed more than 200 lines");
    } else if (!module_loaded) {
      // No NVIDIA kernel module is loaded: nothing can be using an NVIDIA GPU, whatever nvidia-smi says.
      b.notes.push_back(Failed("nvidia-smi", smi, s.timeout_s) +
                        "; no NVIDIA kernel module is loaded (/proc/driver/nvidia/version), so no GPU job can run");
    } else {
      b.unknown.push_back("GPU use unknown: " + Failed("nvidia-smi", smi, s.timeout_s));
    }
  }

  // 2. Device files held open (the witness that needs no NVML). The glob is checked again here.
  const Source& fd = src["fd"];
  for (const auto& l : fd.lines) {
    // "/proc/456/fd/11 /dev/nvidia0"
    if (l.rfind("/proc/", 0) != 0) continue;
    size_t sp = l.find(' ');
    if (sp == std::string::npos) continue;
    auto parts = SplitWords(l.substr(0, sp), "/");
    if (parts.size() != 4 || parts[0] != "proc" || parts[2] != "fd") continue;
    auto pid = Digits(parts[1]);
    if (!pid || !Digits(parts[3])) continue;
    std::string target = l.substr(sp + 1);
    bool match = false;
    for (const auto& g : s.device_globs) match |= fnmatch(g.c_str(), target.c_str(), 0) == 0;
    if (!match) continue;
    BusyJob& j = job(long(*pid));
    if (std::find(j.devices.begin(), j.devices.end(), target) == j.devices.end()) j.devices.push_back(target);
  }
  if (fd.status == "absent")
    b.notes.push_back("find is not installed: processes holding GPU device files open were not looked for");

  for (auto& [pid, j] : jobs) {
    auto it = ps.find(pid);
    if (it != ps.end()) {
      j.user = it->second.user;
      j.seconds = it->second.secs;
      if (!it->second.args.empty()) j.name = it->second.args;
      // The persistence daemon, monitoring and the display server hold device files without being jobs; only
      // when they run as a system user (a user cannot take a uid below 1000) and nvidia-smi did not list them.
      if (!j.nvidia_smi && it->second.uid < 1000 && kSystemHolders.count(Basename(it->second.args))) continue;
    } else if (j.user.empty()) {
      j.user = "?";
    }
    if (auto c = container_of.find(pid); c != container_of.end()) j.container = c->second;
    b.gpu_jobs.push_back(j);
  }

  // 3. Containers.
  const Source& docker = src["docker"];
  std::map<std::string, std::string> names;  // 12-hex id -> name
  if (docker.present && docker.status == "0") {
    for (const auto& l : docker.lines) {
      auto w = SplitWords(l, " \t");
      if (w.size() != 2) {
        if (!TrimChars(l, " \t").empty())
          b.unknown.push_back("containers unknown: docker ps printed a line labfleet does not understand: " +
                              EscapeControl(l));
        continue;
      }
      b.containers.push_back(EscapeControl(w[1]));
      names[w[0].substr(0, 12)] = EscapeControl(w[1]);
    }
    if (docker.more) b.unknown.push_back("containers unknown: docker ps printed more than 200 lines");
  } else if (docker.present && docker.status != "absent") {
    std::set<std::string> ids;
    for (const auto& l : src["ctr"].lines) {
      std::string id = ContainerOfCgroup(l);
      if (!id.empty()) ids.insert(id);
    }
    bool daemon_down = docker.first_line().find("Cannot connect to the Docker daemon") != std::string::npos &&
                       docker.exit_code() != 124 && docker.exit_code() != 137;
    if (!ids.empty()) {
      for (const auto& id : ids) b.containers.push_back(id);
      b.notes.push_back(Failed("docker ps", docker, s.timeout_s) + "; containers found by their processes' cgroups");
    } else if (daemon_down && src["ctr"].present) {
      b.notes.push_back(Failed("docker ps", docker, s.timeout_s) + "; no process runs in a container");
    } else {
      b.unknown.push_back("containers unknown: " + Failed("docker ps", docker, s.timeout_s));
    }
  }
  for (auto& j : b.gpu_jobs)
    if (auto n = names.find(j.container); n != names.end()) j.container = n->second;

  // 4. busy.command.
  if (!s.command.empty()) {
    const Source& cmd = src["cmd"];
    std::string shown;
    size_t n = 0;
    for (const auto& l : cmd.lines) {
      if (TrimChars(l, " \t").empty()) continue;
      if (++n > 3) break;
      shown += (shown.empty() ? "" : " | ") + EscapeControl(l, 160);
    }
    if (n > 3 || cmd.more) shown += " | ...";
    int rc = cmd.exit_code();
    if (!cmd.present) {
      if (ended) b.unknown.push_back("busy.command did not report");
    } else if (rc == 124 || rc == 137 || rc == 126 || rc == 127 || rc < 0 || (!s.busy_if_exit && rc != 0)) {
      b.unknown.push_back("busy.command unknown: " + Failed("busy.command", cmd, s.timeout_s));
    } else if (s.busy_if_exit ? rc != 0 : n > 0) {
      b.command_busy = true;
      b.command_output = shown.empty() ? "(exit " + cmd.status + ")" : shown;
    }
  }

  // 5. Long CPU jobs: "PID UID USER ETIMES PCPU ARGS", filtered again here.
  if (s.cpu_jobs) {
    const Source& cpu = src["cpu"];
    if (!cpu.present || cpu.status != "0") {
      if (ended) b.unknown.push_back("CPU use unknown: ps failed (exit " + (cpu.present ? cpu.status : "?") + ")");
    } else {
      for (const auto& l : cpu.lines) {
        auto w = SplitWords(l, " \t");
        if (w.size() < 6) continue;
        auto pid = Digits(w[0]), uid = Digits(w[1]), et = Digits(w[3]);
        auto pct = Number(w[4]);
        if (!pid || !uid || !et || !pct) continue;
        if (*uid < 1000 || *uid == 65534 || *et < s.cpu_min_age_s || *pct < s.cpu_min_pct) continue;
        BusyJob j;
        j.pid = long(*pid);
        j.user = w[2];
        j.seconds = *et;
        j.cpu_pct = *pct;
        j.name = EscapeControl(Tail(l, 5));
        b.cpu_jobs.push_back(std::move(j));
      }
    }
  }
  return b;
}

std::string BusyInfo::describe() const {
  std::vector<std::string> parts;
  auto jobs = [&](const std::vector<BusyJob>& js, const char* what) {
    if (js.empty()) return;
    std::string out = std::to_string(js.size()) + " " + what + (js.size() == 1 ? "" : "s") + " running (";
    for (size_t i = 0; i < js.size(); ++i) {
      out += (i ? "; " : "") + js[i].user + ": pid " + std::to_string(js[i].pid);
      if (!js[i].container.empty()) out += " in container " + js[i].container;
      out += ", " + HumanDuration(js[i].seconds);
    }
    parts.push_back(out + ")");
  };
  jobs(gpu_jobs, "GPU job");
  if (!containers.empty())
    parts.push_back(std::to_string(containers.size()) + " container" + (containers.size() == 1 ? "" : "s") +
                    " running (" + Join(containers, ", ") + ")");
  jobs(cpu_jobs, "long CPU job");
  if (command_busy) parts.push_back("busy.command reports work: " + command_output);
  for (const auto& u : unknown) parts.push_back(u);
  return Join(parts, "; ");
}

nlohmann::json BusyInfo::ToJson() const {
  auto jobs = [](const std::vector<BusyJob>& js) {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& j : js) {
      nlohmann::json o = {{"pid", j.pid}, {"user", j.user}, {"seconds", j.seconds}, {"name", j.name}};
      if (!j.container.empty()) o["container"] = j.container;
      if (!j.devices.empty()) o["devices"] = j.devices;
      if (j.nvidia_smi) o["nvidia_smi"] = true;
      if (j.cpu_pct >= 0) o["cpu_pct"] = j.cpu_pct;
      a.push_back(o);
    }
    return a;
  };
  nlohmann::json j = {{"state", state()}, {"gpu_jobs", jobs(gpu_jobs)}, {"containers", containers},
                      {"cpu_jobs", jobs(cpu_jobs)}, {"unknown", unknown}, {"notes", notes}};
  if (command_busy) j["command_output"] = command_output;
  return j;
}

namespace {

// `busy:` is a node setting (lab.defaults, groups, nodes): this registers the key and validates it offline. It
// manages no resources; the planner runs the busy probe itself (engine/planner.cc).
class BusySettingsModule : public Module {
 public:
  std::string name() const override { return "busy"; }
  int order() const override { return 1; }
  std::vector<std::string> settings_keys() const override { return {"busy"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return Closed(kBusyKeys, {{"command", Scalar("the lab's own busy signal (run as root by sh -c)")},
                              {"busy_if", Enum({"output", "exit"})},
                              {"device_glob", OneOf({Scalar(), Strings()})},
                              {"timeout", Scalar("duration, e.g. 10s")},
                              {"cpu_jobs", Closed({"min_age", "min_cpu"})}},
                  "when a node counts as busy");
  }
  void validate(const Inventory& inv, Findings& f) const override {
    ForEachSettingsLayer(inv, [&](const Value& layer) {
      if (!layer.is_map()) return;
      if (const Value* b = layer.find("busy"); b && !b->is_null()) ParseBusySettings(*b, &f);
    });
  }
  std::vector<Resource> resources(const NodeContext&) const override { return {}; }
  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>&) const override { return {}; }
  DiffResult diff(const NodeContext&, const Resource&, const ProbeResults&) const override {
    return Noop("busy settings are not a resource");
  }
};

const ModuleRegistrar kBusyModule(std::make_unique<BusySettingsModule>());

}  // namespace

}  // namespace labfleet
