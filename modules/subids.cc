// subids: /etc/subuid and /etc/subgid ranges for rootless Docker, allocated from the uid (SubIds) so every
// node agrees. Lines of accounts not in the inventory are kept as they are; lines of inventory users are
// exactly what the inventory says (a range for `rootless_docker: true`, none otherwise). A line is an inventory
// user's when its first field is the user's name OR the user's uid (shadow-utils accepts both, and an admin who
// ran `usermod --add-subuids` or a script may have written either): labfleet's name-keyed line replaces it.
// Every kept line is checked against labfleet's ranges: an overlap is a warning under the node naming both.
#include <map>
#include <set>

#include "modules/facts/accounts_probe.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "engine/text.h"

namespace labfleet {

// One line of /etc/subuid or /etc/subgid as the node has it. Pure; exposed for the unit tests.
struct SubIdLine {
  int number = 0;    // 1-based line number in the file
  std::string text;  // the line as is
  std::string key;   // first field: a name or a uid
  long long start = -1, count = -1;  // -1 when the line is not NAME:START:COUNT with numbers
};
std::vector<SubIdLine> ParseSubIdLines(std::string_view content);

// The lines of `content` that belong to none of `owned` (the inventory's names, and their uids as decimal
// text), plus labfleet's `ranges` (name, start, count) after them; `warnings` gets one entry per kept line that
// overlaps one of `ranges`. Pure.
struct SubIdPlan {
  std::string content;
  std::vector<std::string> warnings;
};
SubIdPlan PlanSubIds(const std::string& path, std::string_view live, const std::set<std::string>& owned,
                     const std::vector<std::pair<std::string, SubIdRange>>& ranges);

std::vector<SubIdLine> ParseSubIdLines(std::string_view content) {
  std::vector<SubIdLine> out;
  int n = 0;
  for (const auto& line : SplitLines(content)) {
    SubIdLine l;
    l.number = ++n;
    l.text = line;
    auto f = Split(line, ':');
    l.key = f.empty() ? std::string() : f[0];
    if (f.size() == 3) {
      auto s = ParseInteger(f[1]), c = ParseInteger(f[2]);
      if (s && c && *s >= 0 && *c > 0) {
        l.start = *s;
        l.count = *c;
      }
    }
    out.push_back(std::move(l));
  }
  return out;
}

SubIdPlan PlanSubIds(const std::string& path, std::string_view live, const std::set<std::string>& owned,
                     const std::vector<std::pair<std::string, SubIdRange>>& ranges) {
  SubIdPlan p;
  for (const auto& l : ParseSubIdLines(live)) {
    if (!l.key.empty() && owned.count(l.key)) continue;
    p.content += l.text + "\n";
    if (l.start < 0) continue;
    for (const auto& [user, r] : ranges) {
      if (l.start < r.start + r.count && r.start < l.start + l.count)
        p.warnings.push_back("subids: " + path + " range " + std::to_string(r.start) + "-" +
                             std::to_string(r.start + r.count - 1) + " of " + user +
                             " (labfleet) overlaps line " + std::to_string(l.number) + " '" + l.text + "' (" +
                             std::to_string(l.start) + "-" + std::to_string(l.start + l.count - 1) +
                             "); containers of one could read the other's files: remove or move that line, or set "
                             "subids: { start, count } for " + user);
    }
  }
  for (const auto& [user, r] : ranges)
    p.content += user + ":" + std::to_string(r.start) + ":" + std::to_string(r.count) + "\n";
  return p;
}

namespace {

struct SubIdFile {
  std::string path;
};

class SubIdsModule : public Module {
 public:
  std::string name() const override { return "subids"; }
  int order() const override { return 40; }

  // Every node: the ranges of the inventory's rootless Docker users (users: rootless_docker).
  std::vector<OwnedFile> owned_files(const NodeContext&) const override {
    return {{"/etc/subuid", "users: rootless_docker (subids)"}, {"/etc/subgid", "users: rootless_docker (subids)"}};
  }

  std::vector<Resource> resources(const NodeContext&) const override {
    return {{name(), "subids:/etc/subuid", {}, std::make_shared<SubIdFile>(SubIdFile{"/etc/subuid"})},
            {name(), "subids:/etc/subgid", {}, std::make_shared<SubIdFile>(SubIdFile{"/etc/subgid"})}};
  }

  std::vector<Probe> probes(const NodeContext&, const std::vector<Resource>&) const override {
    return {FileProbe("/etc/subuid"), FileProbe("/etc/subgid"), kPasswd.probe()};
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    const std::string& path = r.as<SubIdFile>().path;
    FileState live = ParseFileProbe(results, path);
    // Whose lines these are: every inventory user's name, and its uid (the inventory's, else the node's).
    const auto& passwd = results.fact(kPasswd);
    std::set<std::string> owned;
    for (const auto& u : ctx.inv.users) {
      owned.insert(u.name);
      long long uid = u.uid;
      if (uid < 0)
        if (auto it = passwd.by_name.find(u.name); it != passwd.by_name.end()) uid = it->second.uid;
      if (uid >= 0) owned.insert(std::to_string(uid));
    }
    std::vector<std::pair<std::string, SubIdRange>> ranges;
    for (const UserDef* u : UsersOnNode(ctx))
      if (u->rootless_docker && !u->remove) ranges.emplace_back(u->name, SubIds(*u));
    if (live.exists && !live.content_read)
      return Failure(path + " could not be read whole (" + live.unread_reason + "); labfleet keeps its other lines, "
                     "so it does not rewrite a file it has not read");
    SubIdPlan p = PlanSubIds(path, live.content, owned, ranges);
    if (!live.exists && p.content.empty())
      return Noop("nothing to do because no user on this node uses rootless Docker and " + path + " is absent");
    FileSpec want{path, p.content, 0644, "root", "root"};
    DiffResult d = DiffFile(want, live, path + " (" + Counted(ranges.size(), "rootless Docker range", "rootless Docker ranges") + ")");
    d.warnings.insert(d.warnings.end(), p.warnings.begin(), p.warnings.end());
    return d;
  }
};

ModuleRegistrar registrar(std::make_unique<SubIdsModule>());

}  // namespace
}  // namespace labfleet
