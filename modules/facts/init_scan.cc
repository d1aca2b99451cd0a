#include "modules/facts/init_scan.h"

#include "modules/facts/accounts.h"
#include "modules/facts/accounts_probe.h"
#include "modules/facts/nvidia_facts.h"
#include "modules/facts/package_facts.h"
#include "engine/shell.h"
#include "engine/text.h"

namespace labfleet {

const std::vector<std::string>& InitFilePatterns() {
  static const std::vector<std::string> p = {
      "/etc/hosts", "/etc/fstab", "/etc/subuid", "/etc/subgid", "/etc/docker/daemon.json",
      "/etc/systemd/system/docker.service.d/*.conf", "/etc/ssh/sshd_config.d/*.conf"};
  return p;
}

std::vector<Probe> InitProbes(long long uid_min, long long uid_max) {
  std::vector<Probe> out = {kPasswd.probe(), kGroup.probe(), kShadow.probe()};
  out.push_back({"init:hostname", "head -c 256 /proc/sys/kernel/hostname"});
  out.push_back(AptMarkShowholdProbe());
  out.push_back(ProcDriverVersionProbe());
  out.push_back({"init:gpus", "n=0; for d in /dev/nvidia[0-9]*; do [ -c \"$d\" ] && n=$((n+1)); done; echo \"$n\""});
  // Keys: one line per account in the range, "K UID B64(NAME) RC B64(CONTENT)", read as the account.
  Script keys;
  keys.raw("lo=" + ShellQuote(std::to_string(uid_min)) + " hi=" + ShellQuote(std::to_string(uid_max)) +
           " max=" + ShellQuote(std::to_string(kInitMaxKeysFile + 1)));
  keys.raw("head -n " + std::to_string(kInitMaxUsers) + " /etc/passwd" +
           " | while IFS=: read -r n x u g c h s; do");
  keys.raw("  case $u$g in ''|*[!0-9]*) continue;; esac");
  keys.raw("  [ \"$u\" -ge \"$lo\" ] && [ \"$u\" -lt \"$hi\" ] || continue");
  keys.raw("  k=$(setpriv --reuid=\"$u\" --regid=\"$g\" --clear-groups -- sh -c "
           "'test -e \"$1\" || test -L \"$1\" || exit 3; test -f \"$1\" || exit 4; test -r \"$1\" || exit 5; "
           "head -c \"$2\" -- \"$1\" | base64 -w0' sh \"$h/.ssh/authorized_keys\" \"$max\" </dev/null 2>/dev/null)");
  keys.raw("  rc=$?");
  // Mode and owner of the file and of ~/.ssh, as the user too (stat does not follow the file itself).
  keys.raw("  m=$(setpriv --reuid=\"$u\" --regid=\"$g\" --clear-groups -- stat -c '%a %U %G %F' -- "
           "\"$h/.ssh/authorized_keys\" \"$h/.ssh\" </dev/null 2>/dev/null | head -c 1024 | base64 -w0)");
  keys.raw("  printf 'K %s %s %s %s %s\\n' \"$u\" \"$(printf %s \"$n\" | base64 -w0)\" \"$rc\" \"$k\" \"$m\"");
  keys.raw("done");
  out.push_back({"init:keys", keys.str()});
  // Root-owned files: "F B64(PATH) B64(CONTENT)", only regular files in root-only directories.
  Script files;
  std::string list;
  for (const auto& p : InitFilePatterns()) {
    // Globs are fixed patterns from this file; quote everything but the final "*".
    auto star = p.find('*');
    list += " " + (star == std::string::npos ? ShellQuote(p) : ShellQuote(p.substr(0, star)) + "*" +
                                                                   ShellQuote(p.substr(star + 1)));
  }
  files.raw("n=0; for f in" + list + "; do");
  files.raw("  n=$((n+1)); [ \"$n\" -le " + std::to_string(kInitMaxFilesPerPattern * InitFilePatterns().size()) +
            " ] || break");
  files.raw("  [ -f \"$f\" ] && [ ! -L \"$f\" ] || continue");
  files.raw("  case $(stat -c '%u %A' -- \"${f%/*}\") in '0 d'????[!w]??[!w]?*) ;; *) continue;; esac");
  files.raw("  printf 'F %s %s\\n' \"$(printf %s \"$f\" | base64 -w0)\" \"$(head -c " +
            std::to_string(kInitMaxFile + 1) + " -- \"$f\" | base64 -w0)\"");
  files.raw("done");
  out.push_back({"init:files", files.str()});
  return out;
}

void ParseInitResults(const ProbeResults& results, NodeScan& scan) {
  auto get = [&](const std::string& key) -> const ProbeOutput* {
    const ProbeOutput* p = FindProbe(results, key);
    if (!p) scan.problems.push_back("no output for '" + key + "'");
    return p;
  };
  if (auto* p = get("passwd-file")) scan.passwd = p->out;
  if (auto* p = get("group-file")) scan.group = p->out;
  if (auto* p = get("shadow-file")) scan.shadow = p->out;
  if (auto* p = get("init:hostname")) scan.hostname = TrimChars(p->out, " \t\r\n");
  if (auto* p = get("init:gpus")) {
    std::string t = TrimChars(p->out, " \t\r\n");
    scan.gpus = (!t.empty() && t.size() < 5 && t.find_first_not_of("0123456789") == std::string::npos) ? std::stoi(t) : 0;
  }
  if (auto* p = FindProbe(results, "apt-mark-showhold"); p && p->exit_code == 0) {
    for (const auto& n : ParseAptMarkShowhold(p->out).names) scan.held.push_back(n);  // a std::set: sorted
  }
  if (auto* p = FindProbe(results, "proc-driver-nvidia-version"))
    if (auto v = ParseProcDriverVersion(p->out); v && IsDriverVersion(*v)) scan.nvidia_driver = *v;
  if (auto* p = get("init:keys")) {
    for (const auto& line : SplitLines(p->out)) {
      auto w = Split(line, ' ');
      bool ok = false;
      if (w.size() == 6 && w[0] == "K" && !w[3].empty() && w[3].size() < 4 &&
          w[3].find_first_not_of("0123456789") == std::string::npos) {
        bool ok1 = false, ok2 = false;
        bool ok3 = false;
        std::string name = Base64Decode(w[2], &ok1), content = Base64Decode(w[4], &ok2), meta = Base64Decode(w[5], &ok3);
        if (ok1 && ok2 && ok3 && !name.empty()) {
          ScannedKeys k;
          k.rc = std::stoi(w[3]);
          k.content = k.rc == 0 ? content : "";
          auto lines = SplitLines(meta);
          if (lines.size() == 2) k.file_meta = lines[0], k.dir_meta = lines[1];
          scan.keys[name] = k;
          ok = true;
        }
      }
      if (!ok) scan.problems.push_back("a line of the authorized_keys probe was not understood");
    }
  }
  if (auto* p = get("init:files")) {
    for (const auto& line : SplitLines(p->out)) {
      auto w = Split(line, ' ');
      bool ok1 = false, ok2 = false;
      if (w.size() == 3 && w[0] == "F") {
        std::string path = Base64Decode(w[1], &ok1), content = Base64Decode(w[2], &ok2);
        if (ok1 && ok2 && path.rfind("/etc/", 0) == 0) {
          if (content.size() > kInitMaxFile)
            scan.problems.push_back(path + " is larger than " + std::to_string(kInitMaxFile) + " bytes: not read");
          else
            scan.files[path] = content;
          continue;
        }
      }
      scan.problems.push_back("a line of the file probe was not understood");
    }
  }
}

}  // namespace labfleet
