// `labfleet run PLAYBOOK [NODES|GROUPS] [--yes | --ask] [--from STEP] [--resume]`: a playbook (playbooks/NAME.yaml, or a
// path) step by step (engine/playbook_run.h). A dry run unless --yes (or --ask) is given.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <atomic>
#include <chrono>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>

#include "engine/cli.h"
#include "engine/connect.h"
#include "engine/connect_map.h"
#include "engine/git_repo.h"
#include "engine/playbook.h"
#include "engine/playbook_run.h"
#include "engine/sha256.h"
#include "engine/stop_signals.h"
#include "engine/text.h"

namespace labfleet {
namespace {

// Writes `text` to the admin's `path` (mode 0600: it lists people and their logins): "" or why not.
std::string WriteCsv(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return std::strerror(errno);
  bool ok = ::fchmod(fd, 0600) == 0;
  for (size_t done = 0; ok && done < text.size();) {
    ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w < 0 && errno == EINTR) continue;
    ok = w > 0;
    if (ok) done += size_t(w);
  }
  std::string why = ok ? "" : std::strerror(errno);
  if (::close(fd) != 0 && why.empty()) why = std::strerror(errno);
  return why;
}

std::string RunIdNow() {
  auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", gmtime(&now));
  return std::string(buf) + "-" + NewNonce().substr(0, 6);
}

const CommandRegistrar kRun(
    "run", "run a playbook (playbooks/NAME.yaml or a path): a dry run unless --yes", [](CLI::App& sub) -> CommandRun {
      struct Args {
        std::string playbook, from, connect_map, csv;
        std::vector<std::string> names;
        bool yes = false, ask = false, dry_run = false, resume = false, allow_dirty = false, break_lock = false, reboot = false;
        int drain = 0, within = 0;
        ConnectOptions copts;
      };
      auto a = std::make_shared<Args>();
      sub.add_option("playbook", a->playbook, "playbook name (playbooks/NAME.yaml) or path")->required();
      sub.add_option("nodes", a->names, "node or group names (default: the playbook's nodes, else all)");
      auto* yes = sub.add_flag("-y,--yes", a->yes, "run it (without: a dry run), answering every confirm step yes");
      auto* ask = sub.add_flag("--ask", a->ask, "run it, asking each confirm step's question on the terminal");
      auto* dry = sub.add_flag("--dry-run", a->dry_run, "only show what each step would do (the default)");
      dry->excludes(yes)->excludes(ask);
      sub.add_option("--drain", a->drain,
                     "wait_idle steps that skip busy nodes wait up to SECONDS for them to become idle first")
          ->check(CLI::NonNegativeNumber);
      sub.add_option("--within", a->within,
                     "dry run only: select `users: expired` accounts as of DAYS from today (a week ahead: 7)")
          ->check(CLI::Range(0, 3650));
      sub.add_flag("--reboot", a->reboot,
                   "reboot steps reboot the idle nodes that need it, a batch at a time, and check them (without: they "
                   "only list those nodes)");
      sub.add_flag("--resume", a->resume,
                   "skip on each node the steps its progress record (an earlier, unfinished run of this playbook) lists");
      sub.add_option("--from", a->from, "start at this step (name or number); earlier steps are skipped");
      sub.add_option("--csv", a->csv,
                     "write the accounts that `accounts: report` steps listed (node, user, expires, home, size, last "
                     "login) to FILE as CSV (mode 0600)");
      sub.add_flag("--allow-dirty", a->allow_dirty, "run even with uncommitted inventory changes");
      sub.add_flag("--break-lock", a->break_lock, "replace a node lock left by a dead or stuck run");
      AddConnectOptions(sub, a->copts);
      sub.add_option("--connect-map", a->connect_map, "YAML nodes map overriding addresses/ssh (staging, sandbox demo)");
      return [a](CommandContext& ctx) -> int {
        Findings f;
        Inventory inv = LoadInventoryDir(ctx.global.inventory, f);
        if (!f.has_errors()) ValidateInventory(inv, f);
        if (!f.has_errors() && !a->connect_map.empty()) ApplyConnectMap(inv, a->connect_map, f);
        const std::string path = PlaybookPath(ctx.global.inventory, a->playbook);
        std::ifstream in(path, std::ios::binary);
        if (!in) {
          ctx.reporter.error("no playbook " + path + " (give a name from " + PlaybooksDir(ctx.global.inventory) +
                             "/ or a path to a .yaml file)");
          return kExitUsage;
        }
        std::ostringstream text;
        text << in.rdbuf();
        Playbook pb = ParsePlaybook(text.str(), path, f);
        if (!f.has_errors()) ValidatePlaybook(pb, inv, f);
        f.sort();
        if (f.has_errors()) {
          ctx.reporter.findings(f);
          ctx.reporter.error("the inventory or the playbook has " + std::to_string(f.count(Severity::Error)) +
                             " error(s); nothing was run");
          return kExitErrors;
        }
        RunnerOptions ro;
        if (!a->from.empty()) {
          auto at = pb.find_step(a->from);
          if (!at) {
            ctx.reporter.error("--from " + a->from + ": the playbook " + pb.name + " has no such step (give its name or number)");
            return kExitUsage;
          }
          ro.from = *at;
        }
        Findings unknown;
        auto nodes = inv.select(a->names.empty() ? pb.nodes : a->names, &unknown);
        if (unknown.has_errors()) {
          ctx.reporter.findings(unknown);
          return kExitUsage;
        }
        ro.execute = (a->yes || a->ask) && !a->dry_run;
        ro.drain_s = a->drain;
        ro.reboot = a->reboot;
        ro.resume = a->resume;
        ro.playbook_id = Sha256Hex(text.str());
        ro.ask = a->ask && !a->yes;
        if (ro.ask && !isatty(0)) {
          ctx.reporter.error("--ask needs a terminal to ask on; use --yes to answer every confirm step yes");
          return kExitUsage;
        }
        std::string commit;
        bool dirty = false;
        try {
          GitRepo repo = GitRepo::Open(ctx.global.inventory);
          commit = repo.head();
          dirty = repo.dirty(repo.relative_path(ctx.global.inventory));
        } catch (const std::exception&) {
        }
        if (ro.execute && dirty && !a->allow_dirty) {
          ctx.reporter.error("the inventory " + ctx.global.inventory +
                             " has uncommitted changes; commit them (nodes record the applied commit) or pass --allow-dirty");
          return kExitErrors;
        }
        ro.parallel = a->copts.parallel;
        if (a->within && ro.execute) {
          ctx.reporter.error("--within previews a later date and goes only with a dry run; a run uses today");
          return kExitUsage;
        }
        ro.today_days = TodayDays() + a->within;
        ro.apply.run_id = RunIdNow();
        ro.apply.commit = commit;
        ro.apply.dirty = dirty ? "dirty" : "";
        char host[256] = {0};
        gethostname(host, sizeof host - 1);
        const char* user = getenv("SUDO_USER") ? getenv("SUDO_USER") : getenv("USER");
        ro.apply.client_host = host;
        ro.apply.who = std::string(user ? user : "root") + "@" + host;
        ro.apply.client_pid = getpid();
        ro.apply.break_lock = a->break_lock;
        StopSignals signals;
        ConnectOptions copts = a->copts;
        // A command step runs under its own `timeout` on the node: the connection must wait at least that long.
        for (const auto& st : pb.steps)
          if (st.kind == StepKind::Command && copts.command_timeout_s < st.command_timeout_s + 60)
            copts.command_timeout_s = int(st.command_timeout_s + 60);
        copts.cancel = signals.flag();
        RunnerOps ops = RealRunnerOps(copts);
        ops.confirm = [&signals](const std::string& q) {
          std::cerr << q << " [y/N] " << std::flush;
          std::string answer;
          std::getline(std::cin, answer);
          return !signals.stopped() && (answer == "y" || answer == "yes");
        };
        PlaybookRun r = RunPlaybook(pb, inv, nodes, ro, ops, signals.flag());
        ReportRun(ctx.reporter, pb, r, ro);
        if (!a->csv.empty()) {
          std::vector<AccountReportRow> rows;
          for (const auto& s : r.steps)
            for (const auto& n : s.nodes) rows.insert(rows.end(), n.rows.begin(), n.rows.end());
          if (std::string why = WriteCsv(a->csv, AccountReportCsv(rows)); !why.empty()) {
            ctx.reporter.error("--csv " + a->csv + ": " + why);
            return kExitErrors;
          }
          ctx.reporter.note("wrote " + Counted(rows.size(), "account row", "account rows") + " to " + a->csv);
        }
        if (signals.stopped()) return signals.exit_code();
        return r.ok ? kExitOk : kExitNodesFailed;
      };
    });

}  // namespace
}  // namespace labfleet
