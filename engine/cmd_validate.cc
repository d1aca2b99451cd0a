// `labfleet validate [--rev REV]`: loads the inventory (working tree, or a git revision) and runs every
// offline check. Findings go to the Reporter (compiler style on stderr, or JSON), then a summary line.
// Exit: 0 when there are no errors (warnings allowed), 1 when there are errors.
#include "engine/cli.h"
#include "engine/inventory.h"
#include "engine/playbook.h"

namespace labfleet {
namespace {

std::string Plural(size_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

const CommandRegistrar kValidate(
    "validate", "check the inventory and the playbooks next to it offline (no node is contacted)", [](CLI::App& sub) -> CommandRun {
      auto rev = std::make_shared<std::string>();
      sub.add_option("--rev", *rev,
                     "validate the inventory as committed at this git revision (branch, tag, commit id) instead "
                     "of the working tree");
      return [rev](CommandContext& ctx) -> int {
        Findings findings;
        const std::string& dir = ctx.global.inventory;
        Inventory inv = rev->empty() ? LoadInventoryDir(dir, findings) : LoadInventoryRev(dir, *rev, findings);
        ValidateInventory(inv, findings);
        // The repository's playbooks (playbooks/ next to the inventory), against this inventory; working tree only.
        size_t playbooks = rev->empty() ? ValidatePlaybooksDir(dir, inv, findings) : 0;
        findings.sort();
        ctx.reporter.findings(findings);
        size_t errors = findings.count(Severity::Error), warnings = findings.count(Severity::Warning);
        if (ctx.reporter.json()) {
          auto& doc = ctx.reporter.doc();
          doc["inventory"] = dir;
          if (!inv.revision.empty()) doc["revision"] = inv.revision;
          doc["summary"] = {{"errors", errors},
                            {"warnings", warnings},
                            {"nodes", inv.nodes.size()},
                            {"users", inv.users.size()},
                            {"playbooks", playbooks},
                            {"ok", errors == 0}};
        } else {
          std::string line = Plural(errors, "error") + ", " + Plural(warnings, "warning");
          line += " (" + Plural(inv.nodes.size(), "node") + ", " + Plural(inv.users.size(), "user");
          if (playbooks) line += ", " + Plural(playbooks, "playbook");
          if (!inv.revision.empty()) line += ", revision " + inv.revision.substr(0, 12);
          line += ")";
          ctx.reporter.line(line);
        }
        return errors ? kExitErrors : kExitOk;
      };
    });

}  // namespace
}  // namespace labfleet
