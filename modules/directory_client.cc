// directory_client: a node that takes its accounts from lab.directory through SSSD (issue 13 §4). Order 60:
// after packages and the account modules, before sshd (70), whose drop-in gets the AuthorizedKeysCommand of a
// client (modules/sshd.cc calls DirectoryClientOf). On a client, in order:
//   packages   sssd-ldap libnss-sss libpam-sss sssd-tools (apt-get, when dpkg-query says one is missing)
//   CA         lab.directory.ca installed as /etc/sssd/labfleet-ldap-ca.pem (0644 root), when the lab has one
//   sssd.conf  /etc/sssd/sssd.conf, 0600 root:root, rendered from lab.directory; the new text is checked with
//              `sssctl config-check -c NEW` on the node before it replaces the old one (its message on refusal);
//              a change restarts sssd (handler "restart sssd")
//   nsswitch   the passwd:, group:, shadow: lines of /etc/nsswitch.conf get sss after files; the rest is kept
//   mkhomedir  where homes are local (the default): `pam-auth-update --enable mkhomedir` (Debian's own profile,
//              so later pam-auth-update runs by packages keep it; a hand-added line in common-session would make
//              pam-auth-update stop managing the file)
//   cache      `sss_cache -E` when the directory's users or groups in the inventory changed since the last
//              apply on this node (a digest kept in /var/lib/labfleet/directory-client), so a new student or a
//              changed shell is seen at once instead of after SSSD's cache timeout
// docs/directory.md, "Directory clients".
#include "modules/directory_client.h"

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "engine/file_probe.h"
#include "engine/schema.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"
#include "modules/facts/ldif.h"

namespace labfleet {

namespace {
const char* const kPackages[] = {"sssd-ldap", "libnss-sss", "libpam-sss", "sssd-tools"};
constexpr const char* kSssdConf = "/etc/sssd/sssd.conf";
constexpr const char* kNsswitch = "/etc/nsswitch.conf";
constexpr const char* kCommonSession = "/etc/pam.d/common-session";
constexpr const char* kDigestFile = "/var/lib/labfleet/directory-client";
constexpr const char* kRestart =
    "if [ -d /run/systemd/system ] || command -v systemctl >/dev/null 2>&1; then systemctl restart sssd; "
    "else echo 'cannot restart sssd: no systemctl' >&2; exit 1; fi";

bool PlainWord(const std::string& w) {
  if (w.empty()) return false;
  for (char c : w)
    if (!(std::isalnum((unsigned char)c) || c == '_' || c == '-')) return false;
  return true;
}
}  // namespace

bool ValidHomeMode(const std::string& m) {
  // 0NNN or NNN, permission bits only (no setuid, setgid or sticky bit on a home)
  if (m.size() == 4 ? m[0] != '0' : m.size() != 3) return false;
  return m.find_first_not_of("01234567") == std::string::npos;
}

std::optional<DirectoryClient> DirectoryClientOf(const Inventory& inv, const NodeDef& node, const Value& settings) {
  const Value* d = inv.lab.find("directory");
  if (!d || !d->is_map()) return std::nullopt;
  const Value* server = d->find("server");
  const Value* uri = d->find("uri");
  const Value* base = d->find("base");
  if (!uri || !uri->is_scalar() || !base || !base->is_scalar()) return std::nullopt;
  const Value* s = settings.find("directory_client");
  bool on = !(server && server->is_scalar() && server->str() == node.name);
  DirectoryClient c{uri->str(), base->str(), "", true};
  if (s && s->is_scalar()) on = s->str() == "true";
  if (s && s->is_map()) {
    on = true;
    if (const Value* h = s->find("homes"); h && h->is_scalar()) c.mkhomedir = h->str() != "shared";
    if (const Value* m = s->find("home_mode"); m && m->is_scalar() && ValidHomeMode(m->str()))
      c.home_mode = m->str().size() == 3 ? "0" + m->str() : m->str();
  }
  if (!on) return std::nullopt;
  if (const Value* ca = d->find("ca"); ca && ca->is_scalar()) c.ca = ca->str();
  return c;
}

std::string RenderSssdConf(const DirectoryClient& c) {
  for (const std::string* v : {&c.uri, &c.base})
    if (v->find_first_of("\n\r#;") != std::string::npos || CheckNoControl(*v))
      throw std::invalid_argument("refusing to write " + Quoted(*v) + " into sssd.conf");
  std::string out =
      "# Managed by labfleet from the inventory (lab.directory); edits here are overwritten.\n"
      "[sssd]\n"
      "services = nss, pam, ssh\n"
      "domains = lab\n"
      "\n"
      "[domain/lab]\n"
      "id_provider = ldap\n"
      "auth_provider = ldap\n"
      "ldap_schema = rfc2307\n"
      "ldap_uri = " + c.uri + "\n"
      "ldap_search_base = " + c.base + "\n"
      "ldap_user_search_base = ou=people," + c.base + "\n"
      "ldap_group_search_base = ou=groups," + c.base + "\n"
      "ldap_user_ssh_public_key = sshPublicKey\n";
  if (!c.ca.empty()) out += "ldap_tls_cacert = " + std::string(kSssdCaPath) + "\nldap_tls_reqcert = demand\n";
  out += "cache_credentials = false\n"
         "enumerate = false\n";
  return out;
}

std::optional<std::string> EditNsswitch(const std::string& text, std::string* error) {
  std::vector<std::string> lines;
  {
    std::string cur;
    for (char ch : text) {
      if (ch == '\n') {
        lines.push_back(cur);
        cur.clear();
      } else {
        cur += ch;
      }
    }
    if (!cur.empty()) lines.push_back(cur);
  }
  const bool final_newline = text.empty() || text.back() == '\n';
  for (const char* db : {"passwd", "group", "shadow"}) {
    const std::string key = std::string(db) + ":";
    bool found = false;
    for (auto& line : lines) {
      size_t start = line.find_first_not_of(" \t");
      if (start == std::string::npos || line.compare(start, key.size(), key) != 0) continue;
      if (found) {
        *error = "nsswitch.conf has two " + key + " lines; keep one (by hand) before labfleet edits it";
        return std::nullopt;
      }
      found = true;
      std::string rest = line.substr(start + key.size());
      std::string comment;
      if (size_t h = rest.find('#'); h != std::string::npos) {
        comment = rest.substr(h);
        rest = rest.substr(0, h);
      }
      std::istringstream words(rest);
      std::vector<std::string> sources;
      for (std::string w; words >> w;) {
        if (!PlainWord(w)) {
          *error = "the " + key + " line of nsswitch.conf has " + Quoted(w) +
                   ", not a plain source name (an action like [NOTFOUND=return]?); labfleet only edits lines of "
                   "source names: make it one by hand";
          return std::nullopt;
        }
        if (w != "sss" && std::find(sources.begin(), sources.end(), w) == sources.end()) sources.push_back(w);
      }
      if (std::find(sources.begin(), sources.end(), "files") == sources.end()) sources.insert(sources.begin(), "files");
      sources.push_back("sss");
      std::string head = key;
      head.resize(std::max<size_t>(16, key.size() + 1), ' ');
      line = head + Join(sources, " ") + (comment.empty() ? "" : " " + comment);
    }
    if (!found) {
      std::string head = key;
      head.resize(16, ' ');
      lines.push_back(head + "files sss");
    }
  }
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) out += lines[i] + (i + 1 < lines.size() || final_newline ? "\n" : "");
  return out;
}

std::string DirectoryClientSshdLines() {
  return "AuthorizedKeysCommand /usr/bin/sss_ssh_authorizedkeys\nAuthorizedKeysCommandUser nobody\n";
}

namespace {

// Packages: "NAME STATUS" per line from dpkg-query; anything else is ignored (a package never installed prints
// nothing on stdout, its complaint goes to stderr).
std::vector<std::string> MissingPackages(std::string_view out) {
  std::vector<std::string> installed;
  std::istringstream in{std::string(out)};
  for (std::string line; std::getline(in, line);) {
    std::istringstream w(line);
    std::string name, status;
    if (w >> name >> status && status == "installed") installed.push_back(name);
  }
  std::vector<std::string> missing;
  for (const char* p : kPackages)
    if (std::find(installed.begin(), installed.end(), p) == installed.end()) missing.push_back(p);
  return missing;
}

Fact<std::vector<std::string>> PackagesFact() {
  Cmd c("dpkg-query");
  c.arg("-W").arg("-f=${Package} ${db:Status-Status}\\n");
  for (const char* p : kPackages) c.arg(p);
  c.raw("2>/dev/null").raw("||").arg("true");
  return Fact<std::vector<std::string>>("directory_client:dpkg", c.str(), MissingPackages);
}

// A stable digest (FNV-1a 64) of what the directory holds according to the inventory: its users and groups.
std::string DirectoryDigest(const Inventory& inv) {
  std::string s;
  for (const auto& u : inv.users) {
    if (u.accounts != "directory") continue;
    s += u.name + "\x1f" + std::to_string(u.uid) + "\x1f" + u.primary_group + "\x1f" + u.shell + "\x1f" + u.home +
         "\x1f" + u.full_name + "\x1f" + u.expires + "\x1f" + (u.remove ? "r" : "") + "\x1f" + Join(u.groups, ",") +
         "\x1f" + Join(u.ssh_keys, "\x1e") + "\n";
  }
  for (const auto& g : inv.user_groups) s += g.name + "\x1f" + std::to_string(g.gid) + "\n";
  unsigned long long h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", h);
  return buf;
}

struct ClientWant {
  DirectoryClient client;
  std::string what;  // packages | ca | sssd.conf | nsswitch | mkhomedir | cache
};

class DirectoryClientModule : public Module {
 public:
  std::string name() const override { return "directory_client"; }
  int order() const override { return 60; }
  std::vector<std::string> settings_keys() const override { return {"directory_client"}; }
  nlohmann::json settings_schema(const std::string&) const override {
    using namespace schema;
    return OneOf({Scalar("true: this node is a client of lab.directory (the default for every node but the "
                         "server); false: it is not"),
                  Closed({"homes", "home_mode"},
                         {{"homes", Scalar("local (pam_mkhomedir makes homes at first login; labfleet makes the "
                                           "directory users' homes) or shared")},
                          {"home_mode", Scalar("octal mode of the directory users' homes labfleet makes where homes "
                                               "are local, e.g. \"0750\" (default 0700)")}},
                         "a client, with where its homes live")});
  }

  void validate(const Inventory& inv, Findings& f) const override {
    auto check = [&](const Value* v) {
      if (!v) return;
      if (v->is_scalar() && (v->str() == "true" || v->str() == "false")) return;
      if (v->is_map()) {
        for (const auto& e : v->entries()) {
          if (e.key == "home_mode") {
            if (!e.value.is_scalar() || !ValidHomeMode(e.value.str()))
              f.error(e.value.loc(), "wrong-type",
                      "directory_client.home_mode must be an octal mode of 3 or 4 digits without special bits, "
                      "in quotes (\"0700\", \"0750\")");
          } else if (e.key != "homes") {
            f.error(e.key_loc, "unknown-key",
                    "directory_client has only `homes` (local or shared) and `home_mode`, not '" + e.key + "'");
          } else if (!e.value.is_scalar() || (e.value.str() != "local" && e.value.str() != "shared")) {
            f.error(e.value.loc(), "wrong-type", "directory_client.homes must be local or shared");
          }
        }
        return;
      }
      f.error(v->loc(), "wrong-type", "directory_client must be true, false or { homes: local|shared }");
    };
    if (const Value* d = inv.lab.find("defaults")) check(d->find("directory_client"));
    for (const auto& g : inv.groups) check(g.raw.find("directory_client"));
    for (const auto& n : inv.nodes) check(n.raw.find("directory_client"));
    const Value* d = inv.lab.find("directory");
    for (const auto& n : inv.nodes) {
      Value s = inv.settings(n);
      const Value* dc = s.find("directory_client");
      bool explicit_on = dc && ((dc->is_scalar() && dc->str() == "true") || dc->is_map());
      if (explicit_on && (!d || !d->is_map())) {
        f.error(dc->loc(), "missing-required",
                "node '" + n.name + "' is a directory client but the lab has no directory: add lab.directory "
                "(docs/directory.md)");
        return;
      }
      if (explicit_on && d && d->is_map() && !d->find("uri")) {
        f.error(dc->loc(), "missing-required",
                "node '" + n.name + "' is a directory client but lab.directory has no uri: give `uri: ldaps://HOST` "
                "(what the clients connect to)");
        return;
      }
    }
  }

  std::vector<OwnedFile> owned_files(const NodeContext& ctx) const override {
    auto c = DirectoryClientOf(ctx.inv, ctx.node, ctx.settings);
    if (!c) return {};
    std::vector<OwnedFile> out = {{kSssdConf, "lab.directory (directory client)"}};
    if (!c->ca.empty()) out.push_back({kSssdCaPath, "lab.directory.ca (directory client)"});
    return out;
  }

  std::vector<Resource> resources(const NodeContext& ctx) const override {
    auto c = DirectoryClientOf(ctx.inv, ctx.node, ctx.settings);
    if (!c) return {};
    const Location where = ctx.inv.lab.find("directory")->loc();
    std::vector<Resource> out;
    auto add = [&](const std::string& what) {
      out.push_back({name(), "directory_client:" + what, where, std::make_shared<ClientWant>(ClientWant{*c, what})});
    };
    add("packages");
    if (!c->ca.empty()) add("ca");
    add("sssd.conf");
    add("nsswitch");
    if (c->mkhomedir) add("mkhomedir");
    add("cache");
    return out;
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>& rs) const override {
    std::vector<Probe> out;
    for (const auto& r : rs) {
      const auto& w = r.as<ClientWant>();
      if (w.what == "packages") out.push_back(PackagesFact().probe());
      if (w.what == "ca") out.push_back(FileProbe(kSssdCaPath));
      if (w.what == "sssd.conf") out.push_back(FileProbe(kSssdConf));
      if (w.what == "nsswitch") out.push_back(FileProbe(kNsswitch));
      if (w.what == "mkhomedir") out.push_back(FileProbe(kCommonSession));
      if (w.what == "cache") out.push_back(FileProbe(kDigestFile));
    }
    return out;
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    const auto& w = r.as<ClientWant>();
    if (w.what == "packages") {
      auto missing = results.fact(PackagesFact());
      if (missing.empty()) return Noop("nothing to do because the SSSD client packages are installed");
      DiffResult d;
      Change& c = d.changes.emplace_back();
      c.sign = '+';
      c.summary = "packages " + Join(missing, " ") + " (directory client)";
      c.reason = "not installed";
      c.command = Cmd("env").arg("DEBIAN_FRONTEND=noninteractive").arg("apt-get").arg("install").arg("-y").arg("-q")
                      .arg("--no-install-recommends").args(missing).str();
      return d;
    }
    if (w.what == "ca") {
      std::optional<std::string> pem = ctx.inv.read_file ? ctx.inv.read_file(w.client.ca) : std::nullopt;
      if (!pem) return Failure("lab.directory.ca '" + w.client.ca + "' cannot be read");
      return DiffFile({kSssdCaPath, *pem, 0644, "root", "root"}, ParseFileProbe(results, kSssdCaPath),
                      "directory CA " + std::string(kSssdCaPath));
    }
    if (w.what == "sssd.conf") {
      std::string text;
      try {
        text = RenderSssdConf(w.client);
      } catch (const std::invalid_argument& e) {
        return Failure(e.what());
      }
      DiffResult d = DiffFile({kSssdConf, text, 0600, "root", "root"}, ParseFileProbe(results, kSssdConf),
                              "sssd.conf " + std::string(kSssdConf));
      if (d.changes.empty()) return d;
      for (auto& c : d.changes) {
        if (c.kind == Change::Kind::PutFile) c.precheck = "sssctl config-check -c \"$LF_NEW\"";
        c.reprobe = true;  // directory users resolve once sssd runs with it
      }
      d.changes.push_back(NotifyChange("restart sssd", kRestart, "restart sssd", "sssd.conf changed"));
      d.changes.back().reprobe = true;
      return d;
    }
    if (w.what == "nsswitch") {
      FileState live = ParseFileProbe(results, kNsswitch);
      if (!live.exists) return Failure(std::string(kNsswitch) + " is absent; a Debian node always has one (libc-bin)");
      if (auto refuse = RefuseUnreadEdit(live, kNsswitch)) return *refuse;
      std::string why;
      auto edited = EditNsswitch(live.content, &why);
      if (!edited) return Failure(why);
      DiffResult d = DiffFile({kNsswitch, *edited, live.mode, live.owner, live.group}, live,
                              "nsswitch.conf passwd/group/shadow (files ... sss)");
      for (auto& c : d.changes) c.reprobe = true;  // NSS asks sss from now on
      return d;
    }
    if (w.what == "mkhomedir") {
      FileState live = ParseFileProbe(results, kCommonSession);
      if (live.exists && live.content_read && live.content.find("pam_mkhomedir.so") != std::string::npos)
        return Noop("nothing to do because common-session runs pam_mkhomedir");
      DiffResult d;
      Change& c = d.changes.emplace_back();
      c.sign = '+';
      c.summary = "pam_mkhomedir (pam-auth-update --enable mkhomedir)";
      c.reason = "homes are local: a directory user's home is made at the first login";
      Script s;
      s.add(Cmd("env").arg("DEBIAN_FRONTEND=noninteractive").arg("pam-auth-update").arg("--enable").arg("mkhomedir"));
      s.raw("grep -q pam_mkhomedir.so /etc/pam.d/common-session || { echo 'pam-auth-update did not enable "
            "mkhomedir (local changes in /etc/pam.d/common-*? pam-auth-update(8) leaves those files alone)' >&2; "
            "exit 1; }");
      c.command = s.str();
      return d;
    }
    // cache
    const std::string digest = DirectoryDigest(ctx.inv);
    FileState live = ParseFileProbe(results, kDigestFile);
    if (live.exists && live.content == digest + "\n")
      return Noop("nothing to do because the directory's users and groups are as at the last apply");
    DiffResult d;
    Change& c = d.changes.emplace_back();
    c.sign = '~';
    c.summary = "sssd cache (sss_cache -E)";
    c.reason = live.exists ? "the directory's users or groups in the inventory changed since the last apply"
                           : "first apply as a directory client";
    Script s;
    // sss_cache needs SSSD's cache; before sssd ever ran there is nothing to invalidate
    s.raw("if ls /var/lib/sss/db/cache_*.ldb >/dev/null 2>&1; then sss_cache -E; fi");
    s.add(Cmd("mkdir").arg("-p").arg("/var/lib/labfleet"));
    s.add(Cmd("printf").arg("%s\\n").arg(digest).raw(">").arg(kDigestFile));
    c.command = s.str();
    c.reprobe = true;  // users the directory gained resolve on the node once the cache forgets the old answers
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<DirectoryClientModule>());

}  // namespace
}  // namespace labfleet
