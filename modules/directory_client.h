// The directory client (modules/directory_client.cc): which nodes are clients of lab.directory, and the pure
// text functions the module renders with (unit-tested in tests/unit/test_directory_client.cc).
#pragma once
#include <optional>
#include <string>

#include "engine/inventory.h"
#include "engine/module.h"

namespace labfleet {

// How a node uses the lab's directory. A node is a client when the node's (or its groups', or defaults')
// `directory_client` setting says so (true, or a map `{ homes: local|shared }`), and otherwise when lab.directory
// is set and the node is not lab.directory.server. `directory_client: false` opts a node out. Without
// lab.directory.uri no node is a client (the directory is only written; validate refuses an explicit client).
struct DirectoryClient {
  std::string uri, base, ca;  // lab.directory.uri, .base, .ca (ca may be empty)
  bool mkhomedir = true;      // homes: local (the default) -> pam_mkhomedir creates them at first login
  // Where homes are local: the mode of the directory users' homes labfleet makes (modules/users.cc), 4 octal
  // digits; `home_mode:` in the map form, default 0700.
  std::string home_mode = "0700";
};
// "0700", "750": 3 or 4 octal digits, permission bits only (a leading digit of a 4-digit mode must be 0).
bool ValidHomeMode(const std::string& mode);
std::optional<DirectoryClient> DirectoryClientOf(const Inventory& inv, const NodeDef& node, const Value& settings);

// Where the inventory's CA file is installed on clients (ldap_tls_cacert).
constexpr const char* kSssdCaPath = "/etc/sssd/labfleet-ldap-ca.pem";

// /etc/sssd/sssd.conf for `c`: one domain "lab", id and auth from LDAP (rfc2307: posixGroup memberUid), users
// under ou=people and groups under ou=groups of the base (where modules/directory.cc writes them), SSH keys from
// sshPublicKey, the responders nss, pam and ssh. Values are those validate checked (URI, DN: no control
// characters); throws std::invalid_argument for a value with a newline, '#' or ';' it must never write.
std::string RenderSssdConf(const DirectoryClient& c);

// nsswitch.conf with its passwd:, group: and shadow: lines ending in "files sss" semantics: the node's own
// sources are kept in their order (e.g. systemd), "files" is put first when missing, "sss" is put last (once);
// a missing line is appended as "DB: files sss". Every other line is kept byte for byte. Returns nullopt with
// `error` set when a line cannot be edited safely: a source that is not a plain word ([A-Za-z0-9_-]+), e.g. an
// action "[NOTFOUND=return]".
std::optional<std::string> EditNsswitch(const std::string& text, std::string* error);

// The sshd_config lines a directory client's drop-in gets (keys through sss_ssh_authorizedkeys).
std::string DirectoryClientSshdLines();

}  // namespace labfleet
