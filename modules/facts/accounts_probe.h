// Facts shared by the account modules (same names, so each runs and is parsed once per node) and the users
// that land on a node. The list of accounts labfleet manages lives on the node in /var/lib/labfleet/managed-users.
#pragma once
#include <set>
#include <string>
#include <vector>

#include "modules/facts/accounts.h"
#include "engine/module.h"

namespace labfleet {

inline constexpr const char* kManagedUsersFile = "/var/lib/labfleet/managed-users";

// The account facts, each parsed once per node however many modules and users read it. They read the local
// files (/etc/passwd, /etc/group, /etc/shadow), never NSS: a directory user (LDAP through SSSD) is not a local
// account. They are required: a read that fails (or a file over kMaxAccountFileBytes) must not read as "no such
// user".
inline constexpr long long kMaxAccountFileBytes = 32LL << 20;
// The command those facts run: the file's bytes on stdout, exit 3 (and why, on stderr) when it is over `limit`
// bytes, non-zero when it cannot be read. Runs inside BuildProbeScript (LC_ALL=C). Public for its unit test.
std::string ReadAccountFileCommand(const std::string& path, long long limit = kMaxAccountFileBytes);
extern const Fact<Parsed<PasswdEntry>> kPasswd;   // "passwd-file"
extern const Fact<Parsed<GroupEntry>> kGroup;     // "group-file"
extern const Fact<Parsed<ShadowEntry>> kShadow;   // "shadow-file"
// "nss-passwd": what NSS (getent) says of these names, all sources together; never fails (names NSS does not
// know are simply absent). The users module compares it with the local file: a name only NSS knows is a
// directory account, and one NSS resolves to another uid is reported.
Probe NssPasswdProbe(const std::vector<std::string>& names);
// "managed-users": the names in kManagedUsersFile; absent (cat fails) = none, so not required.
extern const Fact<std::set<std::string>> kManagedUsers;

// Users whose `on:` selects this node, in inventory order (including `remove: true` ones).
std::vector<const UserDef*> UsersOnNode(const NodeContext& ctx);

// The directory users (accounts: directory, not remove: true) whose `on:` selects this node, when the node is a
// client of lab.directory (DirectoryClientOf); none on any other node: there they cannot resolve.
std::vector<const UserDef*> DirectoryUsersOnClient(const NodeContext& ctx);
// "nss-passwd-directory": `getent passwd` of DirectoryUsersOnClient (through NSS: sss), for the local things a
// directory user gets on a client (membership of local groups, her home), which need her to resolve there.
// Never fails (a name NSS does not know is simply absent). Parse with ParsePasswd.
inline constexpr const char* kNssDirectoryKey = "nss-passwd-directory";
Probe NssDirectoryProbe(const NodeContext& ctx);

}  // namespace labfleet
