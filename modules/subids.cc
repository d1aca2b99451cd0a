// subids: /etc/subuid and /etc/subgid ranges for rootless Docker, allocated from the uid (SubIds) so every
// node agrees. Lines of accounts not in the inventory are kept as they are; lines of inventory users are
// exactly what the inventory says (a range for `rootless_docker: true`, none otherwise).
#include <set>

#include "modules/facts/accounts_probe.h"
#include "engine/file_probe.h"
#include "engine/module.h"
#include "engine/text.h"

namespace labfleet {
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
    return {FileProbe("/etc/subuid"), FileProbe("/etc/subgid")};
  }

  DiffResult diff(const NodeContext& ctx, const Resource& r, const ProbeResults& results) const override {
    const std::string& path = r.as<SubIdFile>().path;
    FileState live = ParseFileProbe(results, path);
    std::set<std::string> inventory_users;
    for (const auto& u : ctx.inv.users) inventory_users.insert(u.name);
    std::string content;
    for (const auto& line : SplitLines(live.content)) {
      auto colon = line.find(':');
      if (colon != std::string::npos && inventory_users.count(line.substr(0, colon))) continue;
      content += line + "\n";
    }
    int ranges = 0;
    for (const UserDef* u : UsersOnNode(ctx)) {
      if (!u->rootless_docker || u->remove) continue;
      SubIdRange range = SubIds(*u);
      content += u->name + ":" + std::to_string(range.start) + ":" + std::to_string(range.count) + "\n";
      ++ranges;
    }
    if (!live.exists && content.empty())
      return Noop("nothing to do because no user on this node uses rootless Docker and " + path + " is absent");
    FileSpec want{path, content, 0644, "root", "root"};
    return DiffFile(want, live, path + " (" + Counted(ranges, "rootless Docker range", "rootless Docker ranges") + ")");
  }
};

ModuleRegistrar registrar(std::make_unique<SubIdsModule>());

}  // namespace
}  // namespace labfleet
