// What `labfleet init` reads from a node, in ONE round trip (the planner's probe script: BuildProbeScript /
// ParseProbeOutput), and the pure parser of what came back. Nodes are not trusted (docs/security.md):
// - every file is bounded (kInitMaxFile, authorized_keys kInitMaxKeysFile) and travels base64-encoded on its
//   own tagged line, so no content can forge another record;
// - files under /etc are read as root only when they are regular files (not links) in a directory owned by
//   root and not writable by group or others;
// - a user's ~/.ssh/authorized_keys is read AS THAT USER (setpriv with the account's uid and gid, no groups),
//   so a link planted in a home can only show what that user could read anyway.
#pragma once
#include <map>
#include <string>
#include <vector>

#include "engine/module.h"

namespace labfleet {

inline constexpr size_t kInitMaxFile = 1 << 20;        // bytes of one /etc file read
inline constexpr size_t kInitMaxKeysFile = 64 << 10;   // bytes of one authorized_keys read
inline constexpr int kInitMaxUsers = 20000;            // accounts whose keys are read
inline constexpr int kInitMaxFilesPerPattern = 200;    // files read per glob (sshd and Docker drop-ins)

// Files read (globs expanded on the node): the hosts block, fstab, subordinate ids, Docker's daemon.json and
// its systemd drop-ins, sshd drop-ins.
const std::vector<std::string>& InitFilePatterns();

struct ScannedKeys {
  int rc = 3;           // 0 read, 3 absent, 4 not a regular file, 5 unreadable as the user, other: failed
  std::string content;  // at most kInitMaxKeysFile + 1 bytes (one more means: too large)
  // `stat -c '%a %U %G %F'` of the file and of ~/.ssh ("600 alice alice regular file", "700 alice alice directory");
  // empty when not both could be read.
  std::string file_meta, dir_meta;
};

struct NodeScan {
  std::string name;      // inventory node name
  std::string address;   // what labfleet connected to
  int port = 22;
  std::string ssh_user = "root", identity, jump, become;  // how it was reached (written to lab.ssh or the node's ssh)
  std::string host_key;  // as verified while connecting ("ssh-ed25519 AAAA..."), may be empty (local)
  std::string hostname;  // the node's own short name (may be anything: validated before use)
  std::string passwd, group, shadow;         // getent output
  std::map<std::string, ScannedKeys> keys;   // by account name (accounts in the uid range only)
  std::map<std::string, std::string> files;  // absolute path -> content (at most kInitMaxFile + 1 bytes)
  int gpus = 0;                              // /dev/nvidiaN device files
  std::vector<std::string> held;             // `apt-mark showhold` (sorted; empty without apt)
  std::string nvidia_driver;                 // the loaded kernel module's version, "" when none
  std::vector<std::string> problems;         // output that could not be understood
};

// The probes, uid range [uid_min, uid_max) for the accounts whose keys are read.
std::vector<Probe> InitProbes(long long uid_min, long long uid_max);
// Pure: fills `scan` from the probe results (missing or malformed parts are added to scan.problems).
void ParseInitResults(const ProbeResults& results, NodeScan& scan);

}  // namespace labfleet
