#include "modules/facts/accounts.h"

#include <charconv>
#include <chrono>

namespace labfleet {

static bool ToInt(std::string_view s, long long& v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

template <class T>
static void Add(Parsed<T>& p, T e) {
  p.by_name[e.name] = e;
  p.in_order.push_back(std::move(e));
}

// A colon-separated file, one entry a line (passwd, group, shadow, subuid): `fill(fields, entry)` reads a line's
// fields into the entry and says whether the line is valid; invalid lines are counted in `skipped`.
template <class T, class Fill>
static Parsed<T> ParseColonFile(std::string_view text, Fill fill) {
  Parsed<T> p;
  for (const auto& line : SplitLines(text)) {
    auto f = Split(line, ':');
    T e;
    if (!fill(f, e)) {
      ++p.skipped;
      continue;
    }
    Add(p, std::move(e));
  }
  return p;
}

using Fields = std::vector<std::string>;

Parsed<PasswdEntry> ParsePasswd(std::string_view text) {
  return ParseColonFile<PasswdEntry>(text, [](const Fields& f, PasswdEntry& e) {
    if (f.size() != 7 || f[0].empty() || !ToInt(f[2], e.uid) || !ToInt(f[3], e.gid)) return false;
    e.name = f[0];
    e.gecos = f[4];
    e.home = f[5];
    e.shell = f[6];
    return true;
  });
}

Parsed<GroupEntry> ParseGroup(std::string_view text) {
  return ParseColonFile<GroupEntry>(text, [](const Fields& f, GroupEntry& e) {
    if (f.size() != 4 || f[0].empty() || !ToInt(f[2], e.gid)) return false;
    e.name = f[0];
    if (!f[3].empty()) e.members = Split(f[3], ',');
    return true;
  });
}

Parsed<ShadowEntry> ParseShadow(std::string_view text) {
  return ParseColonFile<ShadowEntry>(text, [](const Fields& f, ShadowEntry& e) {
    if (f.size() != 9 || f[0].empty() || (!f[7].empty() && !ToInt(f[7], e.expire))) return false;
    e.name = f[0];
    e.hash = f[1];
    if (f[7].empty()) e.expire = -1;
    return true;
  });
}

Parsed<SubIdEntry> ParseSubIds(std::string_view text) {
  return ParseColonFile<SubIdEntry>(text, [](const Fields& f, SubIdEntry& e) {
    if (f.size() != 3 || f[0].empty() || !ToInt(f[1], e.start) || !ToInt(f[2], e.count)) return false;
    e.name = f[0];
    return true;
  });
}

long long DaysSinceEpoch(std::string_view ymd) {
  if (ymd.size() != 10 || ymd[4] != '-' || ymd[7] != '-') return -1;
  long long y, m, d;
  if (!ToInt(ymd.substr(0, 4), y) || !ToInt(ymd.substr(5, 2), m) || !ToInt(ymd.substr(8, 2), d)) return -1;
  using namespace std::chrono;
  year_month_day date{year(int(y)), month(unsigned(m)), day(unsigned(d))};
  if (!date.ok()) return -1;
  return sys_days(date).time_since_epoch().count();
}

std::string DateFromDays(long long days) {
  using namespace std::chrono;
  year_month_day date{sys_days(std::chrono::days(days))};
  char buf[16];
  snprintf(buf, sizeof buf, "%04d-%02u-%02u", int(date.year()), unsigned(date.month()), unsigned(date.day()));
  return buf;
}

}  // namespace labfleet
