#include "engine/fleet.h"

#include <mutex>
#include <thread>

namespace labfleet {
namespace {

bool Stopped(const std::atomic<bool>* stop) { return stop && stop->load(); }

constexpr std::chrono::seconds kDrainStep{5};

}  // namespace

FleetOps RealFleetOps(const Inventory& inv, const ConnectOptions& copts, const PlanOptions& popts) {
  FleetOps ops;
  const Inventory* i = &inv;
  ops.connect = [i, copts](const NodeDef& n, const Transport* previous) { return Connect(*i, n, copts, previous); };
  ops.plan = [i, popts](const NodeDef& n, Transport& t) { return PlanNode(*i, n, t, popts); };
  ops.apply = [i](const NodeDef& n, const NodePlan& p, Transport& t, const ApplyOptions& o) {
    return ApplyNode(*i, n, p, t, o);
  };
  ops.wait = [](std::chrono::seconds d, const std::atomic<bool>* stop) {
    auto ticks = std::chrono::duration_cast<std::chrono::milliseconds>(d).count() / 100;
    for (long t = 0; t < ticks && !Stopped(stop); ++t) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return !Stopped(stop);
  };
  ops.now = [] { return std::chrono::steady_clock::now(); };
  return ops;
}

std::vector<NodeRun> PlanAll(const std::vector<const NodeDef*>& nodes, int parallel, const FleetOps& ops,
                             const std::atomic<bool>* stop, bool keep_connections) {
  std::vector<NodeRun> runs(nodes.size());
  ForEachNode(nodes, parallel, [&](size_t i, const NodeDef& n) {
    runs[i].plan.node = n.name;
    if (Stopped(stop)) {
      runs[i].plan.error = "not planned: labfleet was interrupted before this node was started";
      return;
    }
    try {
      runs[i].transport = ops.connect(n, nullptr);
      runs[i].plan = ops.plan(n, *runs[i].transport);
      runs[i].plan.node = n.name;
      // What connecting had to say (a fallback port, a newly recorded host key) goes under the node.
      if (!runs[i].transport->notes().empty()) runs[i].plan.warnings.push_back({"ssh", runs[i].transport->notes()});
    } catch (const TransportError& e) {
      runs[i].plan.reachable = false;
      runs[i].plan.error = e.what();
    } catch (const std::exception& e) {
      runs[i].plan.error = e.what();
    }
    if (!keep_connections) runs[i].transport.reset();
  });
  return runs;
}

PlanTotals CountPlan(const std::vector<NodeRun>& runs) {
  PlanTotals t;
  for (const auto& r : runs) {
    if (!r.plan.reachable || !r.plan.error.empty()) {
      ++t.failed;
    } else if (r.plan.changes.empty()) {
      ++t.unchanged;
    } else {
      ++t.changed_nodes;
      t.changes += r.plan.changes.size();
    }
  }
  return t;
}

ApplyOutcome ApplyAll(const std::vector<const NodeDef*>& nodes, std::vector<NodeRun>& runs, int parallel,
                      const FleetOps& ops, const ApplyOptions& opts, int drain, const std::atomic<bool>* stop,
                      const ApplyProgressFn& progress) {
  ApplyOutcome out;
  out.results.resize(nodes.size());
  std::vector<char> not_started(nodes.size(), 0);
  std::mutex progress_mu;
  size_t done = 0;
  ForEachNode(nodes, parallel, [&](size_t i, const NodeDef& n) {
    NodeApplyResult& res = out.results[i];
    res.node = n.name;
    // Runs when this node's lambda returns, whichever way: the result is final by then.
    struct Done {
      std::function<void()> f;
      ~Done() { f(); }
    } report_done{[&] {
      if (progress) {
        std::lock_guard<std::mutex> lock(progress_mu);
        try {
          progress(res, ++done, nodes.size());
        } catch (...) {  // a progress line that cannot be written never changes what happened to the node
        }
      }
      runs[i].transport.reset();  // closed here, in parallel with the other nodes (fleet.h)
    }};
    NodeRun& r = runs[i];
    auto skip = [&] {
      not_started[i] = 1;
      res.status = NodeApplyResult::Status::Failed;
      res.error = "not applied: labfleet was interrupted before this node was started";
    };
    if (Stopped(stop)) return skip();
    if (!r.plan.reachable || !r.transport) {
      res.status = NodeApplyResult::Status::Unreachable;
      res.error = r.plan.error;
      return;
    }
    if (!r.plan.error.empty()) {
      res.status = NodeApplyResult::Status::Failed;
      res.error = "not applied: " + r.plan.error;
      return;
    }
    try {
      auto start = ops.now();
      while (!r.plan.deferred.empty() && r.plan.error.empty() &&
             ops.now() - start + kDrainStep <= std::chrono::seconds(drain)) {
        if (!ops.wait(kDrainStep, stop)) break;
        r.plan = ops.plan(n, *r.transport);
        r.plan.node = n.name;
      }
      if (Stopped(stop)) return skip();
      if (!r.plan.error.empty()) {  // a drain re-plan that failed: nothing is applied
        res.status = NodeApplyResult::Status::Failed;
        res.error = "not applied: " + r.plan.error;
        return;
      }
      ApplyOptions node_opts = opts;
      // The fresh connection goes to the inventory's ssh.port (a Port change is followed) and trusts the host
      // key this run verified on the port it came in by.
      node_opts.reconnect = [&ops, &n, t = r.transport.get()] { return ops.connect(n, t); };
      res = ops.apply(n, r.plan, *r.transport, node_opts);
      res.node = n.name;
    } catch (const TransportError& e) {
      res.status = NodeApplyResult::Status::Failed;
      if (e.kind() == TransportError::Kind::Interrupted) {
        res.interrupted = true;
        res.error = std::string(e.what()) + " Apply again to finish this node.";
      } else {
        res.error = std::string("connection lost: ") + e.what() + "; apply again to finish this node";
      }
    } catch (const std::exception& e) {
      res.status = NodeApplyResult::Status::Failed;
      res.error = e.what();
    }
  });
  for (size_t i = 0; i < out.results.size(); ++i) {
    const auto& r = out.results[i];
    switch (r.status) {
      case NodeApplyResult::Status::Unchanged: ++out.unchanged; break;
      case NodeApplyResult::Status::Changed: ++out.changed; break;
      case NodeApplyResult::Status::Failed: ++out.failed; break;
      case NodeApplyResult::Status::Unreachable: ++out.unreachable; break;
    }
    if (r.interrupted) out.mid_apply.push_back(r.node);
    if (not_started[i]) out.not_started.push_back(r.node);
  }
  return out;
}

}  // namespace labfleet
