// `labfleet dashboard`: which GPU is free, and who uses the others. The pure part: what the poller keeps per
// node, and the three views of it (JSON for /api/facts, Prometheus text for /metrics, the page in
// dashboard_page.cc). Everything a node sent is untrusted: the JSON encoder escapes it, Prometheus label values
// are escaped and cut to 128 bytes here, and the page inserts text with textContent only.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "modules/facts/facts.h"

namespace labfleet {

inline constexpr int kDashboardApiVersion = 1;

// The latest poll of one node, as the poller keeps it.
struct DashboardNode {
  std::string name;
  std::vector<std::string> groups;  // inventory groups, for the page's filter
  int gpus_expected = -1;
  bool polled = false;              // at least one poll finished
  NodeFacts facts;                  // the latest poll's facts (reachable=false with error when it failed)
  long long last_poll = 0;          // unix seconds the latest poll finished
  long long last_ok = 0;            // unix seconds of the latest poll that reached the node; 0 = never
  long long polls = 0;
  double poll_seconds = 0;          // how long the latest poll took
};

// A GPU is in use when nvidia-smi lists a compute process on it; free otherwise. Only GPUs seen by
// nvidia-smi on a node reached by its latest poll count (an unreachable node's GPUs are neither).
struct GpuCounts {
  int total = 0, free = 0, in_use = 0;
};
GpuCounts CountGpus(const DashboardNode& n);

// /api/facts: {"version": 1, "generated": T, "interval_s": S, "summary": {...}, "nodes": [...]}; each node
// holds `facts` exactly as `labfleet facts --format json` prints one node, plus the poll's bookkeeping and a
// per-GPU list with its users.
nlohmann::json DashboardJson(const std::vector<DashboardNode>& nodes, long long now, int interval_s);
// /metrics in the Prometheus text format (version 0.0.4).
std::string DashboardMetrics(const std::vector<DashboardNode>& nodes, long long now);
// A label value: \ " and newline escaped, other control characters dropped, at most 128 bytes.
std::string PromLabel(std::string_view v);
// The page: static HTML + CSS + JS, no external resource; it polls /api/facts every `interval_s`.
std::string DashboardPage(int interval_s);

}  // namespace labfleet
