// The pure planning of a directory user's per-node home (modules/users.cc), for the unit tests
// (tests/unit/test_directory_local.cc).
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace labfleet {

// One path as `stat -c '%u %g %a %F'` saw it on the node, without following a symbolic link.
struct PathState {
  std::string path;
  bool exists = false;
  long long uid = -1, gid = -1;
  int mode = -1;     // permission bits (octal %a), -1 when unread
  std::string type;  // %F: "directory", "symbolic link", "regular file", ...
};
// The output of the directory-homes probe: one line per path, NAME <tab> PATH <tab> "UID GID MODE TYPE" or "-"
// (absent), the home first, then each directory above it up to "/". By user name, in output order; lines it
// does not understand are skipped. Pure.
std::map<std::string, std::vector<PathState>> ParseHomeChains(std::string_view out);

// What to do about the home `home` of a user with uid `uid`, from its chain (the home, then its parents up to
// "/"): Create when it is absent and every parent exists and is a real directory owned by root and writable by
// no one else (no user can swap a component, so mkdir/cp/chown below it cannot be redirected); Exists when it is
// a directory owned by `uid`; Refuse, with why, otherwise (a symbolic link, not a directory, another owner, an
// unsafe or missing parent, no answer): never followed, replaced or chowned. Pure.
struct HomePlan {
  enum class What { Create, Exists, Refuse } what = What::Refuse;
  std::string why;
};
HomePlan PlanDirectoryHome(const std::string& home, long long uid, const std::vector<PathState>& chain);

}  // namespace labfleet
