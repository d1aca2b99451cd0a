// `labfleet schema`: the JSON Schema of an inventory file (engine/schema.h), for editors and CI linters.
#include <nlohmann/json.hpp>

#include "engine/cli.h"
#include "engine/module.h"
#include "engine/schema.h"

namespace labfleet {
namespace {

CommandRegistrar schema_cmd("schema", "print the JSON Schema of inventory files (for editors: yaml-language-server)",
                            [](CLI::App&) -> CommandRun {
  return [](CommandContext& ctx) -> int {
    RequireModules();
    nlohmann::json s = InventorySchema();
    if (ctx.reporter.json())
      ctx.reporter.doc() = std::move(s);
    else
      ctx.reporter.raw(s.dump(2) + "\n");
    return kExitOk;
  };
});

}  // namespace
}  // namespace labfleet
