// How plans and apply results are told: the one-line texts the executor also uses in its messages, the JSON
// objects of `--format json`, and the whole report of plan, apply and status through the Reporter. Pure: no
// node is touched here, and nothing else prints a plan.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/executor.h"
#include "engine/fleet.h"
#include "engine/git_repo.h"
#include "engine/planner.h"
#include "engine/reporter.h"

namespace labfleet {

std::string ChangeLine(const Change& c);                       // "+ user yseong (uid 2001, groups gpu-users)"
std::string DeferredLine(const NodePlan& p, const Change& c);  // "deferred: docker restart on asahi — 2 GPU jobs ..."
const char* StatusName(NodeApplyResult::Status s);             // "unchanged", "changed", "failed", "unreachable"
nlohmann::json ChangeToJson(const Change& c);
nlohmann::json NodePlanToJson(const NodePlan& p);
nlohmann::json ApplyResultToJson(const NodeApplyResult& r);

// Every node's plan (text: changes with their diffs, deferred changes, warnings; JSON: doc()["plan"]), then the
// totals line ("Plan: 3 changes on 2 nodes, 1 unchanged, 0 unreachable or failed.", doc()["summary"]).
void ReportPlan(Reporter& rep, const std::vector<NodeRun>& runs);

// One line per node with its status and what it got, then "Apply RUN: ..." (doc()["apply"], ["result"],
// ["run_id"], ["commit"]).
void ReportApply(Reporter& rep, const ApplyOutcome& outcome, const ApplyOptions& opts);

// The progress line of one finished node during apply: "[3/16] node7: changed (4 changes)", "[4/16] node2:
// failed: <first line of the error>". For people watching a long apply (stderr); the full report follows.
std::string ApplyProgressLine(const NodeApplyResult& r, size_t done, size_t total);

// `status`: one row per node (applied commit, commits behind HEAD, drift, when and by whom).
struct StatusRow {
  std::string node;
  nlohmann::json state;  // the node's state.json, or null when it has none
  NodePlan plan;
  std::string error;     // could not connect or plan
};
// Returns false when a node could not be read. `repo`: the inventory's repository, or null when not in git.
bool ReportStatus(Reporter& rep, const std::vector<StatusRow>& rows, const GitRepo* repo, const std::string& head);

}  // namespace labfleet
