#include "engine/planner.h"

#include <algorithm>
#include <random>
#include <set>
#include <stdexcept>

#include "engine/file_probe.h"
#include "engine/plan_report.h"
#include "engine/shell.h"

namespace labfleet {

size_t Plan::change_count() const {
  size_t n = 0;
  for (const auto& p : nodes) n += p.changes.size();
  return n;
}

std::string NewNonce() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", (unsigned long long)rng());
  return buf;
}


// Each probe runs in a subshell (a command substitution) with stdin from /dev/null; its stdout goes straight to
// the script's stdout (fd 3), between markers that carry the nonce; its stderr is captured by the substitution,
// and once the probe has ended the shell prints the end marker with the status and at most 4 lines (300 bytes
// each) of that stderr, each tagged "e| " (so the two never interleave, and stderr cannot forge a marker).
// The nonce is never on an exec'd command line.
std::string BuildProbeScript(const std::vector<Probe>& probes, const std::string& nonce) {
  Script s;
  s.raw("export LC_ALL=C PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  s.raw("exec 3>&1");
  // Each probe costs the node ONE fork (the command substitution, a subshell: a probe's `exit` or failure cannot
  // end the script): its stdout goes straight out, its stderr is kept in lf_e, and the first 4 lines of that,
  // each cut at 300 bytes, are printed by shell builtins after the end marker (no awk per probe).
  s.raw("lf_nl='\n'; lf_q300=" + std::string(300, '?'));
  s.raw("lf_pe() { lf_e=$1; lf_j=0; while [ $lf_j -lt 4 ] && [ -n \"$lf_e\" ]; do lf_l=${lf_e%%\"$lf_nl\"*}; "
        "case $lf_e in *\"$lf_nl\"*) lf_e=${lf_e#*\"$lf_nl\"};; *) lf_e=;; esac; lf_j=$((lf_j+1)); "
        "[ ${#lf_l} -le 300 ] || lf_l=${lf_l%\"${lf_l#$lf_q300}\"}; [ -z \"$lf_l\" ] || printf 'e| %s\\n' \"$lf_l\"; done; }");
  for (size_t i = 0; i < probes.size(); ++i) {
    const std::string idx = std::to_string(i);
    s.raw("printf '@@lf-%s:begin:%d\\n' " + ShellQuote(nonce) + " " + idx);
    s.raw("lf_e=$( ( " + probes[i].command + "\n) </dev/null 2>&1 >&3 3>&-); lf_rc=$?");
    s.raw("printf '\\n@@lf-%s:end:%d:%s\\n' " + ShellQuote(nonce) + " " + idx + " \"$lf_rc\"; [ -z \"$lf_e\" ] || lf_pe \"$lf_e\"");
  }
  s.raw("printf '@@lf-%s:done\\n' " + ShellQuote(nonce));  // the output is complete, stderr lines included
  return s.str();
}

ProbeResults ParseProbeOutput(const std::string& out, const std::vector<Probe>& probes, const std::string& nonce) {
  ProbeResults results;
  size_t pos = 0;
  for (size_t i = 0; i < probes.size(); ++i) {
    std::string begin = "@@lf-" + nonce + ":begin:" + std::to_string(i) + "\n";
    std::string end = "\n@@lf-" + nonce + ":end:" + std::to_string(i) + ":";
    size_t b = out.find(begin, pos);
    if (b == std::string::npos) throw std::runtime_error("probe output cut short before '" + probes[i].key + "'");
    b += begin.size();
    size_t e = out.find(end, b);
    if (e == std::string::npos) throw std::runtime_error("probe output cut short in '" + probes[i].key + "'");
    size_t code_start = e + end.size();
    size_t nl = out.find('\n', code_start);
    if (nl == std::string::npos) throw std::runtime_error("probe output cut short after '" + probes[i].key + "'");
    ProbeOutput po;
    po.out = out.substr(b, e - b);
    const std::string code = out.substr(code_start, nl - code_start);
    if (code.empty() || code.size() > 3 || code.find_first_not_of("0123456789") != std::string::npos)
      throw std::runtime_error("probe '" + probes[i].key + "' ended without an exit status");
    po.exit_code = std::stoi(code);
    pos = nl + 1;
    while (out.compare(pos, 3, "e| ") == 0) {  // its stderr, as awk tagged it
      size_t enl = out.find('\n', pos);
      if (enl == std::string::npos) enl = out.size();
      po.err += (po.err.empty() ? "" : "\n") + out.substr(pos + 3, enl - pos - 3);
      pos = enl == out.size() ? enl : enl + 1;
    }
    results[probes[i].key] = std::move(po);
  }
  if (out.compare(pos, nonce.size() + 10, "@@lf-" + nonce + ":done") != 0)
    throw std::runtime_error("probe output cut short after the last probe");
  return results;
}

std::string RequiredFailure(const std::string& key, const ProbeOutput& o) {
  std::string first = o.err.substr(0, o.err.find('\n'));
  if (first.empty()) first = "(no error output)";
  return key + " failed (exit " + std::to_string(o.exit_code) + "): " + first;
}

std::vector<std::pair<const Module*, std::vector<Resource>>> NodeResources(const NodeContext& ctx,
                                                                           const PlanOptions& opts) {
  std::vector<std::pair<const Module*, std::vector<Resource>>> out;
  for (const auto& m : Modules())
    if (opts.only.empty() || std::find(opts.only.begin(), opts.only.end(), m->name()) != opts.only.end())
      out.emplace_back(m.get(), m->resources(ctx));
  return out;
}

std::vector<PendingHandler> ParsePendingHandlers(const std::string& text) {
  std::vector<PendingHandler> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    size_t t1 = line.find('\t'), t2 = t1 == std::string::npos ? t1 : line.find('\t', t1 + 1);
    if (t2 == std::string::npos) continue;
    bool ok1 = false, ok2 = false;
    PendingHandler h{Base64Decode(line.substr(0, t1), &ok1), Base64Decode(line.substr(t1 + 1, t2 - t1 - 1), &ok2),
                     line.substr(t2 + 1) == "1"};
    if (ok1 && ok2 && !h.handler.empty()) out.push_back(std::move(h));
  }
  return out;
}

std::string PendingHandlersFile(const std::vector<PendingHandler>& handlers) {
  std::string out;
  for (const auto& h : handlers)
    out += Base64Encode(h.handler) + "\t" + Base64Encode(h.command) + "\t" + (h.disruptive ? "1" : "0") + "\n";
  return out;
}

// Built into every node's probe round trip, whatever the modules ask: the busy probe (engine/busy.h, the same
// text `labfleet facts` runs) with the node's `busy:` settings, and the handlers an earlier run owes.
static std::vector<Probe> BuiltinProbes(const NodeContext& ctx) {
  return {BusyFact(BusySettingsOf(ctx.settings)).probe(), {"labfleet:pending", CatBuiltin(kPendingHandlersFile)},
          {"labfleet:state", Cmd("head").arg("-c").arg("65536").arg(kStateFile).str()}};
}

static std::vector<Probe> CollectProbes(const NodeContext& ctx,
                                        const std::vector<std::pair<const Module*, std::vector<Resource>>>& res) {
  std::vector<Probe> probes;
  std::set<std::string> seen;
  for (auto& p : BuiltinProbes(ctx)) {
    seen.insert(p.key);
    probes.push_back(std::move(p));
  }
  for (const auto& [m, rs] : res) {
    for (auto& p : m->probes(ctx, rs)) {
      if (seen.insert(p.key).second) {
        probes.push_back(std::move(p));
      } else if (p.required) {  // one module may not accept a failure another one does
        for (auto& q : probes)
          if (q.key == p.key) q.required = true;
      }
    }
  }
  return probes;
}

bool LoginSensitivePath(const std::string& path, const std::string& login_home) {
  auto under = [&](const std::string& dir) { return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/'; };
  for (const char* f : {"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow", "/etc/sudoers", "/etc/nsswitch.conf",
                        "/etc/login.defs", "/etc/hosts.allow", "/etc/hosts.deny"})
    if (path == f) return true;
  for (const char* d : {"/etc/ssh", "/etc/pam.d", "/etc/sudoers.d", "/etc/security"})
    if (under(d)) return true;
  return !login_home.empty() && (path == login_home + "/.ssh" || under(login_home + "/.ssh"));
}

// labfleet must never lock itself out: a change to the login user's account or keys, or to a file sshd, PAM,
// sudo or NSS read at login, is proven by a fresh login after the apply and undone when that fails (executor).
// An account change keeps the account files in the run's backup first, so it can be undone too.
static void GuardLogin(const NodeContext& ctx, NodePlan& plan) {
  const std::string login = ctx.inv.ssh(ctx.node).user;
  std::string home = login == "root" ? "/root" : "/home/" + login;
  for (const auto& u : ctx.inv.users)
    if (u.name == login) home = HomeOf(u);
  for (auto& c : plan.changes) {
    if (c.kind == Change::Kind::Notify) continue;
    const std::string path = c.kind == Change::Kind::PutFile ? c.file.path : c.kind == Change::Kind::Remove ? c.path : "";
    const bool account = c.resource == "user:" + login || c.resource == "ssh_keys:" + login;
    if (!account && !(path.size() && LoginSensitivePath(path, home))) continue;
    c.reconnect_check = true;
    if (c.kind == Change::Kind::Exec && c.resource == "user:" + login)
      c.backup_paths = {"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"};
  }
}

static NodePlan DiffAll(const NodeContext& ctx,
                        const std::vector<std::pair<const Module*, std::vector<Resource>>>& res,
                        const std::vector<Probe>& probes, const ProbeResults& results, const PlanOptions& opts) {
  NodePlan plan;
  plan.node = ctx.node.name;
  // A required fact that failed says nothing about the node: no module diffs against it, nothing is planned.
  for (const auto& p : probes) {
    const ProbeOutput* o = p.required ? FindProbe(results, p.key) : nullptr;
    if (o && o->exit_code != 0)
      plan.error += (plan.error.empty() ? "" : "; ") + RequiredFailure(p.key, *o);
  }
  if (!plan.error.empty()) {
    plan.error += "; nothing is planned for this node until that command works on it (run it there to see why)";
    for (const auto& [m, rs] : res) plan.resources += int(rs.size());
    return plan;
  }
  for (const auto& [m, rs] : res) {
    for (const auto& r : rs) {
      ++plan.resources;
      DiffResult d = m->diff(ctx, r, results);
      if (!d.error.empty()) plan.error += (plan.error.empty() ? "" : "; ") + r.id + ": " + d.error;
      for (auto& w : d.warnings) plan.warnings.push_back({r.id, std::move(w)});
      for (auto& rec : d.records) plan.records.push_back(std::move(rec));
      if (d.changes.empty()) {
        plan.notes.push_back({r.id, d.noop});
      } else {
        for (auto& c : d.changes) {
          if (c.resource.empty()) c.resource = r.id;
          plan.changes.push_back(std::move(c));
        }
      }
    }
  }
  GuardLogin(ctx, plan);
  // Handlers an earlier run had to defer.
  if (const ProbeOutput* p = FindProbe(results, "labfleet:pending")) {
    for (const auto& h : ParsePendingHandlers(p->out)) {
      bool present = false;
      for (const auto& c : plan.changes) present |= c.kind == Change::Kind::Notify && c.handler == h.handler;
      if (present) continue;
      Change c = NotifyChange(h.handler, h.command, h.handler, "pending since an earlier run deferred it", h.disruptive);
      c.resource = "handler:" + h.handler;
      plan.changes.push_back(std::move(c));
    }
  }
  if (const ProbeOutput* p = FindProbe(results, "labfleet:state"); p && p->exit_code == 0) plan.recorded_state = p->out;
  // Fail safe: disruptive changes wait on a busy node AND on one whose busy state cannot be known (nvidia-smi
  // failed or hung, docker did not answer, busy.command failed, the probe's output was cut short).
  if (FindProbe(results, kBusyProbeKey)) plan.busy = results.fact(BusyFact(BusySettingsOf(ctx.settings)));
  if (plan.busy.holds() && !opts.force) {
    std::vector<Change> keep;
    for (auto& c : plan.changes) (c.disruptive ? plan.deferred : keep).push_back(std::move(c));
    plan.changes = std::move(keep);
  }
  return plan;
}

NodePlan DiffNode(const Inventory& inv, const NodeDef& node, const ProbeResults& results, const PlanOptions& opts) {
  Value settings = inv.settings(node);
  NodeContext ctx{inv, node, settings};
  auto res = NodeResources(ctx, opts);
  return DiffAll(ctx, res, CollectProbes(ctx, res), results, opts);
}

// Every file any module asked for is read by one batched command instead of one probe per path.
static std::vector<Probe> RoundTripProbes(const NodeContext& ctx,
                                          const std::vector<std::pair<const Module*, std::vector<Resource>>>& res,
                                          std::vector<std::string>* file_paths) {
  std::vector<Probe> probes;
  std::vector<std::string> paths;
  for (auto& p : CollectProbes(ctx, res)) {
    std::string path;
    if (IsFileProbe(p, &path))
      paths.push_back(std::move(path));
    else
      probes.push_back(std::move(p));
  }
  if (!paths.empty()) probes.push_back(BatchedFileProbe(paths, kProbeCacheDir));
  if (file_paths) *file_paths = std::move(paths);
  return probes;
}

std::vector<Probe> NodeProbes(const Inventory& inv, const NodeDef& node, const PlanOptions& opts) {
  Value settings = inv.settings(node);
  NodeContext ctx{inv, node, settings};
  return RoundTripProbes(ctx, NodeResources(ctx, opts), nullptr);
}

// The busy probe (engine/busy.h) only matters to disruptive changes (they wait on a busy node), and it is one of
// the costlier probes (find over /proc/*/fd, nvidia-smi, docker ps): the first round trip leaves it out, and it
// runs, in a second round trip over the same channel (the same SSH session), only when the plan has a disruptive
// change. A converged node is never asked. The JSON "busy" of a plan is therefore present only then. Only with
// PlanOptions::always_busy false (plan, apply, status); playbooks keep it true and know every node's busy state.
NodePlan PlanNode(const Inventory& inv, const NodeDef& node, Transport& transport, const PlanOptions& opts) {
  Value settings = inv.settings(node);
  NodeContext ctx{inv, node, settings};
  auto res = NodeResources(ctx, opts);
  std::vector<std::string> paths;
  std::vector<Probe> probes = RoundTripProbes(ctx, res, &paths);
  std::vector<Probe> busy;
  for (auto it = probes.begin(); !opts.always_busy && it != probes.end(); ++it) {
    if (it->key == kBusyProbeKey) {
      busy.push_back(std::move(*it));
      probes.erase(it);
      break;
    }
  }
  auto failed = [&](const std::string& why) {
    NodePlan p;
    p.node = node.name;
    p.reachable = true;
    p.error = why;
    return p;
  };
  constexpr int kTries = 3;  // files that change while they are read are read again, in a new round trip
  for (int attempt = 1;; ++attempt) {
    std::string nonce = NewNonce();
    RunResult r = transport.run_script(BuildProbeScript(probes, nonce));
    ProbeResults results;
    try {
      results = ParseProbeOutput(r.out, probes, nonce);
      if (paths.empty() || SplitBatchedFileProbe(results["labfleet:files"].out, paths, results)) {
        results.erase("labfleet:files");
        NodePlan plan = DiffAll(ctx, res, probes, results, opts);
        bool disruptive = false;
        for (const auto& c : plan.changes) disruptive |= c.disruptive;
        if (busy.empty() || !disruptive || !plan.error.empty()) return plan;
        std::string bnonce = NewNonce();
        RunResult b = transport.run_script(BuildProbeScript(busy, bnonce));
        try {
          ProbeResults br = ParseProbeOutput(b.out, busy, bnonce);
          results[kBusyProbeKey] = br[kBusyProbeKey];
        } catch (const std::exception& e) {
          return failed(std::string("busy probe: ") + e.what() + " (exit " + std::to_string(b.exit_code) + ": " + b.err + ")");
        }
        probes.push_back(busy[0]);
        return DiffAll(ctx, res, probes, results, opts);
      }
    } catch (const TransportError&) {
      throw;  // the busy round trip lost the node: as for the first one, the caller's business
    } catch (const std::exception& e) {
      return failed(std::string(e.what()) + " (exit " + std::to_string(r.exit_code) + ": " + r.err + ")");
    }
    if (attempt == kTries)
      return failed("files on the node changed while they were read, " + std::to_string(kTries) +
                    " times in a row; plan again when whatever is rewriting them has finished");
  }
}

}  // namespace labfleet
