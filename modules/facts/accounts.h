// Pure parsers for the account databases as printed by `getent passwd|group|shadow` and /etc/subuid.
// Malformed lines are skipped (counted in `skipped`), never fatal: a node's files can hold garbage.
#pragma once
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "engine/text.h"

namespace labfleet {

struct PasswdEntry {
  std::string name;
  long long uid = -1, gid = -1;
  std::string gecos, home, shell;
};
struct GroupEntry {
  std::string name;
  long long gid = -1;
  std::vector<std::string> members;
};
struct ShadowEntry {
  std::string name;
  std::string hash;      // second field, as is ("!", "*", "$y$...", "!$6$..." when locked)
  long long expire = -1;  // days since 1970-01-01; -1 = never
};
struct SubIdEntry {
  std::string name;
  long long start = 0, count = 0;
};

template <class T>
struct Parsed {
  std::map<std::string, T> by_name;
  std::vector<T> in_order;
  int skipped = 0;
};

Parsed<PasswdEntry> ParsePasswd(std::string_view text);
Parsed<GroupEntry> ParseGroup(std::string_view text);
Parsed<ShadowEntry> ParseShadow(std::string_view text);
Parsed<SubIdEntry> ParseSubIds(std::string_view text);

// "2027-02-28" -> days since the epoch (the unit of shadow's expire field); -1 if not a valid date.
long long DaysSinceEpoch(std::string_view ymd);
std::string DateFromDays(long long days);  // inverse, for messages


}  // namespace labfleet
