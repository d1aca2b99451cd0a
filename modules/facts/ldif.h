// LDIF (RFC 2849) as labfleet reads it from `ldapsearch -LLL` and writes it for `ldapmodify`, and DNs (RFC 4514).
// Pure functions, no I/O.
//
// Parser contract: never throws; folded lines (a line starting with one space continues the previous one) are
// joined; `attr:: BASE64` values are decoded; `#` comments are skipped; a line it does not understand (no colon,
// bad base64, a `:<` URL value, a record that does not start with `dn:`) is skipped and listed in `skipped`
// (escaped for messages, at most 20).
//
// Builder contract: the text it returns cannot hold more lines, attributes or entries than were asked for,
// whatever the values hold: a value (or DN) that is not an RFC 2849 SAFE-STRING (a newline, CR, NUL, a
// non-ASCII byte, a leading space, colon or '<', a trailing space) is written `attr:: BASE64`; attribute names
// and change keywords are checked against the LDIF grammar and a wrong one throws std::invalid_argument (they
// come from labfleet's code, never from the inventory).
#pragma once
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace labfleet {

struct LdifEntry {
  std::string dn;
  std::vector<std::pair<std::string, std::string>> attrs;  // in order, names as written
  // Values of `attr` (case-insensitive name; options such as ";binary" not matched).
  std::vector<std::string> values(std::string_view attr) const;
};

struct LdifParse {
  std::vector<LdifEntry> entries;
  std::vector<std::string> skipped;  // lines not understood, escaped, at most 20
  size_t skipped_count = 0;
};

LdifParse ParseLdif(std::string_view text);

// Writes LDIF records. Each value is checked for LDIF syntax and base64-encoded when it is not a SAFE-STRING.
class LdifBuilder {
 public:
  LdifBuilder& dn(std::string_view dn);                               // starts a record (blank line before)
  LdifBuilder& attr(std::string_view name, std::string_view value);   // "name: value" / "name:: BASE64"
  LdifBuilder& changetype(std::string_view type);                     // add | modify | delete
  LdifBuilder& op(std::string_view op, std::string_view attr);        // add | replace | delete: ATTR
  LdifBuilder& end_op();                                              // "-"
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

// True when `v` can be written as `attr: v` (RFC 2849 SAFE-STRING, no trailing space).
bool LdifSafe(std::string_view v);
// An attribute description: a name (letter, then letters, digits, '-') or a numeric OID, options ";opt".
bool LdifAttrName(std::string_view name);

// One RDN value escaped per RFC 4514 (",+\"\\<>;=" and a leading '#' or space, a trailing space, NUL).
std::string DnEscape(std::string_view value);

// A DN checked per RFC 4514: RDNs "type=value" separated by ',', AVAs by '+', type a name or OID, values with
// \X or \HH escapes only, no unescaped '"', '<', '>', ';', no control characters. Returns the normalised form
// (types and values lower-cased, blanks around ',', '=' and '+' dropped, escapes kept canonical) for comparing
// DNs, or nullopt with `error` set ("RDN 2 'ou' has no '='").
std::optional<std::string> NormalizeDn(std::string_view dn, std::string* error = nullptr);

}  // namespace labfleet
