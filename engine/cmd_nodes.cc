// `labfleet nodes [NODES|GROUPS...]`: the selected nodes, one per line (name, address, groups, gpus).
// Offline. Scripts use `--format json` (the demo picks its sandbox node names from it).
#include "engine/cli.h"
#include "engine/inventory.h"

namespace labfleet {
namespace {

CommandRegistrar nodes_cmd("nodes", "list the nodes a selection of node and group names picks (offline)",
                           [](CLI::App& sub) -> CommandRun {
  auto names = std::make_shared<std::vector<std::string>>();
  sub.add_option("nodes", *names, "node or group names (default: all)");
  return [=](CommandContext& ctx) -> int {
    Findings f;
    Inventory inv = LoadInventoryDir(ctx.global.inventory, f);
    if (f.has_errors()) {
      ctx.reporter.findings(f);
      return kExitErrors;
    }
    Findings unknown;
    auto nodes = inv.select(*names, &unknown);
    if (unknown.has_errors()) {
      ctx.reporter.findings(unknown);
      return kExitUsage;
    }
    auto& j = ctx.reporter.doc()["nodes"];
    j = nlohmann::json::array();
    for (const NodeDef* n : nodes) {
      std::string groups;
      for (const auto& g : n->groups) groups += (groups.empty() ? "" : ",") + g;
      char line[512];
      snprintf(line, sizeof line, "%-16s %-16s %-24s %s", n->name.c_str(), n->address.c_str(), groups.c_str(),
               n->gpus >= 0 ? (std::to_string(n->gpus) + " GPUs").c_str() : "");
      ctx.reporter.line(line);
      j.push_back({{"name", n->name}, {"address", n->address}, {"groups", n->groups}, {"gpus", n->gpus}});
    }
    return kExitOk;
  };
});

}  // namespace
}  // namespace labfleet
