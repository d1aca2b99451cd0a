// mounts: file systems a node mounts (NFS from the storage server, mostly) as lines of /etc/fstab. This file
// holds, in order: the typed spec and its parser, the pure parsers/editors of what the node shows (fstab,
// `findmnt -rn`, the mount-point and mount_now probes, /etc/default/cachefilesd), the offline checks, and the
// Module with its apply side.
//
// Settings (node-level key `mounts`, a list; a list in a later layer replaces the earlier one):
//   - { source: "nas:/mnt/HDD/home", target: /home, type: nfs, options: [vers=4.2, fsc], automount: true }
// Keys: source (required except for tmpfs), target (required, absolute), type (default nfs), options (list, or
// one comma-separated string), automount (bool, default false), remove (bool: unmount and forget), mount_now
// (bool, default false: mount it in the same apply; a failure is reported, never undoes fstab).
//
// Apply, in this order of changes:
//   1. fsc in any mount's options: cachefilesd installed (apt/pacman, unless the node's `packages` lists it),
//      RUN=yes in /etc/default/cachefilesd (apt nodes), `systemctl enable` + `start` (unless `services` owns it);
//   2. mount points: `mkdir -p -m 0755` when missing; one that exists as a non-directory is a conflict;
//   3. /etc/fstab: labfleet owns only the lines between "# BEGIN labfleet mounts" and "# END labfleet mounts"
//      (appended when absent); every other byte of the file is kept. Compared by fields, so whitespace is not
//      a change. The PutFile's verify runs `findmnt --verify --tab-file` on labfleet's block only (a broken
//      line of the admin's must not block labfleet, and is not labfleet's to judge); a failure restores the
//      previous fstab. A line outside the block for a target labfleet manages is adopted into the block when it
//      is exactly the wanted entry, else a conflict (no double entries).
//      On a systemd node, `systemctl daemon-reload` (handler) so the generated units follow the new fstab;
//   4. mount_now: `mount TARGET` (automount entries on systemd nodes: start the .automount unit) after fstab is
//      written. A failure never fails the apply: it is printed, recorded in /var/lib/labfleet/mount-now/
//      (per target, for that exact entry) and shown as a warning note by every later plan instead of being
//      retried, so the re-plan after apply is empty; a changed entry (or removing the record) retries;
//      remove: `umount TARGET` when mounted (disruptive: deferred on a busy node).
//
// automount: true uses systemd's automount (fstab options noauto,x-systemd.automount,
// x-systemd.idle-timeout=600, plus _netdev for NFS) rather than autofs maps: everything stays in one file that
// `findmnt --verify` checks, no autofs package or daemon to install and keep running, and the nodes run
// systemd (Debian/Ubuntu/Arch). Options the inventory already gives (e.g. its own idle timeout) are not doubled.
#include <ctime>
#include <map>
#include <optional>
#include <set>

#include "modules/facts/accounts.h"
#include "modules/facts/mounts_facts.h"
#include <nlohmann/json.hpp>

#include "engine/schema.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "modules/facts/package_facts.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "modules/facts/systemd_facts.h"
#include "engine/text.h"

namespace labfleet {

struct MountSpec {
  std::string source;
  std::string target;
  std::string type = "nfs";
  std::vector<std::string> options;
  bool automount = false;
  bool remove = false;
  bool mount_now = false;
  Location where;         // the list item
  Location target_where;  // the target value
  Location source_where;
  std::vector<Location> option_where;  // one per option
  bool is_nfs() const { return type == "nfs" || type == "nfs4"; }
};

namespace {

const std::vector<std::string> kMountKeys = {"source", "target", "type", "options", "automount", "remove", "mount_now"};

// NFS and generic mount options labfleet knows; anything else is a warning (likely a typo).
const std::set<std::string>& KnownNfsOptions() {
  static const std::set<std::string> known = {
      "vers",      "nfsvers",    "rw",         "ro",          "soft",         "hard",       "timeo",
      "retrans",   "rsize",      "wsize",      "proto",       "sec",          "fsc",        "nofsc",
      "noatime",   "nodiratime", "relatime",   "strictatime", "lazytime",     "atime",      "diratime",
      "nosuid",    "suid",       "nodev",      "dev",         "noexec",       "exec",       "_netdev",
      "nofail",    "noauto",     "auto",       "bg",          "fg",           "intr",       "nointr",
      "nolock",    "lock",       "actimeo",    "lookupcache", "port",         "mountport",  "addr",
      "clientaddr", "local_lock", "namlen",    "acregmin",    "acregmax",     "acdirmin",   "acdirmax",
      "sync",      "async",      "user",       "users",       "nouser",       "defaults",   "ac",
      "noac",      "cto",        "nocto",      "tcp",         "udp",          "nconnect",   "retry",
      "minorversion", "mountvers", "mountproto", "resvport",  "noresvport",   "sharecache", "nosharecache",
      "rdirplus",  "nordirplus", "acl",        "noacl",       "context",      "comment"};
  return known;
}

// "host:/abs/path" or "[v6addr]:/abs/path".
bool ValidNfsSource(const std::string& s) {
  size_t colon;
  if (!s.empty() && s[0] == '[') {
    size_t close = s.find(']');
    if (close == std::string::npos || close == 1 || close + 1 >= s.size() || s[close + 1] != ':') return false;
    colon = close + 1;
  } else {
    colon = s.find(':');
    if (colon == std::string::npos || colon == 0) return false;
    for (size_t i = 0; i < colon; ++i) {
      char c = s[i];
      if (!std::isalnum((unsigned char)c) && c != '.' && c != '-' && c != '_') return false;
    }
  }
  return colon + 1 < s.size() && s[colon + 1] == '/';
}

}  // namespace

// Parses a `mounts:` list (one layer or the merged settings). Findings go to `f` when given; items missing a
// target are left out.
std::vector<MountSpec> ParseMounts(const Value* v, Findings* f) {
  Findings scratch;
  Findings& out = f ? *f : scratch;
  std::vector<MountSpec> mounts;
  if (!v || v->is_null()) return mounts;
  if (!v->is_seq()) {
    out.error(v->loc(), "wrong-type",
              "mounts must be a list of { source: ..., target: ..., type: ... }, got " + DescribeValue(*v));
    return mounts;
  }
  for (const auto& item : v->items()) {
    MapReader r(item, "a mount", item.loc(), out, kMountKeys);
    if (!r.is_map()) continue;
    MountSpec m;
    m.where = item.loc();
    if (auto t = r.str("type")) {
      m.type = *t;
      // Fields of an fstab line: blanks are written as \040, but a control character or a type that is not one
      // word of a file system name could still change what the line means.
      if (!Report(out, r.get("type")->loc(), "mount type " + Quoted(*t), CheckNoControl(*t)) &&
          (t->empty() || t->find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789._-") != std::string::npos))
        out.error(r.get("type")->loc(), "mount-field",
                  "mount type " + Quoted(*t) + " is not a file system type (like nfs, nfs4, tmpfs, ext4)");
    }
    if (auto b = r.boolean("remove")) m.remove = *b;
    if (auto b = r.boolean("automount")) m.automount = *b;
    if (auto b = r.boolean("mount_now")) m.mount_now = *b;
    if (m.type != "tmpfs") r.require("source", "e.g. source: \"nas:/mnt/HDD/home\"");
    bool have_target = r.require("target", "the absolute path where it is mounted, e.g. /home");
    if (auto s = r.str("source")) {
      m.source = *s;
      m.source_where = r.get("source")->loc();
      if (Report(out, m.source_where, "mount source " + Quoted(*s), CheckNoControl(*s))) {
      } else if (m.is_nfs() && !ValidNfsSource(*s))
        out.error(m.source_where, "mount-bad-nfs-source",
                  "NFS source '" + *s + "' must be host:/absolute/path (e.g. nas:/mnt/HDD/home)");
    }
    if (const Value* o = r.get("options")) {
      auto add = [&](const std::string& opt, const Location& where) {
        m.options.push_back(opt);
        m.option_where.push_back(where);
      };
      if (o->is_scalar()) {
        std::string s = o->str();
        size_t start = 0;
        while (start <= s.size()) {
          size_t comma = s.find(',', start);
          std::string opt = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
          if (!opt.empty()) add(opt, o->loc());
          if (comma == std::string::npos) break;
          start = comma + 1;
        }
      } else if (auto list = r.strings("options")) {
        for (size_t i = 0; i < list->size(); ++i) add((*list)[i], o->items()[i].loc());
      }
      for (size_t i = 0; i < m.options.size(); ++i) {
        if (Report(out, m.option_where[i], "mount option " + Quoted(m.options[i]), CheckOneWord(m.options[i]))) continue;
        if (m.options[i].find('\\') != std::string::npos)
          out.error(m.option_where[i], "mount-field", "mount option " + Quoted(m.options[i]) + " contains a backslash");
      }
      if (m.is_nfs()) {
        std::vector<std::string> known(KnownNfsOptions().begin(), KnownNfsOptions().end());
        for (size_t i = 0; i < m.options.size(); ++i) {
          const std::string& opt = m.options[i];
          std::string name = opt.substr(0, opt.find('='));
          if (KnownNfsOptions().count(name) || name.rfind("x-systemd.", 0) == 0) continue;
          std::string msg = "unknown NFS mount option '" + opt + "'";
          if (auto sug = Suggest(name, known))
            msg += "; did you mean '" + *sug + "'?";
          else
            msg += " (mount would refuse or ignore it; see nfs(5))";
          out.warning(m.option_where[i], "mount-unknown-option", msg);
        }
      }
    }
    if (!have_target) continue;
    auto t = r.str("target");
    if (!t) continue;
    m.target = *t;
    m.target_where = r.get("target")->loc();
    PathResult pr = NormalizeAbsolutePath(m.target);
    if (pr.error && pr.error->code == "path-not-absolute") {
      out.error(m.target_where, "mount-relative-target",
                "mount target " + Quoted(m.target) + " must be an absolute path (e.g. /media/public)");
      continue;
    }
    if (Report(out, m.target_where, "mount target " + Quoted(m.target), pr.error)) continue;
    while (m.target.size() > 1 && m.target.back() == '/') m.target.pop_back();
    mounts.push_back(std::move(m));
  }
  return mounts;
}


// 64-bit FNV-1a as 16 hex digits (names of mount_now records; stable across runs and machines).
std::string Fnv16(std::string_view s) { return Fnv1a64Hex(s); }

// The fstab entry labfleet writes for a mount.
FstabEntry MountEntry(const MountSpec& m) {
  FstabEntry e;
  e.source = m.source.empty() ? m.type : m.source;
  e.target = m.target;
  e.type = m.type;
  std::vector<std::string> opts = m.options;
  auto has = [&](const std::string& name) {
    for (const auto& o : opts)
      if (o.substr(0, o.find('=')) == name) return true;
    return false;
  };
  if (m.automount) {
    for (const char* o : {"noauto", "x-systemd.automount", "x-systemd.idle-timeout=600"})
      if (!has(std::string(o).substr(0, std::string(o).find('=')))) opts.push_back(o);
    if (m.is_nfs() && !has("_netdev")) opts.push_back("_netdev");
  }
  for (size_t i = 0; i < opts.size(); ++i) e.options += (i ? "," : "") + opts[i];
  if (e.options.empty()) e.options = "defaults";
  return e;
}

constexpr const char* kMountNowDir = "/var/lib/labfleet/mount-now";
constexpr const char* kCachefilesdDefault = "/etc/default/cachefilesd";
constexpr const char* kCachefilesdUnit = "cachefilesd.service";

namespace {

std::string Utc(long long epoch) {
  time_t t = time_t(epoch);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", &tm);
  return buf;
}

bool HasOption(const MountSpec& m, const std::string& opt) {
  for (const auto& o : m.options)
    if (o == opt) return true;
  return false;
}

// Typed desired state behind each Resource.
struct CachefilesdWant {
  std::vector<std::string> targets;  // mounts with fsc
  bool package_elsewhere = false;    // the node's `packages` installs it
  bool service_elsewhere = false;    // the node's `services` manages the unit
};
struct PointWant {
  std::string target;
  size_t index = 0;  // in the mount-point probe
};
struct FstabWant {
  std::vector<FstabEntry> entries;
  std::vector<std::string> removed;  // targets with remove: true
};
struct LiveWant {  // mount_now or remove: what is mounted now matters
  MountSpec spec;
  FstabEntry entry;
};

std::string RecordPath(const std::string& target) { return std::string(kMountNowDir) + "/" + Fnv16(target); }

// Mount-point probe over `targets` (index order).
Probe PointsProbe(const std::vector<std::string>& targets) {
  Script s;
  for (size_t i = 0; i < targets.size(); ++i) {
    std::string q = ShellQuote(targets[i]), n = std::to_string(i);
    s.raw("if [ -d " + q + " ]; then echo '" + n + " dir'; elif [ -e " + q + " ] || [ -L " + q + " ]; then printf '" +
          n + " other %s\\n' \"$(stat -c %F -- " + q + " 2>/dev/null)\"; else echo '" + n + " missing'; fi");
  }
  s.raw("if [ -d /run/systemd/system ]; then echo systemd; fi");
  s.raw("true");
  return {"mounts:points", s.str()};
}

Probe FindmntProbe() { return {"mounts:findmnt", "findmnt -rn -o TARGET,SOURCE,FSTYPE,OPTIONS"}; }

Probe MountNowProbe() {
  return {"mounts:mount-now",
          std::string("for f in ") + kMountNowDir +
              "/*; do [ -f \"$f\" ] || continue; printf '%s %s\\n' \"${f##*/}\" \"$(head -c 4000 -- \"$f\" | tr '\\n' ' ')\"; done; true"};
}

bool SameFamily(const std::string& a, const std::string& b) {
  auto norm = [](const std::string& t) { return t == "nfs4" ? std::string("nfs") : t; };
  return norm(a) == norm(b);
}

std::string StripSlash(std::string s) {
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

class MountsModule : public Module {
 public:
  std::string name() const override { return "mounts"; }
  int order() const override { return 75; }
  std::vector<std::string> settings_keys() const override { return {"mounts"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return ListOf(Closed(kMountKeys, {{"source", Scalar("host:/path for NFS")},
                                      {"target", Scalar("absolute path (required)")},
                                      {"type", Scalar("nfs, nfs4, tmpfs, ext4, ...")},
                                      {"options", OneOf({Strings(), Scalar()})},
                                      {"automount", Boolean()},
                                      {"remove", Boolean()},
                                      {"mount_now", Boolean()}}),
                  "fstab entries (NFS and others)");
  }

  void validate(const Inventory& inv, Findings& f) const override {
    // Structure, once per place a list is written.
    if (const Value* d = inv.lab.find("defaults"); d && d->is_map()) ParseMounts(d->find("mounts"), &f);
    for (const auto& g : inv.groups) ParseMounts(g.raw.find("mounts"), &f);
    for (const auto& n : inv.nodes) ParseMounts(n.raw.find("mounts"), &f);
    // Targets, per node's effective list.
    std::set<std::string> reported;
    for (const auto& node : inv.nodes) {
      Value eff = inv.settings(node);
      std::vector<MountSpec> mounts = ParseMounts(eff.find("mounts"), nullptr);
      for (size_t i = 0; i < mounts.size(); ++i) {
        for (size_t j = 0; j < i; ++j) {
          if (mounts[i].target != mounts[j].target) continue;
          std::string msg = "mount target " + mounts[i].target + " is already mounted by " +
                            (mounts[j].source.empty() ? mounts[j].type : mounts[j].source) + " (" +
                            mounts[j].target_where.str() + "); one directory takes one mount";
          if (reported.insert(mounts[i].target_where.str() + msg).second)
            f.error(mounts[i].target_where, "mount-duplicate-target", msg);
          break;
        }
      }
    }
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("mounts");
    if (!v || !v->is_seq()) return {};
    return {{kFstab, "mounts:"}};
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    const Value* v = ctx.settings.find("mounts");
    if (!v || !v->is_seq()) return {};
    std::vector<MountSpec> mounts = ParseMounts(v, nullptr);
    std::vector<Resource> out;
    // 1. cachefilesd, when any mount asks for FS-Cache.
    auto cf = std::make_shared<CachefilesdWant>();
    for (const auto& m : mounts)
      if (!m.remove && HasOption(m, "fsc")) cf->targets.push_back(m.target);
    if (!cf->targets.empty()) {
      if (const Value* p = ctx.settings.find("packages")) {
        if (p->is_seq()) {
          for (const auto& i : p->items()) cf->package_elsewhere |= i.is_scalar() && i.str() == "cachefilesd";
        } else if (p->is_map()) {
          const Value* st = p->find("cachefilesd");
          cf->package_elsewhere = st && st->is_scalar() && st->str() != "absent";
        }
      }
      if (const Value* s = ctx.settings.find("services"); s && s->is_map())
        cf->service_elsewhere = s->find("cachefilesd") || s->find(kCachefilesdUnit);
      out.push_back({name(), "mounts:cachefilesd", v->loc(), cf});
    }
    // 2. mount points, 3. the fstab block, 4. what must happen to live mounts.
    auto fw = std::make_shared<FstabWant>();
    size_t index = 0;
    for (const auto& m : mounts) {
      if (m.remove) {
        fw->removed.push_back(m.target);
        continue;
      }
      fw->entries.push_back(MountEntry(m));
      out.push_back({name(), "mount-point:" + m.target, m.target_where,
                     std::make_shared<PointWant>(PointWant{m.target, index++})});
    }
    out.push_back({name(), "mounts:/etc/fstab", v->loc(), fw});
    for (const auto& m : mounts)
      if (m.remove || m.mount_now)
        out.push_back({name(), "mount:" + m.target, m.where, std::make_shared<LiveWant>(LiveWant{m, MountEntry(m)})});
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out{FileProbe(kFstab)};
    std::vector<std::string> points;
    bool live = false, now = false;
    for (const auto& r : rs) {
      if (r.id.rfind("mount-point:", 0) == 0) points.push_back(r.as<PointWant>().target);
      if (r.id.rfind("mount:", 0) == 0) {
        live = true;
        now |= r.as<LiveWant>().spec.mount_now && !r.as<LiveWant>().spec.remove;
      }
      if (r.id == "mounts:cachefilesd") {
        out.push_back(PackageManagerProbe());
        out.push_back(DpkgQueryProbe({"cachefilesd"}));
        out.push_back(PacmanQProbe({"cachefilesd"}));
        out.push_back(FileProbe(kCachefilesdDefault));
        out.push_back(SystemctlShowProbe({kCachefilesdUnit}));
      }
    }
    out.push_back(PointsProbe(points));
    if (live) out.push_back(FindmntProbe());
    if (now) out.push_back(MountNowProbe());
    return out;
  }

  DiffResult diff(const NodeContext&, const Resource& r, const ProbeResults& results) const override {
    if (r.id == "mounts:cachefilesd") return DiffCachefilesd(r.as<CachefilesdWant>(), results);
    if (r.id == "mounts:/etc/fstab") return DiffFstab(r.as<FstabWant>(), results);
    if (r.id.rfind("mount-point:", 0) == 0) return DiffPoint(r.as<PointWant>(), results);
    return DiffLive(r.as<LiveWant>(), results);
  }

 private:
  static MountPoints Points(const ProbeResults& results) {
    const ProbeOutput* p = FindProbe(results, "mounts:points");
    return p ? ParseMountPoints(p->out) : MountPoints{};
  }

  static DiffResult DiffPoint(const PointWant& w, const ProbeResults& results) {
    MountPoints p = Points(results);
    auto it = p.state.find(w.index);
    std::string st = it == p.state.end() ? "missing" : it->second;
    if (st == "dir") return Noop("nothing to do because mount point " + w.target + " exists");
    if (st != "missing")
      return Failure("mount point " + w.target + " exists but is not a directory (" + st.substr(7) +
                     "); move it out of the way on the node or choose another target");
    Change c;
    c.kind = Change::Kind::Exec;
    c.sign = '+';
    c.summary = "mount point " + w.target + " (mkdir, 0755)";
    c.reason = "absent";
    c.command = Cmd("mkdir").arg("-p").arg("-m").arg("0755").arg("--").arg(w.target).str();
    DiffResult d;
    d.changes.push_back(std::move(c));
    return d;
  }

  static DiffResult DiffFstab(const FstabWant& w, const ProbeResults& results) {
    FileState live = ParseFileProbe(results, kFstab);
    if (live.exists && !live.regular)
      return Failure(std::string(kFstab) + " is not a regular file (a symlink?); labfleet edits only a plain file");
    if (auto refused = RefuseUnreadEdit(live, kFstab)) return *refused;
    FstabView v = ParseFstab(live.content);
    if (!v.error.empty()) return Failure(v.error);
    std::set<std::string> ours;
    for (const auto& e : w.entries) ours.insert(e.target);
    // A line outside the block for a target labfleet manages: the very entry the inventory asks for (written by
    // hand before labfleet) is adopted, moved into the block (the mount itself is untouched); any other is a
    // conflict (one target, one entry).
    std::set<size_t> adopt;
    std::vector<std::string> adopted;
    for (const auto& o : v.outside) {
      if (!ours.count(StripSlash(o.entry.target))) continue;
      FstabEntry mine = o.entry;
      mine.target = StripSlash(mine.target);
      bool identical = false;
      for (const auto& e : w.entries) identical |= e == mine;
      if (!identical)
        return Failure("line " + std::to_string(o.line) + " of /etc/fstab (outside labfleet's block) already mounts " +
                       o.entry.target + ": '" + o.text + "'; delete that line on the node or take " + o.entry.target +
                       " out of the inventory (one target, one entry)");
      adopt.insert(o.line);
      adopted.push_back("line " + std::to_string(o.line) + " " + mine.target);
    }
    if (!adopt.empty()) {
      std::string kept;
      size_t n = 0, pos = 0;
      while (pos < live.content.size()) {
        size_t nl = live.content.find('\n', pos);
        size_t end = nl == std::string::npos ? live.content.size() : nl + 1;
        if (!adopt.count(++n)) kept += live.content.substr(pos, end - pos);
        pos = end;
      }
      FstabView kv = ParseFstab(kept);
      if (!kv.error.empty()) return Failure(kv.error);
      FileSpec want{kFstab, FstabWithBlock(kept, kv, w.entries), live.mode, live.owner, live.group};
      return DiffFile(want, live, "fstab block in /etc/fstab (" + Counted(w.entries.size(), "mount", "mounts") +
                                      "; adopted into labfleet's block, as written by hand: " + Join(adopted, ", ") +
                                      "; nothing is remounted)");
    }
    bool same = v.has_block ? v.block == w.entries && v.block_garbage == 0 : w.entries.empty();
    if (same && !live.exists) return Noop("nothing to do because there is no /etc/fstab and no mount to write");
    FileSpec want{kFstab, same ? live.content : FstabWithBlock(live.content, v, w.entries),
                  live.exists ? live.mode : 0644u, live.exists ? live.owner : "root", live.exists ? live.group : "root"};
    std::string what = "fstab block in /etc/fstab (" + std::to_string(w.entries.size()) + " mount" +
                       (w.entries.size() == 1 ? "" : "s") + ")";
    DiffResult d = DiffFile(want, live, what);
    if (d.changes.empty() || d.changes[0].kind != Change::Kind::PutFile) return d;
    // Say which entries differ, by target.
    std::vector<std::string> added, changed, dropped;
    std::map<std::string, const FstabEntry*> have;
    for (const auto& e : v.block) have[e.target] = &e;
    for (const auto& e : w.entries) {
      auto it = have.find(e.target);
      if (it == have.end())
        added.push_back(e.target);
      else if (!(*it->second == e))
        changed.push_back(e.target);
    }
    for (const auto& e : v.block)
      if (!ours.count(e.target)) dropped.push_back(e.target);
    std::vector<std::string> why;
    if (!added.empty()) why.push_back("new: " + Join(added, ", "));
    if (!changed.empty()) why.push_back("changed: " + Join(changed, ", "));
    if (!dropped.empty()) why.push_back("dropped: " + Join(dropped, ", "));
    if (!live.exists) why.insert(why.begin(), "no /etc/fstab yet");
    else if (!v.has_block) why.insert(why.begin(), "no labfleet block yet");
    if (why.empty()) why.push_back("the block's layout differs");
    Change& c = d.changes[0];
    c.reason = Join(why, "; ");
    c.verify = FstabVerifyCommand();
    if (Points(results).systemd) {
      d.changes.push_back(NotifyChange("systemd daemon-reload", "systemctl daemon-reload", "systemctl daemon-reload",
                                       "/etc/fstab changed: systemd regenerates its mount and automount units"));
    }
    return d;
  }

  static DiffResult DiffLive(const LiveWant& w, const ProbeResults& results) {
    const MountSpec& m = w.spec;
    const ProbeOutput* fm = FindProbe(results, "mounts:findmnt");
    if (!fm || fm->exit_code != 0)
      return Failure("cannot tell what is mounted at " + m.target + ": `findmnt -rn` failed" +
                     (fm ? " (exit " + std::to_string(fm->exit_code) + ")" : std::string()) +
                     "; is util-linux installed on the node?");
    FindmntTable t = ParseFindmnt(fm->out);
    const LiveMount* lm = t.at(m.target);
    bool systemd = Points(results).systemd;
    DiffResult d;
    if (m.remove) {
      if (!lm) return Noop("nothing to do because " + m.target + " is not mounted (remove: true)");
      FstabView v = ParseFstab(ParseFileProbe(results, kFstab).content);
      for (const auto& o : v.outside)
        if (StripSlash(o.entry.target) == m.target)
          return Noop(m.target + " stays mounted: line " + std::to_string(o.line) +
                      " of /etc/fstab, outside labfleet's block, mounts it (remove: true drops only labfleet's entry)");
      Script s;
      if (systemd)  // an automount unit would mount it again on the next access
        s.raw(Cmd("systemctl").arg("stop").raw("\"$(").then(Cmd("systemd-escape").arg("--path").arg("--suffix=automount").arg(m.target)).raw(")\"").raw("2>/dev/null || true").str());
      s.raw("if " + Cmd("findmnt").arg("-rn").arg("--mountpoint").arg(m.target).raw(">/dev/null 2>&1").str() + "; then " +
            Cmd("umount").arg(m.target).str() + "; fi");
      s.add(Cmd("rm").arg("-f").arg(RecordPath(m.target)));
      Change c;
      c.kind = Change::Kind::Exec;
      c.sign = '-';
      c.summary = "unmount " + m.target + " (remove: true; mounted from " + lm->source + ", " + lm->fstype + ")";
      c.reason = "remove: true and it is mounted now";
      c.command = s.str();
      c.disruptive = true;  // processes using it lose their files
      d.changes.push_back(std::move(c));
      return d;
    }
    // mount_now
    std::string entry_hash = Fnv16(FstabLine(w.entry));
    if (lm) {
      if (lm->fstype == "autofs") return Noop("nothing to do because " + m.target + " has its automount in place (autofs)");
      if (StripSlash(lm->source) != StripSlash(w.entry.source) || !SameFamily(lm->fstype, w.entry.type)) {
        d = Noop(m.target + " is mounted from " + lm->source + " (" + lm->fstype + "), not from " + w.entry.source +
                 " (" + w.entry.type + ") as labfleet's fstab entry says; labfleet does not unmount a mounted file "
                 "system: unmount it and apply again to mount the entry (mount_now)");
        d.warnings.push_back(d.noop);
        return d;
      }
      return Noop("nothing to do because " + m.target + " is mounted (" + lm->source + ", " + lm->fstype + ")");
    }
    if (const ProbeOutput* rp = FindProbe(results, "mounts:mount-now")) {
      MountNowRecords recs = ParseMountNowRecords(rp->out);
      auto it = recs.by_target_hash.find(Fnv16(m.target));
      if (it != recs.by_target_hash.end() && it->second.entry_hash == entry_hash) {
        // Reported, not retried: the re-plan after the apply that tried must be empty.
        d = Noop(m.target + " is not mounted: mount_now failed at " + Utc(it->second.at) + " (" + it->second.message +
                 "); the fstab entry stays. Fix the cause, then `mount " + m.target + "` on the node, or delete " +
                 RecordPath(m.target) + " so that the next apply tries again");
        d.warnings.push_back(d.noop);
        return d;
      }
    }
    std::string rec = RecordPath(m.target);
    Script s;
    s.add(Cmd("mkdir").arg("-p").arg(kMountNowDir));
    s.raw("if command -v timeout >/dev/null 2>&1; then lf_to='timeout 60'; else lf_to=; fi");
    std::string attempt;
    if (m.automount && systemd)
      attempt = "systemctl daemon-reload && $lf_to " +
                Cmd("systemctl").arg("start").raw("\"$(").then(Cmd("systemd-escape").arg("--path").arg("--suffix=automount").arg(m.target)).raw(")\"").str();
    else
      attempt = "$lf_to " + Cmd("mount").arg(m.target).str();
    s.raw("if lf_out=$( { " + attempt + "; } 2>&1 ); then");
    s.add(Cmd("rm").arg("-f").arg(rec));
    s.add(Cmd("echo").arg("mounted " + m.target));
    s.raw("else");
    s.raw("  lf_rc=$?");
    s.raw("  " + Cmd("printf").arg("%s %s %s\\n").arg(entry_hash).raw("\"$(date +%s)\"").raw(
              "\"$(printf 'exit %s: %s' \"$lf_rc\" \"$lf_out\" | tr '\\n' ' ')\"").raw(">").arg(rec).str());
    s.raw("  " + Cmd("printf").arg("warning: mount_now could not mount %s (exit %s; the fstab entry stays): %s\\n")
                     .arg(m.target).raw("\"$lf_rc\" \"$lf_out\"").str());
    s.raw("fi");
    Change c;
    c.kind = Change::Kind::Exec;
    c.sign = '+';
    c.summary = "mount " + m.target + " now (mount_now; a failure is reported, fstab stays)";
    c.reason = "not mounted";
    c.command = s.str();
    d.changes.push_back(std::move(c));
    return d;
  }

  static DiffResult DiffCachefilesd(const CachefilesdWant& w, const ProbeResults& results) {
    DiffResult d;
    const std::string why = "fsc on " + Join(w.targets, ", ");
    std::string pm = PackageManagerOf(results);
    bool installed = false;
    if (pm == "apt") {
      const ProbeOutput* p = FindProbe(results, "dpkg-query:cachefilesd");
      DpkgStatus st = ParseDpkgQuery(p ? p->out : "");
      auto it = st.by_name.find("cachefilesd");
      installed = it != st.by_name.end() && it->second.installed();
    } else if (pm == "pacman") {
      const ProbeOutput* p = FindProbe(results, "pacman-q:cachefilesd");
      installed = ParsePacmanQ(p ? p->out : "").version.count("cachefilesd") > 0;
    }
    bool installing = false;
    std::vector<std::string> notes;
    if (!installed) {
      if (w.package_elsewhere) {
        installing = true;
        notes.push_back("cachefilesd is installed by the packages module");
      } else if (pm == "apt" || pm == "pacman") {
        Change c;
        c.kind = Change::Kind::Exec;
        c.sign = '+';
        c.summary = "cachefilesd package (install; " + why + ")";
        c.reason = "not installed; FS-Cache needs the cachefilesd daemon";
        if (pm == "apt") {
          Cmd inst = AptGet("install").arg("--no-install-recommends").arg("--").arg("cachefilesd");
          c.command = inst.str() + " || { " + AptGet("update").str() + " && " + inst.str() + "; }";
        } else {
          c.command = Cmd("pacman").arg("-S").arg("--noconfirm").arg("--needed").arg("--").arg("cachefilesd").str();
        }
        d.changes.push_back(std::move(c));
        installing = true;
      } else {
        return Failure(why + " needs the cachefilesd daemon, which is not installed, and this node has neither apt "
                             "nor pacman: install cachefilesd on it, or drop fsc");
      }
    }
    FileState def = ParseFileProbe(results, kCachefilesdDefault);
    if (pm == "apt" || def.exists) {
      std::string base = def.exists && def.regular ? def.content : std::string();
      std::string bytes = CachefilesdRunYes(base);
      if (bytes == "RUN=yes\n" && base.empty())
        bytes = "# Written by labfleet (mounts: fsc needs cachefilesd running).\nRUN=yes\n";
      FileSpec f{kCachefilesdDefault, bytes, def.exists ? def.mode : 0644u, def.exists ? def.owner : "root",
                 def.exists ? def.group : "root"};
      DiffResult fd = DiffFile(f, def, "cachefilesd RUN=yes in " + std::string(kCachefilesdDefault));
      for (auto& c : fd.changes) d.changes.push_back(std::move(c));
    }
    if (w.service_elsewhere) {
      notes.push_back("the services module manages cachefilesd.service");
    } else {
      const ProbeOutput* p = FindProbe(results, "systemctl-show:" + std::string(kCachefilesdUnit));
      SystemctlShow show = ParseSystemctlShow(p ? p->out : "");
      const UnitState* u = show.find({kCachefilesdUnit}, kCachefilesdUnit);
      if (u && u->masked())
        return Failure(std::string(kCachefilesdUnit) + " is masked, but " + why +
                       " needs it running: unmask it (services: { cachefilesd: { masked: false } }) or drop fsc");
      if (!u && !installing)
        return Failure("systemctl show printed nothing for " + std::string(kCachefilesdUnit) +
                       "; is systemd running on this node? (" + why + " needs cachefilesd running)");
      bool found = u && u->found();
      if (!found && !installing)
        return Failure("cachefilesd is installed but " + std::string(kCachefilesdUnit) + " does not exist; " + why +
                       " needs the daemon running");
      std::vector<std::string> actions;
      Script s;
      if (!found || (!u->enabled() && !u->enable_not_applicable())) {
        actions.push_back("enable");
        s.add(Cmd("systemctl").arg("enable").arg(kCachefilesdUnit));
      }
      if (!found || !u->active()) {
        actions.push_back("start");
        s.add(Cmd("systemctl").arg("start").arg(kCachefilesdUnit));
      }
      if (!actions.empty()) {
        Change c;
        c.kind = Change::Kind::Exec;
        c.sign = '~';
        c.summary = "service " + std::string(kCachefilesdUnit) + " (" + Join(actions, ", ") + "; " + why + ")";
        c.reason = found ? "live: " + u->unit_file_state + ", " + u->active_state
                         : "not loaded yet (comes with the package installed above)";
        c.command = s.str();
        d.changes.push_back(std::move(c));
      }
    }
    if (d.changes.empty())
      d.noop = "nothing to do because cachefilesd is installed, enabled and running (" + why + ")" +
               (notes.empty() ? "" : "; " + Join(notes, "; "));
    return d;
  }
};

const ModuleRegistrar kMounts(std::make_unique<MountsModule>());

}  // namespace
}  // namespace labfleet
