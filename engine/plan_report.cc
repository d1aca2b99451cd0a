#include "engine/plan_report.h"

#include <cstdio>

#include "engine/text.h"

namespace labfleet {

std::string DeferredLine(const NodePlan& p, const Change& c) {
  return "deferred: " + c.summary + " on " + p.node + " \u2014 " + p.busy.describe();
}

std::string ChangeLine(const Change& c) { return std::string(1, c.sign) + " " + c.summary; }

nlohmann::json ChangeToJson(const Change& c) {
  static const char* kinds[] = {"put_file", "exec", "remove", "notify"};
  nlohmann::json j = {{"resource", c.resource},
                      {"action", std::string(1, c.sign) == "+" ? "create" : c.sign == '-' ? "remove" : "modify"},
                      {"kind", kinds[int(c.kind)]},
                      {"summary", c.summary},
                      {"reason", c.reason},
                      {"disruptive", c.disruptive}};
  if (!c.diff.empty() && !c.secret) j["diff"] = c.diff;
  if (c.kind == Change::Kind::Notify) j["handler"] = c.handler;
  if (c.kind == Change::Kind::PutFile) j["path"] = c.file.path;
  return j;
}

nlohmann::json NodePlanToJson(const NodePlan& p) {
  nlohmann::json j = {{"node", p.node}, {"reachable", p.reachable}, {"resources", p.resources}};
  if (!p.error.empty()) j["error"] = p.error;
  j["changes"] = nlohmann::json::array();
  for (const auto& c : p.changes) j["changes"].push_back(ChangeToJson(c));
  j["deferred"] = nlohmann::json::array();
  for (const auto& c : p.deferred) {
    auto d = ChangeToJson(c);
    d["deferred_because"] = p.busy.describe();
    j["deferred"].push_back(d);
  }
  if (p.busy.holds()) j["busy"] = p.busy.ToJson();
  j["warnings"] = nlohmann::json::array();
  for (const auto& w : p.warnings) j["warnings"].push_back({{"resource", w.resource}, {"warning", w.text}});
  j["notes"] = nlohmann::json::array();
  for (const auto& n : p.notes) j["notes"].push_back({{"resource", n.resource}, {"note", n.text}});
  j["records"] = nlohmann::json::array();
  for (const auto& rec : p.records) j["records"].push_back(rec.what);
  return j;
}

const char* StatusName(NodeApplyResult::Status s) {
  switch (s) {
    case NodeApplyResult::Status::Unchanged: return "unchanged";
    case NodeApplyResult::Status::Changed: return "changed";
    case NodeApplyResult::Status::Failed: return "failed";
    case NodeApplyResult::Status::Unreachable: return "unreachable";
  }
  return "?";
}

nlohmann::json ApplyResultToJson(const NodeApplyResult& r) {
  nlohmann::json j = {{"node", r.node}, {"status", StatusName(r.status)}, {"applied", r.applied},
                      {"handlers", r.handlers_run}};
  if (!r.error.empty()) j["error"] = r.error;
  if (!r.notes.empty()) j["notes"] = r.notes;
  if (r.interrupted) j["interrupted"] = true;
  if (!r.remaining.changes.empty()) j["remaining"] = NodePlanToJson(r.remaining)["changes"];
  j["deferred"] = r.deferred;
  j["warnings"] = NodePlanToJson(r.remaining)["warnings"];
  return j;
}

namespace {

LineStyle ChangeStyle(char sign) {
  return sign == '+' ? LineStyle::Add : sign == '-' ? LineStyle::Remove : LineStyle::Modify;
}

void PrintPlanText(Reporter& rep, const NodePlan& p) {
  if (!p.reachable) {
    rep.line(p.node + ": unreachable: " + p.error, LineStyle::Fail);
    return;
  }
  if (!p.error.empty()) {
    rep.line(p.node + ": cannot be planned: " + p.error, LineStyle::Fail);
    if (p.changes.empty()) return;
  }
  auto deferred = [&] {
    for (const auto& c : p.deferred)
      rep.line("  " + DeferredLine(p, c) + " (--force overrides, --drain waits)", LineStyle::Warn);
    for (const auto& w : p.warnings) rep.line("  ! " + w.text + " (" + w.resource + ")", LineStyle::Warn);
    for (const auto& rec : p.records) rep.line("  = " + rec.what + " at the next apply");
  };
  if (p.changes.empty()) {
    rep.line(p.node + ": no changes (" + Counted(p.resources, "resource", "resources") + " up to date)");
    deferred();
    return;
  }
  // A node with an error is not applied at all; its other changes are shown as what comes once it is fixed.
  rep.line(p.node + ": " + Counted(p.changes.size(), "change", "changes") +
           (p.error.empty() ? "" : " once that is fixed (apply leaves this node alone until then)"));
  for (const auto& c : p.changes) {
    rep.line("  " + ChangeLine(c) + (c.reason.empty() || c.summary.find(c.reason) != std::string::npos ? ""
                                                                                                     : "  # " + c.reason),
             ChangeStyle(c.sign));
    if (!c.diff.empty() && !c.secret) {
      const std::string& d = c.diff;
      size_t pos = 0;
      while (pos < d.size()) {
        size_t nl = d.find('\n', pos);
        std::string dl = d.substr(pos, nl - pos);
        // Unified diff: "+line" / "-line", but not the "+++" / "---" file headers.
        LineStyle st = dl.rfind("+++", 0) == 0 || dl.rfind("---", 0) == 0 ? LineStyle::Plain
                       : !dl.empty() && dl[0] == '+'                      ? LineStyle::Add
                       : !dl.empty() && dl[0] == '-'                      ? LineStyle::Remove
                                                                          : LineStyle::Plain;
        rep.line("      " + dl, st);
        pos = nl == std::string::npos ? d.size() : nl + 1;
      }
    }
  }
  deferred();
}

}  // namespace

void ReportPlan(Reporter& rep, const std::vector<NodeRun>& runs) {
  PlanTotals t = CountPlan(runs);
  auto& j = rep.doc()["plan"];
  j = nlohmann::json::array();
  for (const auto& r : runs) {
    PrintPlanText(rep, r.plan);
    j.push_back(NodePlanToJson(r.plan));
  }
  rep.line("Plan: " + std::to_string(t.changes) + " change" + (t.changes == 1 ? "" : "s") + " on " +
           std::to_string(t.changed_nodes) + " node" + (t.changed_nodes == 1 ? "" : "s") + ", " +
           std::to_string(t.unchanged) + " unchanged, " + std::to_string(t.failed) + " unreachable or failed.");
  rep.doc()["summary"] = {{"changes", t.changes},
                          {"nodes_with_changes", t.changed_nodes},
                          {"unchanged", t.unchanged},
                          {"failed", t.failed}};
}

void ReportApply(Reporter& rep, const ApplyOutcome& outcome, const ApplyOptions& opts) {
  auto& j = rep.doc()["apply"];
  j = nlohmann::json::array();
  for (const auto& r : outcome.results) {
    j.push_back(ApplyResultToJson(r));
    std::string line = r.node + ": " + StatusName(r.status);
    if (r.status == NodeApplyResult::Status::Changed)
      line += " (" + Counted(r.applied, "change", "changes") +
              (r.handlers_run.empty() ? "" : ", ran " + Counted(r.handlers_run.size(), "handler", "handlers")) +
              "; re-plan empty)";
    if (!r.error.empty()) line += ": " + r.error;
    const bool bad = r.status != NodeApplyResult::Status::Changed && r.status != NodeApplyResult::Status::Unchanged;
    rep.line(line, bad ? LineStyle::Fail : LineStyle::Plain);
    for (const auto& d : r.deferred) rep.line("  " + d, LineStyle::Warn);
    for (const auto& note : r.notes) rep.line("  ! " + note, LineStyle::Warn);
    // What the re-plan after the changes has to say (a mount_now that failed, a reboot now pending).
    for (const auto& w : r.remaining.warnings) rep.line("  ! " + w.text + " (" + w.resource + ")", LineStyle::Warn);
  }
  rep.doc()["run_id"] = opts.run_id;
  rep.doc()["commit"] = opts.commit;
  rep.doc()["result"] = {{"changed", outcome.changed},
                         {"unchanged", outcome.unchanged},
                         {"failed", outcome.failed},
                         {"unreachable", outcome.unreachable}};
  rep.line("Apply " + opts.run_id + ": " + std::to_string(outcome.changed) + " changed, " +
           std::to_string(outcome.unchanged) + " unchanged, " + std::to_string(outcome.failed) + " failed, " +
           std::to_string(outcome.unreachable) + " unreachable.");
}

std::string ApplyProgressLine(const NodeApplyResult& r, size_t done, size_t total) {
  std::string line = "[" + std::to_string(done) + "/" + std::to_string(total) + "] " + r.node + ": " + StatusName(r.status);
  if (r.status == NodeApplyResult::Status::Changed) line += " (" + Counted(r.applied, "change", "changes") + ")";
  if (!r.error.empty()) line += ": " + r.error.substr(0, r.error.find('\n'));
  return line;
}

bool ReportStatus(Reporter& rep, const std::vector<StatusRow>& rows, const GitRepo* repo, const std::string& head) {
  auto& j = rep.doc()["nodes"];
  j = nlohmann::json::array();
  bool failed = false;
  char title[128];
  snprintf(title, sizeof title, "%-16s %-12s %-8s %-10s %s", "NODE", "COMMIT", "BEHIND", "DRIFT", "APPLIED");
  rep.line(title);
  for (const auto& r : rows) {
    nlohmann::json o = {{"node", r.node}};
    if (!r.error.empty()) {
      failed = true;
      o["error"] = r.error;
      rep.line(r.node + ": unreachable: " + r.error);
      j.push_back(o);
      continue;
    }
    std::string commit = r.state.is_object() ? r.state.value("commit", "") : "";
    std::string behind = "-";
    if (!commit.empty() && repo) {
      try {
        int n = repo->commits_between(commit, head);
        behind = std::to_string(n);
        o["behind"] = n;
      } catch (const std::exception&) {
        behind = "unknown";
      }
    }
    bool drift = !r.plan.changes.empty() || !r.plan.error.empty();
    o["commit"] = commit;
    o["drift"] = drift;
    o["pending_changes"] = r.plan.changes.size();
    o["warnings"] = nlohmann::json::array();
    for (const auto& w : r.plan.warnings) o["warnings"].push_back({{"resource", w.resource}, {"warning", w.text}});
    if (r.state.is_object()) o["state"] = r.state;
    j.push_back(o);
    std::string applied =
        r.state.is_object() ? r.state.value("applied_at", "") + " by " + r.state.value("applied_by", "") : "";
    char line[512];
    snprintf(line, sizeof line, "%-16s %-12s %-8s %-10s %s", r.node.c_str(),
             commit.empty() ? (r.state.is_object() ? "(no git)" : "never") : commit.substr(0, 10).c_str(),
             behind.c_str(), drift ? Counted(r.plan.changes.size(), "change", "changes").c_str() : "none",
             applied.c_str());
    rep.line(line);
    for (const auto& w : r.plan.warnings) rep.line("  ! " + w.text + " (" + w.resource + ")");
  }
  return !failed;
}

}  // namespace labfleet
