#include "engine/cli.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <vector>

#include "engine/module.h"

namespace labfleet {
namespace {

struct CommandEntry {
  std::string name, help;
  CommandSetup setup;
};

std::vector<CommandEntry>& Commands() {
  static std::vector<CommandEntry> commands;
  return commands;
}

}  // namespace

CommandRegistrar::CommandRegistrar(std::string name, std::string help, CommandSetup setup) {
  Commands().push_back({std::move(name), std::move(help), std::move(setup)});
}

int RunCli(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
  CLI::App app{"labfleet: declarative configuration for lab GPU clusters"};
  app.set_version_flag("--version", std::string("labfleet ") + LABFLEET_VERSION);
  app.require_subcommand(1);
  GlobalOptions global;
  app.add_option("-i,--inventory", global.inventory, "inventory directory (every *.yaml below it)")
      ->capture_default_str();
  app.add_option("--format", global.format, "output format")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--color", global.color, "colour: auto (a terminal, NO_COLOR unset), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}))
      ->capture_default_str();

  std::vector<std::pair<CLI::App*, CommandRun>> runs;
  for (auto& c : Commands()) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    // Global options may also follow the subcommand name.
    sub->fallthrough();
    runs.emplace_back(sub, c.setup(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e, out, err);
    return rc == 0 ? kExitOk : kExitUsage;
  }
  Reporter reporter(global.format == "json" ? OutputFormat::Json : OutputFormat::Text, out, err);
  {
    const ColorMode mode = global.color == "always" ? ColorMode::Always
                           : global.color == "never" ? ColorMode::Never : ColorMode::Auto;
    // Only the process's own stdout/stderr can be a terminal; streams passed in by tests never are.
    auto wanted = [&](std::ostream& s, int fd) {
      bool tty = (&s == &std::cout || &s == &std::cerr) && isatty(fd);
      return ColorWanted(mode, tty, std::getenv("NO_COLOR"), std::getenv("TERM"));
    };
    reporter.set_color(wanted(out, 1), wanted(err, 2));
  }
  CommandContext ctx{global, reporter, &app};
  for (auto& [sub, run] : runs) {
    if (sub->parsed()) {
      int rc;
      try {
        RequireModules();
        rc = run(ctx);
      } catch (const std::exception& e) {
        reporter.error(e.what());
        rc = kExitErrors;
      }
      reporter.finish();
      return rc;
    }
  }
  return kExitUsage;
}

}  // namespace labfleet
