// The dashboard's pure views: GPU counting, the /api/facts document and Prometheus text, with hostile node text.
#include <doctest/doctest.h>

#include "modules/facts/dashboard.h"

using namespace labfleet;

namespace {
DashboardNode GpuNode(const std::string& name, int gpus, std::vector<int> used_by_bob) {
  DashboardNode n;
  n.name = name;
  n.polled = true;
  n.last_ok = n.last_poll = 1000;
  n.facts.reachable = true;
  n.facts.gpu_source = "nvidia-smi";
  for (int i = 0; i < gpus; ++i) {
    GpuInfo g;
    g.index = i;
    g.name = "A100";
    g.uuid = "GPU-" + std::to_string(i);
    g.memory_total_mib = 81920;
    g.memory_used_mib = 0;
    g.utilization_pct = 0;
    n.facts.gpus.push_back(g);
  }
  for (int i : used_by_bob) {
    GpuProcess p;
    p.gpu_index = i;
    p.pid = 100 + i;
    p.user = "bob\"\n}evil";
    p.process_name = "python";
    n.facts.gpu_processes.push_back(p);
  }
  return n;
}
}  // namespace

TEST_SUITE("dashboard") {
  TEST_CASE("free = no compute process; an unreachable or never-polled node counts no GPU") {
    auto a = GpuNode("a", 4, {0, 2});
    CHECK(CountGpus(a).total == 4);
    CHECK(CountGpus(a).free == 2);
    CHECK(CountGpus(a).in_use == 2);
    auto down = GpuNode("b", 8, {});
    down.facts.reachable = false;
    CHECK(CountGpus(down).total == 0);
    DashboardNode never;
    never.name = "c";
    CHECK(CountGpus(never).total == 0);

    nlohmann::json j = DashboardJson({a, down, never}, 2000, 15);
    CHECK(j["version"] == kDashboardApiVersion);
    CHECK(j["summary"]["free_gpus"] == 2);
    CHECK(j["summary"]["gpus"] == 4);
    CHECK(j["summary"]["reachable"] == 1);
    CHECK(j["nodes"][0]["gpu_tiles"][1]["free"] == true);
    CHECK(j["nodes"][0]["gpu_tiles"][2]["processes"][0]["pid"] == 102);
    CHECK(j["nodes"][2]["last_ok"].is_null());
    CHECK_FALSE(j["nodes"][2].contains("facts"));
  }

  TEST_CASE("Prometheus text: label values escaped and bounded, so a node cannot add samples") {
    CHECK(PromLabel("a\"b\\c\nd\te\x1b") == "a\\\"b\\\\c\\nde");
    CHECK(PromLabel(std::string(500, 'x')).size() == 128);
    auto a = GpuNode("a", 2, {1});
    std::string m = DashboardMetrics({a}, 2000);
    CHECK(m.find("labfleet_user_gpus{user=\"bob\\\"\\n}evil\"} 1\n") != std::string::npos);
    CHECK(m.find("labfleet_free_gpus 1\n") != std::string::npos);
    CHECK(m.find("labfleet_gpu_in_use{node=\"a\",gpu=\"1\",model=\"A100\"} 1\n") != std::string::npos);
    // Every line is a comment or one sample: the hostile user name did not break a line.
    size_t lines = 0, bad = 0;
    for (size_t p = 0; p < m.size();) {
      size_t nl = m.find('\n', p);
      std::string l = m.substr(p, nl - p);
      p = nl + 1;
      ++lines;
      if (l.empty() || l[0] == '#') continue;
      if (l.rfind("labfleet_", 0) != 0) ++bad;
    }
    CHECK(lines > 20);
    CHECK(bad == 0);
  }

  TEST_CASE("the page inserts node text only with textContent, and carries the interval") {
    std::string page = DashboardPage(7);
    CHECK(page.find("const INTERVAL = 7 * 1000;") != std::string::npos);
    CHECK(page.find("innerHTML") == std::string::npos);
    CHECK(page.find("http://") == std::string::npos);   // no external resource
    CHECK(page.find("https://") == std::string::npos);
  }
}
