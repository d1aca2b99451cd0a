#include "modules/facts/dashboard.h"

#include <cstdio>
#include <map>
#include <set>

namespace labfleet {

GpuCounts CountGpus(const DashboardNode& n) {
  GpuCounts c;
  if (!n.polled || !n.facts.reachable || n.facts.gpu_source != "nvidia-smi") return c;
  std::set<int> used;
  for (const auto& p : n.facts.gpu_processes)
    if (p.gpu_index >= 0) used.insert(p.gpu_index);
  for (const auto& g : n.facts.gpus) {
    ++c.total;
    if (used.count(g.index))
      ++c.in_use;
    else
      ++c.free;
  }
  return c;
}

nlohmann::json DashboardJson(const std::vector<DashboardNode>& nodes, long long now, int interval_s) {
  using nlohmann::json;
  json out = {{"version", kDashboardApiVersion}, {"generated", now}, {"interval_s", interval_s}};
  GpuCounts all;
  int up = 0, busy = 0;
  json arr = json::array();
  for (const auto& n : nodes) {
    GpuCounts c = CountGpus(n);
    all.total += c.total, all.free += c.free, all.in_use += c.in_use;
    const bool reachable = n.polled && n.facts.reachable;
    if (reachable) ++up;
    if (reachable && n.facts.busy_probed && n.facts.busy.holds()) ++busy;
    json j = {{"node", n.name},
              {"groups", n.groups},
              {"polled", n.polled},
              {"reachable", reachable},
              {"last_poll", n.last_poll},
              {"last_ok", n.last_ok == 0 ? json(nullptr) : json(n.last_ok)},
              {"poll_seconds", n.poll_seconds},
              {"gpus", {{"total", c.total}, {"free", c.free}, {"in_use", c.in_use}}}};
    if (n.polled) {
      j["facts"] = n.facts.ToJson();
      json tiles = json::array();
      for (const auto& g : n.facts.gpus) {
        json users = json::array();
        for (const auto& p : n.facts.gpu_processes)
          if (p.gpu_index == g.index)
            users.push_back({{"user", p.user}, {"pid", p.pid}, {"process", p.process_name},
                             {"elapsed_s", p.elapsed_s < 0 ? json(nullptr) : json(p.elapsed_s)},
                             {"memory_mib", p.used_memory_mib < 0 ? json(nullptr) : json(p.used_memory_mib)}});
        tiles.push_back({{"index", g.index}, {"name", g.name}, {"free", users.empty()}, {"processes", users}});
      }
      j["gpu_tiles"] = tiles;
    }
    arr.push_back(std::move(j));
  }
  out["summary"] = {{"nodes", nodes.size()}, {"reachable", up},     {"busy_or_unknown", busy},
                    {"gpus", all.total},     {"free_gpus", all.free}, {"gpus_in_use", all.in_use}};
  out["nodes"] = std::move(arr);
  return out;
}

std::string PromLabel(std::string_view v) {
  std::string out;
  for (unsigned char c : v) {
    if (out.size() >= 128) break;
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else if (c < 0x20 || c == 0x7f)
      continue;
    else
      out += char(c);
  }
  return out;
}

namespace {
std::string Num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}
}  // namespace

std::string DashboardMetrics(const std::vector<DashboardNode>& nodes, long long now) {
  std::string o;
  auto help = [&](const char* name, const char* type, const char* text) {
    o += std::string("# HELP ") + name + " " + text + "\n# TYPE " + name + " " + type + "\n";
  };
  auto node_l = [](const DashboardNode& n) { return "node=\"" + PromLabel(n.name) + "\""; };

  help("labfleet_node_up", "gauge", "1 when the latest poll reached the node");
  for (const auto& n : nodes) o += "labfleet_node_up{" + node_l(n) + "} " + (n.polled && n.facts.reachable ? "1" : "0") + "\n";
  help("labfleet_node_last_ok_seconds", "gauge", "unix time of the latest poll that reached the node");
  for (const auto& n : nodes)
    if (n.last_ok) o += "labfleet_node_last_ok_seconds{" + node_l(n) + "} " + std::to_string(n.last_ok) + "\n";
  help("labfleet_node_load1", "gauge", "1-minute load average");
  for (const auto& n : nodes)
    if (n.polled && n.facts.reachable && n.facts.load) o += "labfleet_node_load1{" + node_l(n) + "} " + Num(n.facts.load->load1) + "\n";
  help("labfleet_node_memory_available_bytes", "gauge", "MemAvailable");
  for (const auto& n : nodes)
    if (n.polled && n.facts.reachable && n.facts.mem.available_kib >= 0)
      o += "labfleet_node_memory_available_bytes{" + node_l(n) + "} " + std::to_string(n.facts.mem.available_kib * 1024) + "\n";
  help("labfleet_node_root_free_bytes", "gauge", "free space on /");
  for (const auto& n : nodes)
    if (n.polled && n.facts.reachable && n.facts.root_df && n.facts.root_df->avail_kib >= 0)
      o += "labfleet_node_root_free_bytes{" + node_l(n) + "} " + std::to_string(n.facts.root_df->avail_kib * 1024) + "\n";
  help("labfleet_node_reboot_required", "gauge", "1 when /var/run/reboot-required exists");
  for (const auto& n : nodes)
    if (n.polled && n.facts.reachable)
      o += "labfleet_node_reboot_required{" + node_l(n) + "} " + (n.facts.reboot_required ? "1" : "0") + "\n";
  help("labfleet_node_applied_info", "gauge", "the inventory commit labfleet last applied on the node");
  for (const auto& n : nodes)
    if (n.polled && n.facts.state && n.facts.state->is_object() && n.facts.state->contains("commit") &&
        (*n.facts.state)["commit"].is_string())
      o += "labfleet_node_applied_info{" + node_l(n) + ",commit=\"" +
           PromLabel((*n.facts.state)["commit"].get<std::string>()) + "\"} 1\n";

  std::map<std::string, int> per_user;
  help("labfleet_gpu_in_use", "gauge", "1 when a compute process runs on the GPU");
  std::string util, mem_used, mem_total, temp;
  for (const auto& n : nodes) {
    if (CountGpus(n).total == 0) continue;
    for (const auto& g : n.facts.gpus) {
      std::string l = node_l(n) + ",gpu=\"" + std::to_string(g.index) + "\",model=\"" + PromLabel(g.name) + "\"";
      bool used = false;
      std::set<std::string> users;
      for (const auto& p : n.facts.gpu_processes)
        if (p.gpu_index == g.index) used = true, users.insert(p.user.empty() ? "?" : p.user);
      for (const auto& u : users) ++per_user[u];
      o += "labfleet_gpu_in_use{" + l + "} " + (used ? "1" : "0") + "\n";
      if (g.utilization_pct >= 0) util += "labfleet_gpu_utilization_percent{" + l + "} " + std::to_string(g.utilization_pct) + "\n";
      if (g.memory_used_mib >= 0) mem_used += "labfleet_gpu_memory_used_bytes{" + l + "} " + std::to_string(g.memory_used_mib * 1048576) + "\n";
      if (g.memory_total_mib >= 0) mem_total += "labfleet_gpu_memory_total_bytes{" + l + "} " + std::to_string(g.memory_total_mib * 1048576) + "\n";
      if (g.temperature_c >= 0) temp += "labfleet_gpu_temperature_celsius{" + l + "} " + std::to_string(g.temperature_c) + "\n";
    }
  }
  help("labfleet_gpu_utilization_percent", "gauge", "nvidia-smi utilization.gpu");
  o += util;
  help("labfleet_gpu_memory_used_bytes", "gauge", "nvidia-smi memory.used");
  o += mem_used;
  help("labfleet_gpu_memory_total_bytes", "gauge", "nvidia-smi memory.total");
  o += mem_total;
  help("labfleet_gpu_temperature_celsius", "gauge", "nvidia-smi temperature.gpu");
  o += temp;
  help("labfleet_user_gpus", "gauge", "GPUs on which the user runs a compute process");
  for (const auto& [u, c] : per_user) o += "labfleet_user_gpus{user=\"" + PromLabel(u) + "\"} " + std::to_string(c) + "\n";
  GpuCounts all;
  for (const auto& n : nodes) {
    GpuCounts c = CountGpus(n);
    all.free += c.free, all.total += c.total;
  }
  help("labfleet_free_gpus", "gauge", "GPUs with no compute process, on reachable nodes");
  o += "labfleet_free_gpus " + std::to_string(all.free) + "\n";
  help("labfleet_gpus", "gauge", "GPUs seen by nvidia-smi on reachable nodes");
  o += "labfleet_gpus " + std::to_string(all.total) + "\n";
  help("labfleet_dashboard_generated_seconds", "gauge", "unix time of this page");
  o += "labfleet_dashboard_generated_seconds " + std::to_string(now) + "\n";
  return o;
}

}  // namespace labfleet
