#include "engine/file_probe.h"

#include <cstdio>
#include <map>
#include <stdexcept>

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

bool IsFileProbe(const Probe& p, std::string* path) {
  if (p.key.rfind("file:", 0) != 0) return false;
  std::string pa = p.key.substr(5);
  if (p.command != FileProbe(pa).command) return false;
  if (path) *path = std::move(pa);
  return true;
}

// stat(1) prints, per path it can lstat: NAME NUL "MODE OWNER GROUP INODE SIZE MTIME TYPE" NUL; a path it
// cannot stat prints nothing (and an error on stderr, dropped). An empty name (a lone NUL) ends the list.
static const char kBatchStatFormat[] = "%n\\0%a %U %G %i %s %.9Y %F\\0";

Probe BatchedFileProbe(const std::vector<std::string>& paths) {
  Cmd set("set");
  set.arg("--").args(paths);
  Cmd stat = Cmd("stat").arg("--printf").arg(kBatchStatFormat).arg("--").raw("\"$@\"").raw("2>/dev/null");
  Script s;
  s.add(set).add(stat).raw("printf '\\0'");
  // The regular files (not symlinks), in order, become "$@" for one cat; the two stats around it prove
  // that nothing changed in between, so the contents can be split by the sizes the first stat printed.
  s.raw("for f in \"$@\"; do if [ -f \"$f\" ] && [ ! -L \"$f\" ]; then set -- \"$@\" \"$f\"; fi; done");
  s.raw("shift " + std::to_string(paths.size()));
  s.raw("if [ $# -gt 0 ]; then cat -- \"$@\" 2>/dev/null; fi");
  s.add(set).add(stat).raw("printf '\\0'");
  return {"labfleet:files", s.str()};
}

namespace {
struct StatRecord {
  std::string name, meta;
};
// Reads records up to the empty name that ends the list; false if the text ends first.
bool ReadStatRecords(const std::string& out, size_t& pos, std::vector<StatRecord>& recs) {
  for (;;) {
    size_t z = out.find('\0', pos);
    if (z == std::string::npos) return false;
    std::string name = out.substr(pos, z - pos);
    pos = z + 1;
    if (name.empty()) return true;
    z = out.find('\0', pos);
    if (z == std::string::npos) return false;
    recs.push_back({std::move(name), out.substr(pos, z - pos)});
    pos = z + 1;
  }
}
}  // namespace

bool SplitBatchedFileProbe(const std::string& out, const std::vector<std::string>& paths, ProbeResults& into) {
  size_t pos = 0;
  std::vector<StatRecord> first, second;
  if (!ReadStatRecords(out, pos, first)) throw std::runtime_error("batched file probe: stat output cut short");
  struct Meta {
    std::string head;  // "MODE OWNER GROUP TYPE", FileProbe's format
    unsigned long long size = 0;
    bool regular = false;
  };
  std::map<std::string, Meta> metas;
  unsigned long long total = 0;
  size_t next = 0;  // stat prints in argument order, skipping what it cannot stat
  for (const auto& r : first) {
    while (next < paths.size() && paths[next] != r.name) ++next;
    if (next == paths.size()) throw std::runtime_error("batched file probe: stat printed an unexpected name '" + r.name + "'");
    ++next;
    char mode[16] = {0}, owner[256] = {0}, group[256] = {0};
    unsigned long long inode = 0, size = 0;
    int used = 0;
    if (sscanf(r.meta.c_str(), "%15s %255s %255s %llu %llu %*s %n", mode, owner, group, &inode, &size, &used) < 5 ||
        used == 0)
      throw std::runtime_error("batched file probe: unexpected stat line '" + r.meta + "'");
    Meta m;
    std::string type = r.meta.substr(used);
    m.head = std::string(mode) + " " + owner + " " + group + " " + type;
    m.regular = type == "regular file" || type == "regular empty file";
    m.size = size;
    if (m.regular) total += size;
    metas[r.name] = std::move(m);
  }
  if (out.size() - pos < total) return false;
  std::string contents = out.substr(pos, total);
  pos += total;
  if (!ReadStatRecords(out, pos, second) || pos != out.size()) return false;
  if (second.size() != first.size()) return false;
  for (size_t i = 0; i < first.size(); ++i)
    if (first[i].name != second[i].name || first[i].meta != second[i].meta) return false;
  size_t off = 0;
  for (const auto& p : paths) {
    ProbeOutput po;
    auto it = metas.find(p);
    if (it == metas.end()) {
      po.out = "absent\n";
    } else {
      po.out = "present " + it->second.head + "\n";
      if (it->second.regular) {
        po.out += contents.substr(off, it->second.size);
        off += it->second.size;
      }
    }
    into["file:" + p] = std::move(po);
  }
  return true;
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
