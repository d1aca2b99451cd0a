// `labfleet completion bash|zsh|names` and `labfleet manpage`: shell completion and the manual page, both made
// from the same command tree `--help` prints, so neither can fall behind a new command or flag.
//   - bash/zsh: a completion script for subcommands, flags, `--only` modules and, where a command takes node
//     names, the node and group names of the inventory (-i/--inventory on the command line, else ./inventory),
//     read at completion time by `labfleet completion names` (offline, quiet: nothing on an invalid inventory).
//   - manpage: labfleet(1) in roff; every text from the tree is escaped for roff.
#include <algorithm>
#include <set>

#include "engine/cli.h"
#include "engine/inventory.h"
#include "engine/module.h"

namespace labfleet {
namespace {

std::vector<const CLI::App*> Subcommands(const CLI::App& app) {
  auto subs = app.get_subcommands([](const CLI::App*) { return true; });
  std::sort(subs.begin(), subs.end(), [](const CLI::App* a, const CLI::App* b) { return a->get_name() < b->get_name(); });
  return subs;
}

// "-i --inventory" for every named (non-positional) option of `app`, help included.
std::vector<std::string> Flags(const CLI::App& app) {
  std::vector<std::string> out;
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_positional()) continue;
    for (const auto& s : o->get_snames()) out.push_back("-" + s);
    for (const auto& l : o->get_lnames()) out.push_back("--" + l);
  }
  return out;
}

// Options that take a value: the word after them is not a node name.
std::vector<std::string> ValueFlags(const CLI::App& app) {
  std::vector<std::string> out;
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_positional() || o->get_expected_min() == 0) continue;
    for (const auto& s : o->get_snames()) out.push_back("-" + s);
    for (const auto& l : o->get_lnames()) out.push_back("--" + l);
  }
  return out;
}

bool TakesNodes(const CLI::App& sub) {
  for (const CLI::Option* o : sub.get_options())
    if (o->get_positional() && o->get_name() == "nodes") return true;
  return false;
}

std::string Words(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& w : v) s += (s.empty() ? "" : " ") + w;
  return s;
}

std::string BashScript(const CLI::App& app) {
  std::vector<std::string> subs;
  for (const auto* s : Subcommands(app)) subs.push_back(s->get_name());
  std::vector<std::string> modules;
  for (const auto& m : Modules()) modules.push_back(m->name());
  std::string s =
      "# bash completion for labfleet (made by `labfleet completion bash`; zsh: `labfleet completion zsh`)\n"
      "_labfleet() {\n"
      "  local cur prev inv='' sub='' i w opts='' values='' nodes=0\n"
      "  cur=\"${COMP_WORDS[COMP_CWORD]}\"\n"
      "  prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n"
      "  for ((i = 1; i < COMP_CWORD; i++)); do\n"
      "    w=\"${COMP_WORDS[i]}\"\n"
      "    case \"$w\" in\n"
      "      -i|--inventory) inv=\"${COMP_WORDS[i+1]}\"; i=$((i + 1)) ;;\n"
      "      --inventory=*) inv=\"${w#--inventory=}\" ;;\n"
      "      --format) i=$((i + 1)) ;;\n"
      "      -*) ;;\n"
      "      *) if [ -z \"$sub\" ]; then sub=\"$w\"; fi ;;\n"
      "    esac\n"
      "  done\n"
      "  case \"$prev\" in\n"
      "    -i|--inventory) COMPREPLY=($(compgen -d -- \"$cur\")); return ;;\n"
      "    --format) COMPREPLY=($(compgen -W 'text json' -- \"$cur\")); return ;;\n"
      "    --only) COMPREPLY=($(compgen -W '" + Words(modules) + "' -- \"${cur##*,}\")); return ;;\n"
      "  esac\n"
      "  if [ -z \"$sub\" ]; then\n"
      "    COMPREPLY=($(compgen -W '" + Words(subs) + " " + Words(Flags(app)) + "' -- \"$cur\"))\n"
      "    return\n"
      "  fi\n"
      "  case \"$sub\" in\n";
  std::vector<std::string> global;  // the root's options that also work after a command (not its help/version)
  for (const auto& f : Flags(app))
    if (f != "-h" && f != "--help" && f != "--version") global.push_back(f);
  for (const auto* sub : Subcommands(app)) {
    s += "    " + sub->get_name() + ") opts='" + Words(Flags(*sub)) + " " + Words(global) + "'; values='" +
         Words(ValueFlags(*sub)) + "'; nodes=" + (TakesNodes(*sub) ? "1" : "0") + " ;;\n";
  }
  s += "  esac\n"
       "  for w in $values; do\n"
       "    if [ \"$prev\" = \"$w\" ]; then COMPREPLY=($(compgen -f -- \"$cur\")); return; fi\n"
       "  done\n"
       "  if [[ \"$cur\" == -* ]]; then\n"
       "    COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
       "  elif [ \"$nodes\" = 1 ]; then\n"
       "    COMPREPLY=($(compgen -W \"$(\"${COMP_WORDS[0]}\" ${inv:+-i \"$inv\"} completion names 2>/dev/null)\" -- \"$cur\"))\n"
       "  fi\n"
       "}\n"
       "complete -F _labfleet labfleet\n";
  return s;
}

// roff: a backslash as \e, '-' as \- (so it is an ASCII hyphen-minus), a leading '.' or '\'' guarded by \&.
std::string Roff(const std::string& text) {
  std::string out;
  bool line_start = true;
  for (char c : text) {
    if (line_start && (c == '.' || c == '\'')) out += "\\&";
    if (c == '\\') out += "\\e";
    else if (c == '-') out += "\\-";
    else out += c;
    line_start = c == '\n';
  }
  return out;
}

std::string OptionText(const CLI::Option& o) {
  std::string names;
  for (const auto& s : o.get_snames()) names += (names.empty() ? "" : ", ") + std::string("\\fB\\-") + Roff(s) + "\\fR";
  for (const auto& l : o.get_lnames())
    names += (names.empty() ? "" : ", ") + std::string("\\fB\\-\\-") + Roff(l) + "\\fR";
  if (o.get_expected_min() > 0) names += " \\fI" + Roff(o.get_type_name().empty() ? "VALUE" : o.get_type_name()) + "\\fR";
  return names;
}

void OptionsSection(std::string& m, const CLI::App& app) {
  for (const CLI::Option* o : app.get_options()) {
    if (o->get_positional()) continue;
    m += ".TP\n" + OptionText(*o) + "\n" + Roff(o->get_description()) + "\n";
  }
}

std::string ManPage(const CLI::App& app) {
  std::string m = ".TH LABFLEET 1 \"\" \"labfleet " LABFLEET_VERSION "\" \"User Commands\"\n"
                  ".SH NAME\nlabfleet \\- " + Roff(app.get_description().substr(app.get_description().find(':') + 2)) +
                  "\n.SH SYNOPSIS\n.B labfleet\n[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]\n"
                  ".SH DESCRIPTION\nlabfleet reads a YAML inventory of nodes, groups, users, files and settings "
                  "(usually kept in git), checks it offline, connects to each node over SSH (nothing to install on "
                  "the nodes), shows the exact difference, converges the nodes in parallel and proves it by planning "
                  "again.\n.SH OPTIONS\nThese may be given before or after the command.\n";
  OptionsSection(m, app);
  m += ".SH COMMANDS\n";
  for (const auto* sub : Subcommands(app)) {
    std::string usage = "labfleet " + sub->get_name();
    for (const CLI::Option* o : sub->get_options())
      if (o->get_positional()) usage += " [" + o->get_name() + "...]";
    m += ".SS \"" + Roff(usage) + "\"\n" + Roff(sub->get_description()) + "\n";
    OptionsSection(m, *sub);
  }
  m += ".SH EXIT STATUS\n.TP\n0\nsuccess, nothing pending\n.TP\n1\nerrors (validation findings, a failed operation)\n"
       ".TP\n2\nchanges pending (\\fBplan \\-\\-detailed\\-exitcode\\fR)\n.TP\n3\nusage error\n.TP\n4\n"
       "some nodes were unreachable or failed\n"
       ".SH FILES\n.TP\n/var/lib/labfleet/state.json\non each node: the commit, settings hash, who and when of the "
       "last apply that changed it\n.TP\n/run/labfleet.lock\non each node: held while an apply runs\n"
       ".TP\n/var/lib/labfleet/backup/\non each node: the previous version of every file an apply replaced\n"
       ".SH SEE ALSO\n\\fBssh\\fR(1), \\fBsshd_config\\fR(5), the documentation in /usr/share/doc/labfleet\n";
  return m;
}

CommandRegistrar completion_cmd("completion", "print a shell completion script (bash, zsh) or, for it, the node and group names",
                                [](CLI::App& sub) -> CommandRun {
  auto shell = std::make_shared<std::string>();
  sub.add_option("shell", *shell, "bash, zsh, or names (the inventory's node and group names, one a line)")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh", "names"}));
  return [=](CommandContext& ctx) -> int {
    if (*shell == "names") {
      // Completion runs this on every TAB: offline, no findings printed, nothing at all when the inventory is bad.
      Findings f;
      Inventory inv = LoadInventoryDir(ctx.global.inventory, f);
      if (f.has_errors()) return kExitErrors;
      std::set<std::string> names;
      for (const auto& n : inv.nodes) names.insert(n.name);
      for (const auto& g : inv.groups) names.insert(g.name);
      std::string out;
      for (const auto& n : names) out += n + "\n";
      ctx.reporter.raw(out);
      ctx.reporter.doc()["names"] = names;
      return kExitOk;
    }
    std::string script = BashScript(*ctx.app);
    if (*shell == "zsh")
      script = "#compdef labfleet\n# zsh runs the bash completion through bashcompinit.\n"
               "autoload -U +X bashcompinit && bashcompinit\n" + script;
    ctx.reporter.raw(script);
    ctx.reporter.doc()["script"] = script;
    return kExitOk;
  };
});

CommandRegistrar manpage_cmd("manpage", "print the manual page labfleet(1) in roff (made from this help)",
                             [](CLI::App&) -> CommandRun {
  return [=](CommandContext& ctx) -> int {
    std::string page = ManPage(*ctx.app);
    ctx.reporter.raw(page);
    ctx.reporter.doc()["manpage"] = page;
    return kExitOk;
  };
});

}  // namespace
}  // namespace labfleet
