// Command registry: each command (engine/cmd_*.cc) registers itself, so adding a command edits no
// central switch. RunCli is what main() calls; tests call it too, with their own streams.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include "engine/reporter.h"

namespace labfleet {

// Exit codes shared by every command (README "Exit codes").
enum ExitCode : int {
  kExitOk = 0,           // success, nothing pending
  kExitErrors = 1,       // errors (validation findings, failed operation)
  kExitChanges = 2,      // changes pending (only where a command promises it, e.g. plan --detailed-exitcode)
  kExitUsage = 3,        // usage error
  kExitNodesFailed = 4,  // some nodes unreachable or failed
};

struct GlobalOptions {
  std::string inventory = "inventory";  // --inventory DIR
  std::string format = "text";          // --format text|json
  std::string color = "auto";           // --color auto|always|never (reporter.h: ColorWanted)
};

struct CommandContext {
  GlobalOptions& global;
  Reporter& reporter;
  const CLI::App* app = nullptr;  // the whole command tree (completion and the manual page are made from it)
};

// setup() adds the subcommand's own options to `sub` and returns the function that runs it.
using CommandRun = std::function<int(CommandContext&)>;
using CommandSetup = std::function<CommandRun(CLI::App& sub)>;

struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string help, CommandSetup setup);
};

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err);

}  // namespace labfleet
