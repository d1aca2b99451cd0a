// Orchestration across nodes (engine/fleet.h) with every node-touching step faked: who is planned, who is
// applied, what an interrupt leaves untouched, how --drain re-plans, and what the report says about it.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "engine/fake_transport.h"
#include "engine/fleet.h"
#include "engine/plan_report.h"
#include "engine/yaml_load.h"
#include "tests/unit/module_helpers.h"

using namespace labfleet;
using namespace labfleet::testing;

namespace {

const char* kInv = R"(lab: { name: t }
nodes:
  asahi: { address: 10.9.0.1 }
  biwa: { address: 10.9.0.2 }
  chiba: { address: 10.9.0.3 }
)";

class NotingTransport : public FakeTransport {
 public:
  using FakeTransport::FakeTransport;
  std::string notes() const override { return "recorded new host key ED25519 SHA256:abc"; }
};

Change Put(const std::string& what, bool disruptive = false) {
  Change c;
  c.resource = what;
  c.sign = '~';
  c.summary = what;
  c.disruptive = disruptive;
  return c;
}

// A fleet where asahi plans two changes, biwa cannot be reached and chiba's probe fails. Records what was done.
struct World {
  std::mutex mu;
  std::vector<std::string> applied;       // node names, in no particular order
  std::vector<std::string> reconnected;   // node names whose reconnect passed the live transport
  std::map<std::string, int> plans;       // node -> times planned
  std::chrono::steady_clock::time_point clock{};
  std::function<NodePlan(const NodeDef&)> planner = [](const NodeDef& n) {
    NodePlan p;
    p.node = n.name;
    if (n.name == "chiba") throw std::runtime_error("passwd-file failed (exit 2): no such database");
    p.changes = {Put("file:/etc/motd"), Put("user:yseong")};
    p.resources = 5;
    return p;
  };
  std::function<NodeApplyResult(const NodeDef&, const NodePlan&)> applier = [](const NodeDef& n, const NodePlan& p) {
    NodeApplyResult r;
    r.node = n.name;
    r.status = NodeApplyResult::Status::Changed;
    r.applied = int(p.changes.size());
    return r;
  };

  FleetOps ops() {
    FleetOps o;
    o.connect = [this](const NodeDef& n, const Transport* previous) -> std::unique_ptr<Transport> {
      if (n.name == "biwa") throw TransportError(TransportError::Kind::Connect, "biwa: connection refused");
      if (previous) {
        std::lock_guard<std::mutex> l(mu);
        reconnected.push_back(n.name);
      }
      if (n.name == "asahi") return std::make_unique<NotingTransport>(n.name);
      return std::make_unique<FakeTransport>(n.name);
    };
    o.plan = [this](const NodeDef& n, Transport&) {
      {
        std::lock_guard<std::mutex> l(mu);
        ++plans[n.name];
      }
      return planner(n);
    };
    o.apply = [this](const NodeDef& n, const NodePlan& p, Transport&, const ApplyOptions& opts) {
      {
        std::lock_guard<std::mutex> l(mu);
        applied.push_back(n.name);
      }
      if (opts.reconnect) opts.reconnect();
      return applier(n, p);
    };
    o.wait = [this](std::chrono::seconds d, const std::atomic<bool>* stop) {
      clock += d;
      return !(stop && stop->load());
    };
    o.now = [this] { return clock; };
    return o;
  }
};

std::vector<const NodeDef*> All(const Inventory& inv) {
  std::vector<const NodeDef*> v;
  for (const auto& n : inv.nodes) v.push_back(&n);
  return v;
}

}  // namespace

TEST_SUITE("fleet") {
  TEST_CASE("connections are closed by the node threads: after planning (plan) or once the node is done (apply)") {
    Inventory inv = LoadUnvalidated(kInv);
    World w;
    // A transport that records the thread that closes it.
    struct Closing : FakeTransport {
      Closing(std::string n, std::mutex& mu, std::vector<std::thread::id>& by) : FakeTransport(std::move(n)), mu(mu), by(by) {}
      ~Closing() override {
        std::lock_guard<std::mutex> l(mu);
        by.push_back(std::this_thread::get_id());
      }
      std::mutex& mu;
      std::vector<std::thread::id>& by;
    };
    std::mutex mu;
    std::vector<std::thread::id> closed_by;
    FleetOps ops = w.ops();
    ops.connect = [&](const NodeDef& n, const Transport*) -> std::unique_ptr<Transport> {
      return std::make_unique<Closing>(n.name, mu, closed_by);
    };
    w.planner = [](const NodeDef& n) {
      NodePlan p;
      p.node = n.name;
      p.changes = {Put("file:/etc/motd")};
      return p;
    };
    auto runs = PlanAll(All(inv), 3, ops, nullptr, /*keep_connections=*/false);
    CHECK(closed_by.size() == 3);
    for (const auto& r : runs) CHECK(r.transport == nullptr);
    for (const auto& id : closed_by) CHECK(id != std::this_thread::get_id());
    closed_by.clear();
    runs = PlanAll(All(inv), 3, ops, nullptr);  // kept for the apply
    CHECK(closed_by.empty());
    ApplyOutcome out = ApplyAll(All(inv), runs, 3, ops, ApplyOptions{}, 0, nullptr);
    CHECK(out.changed == 3);
    // three connections of the apply's reconnects (closed by the node threads too) and the three kept ones
    CHECK(closed_by.size() == 6);
    for (const auto& r : runs) CHECK(r.transport == nullptr);
    for (const auto& id : closed_by) CHECK(id != std::this_thread::get_id());
  }

  TEST_CASE("plan all: an unreachable node and a failed probe do not stop the others; totals count only what apply does") {
    Inventory inv = LoadUnvalidated(kInv);
    World w;
    auto runs = PlanAll(All(inv), 2, w.ops(), nullptr);
    REQUIRE(runs.size() == 3);
    CHECK(runs[0].plan.node == "asahi");
    CHECK(runs[0].plan.changes.size() == 2);
    REQUIRE(runs[0].plan.warnings.size() == 1);  // the connection's note goes under the node
    CHECK(runs[0].plan.warnings[0].resource == "ssh");
    CHECK(runs[1].plan.reachable == false);
    CHECK(runs[1].plan.error == "biwa: connection refused");
    CHECK(runs[1].transport == nullptr);
    CHECK(runs[2].plan.reachable);
    CHECK(runs[2].plan.node == "chiba");
    CHECK(runs[2].plan.error.find("passwd-file failed (exit 2)") != std::string::npos);
    PlanTotals t = CountPlan(runs);
    CHECK(t.changes == 2);
    CHECK(t.changed_nodes == 1);
    CHECK(t.unchanged == 0);
    CHECK(t.failed == 2);

    std::ostringstream out, err;
    Reporter rep(OutputFormat::Text, out, err);
    ReportPlan(rep, runs);
    CHECK(out.str().find("asahi: 2 changes\n") != std::string::npos);
    CHECK(out.str().find("biwa: unreachable: biwa: connection refused") != std::string::npos);
    CHECK(out.str().find("chiba: cannot be planned: passwd-file failed") != std::string::npos);
    CHECK(out.str().find("Plan: 2 changes on 1 node, 0 unchanged, 2 unreachable or failed.") != std::string::npos);
    CHECK(rep.doc()["summary"]["failed"] == 2);
    CHECK(rep.doc()["plan"].size() == 3);
  }

  TEST_CASE("apply all: only nodes planned cleanly are applied, each reconnecting through its live connection") {
    Inventory inv = LoadUnvalidated(kInv);
    World w;
    FleetOps ops = w.ops();
    auto runs = PlanAll(All(inv), 3, ops, nullptr);
    ApplyOptions opts;
    opts.run_id = "20261205T080000Z-abcdef";
    ApplyOutcome o = ApplyAll(All(inv), runs, 3, ops, opts, 0, nullptr);
    CHECK(w.applied == std::vector<std::string>{"asahi"});
    CHECK(w.reconnected == std::vector<std::string>{"asahi"});
    CHECK(o.results[0].status == NodeApplyResult::Status::Changed);
    CHECK(o.results[1].status == NodeApplyResult::Status::Unreachable);
    CHECK(o.results[2].status == NodeApplyResult::Status::Failed);
    CHECK(o.results[2].error.rfind("not applied: passwd-file failed", 0) == 0);
    CHECK(o.changed == 1);
    CHECK(o.unreachable == 1);
    CHECK(o.failed == 1);
    CHECK(o.mid_apply.empty());
    CHECK(o.not_started.empty());

    std::ostringstream out, err;
    Reporter rep(OutputFormat::Json, out, err);
    ReportApply(rep, o, opts);
    CHECK(rep.doc()["result"]["changed"] == 1);
    CHECK(rep.doc()["result"]["unreachable"] == 1);
    CHECK(rep.doc()["apply"][0]["status"] == "changed");
    CHECK(rep.doc()["run_id"] == opts.run_id);
  }

  TEST_CASE("apply progress: one line per node as its result is final, counted up to the total") {
    Inventory inv = LoadUnvalidated(kInv);
    World w;
    FleetOps ops = w.ops();
    auto runs = PlanAll(All(inv), 3, ops, nullptr);
    std::vector<std::string> lines;
    std::vector<size_t> counts;
    ApplyOutcome o = ApplyAll(All(inv), runs, 3, ops, ApplyOptions{}, 0, nullptr,
                              [&](const NodeApplyResult& r, size_t done, size_t total) {
                                CHECK(total == 3);
                                counts.push_back(done);
                                lines.push_back(ApplyProgressLine(r, done, total));
                              });
    CHECK(counts == std::vector<size_t>{1, 2, 3});
    std::sort(lines.begin(), lines.end(), [](const std::string& a, const std::string& b) {
      return a.substr(a.find(']')) < b.substr(b.find(']'));
    });
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].substr(lines[0].find(']')) == "] asahi: changed (2 changes)");
    CHECK(lines[1].substr(lines[1].find(']')) == "] biwa: unreachable: biwa: connection refused");
    CHECK(lines[2].substr(lines[2].find(']')) ==
          "] chiba: failed: not applied: passwd-file failed (exit 2): no such database");
    CHECK(o.changed == 1);

    // Only the first line of a long error; an interrupted run still counts every node.
    NodeApplyResult r;
    r.node = "dazai";
    r.status = NodeApplyResult::Status::Failed;
    r.error = "script failed\nline two";
    CHECK(ApplyProgressLine(r, 4, 16) == "[4/16] dazai: failed: script failed");
    std::atomic<bool> stop{true};
    counts.clear();
    ApplyAll(All(inv), runs, 1, ops, ApplyOptions{}, 0, &stop,
             [&](const NodeApplyResult&, size_t done, size_t) { counts.push_back(done); });
    CHECK(counts == std::vector<size_t>{1, 2, 3});
  }

  TEST_CASE("an interrupt before apply starts leaves every node untouched and says so") {
    Inventory inv = LoadUnvalidated(kInv);
    World w;
    FleetOps ops = w.ops();
    auto runs = PlanAll(All(inv), 3, ops, nullptr);
    std::atomic<bool> stop{true};
    ApplyOutcome o = ApplyAll(All(inv), runs, 3, ops, ApplyOptions{}, 0, &stop);
    CHECK(w.applied.empty());
    CHECK(o.not_started == std::vector<std::string>{"asahi", "biwa", "chiba"});
    for (const auto& r : o.results) CHECK(r.error.find("interrupted before this node was started") != std::string::npos);
    // And a plan interrupted before it starts plans nothing.
    auto planned = w.plans;
    auto none = PlanAll(All(inv), 3, ops, &stop);
    CHECK(w.plans == planned);
    for (const auto& r : none) CHECK(r.plan.error.rfind("not planned:", 0) == 0);
  }

  TEST_CASE("an interrupt while a node applies is reported as mid-apply") {
    Inventory inv = LoadUnvalidated(kInv);
    World w;
    w.applier = [](const NodeDef&, const NodePlan&) -> NodeApplyResult {
      throw TransportError(TransportError::Kind::Interrupted, "interrupted after 1 of 2 changes.");
    };
    FleetOps ops = w.ops();
    auto runs = PlanAll(All(inv), 1, ops, nullptr);
    ApplyOutcome o = ApplyAll(All(inv), runs, 1, ops, ApplyOptions{}, 0, nullptr);
    CHECK(o.mid_apply == std::vector<std::string>{"asahi"});
    CHECK(o.results[0].interrupted);
    CHECK(o.results[0].error == "interrupted after 1 of 2 changes. Apply again to finish this node.");
  }

  TEST_CASE("--drain re-plans every 5 s while disruptive changes wait, and no longer than asked") {
    Inventory inv = LoadUnvalidated(R"(lab: { name: t }
nodes:
  asahi: { address: 10.9.0.1 }
)");
    SUBCASE("the node frees up: applied with the deferred change") {
      World w;
      w.planner = [&w](const NodeDef& n) {
        NodePlan p;
        p.node = n.name;
        p.changes = {Put("file:/etc/docker/daemon.json")};
        (w.plans[n.name] < 3 ? p.deferred : p.changes).push_back(Put("docker restart", true));
        return p;
      };
      size_t applied_changes = 0;
      w.applier = [&](const NodeDef& n, const NodePlan& p) {
        applied_changes = p.changes.size();
        NodeApplyResult r;
        r.node = n.name;
        r.status = NodeApplyResult::Status::Changed;
        return r;
      };
      FleetOps ops = w.ops();
      auto runs = PlanAll(All(inv), 1, ops, nullptr);
      CHECK(runs[0].plan.deferred.size() == 1);
      ApplyAll(All(inv), runs, 1, ops, ApplyOptions{}, 600, nullptr);
      CHECK(w.plans["asahi"] == 3);  // planned, then re-planned twice, 5 s apart
      CHECK(w.clock.time_since_epoch() == std::chrono::seconds(10));
      CHECK(applied_changes == 2);
    }
    SUBCASE("still busy: re-planned only while a whole 5 s step fits in the drain time, then applied without it") {
      World w;
      w.planner = [](const NodeDef& n) {
        NodePlan p;
        p.node = n.name;
        p.changes = {Put("file:/etc/docker/daemon.json")};
        p.deferred = {Put("docker restart", true)};
        return p;
      };
      FleetOps ops = w.ops();
      auto runs = PlanAll(All(inv), 1, ops, nullptr);
      ApplyAll(All(inv), runs, 1, ops, ApplyOptions{}, 12, nullptr);
      CHECK(w.plans["asahi"] == 3);  // 0 s, 5 s, 10 s; a step to 15 s would pass 12 s
      CHECK(w.applied.size() == 1);
    }
    SUBCASE("no --drain: no wait, no re-plan") {
      World w;
      w.planner = [](const NodeDef& n) {
        NodePlan p;
        p.node = n.name;
        p.deferred = {Put("docker restart", true)};
        return p;
      };
      FleetOps ops = w.ops();
      auto runs = PlanAll(All(inv), 1, ops, nullptr);
      ApplyAll(All(inv), runs, 1, ops, ApplyOptions{}, 0, nullptr);
      CHECK(w.plans["asahi"] == 1);
      CHECK(w.clock.time_since_epoch() == std::chrono::seconds(0));
    }
  }

  TEST_CASE("status report: behind needs a repository, drift counts pending changes, a failed node fails the report") {
    StatusRow ok;
    ok.node = "asahi";
    ok.state = nlohmann::json{{"commit", "0123456789abcdef"}, {"applied_at", "2026-12-01T10:00:00Z"}, {"applied_by", "root@ctl"}};
    ok.plan.changes = {Put("user:yseong")};
    StatusRow down;
    down.node = "biwa";
    down.error = "connection refused";
    std::ostringstream out, err;
    Reporter rep(OutputFormat::Text, out, err);
    CHECK_FALSE(ReportStatus(rep, {ok, down}, nullptr, ""));
    CHECK(out.str().find("asahi            0123456789   -        1 change   2026-12-01T10:00:00Z by root@ctl") !=
          std::string::npos);
    CHECK(out.str().find("biwa: unreachable: connection refused") != std::string::npos);
    CHECK(ReportStatus(rep, {ok}, nullptr, ""));
  }

  TEST_CASE("a converged node whose record is current gets no apply session; any difference in the record sends one") {
    Inventory inv = LoadUnvalidated(kInv);
    const NodeDef& n = inv.nodes[0];
    ApplyOptions opts;
    opts.commit = "0123456789abcdef0123456789abcdef01234567";
    opts.who = "root@ctl";
    opts.run_id = "r1";
    NodePlan plan;
    plan.node = n.name;
    plan.recorded_state = StateJson(inv, n, opts);
    {
      FakeTransport t(n.name);
      NodeApplyResult r = ApplyNode(inv, n, plan, t, opts);
      CHECK(t.calls().empty());
      CHECK(r.status == NodeApplyResult::Status::Unchanged);
      CHECK(r.error.empty());
    }
    auto sends = [&](const NodePlan& p, const ApplyOptions& o) {
      FakeTransport t(n.name);
      t.set_default({0, "", ""});
      ApplyNode(inv, n, p, t, o);
      return !t.calls().empty();
    };
    ApplyOptions other = opts;
    other.commit = "fedcba9876543210fedcba9876543210fedcba98";
    CHECK(sends(plan, other));  // a new commit is recorded
    other = opts;
    other.dirty = "dirty";
    CHECK(sends(plan, other));
    other = opts;
    other.plan.only = {"users"};
    CHECK(sends(plan, other));
    NodePlan unrecorded = plan;
    unrecorded.recorded_state = "";
    CHECK(sends(unrecorded, opts));  // never applied
    NodePlan garbage = plan;
    garbage.recorded_state = "{\"commit\": ";
    CHECK(sends(garbage, opts));
    auto j = nlohmann::json::parse(plan.recorded_state);
    j["settings_hash"] = "0000000000000000";
    NodePlan settings_changed = plan;
    settings_changed.recorded_state = j.dump();
    CHECK(sends(settings_changed, opts));
    NodePlan deferred = plan;
    deferred.deferred = {Put("docker restart", true)};
    CHECK(sends(deferred, opts));  // the pending-handlers record is the script's to write
  }
}
