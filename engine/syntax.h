// Syntax checkers for inventory values that end up in line-oriented files (systemd units and drop-ins,
// /etc/hosts, authorized_keys, fstab, sshd drop-ins, sources.list, /etc/subuid, passwd fields, ...) or in
// command lines. Pure functions, no I/O; used by engine/validator.cc and each module's validate().
//
// Contract: a value that passes the checker for a file's syntax cannot add a line, a field or an option to that
// file when it is written the way labfleet writes it. Every checker refuses control characters (C0 including
// NUL, newline and tab, DEL, and C1 as raw bytes or UTF-8 U+0080..U+009F). A checker returns nullopt when the
// value is fine, else a SyntaxError: a stable finding code (docs/validate.md) and a message fragment that says
// what is wrong ("contains a newline (\n) at character 12"), to be prefixed with what the value is.
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/finding.h"

namespace labfleet {

struct SyntaxError {
  std::string code;  // e.g. "control-character", "unsafe-path"
  std::string what;  // "contains a newline (\n) at character 12"
};
using SyntaxResult = std::optional<SyntaxError>;

// Reports `e` (when set) as an error at `where`: "<subject> <e.what>" with e.code. Returns true when it did.
// `subject` names the value, e.g. "docker proxy http 'http://...'" (quote values with Quoted()).
bool Report(Findings& f, const Location& where, const std::string& subject, const SyntaxResult& e);
// 'value' with control characters escaped, for messages.
std::string Quoted(std::string_view value);

// `s` with every control character written as an escape (\n, \t, \r, \x1b, \x7f, \u0085, ...) and a backslash
// as \\ when `escape_backslash`; printable text (UTF-8 included) unchanged. For messages and terminal output:
// the result never contains a control character except, when `keep_layout`, the \n and \t themselves.
std::string EscapeControls(std::string_view s, bool keep_layout = false, bool escape_backslash = false);

// Byte offset of the first control character (see above), or npos.
size_t FindControl(std::string_view s);

// "control-character" when `s` holds one, naming it and its 1-based position.
SyntaxResult CheckNoControl(std::string_view s);

// One word: no control character and no blank (space); "control-character" / "blank".
SyntaxResult CheckOneWord(std::string_view s);

// A path on a node: absolute, without NUL or control characters, without a ".." component. Returns the
// normalised path ("//" and "/./" collapsed, no trailing "/" except for "/" itself) or the error: codes
// "control-character", "path-not-absolute", "unsafe-path" (a ".." component).
struct PathResult {
  std::string path;                  // normalised; empty on error
  std::optional<SyntaxError> error;  // set when refused
};
PathResult NormalizeAbsolutePath(std::string_view s);

// A URL as written into a config line: scheme://[userinfo@]host[:port][/path][?query][#fragment], where host is
// a host name (IsHostName), an IPv4 address or [IPv6]; port 1-65535; the rest only URL characters (RFC 3986
// unreserved, reserved and %XX escapes: no blank, quote, backslash, <, >, ^, `, {, |, }). "file:/path" for the
// scheme "file". `schemes` lists the allowed schemes (lower case). Code: "invalid-url".
struct Url {
  std::string scheme, userinfo, host, path;  // path includes query and fragment
  int port = -1;                             // -1 = not given
};
std::optional<Url> ParseUrl(std::string_view s, const std::vector<std::string>& schemes, SyntaxError* error);

// An authorized_keys line as labfleet accepts it from the inventory: "type base64 [comment]" — no options
// (code "ssh-key-options": an options field like command="..." or from="..." before the type), a known type
// ("ssh-key-unknown-type"), base64 that decodes and whose embedded type equals the type word
// ("ssh-key-bad-base64", "ssh-key-type-mismatch"; ed25519 keys of the right length), a comment without control
// characters ("control-character"). `warning` is set for a DSA key ("ssh-key-dsa").
struct SshPublicKey {
  std::string type, base64, comment;
  bool dsa = false;  // ssh-dss: OpenSSH refuses it by default
};
std::optional<SshPublicKey> ParseSshPublicKey(std::string_view line, SyntaxError* error);
const std::vector<std::string>& SshKeyTypes();

// A value written into a systemd unit or drop-in (e.g. inside Environment="K=V"): one line without control
// characters. Specifiers (%) and the quote and backslash are escaped by SystemdEscape, not refused.
SyntaxResult CheckSystemdValue(std::string_view s);
// `s` for a double-quoted systemd value: % -> %%, \ -> \\, " -> \". Only for values that passed
// CheckSystemdValue.
std::string SystemdEscape(std::string_view s);

// An /etc/hosts name (IsHostName: labels of letters, digits and inner hyphens). Code "hosts-name".
SyntaxResult CheckHostName(std::string_view s);

// A GECOS field (useradd -c / passwd's 5th field): no control character and no ':'. Code "invalid-full-name".
SyntaxResult CheckGecos(std::string_view s);

// A crypt(3) hash or a locked marker for chpasswd -e ("user:hash" lines): starts with '$', '!' or '*' and holds
// only the characters of crypt hashes ([A-Za-z0-9./$=,+-]) after a leading run of '!'. Code
// "password-hash-invalid".
SyntaxResult CheckPasswordHash(std::string_view s);

// A user or group name, or a numeric id, as chown/install take it. Code "invalid-owner".
SyntaxResult CheckOwnerName(std::string_view s);

}  // namespace labfleet
