// `labfleet dashboard` against real sandbox nodes: node1 has three "GPUs" (the nvidia-smi test double) with
// real processes of a user on two of them, node2 has none. The JSON and the metrics are parsed and checked, the
// page is loaded in a real headless Chromium (its DOM checked, a screenshot taken), and a node whose sshd is
// killed shows as unreachable within two intervals.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fcntl.h>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "engine/http_server.h"
#include "engine/shell.h"
#include "engine/text.h"
#include "tests/integration/cli_helpers.h"
#include "tests/integration/doubles.h"
#include "tests/integration/sandbox.h"

using namespace labfleet;
using namespace labfleet::testing;
namespace fs = std::filesystem;

namespace {

// The dashboard as its own process (it serves until a signal); SIGKILLed on destruction if still running.
struct Dashboard {
  pid_t pid = -1;
  std::string err_file;
  Dashboard(const std::vector<std::string>& args, const std::string& err) : err_file(err) {
    pid = fork();
    if (pid == 0) {
      int fd = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      int nul = open("/dev/null", O_RDWR);
      dup2(nul, 0), dup2(nul, 1), dup2(fd, 2);
      std::vector<char*> argv;
      std::string bin = LABFLEET_BINARY;
      argv.push_back(bin.data());
      for (auto& a : const_cast<std::vector<std::string>&>(args)) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(bin.c_str(), argv.data());
      _exit(127);
    }
  }
  ~Dashboard() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  int port() const {  // from "labfleet dashboard: http://127.0.0.1:PORT/ ..."
    for (int i = 0; i < 100; ++i) {
      std::smatch m;
      std::string e = ReadFile(err_file);
      static const std::regex re("http://127\\.0\\.0\\.1:([0-9]+)/");
      if (std::regex_search(e, m, re)) return std::stoi(m[1]);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;
  }
  int stop() {  // SIGTERM; the exit status, or -1 when it did not exit within 10 s
    kill(pid, SIGTERM);
    for (int i = 0; i < 100; ++i) {
      int st = 0;
      if (waitpid(pid, &st, WNOHANG) == pid) {
        pid = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;
  }
};

nlohmann::json Api(int port) {
  HttpResult r = HttpGet("127.0.0.1", port, "/api/facts");
  REQUIRE_MESSAGE(r.status == 200, r.error);
  CHECK(r.content_type.find("application/json") == 0);
  return nlohmann::json::parse(r.body);
}

// Waits (up to `seconds`) until `pred(api)` holds; returns the last document.
template <class F>
nlohmann::json WaitApi(int port, double seconds, F pred) {
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  nlohmann::json j;
  do {
    j = Api(port);
    if (pred(j)) return j;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  } while (std::chrono::steady_clock::now() < until);
  return j;
}

const nlohmann::json& NodeOf(const nlohmann::json& api, const std::string& name) {
  for (const auto& n : api["nodes"])
    if (n["node"] == name) return n;
  static const nlohmann::json none;
  return none;
}

std::string Chromium(const std::string& profile, const std::string& what, const std::string& url) {
  Cmd c("timeout");
  c.arg("120").arg("chromium").arg("--headless").arg("--no-sandbox").arg("--disable-gpu").arg("--no-first-run")
      .arg("--disable-background-networking").arg("--disable-component-update").arg("--user-data-dir=" + profile)
      .arg("--virtual-time-budget=5000").arg("--window-size=1280,720").arg(what).arg(url);
  auto r = RunCommand(c.str());
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return r.out;
}

}  // namespace

TEST_SUITE("integration-dashboard") {
  TEST_CASE("dashboard: free GPUs and their users from real nodes; JSON, metrics, a page in Chromium; a node going down") {
    Sandbox sbx({.nodes = 2});
    TempInventory inv(sbx);
    inv.write("inventory/lab.yaml", "lab: { name: t }\n");
    InstallDoubles(sbx, "node1", {"nvidia-smi"});
    MustExec(sbx, "node1",
             "useradd -u 2051 -M -s /bin/sh alice && "
             "setsid setpriv --reuid 2051 --regid 2051 --clear-groups sleep 600 >/dev/null 2>&1 </dev/null & "
             "setsid setpriv --reuid 2051 --regid 2051 --clear-groups sleep 601 >/dev/null 2>&1 </dev/null &");
    std::string pids = MustExec(sbx, "node1", "for i in 1 2 3 4 5 6 7 8 9 10; do [ $(pgrep -u 2051 -x sleep | wc -l) = 2 ] && break; sleep 0.2; done; pgrep -u 2051 -x sleep");
    std::string p1 = pids.substr(0, pids.find('\n')), p2 = pids.substr(pids.find('\n') + 1);
    p2 = p2.substr(0, p2.find('\n'));
    REQUIRE_FALSE(p1.empty());
    REQUIRE_FALSE(p2.empty());
    SeedGpus(sbx, "node1",
             "index,name,uuid,driver_version,memory.total,memory.used,utilization.gpu,temperature.gpu\n"
             "0,NVIDIA H100 80GB HBM3,GPU-0a0a0a0a-1111-2222-3333-444455556666,550.54.15,81559,40960,97,71\n"
             "1,NVIDIA H100 80GB HBM3,GPU-1b1b1b1b-1111-2222-3333-444455556666,550.54.15,81559,2048,3,40\n"
             "2,NVIDIA H100 80GB HBM3,GPU-2c2c2c2c-1111-2222-3333-444455556666,550.54.15,81559,0,0,33\n");
    // The second process's name is hostile markup: the page must show it as text.
    SeedGpuApps(sbx, "node1",
                "gpu_uuid,pid,used_memory,process_name\n"
                "GPU-0a0a0a0a-1111-2222-3333-444455556666," + p1 + ",40960,python3\n"
                "GPU-1b1b1b1b-1111-2222-3333-444455556666," + p2 + ",2048,<img src=x onerror=alert(1)>\n");

    const std::string err = (fs::path(sbx.dir()) / "dashboard.err").string();
    Dashboard dash({"--inventory", inv.dir(), "dashboard", "--listen", "127.0.0.1:0", "--interval", "3",
                    "--known-hosts", sbx.known_hosts()},
                   err);
    const int port = dash.port();
    INFO(ReadFile(err));
    REQUIRE(port > 0);

    nlohmann::json api = WaitApi(port, 30, [](const nlohmann::json& j) {
      for (const auto& n : j["nodes"])
        if (!n["polled"].get<bool>()) return false;
      return true;
    });
    INFO(api.dump(2));
    CHECK(api["version"] == 1);
    CHECK(api["summary"]["reachable"] == 2);
    CHECK(api["summary"]["gpus"] == 3);
    CHECK(api["summary"]["free_gpus"] == 1);
    const auto& n1 = NodeOf(api, "node1");
    REQUIRE(n1["gpu_tiles"].size() == 3);
    CHECK(n1["gpu_tiles"][0]["processes"][0]["user"] == "alice");
    CHECK(n1["gpu_tiles"][0]["processes"][0]["pid"] == std::stoll(p1));
    CHECK(n1["gpu_tiles"][2]["free"] == true);
    CHECK(n1["facts"]["gpus"]["devices"][0]["temperature_c"] == 71);
    CHECK(n1["facts"]["load"].is_object());
    CHECK(NodeOf(api, "node2")["gpus"]["total"] == 0);

    HttpResult m = HttpGet("127.0.0.1", port, "/metrics");
    REQUIRE(m.status == 200);
    CHECK(m.content_type.find("text/plain; version=0.0.4") == 0);
    // Every sample line is `name{labels} value` or `name value` (Prometheus text format).
    static const std::regex sample(R"(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$)");
    size_t samples = 0;
    for (const auto& line : SplitLines(m.body)) {
      if (line.empty() || line[0] == '#') continue;
      CAPTURE(line);
      CHECK(std::regex_match(line, sample));
      ++samples;
    }
    CHECK(samples > 10);
    for (const char* want : {"labfleet_free_gpus 1\n", "labfleet_gpus 3\n", "labfleet_user_gpus{user=\"alice\"} 2\n",
                             "labfleet_node_up{node=\"node1\"} 1\n", "labfleet_node_up{node=\"node2\"} 1\n",
                             "labfleet_gpu_in_use{node=\"node1\",gpu=\"2\",model=\"NVIDIA H100 80GB HBM3\"} 0\n",
                             "labfleet_gpu_temperature_celsius{node=\"node1\",gpu=\"0\",model=\"NVIDIA H100 80GB HBM3\"} 71\n",
                             "labfleet_gpu_memory_used_bytes{node=\"node1\",gpu=\"0\",model=\"NVIDIA H100 80GB HBM3\"} 42949672960\n"}) {
      CAPTURE(want);
      CHECK(m.body.find(want) != std::string::npos);
    }
    CHECK(HttpGet("127.0.0.1", port, "/nope").status == 404);

    // The page, in a real browser: the free count, the user, and the hostile name as text.
    const std::string profile = (fs::path(sbx.dir()) / "chromium").string();
    const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
    std::string dom = Chromium(profile, "--dump-dom", url);
    INFO(dom);
    CHECK(dom.find("<span id=\"free\" data-free=\"1\">1 of 3 GPUs free</span>") != std::string::npos);
    CHECK(dom.find("alice · python3") != std::string::npos);
    CHECK(dom.find("alice · &lt;img src=x onerror=alert(1)&gt;") != std::string::npos);
    CHECK(dom.find("<img") == std::string::npos);
    CHECK(dom.find("data-node=\"node2\"") != std::string::npos);
    const std::string shot = (fs::path(sbx.dir()) / "dashboard.png").string();
    Chromium(profile, "--screenshot=" + shot, url);
    std::string png = ReadFile(shot);
    CHECK(png.size() > 10000);
    CHECK(png.rfind("\x89PNG", 0) == 0);
    if (const char* keep = std::getenv("LABFLEET_DASHBOARD_SCREENSHOT")) fs::copy_file(shot, keep, fs::copy_options::overwrite_existing);

    // node2's sshd dies (every sshd process: the kept connection too): unreachable within two intervals.
    MustExec(sbx, "node2", "pkill -KILL -x sshd; true");
    auto killed = std::chrono::steady_clock::now();
    api = WaitApi(port, 2 * 3 + 3, [](const nlohmann::json& j) { return !NodeOf(j, "node2")["reachable"].get<bool>(); });
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed).count();
    INFO(api.dump(2));
    CHECK_FALSE(NodeOf(api, "node2")["reachable"].get<bool>());
    CHECK(NodeOf(api, "node2")["last_ok"].is_number());
    CHECK(NodeOf(api, "node1")["reachable"].get<bool>());
    CHECK(api["summary"]["reachable"] == 1);
    CAPTURE(took);  // seconds from the kill to the page saying so
    dom = Chromium(profile, "--dump-dom", url);
    CHECK(dom.find("<section class=\"node down\" data-node=\"node2\"><h2>node2<span class=\"badge down\">unreachable</span>") != std::string::npos);
    CHECK(HttpGet("127.0.0.1", port, "/metrics").body.find("labfleet_node_up{node=\"node2\"} 0\n") != std::string::npos);

    CHECK(dash.stop() == 0);
  }
}
