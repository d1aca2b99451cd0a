// `labfleet diff REV1 [REV2]`: which nodes' desired state changes between two commits of the inventory (REV2
// omitted: the working tree), and how: settings, accounts, rendered files (engine/rev_diff.h). Offline.
#include "engine/cli.h"
#include "engine/git_repo.h"
#include "engine/inventory.h"
#include "engine/rev_diff.h"
#include "engine/text.h"

namespace labfleet {
namespace {

CommandRegistrar diff_cmd("diff", "which nodes change between two inventory commits, and how (offline)",
                          [](CLI::App& sub) -> CommandRun {
  auto from = std::make_shared<std::string>();
  auto to = std::make_shared<std::string>();
  auto detailed = std::make_shared<bool>(false);
  sub.add_option("from", *from, "the older revision (a commit, branch, tag, HEAD~1, ...)")->required();
  sub.add_option("to", *to, "the newer revision (default: the working tree)");
  sub.add_flag("--detailed-exitcode", *detailed, "exit 2 when any node changes");
  return [=](CommandContext& ctx) -> int {
    auto load = [&](const std::string& rev, Inventory& inv) {
      Findings f;
      try {
        inv = rev.empty() ? LoadInventoryDir(ctx.global.inventory, f) : LoadInventoryRev(ctx.global.inventory, rev, f);
      } catch (const std::exception& e) {
        ctx.reporter.error(std::string(e.what()) + "; name a commit of the repository that holds " +
                           ctx.global.inventory);
        return false;
      }
      f.sort();
      if (f.has_errors()) {
        ctx.reporter.findings(f);
        ctx.reporter.error("the inventory at " + (rev.empty() ? std::string("the working tree") : rev) + " has " +
                           std::to_string(f.count(Severity::Error)) + " error(s); the diff needs both versions valid");
        return false;
      }
      return true;
    };
    Inventory before, after;
    if (!load(*from, before) || !load(*to, after)) return kExitErrors;
    auto deltas = DiffInventories(before, after);
    auto& j = ctx.reporter.doc()["nodes"];
    j = nlohmann::json::array();
    size_t added = 0, removed = 0;
    for (const auto& d : deltas) {
      added += d.status == '+';
      removed += d.status == '-';
      ctx.reporter.line(d.node + ": " + (d.status == '~' ? Counted(d.lines.size(), "change", "changes")
                                                         : std::string(d.status == '+' ? "added" : "removed")));
      for (const auto& l : d.lines) ctx.reporter.line("  " + l);
      j.push_back(NodeDeltaToJson(d));
    }
    std::string range = before.revision.substr(0, 10) + ".." + (to->empty() ? "working tree" : after.revision.substr(0, 10));
    ctx.reporter.line("Diff " + range + ": " + std::to_string(deltas.size() - added - removed) + " of " +
                      std::to_string(after.nodes.size()) + " nodes change, " + std::to_string(added) + " added, " +
                      std::to_string(removed) + " removed.");
    ctx.reporter.doc()["from"] = before.revision;
    ctx.reporter.doc()["to"] = to->empty() ? "" : after.revision;
    ctx.reporter.doc()["summary"] = {
        {"changed", deltas.size() - added - removed}, {"added", added}, {"removed", removed}, {"nodes", after.nodes.size()}};
    return *detailed && !deltas.empty() ? kExitChanges : kExitOk;
  };
});

}  // namespace
}  // namespace labfleet
