#include "modules/facts/accounts_probe.h"

#include "engine/shell.h"
#include "modules/directory_client.h"

namespace labfleet {

static std::set<std::string> ParseManaged(std::string_view text) {
  std::set<std::string> names;
  for (auto& l : SplitLines(text))
    if (!l.empty()) names.insert(l);
  return names;
}

// The local account database itself, not NSS: on a directory client (SSSD, nss_ldap) `getent passwd` also
// lists the directory's users, which labfleet must never take for local accounts. Bounded: a file larger
// than kMaxAccountFileBytes fails the fact (a cut file would read as missing users). ONE program per file (this
// runs in every probe; `wc` + `head` before): `head -c LIMIT+1` into a variable, whose length says whether the
// file was over the limit (the trailing "." keeps the command substitution from dropping trailing newlines, which
// would hide bytes past the limit; LC_ALL=C in the probe script makes ${#v} count bytes), printed by printf.
std::string ReadAccountFileCommand(const std::string& path, long long limit) {
  const std::string lim = std::to_string(limit);
  Script s;
  s.raw("f=" + ShellQuote(path) + "; v=$(head -c " + std::to_string(limit + 1) +
        " -- \"$f\" && echo .) || exit 1; v=${v%.}");
  s.raw("[ ${#v} -le " + lim + " ] || { echo \"$f is more than " + lim + " bytes, more than labfleet reads (" + lim +
        ")\" >&2; exit 3; }");
  s.raw("printf '%s' \"$v\"");
  return s.str();
}

const Fact<Parsed<PasswdEntry>> kPasswd{"passwd-file", ReadAccountFileCommand("/etc/passwd"), ParsePasswd, true};
const Fact<Parsed<GroupEntry>> kGroup{"group-file", ReadAccountFileCommand("/etc/group"), ParseGroup, true};
const Fact<Parsed<ShadowEntry>> kShadow{"shadow-file", ReadAccountFileCommand("/etc/shadow"), ParseShadow, true};

static Probe GetentPasswd(const std::string& key, const std::vector<std::string>& names) {
  Cmd c("getent");
  c.arg("passwd");
  for (const auto& n : names) c.arg(n);
  // exit 2 = some name not found: an answer, not a failure; the output lists the ones NSS knows.
  return {key, c.str() + " | head -c 1048576; exit 0"};
}

Probe NssPasswdProbe(const std::vector<std::string>& names) { return GetentPasswd("nss-passwd", names); }

std::vector<const UserDef*> DirectoryUsersOnClient(const NodeContext& ctx) {
  std::vector<const UserDef*> out;
  if (!DirectoryClientOf(ctx.inv, ctx.node, ctx.settings)) return out;
  for (const UserDef* u : UsersOnNode(ctx))
    if (u->accounts == "directory" && !u->remove) out.push_back(u);
  return out;
}

Probe NssDirectoryProbe(const NodeContext& ctx) {
  std::vector<std::string> names;
  for (const UserDef* u : DirectoryUsersOnClient(ctx)) names.push_back(u->name);
  return GetentPasswd(kNssDirectoryKey, names);
}
const Fact<std::set<std::string>> kManagedUsers{"managed-users", CatBuiltin(kManagedUsersFile),
                                                ParseManaged, false};

std::vector<const UserDef*> UsersOnNode(const NodeContext& ctx) {
  std::vector<const UserDef*> out;
  for (const auto& u : ctx.inv.users)
    if (ctx.inv.user_on_node(u, ctx.node)) out.push_back(&u);
  return out;
}


}  // namespace labfleet
