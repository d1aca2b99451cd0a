// plan, apply, status and render: the commands that look at live nodes (render does not; it sits here
// because it shares the node selection). See engine/planner.h and engine/executor.h for the contracts.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "engine/bootstrap.h"
#include "engine/cli.h"
#include "engine/connect.h"
#include "engine/connect_map.h"
#include "engine/executor.h"
#include "engine/fleet.h"
#include "engine/git_repo.h"
#include "engine/inventory.h"
#include "engine/node_vars.h"
#include "engine/plan_report.h"
#include "engine/planner.h"
#include "engine/stop_signals.h"
#include "engine/text.h"

namespace labfleet {
namespace {

// Loads and validates; prints findings; nullopt when there are errors.
std::optional<Inventory> LoadChecked(CommandContext& ctx, const std::string& connect_map) {
  Findings f;
  Inventory inv = LoadInventoryDir(ctx.global.inventory, f);
  if (!f.has_errors()) ValidateInventory(inv, f);
  if (!f.has_errors() && !connect_map.empty()) ApplyConnectMap(inv, connect_map, f);
  f.sort();
  if (f.has_errors()) {
    ctx.reporter.findings(f);
    ctx.reporter.error("the inventory has " + std::to_string(f.count(Severity::Error)) +
                       " error(s); run `labfleet validate` and fix them first");
    return std::nullopt;
  }
  return inv;
}

std::vector<const NodeDef*> Select(CommandContext& ctx, const Inventory& inv, const std::vector<std::string>& names,
                                   bool& ok) {
  Findings unknown;
  auto nodes = inv.select(names, &unknown);
  ok = !unknown.has_errors();
  if (!ok) ctx.reporter.findings(unknown);
  return nodes;
}

void AddOnlyOption(CLI::App& sub, PlanOptions& popts) {
  std::vector<std::string> names;
  for (const auto& m : Modules()) names.push_back(m->name());
  sub.add_option("--only", popts.only, "only these modules (comma-separated)")
      ->delimiter(',')
      ->check(CLI::IsMember(names));
}

// What plan, apply and status take alike: node or group names, modules (--only), how to connect, --connect-map.
// Added in two steps so that each command's help keeps its order: the names first (AddNodeNames), connecting
// last (AddConnectArgs); --only and the command's own options in between.
struct NodeArgs {
  std::vector<std::string> names;
  PlanOptions popts = [] {
    PlanOptions o;
    o.always_busy = false;  // the busy state only when a disruptive change is planned
    return o;
  }();
  ConnectOptions copts;
  std::string connect_map;
};

std::shared_ptr<NodeArgs> AddNodeNames(CLI::App& sub) {
  auto args = std::make_shared<NodeArgs>();
  sub.add_option("nodes", args->names, "node or group names (default: all)");
  return args;
}

void AddConnectArgs(CLI::App& sub, NodeArgs& args) {
  AddConnectOptions(sub, args.copts);
  sub.add_option("--connect-map", args.connect_map, "YAML nodes map overriding addresses/ssh (staging, sandbox demo)");
}

std::string Hostname() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string RunId() {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", gmtime(&now));
  return std::string(buf) + "-" + NewNonce().substr(0, 6);
}

struct GitInfo {
  bool in_git = false;
  std::string head;
  bool dirty = false;
  std::optional<GitRepo> repo;
};

// Dirty = anything uncommitted that the inventory may read: its YAML, and the templates and `source:` files
// it reads from below its parent directory (Inventory::read_root), so the commit a node records describes
// everything it got.
GitInfo ReadGit(const Inventory& inv, const std::string& inventory_dir) {
  GitInfo g;
  try {
    g.repo = GitRepo::Open(inventory_dir);
    g.in_git = true;
    g.head = g.repo->head();
  } catch (const std::exception&) {
    g.in_git = false;
    return g;
  }
  std::string scope;  // "" = the whole repository, when the read root lies above it
  try {
    scope = g.repo->relative_path(inv.read_root.empty() ? inventory_dir : inv.read_root);
  } catch (const std::exception&) {
  }
  g.dirty = g.repo->dirty(scope);
  return g;
}

// ---------------------------------------------------------------------------------------------- plan
CommandRegistrar plan_cmd("plan", "show what apply would change on each node (reads nodes, never writes)",
                          [](CLI::App& sub) -> CommandRun {
  auto args = AddNodeNames(sub);
  auto detailed = std::make_shared<bool>(false);
  sub.add_flag("--detailed-exitcode", *detailed, "exit 2 when anything would change");
  sub.add_flag("--force", args->popts.force, "plan disruptive changes even on busy nodes");
  AddOnlyOption(sub, args->popts);
  AddConnectArgs(sub, *args);
  return [=](CommandContext& ctx) -> int {
    auto inv = LoadChecked(ctx, args->connect_map);
    if (!inv) return kExitErrors;
    bool ok;
    auto nodes = Select(ctx, *inv, args->names, ok);
    if (!ok) return kExitUsage;
    StopSignals signals;
    ConnectOptions copts = args->copts;
    copts.cancel = signals.flag();
    auto runs = PlanAll(nodes, copts.parallel, RealFleetOps(*inv, copts, args->popts), signals.flag(),
                        /*keep_connections=*/false);
    ReportPlan(ctx.reporter, runs);
    PlanTotals t = CountPlan(runs);
    if (signals.stopped()) {
      ctx.reporter.error("interrupted by " + signals.name() + ": the plan is incomplete (nothing was changed)");
      return signals.exit_code();
    }
    if (t.failed) return kExitNodesFailed;
    if (*detailed && t.changes) return kExitChanges;
    return kExitOk;
  };
});

// --------------------------------------------------------------------------------------------- apply
CommandRegistrar apply_cmd("apply", "converge nodes to the inventory, then prove it by planning again",
                           [](CLI::App& sub) -> CommandRun {
  auto args = AddNodeNames(sub);
  auto yes = std::make_shared<bool>(false);
  auto allow_dirty = std::make_shared<bool>(false);
  auto break_lock = std::make_shared<bool>(false);
  sub.add_flag("-y,--yes", *yes, "do not ask for confirmation");
  sub.add_flag("--allow-dirty", *allow_dirty, "apply even with uncommitted inventory changes");
  sub.add_flag("--break-lock", *break_lock, "replace a node lock left by a dead or stuck run");
  auto drain = std::make_shared<int>(0);
  sub.add_flag("--force", args->popts.force,
               "do disruptive changes (docker restart, driver, unmount, disruptive units) even on busy nodes");
  AddOnlyOption(sub, args->popts);
  sub.add_option("--drain", *drain, "on a busy node, wait up to SECONDS for its GPU jobs and containers to end")
      ->check(CLI::NonNegativeNumber);
  auto progress = std::make_shared<std::string>("auto");
  sub.add_option("--progress", *progress,
                 "a line on stderr as each node finishes, [done/total] (auto: when stderr is a terminal and "
                 "more than one node is applied)")
      ->check(CLI::IsMember({"auto", "always", "never"}));
  auto boot = std::make_shared<bool>(false);
  auto ask_pass = std::make_shared<bool>(false);
  auto ask_become_pass = std::make_shared<bool>(false);
  auto boot_user = std::make_shared<std::string>();
  sub.add_flag("--bootstrap", *boot,
               "first make each node reachable with the admin's key (password login, host key pinned in the "
               "inventory), then apply; see docs/playbooks.md");
  sub.add_option("--bootstrap-user", *boot_user, "with --bootstrap: the installer's account that logs in with a "
                 "password (default: the inventory's ssh.user)");
  sub.add_flag("--ask-pass", *ask_pass, "with --bootstrap: prompt for the installer's SSH password on the terminal "
               "(else LABFLEET_PASSWORD_FILE)");
  sub.add_flag("--ask-become-pass", *ask_become_pass, "with --bootstrap: prompt for the sudo password separately "
               "(default: the SSH password)");
  AddConnectArgs(sub, *args);
  return [=](CommandContext& ctx) -> int {
    if (!*boot && (*ask_pass || *ask_become_pass || !boot_user->empty())) {
      ctx.reporter.error("--ask-pass, --ask-become-pass and --bootstrap-user go with --bootstrap");
      return kExitUsage;
    }
    if (*boot && !args->connect_map.empty()) {
      ctx.reporter.error("--bootstrap pins host keys in the inventory; it cannot be combined with --connect-map");
      return kExitUsage;
    }
    auto inv = LoadChecked(ctx, args->connect_map);
    if (!inv) return kExitErrors;
    // An unknown name is a usage error whatever the state of the repository.
    bool ok;
    auto nodes = Select(ctx, *inv, args->names, ok);
    if (!ok) return kExitUsage;
    GitInfo git = ReadGit(*inv, ctx.global.inventory);
    if (git.in_git && git.dirty && !*allow_dirty) {
      ctx.reporter.error("the inventory " + ctx.global.inventory +
                         " has uncommitted changes; commit them (nodes record the applied commit) or pass --allow-dirty");
      return kExitErrors;
    }
    StopSignals signals;
    ConnectOptions copts = args->copts;
    copts.cancel = signals.flag();
    if (*boot) {
      BootstrapOptions bo;
      bo.user = *boot_user;
      bo.accept_new_host_keys = args->copts.accept_new_host_keys;
      PasswordSource pw(*ask_pass, *ask_become_pass);
      ConfirmHostKey confirm = [&](const std::string& node, const std::string& key, const std::string& fp) {
        const std::string type = key.substr(0, key.find(' '));
        if (bo.accept_new_host_keys) {
          ctx.reporter.note(node + ": host key " + type + " " + fp + " accepted (--accept-new-host-keys)");
          return true;
        }
        int fd = ::open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) return false;  // the transport's message says to confirm or pass --accept-new-host-keys
        std::string q = node + ": host key " + type + " " + fp + "\nCompare it with `ssh-keygen -lf " +
                        "/etc/ssh/ssh_host_*_key.pub` on the node's console. Pin it in the inventory? [y/N] ";
        (void)!::write(fd, q.data(), q.size());
        std::string a;
        char c;
        while (a.size() < 16 && ::read(fd, &c, 1) == 1 && c != '\n') a.push_back(c);
        ::close(fd);
        return a == "y" || a == "yes";
      };
      bool failed = false, pinned = false;
      nlohmann::json jb = nlohmann::json::array();
      for (const NodeDef* n : nodes) {
        if (signals.stopped()) break;
        BootstrapResult r = BootstrapNode(*inv, *n, copts, bo, pw, confirm);
        if (r.error.empty()) PinHostKey(ctx.global.inventory, *inv, *n, r);
        pinned = pinned || r.pinned_now;
        jb.push_back({{"node", r.node}, {"host_key", r.host_key}, {"fingerprint", r.fingerprint},
                      {"pinned_now", r.pinned_now}, {"pinned_in", r.pinned_in}, {"password_used", r.used_password},
                      {"changes", r.changes}, {"error", r.error}});
        if (!r.error.empty()) {
          failed = true;
          ctx.reporter.line("bootstrap " + r.node + ": FAILED: " + r.error, LineStyle::Fail);
          continue;
        }
        if (r.host_key.empty()) {
          ctx.reporter.line("bootstrap " + r.node + ": local node, nothing to do");
          continue;
        }
        ctx.reporter.line("bootstrap " + r.node + ": host key " + r.host_key.substr(0, r.host_key.find(' ')) + " " +
                          r.fingerprint + (r.pinned_now ? " pinned in " + r.pinned_in + " (commit it)" : " (pinned)"));
        if (!r.used_password) ctx.reporter.line("bootstrap " + r.node + ": key login works; nothing to set up");
        for (const auto& c : r.changes) ctx.reporter.line("bootstrap " + r.node + ": " + c, LineStyle::Add);
        if (r.used_password && r.changes.empty())
          ctx.reporter.line("bootstrap " + r.node + ": password login; key and account were in place already");
      }
      ctx.reporter.doc()["bootstrap"] = jb;
      if (signals.stopped()) {
        ctx.reporter.error("interrupted by " + signals.name() + " while bootstrapping: nothing was applied");
        return signals.exit_code();
      }
      if (failed) {
        ctx.reporter.error("bootstrap failed on a node (above): nothing was applied; fix it and run again");
        return kExitNodesFailed;
      }
      if (pinned) {  // the inventory changed under us: read it again (every later connection verifies the pin)
        inv = LoadChecked(ctx, args->connect_map);
        if (!inv) return kExitErrors;
        nodes = Select(ctx, *inv, args->names, ok);
        if (!ok) return kExitUsage;
        git.dirty = ReadGit(*inv, ctx.global.inventory).dirty;
      }
    }
    if (!git.in_git)
      ctx.reporter.note("note: " + ctx.global.inventory + " is not in a git repository; nodes record no commit");
    FleetOps ops = RealFleetOps(*inv, copts, args->popts);
    auto runs = PlanAll(nodes, copts.parallel, ops, signals.flag());
    ReportPlan(ctx.reporter, runs);
    PlanTotals t = CountPlan(runs);
    if (signals.stopped()) {
      ctx.reporter.error("interrupted by " + signals.name() + " while planning: nothing was applied");
      return signals.exit_code();
    }
    // The question goes to stderr, so stdout stays one JSON document with --format json.
    if (t.changes && !*yes && isatty(0)) {
      std::cerr << "Apply " << Counted(t.changes, "change", "changes") << " to "
                << Counted(t.changed_nodes, "node", "nodes") << "? [y/N] " << std::flush;
      std::string answer;
      std::getline(std::cin, answer);
      if (signals.stopped()) {
        ctx.reporter.error("interrupted by " + signals.name() + ": nothing was applied");
        return signals.exit_code();
      }
      if (answer != "y" && answer != "yes") {
        ctx.reporter.note("nothing applied");
        return kExitOk;
      }
    }
    ApplyOptions opts;
    opts.run_id = RunId();
    opts.commit = git.head;
    opts.dirty = git.dirty ? "dirty" : "";
    const char* user = getenv("SUDO_USER") ? getenv("SUDO_USER") : getenv("USER");
    opts.client_host = Hostname();
    opts.who = std::string(user ? user : "root") + "@" + opts.client_host;
    opts.client_pid = getpid();
    opts.break_lock = *break_lock;
    opts.plan = args->popts;
    ApplyProgressFn on_done;
    if (*progress == "always" || (*progress == "auto" && !ctx.reporter.json() && isatty(2) && nodes.size() > 1))
      on_done = [&ctx](const NodeApplyResult& r, size_t done, size_t total) {
        ctx.reporter.note(ApplyProgressLine(r, done, total));
      };
    ApplyOutcome outcome = ApplyAll(nodes, runs, copts.parallel, ops, opts, *drain, signals.flag(), on_done);
    ReportApply(ctx.reporter, outcome, opts);
    if (signals.stopped()) {
      const auto& mid = outcome.mid_apply;
      const auto& skipped = outcome.not_started;
      ctx.reporter.doc()["interrupted"] = {{"signal", signals.name()}, {"mid_apply", mid}, {"not_started", skipped}};
      ctx.reporter.error("interrupted by " + signals.name() + ": no further node was started; " +
                         (mid.empty() ? std::string("no node was left mid-apply")
                                      : "left mid-apply (changes maybe partly applied; each node above says what it got through "
                                        "and whether its script was stopped on the node): " + Join(mid, ", ")) +
                         (skipped.empty() ? "" : "; not started: " + Join(skipped, ", ")) +
                         ". Apply again to finish.");
      return signals.exit_code();
    }
    return outcome.failed || outcome.unreachable ? kExitNodesFailed : kExitOk;
  };
});

// -------------------------------------------------------------------------------------------- status
CommandRegistrar status_cmd("status", "per node: applied commit, commits behind HEAD, drift",
                            [](CLI::App& sub) -> CommandRun {
  auto args = AddNodeNames(sub);
  AddOnlyOption(sub, args->popts);
  AddConnectArgs(sub, *args);
  return [=](CommandContext& ctx) -> int {
    auto inv = LoadChecked(ctx, args->connect_map);
    if (!inv) return kExitErrors;
    bool ok;
    auto nodes = Select(ctx, *inv, args->names, ok);
    if (!ok) return kExitUsage;
    GitInfo git = ReadGit(*inv, ctx.global.inventory);
    std::vector<StatusRow> rows(nodes.size());
    ForEachNode(nodes, args->copts.parallel, [&](size_t i, const NodeDef& n) {
      rows[i].node = n.name;
      try {
        auto t = Connect(*inv, n, args->copts);
        // The plan's probe reads the state record (at most 64 KiB) in the same session; only a node whose plan
        // stopped early (a required fact failed) costs a second session for it.
        rows[i].plan = PlanNode(*inv, n, *t, args->popts);
        std::string state = rows[i].plan.recorded_state;
        if (state.empty() && !rows[i].plan.error.empty()) {
          RunResult r = t->run("head -c 65536 /var/lib/labfleet/state.json 2>/dev/null");
          if (r.ok()) state = r.out;
        }
        if (!state.empty()) rows[i].state = nlohmann::json::parse(state, nullptr, false);
        if (!t->notes().empty()) rows[i].plan.warnings.push_back({"ssh", t->notes()});
      } catch (const std::exception& e) {
        rows[i].error = e.what();
      }
    });
    bool read_all = ReportStatus(ctx.reporter, rows, git.in_git ? &*git.repo : nullptr, git.head);
    return read_all ? kExitOk : kExitNodesFailed;
  };
});

// -------------------------------------------------------------------------------------------- render
CommandRegistrar render_cmd("render", "print what a node gets from a template (offline)", [](CLI::App& sub) -> CommandRun {
  auto tmpl = std::make_shared<std::string>();
  auto node = std::make_shared<std::string>();
  sub.add_option("template", *tmpl, "template name, relative to the templates directory")->required();
  sub.add_option("-n,--node", *node, "node name")->required();
  return [=](CommandContext& ctx) -> int {
    Findings f;
    Inventory inv = LoadInventoryDir(ctx.global.inventory, f);
    if (f.has_errors()) {
      ctx.reporter.findings(f);
      return kExitErrors;
    }
    const NodeDef* n = inv.node(*node);
    if (!n) {
      std::vector<std::string> names;
      for (const auto& x : inv.nodes) names.push_back(x.name);
      std::string msg = "no node '" + *node + "' in " + ctx.global.inventory;
      if (auto s = Suggest(*node, names)) msg += "; did you mean '" + *s + "'?";
      ctx.reporter.error(msg);
      return kExitUsage;
    }
    std::string out = RenderForNode(inv, *n, inv.settings(*n), *tmpl);
    ctx.reporter.raw(out);
    ctx.reporter.doc()["node"] = n->name;
    ctx.reporter.doc()["template"] = *tmpl;
    ctx.reporter.doc()["output"] = out;
    return kExitOk;
  };
});

}  // namespace
}  // namespace labfleet
