// The playbook runner. See playbook_run.h for the contracts.
#include "engine/playbook_run.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <optional>
#include <mutex>
#include <set>
#include <thread>

#include "engine/connect.h"
#include "engine/plan_report.h"
#include "engine/shell.h"
#include "engine/syntax.h"
#include "engine/text.h"

namespace labfleet {

RunnerOps RealRunnerOps(const ConnectOptions& copts) {
  RunnerOps ops;
  ops.connect = [copts](const Inventory& inv, const NodeDef& n) { return Connect(inv, n, copts); };
  ops.plan = [](const Inventory& inv, const NodeDef& n, Transport& t, const PlanOptions& o) {
    return PlanNode(inv, n, t, o);
  };
  ops.apply = [](const Inventory& inv, const NodeDef& n, const NodePlan& p, Transport& t, const ApplyOptions& o) {
    return ApplyNode(inv, n, p, t, o);
  };
  ops.wait = [](std::chrono::seconds d, const std::atomic<bool>* stop) {
    auto ticks = std::chrono::duration_cast<std::chrono::milliseconds>(d).count() / 100;
    for (long t = 0; t < ticks && !(stop && stop->load()); ++t)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return !(stop && stop->load());
  };
  ops.now = [] { return std::chrono::steady_clock::now(); };
  return ops;
}

std::string ProgressFile(const std::string& name) {
  std::string safe;
  for (char c : name.substr(0, 64))
    safe += (std::isalnum((unsigned char)c) || c == '.' || c == '_' || c == '-') ? c : '_';
  if (safe.empty() || safe[0] == '.') safe = "_" + safe;
  return "/var/lib/labfleet/playbooks/" + safe + ".progress";
}

ProgressRecord ParseProgress(const std::string& text, const std::string& playbook_id, size_t steps) {
  ProgressRecord rec;
  bool same = false;
  std::string done;
  for (const auto& line : SplitLines(text)) {
    if (line.rfind("playbook=", 0) == 0) same = !playbook_id.empty() && line.substr(9) == playbook_id;
    else if (line.rfind("run=", 0) == 0 && line.size() <= 100) rec.run_id = line.substr(4);
    else if (line.rfind("done=", 0) == 0) done = line.substr(5);
  }
  if (!same) return {};
  size_t pos = 0;
  while (pos <= done.size() && !done.empty()) {
    size_t comma = done.find(',', pos);
    std::string n = done.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    if (!n.empty() && n.size() < 6 && n.find_first_not_of("0123456789") == std::string::npos && std::stoul(n) < steps)
      rec.done.insert(std::stoul(n));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  for (char c : rec.run_id)
    if (!std::isalnum((unsigned char)c) && c != '-') return {};  // not one of ours
  return rec;
}

namespace {

bool Stopped(const std::atomic<bool>* stop) { return stop && stop->load(); }

// The last line of a command's output worth showing, bounded.
std::string Tail(const RunResult& r) {
  std::string text = r.err.empty() ? r.out : r.err;
  auto lines = SplitLines(text);
  std::string last;
  for (auto it = lines.rbegin(); it != lines.rend(); ++it)
    if (!it->empty()) {
      last = *it;
      break;
    }
  if (last.size() > 300) last = last.substr(0, 300) + "...";
  return last;
}

std::vector<std::string> Lines(const NodePlan& p) {
  std::vector<std::string> out;
  for (const auto& c : p.changes) out.push_back(ChangeLine(c));
  for (const auto& c : p.deferred) out.push_back(DeferredLine(p, c));
  return out;
}

class Runner {
 public:
  Runner(const Playbook& pb, const Inventory& inv, const std::vector<const NodeDef*>& nodes, const RunnerOptions& o,
         const RunnerOps& ops, const std::atomic<bool>* stop)
      : pb_(pb), inv_(inv), nodes_(nodes), o_(o), ops_(ops), stop_(stop) {}

  PlaybookRun run() {
    if (o_.resume) read_progress();
    for (size_t i = 0; i < pb_.steps.size(); ++i) {
      step_index_ = i;
      const PlaybookStep& st = pb_.steps[i];
      StepResult sr{st.name, StepKindName(st.kind), "", {}, {}};
      if (i < o_.from) {
        sr.status = "skipped";
        sr.notes.push_back("before --from");
        out_.steps.push_back(std::move(sr));
        continue;
      }
      if (!out_.ok || Stopped(stop_)) {
        sr.status = "not-started";
        if (out_.stopped_at.empty() && Stopped(stop_)) out_.stopped_at = st.name, out_.ok = false;
        out_.steps.push_back(std::move(sr));
        continue;
      }
      step_ = &st;
      bool ok = step(st, sr);
      step_ = nullptr;
      if (!ok) {
        out_.ok = false;
        out_.stopped_at = st.name;
      }
      out_.steps.push_back(std::move(sr));
    }
    if (o_.execute && out_.ok) clear_progress();
    return std::move(out_);
  }

 private:
  // The nodes still taking part (wait_idle drops some) that the current step selects (its `nodes:`).
  std::vector<const NodeDef*> active() const {
    const bool selective = step_ && !step_->nodes.empty();
    std::set<std::string> chosen;
    if (selective)
      for (const NodeDef* n : inv_.select(step_->nodes)) chosen.insert(n->name);
    std::vector<const NodeDef*> v;
    for (const NodeDef* n : nodes_)
      if (!dropped_.count(n->name) && (!selective || chosen.count(n->name))) v.push_back(n);
    return v;
  }

  // The node's kept connection, opened on first use; null (and `why`) when it cannot be reached.
  Transport* conn(const NodeDef& n, std::string& why) {
    {
      std::lock_guard<std::mutex> l(mu_);
      auto it = conns_.find(n.name);
      if (it != conns_.end() && it->second) return it->second.get();
    }
    try {
      auto t = ops_.connect(inv_, n);
      std::lock_guard<std::mutex> l(mu_);
      return (conns_[n.name] = std::move(t)).get();
    } catch (const std::exception& e) {
      why = e.what();
      return nullptr;
    }
  }

  static std::vector<std::vector<const NodeDef*>> Batches(const std::vector<const NodeDef*>& nodes, int batch) {
    std::vector<std::vector<const NodeDef*>> out;
    size_t k = batch > 0 ? size_t(batch) : std::max<size_t>(nodes.size(), 1);
    for (size_t i = 0; i < nodes.size(); i += k)
      out.emplace_back(nodes.begin() + i, nodes.begin() + std::min(nodes.size(), i + k));
    return out;
  }

  bool step(const PlaybookStep& st, StepResult& sr) {
    switch (st.kind) {
      case StepKind::Confirm: return confirm(st, sr);
      case StepKind::WaitIdle: return wait_idle(st, sr);
      case StepKind::Apply: {
        PlanOptions po;
        po.only = st.modules;
        return batched(st, sr, [&](const NodeDef& n, Transport& t, StepNodeResult& nr) {
          return converge(inv_, n, t, po, nr);
        });
      }
      case StepKind::Accounts: {
        auto chosen = SelectAccounts(st, inv_, o_.today_days);
        std::vector<std::string> names, listed;
        std::map<std::string, std::string> expires;
        for (const UserDef* u : chosen) {
          names.push_back(u->name);
          expires[u->name] = u->expires;
          listed.push_back(u->name + (u->expires.empty() ? "" : " (expires " + u->expires + ")"));
        }
        sr.notes.push_back(std::string(AccountActionName(st.action)) + " " +
                           Counted(names.size(), "account", "accounts") + (names.empty() ? "" : ": " + Join(listed, ", ")));
        if (names.empty()) {
          sr.status = o_.execute ? "done" : "dry-run";
          sr.notes.push_back("nothing to do because no account is selected");
          return true;
        }
        if (st.action == AccountAction::Report) {
          PlaybookStep whole = st;
          whole.batch = 0;
          whole.health.clear();
          return batched(whole, sr, [&](const NodeDef&, Transport& t, StepNodeResult& nr) {
            return report_accounts(names, expires, t, nr);
          });
        }
        if (st.action == AccountAction::Snapshot || st.action == AccountAction::DeleteData) {
          if (std::string why = AccountsRefusal(st, inv_, active(), o_.today_days); !why.empty()) {
            sr.status = "failed";
            sr.notes.push_back("refused: " + why);
            return false;
          }
          PlaybookStep whole = st;
          whole.batch = 0;
          whole.health.clear();
          if (st.action == AccountAction::Snapshot)
            return batched(whole, sr, [&](const NodeDef&, Transport& t, StepNodeResult& nr) {
              return snapshot_homes(st, names, t, nr);
            });
          return batched(whole, sr, [&](const NodeDef& n, Transport& t, StepNodeResult& nr) {
            return delete_data(st, names, n, t, nr);
          });
        }
        // The changed inventory is checked like any inventory before a node is touched.
        Inventory changed = AccountsInventory(st, inv_, o_.today_days);
        Findings f;
        if (std::string why = AccountsRefusal(st, inv_, active(), o_.today_days); !why.empty())
          f.error(st.where, "locks-out-login", why);
        ValidateInventory(changed, f);
        if (f.has_errors()) {
          sr.status = "failed";
          for (const auto& x : f.items())
            if (x.severity == Severity::Error) sr.notes.push_back("refused: " + x.where.str() + ": " + x.message);
          return false;
        }
        PlanOptions po;
        po.only = AccountsModules(inv_);
        accounts_inv_.push_back(std::make_unique<Inventory>(std::move(changed)));
        const Inventory& ai = *accounts_inv_.back();
        PlaybookStep whole = st;
        whole.batch = 0;
        whole.health.clear();
        if (st.action == AccountAction::EndSessions)
          return batched(whole, sr, [&](const NodeDef&, Transport& t, StepNodeResult& nr) {
            return end_sessions(names, t, nr);
          });
        bool ok = batched(whole, sr, [&](const NodeDef& n, Transport& t, StepNodeResult& nr) {
          return converge(ai, n, t, po, nr);
        });
        // An archive the users module made and read back (tar -tzf) on a node in this run (dry run: would make) is
        // what delete_data may rely on there. Only the accounts whose change says so: a home kept (not local
        // there) or an account gone already is no archive.
        if (st.action == AccountAction::Archive)
          for (const auto& nr : sr.nodes) {
            if (nr.status != "changed" && nr.status != "planned") continue;
            for (const auto& line : nr.changes)
              for (const auto& u : names)
                if (line.find("user " + u + " (deleted: remove: archive; home ") != std::string::npos &&
                    line.find(" archived to ") != std::string::npos)
                  archived_[nr.node].insert(u);
          }
        return ok;
      }
      case StepKind::Command:
        return batched(st, sr, [&](const NodeDef& n, Transport& t, StepNodeResult& nr) { return command(st, n, t, nr); });
      case StepKind::Snapshot:
        return batched(st, sr, [&](const NodeDef&, Transport& t, StepNodeResult& nr) { return snapshot(st, t, nr); });
      case StepKind::Reboot: {
        if (!o_.reboot) sr.notes.push_back("without --reboot: the nodes that need a reboot are listed, none is rebooted");
        // The checks (health included) run inside reboot_node, on the node's new connection.
        PlaybookStep each = st;
        each.health.clear();
        return batched(each, sr, [&](const NodeDef& n, Transport& t, StepNodeResult& nr) { return reboot_node(st, n, t, nr); });
      }
    }
    return false;
  }

  bool confirm(const PlaybookStep& st, StepResult& sr) {
    sr.notes.push_back("question: " + st.message);
    if (!o_.execute) {
      sr.status = "dry-run";
      return true;
    }
    if (!o_.ask || !ops_.confirm) {
      sr.status = "done";
      sr.notes.push_back("answered yes by --yes");
      return true;
    }
    if (ops_.confirm(st.message)) {
      sr.status = "done";
      return true;
    }
    sr.status = "declined";
    sr.notes.push_back("declined: nothing after this step was run");
    return false;
  }

  // The planner's busy verdict per node (fail safe: unknown and unplannable count as busy). Returns the reason
  // a node is busy, "" when it is idle.
  std::string busy_reason(const NodeDef& n) {
    std::string why;
    Transport* t = conn(n, why);
    if (!t) return "unreachable: " + why;
    try {
      PlanOptions po;
      po.only = {"busy"};
      NodePlan p = ops_.plan(inv_, n, *t, po);
      if (!p.error.empty()) return "busy state unknown: " + p.error;
      if (p.busy.holds()) return p.busy.state() + ": " + p.busy.describe();
      return "";
    } catch (const std::exception& e) {
      return std::string("busy state unknown: ") + e.what();
    }
  }

  bool wait_idle(const PlaybookStep& st, StepResult& sr) {
    auto nodes = active();
    std::vector<std::string> reasons(nodes.size());
    auto check = [&] {
      ForEachNode(nodes, o_.parallel, [&](size_t i, const NodeDef& n) { reasons[i] = busy_reason(n); });
    };
    check();
    auto any_busy = [&] {
      for (const auto& r : reasons)
        if (!r.empty()) return true;
      return false;
    };
    // --drain S makes a skip step wait up to S seconds first.
    const OnBusy on_busy = st.on_busy == OnBusy::Skip && o_.drain_s > 0 ? OnBusy::Wait : st.on_busy;
    const long long timeout_s = st.on_busy == OnBusy::Skip && o_.drain_s > 0 ? o_.drain_s : st.timeout_s;
    if (o_.execute && on_busy == OnBusy::Wait) {
      auto deadline = ops_.now() + std::chrono::seconds(timeout_s);
      while (any_busy() && ops_.now() < deadline) {
        if (!ops_.wait(std::chrono::seconds(5), stop_)) break;
        check();
      }
    }
    bool ok = true;
    for (size_t i = 0; i < nodes.size(); ++i) {
      StepNodeResult nr{nodes[i]->name, reasons[i].empty() ? "idle" : "busy", reasons[i], {}, {}};
      if (!reasons[i].empty()) {
        if (on_busy == OnBusy::Fail) {
          ok = false;
          nr.status = "failed";
        } else {
          nr.status = "skipped";
          nr.detail = reasons[i] + (o_.execute ? "; left out of the rest of this run" : "; a run would leave it out");
          if (o_.execute) {
            dropped_.insert(nodes[i]->name);
            out_.skipped.push_back(nodes[i]->name + " (" + reasons[i] + ")");
          }
        }
      }
      sr.nodes.push_back(std::move(nr));
    }
    sr.status = !ok ? "failed" : o_.execute ? "done" : "dry-run";
    return ok || !o_.execute;
  }

  // Plans a node with `inv` and, in a real run, applies the plan. True when the node ended converged.
  bool converge(const Inventory& inv, const NodeDef& n, Transport& t, const PlanOptions& po, StepNodeResult& nr) {
    NodePlan p;
    try {
      p = ops_.plan(inv, n, t, po);
    } catch (const std::exception& e) {
      nr.status = "failed";
      nr.detail = e.what();
      return false;
    }
    nr.changes = Lines(p);
    if (!p.error.empty()) {
      nr.status = "failed";
      nr.detail = p.error;
      return false;
    }
    if (!o_.execute) {
      nr.status = p.changes.empty() ? "unchanged" : "planned";
      nr.detail = p.changes.empty() ? "nothing to do" : Counted(p.changes.size(), "change", "changes") + " would be made";
      return true;
    }
    ApplyOptions ao = o_.apply;
    ao.plan = po;
    // The lockout guard of sshd changes: a fresh connection proves labfleet can still log in (executor.h).
    ao.reconnect = [this, &inv, &n]() { return ops_.connect(inv, n); };
    NodeApplyResult r;
    try {
      r = ops_.apply(inv, n, p, t, ao);
    } catch (const std::exception& e) {
      nr.status = "failed";
      nr.detail = e.what();
      return false;
    }
    for (const auto& d : r.deferred) nr.changes.push_back(d);
    switch (r.status) {
      case NodeApplyResult::Status::Unchanged: nr.status = "unchanged"; nr.detail = "nothing to do"; return true;
      case NodeApplyResult::Status::Changed:
        nr.status = "changed";
        nr.detail = Counted(size_t(r.applied), "change", "changes") + " applied; re-plan empty";
        return true;
      default:
        nr.status = r.status == NodeApplyResult::Status::Unreachable ? "unreachable" : "failed";
        nr.detail = r.error.empty() ? "the re-plan is not empty" : r.error;
        return false;
    }
  }

  bool command(const PlaybookStep& st, const NodeDef&, Transport& t, StepNodeResult& nr) {
    Cmd run("timeout");
    run.arg(std::to_string(st.command_timeout_s)).args(st.argv);
    std::string guard;
    if (!st.unless.empty()) guard = Cmd(st.unless[0]).args({st.unless.begin() + 1, st.unless.end()}).str() + " >/dev/null 2>&1";
    if (!st.creates.empty())
      guard += (guard.empty() ? "" : " || ") + Cmd("test").arg("-e").arg(st.creates).str();
    try {
      if (!guard.empty()) {
        RunResult g = t.run("sh -c " + ShellQuote(guard) + " </dev/null");
        if (g.ok()) {
          nr.status = "unchanged";
          nr.detail = "skipped: " + std::string(!st.creates.empty() && st.unless.empty() ? st.creates + " exists" : "the guard holds");
          return true;
        }
      }
      if (!o_.execute) {
        nr.status = "would-run";
        nr.detail = Join(st.argv, " ");
        return true;
      }
      // Under the node lock, like an apply: never beside another run's changes. The guard is checked again
      // under the lock (it may have come true meanwhile).
      const std::string nonce = NewNonce();
      const std::string pfx = "@@lf-" + nonce + ":";
      Script sc = NodeScript(nonce, false);
      if (!guard.empty()) sc.raw("if " + guard + "; then printf '%s\\n' " + ShellQuote(pfx + "guard") + "; exit 0; fi");
      sc.raw(run.str() + " </dev/null");
      RunResult r = t.run_script(sc.str());
      if (auto refusal = LockRefusal(r.out, nonce, nr.node, o_.apply.client_host)) {
        nr.status = "failed";
        nr.detail = *refusal;
        return false;
      }
      if (r.out.find(pfx + "guard\n") != std::string::npos) {
        nr.status = "unchanged";
        nr.detail = "skipped: the guard holds";
        return true;
      }
      if (!r.ok()) {
        nr.status = "failed";
        nr.detail = "exit " + std::to_string(r.exit_code) + (r.exit_code == 124 ? " (timed out)" : "") +
                    (Tail(r).empty() ? "" : ": " + Tail(r));
        return false;
      }
      nr.status = "changed";
      nr.detail = "ran " + Join(st.argv, " ") + (Tail(r).empty() ? "" : ": " + Tail(r));
      return true;
    } catch (const std::exception& e) {
      nr.status = "failed";
      nr.detail = e.what();
      return false;
    }
  }

  // --resume: each node's record of this playbook (same text), read over the node's kept connection.
  void read_progress() {
    std::vector<ProgressRecord> recs(nodes_.size());
    ForEachNode(nodes_, o_.parallel, [&](size_t i, const NodeDef& n) {
      std::string why;
      Transport* t = conn(n, why);
      if (!t) return;
      try {
        RunResult r = t->run(Cmd("head").arg("-c").arg("4096").arg(ProgressFile(pb_.name)).str() + " 2>/dev/null");
        if (r.ok()) recs[i] = ParseProgress(r.out, o_.playbook_id, pb_.steps.size());
      } catch (const std::exception&) {
      }
    });
    for (size_t i = 0; i < nodes_.size(); ++i)
      if (!recs[i].done.empty()) progress_[nodes_[i]->name] = recs[i];
  }

  // Records that step `step_index_` is done on the node (after its apply, accounts or command step succeeded).
  // A failure to write is a note: the step itself is done.
  void record_progress(const NodeDef& n, Transport& t, StepNodeResult& nr) {
    std::string text;
    {
      std::lock_guard<std::mutex> l(mu_);
      auto& rec = progress_[n.name];
      rec.done.insert(step_index_);
      std::vector<std::string> done;
      for (size_t d : rec.done) done.push_back(std::to_string(d));
      text = "run=" + o_.apply.run_id + "\nplaybook=" + o_.playbook_id + "\ndone=" + Join(done, ",") + "\n";
    }
    const std::string file = ProgressFile(pb_.name);
    Script sc;
    sc.add(Cmd("mkdir").arg("-p").arg("-m").arg("0700").arg("/var/lib/labfleet/playbooks"));
    sc.raw(Cmd("printf").arg("%s").arg(text).str() + " > " + ShellQuote(file + ".tmp"));
    sc.add(Cmd("mv").arg("-f").arg(file + ".tmp").arg(file));
    try {
      RunResult r = t.run_script(sc.str());
      if (!r.ok()) nr.detail += "; progress not recorded: " + Tail(r);
    } catch (const std::exception& e) {
      nr.detail += std::string("; progress not recorded: ") + e.what();
    }
  }

  void clear_progress() {
    std::vector<const NodeDef*> with;
    std::vector<Transport*> ts;
    for (const NodeDef* n : nodes_)
      if (auto it = conns_.find(n->name); it != conns_.end() && it->second) {
        with.push_back(n);
        ts.push_back(it->second.get());
      }
    ForEachNode(with, o_.parallel, [&](size_t i, const NodeDef&) {
      try {
        ts[i]->run(Cmd("rm").arg("-f").arg(ProgressFile(pb_.name)).str());
      } catch (const std::exception&) {
      }
    });
  }

  // A read-only btrfs snapshot, checked, then the oldest beyond `keep` deleted (dry run: what would be). The node
  // prints "created<TAB>NAME", "pruned<TAB>NAME" and, in a dry run, "would-prune<TAB>NAME"; a failure exits
  // non-zero with its reason on stderr.
  bool snapshot(const PlaybookStep& st, Transport& t, StepNodeResult& nr) {
    const std::string src = st.snapshot_of, to = st.snapshot_to;
    const std::string base = src.substr(src.rfind('/') + 1);
    std::string pattern = "^";  // BASE-YYYYmmddTHHMMSSZ, dots escaped (the name allows only [A-Za-z0-9._-])
    for (char c : base) pattern += c == '.' ? std::string("\\.") : std::string(1, c);
    pattern += "-[0-9]{8}T[0-9]{6}Z$";
    const std::string nonce = NewNonce();
    Script sc = NodeScript(o_.execute ? nonce : "", true);
    sc.raw("[ \"$(stat -f -c %T " + ShellQuote(src) + " 2>/dev/null)\" = btrfs ] || lf_fail " +
           ShellQuote(src + " is not on a btrfs filesystem"));
    sc.raw(Cmd("btrfs").arg("subvolume").arg("show").arg(src).str() + " >/dev/null 2>&1 || lf_fail " +
           ShellQuote(src + " is not a btrfs subvolume"));
    sc.raw("if [ -L " + ShellQuote(to) + " ] || { [ -e " + ShellQuote(to) + " ] && [ ! -d " + ShellQuote(to) +
           " ]; }; then lf_fail " + ShellQuote(to + " is not a directory") + "; fi");
    // Snapshots are made and pruned (deleted) as root below `to`: only when no user can change any part of it.
    sc.raw(kRootOnlyShellFunction);
    sc.raw("lf_rootonly " + ShellQuote(to) + " || lf_fail \"a user can change ${LF_WHY}at or above \"" +
           ShellQuote(to) + "\"; labfleet never writes as root through a path a user controls\"");
    sc.raw("lf_list() { ls -1 " + ShellQuote(to) + " 2>/dev/null | grep -E " + ShellQuote(pattern) + " | sort -r; }");
    if (o_.execute) {
      sc.add(Cmd("mkdir").arg("-p").arg("-m").arg("0700").arg(to));
      sc.raw("lf_name=" + ShellQuote(base + "-") + "\"$(date -u +%Y%m%dT%H%M%SZ)\"");
      sc.raw("lf_dest=" + ShellQuote(to + "/") + "\"$lf_name\"");
      sc.raw("[ ! -e \"$lf_dest\" ] || lf_fail \"$lf_dest exists already (one snapshot a second)\"");
      sc.raw(Cmd("btrfs").arg("subvolume").arg("snapshot").arg("-r").arg(src).str() + " \"$lf_dest\" >/dev/null || "
             "lf_fail \"btrfs subvolume snapshot failed\"");
      sc.raw("btrfs subvolume show \"$lf_dest\" >/dev/null 2>&1 || lf_fail \"the snapshot $lf_dest cannot be read back\"");
      sc.raw("[ \"$(btrfs property get -ts \"$lf_dest\" ro 2>/dev/null)\" = ro=true ] || "
             "lf_fail \"the snapshot $lf_dest is not read-only\"");
      sc.raw("printf 'created\\t%s\\n' \"$lf_name\"");
      if (st.keep > 0)
        sc.raw("lf_list | tail -n +" + std::to_string(st.keep + 1) + " | while IFS= read -r lf_old; do " +
               "btrfs subvolume delete " + ShellQuote(to + "/") + "\"$lf_old\" >/dev/null && "
               "printf 'pruned\\t%s\\n' \"$lf_old\"; done");
    } else if (st.keep > 0) {
      sc.raw("lf_list | tail -n +" + std::to_string(st.keep) + " | while IFS= read -r lf_old; do "
             "printf 'would-prune\\t%s\\n' \"$lf_old\"; done");
    }
    RunResult r;
    if (!run_checked(t, sc, nonce, nr, r, "snapshot of " + src + " failed")) {
      if (nr.detail.starts_with("snapshot of ")) nr.detail += "; nothing after this step runs";
      return false;
    }
    std::string created;
    std::vector<std::string> pruned;
    for (const auto& line : SplitLines(r.out)) {
      auto f = SplitChar(line, '\t');
      if (f.size() != 2 || f[1].size() > 200) continue;
      if (f[0] == "created") created = f[1];
      else if (f[0] == "pruned" || f[0] == "would-prune") pruned.push_back(f[1]);
    }
    if (o_.execute) {
      if (created.empty()) {
        nr.status = "failed";
        nr.detail = "the node did not report the snapshot it made";
        return false;
      }
      nr.status = "changed";
      nr.detail = "read-only snapshot " + to + "/" + created + " checked" +
                  (pruned.empty() ? "" : "; pruned " + Join(pruned, ", "));
    } else {
      nr.status = "planned";
      nr.detail = "would snapshot " + src + " as " + to + "/" + base + "-<UTC time>" +
                  (pruned.empty() ? "" : "; would prune " + Join(pruned, ", "));
    }
    return true;
  }

  // The head of every script a step runs on a node: a fixed locale and PATH, the node lock when `nonce` is not
  // empty (a run that changes things; run_checked reports the lock's refusal), and with `with_fail`
  // lf_fail MESSAGE (prints it to stderr, exits 1).
  Script NodeScript(const std::string& nonce, bool with_fail) const {
    Script sc;
    sc.raw("export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    if (!nonce.empty()) sc.append(NodeLockScript(o_.apply, nonce));
    if (with_fail) sc.raw("lf_fail() { printf '%s\\n' \"$1\" >&2; exit 1; }");
    return sc;
  }

  // Runs `sc` on the node: true with `r` set when it ran and exited 0; otherwise false with `nr` failed and
  // why (the transport's error, the node lock's refusal when `nonce` took it, or the exit status and the last
  // line of output, after `what` when given).
  bool run_checked(Transport& t, const Script& sc, const std::string& nonce, StepNodeResult& nr, RunResult& r,
                   const std::string& what = "") {
    try {
      r = t.run_script(sc.str());
    } catch (const std::exception& e) {
      nr.status = "failed";
      nr.detail = e.what();
      return false;
    }
    if (!nonce.empty())
      if (auto refusal = LockRefusal(r.out, nonce, nr.node, o_.apply.client_host)) {
        nr.status = "failed";
        nr.detail = *refusal;
        return false;
      }
    if (!r.ok()) {
      nr.status = "failed";
      nr.detail = (what.empty() ? "" : what + " (") + "exit " + std::to_string(r.exit_code) + (what.empty() ? "" : ")") +
                  (Tail(r).empty() ? "" : ": " + Tail(r));
      return false;
    }
    return true;
  }

  // The homes an accounts step works on, per account: `homes`/NAME, else the inventory's home.
  std::string home_of(const PlaybookStep& st, const std::string& name) const {
    if (!st.homes.empty()) return st.homes + "/" + name;
    const UserDef* u = inv_.user(name);
    return u ? HomeOf(*u) : "";
  }

  // What a reboot changes: the kernel's boot id and the start time of PID 1 (in clock ticks since boot; the
  // init of a container or sandbox node that was restarted has a new one even when the kernel stays).
  static constexpr const char* kBootToken =
      "printf 'boot=%s:%s\\n' \"$(head -c 64 /proc/sys/kernel/random/boot_id)\" "
      "\"$(sed 's/.*) //' /proc/1/stat | cut -d' ' -f20)\"";
  static bool BootId(const std::string& s) {
    size_t colon = s.find(':');
    return colon == 36 && s.find_first_not_of("0123456789abcdef-") == 36 && s.size() > 37 && s.size() < 60 &&
           s.find_first_not_of("0123456789", 37) == std::string::npos;
  }

  // reboot: see PlaybookStep::reboot_always. The node's boot token (kBootToken) before and after proves it rebooted.
  bool reboot_node(const PlaybookStep& st, const NodeDef& n, Transport& t, StepNodeResult& nr) {
    Script probe = NodeScript("", false);
    probe.raw(kBootToken);
    probe.raw("if [ -e /run/reboot-required ] || [ -e /var/run/reboot-required ]; then echo required; fi");
    RunResult r;
    if (!run_checked(t, probe, "", nr, r, "reading the boot id failed")) return false;
    std::string boot;
    bool required = false;
    for (const auto& line : SplitLines(r.out)) {
      if (line.rfind("boot=", 0) == 0) boot = line.substr(5);
      else if (line == "required") required = true;
    }
    if (!st.reboot_always && !required) {
      nr.status = "unchanged";
      nr.detail = "no reboot needed";
      return true;
    }
    const std::string why = st.reboot_always ? "reboot: always" : "reboot pending (/run/reboot-required)";
    if (!o_.reboot) {
      nr.status = "pending";
      nr.detail = why + "; labfleet run ... --reboot reboots it when idle";
      return true;
    }
    if (!BootId(boot)) {
      nr.status = "failed";
      nr.detail = "the node's boot id cannot be read, so a reboot could not be proven; not rebooted";
      return false;
    }
    if (std::string busy = busy_reason(n); !busy.empty()) {
      nr.status = "skipped";
      nr.detail = busy + "; not rebooted (" + why + ")";
      return true;
    }
    const std::string checks = "waited for over SSH, then GPUs, docker and mounts checked";
    if (!o_.execute) {
      nr.status = "planned";
      nr.detail = why + "; would reboot it, " + checks;
      return true;
    }
    // Under the node lock (never beside another run's apply); the reboot starts after the script returned.
    const std::string nonce = NewNonce();
    Script go = NodeScript(nonce, false);
    go.raw("nohup sh -c 'sleep 2; reboot || systemctl reboot' >/dev/null 2>&1 </dev/null &");
    if (!run_checked(t, go, nonce, nr, r, "starting the reboot failed")) return false;
    {
      std::lock_guard<std::mutex> l(mu_);  // the old session dies with the node; kept until the run ends
      if (auto it = conns_.find(n.name); it != conns_.end()) {
        retired_.push_back(std::move(it->second));
        conns_.erase(it);
      }
    }
    const auto deadline = ops_.now() + std::chrono::seconds(st.reboot_timeout_s);
    std::unique_ptr<Transport> nt;
    std::string last = "no answer yet";
    while (!nt) {
      if (ops_.now() >= deadline) {
        nr.status = "failed";
        nr.detail = "rebooted, but it did not come back with a new boot id within " + std::to_string(st.reboot_timeout_s) +
                    " s (" + last + ")";
        return false;
      }
      if (!ops_.wait(std::chrono::seconds(5), stop_)) {
        nr.status = "failed";
        nr.detail = "interrupted while waiting for it to come back from the reboot";
        return false;
      }
      try {
        auto c = ops_.connect(inv_, n);
        RunResult b = c->run(std::string(kBootToken) + " </dev/null");
        std::string now = std::string(TrimView(b.out));
        if (now.rfind("boot=", 0) == 0) now = now.substr(5);
        if (b.ok() && BootId(now) && now != boot) nt = std::move(c);
        else last = b.ok() && now == boot ? "still the old boot id" : "boot id unreadable";
      } catch (const std::exception& e) {
        last = e.what();
      }
    }
    Transport& t2 = *nt;
    {
      std::lock_guard<std::mutex> l(mu_);
      conns_[n.name] = std::move(nt);
    }
    std::vector<std::string> bad, good;
    if (n.gpus >= 0) {
      try {
        RunResult g = t2.run("nvidia-smi --query-gpu=uuid --format=csv,noheader </dev/null");
        size_t count = 0;
        for (const auto& line : SplitLines(g.out.substr(0, 65536)))
          if (std::string(TrimView(line)).rfind("GPU-", 0) == 0) ++count;
        if (!g.ok())
          bad.push_back("nvidia-smi failed (exit " + std::to_string(g.exit_code) + (Tail(g).empty() ? "" : ": " + Tail(g)) + ")");
        else if (count != size_t(n.gpus))
          bad.push_back(std::to_string(count) + " GPUs visible, the inventory says " + std::to_string(n.gpus));
        else
          good.push_back(Counted(count, "GPU", "GPUs"));
      } catch (const std::exception& e) {
        bad.push_back(std::string("nvidia-smi: ") + e.what());
      }
    }
    Value eff = inv_.settings(n);
    if (const Value* d = eff.find("docker"); d && !d->is_null()) {
      try {
        RunResult dk = t2.run("systemctl is-active docker </dev/null");
        std::string state = std::string(TrimView(dk.out.substr(0, 100)));
        if (state == "active") good.push_back("docker active");
        else bad.push_back("docker is " + (state.empty() ? std::string("not active") : state));
      } catch (const std::exception& e) {
        bad.push_back(std::string("docker: ") + e.what());
      }
    }
    if (const Value* m = eff.find("mounts"); m && !m->is_null()) {
      try {
        PlanOptions po;
        po.only = {"mounts"};
        NodePlan p = ops_.plan(inv_, n, t2, po);
        if (!p.error.empty()) bad.push_back("mounts: " + p.error);
        else if (!p.changes.empty())
          bad.push_back("mounts differ from the inventory (" + ChangeLine(p.changes[0]) +
                        (p.changes.size() > 1 ? ", and " + std::to_string(p.changes.size() - 1) + " more" : "") + ")");
        else good.push_back("mounts as the inventory says");
      } catch (const std::exception& e) {
        bad.push_back(std::string("mounts: ") + e.what());
      }
    }
    if (!st.health.empty()) {
      try {
        RunResult h = t2.run(Cmd(st.health[0]).args({st.health.begin() + 1, st.health.end()}).str() + " </dev/null");
        if (h.ok()) good.push_back("health check passed");
        else bad.push_back("health check " + Join(st.health, " ") + " failed (exit " + std::to_string(h.exit_code) + ")" +
                           (Tail(h).empty() ? "" : ": " + Tail(h)));
      } catch (const std::exception& e) {
        bad.push_back(std::string("health check: ") + e.what());
      }
    }
    nr.status = bad.empty() ? "changed" : "failed";
    nr.detail = "rebooted and back; " + (bad.empty() ? "checked: " + (good.empty() ? std::string("nothing to check") : Join(good, ", "))
                                                           : "check failed: " + Join(bad, "; "));
    return bad.empty();
  }

  // accounts: snapshot. See AccountAction::Snapshot. The node prints, per account, "created", "kept",
  // "would-create" or "missing" with NAME and the snapshot's path, and "pruned"/"would-prune" with a directory;
  // a failure (not btrfs, a path a user controls, a snapshot that does not check) exits non-zero with its reason.
  bool snapshot_homes(const PlaybookStep& st, const std::vector<std::string>& names, Transport& t, StepNodeResult& nr) {
    const std::string to = st.snapshot_to, dir = to + "/homes-" + DateOfDays(TodayDays());
    const std::string nonce = o_.execute ? NewNonce() : "";
    Script sc = NodeScript(o_.execute ? nonce : "", true);
    sc.raw(kRootOnlyShellFunction);
    // Snapshots are made and pruned as root below `to`, homes read as root: only where no user can swap a part.
    sc.raw("if [ -L " + ShellQuote(to) + " ] || { [ -e " + ShellQuote(to) + " ] && [ ! -d " + ShellQuote(to) +
           " ]; }; then lf_fail " + ShellQuote(to + " is not a directory") + "; fi");
    sc.raw("lf_rootonly " + ShellQuote(to) + " || lf_fail \"a user can change ${LF_WHY}at or above \"" +
           ShellQuote(to) + "\"; labfleet never writes as root through a path a user controls\"");
    // The newest homes-DATE/NAME under `to`.
    sc.raw("lf_find() { ls -1d " + ShellQuote(to + "/") + "homes-*/\"$1\" 2>/dev/null | "
           "grep -E '/homes-[0-9]{4}-[0-9]{2}-[0-9]{2}/[^/]+$' | sort -r | head -n 1; }");
    // lf_check SNAP [HOME]: a read-only subvolume; with HOME, the same number of entries and one file read back.
    sc.raw("lf_check() {\n"
           "  btrfs subvolume show \"$1\" >/dev/null 2>&1 || { LF_WHY='btrfs subvolume show fails'; return 1; }\n"
           "  [ \"$(btrfs property get -ts \"$1\" ro 2>/dev/null)\" = ro=true ] || { LF_WHY='not read-only'; return 1; }\n"
           "  [ -n \"$2\" ] || return 0\n"
           "  [ \"$(cd \"$2\" && find . -xdev | wc -l)\" = \"$(cd \"$1\" && find . -xdev | wc -l)\" ] || "
           "{ LF_WHY=\"its entries differ from $2\"; return 1; }\n"
           "  lf_f=$(cd \"$2\" && find . -xdev -type f | head -n 1)\n"
           "  [ -z \"$lf_f\" ] || cmp -s -- \"$2/$lf_f\" \"$1/$lf_f\" || { LF_WHY=\"$lf_f reads back different\"; return 1; }\n"
           "}");
    sc.raw("lf_keep=");  // the homes-DATE directories holding a snapshot checked now: never pruned
    if (o_.execute) sc.raw("mkdir -p -m 0700 " + ShellQuote(to));
    for (const auto& u : names) {
      const std::string home = home_of(st, u);
      if (home.empty()) continue;
      const std::string dest = dir + "/" + u, qh = ShellQuote(home), qd = ShellQuote(dest);
      const std::string parent = home.substr(0, std::max<size_t>(home.rfind('/'), 1));
      sc.raw("lf_old=$(lf_find " + ShellQuote(u) + "); lf_home=");
      sc.raw("if [ -e " + qh + " ] || [ -L " + qh + " ]; then");
      sc.raw("  { [ -d " + qh + " ] && [ ! -L " + qh + " ]; } || lf_fail " + ShellQuote("the home " + home + " is not a directory"));
      sc.raw("  lf_rootonly " + ShellQuote(parent) + " || lf_fail \"a user can change ${LF_WHY}above \"" + qh);
      sc.raw("  [ \"$(stat -f -c %T " + qh + ")\" = btrfs ] || lf_fail " + ShellQuote("the home " + home + " is not on btrfs"));
      sc.raw("  lf_home=" + qh + "; fi");
      sc.raw("if [ -n \"$lf_old\" ] && lf_check \"$lf_old\" \"$lf_home\"; then");
      sc.raw("  " + Cmd("printf").arg("kept\t%s\t%s\n").arg(u).str() + " \"$lf_old\"; lf_b=${lf_old%/*}; lf_keep=\"$lf_keep ${lf_b##*/}\"");
      sc.raw("elif [ -z \"$lf_home\" ]; then " + Cmd("printf").arg("missing\t%s\t\n").arg(u).str());
      if (!o_.execute) {
        sc.raw("else " + Cmd("printf").arg("would-create\t%s\t%s\n").arg(u).arg(dest).str() + "; fi");
        continue;
      }
      sc.raw("else");
      sc.raw("  [ ! -e " + qd + " ] || lf_fail " + ShellQuote(dest + " exists and does not match the home " + home));
      sc.raw("  mkdir -p -m 0700 " + ShellQuote(dir));
      // A home that is a subvolume is snapshotted; a directory is copied into a new subvolume (reflinks: cheap).
      sc.raw("  if [ \"$(stat -c %i " + qh + ")\" = 256 ] && btrfs subvolume show " + qh + " >/dev/null 2>&1; then");
      sc.raw("    btrfs subvolume snapshot -r " + qh + " " + qd + " >/dev/null || lf_fail " + ShellQuote("btrfs subvolume snapshot of " + home + " failed"));
      sc.raw("  else");
      sc.raw("    btrfs subvolume create " + qd + " >/dev/null || lf_fail " + ShellQuote("btrfs subvolume create " + dest + " failed"));
      sc.raw("    cp -a -x --reflink=auto " + ShellQuote(home + "/.") + " " + ShellQuote(dest + "/") +
             " || { btrfs subvolume delete " + qd + " >/dev/null 2>&1; lf_fail " + ShellQuote("copying " + home + " failed") + "; }");
      sc.raw("    btrfs property set -ts " + qd + " ro true || lf_fail " + ShellQuote("cannot make " + dest + " read-only"));
      sc.raw("  fi");
      sc.raw("  lf_check " + qd + " " + qh + " || lf_fail \"the snapshot \"" + qd + "\" does not check: $LF_WHY\"");
      sc.raw("  " + Cmd("printf").arg("created\t%s\t%s\n").arg(u).arg(dest).str() + "; lf_keep=\"$lf_keep homes-" + DateOfDays(TodayDays()) + "\"");
      sc.raw("fi");
    }
    if (st.keep > 0) {
      // The oldest homes-DATE directories beyond `keep`, except today's and those holding a snapshot checked now.
      sc.raw("ls -1 " + ShellQuote(to) + " 2>/dev/null | grep -E '^homes-[0-9]{4}-[0-9]{2}-[0-9]{2}$' | sort -r | tail -n +" +
             std::to_string(st.keep + 1) + " | while IFS= read -r lf_d; do");
      sc.raw("  case \" $lf_keep \" in *\" $lf_d \"*) continue;; esac");
      if (o_.execute) {
        sc.raw("  for lf_s in " + ShellQuote(to + "/") + "\"$lf_d\"/*; do [ -e \"$lf_s\" ] || continue; "
               "btrfs subvolume delete \"$lf_s\" >/dev/null || lf_fail \"cannot delete $lf_s\"; done");
        sc.raw("  rmdir " + ShellQuote(to + "/") + "\"$lf_d\" || lf_fail \"cannot remove \"" + ShellQuote(to + "/") + "\"$lf_d\"");
        sc.raw("  printf 'pruned\\t%s\\t\\n' \"$lf_d\"");
      } else {
        sc.raw("  printf 'would-prune\\t%s\\t\\n' \"$lf_d\"");
      }
      sc.raw("done");
    }
    RunResult r;
    if (!run_checked(t, sc, nonce, nr, r, "snapshot of the homes under " + to + " failed")) {
      if (nr.detail.starts_with("snapshot of ")) nr.detail += "; nothing after this step runs";
      return false;
    }
    std::vector<std::string> created, kept, missing, pruned;
    for (const auto& line : SplitLines(r.out)) {
      auto f = SplitChar(line, '\t');
      if (f.size() != 3 || f[2].size() > 4096) continue;
      const bool named = std::find(names.begin(), names.end(), f[1]) != names.end();
      if ((f[0] == "created" || f[0] == "would-create") && named) created.push_back(f[1]);
      else if (f[0] == "kept" && named) kept.push_back(f[1]);
      else if (f[0] == "missing" && named) missing.push_back(f[1]);
      else if ((f[0] == "pruned" || f[0] == "would-prune") && f[1].size() < 100) pruned.push_back(f[1]);
      else continue;
      if (f[0] != "missing" && named) nr.changes.push_back((f[0] == "kept" ? "= " : "+ ") + f[1] + ": " + f[2]);
    }
    {
      std::lock_guard<std::mutex> l(mu_);
      snapshotted_.insert(created.begin(), created.end());
      snapshotted_.insert(kept.begin(), kept.end());
    }
    for (const auto& p : pruned) nr.changes.push_back("- " + to + "/" + p);
    std::vector<std::string> parts;
    if (!created.empty()) parts.push_back((o_.execute ? "snapshot made and checked: " : "would snapshot: ") + Join(created, ", "));
    if (!kept.empty()) parts.push_back("snapshot there already, checked: " + Join(kept, ", "));
    if (!missing.empty()) parts.push_back("no home and no snapshot (nothing of theirs is deleted): " + Join(missing, ", "));
    if (!pruned.empty()) parts.push_back((o_.execute ? "pruned " : "would prune ") + Join(pruned, ", "));
    nr.status = created.empty() && pruned.empty() ? "unchanged" : o_.execute ? "changed" : "planned";
    nr.detail = parts.empty() ? "no selected account has a home here" : Join(parts, "; ");
    return true;
  }

  // accounts: delete_data. See AccountAction::DeleteData. The node prints "removed<TAB>NAME<TAB>PATH<TAB>KIB"
  // ("would-remove" in a dry run) per path it deleted.
  bool delete_data(const PlaybookStep& st, const std::vector<std::string>& names, const NodeDef& n, Transport& t,
                   StepNodeResult& nr) {
    std::string data_root;
    Value eff = inv_.settings(n);
    if (const Value* v = eff.find("rootless_docker"); v && v->is_map())
      if (const Value* d = v->find("data_root"); d && d->is_scalar()) data_root = d->str();
    std::vector<std::pair<std::string, std::string>> paths;  // user, path
    std::vector<std::string> unverified;
    {
      std::lock_guard<std::mutex> l(mu_);
      for (const auto& u : names) {
        if (!snapshotted_.count(u) && !archived_[n.name].count(u)) {
          unverified.push_back(u);
          continue;
        }
        std::vector<std::string> mine;
        if (!data_root.empty()) {
          std::string p = data_root;
          for (size_t at; (at = p.find("{{user}}")) != std::string::npos;) p.replace(at, 8, u);
          mine.push_back(p);
        }
        if (!st.homes.empty()) mine.push_back(st.homes + "/" + u);
        for (const auto& p : mine) {
          PathResult pr = NormalizeAbsolutePath(p);
          if (!pr.error && pr.path == p && p != "/") paths.push_back({u, p});
        }
      }
    }
    const std::string nonce = o_.execute ? NewNonce() : "";
    Script sc = NodeScript(o_.execute ? nonce : "", true);
    sc.raw(kRootOnlyShellFunction);
    for (const auto& [u, p] : paths) {
      const std::string q = ShellQuote(p), parent = p.substr(0, std::max<size_t>(p.rfind('/'), 1));
      sc.raw("if [ -L " + q + " ]; then lf_fail " + ShellQuote(p + " is a symbolic link; nothing of it deleted") + "; fi");
      sc.raw("if [ -e " + q + " ]; then");
      sc.raw("  lf_rootonly " + ShellQuote(parent) + " || lf_fail \"a user can change ${LF_WHY}above \"" + q +
             "\"; labfleet never deletes as root through a path a user controls\"");
      sc.raw("  lf_kib=$(timeout 60 du -sxk -- " + q + " 2>/dev/null | cut -f1)");
      if (o_.execute) {
        sc.raw("  if [ \"$(stat -c %i " + q + ")\" = 256 ] && btrfs subvolume show " + q + " >/dev/null 2>&1; then");
        sc.raw("    btrfs subvolume delete " + q + " >/dev/null || lf_fail " + ShellQuote("btrfs subvolume delete " + p + " failed"));
        sc.raw("  else rm -rf --one-file-system -- " + q + " || lf_fail " + ShellQuote("rm -rf " + p + " failed") + "; fi");
        sc.raw("  " + Cmd("printf").arg("removed\t%s\t%s\t%s\n").arg(u).arg(p).str() + " \"$lf_kib\"");
      } else {
        sc.raw("  " + Cmd("printf").arg("would-remove\t%s\t%s\t%s\n").arg(u).arg(p).str() + " \"$lf_kib\"");
      }
      sc.raw("fi");
    }
    RunResult r;
    if (!run_checked(t, sc, nonce, nr, r, "deleting the accounts' data failed")) return false;
    size_t removed = 0;
    for (const auto& line : SplitLines(r.out)) {
      auto f = SplitChar(line, '\t');
      if (f.size() != 4 || (f[0] != "removed" && f[0] != "would-remove")) continue;
      bool ours = false;
      for (const auto& [u, p] : paths) ours = ours || (u == f[1] && p == f[2]);
      if (!ours) continue;
      auto kib = ParseCount(f[3]);
      nr.changes.push_back("- " + f[2] + " (" + f[1] + ", " + (kib ? ByteCount(size_t(*kib) * 1024) : "size unknown") + ")");
      ++removed;
    }
    nr.status = removed == 0 ? "unchanged" : o_.execute ? "changed" : "planned";
    nr.detail = removed == 0 ? "no data of the checked accounts here"
                             : (o_.execute ? "deleted " : "would delete ") + Counted(removed, "path", "paths");
    if (!unverified.empty())
      nr.detail += "; kept (no snapshot or archive of theirs checked in this run): " + Join(unverified, ", ");
    return true;
  }

  // Ends every process of the named accounts on the node (dry run: counts them). Only accounts that exist on the
  // node with uid >= 1000 (root and system accounts never; the login user is refused before, AccountsRefusal).
  // The node prints "NAME<TAB>COUNT<TAB>LEFT" per account; lines naming no selected account are ignored.
  bool end_sessions(const std::vector<std::string>& names, Transport& t, StepNodeResult& nr) {
    const std::string nonce = NewNonce();
    Script sc = NodeScript(o_.execute ? nonce : "", false);
    for (const auto& u : names) {
      sc.raw("lf_uid=$(" + Cmd("getent").arg("passwd").arg(u).str() + " | cut -d: -f3)");
      sc.raw("case $lf_uid in ''|*[!0-9]*) lf_uid=;; esac");
      sc.raw("if [ -n \"$lf_uid\" ] && [ \"$lf_uid\" -ge 1000 ]; then");
      sc.raw("  lf_n=$(pgrep -u \"$lf_uid\" | wc -l); lf_left=0");
      if (o_.execute) {
        sc.raw("  if [ \"$lf_n\" -gt 0 ]; then pkill -KILL -u \"$lf_uid\"; lf_i=0");
        sc.raw("    while pgrep -u \"$lf_uid\" >/dev/null && [ $lf_i -lt 50 ]; do sleep 0.1; lf_i=$((lf_i + 1)); done");
        sc.raw("    lf_left=$(pgrep -u \"$lf_uid\" | wc -l); fi");
      }
      sc.raw("  " + Cmd("printf").arg("%s\t%s\t%s\n").arg(u).str() + " \"$lf_n\" \"$lf_left\"");
      sc.raw("fi");
    }
    RunResult r;
    if (!run_checked(t, sc, nonce, nr, r)) return false;
    std::vector<std::string> ended, left;
    for (const auto& line : SplitLines(r.out)) {
      auto f = SplitChar(line, '\t');
      if (f.size() != 3 || std::find(names.begin(), names.end(), f[0]) == names.end()) continue;
      auto count = ParseCount(f[1]), rest = ParseCount(f[2]);
      if (!count || !rest || *count == 0) continue;
      ended.push_back(f[0] + " (" + std::to_string(*count) + ")");
      if (*rest) left.push_back(f[0] + " (" + std::to_string(*rest) + ")");
    }
    if (!left.empty()) {
      nr.status = "failed";
      nr.detail = "processes still running after SIGKILL: " + Join(left, ", ");
      return false;
    }
    nr.status = ended.empty() ? "unchanged" : o_.execute ? "changed" : "planned";
    nr.detail = ended.empty() ? "no process of these accounts runs"
                              : (o_.execute ? "ended the processes of " : "would end the processes of ") + Join(ended, ", ");
    return true;
  }

  // Reads, for each selected account that exists on the node with uid >= 1000: its home, the home's size
  // (`du -sxk`: one filesystem, symlinks not followed, at most 60 s per home) and its last login (`lastlog`).
  // Read-only (no lock), so it runs in dry runs too.
  bool report_accounts(const std::vector<std::string>& names, const std::map<std::string, std::string>& expires,
                       Transport& t, StepNodeResult& nr) {
    Script sc = NodeScript("", false);
    for (const auto& u : names) {
      sc.raw("lf_pw=$(" + Cmd("getent").arg("passwd").arg(u).str() + " | head -n 1)");
      sc.raw("lf_uid=$(printf '%s\\n' \"$lf_pw\" | cut -d: -f3); lf_home=$(printf '%s\\n' \"$lf_pw\" | cut -d: -f6)");
      sc.raw("case $lf_uid in ''|*[!0-9]*) lf_uid=;; esac");
      sc.raw("if [ -n \"$lf_uid\" ] && [ \"$lf_uid\" -ge 1000 ]; then lf_kib=");
      sc.raw("  if [ -d \"$lf_home\" ] && [ ! -L \"$lf_home\" ]; then "
             "lf_kib=$(timeout 60 du -sxk -- \"$lf_home\" 2>/dev/null | cut -f1); fi");
      sc.raw("  lf_last=$(" + Cmd("lastlog").arg("-u").arg(u).str() + " 2>/dev/null | sed -n 2p | head -c 300)");
      sc.raw("  " + Cmd("printf").arg("%s\t%s\t%s\t%s\n").arg(u).str() + " \"$lf_home\" \"$lf_kib\" \"$lf_last\"");
      sc.raw("fi");
    }
    RunResult r;
    if (!run_checked(t, sc, "", nr, r)) return false;
    nr.rows = ParseAccountReport(r.out, names);
    for (auto& row : nr.rows) {
      row.node = nr.node;
      auto e = expires.find(row.user);
      if (e != expires.end()) row.expires = e->second;
      nr.changes.push_back("= " + row.user + ": home " + (row.home.empty() ? "?" : row.home) + ", " +
                           (row.home_kib < 0 ? "size unknown" : ByteCount(uint64_t(row.home_kib) * 1024)) +
                           ", last login " + row.last_login);
    }
    nr.status = "listed";
    nr.detail = Counted(nr.rows.size(), "account", "accounts") + " on this node";
    return true;
  }

  static std::vector<std::string> SplitChar(const std::string& s, char c) {
    std::vector<std::string> out;
    size_t start = 0;
    for (size_t i = 0; i <= s.size(); ++i)
      if (i == s.size() || s[i] == c) {
        out.push_back(s.substr(start, i - start));
        start = i + 1;
      }
    return out;
  }

  static std::optional<long long> ParseCount(std::string s) {
    while (!s.empty() && s.front() == ' ') s.erase(s.begin());  // wc -l pads on some systems
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
    return std::stoll(s);
  }

  // Runs `fn` on the active nodes, batch by batch; health checks after each batch of a real run. Stops at the
  // first batch with a failure.
  bool batched(const PlaybookStep& st, StepResult& sr,
               const std::function<bool(const NodeDef&, Transport&, StepNodeResult&)>& fn) {
    auto batches = Batches(active(), st.batch);
    bool ok = true;
    for (size_t b = 0; b < batches.size(); ++b) {
      const auto& batch = batches[b];
      if (!ok || Stopped(stop_)) {
        for (const NodeDef* n : batch)
          sr.nodes.push_back({n->name, "not-started",
                              Stopped(stop_) ? "interrupted before its batch" : "an earlier batch failed", {}, {}});
        continue;
      }
      std::vector<StepNodeResult> rs(batch.size());
      std::vector<char> good(batch.size(), 0);
      // Steps that change nodes are recorded for --resume; a report (read-only) runs again.
      // A snapshot step is checked again (delete_data relies on what this run checked).
      const bool recordable = st.kind == StepKind::Apply ||
                              (st.kind == StepKind::Accounts && st.action != AccountAction::Report &&
                               st.action != AccountAction::Snapshot) ||
                              st.kind == StepKind::Command || st.kind == StepKind::Snapshot;
      ForEachNode(batch, o_.parallel, [&](size_t i, const NodeDef& n) {
        rs[i].node = n.name;
        if (recordable && o_.resume) {
          std::lock_guard<std::mutex> l(mu_);
          auto it = progress_.find(n.name);
          if (it != progress_.end() && it->second.done.count(step_index_)) {
            rs[i].status = "done-earlier";
            rs[i].detail = "done in an earlier run (" + it->second.run_id + "); skipped by --resume";
            good[i] = 1;
            return;
          }
        }
        std::string why;
        Transport* t = conn(n, why);
        if (!t) {
          rs[i].status = "unreachable";
          rs[i].detail = why;
          return;
        }
        good[i] = fn(n, *t, rs[i]);
        if (good[i] && o_.execute && !st.health.empty()) {
          try {
            RunResult h = t->run(Cmd(st.health[0]).args({st.health.begin() + 1, st.health.end()}).str() + " </dev/null");
            if (!h.ok()) {
              good[i] = 0;
              rs[i].status = "failed";
              rs[i].detail += "; health check " + Join(st.health, " ") + " failed (exit " + std::to_string(h.exit_code) +
                              ")" + (Tail(h).empty() ? "" : ": " + Tail(h));
            } else {
              rs[i].detail += "; health check passed" + (Tail(h).empty() ? "" : ": " + Tail(h));
            }
          } catch (const std::exception& e) {
            good[i] = 0;
            rs[i].status = "failed";
            rs[i].detail += std::string("; health check: ") + e.what();
          }
        }
        if (good[i] && o_.execute && recordable) record_progress(n, *t, rs[i]);
      });
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!good[i]) ok = false;
        sr.nodes.push_back(std::move(rs[i]));
      }
      if (batches.size() > 1)
        sr.notes.push_back("batch " + std::to_string(b + 1) + "/" + std::to_string(batches.size()) + " (" +
                           std::to_string(batch.size()) + (batch.size() == 1 ? " node" : " nodes") + "): " +
                           (ok ? "ok" : "failed; later batches not started"));
    }
    if (Stopped(stop_)) ok = false;
    sr.status = !ok ? "failed" : o_.execute ? "done" : "dry-run";
    return ok;
  }

  const Playbook& pb_;
  const Inventory& inv_;
  const std::vector<const NodeDef*>& nodes_;
  const RunnerOptions& o_;
  const RunnerOps& ops_;
  const std::atomic<bool>* stop_;
  PlaybookRun out_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<Transport>> conns_;
  std::set<std::string> dropped_;
  std::map<std::string, ProgressRecord> progress_;  // node -> steps done (this run, and with --resume, earlier)
  size_t step_index_ = 0;
  const PlaybookStep* step_ = nullptr;  // the step running now
  std::vector<std::unique_ptr<Inventory>> accounts_inv_;
  // Accounts whose home snapshot an accounts snapshot step of this run checked (dry run: would make or check),
  // and per node the accounts an archive step of this run archived there: what delete_data may delete.
  std::set<std::string> snapshotted_;
  std::vector<std::unique_ptr<Transport>> retired_;  // connections of nodes that rebooted
  std::map<std::string, std::set<std::string>> archived_;
};

}  // namespace

PlaybookRun RunPlaybook(const Playbook& pb, const Inventory& inv, const std::vector<const NodeDef*>& nodes,
                        const RunnerOptions& opts, const RunnerOps& ops, const std::atomic<bool>* stop) {
  return Runner(pb, inv, nodes, opts, ops, stop).run();
}

namespace {
// Printable text of at most `max` bytes: control characters dropped, runs of blanks collapsed, trimmed.
std::string Printable(std::string_view s, size_t max) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) c = ' ';
    if (c == ' ' && (out.empty() || out.back() == ' ')) continue;
    out.push_back(char(c));
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  if (out.size() > max) out.resize(max);
  return out;
}
}  // namespace

std::vector<AccountReportRow> ParseAccountReport(const std::string& out, const std::vector<std::string>& names) {
  std::vector<AccountReportRow> rows;
  std::set<std::string> seen;
  for (const auto& line : SplitLines(out)) {
    std::vector<std::string> f;
    size_t start = 0;
    for (int k = 0; k < 3; ++k) {  // the last login line takes the rest, tabs and all
      size_t tab = line.find('\t', start);
      if (tab == std::string::npos) break;
      f.push_back(line.substr(start, tab - start));
      start = tab + 1;
    }
    if (f.size() != 3) continue;
    f.push_back(line.substr(start));
    if (std::find(names.begin(), names.end(), f[0]) == names.end() || !seen.insert(f[0]).second) continue;
    AccountReportRow row;
    row.user = f[0];
    PathResult home = NormalizeAbsolutePath(f[1]);
    if (!home.error && f[1].size() <= 4096) row.home = home.path;
    if (!f[2].empty() && f[2].size() <= 15 && f[2].find_first_not_of("0123456789") == std::string::npos)
      row.home_kib = std::stoll(f[2]);
    // lastlog: "NAME  PORT  FROM  LATEST" or "NAME  **Never logged in**"; the name column is dropped.
    std::string last = Printable(f[3], 300);
    if (last.find("**Never logged in**") != std::string::npos)
      row.last_login = "never";
    else if (size_t sp = last.find(' '); sp != std::string::npos && last.substr(0, sp) == row.user)
      row.last_login = Printable(last.substr(sp + 1), 120);
    else
      row.last_login = "unknown";
    if (row.last_login.empty()) row.last_login = "unknown";
    rows.push_back(std::move(row));
  }
  return rows;
}

std::string AccountReportCsv(const std::vector<AccountReportRow>& rows) {
  auto field = [](const std::string& v) {
    std::string s = v;
    if (!s.empty() && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@')) s = "'" + s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  std::string out = "node,user,expires,home,home_kib,last_login\r\n";
  for (const auto& r : rows)
    out += field(r.node) + "," + field(r.user) + "," + field(r.expires) + "," + field(r.home) + "," +
           field(r.home_kib < 0 ? "" : std::to_string(r.home_kib)) + "," + field(r.last_login) + "\r\n";
  return out;
}

void ReportRun(Reporter& rep, const Playbook& pb, const PlaybookRun& r, const RunnerOptions& opts) {
  nlohmann::json steps = nlohmann::json::array();
  rep.line(std::string(opts.execute ? "Running" : "Dry run of") + " playbook " + pb.name + " (" +
           Counted(pb.steps.size(), "step", "steps") + ")" + (opts.execute ? "" : ": nothing is changed; --yes runs it") +
           (opts.today_days > TodayDays() ? "; accounts selected as of " + DateOfDays(opts.today_days) : ""));
  if (!pb.description.empty()) rep.line("  " + pb.description);
  for (size_t i = 0; i < r.steps.size(); ++i) {
    const StepResult& s = r.steps[i];
    rep.line("");
    rep.line("step " + std::to_string(i + 1) + "/" + std::to_string(r.steps.size()) + " " + s.name + " (" + s.kind +
                 "): " + s.status,
             s.status == "failed" || s.status == "declined" ? LineStyle::Fail : LineStyle::Plain);
    for (const auto& n : s.notes) rep.line("  " + n);
    nlohmann::json nodes = nlohmann::json::array();
    for (const auto& n : s.nodes) {
      LineStyle style = n.status == "failed" || n.status == "unreachable" ? LineStyle::Fail
                        : n.status == "skipped" || n.status == "busy"      ? LineStyle::Warn
                                                                            : LineStyle::Plain;
      rep.line("  " + n.node + ": " + n.status + (n.detail.empty() ? "" : " — " + n.detail), style);
      for (const auto& c : n.changes)
        rep.line("    " + c, c.starts_with("+")   ? LineStyle::Add
                               : c.starts_with("-") ? LineStyle::Remove
                               : c.starts_with("~") ? LineStyle::Modify
                               : c.starts_with("=") ? LineStyle::Plain
                                                    : LineStyle::Warn);
      nlohmann::json jn = {{"node", n.node}, {"status", n.status}, {"detail", n.detail}, {"changes", n.changes}};
      if (!n.rows.empty()) {
        jn["accounts"] = nlohmann::json::array();
        for (const auto& row : n.rows)
          jn["accounts"].push_back({{"user", row.user}, {"expires", row.expires}, {"home", row.home},
                                    {"home_kib", row.home_kib < 0 ? nlohmann::json(nullptr) : nlohmann::json(row.home_kib)},
                                    {"last_login", row.last_login}});
      }
      nodes.push_back(jn);
    }
    steps.push_back({{"number", i + 1}, {"name", s.name}, {"kind", s.kind}, {"status", s.status}, {"notes", s.notes},
                     {"nodes", nodes}});
  }
  rep.line("");
  if (!r.skipped.empty()) rep.line("skipped nodes (busy): " + Join(r.skipped, "; "), LineStyle::Warn);
  if (!r.ok)
    rep.line("stopped at step '" + r.stopped_at + "': later steps were not run; fix the cause, then run again with "
             "--resume (each node skips the steps it recorded as done) or --from '" + r.stopped_at + "'",
             LineStyle::Fail);
  else
    rep.line(opts.execute ? "playbook " + pb.name + " done" : "dry run done: run with --yes to do it");
  auto& doc = rep.doc();
  doc["playbook"] = {{"name", pb.name},
                     {"file", pb.file},
                     {"description", pb.description},
                     {"dry_run", !opts.execute},
                     {"as_of", DateOfDays(opts.today_days)}};
  doc["steps"] = steps;
  doc["result"] = {{"ok", r.ok}, {"stopped_at", r.stopped_at}, {"skipped_nodes", r.skipped}};
}

}  // namespace labfleet
