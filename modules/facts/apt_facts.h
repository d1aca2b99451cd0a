// apt repository and pip facts: pure parsers of what apt-cache and pip print (hostile input: bounded, lines not
// understood are skipped and counted), and the offline OpenPGP key check behind `apt_repos: [{ key: FILE }]`.
//
//   apt-cache policy NAMES...        "NAME:" then "  Installed: V|(none)" and "  Candidate: V|(none)" per package
//   python3 -m pip list --format json   one JSON array [{"name": N, "version": V}, ...] on one line
#pragma once
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace labfleet {

// --- OpenPGP public keys (RFC 4880 / 9580 packet framing) ---
// `bytes`: an ASCII-armored key ("-----BEGIN PGP PUBLIC KEY BLOCK-----", CRC24 checked when present) or binary
// packets. Returns the binary ("dearmored") keyring, or nullopt with `*error` set ("is a PRIVATE key block: ...").
// Accepted: well-framed packets (no partial lengths, none past the end), the first a Public-Key packet (tag 6,
// version 4, 5 or 6), then only public-key material (public subkeys, user IDs/attributes, signatures, trust);
// secret keys are refused by name. At most kMaxKeyBytes.
constexpr size_t kMaxKeyBytes = 1 << 20;
std::optional<std::string> DearmorPublicKey(std::string_view bytes, std::string* error);

// --- apt-cache policy ---
struct AptPolicyEntry {
  std::string installed;  // "" when "(none)"
  std::string candidate;  // "" when "(none)"
};
struct AptPolicy {
  std::map<std::string, AptPolicyEntry> by_name;  // only packages with both lines seen
  int skipped = 0;
};
AptPolicy ParseAptCachePolicy(std::string_view text);

// --- pip list --format json ---
struct PipList {
  bool ok = false;                               // a JSON array was found and read
  std::map<std::string, std::string> version;    // canonical name (PipCanonicalName) -> version
  int skipped = 0;                               // lines / entries not understood
};
// At most kMaxPipListBytes are read by the probe; the parser reads the first line that starts with '['.
constexpr size_t kMaxPipListBytes = 4 << 20;
PipList ParsePipList(std::string_view text);

// PEP 503: lower case, runs of "-", "_", "." become one "-".
std::string PipCanonicalName(std::string_view name);
// A project name as labfleet accepts it (PEP 508: letters, digits, ".", "_", "-"; starts and ends alphanumeric).
bool IsPipName(std::string_view name);
// A version as labfleet accepts it after "==": PEP 440 characters only (letters, digits, ".", "+", "!", "-", "_").
bool IsPipVersion(std::string_view version);
// Two versions are equal for `==` (PEP 440, simplified): lower case, trailing ".0" release parts dropped
// ("0.26" == "0.26.0"; "1.0rc1" == "1.0RC1").
bool PipVersionEqual(std::string_view a, std::string_view b);

}  // namespace labfleet
