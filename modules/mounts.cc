// mounts: filesystems a node mounts (NFS from the storage server, mostly), as systemd mount/automount units
// or fstab lines. This file holds, in order: the typed spec and its parser, the offline checks, and the
// Module. Apply (resources/probes/diff) is not implemented yet.
//
// Settings (node-level key `mounts`, a list; a list in a later layer replaces the earlier one):
//   - { source: "nas:/mnt/HDD/home", target: /home, type: nfs, options: [vers=4.2, fsc], automount: true }
// Keys: source (required except for tmpfs), target (required, absolute), type (default nfs), options (list, or
// one comma-separated string), automount (bool, default false), remove (bool: unmount and forget).
#include <set>

#include "engine/module.h"

namespace labfleet {

struct MountSpec {
  std::string source;
  std::string target;
  std::string type = "nfs";
  std::vector<std::string> options;
  bool automount = false;
  bool remove = false;
  Location where;         // the list item
  Location target_where;  // the target value
  Location source_where;
  std::vector<Location> option_where;  // one per option
  bool is_nfs() const { return type == "nfs" || type == "nfs4"; }
};

namespace {

const std::vector<std::string> kMountKeys = {"source", "target", "type", "options", "automount", "remove"};

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
    if (auto t = r.str("type")) m.type = *t;
    if (auto b = r.boolean("remove")) m.remove = *b;
    if (auto b = r.boolean("automount")) m.automount = *b;
    if (m.type != "tmpfs") r.require("source", "e.g. source: \"nas:/mnt/HDD/home\"");
    bool have_target = r.require("target", "the absolute path where it is mounted, e.g. /home");
    if (auto s = r.str("source")) {
      m.source = *s;
      m.source_where = r.get("source")->loc();
      if (m.is_nfs() && !ValidNfsSource(*s))
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
    if (m.target.empty() || m.target[0] != '/') {
      out.error(m.target_where, "mount-relative-target",
                "mount target '" + m.target + "' must be an absolute path (e.g. /media/public)");
      continue;
    }
    while (m.target.size() > 1 && m.target.back() == '/') m.target.pop_back();
    mounts.push_back(std::move(m));
  }
  return mounts;
}

namespace {

class MountsModule : public Module {
 public:
  std::string name() const override { return "mounts"; }
  int order() const override { return 75; }
  std::vector<std::string> settings_keys() const override { return {"mounts"}; }

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

  // Apply is not implemented yet: no resources, so plan/apply leave mounts alone.
  std::vector<Resource> resources(const NodeContext&) const override { return {}; }
  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>&) const override { return {}; }
  DiffResult diff(const NodeContext&, const Resource&, const ProbeResults&) const override {
    return Noop("mounts apply is not implemented yet");
  }
};

const ModuleRegistrar kMounts(std::make_unique<MountsModule>());

}  // namespace
}  // namespace labfleet
