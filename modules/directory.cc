// directory: the lab's LDAP directory (lab.directory) holds the accounts marked `accounts: directory`. Runs only
// on lab.directory.server, agentless: reads the subtree with `ldapsearch -Y EXTERNAL -H ldapi:///` as root there
// and writes with `ldapmodify` the same way (no directory password anywhere). Users become
// uid=NAME,ou=people,BASE (account + posixAccount + shadowAccount), groups cn=NAME,ou=groups,BASE (posixGroup
// with memberUid). `remove` deletes the entry. Entries under the base the inventory does not name are listed as
// warnings, never changed or deleted. Passwords are never read (the search asks for named attributes only) nor
// written. With `ssh_keys: true` a user's inventory ssh_keys become sshPublicKey values (objectClass
// ldapPublicKey, the openssh-lpk schema); labfleet adds that schema to cn=config (ldapadd over ldapi:///) when the
// server lacks it. docs/directory.md.
#include <algorithm>
#include <set>

#include "modules/facts/accounts.h"
#include "modules/facts/ldif.h"
#include "engine/module.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {
namespace {

const std::vector<std::string> kDirectoryKeys = {"server", "base", "uri", "ca", "ssh_keys"};
const std::vector<std::string> kAttrs = {"objectClass",   "uid",        "cn",           "uidNumber", "gidNumber",
                                         "homeDirectory", "loginShell", "shadowExpire", "memberUid", "ou"};
constexpr size_t kMaxLdif = 16u << 20;  // what the probe reads at most
constexpr const char* kExitMarker = "# labfleet: ldapsearch exit ";

struct Directory {
  std::string server, base, base_norm;
  bool ssh_keys = false;  // sshPublicKey entries (openssh-lpk schema)
};

// The openssh-lpk schema (the public definition OpenSSH-LPK and SSSD's ldap_user_ssh_public_key use): one
// attribute, one auxiliary class, as a cn=config schema entry.
constexpr const char* kLpkAttr =
    "( 1.3.6.1.4.1.24552.500.1.1.1.13 NAME 'sshPublicKey' DESC 'MANDATORY: OpenSSH Public key' "
    "EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 )";
constexpr const char* kLpkClass =
    "( 1.3.6.1.4.1.24552.500.1.1.2.0 NAME 'ldapPublicKey' SUP top AUXILIARY "
    "DESC 'MANDATORY: OpenSSH LPK objectclass' MAY ( sshPublicKey $ uid ) )";

// lab.directory as far as it is usable (validate reports the rest).
std::optional<Directory> ReadDirectory(const Inventory& inv) {
  const Value* d = inv.lab.find("directory");
  if (!d || !d->is_map()) return std::nullopt;
  const Value* server = d->find("server");
  const Value* base = d->find("base");
  if (!server || !server->is_scalar() || !base || !base->is_scalar()) return std::nullopt;
  auto norm = NormalizeDn(base->str());
  if (!norm) return std::nullopt;
  const Value* keys = d->find("ssh_keys");
  return Directory{server->str(), base->str(), *norm, keys && keys->is_scalar() && keys->str() == "true"};
}

std::string UserDn(const std::string& name, const Directory& d) { return "uid=" + DnEscape(name) + ",ou=people," + d.base; }
std::string GroupDn(const std::string& name, const Directory& d) { return "cn=" + DnEscape(name) + ",ou=groups," + d.base; }
std::string Norm(const std::string& dn) { return NormalizeDn(dn).value_or(dn); }

// The subtree as the probe read it.
struct LiveDirectory {
  bool complete = false;  // the exit marker was the last line: nothing was cut
  int exit = -1;
  std::map<std::string, LdifEntry> by_dn;  // normalised DN -> entry
  std::vector<std::string> order;          // normalised DNs, in the order read
  LdifParse parse;
};

LiveDirectory ParseLive(std::string_view out) {
  LiveDirectory live;
  std::string_view body = out;
  while (!body.empty() && body.back() == '\n') body.remove_suffix(1);
  size_t nl = body.rfind('\n');
  std::string_view last = nl == std::string_view::npos ? body : body.substr(nl + 1);
  if (last.starts_with(kExitMarker)) {
    live.complete = true;
    live.exit = std::atoi(std::string(last.substr(std::string_view(kExitMarker).size())).c_str());
    body = nl == std::string_view::npos ? std::string_view() : body.substr(0, nl);
  }
  live.parse = ParseLdif(body);
  for (const auto& e : live.parse.entries) {
    std::string n = Norm(e.dn);
    if (live.by_dn.emplace(n, e).second) live.order.push_back(n);
  }
  return live;
}

Fact<LiveDirectory> LdapFact(const Directory& d) {
  std::vector<std::string> attrs = kAttrs;
  if (d.ssh_keys) attrs.push_back("sshPublicKey");
  Cmd c("sh");
  c.arg("-c")
      .arg("{ ldapsearch -Q -Y EXTERNAL -H ldapi:/// -LLL -b \"$1\" -s sub '(objectClass=*)' " + Join(attrs, " ") +
           "; echo \"" + kExitMarker + "$?\"; } | head -c " + std::to_string(kMaxLdif))
      .arg("ldap-probe")
      .arg(d.base);
  return Fact<LiveDirectory>("directory:ldapsearch", c.str(), ParseLive);
}

// Whether cn=config holds the openssh-lpk schema: the DNs of schema entries named *openssh-lpk, then the marker.
Fact<LiveDirectory> LpkSchemaFact() {
  Cmd c("sh");
  c.arg("-c").arg("{ ldapsearch -Q -Y EXTERNAL -H ldapi:/// -LLL -b cn=schema,cn=config -s one "
                  "'(cn=*openssh-lpk)' dn; echo \"" + std::string(kExitMarker) + "$?\"; } | head -c 65536");
  return Fact<LiveDirectory>("directory:lpk-schema", c.str(), ParseLive);
}

struct WantSchema {};

// One entry as the inventory wants it: attribute -> values; objectClass values are only added, never removed.
struct WantEntry {
  std::string dn;
  std::string what;  // "user alice", "group gpu-users"
  bool remove = false;
  std::vector<std::pair<std::string, std::vector<std::string>>> attrs;
};

std::string ModifyCommand(const std::string& ldif) {
  return Cmd("printf").arg("%s").arg(ldif).raw("|").then(Cmd("ldapmodify").arg("-Q").arg("-Y").arg("EXTERNAL").arg("-H").arg("ldapi:///")).str();
}

std::vector<std::string> Lowered(std::vector<std::string> v) {
  for (auto& s : v)
    for (auto& c : s) c = char(std::tolower((unsigned char)c));
  return v;
}

// Why the live directory cannot be planned against, "" when it can.
std::string LiveError(const LiveDirectory& live, const ProbeOutput* out, const Directory& d) {
  if (!out) return "the directory probe did not run";
  if (!live.complete)
    return "ldapsearch of " + d.base + " gave no complete answer (output cut at " + std::to_string(kMaxLdif) +
           " bytes, or the probe was killed): " + EscapeControls(out->err) + "; nothing is planned for the directory";
  if (live.exit == 32)
    return "the base " + d.base + " does not exist in the directory on " + d.server +
           "; create its database and base entry (docs/directory.md), then plan again";
  if (live.exit != 0)
    return "ldapsearch -Y EXTERNAL -H ldapi:/// failed (exit " + std::to_string(live.exit) + "): " +
           EscapeControls(out->err.substr(0, out->err.find('\n'))) +
           "; is slapd running on " + d.server + " with an ldapi:/// listener and root mapped to a DN that may "
           "manage " + d.base + "?";
  return "";
}

DiffResult DiffEntry(const WantEntry& want, const LiveDirectory& live) {
  auto it = live.by_dn.find(Norm(want.dn));
  if (want.remove) {
    if (it == live.by_dn.end()) return Noop("nothing to do because " + want.what + " has no entry (remove)");
    DiffResult d;
    Change& c = d.changes.emplace_back();
    c.sign = '-';
    c.summary = "ldap " + want.what + " (delete " + want.dn + ")";
    c.reason = "remove in the inventory";
    c.diff = "dn: " + EscapeControls(want.dn) + "\n- (entry deleted)\n";
    c.command = ModifyCommand(LdifBuilder().dn(want.dn).changetype("delete").str());
    return d;
  }
  if (it == live.by_dn.end()) {
    LdifBuilder b;
    b.dn(want.dn).changetype("add");
    std::string diff = "dn: " + EscapeControls(want.dn) + "\n";
    for (const auto& [a, vs] : want.attrs)
      for (const auto& v : vs) {
        b.attr(a, v);
        diff += "+ " + a + ": " + EscapeControls(v) + "\n";
      }
    DiffResult d;
    Change& c = d.changes.emplace_back();
    c.sign = '+';
    c.summary = "ldap " + want.what + " (" + want.dn + ")";
    c.reason = "absent from the directory";
    c.diff = diff;
    c.command = ModifyCommand(b.str());
    return d;
  }
  const LdifEntry& e = it->second;
  LdifBuilder b;
  b.dn(want.dn).changetype("modify");
  std::string diff = "dn: " + EscapeControls(want.dn) + "\n";
  std::vector<std::string> what;
  for (const auto& [a, vs] : want.attrs) {
    std::vector<std::string> have = e.values(a);
    if (a == "objectClass") {
      std::vector<std::string> lower = Lowered(have), missing;
      for (const auto& v : vs)
        if (std::find(lower.begin(), lower.end(), Lowered({v})[0]) == lower.end()) missing.push_back(v);
      if (missing.empty()) continue;
      b.op("add", a);
      for (const auto& v : missing) {
        b.attr(a, v);
        diff += "+ " + a + ": " + v + "\n";
      }
      b.end_op();
      what.push_back("+" + a);
      continue;
    }
    std::vector<std::string> hs = have, ws = vs;
    std::sort(hs.begin(), hs.end());
    std::sort(ws.begin(), ws.end());
    if (hs == ws) continue;
    if (ws.empty()) {
      b.op("delete", a).end_op();
      for (const auto& v : have) diff += "- " + a + ": " + EscapeControls(v) + "\n";
      what.push_back("-" + a);
      continue;
    }
    b.op("replace", a);
    for (const auto& v : vs) b.attr(a, v);
    b.end_op();
    if (have.size() == 1 && vs.size() == 1) {
      diff += "~ " + a + ": " + EscapeControls(have[0]) + " -> " + EscapeControls(vs[0]) + "\n";
    } else {
      for (const auto& v : hs)
        if (!std::binary_search(ws.begin(), ws.end(), v)) diff += "- " + a + ": " + EscapeControls(v) + "\n";
      for (const auto& v : ws)
        if (!std::binary_search(hs.begin(), hs.end(), v)) diff += "+ " + a + ": " + EscapeControls(v) + "\n";
    }
    what.push_back(a);
  }
  if (what.empty()) return Noop("nothing to do because the entry of " + want.what + " matches");
  DiffResult d;
  Change& c = d.changes.emplace_back();
  c.sign = '~';
  c.summary = "ldap " + want.what + " (" + Join(what, ", ") + ")";
  c.reason = "the entry " + want.dn + " differs";
  c.diff = diff;
  c.command = ModifyCommand(b.str());
  return d;
}

// The gid of a directory user's primary group, -1 when it is not known offline.
long long PrimaryGid(const Inventory& inv, const UserDef& u) {
  if (u.primary_group.empty()) return u.uid;
  const UserGroupDef* g = inv.user_group(u.primary_group);
  return g ? g->gid : -1;
}

std::vector<const UserDef*> DirectoryUsers(const Inventory& inv) {
  std::vector<const UserDef*> out;
  for (const auto& u : inv.users)
    if (u.accounts == "directory") out.push_back(&u);
  return out;
}

// Every entry the inventory names under the base, in apply order (containers, groups, users).
std::vector<WantEntry> Wanted(const Inventory& inv, const Directory& d) {
  std::vector<WantEntry> out;
  for (const char* ou : {"people", "groups"})
    out.push_back({"ou=" + std::string(ou) + "," + d.base, "ou " + std::string(ou), false,
                   {{"objectClass", {"organizationalUnit"}}, {"ou", {ou}}}});
  const auto users = DirectoryUsers(inv);
  std::set<std::string> group_names;
  for (const UserDef* u : users) {
    if (!u->primary_group.empty()) group_names.insert(u->primary_group);
    for (const auto& g : u->groups) group_names.insert(g);
  }
  for (const auto& g : inv.user_groups) {
    if (!group_names.count(g.name) || g.gid < 0) continue;
    std::vector<std::string> members;
    for (const UserDef* u : users)
      if (!u->remove && std::find(u->groups.begin(), u->groups.end(), g.name) != u->groups.end()) members.push_back(u->name);
    out.push_back({GroupDn(g.name, d), "group " + g.name, false,
                   {{"objectClass", {"posixGroup"}}, {"cn", {g.name}}, {"gidNumber", {std::to_string(g.gid)}},
                    {"memberUid", members}}});
  }
  for (const UserDef* u : users) {
    if (!u->primary_group.empty()) continue;
    out.push_back({GroupDn(u->name, d), "group " + u->name, u->remove,
                   {{"objectClass", {"posixGroup"}}, {"cn", {u->name}}, {"gidNumber", {std::to_string(u->uid)}},
                    {"memberUid", {}}}});
  }
  for (const UserDef* u : users) {
    WantEntry w{UserDn(u->name, d), "user " + u->name, u->remove, {}};
    if (!u->remove) {
      long long expire = u->expires.empty() ? -1 : DaysSinceEpoch(u->expires);
      w.attrs = {{"objectClass", {"account", "posixAccount", "shadowAccount"}},
                 {"uid", {u->name}},
                 {"cn", {u->full_name.empty() ? u->name : u->full_name}},
                 {"uidNumber", {std::to_string(u->uid)}},
                 {"gidNumber", {std::to_string(PrimaryGid(inv, *u))}},
                 {"homeDirectory", {HomeOf(*u)}},
                 {"loginShell", {u->shell}},
                 {"shadowExpire", expire < 0 ? std::vector<std::string>{} : std::vector<std::string>{std::to_string(expire)}}};
      if (d.ssh_keys) {
        // ldapPublicKey only where there are keys (it is never removed: keys gone means sshPublicKey deleted)
        if (!u->ssh_keys.empty()) w.attrs[0].second.push_back("ldapPublicKey");
        w.attrs.push_back({"sshPublicKey", u->ssh_keys});
      }
    }
    out.push_back(std::move(w));
  }
  return out;
}

struct Unlisted {};

class DirectoryModule : public Module {
 public:
  std::string name() const override { return "directory"; }
  int order() const override { return 8; }

  void validate(const Inventory& inv, Findings& f) const override {
    const Value* d = inv.lab.find("directory");
    const bool any = !DirectoryUsers(inv).empty();
    if (!d || !d->is_map()) {
      if (!any || (d && !d->is_null())) return;  // a directory that is not a map: the loader said so (wrong-type)
      for (const UserDef* u : DirectoryUsers(inv)) {
        Location where = u->raw.find("accounts") ? KeyLoc(u->raw, "accounts") : KeyLoc(inv.lab, "accounts");
        f.error(where, "missing-required",
                "user '" + u->name + "' has accounts: directory but the lab has no directory; add `directory: { "
                "server: NODE, base: \"dc=lab,dc=example\" }` to the lab section (docs/directory.md)");
        return;
      }
    }
    MapReader r(*d, "lab.directory", KeyLoc(inv.lab, "directory"), f, kDirectoryKeys);
    r.require("server", "name the node that runs the LDAP server (slapd)");
    r.require("base", "give the base DN, e.g. base: \"dc=lab,dc=example\"");
    if (auto s = r.str("server"); s && !inv.node(*s)) {
      std::vector<std::string> names;
      for (const auto& n : inv.nodes) names.push_back(n.name);
      std::string msg = "lab.directory.server '" + *s + "' is not a node of the inventory";
      if (auto sug = Suggest(*s, names)) msg += "; did you mean '" + *sug + "'?";
      f.error(r.get("server")->loc(), "unknown-node", msg);
    }
    if (auto b = r.str("base")) {
      std::string why;
      if (!NormalizeDn(*b, &why))
        f.error(r.get("base")->loc(), "invalid-dn",
                "lab.directory.base " + Quoted(*b) + " is not a DN (" + why + "); write it like dc=lab,dc=example");
    }
    if (auto u = r.str("uri")) {
      SyntaxError e;
      if (!ParseUrl(*u, {"ldap", "ldaps"}, &e))
        f.error(r.get("uri")->loc(), e.code, "lab.directory.uri " + Quoted(*u) + " " + e.what + " (ldaps://HOST or ldap://HOST)");
    }
    if (auto ca = r.str("ca")) CheckCa(inv, *ca, r.get("ca")->loc(), f);
    if (const Value* k = r.get("ssh_keys"); k && (!k->is_scalar() || (k->str() != "true" && k->str() != "false")))
      f.error(k->loc(), "wrong-type", "lab.directory.ssh_keys must be true or false");
    const Value* keys_on = r.get("ssh_keys");
    for (const UserDef* u : DirectoryUsers(inv)) {
      if (!u->ssh_keys.empty() && !(keys_on && keys_on->is_scalar() && keys_on->str() == "true"))
        f.error(KeyLoc(u->raw, "ssh_keys"), "directory-ssh-keys",
                "user '" + u->name + "' lives in the directory, where labfleet keeps her ssh_keys only with "
                "`ssh_keys: true` in lab.directory (the openssh-lpk schema; clients read them with "
                "sss_ssh_authorizedkeys); set it, or drop ssh_keys");
      if (!u->password_hash.empty())
        f.error(KeyLoc(u->raw, "password_hash"), "directory-password",
                "user '" + u->name + "' lives in the directory: labfleet never writes passwords there; remove "
                "password_hash and set it with ldappasswd");
      if (!u->primary_group.empty() && !inv.user_group(u->primary_group))
        f.error(KeyLoc(u->raw, "primary_group"), "unknown-group",
                "the primary group '" + u->primary_group + "' of directory user '" + u->name +
                    "' is not an inventory user group; its gid must be known to write gidNumber");
      else if (!u->primary_group.empty() && inv.user_group(u->primary_group)->gid < 0)
        f.error(KeyLoc(u->raw, "primary_group"), "unknown-group",
                "the primary group '" + u->primary_group + "' of directory user '" + u->name +
                    "' has no gid in the inventory; give it one");
    }
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    auto d = ReadDirectory(ctx.inv);
    if (!d || d->server != ctx.node.name) return {};
    std::vector<Resource> out;
    if (d->ssh_keys)  // first: the user entries below need ldapPublicKey
      out.push_back({name(), "ldap:schema:openssh-lpk", ctx.inv.lab.find("directory")->loc(), std::make_shared<WantSchema>()});
    for (auto& w : Wanted(ctx.inv, *d)) {
      std::string id = "ldap:" + w.dn;
      out.push_back({name(), id, ctx.inv.lab.find("directory")->loc(), std::make_shared<WantEntry>(std::move(w))});
    }
    out.push_back({name(), "ldap:unlisted", {}, std::make_shared<Unlisted>()});
    return out;
  }

  std::vector<Probe> probes(const NodeContext& ctx, const std::vector<Resource>& rs) const override {
    auto d = ReadDirectory(ctx.inv);
    if (!d || rs.empty()) return {};
    if (d->ssh_keys) return {LpkSchemaFact().probe(), LdapFact(*d).probe()};
    return {LdapFact(*d).probe()};
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    auto d = ReadDirectory(ctx.inv);
    if (!d) return Failure("lab.directory cannot be read");
    const Fact<LiveDirectory> fact = LdapFact(*d);
    const LiveDirectory& live = results.fact(fact);
    auto pit = results.find(fact.name);
    if (std::string err = LiveError(live, pit == results.end() ? nullptr : &pit->second, *d); !err.empty()) {
      if (r.id == "ldap:unlisted") return Failure(err);
      return Noop("nothing planned: the directory could not be read");
    }
    if (r.id == "ldap:schema:openssh-lpk") return DiffSchema(results);
    if (r.id != "ldap:unlisted") return DiffEntry(r.as<WantEntry>(), live);
    std::set<std::string> named = {d->base_norm};
    for (const auto& w : Wanted(ctx.inv, *d)) named.insert(Norm(w.dn));
    DiffResult out;
    size_t n = 0;
    for (const auto& dn : live.order) {
      if (named.count(dn)) continue;
      if (++n <= 50)
        out.warnings.push_back("ldap entry " + EscapeControls(live.by_dn.at(dn).dn) +
                               " is not in the inventory: listed, never changed or deleted");
    }
    if (n > 50) out.warnings.push_back(std::to_string(n - 50) + " more ldap entries not in the inventory");
    if (live.parse.skipped_count)
      out.warnings.push_back("ldapsearch printed " + std::to_string(live.parse.skipped_count) +
                             " lines that are not LDIF; first: " + live.parse.skipped[0]);
    out.noop = "nothing to do because entries the inventory does not name are never touched (" +
               Counted(n, "entry", "entries") + " listed)";
    return out;
  }

 private:
  static DiffResult DiffSchema(const ProbeResults& results) {
    const Fact<LiveDirectory> fact = LpkSchemaFact();
    const LiveDirectory& live = results.fact(fact);
    auto pit = results.find(fact.name);
    if (pit == results.end() || !live.complete || live.exit != 0)
      return Failure("cannot tell whether cn=config holds the openssh-lpk schema: ldapsearch -b cn=schema,cn=config " +
                     std::string(pit == results.end() ? "did not run" : "failed (exit " + std::to_string(live.exit) +
                                                                            "): " + EscapeControls(pit->second.err)) +
                     "; root must be mapped to a DN that may manage cn=config (docs/directory.md)");
    if (!live.order.empty()) return Noop("nothing to do because cn=config holds the openssh-lpk schema");
    LdifBuilder b;
    b.dn("cn=openssh-lpk,cn=schema,cn=config")
        .attr("objectClass", "olcSchemaConfig")
        .attr("cn", "openssh-lpk")
        .attr("olcAttributeTypes", kLpkAttr)
        .attr("olcObjectClasses", kLpkClass);
    DiffResult d;
    Change& c = d.changes.emplace_back();
    c.sign = '+';
    c.summary = "ldap schema openssh-lpk (cn=config)";
    c.reason = "lab.directory.ssh_keys is on and the server has no ldapPublicKey/sshPublicKey schema";
    c.diff = "dn: cn=openssh-lpk,cn=schema,cn=config\n+ olcAttributeTypes: sshPublicKey\n+ olcObjectClasses: ldapPublicKey\n";
    c.command = Cmd("printf").arg("%s").arg(b.str()).raw("|")
                    .then(Cmd("ldapadd").arg("-Q").arg("-Y").arg("EXTERNAL").arg("-H").arg("ldapi:///")).str();
    return d;
  }

  static void CheckCa(const Inventory& inv, const std::string& ca, const Location& where, Findings& f) {
    if (inv.refusal)
      if (std::string why = inv.refusal(ca, ""); !why.empty()) {
        f.error(where, "unsafe-path", "lab.directory.ca " + why);
        return;
      }
    std::optional<std::string> text = inv.read_file ? inv.read_file(ca) : std::nullopt;
    if (!text) {
      f.error(where, "missing-file",
              "lab.directory.ca '" + ca + "' cannot be read (a path relative to the inventory directory)");
      return;
    }
    const std::string begin = "-----BEGIN CERTIFICATE-----", end = "-----END CERTIFICATE-----";
    size_t b = text->find(begin), e = b == std::string::npos ? b : text->find(end, b);
    bool ok = b != std::string::npos && e != std::string::npos;
    if (ok) {
      std::string body;
      for (char c : text->substr(b + begin.size(), e - b - begin.size()))
        if (c != '\n' && c != '\r') body += c;
      bool decoded = false;
      Base64Decode(body, &decoded);
      ok = decoded && body.size() > 100;
    }
    if (!ok)
      f.error(where, "not-pem",
              "lab.directory.ca '" + ca + "' is not a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END "
              "CERTIFICATE----- around base64); give the CA certificate that signed the server's certificate");
  }
};

ModuleRegistrar registrar(std::make_unique<DirectoryModule>());

}  // namespace
}  // namespace labfleet
