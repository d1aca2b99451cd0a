// users: accounts with uid, primary and extra groups, shell, home (created from /etc/skel), full name,
// expiry (an expired account is locked by its expiry date, never deleted), an optional password hash
// (never printed). labfleet records the accounts it manages on the node; one that leaves the inventory
// (or whose `on:` no longer selects the node) is locked by expiry and reported, and deleted only when the
// inventory says `remove: true`. `remove: archive` also archives the home (tar.gz under lab.home_archive,
// verified by listing it) and then deletes it, on the nodes where the home is on a local filesystem; where it
// is not (an NFS home), or is shared, not a directory or not the user's, the home is kept and the plan says
// why. Accounts labfleet never managed are never touched.
//
// Directory users (accounts: directory) never get a local account. On a directory client whose homes are local
// (directory_client, not `homes: shared`), each one's home is made on the node (resource "home:NAME"): with the
// inventory's uid and primary gid and the client's home_mode (default 0700), /etc/skel copied, once she resolves
// through NSS with the inventory's uid, and only where every directory above the home is root's and writable by
// no one else; an existing home is never chowned, a symbolic link never followed (PlanDirectoryHome).
#include "modules/users.h"

#include <algorithm>
#include <set>

#include "modules/directory_client.h"
#include "modules/facts/accounts_probe.h"
#include "engine/module.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {

std::map<std::string, std::vector<PathState>> ParseHomeChains(std::string_view out) {
  std::map<std::string, std::vector<PathState>> chains;
  for (const auto& line : SplitLines(out)) {
    size_t t1 = line.find('\t'), t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
    if (t2 == std::string::npos || t1 == 0) continue;
    PathState s;
    s.path = line.substr(t1 + 1, t2 - t1 - 1);
    if (s.path.empty() || s.path[0] != '/') continue;
    std::string st = line.substr(t2 + 1);
    if (st != "-") {
      // "UID GID MODE TYPE", TYPE may hold spaces ("symbolic link")
      auto f = Split(st, ' ');
      if (f.size() < 4) continue;
      auto uid = ParseInteger(f[0]), gid = ParseInteger(f[1]);
      if (!uid || !gid || f[2].empty() || f[2].find_first_not_of("01234567") != std::string::npos) continue;
      s.exists = true;
      s.uid = *uid;
      s.gid = *gid;
      s.mode = std::stoi(f[2], nullptr, 8);
      s.type = st.substr(f[0].size() + f[1].size() + f[2].size() + 3);
    }
    chains[line.substr(0, t1)].push_back(std::move(s));
  }
  return chains;
}

static std::string Octal(int mode) {
  char b[16];
  std::snprintf(b, sizeof b, "%04o", mode);
  return b;
}

HomePlan PlanDirectoryHome(const std::string& home, long long uid, const std::vector<PathState>& chain) {
  using W = HomePlan::What;
  if (chain.empty() || chain[0].path != home) return {W::Refuse, "the node gave no state for " + home};
  const PathState& h = chain[0];
  if (h.exists) {
    if (h.type != "directory")
      return {W::Refuse, home + " is a " + h.type + ", not a directory: labfleet never follows or replaces it"};
    if (h.uid != uid)
      return {W::Refuse, home + " exists, owned by uid " + std::to_string(h.uid) + ", not " + std::to_string(uid) +
                             ": labfleet never chowns an existing home (chown it by hand if it is hers)"};
    return {W::Exists, home + " exists (owner uid " + std::to_string(uid) + ")"};
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    const PathState& p = chain[i];
    if (!p.exists) return {W::Refuse, "its parent " + p.path + " does not exist (homes not mounted yet?)"};
    if (p.type != "directory")
      return {W::Refuse, "its parent " + p.path + " is a " + p.type + ": labfleet never makes a home through it"};
    if (p.uid != 0 || (p.mode & 022) != 0)
      return {W::Refuse, "its parent " + p.path + " is not root's alone (owner uid " + std::to_string(p.uid) +
                             ", mode " + Octal(p.mode) + "): a user could swap the path; labfleet never makes a home "
                             "through it"};
  }
  if (chain.back().path != "/") return {W::Refuse, "the node gave no state for the directories above " + home};
  return {W::Create, home + " is absent"};
}

namespace {

struct Retired {};  // the resource that locks accounts which left the inventory

// A directory user's home on a directory client with local homes.
struct DirHomeWant {
  const UserDef* user;
  long long gid;
  std::string mode;  // directory_client.home_mode
};

// One line per path: NAME <tab> PATH <tab> "UID GID MODE TYPE" (lstat: a link is reported, never followed) or
// "-", for the home and every directory above it up to "/".
constexpr const char* kDirHomesProbeScript =
    "while [ $# -ge 2 ]; do lf_n=$1; lf_d=$2; shift 2; while :; do "
    "printf '%s\\t%s\\t%s\\n' \"$lf_n\" \"$lf_d\" \"$(stat -c '%u %g %a %F' -- \"$lf_d\" 2>/dev/null || echo -)\"; "
    "case $lf_d in /|.|'') break;; esac; lf_d=$(dirname -- \"$lf_d\"); done; done";

std::string RegisterManaged(const std::string& user) {
  return Cmd("mkdir").arg("-p").arg("/var/lib/labfleet").str() + "\n" +
         Cmd("grep").arg("-qxF").arg("--").arg(user).arg(kManagedUsersFile).str() + " 2>/dev/null || " +
         Cmd("printf").arg("%s\\n").arg(user).raw(">>").arg(kManagedUsersFile).str();
}

std::string ForgetManaged(const std::string& user) {
  // Rewrites the list without `user` (atomic rename).
  return "if [ -f " + ShellQuote(kManagedUsersFile) + " ]; then " +
         Cmd("grep").arg("-vxF").arg("--").arg(user).arg(kManagedUsersFile).str() + " > " +
         ShellQuote(std::string(kManagedUsersFile) + ".new") + " || true; " +
         Cmd("mv").arg("-f").arg(std::string(kManagedUsersFile) + ".new").arg(kManagedUsersFile).str() + "; fi";
}

std::string SetPassword(const std::string& user, const std::string& hash) {
  // printf is a shell builtin: the hash never appears in a process's argv on the node.
  return Cmd("printf").arg("%s:%s\\n").arg(user).arg(hash).raw("|").then(Cmd("chpasswd").arg("-e")).str();
}

// `remove: archive` needs to know, per home, its filesystem type and its owner and file type. One line per
// user: NAME <tab> FSTYPE <tab> "UID TYPE" ("-" when stat fails, e.g. the home is absent).
constexpr const char* kHomeProbeScript =
    "while [ $# -ge 2 ]; do "
    "printf '%s\\t%s\\t%s\\n' \"$1\" \"$(stat -f -c %T -- \"$2\" 2>/dev/null || echo -)\" "
    "\"$(stat -c '%u %F' -- \"$2\" 2>/dev/null || echo -)\"; shift 2; done";

// Filesystems a home is archived and deleted on; on any other (nfs, nfs4, cifs, autofs, fuse.*) it is kept:
// the node where that filesystem is local does it.
bool LocalFs(const std::string& type) {
  static const std::set<std::string> kLocal = {"ext2/ext3", "ext4", "xfs",       "btrfs",   "tmpfs",   "zfs",
                                               "f2fs",      "jfs",  "reiserfs",  "bcachefs", "overlayfs"};
  return kLocal.count(type) > 0;
}

std::string ParentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == 0 ? "/" : path.substr(0, slash);
}

// Why a home may not be deleted whatever the node says: "" when it may.
std::string UnsafeHome(const std::string& home) {
  if (home.empty() || home[0] != '/') return "is not an absolute path";
  if (home.back() == '/' || home.find("//") != std::string::npos || home.find("/./") != std::string::npos ||
      home.find("/../") != std::string::npos || home.ends_with("/..") || home.ends_with("/."))
    return "is not a plain path";
  if (home.find('/', 1) == std::string::npos) return "is a top-level directory";
  return "";
}

bool Inside(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/');
}

class UsersModule : public Module {
 public:
  std::string name() const override { return "users"; }
  int order() const override { return 20; }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    std::vector<Resource> out;
    for (const UserDef* u : UsersOnNode(ctx)) {
      if (u->accounts == "directory") continue;  // an entry in lab.directory (modules/directory.cc), never local
      out.push_back({name(), "user:" + u->name, u->where, std::shared_ptr<const UserDef>(u, [](const UserDef*) {})});
    }
    // Directory users' homes, on a client whose homes are local.
    if (auto client = DirectoryClientOf(ctx.inv, ctx.node, ctx.settings); client && client->mkhomedir)
      for (const UserDef* u : DirectoryUsersOnClient(ctx)) {
        long long gid = u->uid;  // the personal group; else the primary group's (validate: it has one)
        if (const UserGroupDef* g = u->primary_group.empty() ? nullptr : ctx.inv.user_group(u->primary_group)) gid = g->gid;
        out.push_back({name(), "home:" + u->name, u->where,
                       std::make_shared<DirHomeWant>(DirHomeWant{u, gid, client->home_mode})});
      }
    out.push_back({name(), "users:retired", {}, std::make_shared<Retired>()});
    return out;
  }

  void validate(const Inventory& inv, Findings& f) const override {
    const Value* dir = inv.lab.find("home_archive");
    if (dir && dir->is_scalar() && Report(f, dir->loc(), "lab.home_archive " + Quoted(dir->str()), CheckNoControl(dir->str()))) {
      // reported; the checks below would only repeat it
    } else if (dir && dir->is_scalar()) {
      std::string why = UnsafeHome(dir->str());
      if (!why.empty() && why != "is a top-level directory")
        f.error(dir->loc(), "wrong-type",
                "lab.home_archive " + why + ": give the directory on the nodes that gets removed users' homes, "
                "e.g. /var/backups/homes");
    }
    for (const auto& u : inv.users) {
      if (!u.archive_home) continue;
      const Location where = KeyLoc(u.raw, "remove");
      if (!dir)
        f.error(where, "missing-required",
                "user '" + u.name + "' has remove: archive but the lab has no home_archive; add "
                "`home_archive: /var/backups/homes` (a directory on the nodes) to the lab section");
      if (std::string why = UnsafeHome(HomeOf(u)); !why.empty())
        f.error(where, "unsafe-home",
                "the home " + HomeOf(u) + " of user '" + u.name + "' " + why + "; remove: archive never deletes it");
      else if (dir && dir->is_scalar() && (Inside(dir->str(), HomeOf(u)) || Inside(HomeOf(u), dir->str())))
        f.error(where, "unsafe-home",
                "lab.home_archive " + dir->str() + " and the home " + HomeOf(u) + " of user '" + u.name +
                    "' contain one another; archive homes to a directory outside every home");
    }
  }

  std::vector<Probe> probes(const NodeContext& ctx, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out = {kPasswd.probe(), kGroup.probe(), kShadow.probe(), kManagedUsers.probe()};
    std::vector<std::string> names;
    for (const UserDef* u : UsersOnNode(ctx))
      if (!u->remove && u->accounts != "directory") names.push_back(u->name);
    if (!names.empty()) out.push_back(NssPasswdProbe(names));
    Cmd homes("sh");
    homes.arg("-c").arg(kHomeProbeScript).arg("home-probe");
    bool any = false;
    for (const UserDef* u : UsersOnNode(ctx))
      if (u->archive_home && u->accounts != "directory") {
        homes.arg(u->name).arg(HomeOf(*u));
        any = true;
      }
    if (any) out.push_back({"user-homes", homes.str()});
    Cmd dir_homes("sh");
    dir_homes.arg("-c").arg(kDirHomesProbeScript).arg("dir-homes-probe");
    bool any_dir = false;
    for (const auto& r : rs)
      if (r.id.starts_with("home:")) {
        const UserDef& u = *r.as<DirHomeWant>().user;
        dir_homes.arg(u.name).arg(HomeOf(u));
        any_dir = true;
      }
    if (any_dir) {
      out.push_back(NssDirectoryProbe(ctx));
      out.push_back({"directory-homes", dir_homes.str() + " | head -c 1048576"});
    }
    return out;
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    const auto& passwd = results.fact(kPasswd);
    const auto& shadow = results.fact(kShadow);
    const auto& managed = results.fact(kManagedUsers);
    if (r.id == "users:retired") return DiffRetired(ctx, passwd, shadow, managed);
    if (r.id.starts_with("home:")) return DiffDirectoryHome(r.as<DirHomeWant>(), results);
    const auto& groups = results.fact(kGroup);
    const UserDef& u = r.as<UserDef>();
    const ProbeOutput* homes = FindProbe(results, "user-homes");
    if (u.remove) return DiffRemove(ctx, u, passwd, managed, homes ? homes->out : std::string());
    // What NSS says of the name, beside the local file: a directory account is not a local one.
    std::optional<PasswdEntry> nss;
    if (const ProbeOutput* n = FindProbe(results, "nss-passwd")) {
      auto parsed = ParsePasswd(n->out);
      if (auto it = parsed.by_name.find(u.name); it != parsed.by_name.end()) nss = it->second;
    }
    const bool local = passwd.by_name.count(u.name) > 0;
    if (!local && nss)
      return Failure("user " + u.name + " is not in /etc/passwd on this node, but NSS resolves it (uid " +
                     std::to_string(nss->uid) + "): an account of a directory (LDAP, SSSD) or another NSS source. "
                     "labfleet manages local accounts, and useradd would refuse the name; keep the account in one "
                     "place: drop it from the inventory for this node (`on:`) or from the directory");
    DiffResult d = DiffUser(ctx, u, passwd, groups, shadow, managed);
    if (local && nss && nss->uid != passwd.by_name.at(u.name).uid)
      d.warnings.push_back("user " + u.name + " resolves through NSS to uid " + std::to_string(nss->uid) +
                           ", not the local account's uid " + std::to_string(passwd.by_name.at(u.name).uid) +
                           ": another source (a directory) comes first in nsswitch.conf; files and logins disagree");
    return d;
  }

 private:
  // A directory user's home on this client (see the file comment).
  static DiffResult DiffDirectoryHome(const DirHomeWant& w, const ProbeResults& results) {
    const UserDef& u = *w.user;
    const std::string home = HomeOf(u);
    std::optional<PasswdEntry> nss;
    if (const ProbeOutput* n = FindProbe(results, kNssDirectoryKey)) {
      auto parsed = ParsePasswd(n->out);
      if (auto it = parsed.by_name.find(u.name); it != parsed.by_name.end()) nss = it->second;
    }
    DiffResult d;
    auto wait = [&](const std::string& why) {
      d.warnings.push_back("home " + home + " of directory user " + u.name + " is not made: " + why);
      d.noop = "nothing to do now because " + why;
      return d;
    };
    if (!nss)
      return wait(u.name + " does not resolve through NSS on this node yet (sssd not configured or not running); "
                  "the next apply after she resolves makes it (pam_mkhomedir makes it at her first login meanwhile)");
    if (nss->uid != u.uid)
      return wait(u.name + " resolves through NSS to uid " + std::to_string(nss->uid) + ", not the inventory's " +
                  std::to_string(u.uid) + " (another source comes first in nsswitch.conf)");
    if (nss->home != home)
      return wait(u.name + "'s home through NSS is " + nss->home + ", not the inventory's " + home);
    const ProbeOutput* probe = FindProbe(results, "directory-homes");
    auto chains = ParseHomeChains(probe ? probe->out : std::string());
    HomePlan p = PlanDirectoryHome(home, u.uid, chains[u.name]);
    if (p.what == HomePlan::What::Exists) return Noop("nothing to do because " + p.why);
    if (p.what == HomePlan::What::Refuse) return wait(p.why);
    const std::string owner = std::to_string(u.uid) + ":" + std::to_string(w.gid);
    const std::string parent = ParentOf(home);
    Script sc;
    // Checked again on the node as the change runs: the parents are root's alone, the home still absent.
    sc.raw("lf_rootonly " + ShellQuote(parent) + " || { echo " +
           ShellQuote("labfleet: a user can change the directories above " + home + ": ") +
           "\"$LF_WHY\" >&2; exit 1; }");
    // Made 0700 root's (fails on anything there, a link included) and filled while nobody else can enter it: with
    // a group- or other-writable home_mode from the start, someone could plant a link in it for cp to write
    // /etc/skel's files through. Its mode is set last, once it and everything in it is hers.
    sc.add(Cmd("mkdir").arg("-m").arg("0700").arg("--").arg(home));
    sc.raw("if [ -d /etc/skel ]; then " + Cmd("cp").arg("-R").arg("--").arg("/etc/skel/.").arg(home).str() + "; fi");
    sc.add(Cmd("chown").arg("-R").arg("-h").arg("--").arg(owner).arg(home));  // -R: no link is followed (-P)
    sc.add(Cmd("chmod").arg("--").arg(w.mode).arg(home));  // the path's parents are root's alone: not swappable
    Change c;
    c.kind = Change::Kind::Exec;
    c.sign = '+';
    c.summary = "home " + home + " of directory user " + u.name + " (" + w.mode + " " + owner + ", from /etc/skel)";
    c.reason = p.why + "; " + u.name + " resolves through NSS (uid " + std::to_string(u.uid) +
               ") and homes are local on this node";
    c.command = sc.str();
    d.changes.push_back(std::move(c));
    return d;
  }

  DiffResult DiffUser(const NodeContext& ctx, const UserDef& u, const Parsed<PasswdEntry>& passwd,
                      const Parsed<GroupEntry>& groups, const Parsed<ShadowEntry>& shadow,
                      const std::set<std::string>& managed) const {
    DiffResult d;
    auto live = passwd.by_name.find(u.name);
    const std::string uid = std::to_string(u.uid);
    const std::string primary = PrimaryGroupOf(u);
    long long expire_days = u.expires.empty() ? -1 : DaysSinceEpoch(u.expires);
    // Holder of the uid under another name: a conflict an admin must resolve.
    for (const auto& p : passwd.in_order)
      if (p.uid == u.uid && p.name != u.name)
        return Failure("uid " + uid + " of user " + u.name + " is taken on this node by '" + p.name +
                       "'; give one of them another uid (usermod -u on the node), then apply again");
    // Which inventory groups should list the user as a member.
    std::vector<std::string> want_groups = u.groups;
    std::vector<std::string> add_groups, del_groups;
    for (const auto& g : ctx.inv.user_groups) {
      bool want = std::find(want_groups.begin(), want_groups.end(), g.name) != want_groups.end();
      auto lg = groups.by_name.find(g.name);
      bool is = lg != groups.by_name.end() &&
                std::find(lg->second.members.begin(), lg->second.members.end(), u.name) != lg->second.members.end();
      if (want && !is) add_groups.push_back(g.name);
      if (!want && is) del_groups.push_back(g.name);
    }
    if (live == passwd.by_name.end()) {
      Change c;
      c.sign = '+';
      c.summary = "user " + u.name + " (uid " + uid + (u.groups.empty() ? "" : ", groups " + Join(u.groups, ",")) +
                  (expire_days >= 0 && expire_days * 86400 < time(nullptr) ? ", expired: locked" : "") + ")";
      c.reason = "absent";
      Cmd add("useradd");
      add.arg("-u").arg(uid).arg("-g").arg(primary).arg("-s").arg(u.shell).arg("-d").arg(HomeOf(u)).arg("-m");
      add.arg("-k").arg("/etc/skel").arg("-c").arg(u.full_name);
      add.arg("-K").arg("SUB_UID_COUNT=0").arg("-K").arg("SUB_GID_COUNT=0");  // subids: the subids module
      if (!u.groups.empty()) add.arg("-G").arg(Join(u.groups, ","));
      if (expire_days >= 0) add.arg("-e").arg(u.expires);
      add.arg(u.name);
      c.command = add.str();
      if (!u.password_hash.empty()) {
        c.command += "\n" + SetPassword(u.name, u.password_hash);
        c.secret = true;
        c.redact.push_back(u.password_hash);
        c.summary += " (secret set)";
      }
      c.command += "\n" + RegisterManaged(u.name);
      d.changes.push_back(std::move(c));
      return d;
    }
    const PasswdEntry& p = live->second;
    std::vector<std::string> what;
    Cmd mod("usermod");
    bool mod_needed = false;
    if (p.uid != u.uid) {
      what.push_back("uid " + std::to_string(p.uid) + " -> " + uid);
      mod.arg("-u").arg(uid);
      mod_needed = true;
    }
    // The primary group's gid: the personal group's is the uid; an inventory group's is known; any other
    // group is looked up on the node.
    long long want_gid = -1;
    if (u.primary_group.empty()) want_gid = u.uid;
    else if (const UserGroupDef* g = ctx.inv.user_group(u.primary_group)) want_gid = g->gid;
    else if (auto pg = groups.by_name.find(primary); pg != groups.by_name.end()) want_gid = pg->second.gid;
    if (want_gid != p.gid) {
      what.push_back("primary group -> " + primary);
      mod.arg("-g").arg(primary);
      mod_needed = true;
    }
    if (p.shell != u.shell) {
      what.push_back("shell " + p.shell + " -> " + u.shell);
      mod.arg("-s").arg(u.shell);
      mod_needed = true;
    }
    if (p.home != HomeOf(u)) {
      what.push_back("home " + p.home + " -> " + HomeOf(u) + " (not moved)");
      mod.arg("-d").arg(HomeOf(u));
      mod_needed = true;
    }
    if (p.gecos != u.full_name) {
      what.push_back("full name");
      mod.arg("-c").arg(u.full_name);
      mod_needed = true;
    }
    auto sh = shadow.by_name.find(u.name);
    long long live_expire = sh == shadow.by_name.end() ? -1 : sh->second.expire;
    if (live_expire != expire_days) {
      what.push_back("expires " + (live_expire < 0 ? std::string("never") : DateFromDays(live_expire)) + " -> " +
                     (expire_days < 0 ? std::string("never") : u.expires));
      mod.arg("-e").arg(expire_days < 0 ? "" : u.expires);
      mod_needed = true;
    }
    std::string command;
    if (mod_needed) command = mod.arg(u.name).str();
    for (const auto& g : add_groups) {
      what.push_back("+group " + g);
      command += (command.empty() ? "" : "\n") + Cmd("gpasswd").arg("-a").arg(u.name).arg(g).str() + " >/dev/null";
    }
    for (const auto& g : del_groups) {
      what.push_back("-group " + g);
      command += (command.empty() ? "" : "\n") + Cmd("gpasswd").arg("-d").arg(u.name).arg(g).str() + " >/dev/null";
    }
    bool secret = false;
    if (!u.password_hash.empty() && (sh == shadow.by_name.end() || sh->second.hash != u.password_hash)) {
      what.push_back("secret changed");
      command += (command.empty() ? "" : "\n") + SetPassword(u.name, u.password_hash);
      secret = true;
    }
    const bool adopt = !managed.count(u.name);
    if (what.empty()) {
      DiffResult d = Noop("nothing to do because user " + u.name + " matches (uid " + uid + ", " +
                          Counted(u.groups.size(), "group", "groups") + ")" +
                          (adopt ? "; the next apply records it as managed by labfleet (adopted)" : ""));
      // An account made by hand that already matches is adopted without a change: only managed-users learns it.
      if (adopt) d.records.push_back({"user " + u.name + ": adopted (recorded as managed by labfleet)", RegisterManaged(u.name)});
      return d;
    }
    if (adopt) {
      what.push_back("adopted: now managed by labfleet");
      command += (command.empty() ? "" : "\n") + RegisterManaged(u.name);
    }
    Change c;
    c.sign = '~';
    c.summary = "user " + u.name + " (" + Join(what, ", ") + ")";
    c.reason = Join(what, ", ");
    c.command = command;
    c.secret = secret;
    if (secret) c.redact.push_back(u.password_hash);
    d.changes.push_back(std::move(c));
    return d;
  }

  // remove: true deletes the account (home kept); remove: archive also archives the home, then deletes it,
  // where that is safe (see the file comment). Archive first, verify it, then userdel (which refuses while the
  // user has processes), then rm: a failure at any step leaves the home in place.
  DiffResult DiffRemove(const NodeContext& ctx, const UserDef& u, const Parsed<PasswdEntry>& passwd,
                        const std::set<std::string>& managed, const std::string& homes_out) const {
    const char* how = u.archive_home ? "remove: archive" : "remove: true";
    auto live = passwd.by_name.find(u.name);
    if (live == passwd.by_name.end())
      return Noop("nothing to do because user " + u.name + " is absent (" + how + ")");
    if (!managed.count(u.name))
      return Failure("user " + u.name + " is marked " + how +
                     " but was not created or adopted by labfleet on this node; delete it by hand if that is meant");
    const PasswdEntry& p = live->second;
    DiffResult d;
    Change& c = d.changes.emplace_back();
    c.sign = '-';
    c.reason = std::string(how) + " in the inventory";
    std::string userdel = Cmd("userdel").arg(u.name).str() + "\n" + ForgetManaged(u.name);
    if (!u.archive_home) {
      c.summary = "user " + u.name + " (deleted: remove: true; home " + p.home + " kept)";
      c.command = userdel;
      return d;
    }
    // Why the home stays, if it does.
    std::string keep;
    std::string fstype = "-", owner = "-";
    for (const auto& line : SplitLines(homes_out)) {  // NAME \t FSTYPE \t "UID TYPE"; other lines skipped
      size_t t1 = line.find('\t'), t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
      if (t2 == std::string::npos || line.substr(0, t1) != u.name) continue;
      fstype = line.substr(t1 + 1, t2 - t1 - 1);
      owner = line.substr(t2 + 1);
    }
    const std::string dir = ctx.inv.lab.find("home_archive") ? ctx.inv.lab.find("home_archive")->str() : "";
    if (p.home != HomeOf(u)) {
      keep = "it is " + p.home + " on this node, not " + HomeOf(u) + " as the inventory says";
    } else if (std::string why = UnsafeHome(p.home); !why.empty()) {
      keep = "it " + why;
    } else if (fstype == "-") {
      keep = "it does not exist";
    } else if (owner != std::to_string(p.uid) + " directory") {
      keep = "it is not a directory owned by uid " + std::to_string(p.uid) + " (" + owner + ")";
    } else if (!LocalFs(fstype)) {
      keep = "it is on " + fstype + " here; it is archived on the node where that filesystem is local";
    } else {
      for (const auto& other : passwd.in_order)
        if (other.name != u.name && (Inside(other.home, p.home) || other.home == p.home)) {
          keep = "user " + other.name + "'s home " + other.home + " is inside it";
          break;
        }
    }
    if (!keep.empty()) {
      c.summary = "user " + u.name + " (deleted: remove: archive; home " + p.home + " kept: " + keep + ")";
      c.command = userdel;
      return d;
    }
    const std::string prefix = dir + "/" + u.name + "-" + std::to_string(p.uid) + "-";
    Script sc;
    // userdel refuses while the user has processes too; this says so before an archive is made for nothing.
    sc.raw("if " + Cmd("pgrep").arg("-u").arg(std::to_string(p.uid)).str() + " >/dev/null 2>&1; then echo " +
           ShellQuote("user " + u.name + " has running processes (pgrep -u " + std::to_string(p.uid) +
                      "); stop them, then apply again; nothing was archived or deleted") +
           " >&2; exit 1; fi");
    sc.add(Cmd("mkdir").arg("-p").arg("-m").arg("0700").arg(dir));
    sc.raw("rm -f -- " + ShellQuote(prefix) + "*.tar.gz.part");
    sc.raw("lf_archive=" + ShellQuote(prefix) + "\"$(date -u +%Y%m%dT%H%M%SZ)\".tar.gz");
    sc.add(Cmd("tar").arg("-C").arg(ParentOf(p.home)).arg("-czf").raw("\"$lf_archive.part\"").arg("--")
               .arg(p.home.substr(p.home.rfind('/') + 1)));
    sc.raw("tar -tzf \"$lf_archive.part\" >/dev/null");
    sc.raw("chmod 0600 \"$lf_archive.part\"");
    sc.raw("mv -f \"$lf_archive.part\" \"$lf_archive\"");
    c.summary = "user " + u.name + " (deleted: remove: archive; home " + p.home + " archived to " + prefix +
                "<UTC time>.tar.gz, then deleted)";
    c.command = sc.str() + "\n" + userdel + "\n" + Cmd("rm").arg("-rf").arg("--").arg(p.home).str();
    return d;
  }

  DiffResult DiffRetired(const NodeContext& ctx, const Parsed<PasswdEntry>& passwd, const Parsed<ShadowEntry>& shadow,
                         const std::set<std::string>& managed) const {
    std::set<std::string> wanted;
    for (const UserDef* u : UsersOnNode(ctx)) wanted.insert(u->name);
    DiffResult d;
    for (const UserDef* u : UsersOnNode(ctx))
      if (u->accounts == "directory" && managed.count(u->name) && passwd.by_name.count(u->name))
        d.warnings.push_back("user " + u->name + " lives in the directory but still has the local account labfleet "
                             "made on this node, which shadows the directory entry; delete it (userdel) when the "
                             "directory entry is in place");
    int locked = 0;
    for (const auto& name : managed) {
      if (wanted.count(name) || !passwd.by_name.count(name)) continue;
      auto sh = shadow.by_name.find(name);
      if (sh != shadow.by_name.end() && sh->second.expire >= 0 && sh->second.expire <= 1) {
        ++locked;
        continue;
      }
      const UserDef* u = ctx.inv.user(name);
      Change c;
      c.sign = '-';
      c.resource = "user:" + name;
      c.summary = "user " + name + " (locked: " + (u ? "no longer on this node" : "removed from inventory") + ")";
      c.reason = "locked by expiry (usermod -e 1), not deleted; set remove: true in the inventory to delete it";
      c.command = Cmd("usermod").arg("-e").arg("1").arg(name).str();
      d.changes.push_back(std::move(c));
    }
    if (d.changes.empty())
      d.noop = "nothing to do because no managed account left the inventory" +
               (locked ? " (" + std::to_string(locked) + " already locked)" : std::string());
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<UsersModule>());

}  // namespace
}  // namespace labfleet
