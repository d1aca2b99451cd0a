// ValidateInventory: the model's own offline checks (lab, nodes, user groups, users, keys, subordinate ID
// ranges), then every module's validate(). Each check has one stable code, documented in docs/validate.md.
// Messages name the other place involved ("... already used by 'yseong' (inventory/users.yaml:3:5)").
#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "engine/cidr.h"
#include "engine/module.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {
namespace {

bool LocLess(const Location& a, const Location& b) {
  return std::tie(a.file, a.line, a.col) < std::tie(b.file, b.line, b.col);
}

// Debian's rule for user and group names (adduser's NAME_REGEX, with the trailing '$' of machine accounts):
// ^[a-z_][a-z0-9_-]*[$]?$, at most 32 characters.
bool ValidAccountName(const std::string& s) {
  if (s.empty() || s.size() > 32) return false;
  if (!(std::islower((unsigned char)s[0]) || s[0] == '_')) return false;
  for (size_t i = 1; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
              (c == '$' && i + 1 == s.size());
    if (!ok) return false;
  }
  return true;
}

bool ValidNodeName(const std::string& s) {
  if (s.empty() || !std::isalnum((unsigned char)s[0])) return false;
  for (char c : s)
    if (!std::isalnum((unsigned char)c) && c != '-' && c != '_' && c != '.') return false;
  return true;
}

// The value written for `key` in a definition's raw map (for value locations); nullptr when absent.
const Value* Raw(const Value& raw, std::string_view key) { return raw.find(key); }

Location ValueLoc(const Value& raw, std::string_view key) {
  const Value* v = raw.find(key);
  return v && v->loc().known() ? v->loc() : KeyLoc(raw, key);
}

// ---------------------------------------------------------------- dates

struct Date {
  int y = 0, m = 0, d = 0;
  auto operator<=>(const Date&) const = default;
};

std::optional<Date> ParseDate(const std::string& s) {
  if (s.size() != 10 || s[4] != '-' || s[7] != '-') return std::nullopt;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9})
    if (!std::isdigit((unsigned char)s[i])) return std::nullopt;
  Date d{std::stoi(s.substr(0, 4)), std::stoi(s.substr(5, 2)), std::stoi(s.substr(8, 2))};
  std::chrono::year_month_day ymd{std::chrono::year(d.y), std::chrono::month(unsigned(d.m)),
                                  std::chrono::day(unsigned(d.d))};
  if (!ymd.ok()) return std::nullopt;
  return d;
}

Date Today() {
  auto now = std::chrono::floor<std::chrono::days>(std::chrono::system_clock::now());
  std::chrono::year_month_day ymd{now};
  return {int(ymd.year()), int(unsigned(ymd.month())), int(unsigned(ymd.day()))};
}

// ---------------------------------------------------------------- ssh keys

// Checks one authorized_keys line "type base64 [comment]" (ParseSshPublicKey). `who` names the user.
void CheckSshKey(const std::string& key, const Location& where, const std::string& who, Findings& f) {
  SyntaxError e;
  auto k = ParseSshPublicKey(key, &e);
  if (!k) {
    std::string msg = "ssh key of " + who + " " + e.what;
    if (e.code == "ssh-key-unknown-type") {
      std::string type = key.substr(0, key.find(' ', key.find_first_not_of(' ')));
      if (auto s = Suggest(TrimChars(type, " "), SshKeyTypes()))
        msg += "; did you mean '" + *s + "'?";
      else
        msg += "; expected a public key line like 'ssh-ed25519 AAAAC3Nza... user@host' (the contents of ~/.ssh/id_*.pub)";
    }
    f.error(where, e.code, msg);
    return;
  }
  if (k->dsa)
    f.warning(where, "ssh-key-dsa",
              "ssh key of " + who + " is a DSA key, which OpenSSH refuses by default since 7.0; use ed25519");
}

// ---------------------------------------------------------------- checks

void CheckLab(const Inventory& inv, Findings& f) {
  if (const Value* nets = inv.lab.find("reserved_networks"); nets && nets->is_seq()) {
    for (const auto& n : nets->items()) {
      if (!n.is_scalar()) continue;  // reported by the loader
      std::string err;
      if (!ParseCidr(n.str(), &err)) f.error(n.loc(), "invalid-cidr", "reserved network " + err);
    }
  }
}

void CheckNodes(const Inventory& inv, Findings& f) {
  std::vector<std::string> group_names;
  for (const auto& g : inv.groups) group_names.push_back(g.name);
  std::map<std::pair<std::string, int>, const NodeDef*> by_endpoint;
  for (const auto& n : inv.nodes) {
    if (!ValidNodeName(n.name))
      f.error(n.where, "invalid-node-name",
              "node name '" + n.name + "' may only use letters, digits, '.', '-' and '_' (it names files and "
              "appears in commands)");
    if (const Value* gs = Raw(n.raw, "groups"); gs && gs->is_seq()) {
      for (const auto& g : gs->items()) {
        if (!g.is_scalar() || inv.group(g.str())) continue;
        std::string msg = "node '" + n.name + "' is in group '" + g.str() + "', which is not defined";
        if (auto s = Suggest(g.str(), group_names))
          msg += "; did you mean '" + *s + "'?";
        else
          msg += " (define it under `groups:`)";
        f.error(g.loc(), "unknown-group", msg);
      }
    }
    if (n.address.empty()) continue;
    Location aloc = ValueLoc(n.raw, "address");
    bool looks_numeric = n.address.find_first_not_of("0123456789.") == std::string::npos;
    std::string err;
    if (n.address.find(':') != std::string::npos || looks_numeric) {
      if (!ParseIp(n.address, &err)) {
        f.error(aloc, "invalid-address", "address of node '" + n.name + "': " + err);
        continue;
      }
    } else if (!IsHostName(n.address)) {
      f.error(aloc, "invalid-address",
              "address of node '" + n.name + "' is neither an IP address nor a valid host name: '" + n.address +
                  "'");
      continue;
    }
    if (n.connection == "local") continue;
    int port = inv.ssh(n).port;
    auto [it, inserted] = by_endpoint.emplace(std::make_pair(n.address, port), &n);
    if (!inserted)
      f.error(aloc, "duplicate-address",
              "node '" + n.name + "' has the same address and ssh port (" + n.address + ":" +
                  std::to_string(port) + ") as node '" + it->second->name + "' (" + it->second->where.str() +
                  "); two names for one machine would be configured twice");
  }
}

struct GidOwner {
  long long gid;
  std::string name;
  std::string desc;  // "group 'x'" or "the personal group of user 'y'"
  Location where;
  bool personal;
};

void CheckAccounts(const Inventory& inv, Findings& f) {
  // Names.
  for (const auto& g : inv.user_groups)
    if (!ValidAccountName(g.name))
      f.error(g.where, "invalid-group-name",
              "group name '" + g.name + "' is not a valid Linux group name (lowercase letters, digits, '_' and '-', "
              "starting with a letter or '_', at most 32 characters)");
  for (const auto& u : inv.users)
    if (!ValidAccountName(u.name))
      f.error(u.where, "invalid-user-name",
              "user name '" + u.name + "' is not a valid Linux user name (lowercase letters, digits, '_' and '-', "
              "starting with a letter or '_', at most 32 characters)");

  // UIDs: low, duplicate.
  std::unordered_map<long long, const UserDef*> by_uid;
  for (const auto& u : inv.users) {
    if (u.uid < 0) continue;
    Location uloc = KeyLoc(u.raw, "uid");
    if (u.uid < 1000 && !u.system)
      f.error(uloc, "low-uid",
              "uid " + std::to_string(u.uid) + " of user '" + u.name +
                  "' is below 1000, the range of system accounts; use a uid >= 1000 or declare `system: true`");
    auto [it, inserted] = by_uid.emplace(u.uid, &u);
    if (!inserted)
      f.error(uloc, "duplicate-uid",
              "uid " + std::to_string(u.uid) + " of user '" + u.name + "' is already used by '" + it->second->name +
                  "' (" + KeyLoc(it->second->raw, "uid").str() + ")");
  }

  // GIDs and group names, including each user's personal group (named like the user, gid = uid).
  std::vector<GidOwner> owners;
  for (const auto& g : inv.user_groups) {
    if (g.gid < 0) continue;
    Location gloc = KeyLoc(g.raw, "gid");
    if (g.gid < 1000 && !g.system)
      f.error(gloc, "low-gid",
              "gid " + std::to_string(g.gid) + " of group '" + g.name +
                  "' is below 1000, the range of system groups; use a gid >= 1000 or declare `system: true`");
    owners.push_back({g.gid, g.name, "group '" + g.name + "'", gloc, false});
  }
  for (const auto& u : inv.users)
    if (u.uid >= 0 && u.primary_group.empty() && !u.remove)
      owners.push_back({u.uid, u.name, "the personal group of user '" + u.name + "'", KeyLoc(u.raw, "uid"), true});
  std::stable_sort(owners.begin(), owners.end(),
                   [](const GidOwner& a, const GidOwner& b) { return LocLess(a.where, b.where); });
  std::unordered_map<long long, const GidOwner*> by_gid;
  for (const auto& o : owners) {
    auto [it, inserted] = by_gid.emplace(o.gid, &o);
    if (inserted || (o.personal && it->second->personal)) continue;  // two users' uids: duplicate-uid says it
    std::string msg = "gid " + std::to_string(o.gid) + " of " + o.desc + " is already used by " + it->second->desc +
                      " (" + it->second->where.str() + ")";
    if (o.personal || it->second->personal) msg += "; give the user a primary_group or change the gid";
    f.error(o.where, "duplicate-gid", msg);
  }
  std::unordered_map<std::string, const UserDef*> personal_by_name;
  for (const auto& u : inv.users)
    if (u.primary_group.empty() && !u.remove) personal_by_name.emplace(u.name, &u);
  for (const auto& g : inv.user_groups) {
    auto it = personal_by_name.find(g.name);
    if (it == personal_by_name.end()) continue;
    f.error(g.where, "duplicate-group-name",
            "group '" + g.name + "' has the same name as the personal group of user '" + g.name + "' (" +
                it->second->where.str() + "); rename the group or set the user's primary_group");
  }

  // References from users to user groups, nodes and groups.
  std::unordered_set<std::string> targets;
  std::vector<std::string> target_names, ug_names;
  for (const auto& n : inv.nodes) targets.insert(n.name), target_names.push_back(n.name);
  for (const auto& g : inv.groups) targets.insert(g.name), target_names.push_back(g.name);
  for (const auto& g : inv.user_groups) ug_names.push_back(g.name);
  std::unordered_set<std::string> ug_set(ug_names.begin(), ug_names.end());
  auto unknown_ug = [&](const Value& v, const UserDef& u, const char* what) {
    if (!v.is_scalar() || ug_set.count(v.str())) return;
    std::string msg = std::string(what) + " '" + v.str() + "' of user '" + u.name + "' is not a user group";
    if (auto s = Suggest(v.str(), ug_names))
      msg += "; did you mean '" + *s + "'?";
    else
      msg += " (define it under `user_groups:`; for a group that already exists on the nodes, like docker or "
             "sudo, write `" + v.str() + ": { system: true }`)";
    f.error(v.loc(), "unknown-user-group", msg);
  };

  const Date today = Today();
  std::unordered_map<std::string, std::pair<const UserDef*, Location>> key_owner;
  for (const auto& u : inv.users) {
    std::string who = "user '" + u.name + "'";
    if (const Value* on = Raw(u.raw, "on"); on && on->is_seq()) {
      for (const auto& t : on->items()) {
        if (!t.is_scalar() || t.str() == "all" || targets.count(t.str())) continue;
        std::string msg = "'on' of user '" + u.name + "' names '" + t.str() + "', which is neither a node nor a group";
        if (auto s = Suggest(t.str(), target_names)) msg += "; did you mean '" + *s + "'?";
        f.error(t.loc(), "unknown-on-target", msg);
      }
    }
    if (const Value* gs = Raw(u.raw, "groups"); gs && gs->is_seq())
      for (const auto& g : gs->items()) unknown_ug(g, u, "group");
    if (const Value* pg = Raw(u.raw, "primary_group"); pg && pg->is_scalar()) unknown_ug(*pg, u, "primary group");

    if (!u.expires.empty()) {
      Location eloc = ValueLoc(u.raw, "expires");
      auto d = ParseDate(u.expires);
      if (!d)
        f.error(eloc, "invalid-date",
                "'expires' of user '" + u.name + "' is not a date: '" + u.expires +
                    "' (write YYYY-MM-DD, a real calendar date)");
      else if (*d < today && !u.remove)
        f.warning(eloc, "account-expired",
                  "the account of user '" + u.name + "' expired on " + u.expires +
                      "; extend 'expires' or remove the account (`remove: true`)");
    }
    // Values that end up in /etc/passwd (useradd -s/-d/-c) and in chpasswd's "user:hash" lines.
    if (!u.shell.empty() && u.shell[0] != '/' && FindControl(u.shell) == std::string::npos)
      f.error(ValueLoc(u.raw, "shell"), "shell-not-absolute",
              "shell of user '" + u.name + "' must be an absolute path like /bin/bash, got '" + u.shell + "'");
    else if (Raw(u.raw, "shell"))
      Report(f, ValueLoc(u.raw, "shell"), "shell " + Quoted(u.shell) + " of user '" + u.name + "'",
             NormalizeAbsolutePath(u.shell).error);
    if (!u.home.empty() && u.home[0] != '/' && FindControl(u.home) == std::string::npos)
      f.error(ValueLoc(u.raw, "home"), "home-not-absolute",
              "home of user '" + u.name + "' must be an absolute path like /home/" + u.name + ", got '" + u.home +
                  "'");
    else if (!u.home.empty())
      Report(f, ValueLoc(u.raw, "home"), "home " + Quoted(u.home) + " of user '" + u.name + "'",
             NormalizeAbsolutePath(u.home).error);
    if (!u.full_name.empty())
      Report(f, ValueLoc(u.raw, "full_name"), "full_name " + Quoted(u.full_name) + " of user '" + u.name + "'",
             CheckGecos(u.full_name));
    if (!u.password_hash.empty()) {
      // The value is a secret: never quoted in the message.
      if (auto e = CheckPasswordHash(u.password_hash))
        f.error(ValueLoc(u.raw, "password_hash"), "password-hash-invalid",
                "password_hash of user '" + u.name + "' " + e->what +
                    " (it should start with '$', e.g. from `mkpasswd -m yescrypt`); never put a plain-text password "
                    "in the inventory");
    }

    if (const Value* keys = Raw(u.raw, "ssh_keys"); keys && keys->is_seq()) {
      for (const auto& k : keys->items()) {
        if (!k.is_scalar()) continue;
        size_t before = f.items().size();
        CheckSshKey(k.str(), k.loc(), who, f);
        if (f.items().size() != before) continue;
        // The same key for two people: usually a copy-paste mistake, and it lets each log in as the other.
        std::string data = k.str();
        size_t b = data.find_first_of(" \t");
        size_t e = b == std::string::npos ? b : data.find_first_of(" \t", data.find_first_not_of(" \t", b));
        std::string body = b == std::string::npos ? data : data.substr(0, e);
        auto [it, inserted] = key_owner.emplace(body, std::make_pair(&u, k.loc()));
        if (!inserted && it->second.first != &u)
          f.warning(k.loc(), "ssh-key-shared",
                    "ssh key of user '" + u.name + "' is also a key of user '" + it->second.first->name + "' (" +
                        it->second.second.str() + "); each can log in as the other");
      }
    }
  }

  // Subordinate ID ranges of rootless Docker users: inside the 32-bit ID space, not overlapping each other,
  // not containing any real uid or gid of the inventory.
  struct Range {
    long long start, end;  // [start, end)
    const UserDef* user;
    Location where;
  };
  std::vector<Range> ranges;
  for (const auto& u : inv.users) {
    if (!u.rootless_docker || u.remove || (u.uid < 0 && u.subid_start < 0)) continue;
    SubIdRange r = SubIds(u);
    Location where = u.subid_start >= 0 ? KeyLoc(u.raw, "subids") : KeyLoc(u.raw, "rootless_docker");
    if (r.start < 65536 || r.start + r.count > 4294967296LL) {
      f.error(where, "subid-out-of-range",
              "subuid/subgid range " + std::to_string(r.start) + "-" + std::to_string(r.start + r.count - 1) +
                  " of user '" + u.name + "' must lie between 65536 and 4294967295" +
                  (u.subid_start < 0 ? " (it is derived from uid " + std::to_string(u.uid) +
                                           "; set `subids: {start, count}` explicitly)"
                                     : std::string()));
      continue;
    }
    ranges.push_back({r.start, r.start + r.count, &u, where});
  }
  auto range_str = [](const Range& r) { return std::to_string(r.start) + "-" + std::to_string(r.end - 1); };
  std::vector<Range> sorted = ranges;
  std::sort(sorted.begin(), sorted.end(), [](const Range& a, const Range& b) {
    return std::tie(a.start, a.end) < std::tie(b.start, b.end);
  });
  const Range* widest = nullptr;  // the range reaching furthest so far
  for (const auto& r : sorted) {
    if (widest && r.start < widest->end) {
      // Report at whichever of the two was written later.
      const Range& a = LocLess(widest->where, r.where) ? *widest : r;
      const Range& b = &a == widest ? r : *widest;
      f.error(b.where, "subid-overlap",
              "subuid/subgid range " + range_str(b) + " of user '" + b.user->name + "' overlaps the range " +
                  range_str(a) + " of user '" + a.user->name + "' (" + a.where.str() +
                  "); containers of one could read the files of the other");
    }
    if (!widest || r.end > widest->end) widest = &r;
  }
  struct Id {
    long long id;
    std::string desc;
    Location where;
  };
  std::vector<Id> ids;
  for (const auto& u : inv.users)
    if (u.uid >= 0) ids.push_back({u.uid, "uid " + std::to_string(u.uid) + " of user '" + u.name + "'", KeyLoc(u.raw, "uid")});
  for (const auto& g : inv.user_groups)
    if (g.gid >= 0)
      ids.push_back({g.gid, "gid " + std::to_string(g.gid) + " of group '" + g.name + "'", KeyLoc(g.raw, "gid")});
  std::sort(ids.begin(), ids.end(), [](const Id& a, const Id& b) { return a.id < b.id; });
  for (const auto& r : ranges) {
    auto it = std::lower_bound(ids.begin(), ids.end(), r.start, [](const Id& a, long long v) { return a.id < v; });
    for (; it != ids.end() && it->id < r.end; ++it)
      f.error(r.where, "subid-contains-id",
              "subuid/subgid range " + range_str(r) + " of user '" + r.user->name + "' contains " + it->desc + " (" +
                  it->where.str() + "); files of that account would be writable from the user's containers");
  }
}

// ---------------------------------------------------------------- locking ourselves out

// labfleet logs in as ssh.user (root by default) and, with `become: sudo`, gains root through that user's
// sudo. Retiring, expiring, locking or disabling that account, emptying its keys, or replacing anything under
// its ~/.ssh with a files: entry would leave labfleet unable to reach the node: errors. Files that decide
// logins for everyone (sshd_config*, /etc/pam.d/*, /etc/sudoers*, nsswitch.conf, passwd/shadow/group) are
// managed legitimately: a warning, the apply side proves a fresh login after changing them.
void CheckLockout(const Inventory& inv, Findings& f) {
  const Date today = Today();
  std::set<std::string> reported;
  const NodeDef* node = nullptr;
  // Once per place, code and node: the same finding on the nodes of a group becomes one (MergeNodeFindings)
  // naming them all.
  auto once = [&](const Location& where, const std::string& code) {
    return reported.insert(where.str() + "|" + code + "|" + node->name).second;
  };
  for (const auto& n : inv.nodes) {
    node = &n;
    if (n.connection == "local") continue;
    const SshSettings ssh = inv.ssh(n);
    const std::string& login = ssh.user;
    const std::string role = ssh.become == "sudo" ? "labfleet's login user (ssh.user, whose sudo it uses)"
                                                  : "labfleet's login user (ssh.user)";
    const UserDef* u = inv.user(login);
    if (u && !inv.user_on_node(*u, n)) u = nullptr;
    auto lock = [&](const Location& where, const std::string& what) {
      if (once(where, "lockout-login-user"))
        f.error(where, "lockout-login-user",
                "user '" + login + "' is " + role + " on node '" + n.name + "'; " + what +
                    " would lock labfleet out of the node. Point ssh.user at another account first (and apply), "
                    "then change this one");
    };
    if (u) {
      if (u->remove) lock(ValueLoc(u->raw, "remove"), "removing it");
      if (auto d = ParseDate(u->expires); d && *d < today) lock(ValueLoc(u->raw, "expires"), "its expired date " + u->expires);
      static const std::set<std::string> kNoLogin = {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false",
                                                     "/usr/bin/false"};
      if (kNoLogin.count(u->shell)) lock(ValueLoc(u->raw, "shell"), "the shell " + u->shell);
      if (!u->password_hash.empty() && u->password_hash[0] == '!')
        lock(ValueLoc(u->raw, "password_hash"), "a locked password_hash ('!...'; sshd refuses locked accounts)");
      if (const Value* keys = u->raw.find("ssh_keys"); keys && (keys->is_null() || (keys->is_seq() && keys->items().empty())))
        lock(ValueLoc(u->raw, "ssh_keys"), "an empty ssh_keys list (authorized_keys is managed exclusively)");
      if (ssh.become == "sudo" && !u->remove) {
        for (const char* g : {"sudo", "wheel", "admin"}) {
          const UserGroupDef* ug = inv.user_group(g);
          if (!ug || std::find(u->groups.begin(), u->groups.end(), g) != u->groups.end()) continue;
          Location where = u->raw.find("groups") ? ValueLoc(u->raw, "groups") : u->where;
          if (once(where, "lockout-sudo"))
            f.warning(where, "lockout-sudo",
                      "labfleet uses sudo as '" + login + "' on node '" + n.name + "', and group '" + g +
                          "' is managed by the inventory without this user: apply takes '" + login +
                          "' out of it. If its sudo comes from that group, add '" + g + "' to its groups");
        }
      }
    }
    const std::string home = u ? HomeOf(*u) : login == "root" ? "/root" : "/home/" + login;
    Value settings = inv.settings(n);
    std::vector<const Value*> paths;
    if (const Value* files = settings.find("files"); files && files->is_seq())
      for (const auto& item : files->items())
        if (const Value* p = item.find("path"); p && p->is_scalar()) paths.push_back(p);
    if (const Value* svcs = settings.find("services"); svcs && svcs->is_map())
      for (const auto& e : svcs->entries())
        if (const Value* cfg = e.value.find("config"); cfg && cfg->is_seq())
          for (const auto& item : cfg->items())
            if (const Value* p = item.find("path"); p && p->is_scalar()) paths.push_back(p);
    auto under = [](const std::string& p, const std::string& dir) {
      return p == dir || (p.size() > dir.size() && p.compare(0, dir.size(), dir) == 0 && p[dir.size()] == '/');
    };
    for (const Value* pv : paths) {
      PathResult pr = NormalizeAbsolutePath(pv->str());
      if (pr.error) continue;  // reported by the files module
      const std::string& p = pr.path;
      if (under(p, home + "/.ssh")) {
        if (once(pv->loc(), "lockout-file"))
          f.error(pv->loc(), "lockout-file",
                  "file " + p + " is in the ~/.ssh of '" + login + "', " + role + " on node '" + n.name +
                      "'; replacing it could lock labfleet out. Manage that user's keys with users: ssh_keys "
                      "(validated) instead");
        continue;
      }
      // Drop-ins below /etc/ssh/sshd_config.d/ are the documented way to add Match blocks: not warned about.
      bool risky = p == "/etc/ssh/sshd_config" || under(p, "/etc/pam.d") ||
                   p.rfind("/etc/sudoers", 0) == 0 || p == "/etc/nsswitch.conf" || p == "/etc/passwd" ||
                   p == "/etc/shadow" || p == "/etc/group" || p == "/etc/gshadow" || under(p, "/etc/security");
      if (risky && once(pv->loc(), "lockout-risk-file"))
        f.warning(pv->loc(), "lockout-risk-file",
                  "file " + p + " decides who may log in (or use sudo) on node '" + n.name +
                      "'; a mistake in it locks labfleet out: apply proves a fresh login after changing it, keep "
                      "a root console at hand");
    }
  }
}

// ---------------------------------------------------------------- files a module writes

// A `files:` entry (or a service's `config` file) for a path a module writes on the same node (/etc/hosts,
// /etc/fstab, daemon.json, the sshd drop-in, ...): apply would write it twice per run, each undoing the other.
// No central list: every module says which files it writes on a node (Module::owned_files).
void CheckOwnedFiles(const Inventory& inv, Findings& f) {
  for (const auto& n : inv.nodes) {
    Value settings = inv.settings(n);
    std::vector<const Value*> paths;
    if (const Value* files = settings.find("files"); files && files->is_seq())
      for (const auto& item : files->items())
        if (const Value* p = item.find("path"); p && p->is_scalar()) paths.push_back(p);
    if (const Value* svcs = settings.find("services"); svcs && svcs->is_map())
      for (const auto& e : svcs->entries())
        if (const Value* cfg = e.value.find("config"); cfg && cfg->is_seq())
          for (const auto& item : cfg->items())
            if (const Value* p = item.find("path"); p && p->is_scalar()) paths.push_back(p);
    if (paths.empty()) continue;
    NodeContext ctx{inv, n, settings};
    std::map<std::string, std::pair<std::string, std::string>> owned;  // path -> (module, by)
    for (const auto& m : Modules())
      for (auto& o : m->owned_files(ctx)) owned.emplace(o.path, std::make_pair(m->name(), o.by));
    if (owned.empty()) continue;
    for (const Value* pv : paths) {
      PathResult pr = NormalizeAbsolutePath(pv->str());
      if (pr.error) continue;  // reported by the files module
      auto it = owned.find(pr.path);
      if (it == owned.end()) continue;
      f.error(pv->loc(), "file-owned-by-module",
              "file " + pr.path + " is written by the " + it->second.first + " module on node '" + n.name +
                  "' (from `" + it->second.second + "`); with this entry too, every apply would write it twice, "
                  "each undoing the other. Remove this entry and set what it should say through `" +
                  it->second.second + "`");
    }
  }
}

// ---------------------------------------------------------------- one finding for many nodes

// The same finding on many nodes (a group's `sshd: { Port: ... }` on 39 nodes) is reported once, at its place,
// naming every node: findings equal but for the one node they name ("node 'x'" or "(node x)") are merged into
// "nodes 'a', 'b', 'c'" / "(nodes a, b, c)".
void MergeNodeFindings(const Inventory& inv, Findings& findings) {
  std::unordered_set<std::string_view> names;
  for (const auto& n : inv.nodes) names.insert(n.name);
  struct Group {
    Finding f;
    size_t begin = std::string::npos, end = 0;  // the "node ..." part of the first message
    bool quoted = true;
    std::vector<std::string> nodes;
  };
  std::vector<Group> groups;
  std::unordered_map<std::string, size_t> index;
  for (const auto& x : findings.items()) {
    const std::string& m = x.message;
    size_t hits = 0, begin = 0, end = 0;
    bool quoted = true;
    std::string name;
    for (const auto& [open, close, q] : {std::tuple{"node '", '\'', true}, std::tuple{"(node ", ')', false}}) {
      const std::string_view o(open);
      for (size_t pos = m.find(o); pos != std::string::npos; pos = m.find(o, pos + 1)) {
        size_t b = pos + o.size(), e = m.find(close, b);
        if (e == std::string::npos || !names.count(std::string_view(m).substr(b, e - b))) continue;
        ++hits, begin = pos + (q ? 0 : 1), end = q ? e + 1 : e, quoted = q, name = m.substr(b, e - b);
      }
    }
    if (hits != 1) {
      groups.push_back({x, std::string::npos, 0, true, {}});
      continue;
    }
    std::string key = x.where.str() + "\x1f" + x.code + "\x1f" + char('0' + int(x.severity)) + "\x1f" +
                      m.substr(0, begin) + "\x1f" + m.substr(end) + "\x1f" + (quoted ? "q" : "p");
    auto [it, fresh] = index.emplace(key, groups.size());
    if (fresh) {
      groups.push_back({x, begin, end, quoted, {name}});
    } else if (auto& ns = groups[it->second].nodes; std::find(ns.begin(), ns.end(), name) == ns.end()) {
      ns.push_back(name);
    }
  }
  Findings out;
  for (auto& g : groups) {
    if (g.nodes.size() > 1) {
      std::string list;
      for (const auto& n : g.nodes) list += (list.empty() ? "" : ", ") + (g.quoted ? "'" + n + "'" : n);
      g.f.message = g.f.message.substr(0, g.begin) + "nodes " + list + g.f.message.substr(g.end);
    }
    out.add(std::move(g.f));
  }
  findings = std::move(out);
}

}  // namespace

void ValidateInventory(const Inventory& inv, Findings& findings) {
  CheckLab(inv, findings);
  CheckNodes(inv, findings);
  CheckAccounts(inv, findings);
  CheckLockout(inv, findings);
  CheckOwnedFiles(inv, findings);
  for (const auto& m : Modules()) m->validate(inv, findings);
  MergeNodeFindings(inv, findings);
}

}  // namespace labfleet
