#include "engine/file_probe.h"

#include "engine/shell.h"
#include "engine/textdiff.h"

namespace labfleet {

std::string Octal(unsigned mode) {
  char buf[8];
  snprintf(buf, sizeof buf, "%04o", mode & 07777);
  return buf;
}

Probe FileProbe(const std::string& path) {
  std::string q = ShellQuote(path);
  // First line: "present MODE OWNER GROUP TYPE" or "absent"; then the raw content of a regular file.
  std::string cmd = "if [ -e " + q + " ] || [ -L " + q + " ]; then printf 'present %s\\n' \"$(stat -c '%a %U %G %F' -- " +
                    q + ")\"; if [ -f " + q + " ] && [ ! -L " + q + " ]; then cat -- " + q +
                    "; fi; else echo absent; fi";
  return {"file:" + path, cmd};
}

FileState ParseFileProbe(const ProbeResults& results, const std::string& path) {
  FileState st;
  auto it = results.find("file:" + path);
  if (it == results.end()) return st;
  const std::string& out = it->second.out;
  size_t nl = out.find('\n');
  std::string head = out.substr(0, nl);
  if (head.rfind("present ", 0) != 0) return st;
  st.exists = true;
  char owner[256] = {0}, group[256] = {0}, type[64] = {0};
  unsigned mode = 0;
  if (sscanf(head.c_str() + 8, "%o %255s %255s %63[^\n]", &mode, owner, group, type) >= 3) {
    st.mode = mode;
    st.owner = owner;
    st.group = group;
    st.regular = std::string(type) == "regular file" || std::string(type) == "regular empty file";
  }
  if (nl != std::string::npos) st.content = out.substr(nl + 1);
  return st;
}

DiffResult DiffFile(const FileSpec& desired, const FileState& live, const std::string& what, bool show_diff) {
  DiffResult d;
  if (!live.exists || !live.regular || live.content != desired.bytes) {
    Change c;
    c.kind = Change::Kind::PutFile;
    c.file = desired;
    c.sign = live.exists ? '~' : '+';
    c.summary = what;
    if (!live.exists)
      c.reason = "absent";
    else if (!live.regular)
      c.reason = "not a regular file; it is replaced (the old one is kept in the run's backup)";
    else
      c.reason = "content differs";
    if (show_diff)
      c.diff = UnifiedDiff(live.exists && live.regular ? live.content : "", desired.bytes,
                           live.exists ? desired.path : "/dev/null", desired.path + " (desired)");
    else
      c.secret = true;
    d.changes.push_back(std::move(c));
    return d;
  }
  std::string meta;
  if (live.mode != (desired.mode & 07777)) meta += "mode " + Octal(live.mode) + " -> " + Octal(desired.mode);
  if (live.owner != desired.owner || live.group != desired.group)
    meta += std::string(meta.empty() ? "" : ", ") + "owner " + live.owner + ":" + live.group + " -> " +
            desired.owner + ":" + desired.group;
  if (!meta.empty()) {
    Change c;
    c.kind = Change::Kind::Exec;
    c.sign = '~';
    c.summary = what + " (" + meta + ")";
    c.reason = meta;
    c.command = Cmd("chmod").arg(Octal(desired.mode)).arg("--").arg(desired.path).str() + "\n" +
                Cmd("chown").arg(desired.owner + ":" + desired.group).arg("--").arg(desired.path).str();
    d.changes.push_back(std::move(c));
    return d;
  }
  d.noop = "nothing to do because " + what + " is up to date (" + Octal(desired.mode) + " " + desired.owner + ":" +
           desired.group + ")";
  return d;
}

}  // namespace labfleet
